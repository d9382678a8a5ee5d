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
import operator
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import cache
from .checks import unicode_text, whole
from .data import fingerprint, load_corpus

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
# ``datasets``, ``tokenizers`` and ``transformers`` are imported where a BPE is trained or loaded, or a named corpus
# read: a character tokenizer needs none of them (``python -m tlteach pretrain --text FILE --tokenizer char``)

EOT = "<|endoftext|>"
FORMAT_VERSION = 1
MIN_BPE_VOCAB = 257  # the 256 byte tokens and <|endoftext|>
MAX_VOCAB = 2**18  # 262,144: above the largest tokenizers in use (GPT-4o's has about 200,000 tokens)


def _check_vocab_size(vocab_size: int) -> int:
    """``vocab_size`` as an ``int``, checked to be an integer in ``[257, 262144]`` (a byte-level BPE's range)."""
    size = whole(vocab_size, "vocab_size", MIN_BPE_VOCAB,
                 hint=f"; a byte-level BPE needs the 256 byte tokens plus {EOT}")
    if size > MAX_VOCAB:
        raise ValueError(f"vocab_size={size:,} is above {MAX_VOCAB:,}, more than any text in this course can "
                         "fill (Shakespeare's plays give about 25,000 tokens); pick a size such as 2048")
    return size


def _text(text, what: str = "text") -> str:
    """``text``, checked to be a ``str``."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}: {text!r:.80}")
    return unicode_text(text, what)


def _texts(texts, what: str = "texts") -> list[str]:
    """``texts`` as a list of ``str`` (not one ``str``, whose characters would each become a text)."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise TypeError(f"{what} must be a list (or other iterable) of str, got {type(texts).__name__}: "
                        f"{texts!r:.80}; wrap one text as [text]")
    texts = list(texts)
    for i, t in enumerate(texts):
        _text(t, f"{what}[{i}]")
    return texts


def _token_ids(ids, vocab_size: int) -> list[int]:
    """``ids`` (a list, a 1-D tensor or array of integers) as a list of ``int``, each in ``[0, vocab_size)``."""
    if hasattr(ids, "tolist") and not isinstance(ids, (str, bytes)):  # a tensor or an array: Python numbers
        ids = ids.tolist()
    if isinstance(ids, (str, bytes, set, frozenset, dict)) or not isinstance(ids, Iterable):
        raise TypeError(f"token ids must be a sequence of integers (a list or a 1-D tensor), got "
                        f"{type(ids).__name__}: {ids!r:.80}; wrap one id as [id]")
    ids = list(ids)
    if all(type(i) is int for i in ids) and (not ids or (min(ids) >= 0 and max(ids) < vocab_size)):
        return ids  # the usual case, checked at C speed
    out = []
    for k, i in enumerate(ids):
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise TypeError(f"token ids must be integers; ids[{k}] is {i!r} ({type(i).__name__})"
                            + ("; decode one sequence at a time" if isinstance(i, (list, tuple)) else ""))
        j = operator.index(i)
        if not 0 <= j < vocab_size:
            raise ValueError(f"token id {j} (ids[{k}]) is outside this tokenizer's vocabulary: ids run from 0 to "
                             f"{vocab_size - 1}; was it made by another tokenizer or a model of another vocab_size?")
        out.append(j)
    return out


