"""Transfer measurements: early stopping, nested target subsets, data multiples, sources, similarity."""

from __future__ import annotations

import math

import pytest
import torch

from tlteach import presets, similarity, study, transfer
from tlteach.gpt import GPT, GPTConfig
from tlteach.train import EarlyStopping, TrainConfig, train

CFG = GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, n_embd=16)


def test_early_stopping_stops_after_patience_and_keeps_the_best_weights():
    stop = EarlyStopping("val", patience=2)
    model = torch.nn.Linear(2, 2)
    stop.model = model
    losses = [3.0, 2.0, 2.5, 1.9, 2.0, 2.1]
    decisions = []
    for step, loss in enumerate(losses):
        if step == 3:
            with torch.no_grad():
                model.weight.fill_(7.0)  # the weights at the best evaluation
        elif step == 4:
            with torch.no_grad():
                model.weight.fill_(-1.0)
        decisions.append(stop({"step": step * 10, "val": loss}))
    assert decisions == [False, False, False, False, False, True]
    assert stop.best == 1.9 and stop.best_step == 30
    stop.restore(model)
    assert torch.all(model.weight == 7.0)


def test_early_stopping_names_the_missing_set():
    with pytest.raises(KeyError, match="'val'.*'other'"):
        EarlyStopping("val")({"step": 0, "other": 1.0})
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=0)


def test_train_stops_when_on_eval_says_so():
    torch.manual_seed(0)
    ids = torch.arange(3000) % 7
    cfg = TrainConfig(max_iters=200, batch_size=4, block_size=16, eval_interval=10, eval_iters=1, progress=False)
    calls = []

    def stop_at_third(row):
        calls.append(row["step"])
        return len(calls) == 3

    result = train(GPT(CFG), ids, cfg, eval_sets={"val": ids}, on_eval=stop_at_third)
    assert result.stopped_early and result.steps == 20 and calls == [0, 10, 20]
    assert list(result.history["step"]) == [0, 10, 20]


def test_early_stopping_in_the_loop_restores_a_model_no_worse_than_the_last():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train_ids = torch.randint(16, (200,), generator=g)  # tiny and random: the model overfits it
    val_ids = torch.randint(16, (2000,), generator=g)
    cfg = TrainConfig(max_iters=400, batch_size=8, block_size=16, learning_rate=1e-2, eval_interval=10,
                      eval_iters=4, progress=False)
    stop = EarlyStopping("val", patience=3)
    result = train(GPT(CFG), train_ids, cfg, eval_sets={"val": val_ids}, on_eval=stop)
    assert result.stopped_early and result.steps < 400
    h = result.history
    assert stop.best == h["val"].min() and stop.best_step == int(h.loc[h["val"].idxmin(), "step"])
    from tlteach.train import evaluate

    stop.restore(result.model)
    assert evaluate(result.model, val_ids, 16, 8, 4) == pytest.approx(stop.best, abs=1e-6)


def test_target_subsets_are_nested_seeded_and_checked():
    small, big = transfer.target_subset(0.01, seed=0), transfer.target_subset(0.03, seed=0)
    assert set(small["id"]) <= set(big["id"])
    assert 0 < len(small) < len(big)
    assert set(transfer.target_subset(0.01, seed=1)["id"]) != set(small["id"])
    assert list(transfer.target_subset(0.01, seed=0)["text"]) == list(small["text"])
    with pytest.raises(ValueError, match="fraction"):
        transfer.target_subset(0.0, seed=0)


def test_data_multiple_reads_the_scratch_curve_in_log_size():
    sizes, scratch = [0.01, 0.1, 1.0], [5.0, 4.0, 3.0]
    # the pretrained model at 0.01 reaches 4.5: halfway, in log size, between 0.01 and 0.1 -> sqrt(10)
    assert transfer.data_multiple(sizes, scratch, 4.5, 0.01) == pytest.approx(math.sqrt(10))
    assert transfer.data_multiple(sizes, scratch, 4.0, 0.01) == pytest.approx(10)
    assert transfer.data_multiple(sizes, scratch, 5.0, 0.01) == pytest.approx(1)
    assert transfer.data_multiple(sizes, scratch, 2.5, 0.01) == math.inf  # scratch never gets there
    assert transfer.data_multiple(sizes, scratch, 5.5, 0.01) < 1  # worse than scratch: less than 1
    # a non-monotone scratch curve (noise) counts a bigger size as no worse than a smaller one
    assert transfer.data_multiple([0.01, 0.1, 1.0], [5.0, 5.2, 3.0], 4.0, 0.01) == pytest.approx(10 ** 1.5)


