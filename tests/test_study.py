"""The study module: one cached run (its key and interrupt rules), the model zoo's settings, the setup cell."""

from __future__ import annotations

import json

import pytest
import torch

from tlteach import cache, presets, study
from tlteach.gpt import GPT
from tlteach.train import TrainConfig, train


def _tiny():
    quick = presets.get_preset("quick", device="cpu")
    return presets.with_changes(quick, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, pretrain_iters=8,
                                eval_interval=4, eval_iters=1, seed=0)


def _cfg(**changes) -> TrainConfig:
    base = dict(max_iters=6, batch_size=2, block_size=16, learning_rate=1e-3, warmup_iters=1, eval_interval=3,
                eval_iters=1, progress=False)
    return TrainConfig(**{**base, **changes})


def _body(calls: list, stop_at: int | None = None):
    """A run's body: a fresh model of the preset trained on a toy stream; ``stop_at`` presses the stop button."""
    def body(cfg: TrainConfig) -> study.Trained:
        calls.append(cfg)
        p = _tiny()
        torch.manual_seed(0)
        model = GPT(study.model_config(p))
        hooks = []
        if stop_at is not None:
            def stop(step, _model):
                if step == stop_at:
                    raise KeyboardInterrupt
            hooks.append(stop)
        ids = torch.arange(400) % 50
        result = train(model, ids, cfg, eval_sets={"val": ids}, hooks=hooks)
        return study.Trained(result, {"note": "mine"})
    return body


def test_train_key_leaves_out_how_a_run_is_shown():
    assert study.train_key(_cfg(progress=True, log=True)) == study.train_key(_cfg())
    assert study.train_key(_cfg(learning_rate=3e-3)) != study.train_key(_cfg())
    p = _tiny()
    key = study.run_key("toy", {"a": 1}, p, _cfg())
    assert key["format"] == study.FORMAT_VERSION and "progress" not in key["train"] and "log" not in key["train"]
    assert study.run_key("toy", {"a": 2}, p, _cfg()) != key  # what the study trains enters the key
    assert study.run_key("toy", {"a": 1}, presets.with_changes(p, seed=1), _cfg()) != key  # so does the seed
    assert study.run_key("toy", {"a": 1}, presets.with_changes(p, device="cuda:1"), _cfg()) == \
        study.run_key("toy", {"a": 1}, presets.with_changes(p, device="cuda"), _cfg())  # any CUDA device is one


def test_cached_run_trains_once_and_keeps_the_record_history_and_weights(study_cache):
    p, calls = _tiny(), []
    run = study.cached_run("toy", {"a": 1}, p, _cfg(), _body(calls), progress=False)
    assert len(calls) == 1 and calls[0].progress is False
    assert run.record["note"] == "mine" and run.record["steps"] == 6
    assert list(run.history().step) == [0, 3, 6] and run.record["seconds"] > 0
    again = study.cached_run("toy", {"a": 1}, p, _cfg(log=True), _body(calls), progress=True)  # shown, not retrained
    assert len(calls) == 1 and again.record == run.record
    assert all(torch.equal(a, b) for a, b in zip(run.model().state_dict().values(),
                                                 again.model().state_dict().values()))
    other = study.cached_run("toy", {"a": 2}, p, _cfg(), _body(calls))
    assert len(calls) == 2 and other.path != run.path
    light = study.cached_run("toy", {"a": 3}, p, _cfg(), _body(calls), weights=False)
    assert light.path is None and light.record["history"]["val"] == run.record["history"]["val"]
    assert list((study_cache / "toy").glob("*.json"))
    with pytest.raises(ValueError, match="kept no weights"):
        light.model()


def test_an_interrupted_run_is_refused_and_nothing_is_cached(study_cache, capsys):
    p, calls = _tiny(), []
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 3; nothing was cached"):
        study.cached_run("toy", {"a": 1}, p, _cfg(), _body(calls, stop_at=4))
    assert not [f for f in (study_cache / "toy").iterdir() if not f.name.endswith(".lock")]
    run = study.cached_run("toy", {"a": 1}, p, _cfg(), _body(calls))  # the next call trains it whole
    assert len(calls) == 2 and run.record["steps"] == 6
    meta = json.loads(next((study_cache / "toy").glob("*.meta.json")).read_text())
    assert meta["key"]["spec"] == {"a": 1} and meta["key_digest"] == cache.key_digest(study.run_key("toy", {"a": 1},
                                                                                                    p, _cfg()))


def test_one_settings_table_per_study():
    quick, cpu, gpu = (presets.get_preset(n, device="cpu") for n in ("quick", "cpu", "gpu"))
    assert study.settings(cpu, "transfer") == study.settings(quick, "transfer")
    assert study.settings(gpu, "forgetting")["steps"] > study.settings(quick, "forgetting")["steps"]
    small = study.study_preset(cpu)
    assert (small.n_embd, small.bigram_steps) == (quick.n_embd, cpu.bigram_steps)
    # ULMFiT's layer-wise methods (notebook 08) need layers: the laptop's study model has at least four
    assert small.n_layer >= 4 > study.study_preset(quick).n_layer
    with pytest.raises(ValueError, match="unknown study"):
        study.settings(quick, "sweep")
    s = study.settings(quick)
    s["steps"] = -1
    assert study.settings(quick)["steps"] > 0  # a copy


def test_setup_returns_the_study_in_one_call(study_cache, capsys):
    p = _tiny()
    preset, settings, streams, pretrained = study.setup("forgetting", p, progress=False)
    assert "preset   : quick" in capsys.readouterr().out  # the environment is printed
    assert settings == study.settings(preset, "forgetting") and set(streams) == {"source_train", "source",
                                                                                 "target_train", "target"}
    again = study.source_model("shakespeare", preset)
    assert all(torch.equal(a, b) for a, b in zip(pretrained.state_dict().values(), again.state_dict().values()))


def test_how_trained_says_one_sentence_per_study_and_refuses_an_unknown_one(monkeypatch):
    from tlteach.presets import get_preset

    cpu = study.study_preset(get_preset("quick", device="cpu"))
    monkeypatch.delenv("TLTEACH_STACK", raising=False)
    said = {s: study.how_trained(cpu, s) for s in ("transfer", "forgetting", "few-labels")}
    assert len(set(said.values())) == 3 and all(s.count(". ") == 0 and s.endswith(".") for s in said.values())
    assert "one at a time" in said["transfer"] and "Classifiers" in said["few-labels"]
    monkeypatch.setenv("TLTEACH_STACK", "1")  # the transfer sweeps stack where asked; the others never do
    assert "one stack" in study.how_trained(cpu, "transfer")
    assert study.how_trained(cpu, "few-labels") == said["few-labels"]
    with pytest.raises(ValueError, match="unknown study"):
        study.how_trained(cpu, "few_labels")
