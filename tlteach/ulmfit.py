"""ULMFiT's cures for forgetting (Howard & Ruder, 2018), as plugs of the one loop (notebook 08).

- *Discriminative learning rates*: lower layers learn slower, each ``decay`` times slower than the one above
  (ULMFiT uses 2.6): parameter ``groups`` with an ``lr_scale`` (:func:`scaled_groups`).
- *Gradual unfreezing*: at first only the top layer trains; every few steps one more layer joins, from the
  top down: a ``hooks`` entry (:class:`Unfreezer`).

Both read the model in :func:`layers`, top first. :class:`tlteach.methods.Discriminative` and
:class:`tlteach.methods.Unfreeze` use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from .gpt import GPT
from .train import decay_groups


def layers(model: GPT) -> list[list[nn.Parameter]]:
    """The model's parameters in layers, top first: the final LayerNorm, each block from the last down, then the
    embeddings (the output layer is tied to the token embedding, so it sits at the bottom with it). For a
    :class:`~tlteach.classifier.Classifier` (notebook 10), its head comes first, then its body's layers."""
    if hasattr(model, "score") and isinstance(getattr(model, "body", None), GPT):
        return [list(model.score.parameters()), *layers(model.body)]
    t = model.transformer
    return [list(t.ln_f.parameters()), *[list(b.parameters()) for b in reversed(t.h)],
            [t.wte.weight, t.wpe.weight]]


def scaled_groups(model: GPT, scales: Sequence[float], weight_decay: float = 0.1) -> list[dict]:
    """Optimizer groups, one pair per layer of :func:`layers` (matrices decay, vectors do not), with the
    layer's ``lr_scale`` (ULMFiT's discriminative learning rates: ``decay ** -depth``)."""
    return [g for params, scale in zip(layers(model), scales, strict=True)
            for g in decay_groups(params, weight_decay, lr_scale=scale)]


def discriminative_groups(model: GPT, decay: float, weight_decay: float = 0.1) -> list[dict]:
    """:func:`scaled_groups` with each layer learning ``decay`` times slower than the one above it."""
    return scaled_groups(model, [decay ** -depth for depth in range(len(layers(model)))], weight_decay)


class Unfreezer:
    """ULMFiT's gradual unfreezing as a hook of the loop: at first only the top layer trains; every ``every``
    steps one more layer joins, from the top down (notebook 08)."""

    def __init__(self, model: GPT, every: int) -> None:
        self.layers, self.every = layers(model), every
        self(1, model)

    def __call__(self, step: int, model: nn.Module) -> None:
        n = 1 + (step - 1) // self.every  # layers training at this step
        for i, params in enumerate(self.layers):
            for p in params:
                p.requires_grad_(i < n)
