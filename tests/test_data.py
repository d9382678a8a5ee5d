"""The corpora: sizes, clean text, splits by document that are disjoint and stable; your own text."""

from __future__ import annotations

import re

import pytest
import torch
from datasets import Dataset

from tlteach import data


@pytest.mark.parametrize(
    "name, min_docs, min_chars",
    [("shakespeare", 35, 4_000_000), ("esco-occupations", 3_000, 1_500_000),
     ("esco-skills", 13_000, 4_000_000), ("python-docs", 50, 300_000)],
)
def test_corpus_sizes_and_splits(name, min_docs, min_chars):
    ds = data.load_corpus(name)
    assert list(ds) == ["train", "validation", "test"]
    docs = sum(len(ds[s]) for s in ds)
    chars = sum(len(t) for s in ds for t in ds[s]["text"])
    assert docs >= min_docs and chars >= min_chars
    for split in ds:
        assert len(ds[split]) >= 1
    # the training split holds most of the documents
    assert len(ds["train"]) > 0.7 * docs


@pytest.mark.parametrize("name", list(data.CORPORA))
def test_splits_are_disjoint_by_document(name):
    ds = data.load_corpus(name)
    ids = {s: set(ds[s]["id"]) for s in ds}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    train_text = set(ds["train"]["text"])
    assert not any(t in train_text for t in ds["validation"]["text"])


def test_no_passage_of_a_held_out_play_is_in_training():
    ds = data.load_corpus("shakespeare")
    train = data.corpus_text(ds["train"])
    for split in ("validation", "test"):
        for text in ds[split]["text"]:
            for start in (len(text) // 3, len(text) // 2, 2 * len(text) // 3):
                window = text[start:start + 300]
                assert window not in train


def test_splits_are_the_same_every_time():
    first = {s: list(data.load_corpus("esco-occupations")[s]["id"]) for s in data.SPLITS}
    data.load_corpus.cache_clear()
    data._esco_rows.cache_clear()
    again = {s: list(data.load_corpus("esco-occupations")[s]["id"]) for s in data.SPLITS}
    assert first == again


def test_shakespeare_is_clean_speaker_text():
    ds = data.load_corpus("shakespeare")
    assert {"comedies", "histories", "tragedies"} <= set(ds["train"]["genre"]) | set(ds["test"]["genre"])
    for split in ds:
        for row in ds[split]:
            text = row["text"]
            assert row["title"] and row["genre"]
            assert "**" not in text and "#" not in text and "_" not in text
            assert "[" not in text and "]" not in text and "\\" not in text
            assert not re.search(r"  $", text, flags=re.M), "Markdown line breaks left in"
            speakers = re.findall(r"^([A-Z][A-Za-z .,'-]+):$", text, flags=re.M)
            assert len(speakers) > 100, row["title"]
    hamlet = [r for s in ds for r in ds[s] if r["title"] == "Hamlet"][0]
    assert "HAMLET:\n" in hamlet["text"] and "To be, or not to be" in hamlet["text"]


def test_clean_play_drops_markup():
    md = ("# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter A and B_\n\n**A**  \nGood _morrow_,  \n"
          "my lord.\n\n*Enter C, with\na drum.*\n\n_\\[Aside]_  \n**B**  \nAnd [ ] so [farewell].\n")
    assert data.clean_play(md) == "A:\nGood morrow,\nmy lord.\n\nB:\nAnd so farewell.\n"


def test_esco_split_keeps_labels_apart_from_definition():
    d = data.split_esco_description(
        "technical director head of technical technical manager Technical directors realise the artistic "
        "visions of the creators. They coordinate.")
    assert d["preferred_label"] == "technical director"
    assert d["labels"] == "technical director head of technical technical manager"
    assert d["definition"].startswith("Technical directors realise")
    skill = data.split_esco_description("Haskell Haskell techniques The techniques of programming in Haskell.")
    assert skill["labels"] == "Haskell Haskell techniques"
    assert skill["definition"].startswith("The techniques")
    assert skill["preferred_label"] == ""


def test_esco_rows_have_definitions():
    occ = data.load_corpus("esco-occupations")["train"]
    with_label = sum(1 for r in occ if r["preferred_label"])
    assert with_label > 0.7 * len(occ)
    assert sum(1 for r in occ if r["definition"][:1].isupper()) > 0.98 * len(occ)
    row = next(r for r in occ if r["preferred_label"])
    assert row["text"].startswith(row["preferred_label"] + "\n")
    assert row["definition"] in row["text"]


def test_unknown_corpus_lists_the_names():
    with pytest.raises(KeyError) as err:
        data.load_corpus("wikipedia")
    for name in data.CORPORA:
        assert name in str(err.value)


def test_load_text_from_string_path_and_dataset(tmp_path):
    paras = [f"Paragraph {i}. " + "word " * 30 for i in range(40)]
    text = "\n\n".join(paras)
    from_string = data.load_text(text)
    path = tmp_path / "mine.txt"
    path.write_text(text, encoding="utf-8")
    from_path = data.load_text(path)
    from_str_path = data.load_text(str(path))
    from_ds = data.load_text(Dataset.from_dict({"text": paras}))
    for ds in (from_string, from_path, from_str_path, from_ds):
        assert [len(ds[s]) for s in data.SPLITS] == [32, 4, 4]
        assert ds["train"]["text"][0].startswith("Paragraph 0.")
        assert ds["test"]["text"][-1].startswith("Paragraph 39.")  # in order: the end of the text tests


def test_load_text_rejects_empty_and_short():
    with pytest.raises(ValueError, match="empty"):
        data.load_text("   \n\n  ")
    with pytest.raises(ValueError, match="too short"):
        data.load_text("a\nb\nc\nd", min_chars=65)
    with pytest.raises(ValueError, match="'text' column"):
        data.load_text(Dataset.from_dict({"body": ["x"]}))


def test_batches_are_shifted_windows():
    ids = torch.arange(1000)
    g = torch.Generator().manual_seed(0)
    x, y = data.get_batch(ids, block_size=16, batch_size=8, generator=g)
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y - x, torch.ones_like(x))
    x2, _ = data.get_batch(ids, 16, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="training block"):
        data.get_batch(torch.arange(10), block_size=16, batch_size=2)


def test_token_splits_encodes_a_named_corpus_once_and_hands_out_copies(monkeypatch):
    from tlteach.tokenizer import CharTokenizer

    tok = CharTokenizer.train("".join(data.load_corpus(data.TARGET)["validation"]["text"]))
    calls = []
    real = data.encode_split
    monkeypatch.setattr(data, "encode_split", lambda ds, t: calls.append(1) or real(ds, t))
    data._ENCODED.clear()
    first = data.token_splits(data.TARGET, tok, ("validation",))["validation"]
    first[:10] = 0  # a caller's change stays in its copy
    again = data.token_splits(data.TARGET, tok, ("validation",))["validation"]
    assert len(calls) == 1 and torch.equal(again, real(data.load_corpus(data.TARGET)["validation"], tok))
    other = CharTokenizer.train("\u2603" + "".join(data.load_corpus(data.TARGET)["validation"]["text"]))
    data.token_splits(data.TARGET, other, ("validation",))  # another tokenizer: encoded anew
    assert len(calls) == 2
