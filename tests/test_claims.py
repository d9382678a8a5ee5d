"""Every sentence of a notebook that states a measured comparison has an assert next to it (``tests/claims.py``)."""

import nbformat
import pytest

from tests.claims import comparisons, notebooks, sentences, unbacked
from tests.claims_allowed import ALLOWED


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name[:2])
def test_every_comparison_stands_next_to_an_assert(path):
    left, stale = unbacked(path, ALLOWED)
    assert not left, ("these sentences compare results with no assert next to them (add one in the code cell below "
                      "the sentence, or list the sentence in tests/claims_allowed.py with the reason it is not a "
                      "claim):\n" + "\n".join(f"  cell {i}: {s}" for i, s in left))
    assert not stale, f"allow-list fragments that match no flagged sentence any more (remove them): {stale}"


def test_the_checker_flags_an_unbacked_claim_and_accepts_a_backed_one(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## 1. A section\n\nEWC forgets less than L2. See the table below."),
        nbformat.v4.new_code_cell("print(1)"),
        nbformat.v4.new_markdown_cell("## 2. Another\n\nThe pretrained model beats scratch."),
        nbformat.v4.new_code_cell("gain = 0.3\nassert gain > 0"),
    ]
    path = tmp_path / "99-toy.ipynb"
    nbformat.write(nb, path)
    flagged = comparisons(path)
    assert [(i, s) for i, s in flagged] == [(0, "EWC forgets less than L2.")]  # "the table below" is a place
    assert unbacked(path, {"99": [("forgets less than L2", "why")]}) == ([], [])
    assert unbacked(path, {"99": [("no such sentence", "why")]})[1] == ["no such sentence"]


def test_sentences_drop_math_and_links():
    assert sentences("Loss $L < 2$ here. See [the docs](https://x.org/less).") == ["Loss here.", "See [the docs]."]
