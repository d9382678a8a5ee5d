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
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn

from .checks import flag, id_tensor, outside_vocab, real, whole
from .presets import native_bf16

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
    decay: str = "cosine"  # after warmup: "cosine" (nanoGPT) or "linear" (with a short warmup, ULMFiT's slanted triangle)

    def __post_init__(self) -> None:
        """A clear error for a setting the loop cannot honour, naming the field (``replace`` checks again)."""
        for name, least in _WHOLE.items():
            value = getattr(self, name)
            if value is not None or name != "lr_decay_iters":
                setattr(self, name, whole(value, f"TrainConfig.{name}", least))
        if self.seed >= 2**64:
            raise ValueError(f"TrainConfig.seed must be below 2**64 (torch's largest seed), got {self.seed}")
        for name, (low, high, rule) in _REAL.items():
            value = getattr(self, name)
            if value is None and name == "min_lr":
                continue
            real(value, f"TrainConfig.{name}", rule, low, high)
        if self.min_lr is not None and self.min_lr > self.learning_rate:
            raise ValueError(f"TrainConfig.min_lr={self.min_lr} is above learning_rate={self.learning_rate}: the "
                             "schedule decays from learning_rate to min_lr; set min_lr below it (None: a tenth of it)")
        for name in ("compile", "amp", "progress", "log"):
            flag(getattr(self, name), f"TrainConfig.{name}")
        if self.decay not in DECAYS:
            raise ValueError(f"TrainConfig.decay must be one of {', '.join(map(repr, DECAYS))}, got {self.decay!r}")

    def to_dict(self) -> dict:
        return asdict(self)


DECAYS = ("cosine", "linear")
_WHOLE = {"max_iters": 0, "batch_size": 1, "block_size": 1, "warmup_iters": 0, "lr_decay_iters": 0,
          "eval_interval": 1, "eval_iters": 1, "seed": 0}  # TrainConfig's whole-number fields and their least values
_REAL = {"learning_rate": (0.0, math.inf, "a finite number >= 0"), "min_lr": (0.0, math.inf, "a finite number >= 0"),
         "weight_decay": (0.0, math.inf, "a finite number >= 0"), "beta1": (0.0, 1.0, "in [0, 1)"),
         "beta2": (0.0, 1.0, "in [0, 1)"), "grad_clip": (0.0, math.inf, "a finite number >= 0 (0 turns clipping off)")}


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
    # the step whose loss (or, at an evaluation, whose weights) became NaN or inf; the model then holds the
    # weights of its last good evaluation, step ``steps``, the last row of the history (a stack: see extras)
    diverged_at: int | None = None


class EarlyStopping:
    """An ``on_eval`` callback that stops training when ``metric`` has not improved for ``patience``
    evaluations, and keeps a copy of the best weights (notebook 03 onwards).

    >>> stop = EarlyStopping("val", patience=3)                      # doctest: +SKIP
    >>> result = train(model, ids, cfg, eval_sets={"val": val_ids}, on_eval=stop)  # doctest: +SKIP
    >>> stop.restore(result.model); stop.best, stop.best_step        # doctest: +SKIP
    """

    def __init__(self, metric: str = "val", patience: int = 3, min_delta: float = 0.0, keep_best: bool = True) -> None:
        patience = whole(patience, "EarlyStopping patience (evaluations without improvement)", 1)
        real(min_delta, "EarlyStopping min_delta", "a finite number >= 0")
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


