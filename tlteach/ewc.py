"""Elastic Weight Consolidation: fine-tune on the target without forgetting the source (notebook 06).

Fine-tuning moves every weight to suit the new text, and the model forgets the old one. EWC (Kirkpatrick et al.
2017) adds a penalty that pulls each weight back to its old value theta*, harder for the weights that mattered
for the old text::

    penalty = lam / 2 * sum_i F_i * (theta_i - theta*_i) ** 2

``F_i``, how much weight ``i`` mattered, is the diagonal of the Fisher information: the *mean over examples
of the squared gradient* of an example's log-likelihood. A weight whose nudge changes the log-likelihood of
many examples a lot gets a big ``F_i``; a weight the old text never used gets ``F_i`` near 0 and is free to
move. Two flavours: the *empirical* Fisher takes the gradient at the observed next tokens; the *true* Fisher
at tokens sampled from the model's own predictions (the Fisher of the model's distribution, which is what
the theory asks for). Mind the order: the mean of the squares, not the square of the mean gradient. At a
trained model the mean gradient is near zero though each example's gradient is not
(:func:`squared_mean_gradient` shows the mistake).

:func:`fisher_diagonal` gets all per-example gradients of a batch at once with ``torch.func`` (``vmap`` of
``grad``); :func:`fisher_reference` does the same with a Python loop, slowly, so you can check it. With
``F = 1`` everywhere (:func:`flat_fisher`) EWC is the plain L2 pull to the old weights, the baseline EWC
has to beat.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .checks import real, whole
from .data import check_blocks, get_batch
from .train import check_ids, vocab_size_of

try:  # attention written out in plain matmuls, which vmap batches (the fused kernels it would run one by one)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def _batchable_attention():
        return sdpa_kernel(SDPBackend.MATH)
except ImportError:  # torch < 2.3
    from contextlib import nullcontext as _batchable_attention

KINDS = ("empirical", "true")
_CHUNK = 32  # windows per forward pass where the result must not depend on a batch size (sampling, mean gradient)


def windows(ids: torch.Tensor, n_examples: int, block_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_examples`` windows ``x`` of ``block_size`` tokens at seeded random starts in ``ids``, and their next
    tokens ``y`` (``x`` shifted by one): the examples of the Fisher (notebook 06)."""
    whole(n_examples, "n_examples", 1)
    check_blocks(ids, block_size, "the text for the Fisher")
    return get_batch(ids, block_size, n_examples, generator=torch.Generator().manual_seed(seed), device=ids.device)


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}  # the tied lm_head is listed once
    if not params:
        raise ValueError("the model has no trainable parameters (every requires_grad is False)")
    return params


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside the block; the model's own mode restored after. Every Fisher starts here,
    so this is where a model that is not one gets its clear error."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"the Fisher needs the torch model (nn.Module) it is measured on, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def _sample_targets(model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """One next token per position, drawn from the model's own predictions (for the true Fisher)."""
    g = torch.Generator().manual_seed(seed)
    ys = []
    for xb in x.split(_CHUNK):
        logits, _ = model(xb)
        probs = F.softmax(logits.float(), dim=-1).view(-1, logits.size(-1)).cpu()
        ys.append(torch.multinomial(probs, 1, generator=g).view(xb.shape))
    return torch.cat(ys).to(x.device)


def _examples(model: nn.Module, ids: torch.Tensor, n_examples: int, block_size: int | None, kind: str,
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows and targets every Fisher of this module uses, on the model's device."""
    if kind not in KINDS:
        raise ValueError(f"unknown Fisher kind {kind!r}; the kinds are: {', '.join(KINDS)}")
    block_size = model.config.block_size if block_size is None else block_size
    # the ids' values are checked here: under vmap the model cannot look at them
    check_ids(ids, vocab_size_of(model), "the text for the Fisher (ids)", whole(block_size, "block_size", 1))
    device = next(model.parameters()).device
    x, y = (t.to(device) for t in windows(ids, n_examples, block_size, seed))
    return x, (_sample_targets(model, x, seed) if kind == "true" else y)


def fisher_diagonal(model: nn.Module, ids: torch.Tensor, n_examples: int = 256, block_size: int | None = None,
                    kind: str = "empirical", batch_size: int = 32, seed: int = 0,
                    progress: bool = False) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of every trainable parameter: the mean over ``n_examples`` windows of ``ids`` of the
    squared gradient of a window's log-likelihood (minus its mean next-token loss) (notebook 06).

    ``kind="empirical"`` scores the observed next tokens, ``kind="true"`` tokens sampled from the model (one per
    position, seeded). Per-example gradients come ``batch_size`` at a time from ``vmap(grad(...))``.
    """
    whole(batch_size, "batch_size", 1)
    from tqdm.auto import tqdm

    with _eval_mode(model), _batchable_attention():
        x, y = _examples(model, ids, n_examples, block_size, kind, seed)
        params = {n: p.detach() for n, p in _trainable(model).items()}

        def log_likelihood(params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            _, loss = functional_call(model, params, (x[None], y[None]))  # one window as a batch of one
            return -loss

        per_example_grads = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
        fisher = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()}
        chunks = list(zip(x.split(batch_size), y.split(batch_size)))
        # the bar stays when done (leave=True): a bar closed on finishing is stored in a notebook half-drawn
        for xb, yb in tqdm(chunks, desc=f"{kind} Fisher", disable=not progress):
            for n, g in per_example_grads(params, xb, yb).items():
                fisher[n] += g.float().pow(2).sum(dim=0)
    return {n: f / n_examples for n, f in fisher.items()}


def fisher_reference(model: nn.Module, ids: torch.Tensor, n_examples: int, block_size: int | None = None,
                     kind: str = "empirical", seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`fisher_diagonal` the slow obvious way: one window at a time, backward, square, average (notebook 06).
    Same windows and targets, so the two agree to float tolerance. It leaves the model's ``.grad`` alone."""
    with _eval_mode(model):
        x, y = _examples(model, ids, n_examples, block_size, kind, seed)
        params = _trainable(model)
        fisher = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()}
        for i in range(n_examples):
            _, loss = model(x[i:i + 1], y[i:i + 1])
            grads = torch.autograd.grad(-loss, list(params.values()))  # backward() without touching .grad
            for n, g in zip(params, grads):
                fisher[n] += g.float().pow(2)
    return {n: f / n_examples for n, f in fisher.items()}


def squared_mean_gradient(model: nn.Module, ids: torch.Tensor, n_examples: int, block_size: int | None = None,
                          seed: int = 0) -> dict[str, torch.Tensor]:
    """The common mistake: the square of the mean gradient over the same windows, not the mean of the squares.
    Never larger, entry by entry, and near zero at a trained model (notebook 06)."""
    with _eval_mode(model):
        x, y = _examples(model, ids, n_examples, block_size, "empirical", seed)
        params = _trainable(model)
        total = [torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in params.values()]
        for xb, yb in zip(x.split(_CHUNK), y.split(_CHUNK)):
            _, loss = model(xb, yb)
            grads = torch.autograd.grad(-loss * len(xb) / n_examples, list(params.values()))
            for t, g in zip(total, grads):
                t += g.float()
    return {n: t.pow(2) for n, t in zip(params, total)}


def normalise(fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Fisher scaled to mean 1 over all its entries, so that ``lam`` means the same for any model (notebook 06)."""
    total = sum(float(f.detach().cpu().double().sum()) for f in fisher.values())  # float64 on the CPU (not MPS)
    count = sum(f.numel() for f in fisher.values())
    if not math.isfinite(total) or any(bool((f < 0).any()) for f in fisher.values()):
        raise ValueError("the Fisher holds NaN, inf or negative entries (a squared gradient is finite and >= 0): "
                         "measure it again on a model with finite weights")
    if not total > 0:
        raise ValueError("the Fisher is zero everywhere (or empty): there is nothing to normalise")
    return {n: f * (count / total) for n, f in fisher.items()}


def flat_fisher(model: nn.Module) -> dict[str, torch.Tensor]:
    """Ones for every trainable parameter: EWC with this is the plain L2 pull to the old weights (notebook 06)."""
    return {n: torch.ones(p.shape, dtype=torch.float32, device=p.device) for n, p in _trainable(model).items()}


def concentration(fisher: dict[str, torch.Tensor], top: float = 0.1) -> float:
    """The share of the Fisher's total held by its largest ``top`` fraction of entries: ``top`` for a flat
    Fisher, 1.0 when one entry holds it all (notebook 06)."""
    if real(top, "top", "a fraction of the entries, in (0, 1]", 0.0, low_open=True) > 1:
        raise ValueError(f"top must be a fraction of the entries, in (0, 1], got {top}")
    flat = torch.cat([f.detach().flatten().cpu().double() for f in fisher.values()])
    if not flat.sum() > 0:
        raise ValueError("the Fisher is zero everywhere (or empty): it has no mass to measure")
    k = max(1, round(top * flat.numel()))
    return float(flat.topk(k).values.sum() / flat.sum())


def group_of(name: str) -> str:
    """``transformer.h.0.attn.c_attn.weight`` -> ``h.0.attn.c_attn``: a module's weight and bias together
    (notebooks 05 and 06)."""
    name = name.removeprefix("transformer.")
    return name.rsplit(".", 1)[0] if "." in name else name


def fisher_by_group(fisher: dict[str, torch.Tensor]):
    """A ``pandas.DataFrame`` indexed by parameter group (``wte``, ``h.0.mlp.c_fc``, ``ln_f``...), in parameter
    order: ``params`` (entries), ``mass`` (share of the Fisher's total) and ``per_param`` (mean Fisher per
    entry relative to the mean over all entries: above 1, the group matters more than its size) (notebook 06)."""
    import pandas as pd

    params: dict[str, int] = {}
    mass: dict[str, float] = {}
    for n, f in fisher.items():
        g = group_of(n)
        params[g] = params.get(g, 0) + f.numel()
        mass[g] = mass.get(g, 0.0) + float(f.detach().cpu().double().sum())
    total_mass, total_params = sum(mass.values()), sum(params.values())
    if not total_mass > 0:
        raise ValueError("the Fisher is zero everywhere (or empty): it has no mass to share out")
    df = pd.DataFrame({"params": params, "mass": {g: m / total_mass for g, m in mass.items()}})
    df.index.name = "group"
    df["per_param"] = df["mass"] / df["params"] * total_params
    return df


class EWCPenalty:
    """``lam / 2 * sum_i F_i (theta_i - theta*_i)^2``, with theta* the weights when it was made (notebook 06).

    >>> ewc = EWCPenalty(model, normalise(fisher_diagonal(model, source_ids)), lam=10.0)  # doctest: +SKIP
    >>> train(model, target_ids, cfg, penalty=ewc); ewc.drift(model)                      # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, fisher: dict[str, torch.Tensor], lam: float) -> None:
        # an infinite pull would give NaN (inf * 0) from the first step
        real(lam, "lam", "the penalty's strength, a finite number >= 0")
        if not isinstance(model, nn.Module):
            raise TypeError(f"EWCPenalty needs the torch model (nn.Module) it anchors, got {type(model).__name__}")
        if not isinstance(fisher, dict) or not all(isinstance(f, torch.Tensor) for f in fisher.values()):
            raise TypeError("fisher must map parameter names to tensors (fisher_diagonal, flat_fisher), got "
                            f"{type(fisher).__name__}")
        params = _trainable(model)
        missing = [n for n in params if n not in fisher]
        if missing:
            raise ValueError(f"the Fisher has no entry for the trainable parameter(s) {', '.join(missing)}; compute "
                             "it on this model (fisher_diagonal) or use flat_fisher(model)")
        for n, p in params.items():
            if tuple(fisher[n].shape) != tuple(p.shape):
                raise ValueError(f"the Fisher of {n} has shape {tuple(fisher[n].shape)}, the parameter {tuple(p.shape)}")
        bad = [n for n in params if not bool((torch.isfinite(fisher[n]) & (fisher[n] >= 0)).all())]
        if bad:
            raise ValueError(f"the Fisher of {', '.join(bad[:3])} holds NaN, inf or negative entries; a Fisher is a "
                             "mean of squares, finite and >= 0: compute it again (fisher_diagonal)")
        self.lam = float(lam)
        self.anchor = {n: p.detach().clone() for n, p in params.items()}  # theta*
        self.fisher = {n: fisher[n].detach().to(device=p.device, dtype=torch.float32) for n, p in params.items()}

    def _weighted_distance(self, model: nn.Module) -> torch.Tensor:
        params = self._check_model(model)
        total = torch.zeros((), device=next(iter(self.anchor.values())).device)
        for n, anchor in self.anchor.items():
            total = total + (self.fisher[n] * (params[n].float() - anchor.float()).pow(2)).sum()
        return total

    def _check_model(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The model's parameters, or a clear ``ValueError`` unless it is the model the penalty was made for:
        every anchored parameter there with its shape, and no trainable parameter the penalty does not cover
        (a frozen one is fine: gradual unfreezing). Names only, no tensor is read."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"the penalty applies to a torch model (nn.Module), got {type(model).__name__}")
        params = dict(model.named_parameters())
        missing = [n for n in self.anchor if n not in params]
        extra = [n for n, p in params.items() if p.requires_grad and n not in self.anchor]
        shapes = [f"{n} {tuple(params[n].shape)} (made for {tuple(a.shape)})" for n, a in self.anchor.items()
                  if n in params and params[n].shape != a.shape]
        if missing or extra or shapes:
            said = [f"{what} {', '.join(names[:4])}{' ...' if len(names) > 4 else ''} ({len(names)})"
                    for what, names in (("missing", missing), ("not covered", extra), ("other shapes", shapes))
                    if names]
            raise ValueError(f"this is not the model the penalty was made for: {'; '.join(said)}. Make an "
                             "EWCPenalty (and its Fisher) for this model, after any change to it (e.g. add_lora)")
        return params

    def __call__(self, model: nn.Module) -> torch.Tensor:
        """The penalty, a differentiable scalar: pass the object as ``train(..., penalty=ewc)``."""
        return 0.5 * self.lam * self._weighted_distance(model)

    @torch.no_grad()
    def drift(self, model: nn.Module) -> float:
        """How far the model has moved from the anchor, Fisher-weighted: ``sum_i F_i (theta_i - theta*_i)^2``."""
        return float(self._weighted_distance(model))
