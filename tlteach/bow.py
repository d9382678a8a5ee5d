"""The baselines a pretrained model must beat on a task with few labels (notebook 10).

Notebook 10 builds these from scratch in a few cells; this is the package's reference copy, which the notebook
checks its own against:

- :func:`majority_class`: always answer the class most common in training;
- :class:`BagOfWords`: a text as the counts of its words, order thrown away;
- :func:`fit_logistic_regression` and :func:`predict`: a linear classifier on those features, in plain torch;
- :func:`accuracy` and :func:`macro_f1`: how good the answers are (macro-F1 weighs every class alike, so on
  unbalanced classes it shows what accuracy hides).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .checks import flag, real, whole

_WORD = re.compile(r"[a-z]+")


def _labels(labels: Sequence[int] | torch.Tensor, name: str) -> torch.Tensor:
    """``labels`` as a 1-D ``LongTensor`` of class indices >= 0, or a clear error naming ``name``."""
    if isinstance(labels, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of class indices (ints), got a {type(labels).__name__}")
    if not isinstance(labels, torch.Tensor):
        labels = list(labels)
    t = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels) if labels else torch.zeros(0).long()
    if t.dim() != 1 or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must be a 1-D sequence of class indices (whole numbers), got "
                        f"{t.dim()}-D {t.dtype}")
    if len(t) and int(t.min()) < 0:
        raise ValueError(f"{name} must hold class indices >= 0, got {int(t.min())}")
    return t.long()


def _pair(pred, labels) -> tuple[torch.Tensor, torch.Tensor]:
    pred, labels = _labels(pred, "pred"), _labels(labels, "labels")
    if len(pred) != len(labels):
        raise ValueError(f"pred and labels must be as long as each other, got {len(pred)} and {len(labels)}")
    if len(pred) == 0:
        raise ValueError("pred and labels are empty: there is nothing to score")
    return pred, labels


# --------------------------------------------------------------------------- the simplest baseline
def majority_class(train_labels: Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    """``n`` predictions of the class most common in ``train_labels`` (the smallest such class on a tie)."""
    labels = _labels(train_labels, "train_labels")
    if len(labels) == 0:
        raise ValueError("train_labels is empty: there is no most common class")
    n = whole(n, "n", 0)
    return torch.full((n,), int(torch.bincount(labels).argmax()), dtype=torch.long)


# --------------------------------------------------------------------------- bag of words
def words(text: str) -> list[str]:
    """The words of ``text``: runs of the letters a to z, lower-cased (digits and punctuation dropped)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _WORD.findall(text.lower())


def _texts(texts, what: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{what} must be a list of str (e.g. ds['text']), got {type(texts).__name__}"
                        + ("; wrap one text as [text]" if isinstance(texts, str) else ""))
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what} must hold str; item {i} is {type(t).__name__}: {t!r:.60}")
    return list(texts)


class BagOfWords:
    """A text as the counts of its words: the order thrown away (notebook 10's first baseline).

    :meth:`fit` builds the vocabulary from the training texts only (words seen at least ``min_count`` times,
    sorted); :meth:`transform` gives one row per text, one column per vocabulary word: ``log(1 + count)``
    (``sublinear=True``, tf-idf's damping of repeated words) or the raw count, each row scaled to length 1
    (a text with no known word is a row of zeros). Words never seen in training are ignored.
    """

    def __init__(self, min_count: int = 1, sublinear: bool = True) -> None:
        self.min_count = whole(min_count, "min_count", 1)
        self.sublinear = flag(sublinear, "sublinear")
        self.vocab: dict[str, int] = {}

    def fit(self, texts: Sequence[str]) -> BagOfWords:
        """Build the vocabulary from ``texts`` (the training split's); returns ``self``."""
        counts = Counter(w for t in _texts(texts, "texts") for w in words(t))
        kept = sorted(w for w, c in counts.items() if c >= self.min_count)
        if not kept:
            raise ValueError(f"no word occurs {self.min_count} or more times in the {len(texts)} training texts; "
                             "give more text or a smaller min_count")
        self.vocab = {w: i for i, w in enumerate(kept)}
        return self

    def transform(self, texts: Sequence[str]) -> torch.Tensor:
        """A float tensor ``(len(texts), len(vocab))`` of word features, rows of length 1 (or 0)."""
        if not self.vocab:
            raise RuntimeError("the BagOfWords has no vocabulary yet: call fit(train_texts) first")
        texts = _texts(texts, "texts")
        rows, cols, counts = [], [], []
        for row, t in enumerate(texts):
            for w, c in Counter(words(t)).items():
                if w in self.vocab:
                    rows.append(row)
                    cols.append(self.vocab[w])
                    counts.append(float(c))
        x = torch.zeros(len(texts), len(self.vocab))
        x[rows, cols] = torch.tensor(counts)
        if self.sublinear:
            x = torch.log1p(x)
        return F.normalize(x, dim=1)

    def fit_transform(self, texts: Sequence[str]) -> torch.Tensor:
        """:meth:`fit` then :meth:`transform` on the same texts."""
        return self.fit(texts).transform(texts)

    def __len__(self) -> int:
        return len(self.vocab)


