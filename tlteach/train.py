"""One training loop for the whole course (notebook 02; reused by notebooks 03 to 09).

Pretraining, fine-tuning, EWC, replay and LoRA all call :func:`train`; they differ only in what they pass:
``penalty`` (an extra loss term, e.g. EWC's), ``batches`` (a data mix, e.g. replay of source text), and
which parameters have ``requires_grad`` (e.g. LoRA's adapters). The loop does AdamW with warmup then cosine
decay, gradient clipping, bf16 autocast on CUDA, optional ``torch.compile``; it evaluates on any number of
named sets at a fixed interval and returns the history as a table. The Jupyter stop button (a
``KeyboardInterrupt``) ends the run cleanly and returns what was trained so far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

Batches = Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainConfig:
    """Training settings; the names follow nanoGPT where the idea is the same."""

    max_iters: int = 1000
    batch_size: int = 32
    block_size: int = 128
    learning_rate: float = 1e-3
    min_lr: float | None = None  # default: learning_rate / 10
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # default: max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 turns clipping off
    eval_interval: int = 100
    eval_iters: int = 20  # batches per evaluation set
    compile: bool = False
    amp: bool = True  # bf16 autocast where a CUDA GPU supports it
    seed: int = 0
    progress: bool = True  # a tqdm progress bar
    log: bool = False  # print "step N: train loss X, val loss Y" at each evaluation

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, its history (one row per evaluation) and run figures."""

    model: nn.Module
    history: object  # a pandas DataFrame: step, tokens, lr, batch_loss, one column per evaluation set, elapsed
    interrupted: bool = False
    steps: int = 0
    tokens_per_s: float = float("nan")
    train_seconds: float = 0.0
    stopped_early: bool = False  # ``on_eval`` asked to stop (e.g. :class:`EarlyStopping`)
    extras: dict = field(default_factory=dict)


class EarlyStopping:
    """An ``on_eval`` callback that stops training when ``metric`` has not improved for ``patience``
    evaluations, and keeps a copy of the best weights (notebook 03 onwards).

    >>> stop = EarlyStopping("val", patience=3)                      # doctest: +SKIP
    >>> result = train(model, ids, cfg, eval_sets={"val": val_ids}, on_eval=stop)  # doctest: +SKIP
    >>> stop.restore(result.model); stop.best, stop.best_step        # doctest: +SKIP
    """

    def __init__(self, metric: str = "val", patience: int = 3, min_delta: float = 0.0, keep_best: bool = True) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1 evaluation, got {patience}")
        self.metric, self.patience, self.min_delta, self.keep_best = metric, patience, min_delta, keep_best
        self.best, self.best_step, self.bad_evals = math.inf, 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.model: nn.Module | None = None  # set by :func:`train`

    def __call__(self, row: dict) -> bool:
        """Record one evaluation row; return True when training should stop."""
        if self.metric not in row:
            raise KeyError(f"EarlyStopping watches {self.metric!r}, but the evaluation sets are "
                           f"{[k for k in row if k not in ('step', 'tokens', 'lr', 'batch_loss', 'elapsed')]}")
        value = row[self.metric]
        if value < self.best - self.min_delta:
            self.best, self.best_step, self.bad_evals = value, int(row["step"]), 0
            if self.keep_best and self.model is not None:
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return False
        self.bad_evals += 1
        return self.bad_evals >= self.patience

    def restore(self, model: nn.Module) -> nn.Module:
        """Load the best weights seen back into ``model`` (a no-op when none were kept)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``learning_rate``, then cosine decay to ``min_lr`` at ``lr_decay_iters`` (nanoGPT's schedule)."""
    min_lr = cfg.learning_rate / 10 if cfg.min_lr is None else cfg.min_lr
    decay = cfg.max_iters if cfg.lr_decay_iters is None else cfg.lr_decay_iters
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    if step >= decay:
        return min_lr
    ratio = (step - cfg.warmup_iters) / max(1, decay - cfg.warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - min_lr)