def _read_json(path: str | Path, what: str = "tokenizer") -> tuple[Path, str, dict]:
    """The file at ``path``, its text and its JSON object; a clear error naming ``path`` if it is none."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or pathlib.Path, got {type(path).__name__}: {path!r:.80}")
    p = Path(path).expanduser()
    if p.is_dir():
        hint = f"; the tokenizer in it is {p / 'tokenizer.json'}" if (p / "tokenizer.json").is_file() else ""
        raise IsADirectoryError(f"{p} is a folder, not a {what} file: pass the JSON file that save() wrote{hint}")
    if not p.is_file():
        raise FileNotFoundError(f"no {what} file at {p}")
    try:
        text = p.read_text(encoding="utf-8")
        info = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{p} is not a {what} file: it is not valid JSON ({err})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{p} is not a {what} file: its JSON is a {type(info).__name__}, not an object")
    return p, text, info


def _writable(path: str | Path) -> Path:
    """``path`` as a ``Path`` to write a tokenizer file to: not a folder, in a folder that exists."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or pathlib.Path, got {type(path).__name__}: {path!r:.80}")
    p = Path(path).expanduser()
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder: give a file name to save the tokenizer to, e.g. {p / 'tokenizer.json'}")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"cannot save the tokenizer to {p}: the folder {p.parent} does not exist")
    return p


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
        return [self.encode(t) for t in _texts(texts)]

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
        if not hasattr(hf, "backend_tokenizer"):
            raise TypeError(f"BPETokenizer wraps a transformers PreTrainedTokenizerFast, got {type(hf).__name__}; "
                            "use train_bpe(...), get_tokenizer('bpe') or load_tokenizer(path)")
        self.hf = hf
        self._backend = hf.backend_tokenizer
        if self._backend.token_to_id(EOT) is None:
            raise ValueError(f"this tokenizer has no {EOT} token: it is not a tlteach BPE tokenizer")
        self.eot_id = hf.convert_tokens_to_ids(EOT)

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._backend.encode(_text(text)).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._backend.encode_batch(_texts(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self._backend.decode(_token_ids(ids, self.vocab_size), skip_special_tokens=False)

    def _vocab_for_hash(self):
        return self._backend.get_vocab()

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Each token as readable text (bytes decoded one token at a time; for looking at what BPE learned)."""
        return [self.decode([i]) for i in _token_ids(ids, self.vocab_size)]

    def save(self, path: str | Path) -> None:
        self._backend.save(str(_writable(path)))

    @classmethod
    def from_file(cls, path: str | Path) -> BPETokenizer:
        """Load a BPE tokenizer saved by :meth:`save` (a ``tokenizers`` JSON file)."""
        from tokenizers import Tokenizer as HFTokenizer
        from transformers import PreTrainedTokenizerFast

        path, text, info = _read_json(path, "BPE tokenizer")
        model = info.get("model")
        if not isinstance(model, dict) or model.get("type") != "BPE":
            raise ValueError(f"{path} is not a BPE tokenizer file (a tokenizers JSON with a BPE model); "
                             "save one with BPETokenizer.save or get_tokenizer('bpe')")
        try:
            backend = HFTokenizer.from_str(text)
        except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception for a malformed file
            raise ValueError(f"{path} is not a valid BPE tokenizer file: {err}") from None
        if backend.token_to_id(EOT) is None:
            raise ValueError(f"{path} is not a tlteach BPE tokenizer: it has no {EOT} token")
        hf = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOT, bos_token=EOT, unk_token=None,
                                     pad_token=EOT, clean_up_tokenization_spaces=False)
        return cls(hf)


class CharTokenizer(Tokenizer):
    """One token per character seen in the training text (nanoGPT's ``shakespeare_char``)."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        if isinstance(chars, str) or not isinstance(chars, Iterable):
            raise TypeError(f"chars must be a list of single characters, got {type(chars).__name__}: {chars!r:.80}"
                            "; build one from a text with CharTokenizer.train(text)")
        self.chars = list(chars)
        bad = [c for c in self.chars if not (isinstance(c, str) and len(c) == 1)]
        if bad:
            raise ValueError(f"chars must be single characters; got {bad[:5]!r}")
        if not self.chars or len(set(self.chars)) != len(self.chars):
            raise ValueError("chars must be a non-empty list of distinct characters, got "
                             + ("an empty one" if not self.chars else f"repeats in {self.chars!r:.80}"))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.eot_id = None

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The vocabulary of ``text``: its distinct characters, sorted."""
        if not _text(text):
            raise ValueError("cannot build a character tokenizer from an empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in _text(text)]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise ValueError(f"characters not in this tokenizer's vocabulary: {unknown[:20]}; a character "
                             "tokenizer only knows its training text's characters (use the BPE one)") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in _token_ids(ids, self.vocab_size))

    def _vocab_for_hash(self):
        return self.chars

    def save(self, path: str | Path) -> None:
        _writable(path).write_text(json.dumps({"kind": "char", "chars": self.chars}), encoding="utf-8")

    @classmethod
    def from_file(cls, path: str | Path) -> CharTokenizer:
        """Load a character tokenizer saved by :meth:`save`."""
        path, _, info = _read_json(path, "character tokenizer")
        if info.get("kind") != "char" or not isinstance(info.get("chars"), list):
            raise ValueError(f"{path} is not a tlteach character tokenizer")
        try:
            return cls(info["chars"])
        except ValueError as err:
            raise ValueError(f"{path} is not a valid character tokenizer: {err}") from None


def train_bpe(texts: Iterable[str], vocab_size: int) -> BPETokenizer:
    """Train a byte-level BPE of ``vocab_size`` tokens (including ``<|endoftext|>``) on ``texts`` (notebook 02).

    ``texts`` is a list (or other iterable) of str. A text too small for ``vocab_size`` gives fewer tokens,
    with a warning: BPE only merges pairs that occur at least twice.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    vocab_size = _check_vocab_size(vocab_size)
    texts = _texts(texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    if n_bytes == 0:
        raise ValueError("cannot train a BPE on an empty text: give non-empty texts")
    if vocab_size > MIN_BPE_VOCAB + n_bytes:  # each merge needs a pair of bytes of the text
        raise ValueError(f"vocab_size={vocab_size:,} cannot be reached on {n_bytes:,} bytes of text: a BPE adds at "
                         f"most one token per byte to the {MIN_BPE_VOCAB} it starts with; use a smaller vocab_size "
                         "or more text")
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOT, bos_token=EOT, unk_token=None,
                                 pad_token=EOT, clean_up_tokenization_spaces=False)
    tok = BPETokenizer(hf)
    _warn_if_short(tok, vocab_size)
    return tok


def _warn_if_short(tok: Tokenizer, vocab_size: int) -> None:
    if tok.vocab_size < vocab_size:
        warnings.warn(f"the BPE has {tok.vocab_size:,} tokens, not the vocab_size={vocab_size:,} asked for: its text "
                      f"has no more pairs that occur twice; pass vocab_size={tok.vocab_size} or give more text",
                      UserWarning, stacklevel=3)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load either kind of tokenizer from a JSON file written by ``save``."""
    _, _, info = _read_json(path)
    return CharTokenizer.from_file(path) if info.get("kind") == "char" else BPETokenizer.from_file(path)


def get_tokenizer(kind: str = "bpe", vocab_size: int = 2048,
                  corpus: str | DatasetDict | Dataset = "shakespeare") -> Tokenizer:
    """The tokenizer trained on ``corpus``'s training split, from the cache or trained now (notebook 01).

    ``kind`` is ``"bpe"`` or ``"char"``; ``vocab_size`` applies to BPE (an integer from 257 to 262,144). ``corpus``
    is a corpus name, a ``DatasetDict`` with a ``train`` split or a ``Dataset``, with a ``text`` column of str.
    The cache key holds the corpus fingerprint, the kind and the size, so a changed corpus gets a new tokenizer.
    """
    import tokenizers
    from datasets import Dataset, DatasetDict

    if not isinstance(kind, str) or kind not in ("bpe", "char"):
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose 'bpe' or 'char'")
    if kind == "bpe":
        vocab_size = _check_vocab_size(vocab_size)
    if not isinstance(corpus, (str, Dataset, DatasetDict)):
        raise TypeError(f"corpus must be a corpus name, a datasets.DatasetDict or a datasets.Dataset, got "
                        f"{type(corpus).__name__}; for your own text use data.load_text(...)")
    name = corpus if isinstance(corpus, str) else "custom"
    ds = load_corpus(corpus) if isinstance(corpus, str) else corpus
    if isinstance(ds, DatasetDict) and "train" not in ds:
        raise ValueError(f"the corpus has no 'train' split (it has {list(ds)}); the tokenizer is trained on it")
    train = ds["train"] if isinstance(ds, DatasetDict) else ds
    key = {"kind": kind, "corpus": name, "fingerprint": fingerprint(train, "the corpus's train split"), "format": FORMAT_VERSION,
           "tokenizers": ".".join(tokenizers.__version__.split(".")[:2])}
    if kind == "bpe":
        key["vocab_size"] = vocab_size

        def build(path: Path) -> None:
            with warnings.catch_warnings():  # a vocabulary short of vocab_size is warned about below, every time
                warnings.simplefilter("ignore", UserWarning)
                train_bpe(train["text"], vocab_size).save(path)

        tok = cache.cached("tokenizers", key, ".json", build, BPETokenizer.from_file)
        _warn_if_short(tok, vocab_size)
        return tok

    def build_char(path: Path) -> None:
        CharTokenizer.train("".join(train["text"])).save(path)

    return cache.cached("tokenizers", key, ".json", build_char, CharTokenizer.from_file)
