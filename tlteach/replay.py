"""Replay: mix source text into every fine-tuning batch so the model keeps practising it (notebook 08).

Replay is a data mix, so it enters the course's one loop as its ``batches`` plug: a function of the loop's
generator that returns ``(x, y)``. :class:`tlteach.methods.Replay` uses it.
"""

from __future__ import annotations

import torch

from .data import get_batch
from .train import Batches


def replay_batches(target: torch.Tensor, source: torch.Tensor, share: float, block_size: int,
                   batch_size: int) -> Batches:
    """A data mix for the loop (notebook 08): ``round(share * batch_size)`` windows of every batch from the
    source, the rest from the target."""
    n_source = round(share * batch_size)
    if not 0 < n_source < batch_size:
        raise ValueError(f"a replay share of {share} leaves no {'source' if n_source == 0 else 'target'} window "
                         f"in a batch of {batch_size}")

    def batches(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xt, yt = get_batch(target, block_size, batch_size - n_source, generator=gen)
        xs, ys = get_batch(source, block_size, n_source, generator=gen)
        return torch.cat([xt, xs]), torch.cat([yt, ys])

    return batches