# --------------------------------------------------------------------------- logistic regression
def _features(x: object, name: str = "X") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.dtype.is_floating_point:
        what = f"a {x.dim()}-D {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a 2-D float tensor (examples x features, e.g. BagOfWords.transform), "
                        f"got {what}")
    return x


def fit_logistic_regression(X: torch.Tensor, y: Sequence[int] | torch.Tensor, n_classes: int,
                            weight_decay: float = 1e-4, steps: int = 200,
                            lr: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A softmax (multinomial logistic) regression fitted to ``X`` and ``y``: weights ``W`` (features x
    classes) and biases ``b`` (classes).

    Minimises the mean cross-entropy plus ``weight_decay / 2 * ||W||^2`` (the biases are not penalised) with
    full-batch L-BFGS (at most ``steps`` iterations, learning rate ``lr``, a strong-Wolfe line search) from
    zeros: no randomness, so the same data give the same ``W`` and ``b`` every time.
    """
    X = _features(X)
    y = _labels(y, "y")
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels; give one label per row")
    if len(y) == 0:
        raise ValueError("X and y are empty: there is nothing to fit")
    n_classes = whole(n_classes, "n_classes", 2)
    if int(y.max()) >= n_classes:
        raise ValueError(f"y holds class {int(y.max())}, but n_classes is {n_classes} (classes 0 to {n_classes - 1})")
    weight_decay = real(weight_decay, "weight_decay", "a finite number >= 0")
    steps = whole(steps, "steps", 1)
    lr = real(lr, "lr", "a finite number > 0", low_open=True)
    W = torch.zeros(X.shape[1], n_classes, dtype=X.dtype, requires_grad=True)
    b = torch.zeros(n_classes, dtype=X.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=lr, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(X @ W + b, y) + weight_decay / 2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


def predict(X: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The class with the highest score ``X @ W + b`` for each row of ``X`` (the lowest class on a tie)."""
    X = _features(X)
    if not isinstance(W, torch.Tensor) or not isinstance(b, torch.Tensor) or W.dim() != 2 or b.shape != W.shape[1:]:
        raise TypeError("W and b must be the tensors fit_logistic_regression returns (features x classes, classes)")
    if W.shape[0] != X.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features but W was fitted on {W.shape[0]}; transform the texts with "
                         "the BagOfWords fitted on the training texts")
    return (X @ W + b).argmax(dim=1)


# --------------------------------------------------------------------------- scores
def accuracy(pred: Sequence[int] | torch.Tensor, labels: Sequence[int] | torch.Tensor) -> float:
    """The fraction of predictions equal to the labels."""
    pred, labels = _pair(pred, labels)
    return (pred == labels).double().mean().item()


def macro_f1(pred: Sequence[int] | torch.Tensor, labels: Sequence[int] | torch.Tensor, n_classes: int) -> float:
    """The mean over classes of each class's F1 = 2 TP / (2 TP + FP + FN): every class counts alike.

    A class absent from both ``pred`` and ``labels`` (TP + FP + FN = 0) has no F1 and is left out of the mean,
    as scikit-learn's ``f1_score(average="macro")`` does by default; a class predicted but never true (or true but
    never predicted) counts with F1 = 0.
    """
    pred, labels = _pair(pred, labels)
    n_classes = whole(n_classes, "n_classes", 1)
    if max(int(pred.max()), int(labels.max())) >= n_classes:
        raise ValueError(f"pred or labels hold class {max(int(pred.max()), int(labels.max()))}, but n_classes is "
                         f"{n_classes} (classes 0 to {n_classes - 1})")
    tp = torch.bincount(labels[pred == labels], minlength=n_classes).double()
    fp = torch.bincount(pred, minlength=n_classes).double() - tp
    fn = torch.bincount(labels, minlength=n_classes).double() - tp
    present = (tp + fp + fn) > 0
    f1 = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
    return f1.mean().item()
