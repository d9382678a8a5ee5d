"""The one training loop: it learns, records history, is reproducible, stops cleanly, takes penalties."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from tlteach.gpt import GPT, GPTConfig
from tlteach.train import TrainConfig, lr_at, train

CFG = GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, n_embd=16)


def _data(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """A learnable stream: a repeating pattern with noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % 7
    noise = torch.randint(16, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < 0.1, noise, base)


def _cfg(**kw) -> TrainConfig:
    base = dict(max_iters=60, batch_size=8, block_size=16, learning_rate=3e-3, warmup_iters=5,
                eval_interval=20, eval_iters=2, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_it_learns_and_records_history():
    torch.manual_seed(0)
    ids = _data()
    result = train(GPT(CFG), ids, _cfg(), eval_sets={"train": ids, "other": _data(seed=1)})
    h = result.history
    assert list(h.columns) == ["step", "tokens", "lr", "batch_loss", "train", "other", "elapsed"]
    assert list(h["step"]) == [0, 20, 40, 60]
    assert list(h["tokens"]) == [0, 20 * 8 * 16, 40 * 8 * 16, 60 * 8 * 16]
    assert h["train"].iloc[-1] < h["train"].iloc[0] - 0.5
    assert h["elapsed"].is_monotonic_increasing
    assert result.steps == 60 and not result.interrupted and result.tokens_per_s > 0


def test_same_seed_same_numbers():
    ids = _data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train(GPT(CFG), ids, _cfg(), eval_sets={"val": ids}).history["val"].tolist())
    assert runs[0] == runs[1]
    torch.manual_seed(0)
    other = train(GPT(CFG), ids, _cfg(seed=1), eval_sets={"val": ids}).history["val"].tolist()
    assert other != runs[0]


def test_interrupt_returns_model_and_history_so_far():
    def stop_at_25(step, model):
        if step == 25:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    result = train(GPT(CFG), _data(), _cfg(), eval_sets={"val": _data()}, hooks=[stop_at_25])
    assert result.interrupted
    assert result.steps == 24
    assert list(result.history["step"]) == [0, 20]
    assert not result.model.training


def test_penalty_reaches_the_gradient():
    def shift(penalty) -> float:
        torch.manual_seed(0)
        model = GPT(CFG)
        start = model.transformer.wte.weight.detach().clone()
        train(model, _data(), _cfg(max_iters=30), penalty=penalty)
        return (model.transformer.wte.weight.detach() - start).mean().item()

    def pull_up(m):  # pulls every embedding weight towards +5
        return 10.0 * ((m.transformer.wte.weight - 5.0) ** 2).sum()

    assert abs(shift(None)) < 0.01
    assert shift(pull_up) > 0.04  # Adam moves each weight ~lr a step, all of them upwards


def test_only_trainable_parameters_move():
    torch.manual_seed(0)
    model = GPT(CFG)
    for p in model.parameters():
        p.requires_grad = False
    model.transformer.ln_f.weight.requires_grad = True
    frozen = model.transformer.h[0].mlp.c_fc.weight.detach().clone()
    train(model, _data(), _cfg(max_iters=10))
    assert torch.equal(frozen, model.transformer.h[0].mlp.c_fc.weight)
    for p in model.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(model, _data(), _cfg(max_iters=2))


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(max_iters=100, learning_rate=1.0, min_lr=0.1, warmup_iters=10)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0
    assert math.isclose(lrs[10], 1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(100, cfg) == pytest.approx(0.1) and lrs[-1] > 0.1


def test_data_mix_as_a_function():
    calls = []

    def batches(g):
        calls.append(1)
        x = torch.randint(16, (4, 16), generator=g)
        return x, x

    torch.manual_seed(0)
    train(GPT(CFG), batches, _cfg(max_iters=7))
    assert len(calls) == 7


def test_linear_decay_is_ulmfits_slanted_triangle():
    """decay="linear": up for the warmup, then down in a straight line to min_lr (notebook 10); the default
    stays nanoGPT's cosine, and a run's cache key does not change for it."""
    from tlteach.study import train_key

    cfg = TrainConfig(max_iters=100, learning_rate=1.0, min_lr=1 / 32, warmup_iters=10, decay="linear")
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert max(lrs) == lrs[10] == 1.0
    assert lrs[55] == pytest.approx(1.0 - 0.5 * (1 - 1 / 32))  # halfway down, a straight line
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))
    cosine = lr_at(55, TrainConfig(max_iters=100, learning_rate=1.0, min_lr=1 / 32, warmup_iters=10))
    assert cosine == pytest.approx(1 / 32 + 0.5 * (1 - 1 / 32))  # cos(pi/2) = 0: the same midpoint here
    assert lr_at(30, cfg) < lr_at(30, replace(cfg, decay="cosine"))  # a straight line falls faster at first
    assert "decay" not in train_key(TrainConfig()) and train_key(cfg)["decay"] == "linear"
    with pytest.raises(ValueError, match="decay"):
        TrainConfig(decay="step")