def sampler(ids: torch.Tensor, block_size: int, batch_size: int) -> Batches:
    """Batches of random windows from one token stream (see ``data.get_batch``)."""
    from .data import check_blocks, get_batch

    check_blocks(ids, block_size)
    return lambda g: get_batch(ids, block_size, batch_size, generator=g)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: matrices decay, biases/LayerNorm/1-D parameters do not (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (every requires_grad is False)")
    return decay_groups(params, weight_decay)


def decay_groups(params: Sequence[nn.Parameter], weight_decay: float, **extra) -> list[dict]:
    """``params`` split as :func:`param_groups` splits them (matrices decay, vectors do not), each group with
    ``extra`` keys (e.g. an ``lr_scale``, notebook 08); empty groups are left out."""
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, **extra},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, **extra}]
    return [g for g in groups if g["params"]]


def make_optimizer(groups: Sequence[dict], cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, with the fused kernel where this torch has one for the device (faster, same maths)."""
    try:
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))


def autocast_for(device: torch.device, enabled: bool = True):
    """bf16 autocast on a CUDA GPU that supports it; a no-op context elsewhere."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, ids: torch.Tensor, block_size: int, batch_size: int, eval_iters: int,
             amp: bool = True) -> float | list[float]:
    """Mean next-token loss on ``eval_iters`` batches of windows spread evenly over ``ids`` (the same
    windows every time, so successive evaluations differ only because the model did); for a
    :class:`~tlteach.stack.Stack`, a list with one loss per run."""
    from .data import check_blocks

    check_blocks(ids, block_size, "the evaluation text")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = eval_iters * batch_size
    starts = torch.linspace(0, len(ids) - block_size - 1, n).long()
    offsets = torch.arange(block_size)
    total = 0.0
    for chunk in starts.split(batch_size):
        x = ids[chunk[:, None] + offsets].to(device)
        y = ids[chunk[:, None] + offsets + 1].to(device)
        with autocast_for(device, amp):
            _, loss = model(x, y)
        total = total + _number(loss) * len(chunk)
    model.train(was_training)
    return _plain(total / n)


def _number(loss: torch.Tensor) -> float | torch.Tensor:
    """A loss as a Python number, or, for a :class:`~tlteach.stack.Stack` (one loss per run), a float64 vector."""
    return loss.item() if loss.dim() == 0 else loss.detach().double().cpu()


def _plain(value: float | torch.Tensor) -> float | list[float]:
    """A number as a float, a vector of them (one per run of a stack) as a list."""
    return value.tolist() if isinstance(value, torch.Tensor) else value


def clip_per_run(groups: Sequence[dict], max_norm: float) -> None:
    """Clip the gradient norm of each run's parameters to ``max_norm``: the groups of one model are one run; a
    :class:`~tlteach.stack.Stack`'s groups carry a ``run`` number, and each run is clipped on its own."""
    runs: dict[int, list[torch.Tensor]] = {}
    for g in groups:
        runs.setdefault(g.get("run", 0), []).extend(g["params"])
    for params in runs.values():
        torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


