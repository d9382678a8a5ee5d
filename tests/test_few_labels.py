"""Notebook 10's study: bodies, one classifier run (cached), the fair learning rate, the bag of words, the label
multiple. On a tiny preset, so that every body trains in seconds."""

from __future__ import annotations

import math

import pytest

from tlteach import few_labels, presets
from tlteach.encoder import Encoder
from tlteach.few_labels import Arm


@pytest.fixture
def tiny(monkeypatch):
    quick = presets.get_preset("quick", device="cpu")
    p = presets.with_changes(quick, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, pretrain_iters=8,
                             eval_interval=4, eval_iters=1, seed=0)
    small = dict(few_labels.SETTINGS["quick"], max_iters=12, eval_interval=4, patience=2, lrs=(1e-3, 3e-3),
                 unfreeze_every=4, probe_lrs=(1e-2,), ulmfit_lrs=(1e-3, 3e-3))
    monkeypatch.setitem(few_labels.SETTINGS, "quick", small)
    return p


def test_bodies(tiny):
    enc = few_labels.body_model("encoder", tiny)
    assert isinstance(enc, Encoder) and not enc.transformer.h[0].attn.causal
    stage2 = few_labels.body_model("shakespeare+task-lm", tiny)
    first = few_labels.body_model("shakespeare", tiny)
    assert type(stage2) is type(first) and stage2.transformer.h[0].attn.causal
    assert any((a != b).any() for a, b in zip(stage2.parameters(), first.parameters()))  # stage 2 trained it
    with pytest.raises(ValueError, match="unknown body"):
        few_labels.body_model("bert", tiny)


def test_a_run_is_cached_and_reports_test_scores(tiny):
    arm = Arm("scratch", pooling="mean")
    first = few_labels.classifier_run(arm, "isco", 20, 0, 1e-3, tiny)
    assert first["n"] == 20 and 0 <= first["test_acc"] <= 1 and 0 <= first["test_f1"] <= 1
    assert first["val"] == min(first["history"]["val"])
    again = few_labels.classifier_run(arm, "isco", 20, 0, 1e-3, tiny)
    assert again["seconds"] == first["seconds"]  # from the cache, not trained again
    other_seed = few_labels.classifier_run(arm, "isco", 20, 1, 1e-3, tiny)
    assert other_seed["seconds"] != first["seconds"]


def test_a_run_reads_as_many_windows_as_the_settings_say(tiny, monkeypatch):
    arm = Arm("scratch")
    one = few_labels.classifier_run(arm, "isco", 20, 0, 1e-3, tiny)
    monkeypatch.setitem(few_labels.SETTINGS["quick"], "windows", 3)
    three = few_labels.classifier_run(arm, "isco", 20, 0, 1e-3, tiny)
    assert three["seconds"] != one["seconds"]  # another run (its own cache key), not the one-window run
    assert three["val"] != one["val"]


def test_best_run_picks_the_lowest_validation_loss(tiny):
    arm = Arm("shakespeare", ulmfit=True)
    runs = [few_labels.classifier_run(arm, "isco", 20, 0, lr, tiny) for lr in (1e-3, 3e-3)]
    best = few_labels.best_run(arm, "isco", 20, 0, tiny)
    assert best["val"] == min(r["val"] for r in runs)


def test_bow_run_beats_the_majority_with_all_labels():
    r = few_labels.bow_run("isco", None, 0)
    task = few_labels.load_task("isco")
    labels = task["test"]["label"]
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    assert r["n"] == len(task["train"])
    assert r["test_acc"] > majority + 0.1


def test_bow_is_at_chance_on_word_order():
    r = few_labels.bow_run("word-order", 200, 0)
    assert r["test_acc"] == pytest.approx(0.5, abs=1e-9)


def test_label_multiple():
    counts, scratch = [25, 50, 100, 200], [0.3, 0.4, 0.5, 0.6]
    assert few_labels.label_multiple(counts, scratch, 0.5, 25) == pytest.approx(4.0)
    assert few_labels.label_multiple(counts, scratch, 0.45, 25) == pytest.approx(math.sqrt(2) * 2, rel=1e-6)
    assert few_labels.label_multiple(counts, scratch, 0.7, 25) == math.inf
    assert few_labels.label_multiple(counts, scratch, 0.3, 25) == pytest.approx(1.0)