class Measure:
    """An ``on_eval`` that adds measurements to each evaluation row, then asks ``then`` (an
    :class:`EarlyStopping` on one of them, say) whether to stop (notebook 10: a classifier's validation loss and
    accuracy, an encoder's masked-LM loss, none of which is a next-token loss on a token stream).

    Each measure is ``fn(model)`` returning a number, or a dict of named numbers; it runs in eval mode, without
    gradients. The row, with the measurements, is the loop's history row.

    >>> stop = EarlyStopping("val", patience=3)                                     # doctest: +SKIP
    >>> train(clf, batches, cfg, on_eval=Measure({"val": val_loss}, then=stop))     # doctest: +SKIP
    """

    def __init__(self, measures: dict[str, Callable[[nn.Module], object]], then: Callable[[dict], object] | None = None
                 ) -> None:
        if not isinstance(measures, dict) or not all(isinstance(k, str) and callable(f) for k, f in measures.items()):
            raise TypeError("measures must be a dict of name -> fn(model) returning a number (or a dict of them)")
        if then is not None and not callable(then):
            raise TypeError(f"then must be an on_eval callable (EarlyStopping, say), got {type(then).__name__}")
        self.measures, self.then = measures, then
        self._model: nn.Module | None = None

    @property
    def model(self) -> nn.Module | None:
        return self._model

    @model.setter
    def model(self, model: nn.Module) -> None:  # the loop sets it; EarlyStopping needs it to keep the best weights
        self._model = model
        if hasattr(self.then, "model"):
            self.then.model = model

    def __call__(self, row: dict) -> object:
        if self._model is None:
            raise RuntimeError("Measure needs the model: pass it to train(on_eval=...), which hands the model over")
        was = self._model.training
        self._model.eval()
        try:
            with torch.no_grad():
                for name, fn in self.measures.items():
                    value = fn(self._model)
                    for key, v in (value.items() if isinstance(value, dict) else [(name, value)]):
                        row[key] = float(v)
        finally:
            self._model.train(was)
        return self.then(row) if self.then is not None else None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``learning_rate``, then cosine decay to ``min_lr`` at ``lr_decay_iters`` (nanoGPT's schedule),
    or linear decay with ``decay="linear"`` (a short warmup and a linear decay make ULMFiT's slanted triangular
    rates, notebook 10)."""
    min_lr = cfg.learning_rate / 10 if cfg.min_lr is None else cfg.min_lr
    decay = cfg.max_iters if cfg.lr_decay_iters is None else cfg.lr_decay_iters
    if step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_iters + 1)
    if step >= decay:
        return min_lr
    ratio = (step - cfg.warmup_iters) / max(1, decay - cfg.warmup_iters)
    if cfg.decay == "linear":
        return cfg.learning_rate - ratio * (cfg.learning_rate - min_lr)
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
    if enabled and device.type == "cuda" and native_bf16(device):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def vocab_size_of(model: nn.Module) -> int | None:
    """The vocabulary size of ``model`` (its, or its first submodule's, ``config.vocab_size``: a GPT, a
    :class:`~tlteach.stack.Stack` of them, a compiled one), or None when it does not say."""
    for m in model.modules():
        v = getattr(getattr(m, "config", None), "vocab_size", None)
        if isinstance(v, numbers.Integral):
            return int(v)
    return None


def check_ids(ids: object, vocab_size: int | None, what: str, block_size: int | None = None) -> None:
    """A clear error unless ``ids`` is a 1-D tensor of integer token ids in ``[0, vocab_size)``, with at least
    ``block_size + 1`` of them; ``what`` names it in the message. One pass over the ids: call it once per
    stream, not per step."""
    id_tensor(ids, what, "encode the text first (e.g. data.encode_split)")
    if ids.dim() != 1:
        raise ValueError(f"{what} must be 1-D (one stream of token ids), got shape {tuple(ids.shape)}; "
                         "join the pieces with torch.cat or flatten them with .view(-1)")
    if block_size is not None:
        from .data import check_blocks

        check_blocks(ids, block_size, what)
    if ids.numel():
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or (vocab_size is not None and high >= vocab_size):
            raise outside_vocab(what, vocab_size, low, high)


def _check_penalty(extra: object) -> None:
    """A clear error for a first ``penalty(model)`` that is not one number to add to the loss."""
    if not (isinstance(extra, torch.Tensor) and extra.dim() == 0):
        got = f"a tensor of shape {tuple(extra.shape)}" if isinstance(extra, torch.Tensor) else repr(extra)
        raise TypeError(f"penalty(model) must return one number as a 0-D tensor (added to the loss), got {got:.80}")


def _check_batch(batch: object, vocab_size: int | None) -> None:
    """A clear error for a first batch from a batch function that the model cannot take: not ``(x, y)``, not
    integer ids, mismatched shapes, ids outside the vocabulary."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"batches(generator) must return (x, y), two tensors of token ids, got {type(batch).__name__}"
                        + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    x, y = batch
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.long, torch.int):
            got = f"dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"batches(generator) must return (x, y), two tensors of integer token ids, but {name} "
                            f"is {got}")
    labels = x.dim() in (2, 3) and y.shape == x.shape[:-1]  # one label per sequence: a classifier (notebook 10)
    if not labels and (x.shape != y.shape or x.dim() not in (2, 3)):
        raise ValueError(f"batches(generator) must return x and y of one shape (batch, time), or y of shape (batch,) "
                         f"for one label per sequence, got {tuple(x.shape)} and {tuple(y.shape)}")
    ids = [x] if labels else [x, y]  # y's labels are the classifier's to check, against its classes
    bad = (x < 0) if labels else (x < 0) | ((y < 0) & (y != -100))  # targets may be -100, cross-entropy's "ignore"
    if vocab_size is not None:
        for t in ids:
            bad = bad | (t >= vocab_size)
    if bool(bad.any()):
        raise ValueError(f"batches(generator) returned token ids outside [0, vocab_size={vocab_size}) (x from "
                         f"{int(x.min())} to {int(x.max())}, y from {int(y.min())} to {int(y.max())}); encode the "
                         "text with the model's tokenizer")
    if not labels and bool((y == -100).all()):
        raise ValueError("every target of the first batch is -100 (cross-entropy's 'ignore'), so its loss is "
                         "undefined (NaN) and nothing would be learned: a batch needs at least one target; check "
                         "how the batch function sets y (a masked-LM batch marks only the masked positions)")


