"""A BERT-style encoder: the GPT's blocks without the causal mask, pretrained by masked-language modelling
(notebook 10).

A GPT predicts each token from the ones before it, so every position is a training example, but a position has
read only its left. An encoder lets every position read the whole text, so predicting "the next token" would be
copying it; instead BERT (Devlin et al., 2019) hides 15% of the tokens and predicts them from both sides: of
the chosen tokens 80% become ``[MASK]``, 10% a random token and 10% stay as they are (so the model cannot
learn that only ``[MASK]`` needs predicting). Only the chosen 15% carry a loss (the others' target is -100,
cross-entropy's "ignore"), so per step an encoder learns from fewer predictions than a GPT: at the same
compute, that is the price of reading both ways.

:class:`Encoder` is a :class:`~tlteach.gpt.GPT` whose attention layers have ``causal = False`` and whose
vocabulary has one more id than the tokenizer's, ``mask_id``, for ``[MASK]``. It trains through the one loop
with :func:`mlm_batches`, and is measured in the loop's ``on_eval`` with :func:`mlm_loss`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from .checks import real, whole
from .gpt import GPT, GPTConfig
from .train import Batches, sampler

MASK_RATE = 0.15
SPLIT = (0.8, 0.1, 0.1)  # of the chosen tokens: [MASK], a random token, unchanged


def encoder_config(config: GPTConfig) -> GPTConfig:
    """An encoder's config for a GPT config: the same sizes and one more vocabulary id, ``[MASK]``."""
    return replace(config, vocab_size=config.vocab_size + 1)


class Encoder(GPT):
    """The GPT's blocks with no causal mask; its last vocabulary id is ``[MASK]`` (notebook 10).

    Build it from the tokenizer's vocabulary size: ``Encoder(encoder_config(GPTConfig(vocab_size=len(tok))))``.
    ``forward(idx, targets)`` is the GPT's: logits at every position and the mean cross-entropy over targets
    that are not -100 (for masked-LM, the chosen positions)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        for block in self.transformer.h:
            block.attn.causal = False

    @property
    def mask_id(self) -> int:
        """The id of ``[MASK]``: the last of the vocabulary (the tokenizer's ids are the ones below it)."""
        return self.config.vocab_size - 1


def mask_tokens(x: torch.Tensor, mask_id: int, generator: torch.Generator | None = None,
                rate: float = MASK_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of a batch ``x`` ``(B, T)`` of token ids below ``mask_id``: ``(inputs, targets)``.
    Each position is chosen with probability ``rate`` (at least one per row); a chosen one becomes ``mask_id``
    (80%), a random id below ``mask_id`` (10%) or stays (10%), and its target is its original id; every other
    target is -100."""
    mask_id = whole(mask_id, "mask_id", 1)
    real(rate, "rate", "a fraction in (0, 1)", 0.0, 1.0, low_open=True)
    if x.dim() != 2:
        raise ValueError(f"x must be (batch, time) token ids, got shape {tuple(x.shape)}")
    if bool((x >= mask_id).any()) or bool((x < 0).any()):
        raise ValueError(f"token ids must be in [0, mask_id={mask_id}): [MASK] is the id after the tokenizer's")
    u = torch.rand(x.shape, generator=generator)
    chosen = u < rate
    first = torch.randint(x.size(1), (x.size(0),), generator=generator)  # a row with none chosen gets one
    chosen[torch.arange(x.size(0))[~chosen.any(1)], first[~chosen.any(1)]] = True
    how = torch.rand(x.shape, generator=generator)
    random_ids = torch.randint(mask_id, x.shape, generator=generator)
    inputs = torch.where(chosen & (how < SPLIT[0]), torch.full_like(x, mask_id), x)
    inputs = torch.where(chosen & (how >= SPLIT[0]) & (how < SPLIT[0] + SPLIT[1]), random_ids, inputs)
    targets = torch.where(chosen, x, torch.full_like(x, -100))
    return inputs, targets


def mlm_batches(ids: torch.Tensor, block_size: int, batch_size: int, mask_id: int, rate: float = MASK_RATE
                ) -> Batches:
    """Masked-LM batches for the loop: random windows of ``ids`` (as a GPT's), corrupted by :func:`mask_tokens`
    with the loop's generator (notebook 10)."""
    windows = sampler(ids, block_size, batch_size)

    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = windows(g)
        return mask_tokens(x, mask_id, g, rate)

    return draw


def mlm_loss(ids: torch.Tensor, block_size: int, batch_size: int, iters: int, mask_id: int, seed: int = 0):
    """A measure for ``train.Measure``: the masked-LM loss on ``iters`` batches of ``ids``, the same windows and
    the same masks at every evaluation (notebook 10)."""
    draw = mlm_batches(ids, block_size, batch_size, mask_id)
    batches = [draw(torch.Generator().manual_seed(seed + i)) for i in range(whole(iters, "iters", 1))]

    @torch.no_grad()
    def fn(model: nn.Module) -> float:
        device = next(model.parameters()).device
        losses = [model(x.to(device), y.to(device))[1].float() for x, y in batches]
        return float(torch.stack(losses).mean())

    return fn


__all__ = ["MASK_RATE", "Encoder", "encoder_config", "mask_tokens", "mlm_batches", "mlm_loss"]
