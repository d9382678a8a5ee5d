"""What a model's token embeddings learned: cosine neighbours, word groups and a 2-D projection (notebook 02).

Every function takes the embedding matrix (``model.transformer.wte.weight``, one row per token) and token ids,
so it works for any model of the course, pretrained or fine-tuned.

- :func:`nearest_neighbours`: the tokens whose embeddings point the same way as a token's (cosine similarity).
- :func:`frequent_words`: the most frequent tokens that are whole words (a space, then letters, then a word end).
- :func:`group_separation`: how much closer the words of one group (pronouns, adjectives...) are to each other
  than to the words of other groups, and how often a word's nearest neighbour is in its own group.
- :func:`pca_2d`: some tokens' embeddings projected to 2-D; ``plots.embedding_map`` draws it, labelled.

Arithmetic only (torch, no matplotlib): the figure lives with the others in :mod:`tlteach.plots`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    """A detached float32 CPU copy of an embedding matrix."""
    if weight.dim() != 2:
        raise ValueError(f"expected an embedding matrix (vocab, dim), got shape {tuple(weight.shape)}")
    return weight.detach().float().cpu()


def nearest_neighbours(weight: torch.Tensor, token_id: int, k: int = 6,
                       candidates: Sequence[int] | None = None) -> list[tuple[int, float]]:
    """The ``k`` tokens most cosine-similar to ``token_id`` (itself excluded), as ``(id, similarity)`` (notebook 02).

    ``candidates`` restricts the search to some token ids (for instance whole words only).
    """
    w = F.normalize(_matrix(weight), dim=1)
    pool = torch.arange(w.size(0)) if candidates is None else torch.as_tensor(list(candidates), dtype=torch.long)
    pool = pool[pool != token_id]
    if len(pool) == 0:
        return []
    sims = w[pool] @ w[token_id]
    top = torch.topk(sims, min(k, len(pool)))
    return [(int(pool[i]), float(s)) for s, i in zip(top.values, top.indices, strict=True)]


def frequent_words(ids: torch.Tensor, token_strings: Sequence[str], n: int = 50, min_letters: int = 2,
                   word_end: float = 0.9) -> list[int]:
    """The ``n`` most frequent whole-word tokens of a token stream, most frequent first (notebook 02).

    A whole-word token is a space followed by at least ``min_letters`` letters (``' king'``) that ends a word in
    at least ``word_end`` of its occurrences in ``ids`` (the next token does not start with a letter), so word
    starts such as ``' kin'`` (of ``' kin' + 'sman'``) are left out. ``token_strings[i]`` is token ``i``'s text.
    """
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    vocab = len(token_strings)
    pattern = re.compile(rf" [^\W\d_]{{{min_letters},}}")
    starts_letter = torch.tensor([s[:1].isalpha() for s in token_strings])
    counts = torch.bincount(ids[:-1], minlength=vocab).float()
    ends = torch.bincount(ids[:-1], weights=(~starts_letter[ids[1:]]).float(), minlength=vocab)
    fraction = ends / counts.clamp(min=1)
    order = torch.argsort(counts, descending=True, stable=True).tolist()
    words = [i for i in order if counts[i] > 0 and fraction[i] >= word_end and pattern.fullmatch(token_strings[i])]
    return words[:n]


@dataclass(frozen=True)
class GroupSeparation:
    """How well embeddings separate groups of words (:func:`group_separation`)."""

    within: float  # mean cosine similarity of two different words of the same group
    between: float  # mean cosine similarity of two words of different groups
    nn_accuracy: float  # fraction of words whose nearest neighbour (among all grouped words) is in their group

    @property
    def gap(self) -> float:
        """``within - between``: about 0 for random embeddings."""
        return self.within - self.between


def group_separation(weight: torch.Tensor, groups: Mapping[str, Sequence[int]]) -> GroupSeparation:
    """Within-group vs between-group cosine similarity of some token groups, and nearest-neighbour accuracy
    (notebook 02). ``groups`` maps a name (``"pronouns"``) to token ids; every group needs two ids or more."""
    if len(groups) < 2:
        raise ValueError("give at least two groups to compare")
    ids, labels = [], []
    for g, (name, members) in enumerate(groups.items()):
        if len(members) < 2:
            raise ValueError(f"group {name!r} has {len(members)} token(s); each group needs at least 2")
        ids += list(members)
        labels += [g] * len(members)
    if len(set(ids)) != len(ids):
        raise ValueError("a token appears in more than one group (or twice in one)")
    w = F.normalize(_matrix(weight)[ids], dim=1)
    sims = w @ w.T
    lab = torch.tensor(labels)
    same = lab[:, None] == lab[None, :]
    eye = torch.eye(len(ids), dtype=torch.bool)
    nearest = sims.masked_fill(eye, -2.0).argmax(dim=1)
    return GroupSeparation(within=sims[same & ~eye].mean().item(), between=sims[~same].mean().item(),
                           nn_accuracy=(lab[nearest] == lab).float().mean().item())


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``x`` projected on their first two principal components, and the share of the variance
    each explains (notebook 02). Signs are fixed (each component's largest loading is positive) so the
    picture is the same on every run."""
    x = x.detach().cpu().double()  # to the CPU first: MPS has no float64
    if x.dim() != 2 or x.size(0) < 2 or x.size(1) < 2:
        raise ValueError(f"need at least 2 rows and 2 columns, got shape {tuple(x.shape)}")
    centred = x - x.mean(dim=0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    components = vh[:2]
    flip = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    components = components * flip
    explained = s**2 / (s**2).sum()
    return (centred @ components.T).float(), explained[:2].float()
