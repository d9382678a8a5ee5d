"""Tokenizers with one interface: a byte-level BPE and a character-level one (notebooks 01 and 02).

- :class:`BPETokenizer`: byte-level BPE trained with Hugging Face ``tokenizers`` on the source corpus and
  wrapped as a ``transformers.PreTrainedTokenizerFast`` (``.hf``). Every text, non-ASCII included,
  round-trips exactly: bytes are the base alphabet, so nothing is ever unknown.
- :class:`CharTokenizer`: one token per character of the training text, as in nanoGPT's
  ``shakespeare_char`` (for comparisons with its published figures).

:func:`get_tokenizer` trains a tokenizer once and keeps it in the cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import cache
from .data import fingerprint, load_corpus

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
# ``datasets``, ``tokenizers`` and ``transformers`` are imported where a BPE is trained or loaded, or a named corpus
# read: a character tokenizer needs none of them (``python -m tlteach pretrain --text FILE --tokenizer char``)

EOT = "<|endoftext|>"
FORMAT_VERSION = 1


class Tokenizer:
    """What every tokenizer in the course offers."""

    kind: str = "?"
    eot_id: int | None = None

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (inverse of :meth:`encode`)."""
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts."""
        return [self.encode(t) for t in texts]

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to a JSON file."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A short hash of the vocabulary: checkpoints record it so a model is never paired with another tokenizer."""
        import hashlib

        return hashlib.sha256(json.dumps(self._vocab_for_hash(), sort_keys=True).encode()).hexdigest()[:16]

    def _vocab_for_hash(self):
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class BPETokenizer(Tokenizer):
    """A byte-level BPE (GPT-2's scheme); ``.hf`` is the ``transformers`` fast tokenizer."""

    kind = "bpe"

    def __init__(self, hf) -> None:
        self.hf = hf
        self._backend = hf.backend_tokenizer
        self.eot_id = hf.convert_tokens_to_ids(EOT)

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._backend.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._backend.encode_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self._backend.decode(list(map(int, ids)), skip_special_tokens=False)

    def _vocab_for_hash(self):
        return self._backend.get_vocab()

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each token as readable text (bytes decoded one token at a time; for looking at what BPE learned)."""
        return [self.decode([i]) for i in ids]

    def save(self, path: str | Path) -> None:
        self._backend.save(str(path))

    @classmethod
    def from_file(cls, path: str | Path) -> BPETokenizer:
        """Load a BPE tokenizer saved by :meth:`save` (a ``tokenizers`` JSON file)."""
        from tokenizers import Tokenizer as HFTokenizer
        from transformers import PreTrainedTokenizerFast

        backend = HFTokenizer.from_file(str(path))
        if backend.token_to_id(EOT) is None:
            raise ValueError(f"{path} is not a tlteach BPE tokenizer: it has no {EOT} token")
        hf = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOT, bos_token=EOT, unk_token=None,
                                     pad_token=EOT, clean_up_tokenization_spaces=False)
        return cls(hf)


class CharTokenizer(Tokenizer):
    """One token per character seen in the training text (nanoGPT's ``shakespeare_char``)."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.eot_id = None

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The vocabulary of ``text``: its distinct characters, sorted."""
        if not text:
            raise ValueError("cannot build a character tokenizer from an empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise ValueError(f"characters not in this tokenizer's vocabulary: {unknown[:20]}; a character "
                             "tokenizer only knows its training text's characters (use the BPE one)") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def _vocab_for_hash(self):
        return self.chars

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "char", "chars": self.chars}), encoding="utf-8")

    @classmethod
    def from_file(cls, path: str | Path) -> CharTokenizer:
        """Load a character tokenizer saved by :meth:`save`."""
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        if info.get("kind") != "char" or not isinstance(info.get("chars"), list):
            raise ValueError(f"{path} is not a tlteach character tokenizer")
        return cls(info["chars"])


def train_bpe(texts: Iterable[str], vocab_size: int) -> BPETokenizer:
    """Train a byte-level BPE of ``vocab_size`` tokens (including ``<|endoftext|>``) on ``texts`` (notebook 02)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 257:
        raise ValueError(f"vocab_size={vocab_size} is too small for a byte-level BPE: it needs the 256 byte "
                         "tokens plus <|endoftext|>, so at least 257")
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOT, bos_token=EOT, unk_token=None,
                                 pad_token=EOT, clean_up_tokenization_spaces=False)
    return BPETokenizer(hf)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load either kind of tokenizer from a JSON file written by ``save``."""
    info = json.loads(Path(path).read_text(encoding="utf-8"))
    return CharTokenizer.from_file(path) if info.get("kind") == "char" else BPETokenizer.from_file(path)


def get_tokenizer(kind: str = "bpe", vocab_size: int = 2048,
                  corpus: str | DatasetDict | Dataset = "shakespeare") -> Tokenizer:
    """The tokenizer trained on ``corpus``'s training split, from the cache or trained now (notebook 01).

    ``kind`` is ``"bpe"`` or ``"char"``; ``vocab_size`` applies to BPE. The cache key holds the corpus
    fingerprint, the kind and the size, so a changed corpus gets a new tokenizer.
    """
    import tokenizers
    from datasets import DatasetDict

    if kind not in ("bpe", "char"):
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose 'bpe' or 'char'")
    name = corpus if isinstance(corpus, str) else "custom"
    ds = load_corpus(corpus) if isinstance(corpus, str) else corpus
    train = ds["train"] if isinstance(ds, DatasetDict) else ds
    key = {"kind": kind, "corpus": name, "fingerprint": fingerprint(train), "format": FORMAT_VERSION,
           "tokenizers": ".".join(tokenizers.__version__.split(".")[:2])}
    if kind == "bpe":
        key["vocab_size"] = int(vocab_size)

        def build(path: Path) -> None:
            train_bpe(train["text"], vocab_size).save(path)

        return cache.cached("tokenizers", key, ".json", build, BPETokenizer.from_file)

    def build_char(path: Path) -> None:
        CharTokenizer.train("".join(train["text"])).save(path)

    return cache.cached("tokenizers", key, ".json", build_char, CharTokenizer.from_file)
