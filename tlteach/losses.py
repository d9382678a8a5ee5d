"""Cross-entropy, its gradient and perplexity, from scratch (notebook 01).

For a sequence of tokens, the language-modelling loss is the mean negative log-probability the model
gives to each next token:  ``L = -1/N Σ_i log P_θ(x_i | x_<i)``. A model emits logits ``z``; the
probabilities are ``softmax(z)``, and ``log softmax(z)_k = z_k - logsumexp(z)``. Computing logsumexp
as ``m + log Σ exp(z - m)`` with ``m = max z`` never overflows (the log-sum-exp trick).

- :func:`naive_log_softmax`, :func:`logsumexp`, :func:`log_softmax`, :func:`softmax`: the pieces, from scratch.
- :func:`cross_entropy` and :func:`cross_entropy_grad`: the loss and its gradient derived by hand.
- :func:`explorer_state`: one token's probabilities, loss and gradient at a temperature, the arithmetic behind
  the logit explorer (``widgets.logit_explorer``) and its static figure (``plots.logit_explorer_figure``).
- :func:`unigram_loss`, :func:`bigram_loss` and :func:`perplexity`: baselines and the loss in tokens.

Pure arithmetic (torch only): the views (:mod:`tlteach.plots`, :mod:`tlteach.widgets`) import this module,
never the reverse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def naive_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``log(exp(z) / Σ exp(z))`` computed literally: overflows to ``nan`` on large logits (notebook 01)."""
    e = torch.exp(logits)
    return torch.log(e / e.sum(dim=-1, keepdim=True))


def logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """``log Σ_k exp(z_k)`` over the last dimension, stable for any finite logits (notebook 01)."""
    m = logits.max(dim=-1, keepdim=True).values
    return (m + torch.log(torch.exp(logits - m).sum(dim=-1, keepdim=True))).squeeze(-1)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Stable ``log softmax`` over the last dimension: ``z - logsumexp(z)`` (notebook 01).

    The maximum is subtracted first, so that ``z - m`` is exact and large logits (1e4, say) keep every
    digit of their log-probabilities.
    """
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    return shifted - logsumexp(shifted).unsqueeze(-1)


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Stable softmax over the last dimension (notebook 01)."""
    return torch.exp(log_softmax(logits))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of ``targets`` under ``logits`` (notebook 01).

    ``logits`` has shape ``(..., V)`` and ``targets`` the leading shape ``(...)`` with ids in ``[0, V)``.
    Equals ``F.cross_entropy(logits.view(-1, V), targets.view(-1))``; differentiable with autograd.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} disagree: "
                         "targets must have the logits' shape without its last (vocabulary) dimension")
    logp = log_softmax(logits.float())
    picked = logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    return -picked.mean()


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`cross_entropy` with respect to the logits: ``(softmax(z) - onehot(y)) / N``.

    Derived by hand in notebook 01 and checked there against autograd.
    """
    p = softmax(logits.float())
    onehot = torch.zeros_like(p).scatter_(-1, targets.long().unsqueeze(-1), 1.0)
    return (p - onehot) / targets.numel()


@dataclass(frozen=True)
class ExplorerState:
    """What the logit explorer shows for one setting of its controls (:func:`explorer_state`)."""

    probs: tuple[float, ...]  # softmax(logits / temperature)
    loss: float  # -log probs[target], in nats
    grad: tuple[float, ...]  # d loss / d logits = (probs - onehot(target)) / temperature
    target: int
    temperature: float

    @property
    def perplexity(self) -> float:
        """``exp(loss)``."""
        return math.exp(self.loss)


def explorer_state(logits: Sequence[float], temperature: float = 1.0, target: int = 0) -> ExplorerState:
    """Probabilities, loss and gradient for ``logits`` at ``temperature`` with the given ``target`` (notebook 01).

    The loss is the cross-entropy of one token: ``-log softmax(z / T)[target]``; its gradient with respect to
    the logits ``z`` is ``(softmax(z / T) - onehot(target)) / T``.
    """
    if len(logits) < 2:
        raise ValueError(f"need at least 2 logits to make a distribution, got {len(logits)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0 <= target < len(logits):
        raise ValueError(f"target {target} is not an index into {len(logits)} logits")
    z = torch.tensor([float(v) for v in logits], dtype=torch.float64) / temperature
    logp = log_softmax(z)
    probs = torch.exp(logp)
    onehot = torch.zeros_like(probs)
    onehot[target] = 1.0
    grad = (probs - onehot) / temperature
    return ExplorerState(
        probs=tuple(probs.tolist()),
        loss=float(-logp[target]),
        grad=tuple(grad.tolist()),
        target=int(target),
        temperature=float(temperature),
    )


def unigram_loss(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy of ``eval_ids`` under token frequencies counted on ``train_ids`` with add-one smoothing:
    the baseline a model that ignores context can reach (notebooks 01, 02 and 05)."""
    train_ids, eval_ids = train_ids.cpu(), eval_ids.cpu()  # counted in float64, on the CPU (MPS has none)
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0
    logp = torch.log(counts / counts.sum())
    return float(-logp[eval_ids].mean())


def bigram_loss(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int, alpha: float = 0.1) -> float:
    """Cross-entropy of ``eval_ids`` under next-token counts given the previous token, counted on ``train_ids``
    with add-``alpha`` smoothing: the baseline of a model that sees one token of context (notebook 05)."""
    train_ids, eval_ids = train_ids.cpu(), eval_ids.cpu()  # counted in float64, on the CPU (MPS has none)
    pairs = train_ids[:-1].long() * vocab_size + train_ids[1:].long()
    counts = torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size).double() + alpha
    logp = torch.log(counts / counts.sum(dim=1, keepdim=True))
    return float(-logp[eval_ids[:-1].long(), eval_ids[1:].long()].mean())


ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0)


def best_bigram_loss(train_ids: torch.Tensor, eval_ids: torch.Tensor, vocab_size: int,
                     alphas: Sequence[float] = ALPHAS) -> tuple[float, float]:
    """The counted bigram at its best: :func:`bigram_loss` for each smoothing ``alpha`` and the lowest loss on
    ``eval_ids`` with the ``alpha`` that gave it. Choosing ``alpha`` on the evaluation tokens flatters the bigram,
    so a model that beats it beats the best a one-token context can do (notebooks 02 and 05)."""
    return min((bigram_loss(train_ids, eval_ids, vocab_size, a), a) for a in alphas)


def perplexity(loss: float | torch.Tensor) -> float:
    """``exp(loss)``: the number of equally likely tokens the model is, on average, choosing among (notebook 01)."""
    return math.exp(float(loss))