def test_multiples_table_uses_test_losses():
    import pandas as pd

    curve = pd.DataFrame([
        {"source": "scratch", "fraction": 0.01, "test": 5.0}, {"source": "scratch", "fraction": 0.1, "test": 4.0},
        {"source": "a", "fraction": 0.01, "test": 4.5}, {"source": "a", "fraction": 0.1, "test": 3.9},
    ])
    table = transfer.multiples(curve, ["a"])
    assert list(table["gain"].round(6)) == [0.5, 0.1]
    assert table["multiple"].iloc[0] == pytest.approx(math.sqrt(10))
    assert table["multiple"].iloc[1] == math.inf


def test_sources_are_checked_and_study_preset_is_small():
    with pytest.raises(ValueError, match="unknown source 'shakespear'"):
        study.check_source("shakespear")
    assert study.check_source("shakespeare+esco-skills") == ["shakespeare", "esco-skills"]
    assert study.check_source("scratch") == []
    for name in presets.PRESET_NAMES:
        small = study.study_preset(presets.get_preset(name, device="cpu"))
        assert small.n_embd <= 128 and small.name == name
    quick = transfer.sweep_settings(presets.get_preset("quick", device="cpu"))
    # a learning curve over at least four nested sizes, a factor of 30 from the smallest to the largest
    assert len(quick["fractions"]) >= 4 and max(quick["fractions"]) / min(quick["fractions"]) >= 29.9


def test_scratch_source_is_the_seeded_initialisation():
    p = presets.with_changes(presets.get_preset("quick", device="cpu"), seed=3)
    a, b = study.source_model("scratch", p), study.source_model("scratch", p)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = study.source_model("scratch", presets.with_changes(p, seed=4))
    assert not torch.equal(a.transformer.wte.weight, c.transformer.wte.weight)


def test_js_divergence_bounds_and_symmetry():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.0, 0.0, 1.0])
    assert similarity.js_divergence(p, p) == pytest.approx(0.0)
    assert similarity.js_divergence(p, q) == pytest.approx(1.0)  # disjoint: 1 bit
    r = torch.tensor([0.2, 0.3, 0.5])
    assert similarity.js_divergence(p, r) == pytest.approx(similarity.js_divergence(r, p))
    # by hand: M = (0.35, 0.4, 0.25); KL(p||M) and KL(r||M) in bits
    m = torch.tensor([0.35, 0.4, 0.25])
    kl_p = 0.5 * math.log2(0.5 / 0.35) + 0.5 * math.log2(0.5 / 0.4)
    kl_r = sum(float(a) * math.log2(float(a) / float(b)) for a, b in zip(r, m))
    assert similarity.js_divergence(p, r) == pytest.approx(0.5 * kl_p + 0.5 * kl_r)


def test_token_distribution_and_its_errors():
    d = similarity.token_distribution(torch.tensor([0, 0, 1, 3]), 4)
    assert d.tolist() == [0.5, 0.25, 0.0, 0.25]
    assert similarity.token_distribution(torch.tensor([0]), 2, smoothing=1.0).tolist() == [2 / 3, 1 / 3]
    with pytest.raises(ValueError, match="another tokenizer"):
        similarity.token_distribution(torch.tensor([5]), 4)
    with pytest.raises(ValueError, match="empty"):
        similarity.token_distribution(torch.tensor([], dtype=torch.long), 4)


def test_word_coverage_counts_occurrences():
    assert similarity.word_coverage(["the cat"], ["The cat sat on the mat"]) == pytest.approx(3 / 6)
    assert similarity.word_coverage(["anything"], ["Nurse's nurse"]) == 0.0
    with pytest.raises(ValueError, match="no words"):
        similarity.word_coverage(["a"], ["123 !!"])


def test_tokens_per_word_grows_on_unfamiliar_text():
    from tlteach.tokenizer import train_bpe

    tok = train_bpe(["the king and the queen and the lord"] * 50, vocab_size=300)
    familiar = similarity.tokens_per_word(tok, ["the king and the queen"])
    foreign = similarity.tokens_per_word(tok, ["database administrators configure servers"])
    assert familiar < foreign