@torch.no_grad()
def evaluate(model: nn.Module, ids: torch.Tensor, block_size: int, batch_size: int, eval_iters: int,
             amp: bool = True) -> float | list[float]:
    """Mean next-token loss on ``eval_iters`` batches of windows spread evenly over ``ids`` (the same
    windows every time, so successive evaluations differ only because the model did); for a
    :class:`~tlteach.stack.Stack`, a list with one loss per run."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"evaluate needs a torch model (nn.Module), got {type(model).__name__}")
    block_size = whole(block_size, "block_size", 1)
    batch_size, eval_iters = whole(batch_size, "batch_size", 1), whole(eval_iters, "eval_iters", 1)
    check_ids(ids, vocab_size_of(model), "the evaluation text (ids)", block_size)
    flag(amp, "amp")
    return _evaluate(model, ids, block_size, batch_size, eval_iters, amp)


@torch.no_grad()
def _evaluate(model: nn.Module, ids: torch.Tensor, block_size: int, batch_size: int, eval_iters: int,
              amp: bool = True) -> float | list[float]:
    """:func:`evaluate` without the checks (the loop checks each evaluation text once)."""
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
    return loss.item() if loss.dim() == 0 else loss.detach().cpu().double()  # float64 on the CPU (not MPS)


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

    The token streams are checked once, before the first step. A loss that becomes NaN or inf (too high a
    learning rate, a penalty that explodes) stops the run with a ``RuntimeWarning``: the model gets back the
    weights of its last evaluation (the loop keeps a copy of the trainable weights at each one), and the result
    says so (``diverged_at``). The check reads the loss the loop reads anyway, and the weights once per evaluation.

    ``model`` may be a :class:`~tlteach.stack.Stack` of runs (notebook 03's sweeps): its loss is one number per
    run, the loop backpropagates their sum, clips each run's gradient on its own, gives each run its own
    schedule (the ``schedule`` key of its groups), and the history holds one list per column, which
    :meth:`~tlteach.stack.Stack.results` splits into one history per run. A run whose loss becomes NaN or inf
    leaves the stack at its last evaluation (its weights restored), and the others go on.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from .stack import Stack

    eval_sets, hooks = _check_arguments(model, batches, cfg, eval_sets, penalty, groups, hooks, on_eval)
    vocab = vocab_size_of(model)
    if isinstance(batches, torch.Tensor):
        check_ids(batches, vocab, "the training text (batches)", cfg.block_size)
        batches = sampler(batches, cfg.block_size, cfg.batch_size)
        first_checked = True
    else:
        first_checked = False  # a batch function: its first batch is checked
    for name, ids in eval_sets.items():
        check_ids(ids, vocab, f"the evaluation text eval_sets[{name!r}]", cfg.block_size)
    device = next(model.parameters()).device
    torch.manual_seed(cfg.seed)  # dropout and anything else drawn from the global generator
    gen = torch.Generator().manual_seed(cfg.seed)
    opt_groups = list(groups) if groups is not None else param_groups(model, cfg.weight_decay)
    optimizer = make_optimizer(opt_groups, cfg, device)
    forward = torch.compile(model) if cfg.compile else model

    history: list[dict] = []
    start = time.perf_counter()
    train_time, tokens, step, done = 0.0, 0, 0, 0  # done: optimizer steps taken
    recent: list = []  # batch losses since the last evaluation (vectors for a stack of runs)
    interrupted = stopped = False
    if hasattr(on_eval, "model"):
        on_eval.model = model
    stack = model if isinstance(model, Stack) else None
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    units = ({i: [p for p in run.parameters() if id(p) in trained] for i, run in enumerate(stack.runs)}
             if stack is not None else {0: [p for g in optimizer.param_groups for p in g["params"]]})
    good: dict[int, tuple[int, list[torch.Tensor]]] = {}  # unit -> (step, its weights at its last good evaluation)
    diverged: dict[int, int] = {}  # unit -> the step where its loss or weights became NaN or inf

    def live() -> list[int]:
        """The units still training: the stack's active runs, or the model (until it diverges)."""
        return [u for u in (stack.active if stack is not None else [0]) if u not in diverged]

    def keep_good(step: int) -> list[int]:
        """Copy the weights of each live unit whose weights are finite; return the others."""
        now = live()
        if not now:
            return []
        finite = torch.stack([torch.stack([p.detach().isfinite().all() for p in units[u]] or
                                          [torch.tensor(True, device=device)]).all() for u in now])
        bad = [u for u, ok in zip(now, finite.tolist()) if not ok]  # the one host sync
        if bad and step == 0:
            raise ValueError("the model's weights hold NaN or inf before training" +
                             (f" (runs {bad} of the stack)" if stack is not None else "") +
                             "; load or initialise finite weights")
        with torch.no_grad():
            for u in (u for u in now if u not in bad):
                copies = good[u][1] if u in good else [torch.empty_like(p) for p in units[u]]
                for c, p in zip(copies, units[u]):
                    c.copy_(p)
                good[u] = (step, copies)
        return bad

    def give_up(bad: list[int], step: int, what: str) -> bool:
        """Restore each unit in ``bad`` to its last good weights and warn; True when nothing is left to train."""
        with torch.no_grad():
            for u in bad:
                for p, c in zip(units[u], good[u][1]):
                    p.copy_(c)
                diverged[u] = step
                if stack is not None:
                    stack.stop(u, good[u][0])
        who = f"run {bad[0] if len(bad) == 1 else bad} of the stack: " if stack is not None else ""
        warnings.warn(f"{who}the {what} became NaN or inf at step {step}; training stopped there and the weights "
                      f"of step {good[bad[0]][0]} (the last evaluation) are restored. Lower the learning rate (or "
                      "the penalty's strength) and train again", RuntimeWarning, stacklevel=3)
        return not live()

    def log_eval(step: int) -> bool:
        """Check and keep the weights, evaluate, record a row; True when training ends here."""
        nonlocal stopped
        bad = keep_good(step)
        if bad and give_up(bad, step, "weights"):
            return True
        row = {"step": step, "tokens": tokens, "lr": lr_at(min(step, cfg.max_iters - 1), cfg),
               "batch_loss": _plain(sum(recent) / len(recent)) if recent else float("nan")}
        for name, ids in eval_sets.items():
            row[name] = _evaluate(forward, ids, cfg.block_size, cfg.batch_size, cfg.eval_iters, cfg.amp)
        row["elapsed"] = time.perf_counter() - start
        history.append(row)
        recent.clear()
        if cfg.log:
            losses = ", ".join(f"{n} loss {row[n]:.4f}" for n in eval_sets)
            print(f"step {step}: {losses}" if losses else f"step {step}: batch loss {row['batch_loss']:.4f}")
        said = on_eval(row) if on_eval is not None else None
        if said is not None and not isinstance(said, (bool, np.bool_)):
            raise TypeError(f"on_eval(row) must return True (stop training), False or None, got {said!r:.80}")
        stopped = bool(said)
        return stopped

    bar = tqdm(total=cfg.max_iters, disable=not cfg.progress, desc="training", leave=True)
    model.train()
    try:
        ended = log_eval(0)
        for step in range(1, cfg.max_iters + 1):
            if ended:
                break
            for hook in hooks:
                hook(step, model)
            lr = lr_at(step - 1, cfg)
            for g in optimizer.param_groups:  # a stacked run's groups carry its own schedule
                own = lr_at(step - 1, g["schedule"]) if "schedule" in g else lr
                g["lr"] = own * g.get("lr_scale", 1.0)
            t0 = time.perf_counter()
            batch = batches(gen)
            if not first_checked:
                _check_batch(batch, vocab)
                first_checked = True
            x, y = batch
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast_for(device, cfg.amp):
                _, loss = forward(x, y)
            total = loss if loss.dim() == 0 else loss.nansum()  # a stack: every run's loss (NaN: stopped)
            if penalty is not None:
                extra = penalty(model)
                if step == 1:
                    _check_penalty(extra)
                total = total + extra
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip > 0:
                clip_per_run(optimizer.param_groups, cfg.grad_clip)
            optimizer.step()
            done = step
            loss_value = _number(loss)  # syncs the GPU, so the timing below is real
            train_time += time.perf_counter() - t0
            tokens += x.numel()
            recent.append(loss_value)
            bar.update(1)
            shown = loss_value if isinstance(loss_value, float) else float(loss_value.nanmean())
            bar.set_postfix(loss=f"{shown:.3f}", tok_s=f"{tokens / max(train_time, 1e-9):,.0f}", refresh=False)
            values = [loss_value] if stack is None else [float(loss_value[u]) for u in stack.active]
            bad = [u for u, v in zip(live(), values) if not math.isfinite(v)]  # a stopped run's NaN is not looked at
            if bad and give_up(bad, step, "loss"):
                break
            if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                ended = log_eval(step)
    except KeyboardInterrupt:
        interrupted = True
        optimizer.zero_grad(set_to_none=True)
        print(f"interrupted after {done} steps: returning the model and history so far")
    finally:
        bar.close()
        model.eval()
    steps = good[0][0] if stack is None and 0 in diverged else done  # a diverged model is back at its last evaluation
    return TrainResult(model=model, history=pd.DataFrame(history), interrupted=interrupted, steps=steps,
                       tokens_per_s=tokens / train_time if train_time else float("nan"), train_seconds=train_time,
                       stopped_early=stopped, diverged_at=min(diverged.values()) if diverged else None,
                       extras={"diverged": dict(diverged)} if stack is not None and diverged else {})


