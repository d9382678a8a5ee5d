"""The practice notebooks: practice/ is in step with notebooks/, and emptying does what it says."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import nbformat
import pytest

from tlteach.cli import main as cli
from tlteach.practice import (
    CODE_SOLUTION_PLACEHOLDER,
    MARKDOWN_SOLUTION_PLACEHOLDER,
    NOTE_ID,
    TODO_FALLBACK,
    check_in_step,
    implementation_skeleton,
    make_practice,
    practice_notebook,
    write_practice,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS, PRACTICE = ROOT / "notebooks", ROOT / "practice"

IMPLEMENTATION = '''import math

EPS = 1e-9
SIZES = (2, 3)
cache = {}
table = build_table()


def softplus(x: float, beta: float = 1.0) -> float:
    """log(1 + exp(beta x)) / beta."""
    return math.log1p(math.exp(beta * x)) / beta


@decorate(
    flag=True,
)
def two(
    a: int,
    b: int,
) -> dict[str, int]:
    # a hint that is part of the body
    return {"a": a, "b": b}


class Counter:
    """Counts."""

    start = 0
    registry = make_registry()

    def __init__(self, n: int):
        """Start at n."""
        self.n = n

    def step(self) -> int:
        self.n += 1
        return self.n
'''


def _synthetic() -> nbformat.NotebookNode:
    """A small notebook with one cell of every kind the practice version treats differently."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    cells = [
        nbformat.v4.new_markdown_cell("# 99 · A synthetic notebook"),
        nbformat.v4.new_code_cell("x = 1\nprint(x)"),
        nbformat.v4.new_code_cell(IMPLEMENTATION, metadata={"tags": ["implementation"]}),
        nbformat.v4.new_code_cell("%time y = softplus(2.0)\n!ls", metadata={"tags": ["implementation"]}),
        nbformat.v4.new_markdown_cell("### Exercise 1\n\nDo it.", metadata={"tags": ["exercise"]}),
        nbformat.v4.new_markdown_cell("**Solution.** The secret answer is 42.", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("answer = secret_solution(42)\nprint(answer)", metadata={"tags": ["solution"]}),
    ]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i}"
        if cell.cell_type == "code":
            cell.execution_count = i
            cell.outputs = [nbformat.v4.new_output("stream", text="out\n")]
            cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    nb.cells = cells
    return nb


