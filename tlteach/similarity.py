"""How similar is a source domain to the target? Measures a learner can follow (notebook 04).

Three views of "near": how alike the two token distributions are (Jensen-Shannon divergence), how many of
the target's words the source ever uses (word coverage), and how well a model trained only on the source
predicts the target (zero-shot loss, see ``train.evaluate``). And one view of the tokenizer: how many tokens
it spends per word on each domain (:func:`tokens_per_word`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def token_distribution(ids: torch.Tensor, vocab_size: int, smoothing: float = 0.0) -> torch.Tensor:
    """The unigram distribution of a token stream over the vocabulary (``smoothing`` is added to each count)."""
    if len(ids) == 0:
        raise ValueError("the token stream is empty: there is no distribution to measure")
    if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
        raise ValueError(f"token ids must lie in [0, {vocab_size}); got {int(ids.min())}..{int(ids.max())}. "
                         "Were these ids made by another tokenizer?")
    counts = torch.bincount(ids.cpu(), minlength=vocab_size).double() + smoothing  # float64 on the CPU (not on MPS)
    return counts / counts.sum()


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """Jensen-Shannon divergence between two distributions, in bits: 0 for identical, 1 for disjoint
    supports (notebook 04). Symmetric and finite even where one distribution has zeros."""
    if p.shape != q.shape:
        raise ValueError(f"the distributions have different shapes {tuple(p.shape)} and {tuple(q.shape)}")
    p, q = p.cpu(), q.cpu()  # float64 below, on the CPU (MPS has none)
    p, q = p.double() / p.sum(), q.double() / q.sum()
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> float:
        mask = a > 0
        return float((a[mask] * (a[mask] / b[mask]).log2()).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def words(texts: Iterable[str]) -> list[str]:
    """The lower-cased words (runs of letters, with an apostrophe suffix) of some texts."""
    return [w.lower() for t in texts for w in _WORD.findall(t)]


def word_coverage(source_texts: Iterable[str], target_texts: Iterable[str]) -> float:
    """The share of the target's word *occurrences* whose word also occurs in the source (notebook 04)."""
    vocab = set(words(source_texts))
    target = Counter(words(target_texts))
    total = sum(target.values())
    if total == 0:
        raise ValueError("the target texts contain no words")
    return sum(n for w, n in target.items() if w in vocab) / total


def tokens_per_word(tokenizer, texts: Sequence[str]) -> float:
    """Tokens the tokenizer spends per word of ``texts`` (spaces and punctuation included): a tokenizer
    trained on other text needs more (notebook 04)."""
    n_words = len(words(texts))
    if n_words == 0:
        raise ValueError("the texts contain no words")
    return sum(len(ids) for ids in tokenizer.encode_batch(list(texts))) / n_words
