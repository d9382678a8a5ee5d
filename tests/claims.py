"""The claims checker: every sentence of a notebook that states a measured comparison stands next to an assert.

A sentence *states a comparison* when it uses one of :data:`WORDS` ("beats", "better", "less", "below", ...). It
is *backed* when a code cell holding an ``assert`` follows its markdown cell before the next heading, or is the
code cell just above it (the sentence reads the output that cell printed and checked). Sentences that compare
without claiming a measured result (a definition, an instruction, a question, a summary line that repeats an
assert made above) are listed in :data:`tests.claims_allowed.ALLOWED` with the reason, one fragment each.
``tests/test_claims.py`` runs it on every notebook; ``python tests/claims.py`` prints what it flags.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WORDS = re.compile(r"\b(beats?|beaten|better|worse|more|less|below|above|ahead)\b", re.I)
_ASSERT = re.compile(r"^\s*assert\b", re.M)
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.S)
_LINK = re.compile(r"\]\([^)]*\)|<https?://[^>]*>")
# "below" and "above" as places on the page ("the cell below", "asserted above"), not comparisons
_PLACE = re.compile(r"\b(the|cell|cells|printed|shown|asserted|see|table|figure|plot|code|output|line|lines|"
                    r"section|as|lists?|run|runs|ones?|curves?) (below|above)\b|\b(below|above)(?=[:)])", re.I)


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def sentences(markdown: str) -> list[str]:
    """The sentences of a markdown cell, one line each, math and link targets left out."""
    text = _LINK.sub("]", _MATH.sub(" ", markdown))
    blocks, para = [], []
    for line in text.splitlines():  # paragraphs; a heading or a table row stands alone
        stripped = re.sub(r"\s+", " ", line.strip().lstrip(">")).strip()
        if not stripped or stripped.startswith(("#", "|")):
            blocks.append(" ".join(para))
            para = []
            blocks.append(stripped)
        else:
            para.append(stripped)
    blocks.append(" ".join(para))
    split = re.compile(r"(?<=[.!?])\s+(?=[A-Z*(`\"'-])|\s+-\s+(?=\S)|^-\s+")
    return [s.strip() for block in blocks for s in split.split(block) if s.strip()]


def _heading(cell) -> bool:
    return cell.cell_type == "markdown" and cell.source.lstrip().startswith("#")


def _asserts(cell) -> bool:
    return cell.cell_type == "code" and bool(_ASSERT.search(cell.source))


def backed(cells: list, i: int) -> bool:
    """Whether markdown cell ``i`` has an assert next to it: in a code cell after it, before the next heading, or
    in the code cell just above it."""
    if i > 0 and _asserts(cells[i - 1]):
        return True
    for cell in cells[i + 1:]:
        if _heading(cell):
            return False
        if _asserts(cell):
            return True
    return False


def comparisons(path: Path) -> list[tuple[int, str]]:
    """Every (cell index, sentence) of the notebook that states a comparison with no assert next to it."""
    cells = nbformat.read(path, as_version=4).cells
    out = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown" or backed(cells, i):
            continue
        out += [(i, s) for s in sentences(cell.source) if WORDS.search(_PLACE.sub(" ", s))]
    return out


def unbacked(path: Path, allowed: dict[str, list[tuple[str, str]]]) -> tuple[list[tuple[int, str]], list[str]]:
    """The flagged sentences no allow-list fragment covers, and the notebook's fragments that cover nothing."""
    mine = allowed.get(path.name[:2], [])
    flagged = comparisons(path)
    left = [(i, s) for i, s in flagged if not any(frag in s for frag, _ in mine)]
    stale = [frag for frag, _ in mine if not any(frag in s for _, s in flagged)]
    return left, stale


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from tests.claims_allowed import ALLOWED

    for nb in notebooks():
        left, stale = unbacked(nb, ALLOWED)
        for i, s in left:
            print(f"{nb.name[:2]} cell {i}: {s}")
        for frag in stale:
            print(f"{nb.name[:2]} stale allow-list fragment: {frag!r}")