@pytest.mark.parametrize("src", sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")), ids=lambda p: p.name)
def test_committed_practice_is_in_step(src):
    twin = PRACTICE / src.name
    assert twin.exists(), f"{src.name} has no practice version: run `python -m tlteach practice`"
    problems = check_in_step(nbformat.read(src, as_version=4), nbformat.read(twin, as_version=4), name=src.name)
    assert not problems, "practice/ is out of step (run `python -m tlteach practice`):\n" + "\n".join(problems)


def test_every_practice_notebook_has_a_source():
    sources = {p.name for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")}
    practices = {p.name for p in PRACTICE.glob("[0-9][0-9]-*.ipynb")}
    assert sources, "no notebooks found"
    assert practices == sources


def test_emptying_a_synthetic_notebook():
    src = _synthetic()
    before = copy.deepcopy(src)
    practice = practice_notebook(src, "99-synthetic.ipynb")
    assert src == before, "the source notebook must not be modified"
    assert "widgets" not in practice.metadata
    note, *cells = practice.cells
    assert note.id == NOTE_ID and note.cell_type == "markdown" and "notebooks/99-synthetic.ipynb" in note.source
    assert [c.id for c in cells] == [c.id for c in src.cells]
    assert [c.cell_type for c in cells] == [c.cell_type for c in src.cells]

    # untagged and exercise cells: same source and tags; code cells lose outputs, counts and run timings
    for i in (0, 1, 4):
        assert cells[i].source == src.cells[i].source
        assert cells[i].metadata.get("tags") == src.cells[i].metadata.get("tags")
    for cell in cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None and "execution" not in cell.metadata
            ast.parse(cell.source)

    # implementation: imports, constants, signatures and docstrings kept; every body replaced
    skeleton = cells[2].source
    for kept in [
        "import math",
        "EPS = 1e-9",
        "SIZES = (2, 3)",
        "cache = {}",
        "def softplus(x: float, beta: float = 1.0) -> float:",
        '    """log(1 + exp(beta x)) / beta."""',
        "@decorate(\n    flag=True,\n)\ndef two(\n    a: int,\n    b: int,\n) -> dict[str, int]:\n    ...  # TODO: implement",
        'class Counter:\n    """Counts."""\n\n    start = 0',
        '    def __init__(self, n: int):\n        """Start at n."""\n        ...  # TODO: implement',
        "    def step(self) -> int:\n        ...  # TODO: implement",
    ]:
        assert kept in skeleton, kept
    for gone in ["log1p", "a hint", '"a": a', "self.n = n", "self.n += 1", "build_table", "make_registry"]:
        assert gone not in skeleton, gone
    assert TODO_FALLBACK in skeleton  # where `table = build_table()` was
    assert cells[2].metadata["tags"] == ["implementation"]
    # a cell ast cannot parse (IPython magics) keeps only a comment
    assert cells[3].source == TODO_FALLBACK

    # solutions: emptied, with a place to write
    assert cells[5].source == MARKDOWN_SOLUTION_PLACEHOLDER
    assert cells[6].source == CODE_SOLUTION_PLACEHOLDER
    assert not check_in_step(src, practice, name="99-synthetic.ipynb")


def test_skeleton_falls_back_when_unsafe():
    assert implementation_skeleton("def f(x): return x + 1") == TODO_FALLBACK  # body on the header line
    assert implementation_skeleton("def f(:\n    pass") == TODO_FALLBACK  # does not parse
    assert implementation_skeleton("x = compute(); y = 2") == TODO_FALLBACK
    assert implementation_skeleton("class A:\n    b = make()\n") == "class A:\n    ...  # TODO: implement"


def test_check_in_step_catches_tampering():
    src = _synthetic()
    name = "99-synthetic.ipynb"
    good = practice_notebook(src, name)

    changed = copy.deepcopy(good)
    changed.cells[2].source += "\nprint('edited')"
    assert any("source differs" in p for p in check_in_step(src, changed, name=name))

    leftover = copy.deepcopy(good)
    leftover.cells[6].source = "**Solution.** The secret answer is 42."
    assert any("still contains solution text" in p for p in check_in_step(src, leftover, name=name))
    leftover_code = copy.deepcopy(good)
    leftover_code.cells[3].source += "\n    return math.log1p(math.exp(beta * x)) / beta"
    assert any("still contains solution text" in p for p in check_in_step(src, leftover_code, name=name))

    broken = copy.deepcopy(good)
    broken.cells[7].source = "def mine(:"
    assert any("does not parse" in p for p in check_in_step(src, broken, name=name))

    output = copy.deepcopy(good)
    output.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    assert any("stored outputs" in p for p in check_in_step(src, output, name=name))

    reordered = copy.deepcopy(good)
    reordered.cells[1], reordered.cells[2] = reordered.cells[2], reordered.cells[1]
    assert any("different order" in p for p in check_in_step(src, reordered, name=name))

    dropped = copy.deepcopy(good)
    del dropped.cells[5]
    assert any("missing" in p for p in check_in_step(src, dropped, name=name))

    widgets = copy.deepcopy(good)
    widgets.metadata["widgets"] = src.metadata["widgets"]
    assert any("widget state" in p for p in check_in_step(src, widgets, name=name))

    # the notebook was edited but practice/ was not regenerated
    edited = copy.deepcopy(src)
    edited.cells[1].source = "x = 2\nprint(x)"
    assert any("source differs" in p for p in check_in_step(edited, good, name=name))


def test_regenerating_is_byte_identical_and_check_cli(tmp_path, capsys):
    notebooks, out = tmp_path / "notebooks", tmp_path / "practice"
    notebooks.mkdir()
    nbformat.write(_synthetic(), notebooks / "99-synthetic.ipynb")
    (out).mkdir()
    (out / "98-renamed.ipynb").write_text("{}")  # a practice notebook whose source is gone

    assert cli(["practice", "--notebooks", str(notebooks), "--out", str(out), "--check"]) == 1
    assert "98-renamed.ipynb: has no notebook" in capsys.readouterr().out

    written = write_practice(notebooks, out)
    assert written == [out / "99-synthetic.ipynb"]
    assert sorted(p.name for p in out.iterdir()) == ["99-synthetic.ipynb"]
    first = written[0].read_bytes()
    make_practice(notebooks / "99-synthetic.ipynb", tmp_path / "again.ipynb")
    assert (tmp_path / "again.ipynb").read_bytes() == first
    assert cli(["practice", "--notebooks", str(notebooks), "--out", str(out)]) == 0
    assert written[0].read_bytes() == first
    assert cli(["practice", "--notebooks", str(notebooks), "--out", str(out), "--check"]) == 0


@pytest.mark.parametrize("src", sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")), ids=lambda p: p.name)
def test_committed_practice_is_byte_identical_to_a_fresh_build(src, tmp_path):
    fresh = tmp_path / src.name
    make_practice(src, fresh)
    assert fresh.read_bytes() == (PRACTICE / src.name).read_bytes(), "run `python -m tlteach practice`"
