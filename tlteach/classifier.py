"""A language model turned classifier: pool the last block's states, one linear layer (notebook 10).

A :class:`Classifier` reads a batch of texts, each cut to at most ``block_size`` tokens and padded on the right
with ``pad_id``, runs the body (the course's :class:`~tlteach.gpt.GPT`, or the BERT-style
:class:`~tlteach.encoder.Encoder`), pools each text's states into one vector and scores the classes with a
linear layer, ``score``, as ``transformers.GPT2ForSequenceClassification`` does:

- ``last``: the state of the last real token, the only one a causal model has read the whole text into (GPT-2's
  classifiers; :func:`to_hf` gives the same model as a ``transformers`` one, with the same logits);
- ``mean``: the average over the real tokens (what an encoder, which reads both ways, usually uses);
- ``concat``: ULMFiT's concat pooling, ``[last, max, mean]`` side by side.

It trains through the one loop (``train.train``): its batches are ``(x, labels)``, its forward returns
``(logits, loss)``; :func:`measure` evaluates it in the loop's ``on_eval`` (``train.Measure``), and
:func:`freeze` chooses what trains (a linear probe, the last block, everything). ULMFiT's discriminative rates
and gradual unfreezing (``tlteach.ulmfit``) see its head as the top layer.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bow import accuracy, macro_f1
from .checks import id_tensor, whole
from .gpt import GPT
from .train import Batches

POOLINGS = ("last", "mean", "concat")
TRAINABLE = ("head", "last", "all")  # a linear probe, the last block (with ln_f) and the head, everything


def pool(hidden: torch.Tensor, real: torch.Tensor, how: str = "last") -> torch.Tensor:
    """One vector per text from ``hidden`` ``(B, T, C)``: ``real`` ``(B, T)`` is True at the text's tokens
    (False at padding). ``last``: the state of the rightmost real token; ``mean``: the average over real tokens;
    ``concat``: ``[last, max, mean]`` (ULMFiT), ``(B, 3C)``."""
    if how not in POOLINGS:
        raise ValueError(f"unknown pooling {how!r}; pick one of {', '.join(POOLINGS)}")
    B, T, _ = hidden.shape
    keep = real.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    # the rightmost real token, as transformers' GPT2ForSequenceClassification finds it
    last_at = (torch.arange(T, device=hidden.device) * real.long()).argmax(-1)
    last = hidden[torch.arange(B, device=hidden.device), last_at]
    if how == "last":
        return last
    mean = (hidden * keep).sum(1) / keep.sum(1).clamp_min(1.0)
    if how == "mean":
        return mean
    biggest = hidden.masked_fill(~real.bool().unsqueeze(-1), float("-inf")).amax(1)
    return torch.cat([last, biggest, mean], dim=-1)


class Classifier(nn.Module):
    """A body (GPT or encoder) with a classification head: ``pool`` then ``score`` (notebook 10).

    ``forward(idx, targets)`` takes ``(B, T)`` token ids padded on the right with ``pad_id`` and, when given,
    ``(B,)`` class labels; it returns the logits ``(B, n_classes)`` and the mean cross-entropy."""

    def __init__(self, body: GPT, n_classes: int, pooling: str = "last", pad_id: int | None = None) -> None:
        super().__init__()
        if not isinstance(body, GPT):
            raise TypeError(f"the body must be a tlteach GPT or Encoder, got {type(body).__name__}")
        self.n_classes = whole(n_classes, "n_classes", 2, hint="; a classifier tells at least two classes apart")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; pick one of {', '.join(POOLINGS)}")
        if pad_id is not None:
            whole(pad_id, "pad_id", 0)
            if pad_id >= body.config.vocab_size:
                raise ValueError(f"pad_id={pad_id} is outside the body's vocabulary (vocab_size="
                                 f"{body.config.vocab_size}); use the tokenizer's end-of-text id")
        self.body, self.pooling, self.pad_id = body, pooling, pad_id
        width = body.config.n_embd * (3 if pooling == "concat" else 1)
        self.score = nn.Linear(width, self.n_classes, bias=False)  # GPT2ForSequenceClassification's name, no bias
        nn.init.normal_(self.score.weight, mean=0.0, std=0.02)

    @property
    def config(self):
        """The body's config (its ``vocab_size`` is what the loop checks token ids against)."""
        return self.body.config

    def real_tokens(self, idx: torch.Tensor) -> torch.Tensor:
        """True at each text's tokens, False at its padding (every token is real without a ``pad_id``)."""
        return torch.ones_like(idx, dtype=torch.bool) if self.pad_id is None else idx != self.pad_id

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """The pooled vector of each text, ``(B, width)``: what ``score`` reads (a linear probe's input).

        A text longer than the context, ``(B, W * block_size)`` (``encode_texts(..., windows=W)``), is read as
        ``W`` windows of ``block_size`` tokens, each on its own: each window is pooled, and the text's vector is
        the mean over its windows that hold a real token."""
        T = self.body.config.block_size
        if idx.dim() == 2 and idx.size(1) > T:
            if idx.size(1) % T:
                raise ValueError(f"a text of {idx.size(1)} tokens is longer than the context ({T}) but not whole "
                                 f"windows of it; encode with classifier.encode_texts(..., windows=W)")
            B, W = idx.size(0), idx.size(1) // T
            windows = idx.reshape(B * W, T)
            used = self.real_tokens(windows).any(1).view(B, W, 1).float()  # windows past a text's end: padding only
            each = self.features(windows).view(B, W, -1)
            each = torch.where(used.bool(), each, torch.zeros_like(each))  # (a padding window's max is -inf)
            return each.sum(1) / used.sum(1).clamp_min(1.0)
        self.body._check_ids(idx, None)
        real = self.real_tokens(idx)
        return pool(self.body.hidden(idx, keys=real, checked=True), real, self.pooling)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits ``(B, n_classes)``, and the mean cross-entropy against ``targets`` ``(B,)`` when given."""
        logits = self.score(self.features(idx))
        if targets is None:
            return logits, None
        _check_labels(targets, idx.size(0), self.n_classes)
        return logits, F.cross_entropy(logits.float(), targets.long())


def _check_labels(labels: torch.Tensor, n: int, n_classes: int) -> None:
    id_tensor(labels, "labels", "use torch.tensor(labels)")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one class per text, got {tuple(labels.shape)}")
    if not torch.compiler.is_compiling() and bool(((labels < 0) | (labels >= n_classes)).any()):
        raise ValueError(f"labels must be classes in [0, {n_classes}), got values from {int(labels.min())} to "
                         f"{int(labels.max())}; number the classes from 0 (a ClassLabel feature does)")


# --------------------------------------------------------------------------- data for it
def encode_texts(texts: Sequence[str], tokenizer, block_size: int, pad_id: int | None = None, windows: int = 1
                 ) -> torch.Tensor:
    """``(len(texts), windows * block_size)`` token ids: each text's first ``windows * block_size`` tokens, padded
    on the right with ``pad_id`` (default: the tokenizer's end-of-text id) (notebook 10). A :class:`Classifier`
    reads more than one window as ``windows`` consecutive contexts (:meth:`Classifier.features`)."""
    block_size = whole(block_size, "block_size", 1) * whole(windows, "windows", 1)
    pad_id = tokenizer.eot_id if pad_id is None else pad_id
    if pad_id is None:
        raise ValueError("this tokenizer has no end-of-text id to pad with; pass pad_id")
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of str (a dataset's 'text' column)")
    rows = tokenizer.encode_batch(list(texts)) if hasattr(tokenizer, "encode_batch") else [tokenizer.encode(t) for t in texts]
    out = torch.full((len(rows), block_size), pad_id, dtype=torch.long)
    for i, ids in enumerate(rows):
        if not ids:
            raise ValueError(f"text {i} has no tokens; drop empty texts first")
        ids = ids[:block_size]
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def label_batches(x: torch.Tensor, labels: torch.Tensor, batch_size: int) -> Batches:
    """Batches for the loop: ``batch_size`` texts drawn at random (with the loop's generator) and their labels."""
    batch_size = whole(batch_size, "batch_size", 1)
    if x.dim() != 2 or labels.shape != (x.size(0),):
        raise ValueError(f"x must be (texts, tokens) and labels (texts,), got {tuple(x.shape)} and "
                         f"{tuple(labels.shape)}")
    labels = labels.long()

    def draw(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(len(x), (batch_size,), generator=g)
        return x[rows], labels[rows]

    return draw


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The logits of every text in ``x``, ``(N, n_classes)``, in eval mode (notebook 10)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = [model(x[i:i + batch_size].to(device))[0].float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out)


def scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Cross-entropy, accuracy and macro-F1 of ``logits`` against ``labels`` (notebook 10)."""
    labels = labels.long()
    pred = logits.argmax(-1)
    return {"loss": float(F.cross_entropy(logits.float(), labels)), "acc": accuracy(pred, labels),
            "f1": macro_f1(pred, labels, logits.size(-1))}


def measure(x: torch.Tensor, labels: torch.Tensor, prefix: str = "val"):
    """A measure for ``train.Measure``: ``{prefix}`` (the loss, for early stopping), ``{prefix}_acc`` and
    ``{prefix}_f1`` of the model on ``x`` (notebook 10)."""
    def fn(model: nn.Module) -> dict[str, float]:
        s = scores(predict(model, x), labels)
        return {prefix: s["loss"], f"{prefix}_acc": s["acc"], f"{prefix}_f1": s["f1"]}
    return fn


# --------------------------------------------------------------------------- what trains
def freeze(model: Classifier, trainable: str = "all") -> Classifier:
    """Choose what trains (notebook 10): ``head`` (a linear probe on frozen features), ``last`` (the last block,
    ``ln_f`` and the head), or ``all`` (BERT's recipe). Returns the model."""
    if trainable not in TRAINABLE:
        raise ValueError(f"unknown choice {trainable!r}; pick one of {', '.join(TRAINABLE)}")
    t = model.body.transformer
    on = {"head": [model.score], "last": [model.score, t.ln_f, t.h[-1]], "all": [model]}[trainable]
    model.requires_grad_(False)
    for m in on:
        m.requires_grad_(True)
    return model


# --------------------------------------------------------------------------- the transformers twin
def to_hf(model: Classifier):
    """The same classifier as a ``transformers.GPT2ForSequenceClassification`` (notebook 10): same weights, same
    logits; ``pad_token_id`` set so that it pools the last real token as :class:`Classifier` does."""
    from transformers import GPT2ForSequenceClassification

    from .gpt import to_hf as lm_to_hf

    if model.pooling != "last" or not all(b.attn.causal for b in model.body.transformer.h):
        raise ValueError("transformers' GPT-2 classifier pools the last token of a causal model; convert a "
                         "Classifier with pooling='last' on a GPT body (it reads one window per text)")
    lm = lm_to_hf(model.body, eos_token_id=model.pad_id)
    config = lm.config
    config.num_labels = model.n_classes
    hf = GPT2ForSequenceClassification(config)
    hf.transformer.load_state_dict(lm.transformer.state_dict())
    with torch.no_grad():
        hf.score.weight.copy_(model.score.weight)
    return hf.to(next(model.parameters()).device).eval()


class HFClassifier(nn.Module):
    """A ``transformers`` sequence classifier (a ``peft`` one too) as the loop trains models:
    ``forward(idx, targets) -> (logits, loss)`` (notebook 10)."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        pad = getattr(getattr(self.hf, "config", None), "pad_token_id", None)
        out = self.hf(input_ids=idx, attention_mask=None if pad is None else (idx != pad).long())
        logits = out.logits
        if targets is None:
            return logits, None
        _check_labels(targets, idx.size(0), logits.size(-1))
        return logits, F.cross_entropy(logits.float(), targets.long())


def peft_lora(hf: nn.Module, r: int = 4, alpha: float | None = None,
              targets: Sequence[str] = ("c_attn", "c_proj", "c_fc")):
    """``peft``'s LoRA on a ``transformers`` classifier with its own task type, ``SEQ_CLS``: the adapters and the
    classification head (``score``, which peft keeps trainable) train, nothing else (notebook 10)."""
    from peft import get_peft_model

    from .lora import peft_lora_config

    # GPT-2's layers are Conv1D, whose weight is stored (in, out): fan_in_fan_out
    config = peft_lora_config(r, alpha, targets, task_type="SEQ_CLS", fan_in_fan_out=True)
    with warnings.catch_warnings():  # peft 0.21 calls an API transformers 5 deprecates; nothing for a learner to do
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(hf, config)


__all__ = ["POOLINGS", "TRAINABLE", "Classifier", "HFClassifier", "encode_texts", "freeze", "label_batches",
           "measure", "peft_lora", "pool", "predict", "scores", "to_hf"]