def test_bad_arms_and_tasks_are_named():
    with pytest.raises(ValueError, match="unknown pooling"):
        Arm("scratch", pooling="max")
    with pytest.raises(ValueError, match="unknown choice"):
        Arm("scratch", trainable="top")
    with pytest.raises(ValueError, match="trainable='all'"):
        Arm("scratch", trainable="head", ulmfit=True)
    with pytest.raises(ValueError, match="unknown task"):
        few_labels.load_task("sentiment")
    with pytest.raises(ValueError, match="pooling='last'"):
        Arm("shakespeare", pooling="mean", trainable="lora")
    with pytest.raises(ValueError, match="not the encoder"):
        Arm("encoder", pooling="last", trainable="lora")


def test_the_seeds_follow_the_preset_seed(tiny):
    assert few_labels.settings(tiny)["seeds"] == (0, 1, 2)
    assert few_labels.settings(presets.with_changes(tiny, seed=7))["seeds"] == (7, 8, 9)


def test_training_the_body_changes_its_language_model_and_a_probe_or_lora_does_not_record_it(tiny):
    before = few_labels.lm_losses(few_labels.body_model("shakespeare", tiny), tiny)
    assert set(before) == {"source", "task"} and all(math.isfinite(v) for v in before.values())
    full = few_labels.classifier_run(Arm("shakespeare"), "isco", 20, 0, 3e-3, tiny)
    assert full["lm_after"]["source"] != before["source"] and full["lm_after"]["task"] != before["task"]
    probe = few_labels.classifier_run(Arm("shakespeare", trainable="head"), "isco", 20, 0, 1e-2, tiny)
    assert "lm_after" not in probe  # a probe leaves the body as it was
    with pytest.raises(ValueError, match="mlm_loss"):
        few_labels.lm_losses(few_labels.body_model("encoder", tiny), tiny)


def test_a_lora_run_trains_the_transformers_twin(tiny):
    r = few_labels.classifier_run(Arm("shakespeare", pooling="last", trainable="lora"), "isco", 20, 0, 1e-2, tiny)
    assert 0 <= r["test_acc"] <= 1 and "lm_after" not in r
    assert r["val"] == min(r["history"]["val"]) and r["val"] < r["history"]["val"][0]  # it learned something
    best = few_labels.best_run(Arm("shakespeare", pooling="last", trainable="lora"), "isco", 20, 0, tiny)
    assert best["lr"] in few_labels.SETTINGS["quick"]["lora_lrs"]


def test_build_classifier_leaves_only_what_the_arm_names_to_train(tiny):
    def trains(arm):
        m = few_labels.build_classifier(arm, 9, tiny)
        return {n for n, p in m.named_parameters() if p.requires_grad}

    assert trains(Arm("shakespeare", trainable="head")) == {"score.weight"}
    last = trains(Arm("shakespeare", trainable="last"))
    assert "score.weight" in last and any(".h.0." in n for n in last) and not any("wte" in n for n in last)
    lora = trains(Arm("shakespeare", pooling="last", trainable="lora"))
    assert lora and all("lora_" in n or ".score." in n for n in lora)
    everything = few_labels.build_classifier(Arm("shakespeare"), 9, tiny)
    assert all(p.requires_grad for p in everything.parameters())


def test_summary_gives_each_arm_and_count_its_mean_and_spread():
    import pandas as pd

    table = pd.DataFrame([{"arm": "a", "n": 10, "seed": s, "test_acc": acc, "test_f1": acc / 2, "lr": 1e-3}
                          for s, acc in enumerate((0.2, 0.4, 0.9))])
    row = few_labels.summary(table).loc[("a", 10)]
    assert row["acc"] == pytest.approx(0.5) and row["acc_min"] == 0.2 and row["acc_max"] == 0.9
    assert row["f1"] == pytest.approx(0.25) and row["seeds"] == 3 and row["lr"] == "1e-03"


def test_label_curve_trains_each_arm_at_the_rate_chosen_on_validation(tiny):
    arms = {"scratch": Arm("scratch"), "probe": Arm("shakespeare", trainable="head")}
    table = few_labels.label_curve(arms, "isco", counts=(10, 20), seeds=(0, 1), preset=tiny, progress=False)
    assert len(table) == 2 * 2 * 3 and set(table["arm"]) == {"bag-of-words", "scratch", "probe"}
    for name, arm in arms.items():
        for n in (10, 20):  # at each count, the rate picked on validation with the first seed, for every seed
            chosen = few_labels.best_run(arm, "isco", n, 0, tiny)["lr"]
            assert set(table[(table.arm == name) & (table.n == n)]["lr"]) == {chosen}
    assert sorted(table[table.arm == "scratch"]["n"]) == [10, 10, 20, 20]
