"""Many runs trained as one: a :class:`Stack` of models that ``train.train`` trains like any model (notebooks 03
to 08, where a sweep trains dozens of small models).

A sweep's runs often share an architecture and a step count and differ in what they start from, what data they
see and their learning rate. A :class:`Stack` holds them side by side: one forward pass computes every run's loss
at once (``torch.func.functional_call`` under ``vmap`` over the runs' stacked weights), the loop backpropagates
their sum (each run's weights get only their own loss's gradient), and the optimizer gives each run its own
parameter groups, so each has its own learning-rate schedule and gradient clipping. Each run draws its batches
from its own generator (:meth:`Stack.batches`) and stops by its own rule (:meth:`Stack.early_stopping`); a run
that has stopped leaves the stack, so the others go on without it. A run trained in a stack gives the same
losses, to float tolerance (bf16's under a GPU's autocast), as the same run trained alone (``tests/test_stack.py``,
``tests/test_gpu_shapes.py``), so a learner can always train one run on its own and get the number the sweep
reported.

What it buys depends on the hardware. On a GPU, one small model's step is a few tiny kernels, mostly launch
latency, and a stack fills the device. On a CPU a small model's step is already compute-bound, and a stack saves
little or nothing (``benchmarks/stacked_sweep.py`` prints the figures), so the studies stack runs on a GPU only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn as nn

from .train import Batches, EarlyStopping, TrainConfig, TrainResult, decay_groups, lr_at, sampler, train

_SHAPE_FIELDS = ("max_iters", "batch_size", "block_size", "eval_interval", "eval_iters", "weight_decay", "beta1",
                 "beta2", "grad_clip", "compile", "amp")


def shared_settings(cfg: TrainConfig) -> tuple:
    """What runs in one stack must share (steps, batch, context, evaluation, optimizer settings): runs whose
    configs give the same tuple can be stacked."""
    return tuple(getattr(cfg, f) for f in _SHAPE_FIELDS)


class Stack(nn.Module):
    """Models of one architecture trained side by side by ``train.train`` (notebook 03).

    Its forward takes one batch per active run, ``(runs, B, T)``, or one batch for all of them, ``(B, T)`` (how
    ``train.evaluate`` calls it), and returns the logits and one loss per run: a vector of length ``len(stack)``
    with NaN where a run has stopped.

    >>> stack = Stack([source_model("scratch"), source_model("shakespeare")])          # doctest: +SKIP
    >>> result = train(stack, stack.batches([ids, ids]), cfg, groups=stack.groups([cfg1, cfg2]),
    ...                eval_sets={"val": val_ids}, on_eval=stack.early_stopping("val", 3))  # doctest: +SKIP
    >>> first, second = stack.results(result)                                          # doctest: +SKIP
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("a Stack needs at least one model")
        shapes = [[(n, p.shape) for n, p in m.named_parameters()] for m in models]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("every model in a Stack must have the same architecture (the same parameters, "
                             "names and shapes); train models of different sizes one by one")
        self.runs = nn.ModuleList(models)
        self.active: list[int] = list(range(len(models)))
        self.stopped_at: dict[int, int] = {}  # run -> the step where it left the stack
        self._skeleton = [copy.deepcopy(models[0]).to("meta")]  # the architecture, with no weights (not a submodule)
        self._names = [n for n, _ in models[0].named_parameters()]
        self._ties = _tied_names(models[0])
        self._linear_biases = {f"{n}.bias" for n, m in models[0].named_modules()
                               if isinstance(m, nn.Linear) and m.bias is not None}
        self.configs: list[TrainConfig] | None = None  # each run's config, once :meth:`groups` has them

    def __len__(self) -> int:
        return len(self.runs)

    def stop(self, run: int, step: int) -> None:
        """Take ``run`` out of the stack at ``step``: it is no longer trained or evaluated."""
        if run in self.active:
            self.active.remove(run)
            self.stopped_at[run] = step

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits ``(active runs, B, T, vocab)`` and one loss per run (NaN for a run that has stopped)."""
        from torch.func import functional_call, vmap

        if not self.active:
            raise RuntimeError("every run in the stack has stopped; there is nothing left to train")
        params = {n: torch.stack([self.runs[i].get_parameter(n) for i in self.active]) for n in self._names}
        low = _matmul_dtype(idx.device)
        if low != torch.float32:  # under vmap, autocast casts a Linear's matmul, not its bias, so the output would be
            # fp32 (pytorch/pytorch#192617): the biases are cast here, as F.linear casts them for a run alone
            params = {n: p.to(low) if n in self._linear_biases else p for n, p in params.items()}
        skeleton = self._skeleton[0]
        skeleton.train(self.training)

        def one(p: dict, x: torch.Tensor, y: torch.Tensor | None):
            p = {**p, **{tied: p[name] for tied, name in self._ties.items()}}
            return functional_call(skeleton, p, (x, y))

        shared = idx.dim() == 2  # one batch for every run (evaluation)
        dims = (0, None if shared else 0, None if targets is None or targets.dim() == 2 else 0)
        with _attention_for(idx.device):
            logits, loss = vmap(one, in_dims=dims, randomness="different")(params, idx, targets)
        if loss is None:
            return logits, None
        every = torch.full((len(self),), math.nan, device=loss.device, dtype=loss.dtype)
        return logits, every.index_put((torch.tensor(self.active, device=loss.device),), loss)

    # ------------------------------------------------------------------ what the loop's plugs get
    def groups(self, configs: Sequence[TrainConfig], base: TrainConfig | None = None) -> list[dict]:
        """The optimizer's parameter groups: each run's own (decay and no-decay), each with the run's number
        (so the loop clips each run's gradient on its own) and its ``schedule``, the run's config, whose
        learning rate, warmup and decay the loop follows for that run. The configs must agree on everything
        else (steps, batch, evaluation, optimizer settings): those the loop takes from ``base``."""
        if len(configs) != len(self):
            raise ValueError(f"{len(configs)} configs for a stack of {len(self)} runs; give one per run")
        base = base or configs[0]
        for c in configs:
            differ = [f for f in _SHAPE_FIELDS if getattr(c, f) != getattr(base, f)]
            if differ:
                raise ValueError(f"runs in one stack must share {', '.join(differ)}; they may differ in learning "
                                 "rate, schedule and seed. Stack the runs that agree, or train them one by one")
        self.configs = list(configs)
        out = []
        for i, (model, c) in enumerate(zip(self.runs, configs)):
            params = [p for p in model.parameters() if p.requires_grad]
            out += decay_groups(params, c.weight_decay, run=i, schedule=c)
        return out

    def batches(self, streams: Sequence[torch.Tensor | Batches], seeds: Sequence[int] | None = None,
                block_size: int | None = None, batch_size: int | None = None) -> Batches:
        """One batch per active run, ``(runs, B, T)``: run ``i`` draws from ``streams[i]`` (a token stream or a
        batch function) with its own generator seeded ``seeds[i]``, exactly the batches it would draw alone
        (``train.train`` seeds a run's generator with its config's seed)."""
        if len(streams) != len(self):
            raise ValueError(f"{len(streams)} data streams for a stack of {len(self)} runs; give one per run")
        fns = [s if callable(s) else sampler(s, block_size, batch_size) for s in streams]
        gens = [torch.Generator().manual_seed(s) for s in (seeds or [0] * len(self))]

        def draw(_: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            pairs = [fns[i](gens[i]) for i in self.active]
            return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])

        return draw

    def penalty(self, penalties: Sequence[Callable[[nn.Module], torch.Tensor] | None]) -> Callable:
        """One penalty for the loop: the sum of each active run's own (``None``: that run has none)."""
        def total(_: nn.Module) -> torch.Tensor:
            terms = [penalties[i](self.runs[i]) for i in self.active if penalties[i] is not None]
            return sum(terms) if terms else torch.zeros((), device=next(self.parameters()).device)
        return total

    def early_stopping(self, metric: str = "val", patience: int = 3) -> StackStopping:
        """An ``on_eval`` for the loop: each run has its own :class:`~tlteach.train.EarlyStopping` on ``metric``
        and leaves the stack when it stops; training ends when every run has stopped."""
        return StackStopping(self, metric, patience)

    def results(self, result: TrainResult) -> list[TrainResult]:
        """The loop's result split into one per run: that run's model, its history up to where it stopped
        (one number per column), its steps, and its share of the training time."""
        import pandas as pd

        h = result.history
        diverged = result.extras.get("diverged", {})  # run -> the step its loss became NaN or inf
        total_steps = sum(self.stopped_at.get(i, result.steps) for i in range(len(self))) or 1
        out = []
        for i, model in enumerate(self.runs):
            steps = self.stopped_at.get(i, result.steps)
            rows = h[h["step"] <= steps]
            mine = pd.DataFrame({c: [v[i] if isinstance(v, list) else v for v in rows[c]] for c in h.columns})
            if self.configs is not None:  # the run's own learning rate, where the loop recorded the base's
                own = self.configs[i]
                mine["lr"] = [lr_at(min(int(s), own.max_iters - 1), own) for s in mine["step"]]
            share = steps / total_steps
            out.append(TrainResult(model=model, history=mine, interrupted=result.interrupted, steps=steps,
                                   tokens_per_s=result.tokens_per_s, train_seconds=result.train_seconds * share,
                                   stopped_early=i in self.stopped_at and i not in diverged,
                                   diverged_at=diverged.get(i), extras={"stacked": len(self)}))
        return out


class StackStopping:
    """Early stopping for each run of a :class:`Stack` (see :meth:`Stack.early_stopping`)."""

    def __init__(self, stack: Stack, metric: str = "val", patience: int = 3) -> None:
        self.stack = stack
        self.stops = [EarlyStopping(metric, patience) for _ in range(len(stack))]
        for stop, model in zip(self.stops, stack.runs):
            stop.model = model

    def __call__(self, row: dict) -> bool:
        for i in list(self.stack.active):
            if self.stops[i]({k: v[i] if isinstance(v, list) else v for k, v in row.items()}):
                self.stack.stop(i, int(row["step"]))
        return not self.stack.active

    def restore(self) -> None:
        """Load each run's best weights back into it."""
        for stop, model in zip(self.stops, self.stack.runs):
            stop.restore(model)


def _tied_names(model: nn.Module) -> dict[str, str]:
    """Parameter names that share a tensor with an earlier name (GPT's ``lm_head.weight`` -> ``wte``'s)."""
    seen: dict[int, str] = {}
    ties = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            ties[name] = seen[id(p)]
        else:
            seen[id(p)] = name
    return ties


def _matmul_dtype(device: torch.device) -> torch.dtype:
    """The dtype of an fp32 matmul here: autocast's (bf16 in the loop on a GPU), or fp32 without autocast."""
    one = torch.ones(1, 1, device=device)
    return (one @ one).dtype


def _attention_for(device: torch.device):
    """On a CPU, attention in plain matrix products (``vmap`` has no rule for the fused CPU kernel)."""
    if device.type != "cpu":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def train_stacked(models: Sequence[nn.Module], streams: Sequence[torch.Tensor | Batches],
                  configs: Sequence[TrainConfig], eval_sets: dict[str, torch.Tensor] | None = None,
                  patience: int | None = None, metric: str = "val", progress: bool = False) -> list[TrainResult]:
    """Train ``models[i]`` on ``streams[i]`` with ``configs[i]`` for every ``i``, as one :class:`Stack` through
    ``train.train``, each run with early stopping on ``metric`` when ``patience`` is given (its best weights
    restored); one result per run, as ``train.train`` would have returned it (notebook 03)."""
    stack = Stack(models)
    base = replace(configs[0], progress=progress, log=False)
    stop = stack.early_stopping(metric, patience) if patience else None
    result = train(stack, stack.batches(streams, [c.seed for c in configs], base.block_size, base.batch_size),
                   base, eval_sets=eval_sets, groups=stack.groups(configs, base), on_eval=stop)
    results = stack.results(result)
    if stop is not None:
        stop.restore()
        for r, one in zip(results, stop.stops):
            r.extras.update(best=one.best, best_step=one.best_step)
    return results


__all__ = ["Stack", "StackStopping", "shared_settings", "train_stacked"]