def _check_arguments(model: object, batches: object, cfg: object, eval_sets: object, penalty: object,
                     groups: object, hooks: object, on_eval: object) -> tuple[dict[str, torch.Tensor], tuple]:
    """A clear ``TypeError``/``ValueError`` for an argument of :func:`train` of the wrong kind; the evaluation
    sets as a dict and the hooks as a tuple."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"train needs a torch model (nn.Module), got {type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise ValueError("the model has no parameters to train")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.__post_init__()  # again: a notebook may have changed a field (cfg.eval_interval = 0) since it was built
    if groups is not None:
        _check_groups(model, groups)
    if not (isinstance(batches, torch.Tensor) or callable(batches)):
        raise TypeError(f"batches must be a token stream (a 1-D tensor) or a function of a torch.Generator "
                        f"returning (x, y), got {type(batches).__name__}")
    if eval_sets is not None and not isinstance(eval_sets, dict):
        raise TypeError(f"eval_sets must map names to token streams, e.g. {{'val': val_ids}}, got "
                        f"{type(eval_sets).__name__}")
    eval_sets = dict(eval_sets or {})
    for name in eval_sets:
        if not isinstance(name, str) or name in ("step", "tokens", "lr", "batch_loss", "elapsed"):
            raise ValueError(f"eval_sets name {name!r} must be a str other than the history's own columns "
                             "(step, tokens, lr, batch_loss, elapsed); name it e.g. 'val'")
    for name, value in (("penalty", penalty), ("on_eval", on_eval)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a function (or None), got {type(value).__name__}")
    if callable(hooks) or not isinstance(hooks, (list, tuple)) or not all(callable(h) for h in hooks):
        raise TypeError(f"hooks must be a list of functions hook(step, model), got {hooks!r}")
    return eval_sets, tuple(hooks)


def _check_groups(model: nn.Module, groups: object) -> None:
    """A clear error unless ``groups`` is a non-empty list of optimizer groups (dicts with ``params``), each
    holding parameters of ``model`` that it trains (another model's parameters would leave this one unchanged)."""
    if isinstance(groups, (str, dict)) or not isinstance(groups, (list, tuple)) or not groups:
        raise TypeError(f"groups must be a non-empty list of dicts such as [{{'params': [...], 'lr_scale': 0.5}}] "
                        f"(train.param_groups builds the default), got {groups!r:.80}")
    own = {id(p) for p in model.parameters()}
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or "params" not in g:
            raise TypeError(f"groups[{i}] must be a dict with a 'params' list, got {g!r:.80}")
        params = [g["params"]] if isinstance(g["params"], torch.Tensor) else g["params"]
        if not isinstance(params, (list, tuple)) or not all(isinstance(p, torch.Tensor) for p in params):
            raise TypeError(f"groups[{i}]['params'] must be a list of the model's parameters, got "
                            f"{type(g['params']).__name__}")
        if any(id(p) not in own for p in params):
            raise ValueError(f"groups[{i}] holds parameters that are not the model's (another model's, or a copy): "
                             "training them would leave this model unchanged; build the groups from this model")
