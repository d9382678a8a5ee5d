"""Pretraining: the cached pretrained model, and ``python -m tlteach pretrain``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import torch

from tlteach import checkpoint, pretrain, study
from tlteach.presets import get_preset, with_changes


def _tiny_preset():
    return with_changes(get_preset("quick", device="cpu"), vocab_size=300, n_layer=1, n_embd=32, n_head=2,
                        block_size=32, batch_size=4, pretrain_iters=12, eval_interval=6, eval_iters=2)


def test_pretrained_model_is_cached_and_deterministic(fresh_cache, monkeypatch):
    preset = _tiny_preset()
    model, tok, history = pretrain.pretrained_model(preset, progress=False)
    assert list(history["step"]) == [0, 6, 12]
    assert history["val"].iloc[-1] < history["val"].iloc[0]
    assert model.config.vocab_size == tok.vocab_size == 300

    def no_training(*a, **k):
        raise AssertionError("trained again although cached")

    monkeypatch.setattr(study, "train", no_training)  # the zoo trains; the cache must answer
    again, _, history2 = pretrain.pretrained_model(preset, progress=False)
    assert history2["val"].tolist() == history["val"].tolist()
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    monkeypatch.undo()
    # an empty cache rebuilds the very same model (same seed, CPU)
    monkeypatch.setenv("TLTEACH_CACHE", str(fresh_cache.parent / "other-cache"))
    rebuilt, _, _ = pretrain.pretrained_model(preset, progress=False)
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()):
        assert torch.equal(a, b)


def test_pretrain_command_on_a_text_file(tmp_path):
    text = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(400))
    (tmp_path / "input.txt").write_text(text)
    out = tmp_path / "ckpt"
    run = subprocess.run(
        [sys.executable, "-m", "tlteach", "pretrain", "--text", str(tmp_path / "input.txt"), "--tokenizer", "char",
         "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4",
         "--max-iters", "25", "--eval-interval", "10", "--eval-iters", "2", "--warmup-iters", "2", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "TLTEACH_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert run.returncode == 0, run.stderr
    steps = re.findall(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)$", run.stdout, flags=re.M)
    assert [int(s) for s, _, _ in steps] == [0, 10, 20, 25]  # the last step is always reported
    assert float(steps[-1][2]) < float(steps[0][2])
    assert re.search(r"^tokens/s: [\d,]+", run.stdout, flags=re.M)
    assert re.search(r"^wall time: [\d.]+ s$", run.stdout, flags=re.M)
    model = checkpoint.load_model(out)
    assert model.config.n_embd == 32 and model.config.vocab_size == len(set(text))
    # nanoGPT's split: the first 90% of the characters train, the last 10% validate
    n_train = int(re.search(r"([\d,]+) training tokens", run.stdout).group(1).replace(",", ""))
    assert n_train == int(0.9 * len(text))


def test_pretrain_command_rejects_a_missing_file(tmp_path):
    run = subprocess.run([sys.executable, "-m", "tlteach", "pretrain", "--text", str(tmp_path / "nope.txt")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "no such file" in run.stderr
