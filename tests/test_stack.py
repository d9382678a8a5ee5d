"""Runs trained as one Stack by the one loop give the numbers the same runs give trained one by one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tlteach.gpt import GPT, GPTConfig
from tlteach.stack import Stack, train_stacked
from tlteach.train import EarlyStopping, TrainConfig, train

CFG = GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, n_embd=16)
TOL = dict(rtol=0, atol=3e-4)  # float tolerance: the same sums in another order, drifting over 80 Adam steps
# (measured here up to 1.3e-4 on one machine; the negative control below moves the losses by 0.76 nats)


def _data(n: int = 3000, seed: int = 0, period: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % period
    return torch.where(torch.rand(n, generator=g) < 0.1, torch.randint(16, (n,), generator=g), base)


def _model(seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG)


def _cfg(**kw) -> TrainConfig:
    base = dict(max_iters=80, batch_size=4, block_size=16, learning_rate=3e-3, warmup_iters=5, eval_interval=10,
                eval_iters=2, grad_clip=0.05, progress=False)
    return TrainConfig(**{**base, **kw})


# Four runs that differ in start, data, learning rate, warmup and seed; the clip is small enough to bind, so a
# clip over all runs together (not each on its own) would change every number.
RUNS = [(0, _data(seed=0), _cfg(learning_rate=3e-3, seed=0)),
        (1, _data(seed=1, period=5), _cfg(learning_rate=1e-2, seed=1)),
        (2, _data(seed=2), _cfg(learning_rate=3e-4, warmup_iters=20, seed=2)),
        (3, _data(seed=3, period=3), _cfg(learning_rate=3e-2, seed=3))]


def _alone(patience: int | None):
    out = []
    for seed, ids, cfg in RUNS:
        model = _model(seed)
        stop = EarlyStopping("val", patience) if patience else None
        result = train(model, ids, cfg, eval_sets={"val": _data(seed=9)}, on_eval=stop)
        if stop is not None:
            stop.restore(model)
        out.append(result)
    return out


@pytest.mark.parametrize("patience", [None, 2])
def test_stacked_runs_match_the_same_runs_trained_alone(patience):
    alone = _alone(patience)
    stacked = train_stacked([_model(s) for s, _, _ in RUNS], [ids for _, ids, _ in RUNS],
                            [cfg for _, _, cfg in RUNS], eval_sets={"val": _data(seed=9)}, patience=patience)
    if patience:  # the runs stop at different steps, each by its own rule
        assert len({r.steps for r in alone}) > 1
    for one, many in zip(alone, stacked):
        assert many.steps == one.steps and many.stopped_early == one.stopped_early
        assert list(many.history["step"]) == list(one.history["step"])
        for col in ("val", "batch_loss", "lr"):
            torch.testing.assert_close(torch.tensor(many.history[col].to_numpy()),
                                       torch.tensor(one.history[col].to_numpy()), **TOL, equal_nan=True)
        # the same function: the key's bias gets float noise for a gradient (softmax ignores it) and Adam turns
        # noise into steps, so the runs are compared by what they compute, not weight by weight
        x = _data(seed=8)[:64].view(4, 16)
        torch.testing.assert_close(many.model(x)[0], one.model(x)[0], **TOL)


def test_a_stack_differs_from_one_clip_over_every_run():
    """The comparison above can fail: clipping the stack's gradient as one vector gives other numbers."""
    stack = Stack([_model(s) for s, _, _ in RUNS])
    configs = [cfg for _, _, cfg in RUNS]
    groups = [{**g, "run": 0} for g in stack.groups(configs)]  # every run in one clip
    result = train(stack, stack.batches([ids for _, ids, _ in RUNS], [c.seed for c in configs], 16, 4),
                   configs[0], eval_sets={"val": _data(seed=9)}, groups=groups)
    alone = _alone(None)
    worst = max(abs(a - b) for one, many in zip(alone, stack.results(result))
                for a, b in zip(one.history["val"], many.history["val"]))
    assert worst > 1e-2


def test_a_stacked_penalty_reaches_only_its_own_run():
    models = [_model(0), _model(0)]
    stack = Stack(models)
    cfg = _cfg(max_iters=20, learning_rate=1e-2, grad_clip=0.0)

    def pull_up(m):
        return -m.transformer.wte.weight.mean() * 10

    train(stack, stack.batches([_data(), _data()], [0, 0], 16, 4), cfg, groups=stack.groups([cfg, cfg]),
          penalty=stack.penalty([pull_up, None]))
    alone = train(_model(0), _data(), cfg).model  # the run without a penalty, trained alone
    up, plain, lone = (m.transformer.wte.weight.mean().item() for m in (*models, alone))
    assert abs(plain - lone) < 1e-5  # the other run never felt the penalty
    assert up > lone + 0.05


def test_a_stack_refuses_what_it_cannot_train_together():
    with pytest.raises(ValueError, match="same architecture"):
        Stack([_model(0), GPT(replace(CFG, n_embd=32))])
    stack = Stack([_model(0), _model(1)])
    with pytest.raises(ValueError, match="must share max_iters"):
        stack.groups([_cfg(), _cfg(max_iters=40)])
    with pytest.raises(ValueError, match="one per run"):
        stack.batches([_data()])