def _tiny_study(seed: int = 0):
    quick = presets.get_preset("quick", device="cpu")
    return presets.with_changes(quick, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, pretrain_iters=8,
                                eval_interval=4, eval_iters=1, seed=seed)


TINY_SWEEP = dict(fractions=(0.01, 0.03), lrs=(1e-3, 3e-3), max_iters=30, batch_size=4, eval_interval=10,
                  eval_iters=2, patience=2, small=0.01)


def test_continued_sources_differ_from_their_parent_and_are_cached(study_cache):
    p = _tiny_study()
    parent = study.source_model("shakespeare", p)
    dapt = study.source_model("shakespeare+esco-skills", p)
    control = study.source_model("shakespeare+shakespeare", p)
    w = lambda m: m.transformer.wte.weight  # noqa: E731
    assert not torch.equal(w(parent), w(dapt)) and not torch.equal(w(dapt), w(control))
    again = study.source_model("shakespeare+esco-skills", p)
    assert torch.equal(w(again), w(dapt))
    assert len(list((study_cache / "continued").glob("*.safetensors"))) == 2


def test_finetune_run_records_the_best_weights_test_loss_and_is_cached(study_cache):
    p = _tiny_study()
    run = transfer.finetune_run("scratch", 0.01, 3e-3, p, TINY_SWEEP)
    assert set(run) >= {"source", "fraction", "lr", "docs", "tokens", "val", "step", "steps", "test", "history"}
    assert run["val"] == min(run["history"]["val"]) and run["steps"] <= TINY_SWEEP["max_iters"]
    assert run["docs"] == round(0.01 * len(transfer.target_subset(1.0, 0)))
    assert math.isfinite(run["test"]) and run["test"] < math.log(p.vocab_size) + 1
    assert transfer.finetune_run("scratch", 0.01, 3e-3, p, TINY_SWEEP) == run  # from the cache
    best = transfer.best_run("scratch", 0.01, p, TINY_SWEEP)
    assert best["val"] == min(v for _, v in best["tried"]) and len(best["tried"]) == 2


def test_learning_curve_has_one_row_per_source_and_size(study_cache):
    p = _tiny_study()
    curve = transfer.learning_curve(["shakespeare", "scratch"], preset=p, settings=TINY_SWEEP, progress=False)
    assert len(curve) == 4 and set(curve.source) == {"shakespeare", "scratch"}
    assert curve.groupby("source").tokens.apply(lambda t: t.is_monotonic_increasing).all()
    table = transfer.multiples(curve, ["shakespeare"])
    assert len(table) == 2 and (table.gain == table.scratch - table.test).all()


def test_stacked_sweep_gives_the_runs_trained_alone(study_cache, tmp_path, monkeypatch):
    p = _tiny_study()
    sweep = dict(TINY_SWEEP, max_iters=80, lrs=(1e-3, 5e-2))  # the high rate overfits and stops early
    points = [(s, f, lr) for f in sweep["fractions"] for s in ("shakespeare", "scratch") for lr in sweep["lrs"]]
    stacked = transfer.finetune_runs(points, p, sweep, stacked=True)
    assert all(r["stacked"] == len(points) for r in stacked)  # one schedule here: every run in one stack
    alone_cache = tmp_path / "alone"
    alone_cache.mkdir()
    for kind in ("tokenizers", "pretrained"):  # the same sources, not the same fine-tuning runs
        (alone_cache / kind).symlink_to(study_cache / kind)
    monkeypatch.setenv("TLTEACH_CACHE", str(alone_cache))
    alone = transfer.finetune_runs(points, p, sweep, stacked=False)
    assert all(r["stacked"] == 1 for r in alone)
    for a, b in zip(alone, stacked):
        assert (a["source"], a["fraction"], a["lr"], a["steps"], a["step"]) == (b["source"], b["fraction"],
                                                                                b["lr"], b["steps"], b["step"])
        assert a["val"] == pytest.approx(b["val"], abs=3e-4) and a["test"] == pytest.approx(b["test"], abs=3e-4)
    assert len({r["steps"] for r in alone}) > 1  # early stopping ended runs at different steps