def train(model: nn.Module, batches: Batches | torch.Tensor, cfg: TrainConfig,
          eval_sets: dict[str, torch.Tensor] | None = None,
          penalty: Callable[[nn.Module], torch.Tensor] | None = None,
          groups: Sequence[dict] | None = None,
          hooks: Sequence[Callable[[int, nn.Module], None]] = (),
          on_eval: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``model`` for ``cfg.max_iters`` steps; the one loop of the course (notebook 02 onwards).

    ``batches`` is a token stream (sampled with ``cfg.block_size``/``cfg.batch_size``) or a function of a
    ``torch.Generator`` returning ``(x, y)`` (a data mix). ``eval_sets`` maps names to token streams,
    evaluated at step 0, every ``cfg.eval_interval`` steps and at the end. ``penalty(model)`` is added
    to the loss. ``groups`` overrides the optimizer's parameter groups (an ``lr_scale`` key scales a
    group's learning rate). Each hook is called as ``hook(step, model)`` before every step, and
    ``on_eval(row)`` after every evaluation (a live loss plot, say); when it returns True, training stops
    there (:class:`EarlyStopping` does this).

    ``model`` may be a :class:`~tlteach.stack.Stack` of runs (notebook 03's sweeps): its loss is one number per
    run, the loop backpropagates their sum, clips each run's gradient on its own, gives each run its own
    schedule (the ``schedule`` key of its groups), and the history holds one list per column, which
    :meth:`~tlteach.stack.Stack.results` splits into one history per run.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if isinstance(batches, torch.Tensor):
        batches = sampler(batches, cfg.block_size, cfg.batch_size)
    eval_sets = dict(eval_sets or {})
    device = next(model.parameters()).device
    torch.manual_seed(cfg.seed)  # dropout and anything else drawn from the global generator
    gen = torch.Generator().manual_seed(cfg.seed)
    opt_groups = list(groups) if groups is not None else param_groups(model, cfg.weight_decay)
    optimizer = make_optimizer(opt_groups, cfg, device)
    forward = torch.compile(model) if cfg.compile else model

    history: list[dict] = []
    start = time.perf_counter()
    train_time, tokens, step = 0.0, 0, 0
    recent: list = []  # batch losses since the last evaluation (vectors for a stack of runs)
    interrupted = stopped = False
    if hasattr(on_eval, "model"):
        on_eval.model = model

    def log_eval(step: int) -> bool:
        row = {"step": step, "tokens": tokens, "lr": lr_at(min(step, cfg.max_iters - 1), cfg),
               "batch_loss": _plain(sum(recent) / len(recent)) if recent else float("nan")}
        for name, ids in eval_sets.items():
            row[name] = evaluate(forward, ids, cfg.block_size, cfg.batch_size, cfg.eval_iters, cfg.amp)
        row["elapsed"] = time.perf_counter() - start
        history.append(row)
        recent.clear()
        if cfg.log:
            losses = ", ".join(f"{n} loss {row[n]:.4f}" for n in eval_sets)
            print(f"step {step}: {losses}" if losses else f"step {step}: batch loss {row['batch_loss']:.4f}")
        return bool(on_eval(row)) if on_eval is not None else False

    bar = tqdm(total=cfg.max_iters, disable=not cfg.progress, desc="training", leave=True)
    model.train()
    try:
        stopped = log_eval(0)
        for step in range(1, cfg.max_iters + 1):
            if stopped:
                step -= 1
                break
            for hook in hooks:
                hook(step, model)
            lr = lr_at(step - 1, cfg)
            for g in optimizer.param_groups:  # a stacked run's groups carry its own schedule
                own = lr_at(step - 1, g["schedule"]) if "schedule" in g else lr
                g["lr"] = own * g.get("lr_scale", 1.0)
            t0 = time.perf_counter()
            x, y = batches(gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast_for(device, cfg.amp):
                _, loss = forward(x, y)
            total = loss if loss.dim() == 0 else loss.nansum()  # a stack: every run's loss (NaN: stopped)
            total = total + penalty(model) if penalty is not None else total
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip > 0:
                clip_per_run(optimizer.param_groups, cfg.grad_clip)
            optimizer.step()
            loss_value = _number(loss)  # syncs the GPU, so the timing below is real
            train_time += time.perf_counter() - t0
            tokens += x.numel()
            recent.append(loss_value)
            bar.update(1)
            shown = loss_value if isinstance(loss_value, float) else float(loss_value.nanmean())
            bar.set_postfix(loss=f"{shown:.3f}", tok_s=f"{tokens / max(train_time, 1e-9):,.0f}", refresh=False)
            if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                stopped = log_eval(step)
    except KeyboardInterrupt:
        interrupted = True
        optimizer.zero_grad(set_to_none=True)
        print(f"interrupted at step {step}: returning the model and history so far")
    finally:
        bar.close()
        model.eval()
    steps_done = step if not interrupted else max(step - 1, 0)
    return TrainResult(model=model, history=pd.DataFrame(history), interrupted=interrupted, steps=steps_done,
                       tokens_per_s=tokens / train_time if train_time else float("nan"), train_seconds=train_time,
                       stopped_early=stopped)
