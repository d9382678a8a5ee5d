"""The book's build step (scripts/build_book.py): the TOC matches the notebooks, and the copies are fit to publish.

These run without Sphinx or a browser; tests/test_book_browser.py builds the book and looks at it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
build_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_book)

WIDGET_VIEW = build_book.WIDGET_VIEW


def test_every_notebook_is_a_chapter_of_the_book():
    notebooks = build_book.course_notebooks()
    assert notebooks, "no notebooks found"
    assert build_book.check_toc(notebooks) == []


def _toc(tmp_path: Path, chapters: list[str]) -> Path:
    toc = tmp_path / "_toc.yml"
    lines = ["format: jb-book", "root: intro", "chapters:", *[f"  - file: chapters/{c}" for c in chapters]]
    toc.write_text("\n".join(lines) + "\n")
    return toc


def test_a_notebook_missing_from_the_toc_fails_the_build(tmp_path):
    notebooks = [Path("notebooks/01-a.ipynb"), Path("notebooks/02-b.ipynb")]
    problems = build_book.check_toc(notebooks, _toc(tmp_path, ["01-a"]))
    assert len(problems) == 1 and "02-b.ipynb is not in" in problems[0] and "chapters/02-b" in problems[0]
    problems = build_book.check_toc(notebooks[:1], _toc(tmp_path, ["01-a", "02-b"]))
    assert len(problems) == 1 and "no notebooks/02-b.ipynb" in problems[0]
    assert "not in course order" in build_book.check_toc(notebooks, _toc(tmp_path, ["02-b", "01-a"]))[0]
    assert build_book.check_toc(notebooks, _toc(tmp_path, ["01-a", "02-b"])) == []


def _widget_state(models: dict) -> dict:
    return {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0, "state": models}}


def _model(name: str, **state) -> dict:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def _view(model_id: str, text: str):
    data = {WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0}, "text/plain": text}
    return nbformat.v4.new_output("display_data", data=data)


@pytest.fixture
def notebook(tmp_path) -> Path:
    """A small notebook with everything the build adjusts: solutions, widgets, a terminal progress bar."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = _widget_state({
        "bar": _model("HBoxModel", children=["IPY_MODEL_pre", "IPY_MODEL_prog", "IPY_MODEL_post"]),
        "pre": _model("HTMLModel", value="training:\u2007100%"),
        "prog": _model("FloatProgressModel", value=300.0, max=300.0, bar_style="success"),
        "post": _model("HTMLModel", value="\u2007300/300\u2007[00:02&lt;00:00]"),
        "box": _model("VBoxModel", children=["IPY_MODEL_slider", "IPY_MODEL_pick", "IPY_MODEL_table", "IPY_MODEL_runs",
                                          "IPY_MODEL_kinds"]),
        "slider": _model("FloatSliderModel", description="logit", value=2.0, min=-10.0, max=10.0,
                         readout_format=".2f"),
        "pick": _model("DropdownModel", description="target", _options_labels=["a", "b"], index=1),
        "table": _model("HTMLModel", value="<table><tr><td>p</td></tr></table>"),
        "kinds": _model("SelectMultipleModel", description="methods", _options_labels=["ewc", "l2", "lora"],
                        index=[0, 2]),
        "runs": _model("SelectionSliderModel", description="rank", _options_labels=["r=2", "r=4", "r=8"], index=1),
    })
    nb.cells = [
        nbformat.v4.new_markdown_cell("### Exercise 1\n\nDo it.", metadata={"tags": ["exercise"]}),
        nbformat.v4.new_markdown_cell("**Solution.** Like this:\n\n:::{note}\nnested\n:::",
                                      metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("solve()", metadata={"tags": ["solution"]},
                                  outputs=[_view("bar", "training:   0%|          | 0/300")]),
        nbformat.v4.new_code_cell("explore()", outputs=[
            nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
            _view("box", "VBox(...)"),
        ]),
        nbformat.v4.new_code_cell("lost()", outputs=[_view("gone", "bigram:   0%|          | 0/300"),
                                                     _view("gone2", "VBox(...)")]),
        nbformat.v4.new_code_cell("run()", outputs=[
            nbformat.v4.new_output("stream", name="stderr", text="  0%|   | 0/3\r100%|###| 3/3\n"),
            nbformat.v4.new_output("stream", name="stdout", text="sample: a\x1bb\x0cc \x1b[31mred\x1b[0m\n"),
        ]),
    ]
    path = tmp_path / "01-test.ipynb"
    nbformat.write(nb, path)
    return path


def test_solutions_go_behind_a_dropdown_in_the_copy_only(notebook):
    before = notebook.read_text()
    nb = build_book.prepare(notebook)
    assert notebook.read_text() == before, "the source notebook must not change"
    exercise, md, code = nb.cells[:3]
    assert exercise.source.startswith("### Exercise 1")
    assert md.source.startswith("::::{dropdown} Solution\n") and md.source.rstrip().endswith("::::")
    assert ":class-container: tlteach-solution" in md.source and ":::{note}" in md.source
    assert "hide-cell" in code.metadata.tags and "solution" in code.metadata.tags
    assert "Solution" in code.metadata.mystnb["code_prompt_show"]


def test_widgets_become_static_html(notebook):
    nb = build_book.prepare(notebook)
    assert "widgets" not in nb.metadata, "widget state would make every page load the widget manager from a CDN"
    text = json.dumps(nb)
    assert WIDGET_VIEW not in text
    (bar,) = nb.cells[2].outputs
    assert '<progress max="300.0" value="300.0">' in bar.data["text/html"]
    assert bar.data["text/plain"] == "training: 100%| 300/300 [00:02<00:00]"
    figure, widget = nb.cells[3].outputs
    assert "image/png" in figure.data, "the static stand-in figure stays first"
    html = widget.data["text/html"]
    assert 'class="tlteach-widget"' in html and "interactive widget" in html
    assert '<input type="range" disabled' in html and "<output>2.00</output>" in html
    assert "<option selected>b</option>" in html and "<table><tr><td>p</td></tr></table>" in html
    assert 'max="2" step="1" value="1"><output>r=4</output>' in html  # a selection slider shows its label
    # every method visible with its tick, none hidden in a greyed list box
    assert ('<input type="checkbox" disabled checked> ewc</label><label><input type="checkbox" disabled> l2</label>'
            '<label><input type="checkbox" disabled checked> lora</label>') in html
    # no saved state: a tqdm bar shows nothing (its text is the 0% start), another widget a note
    (note,) = nb.cells[4].outputs
    assert "interactive widget" in note.data["text/html"] and "0%|" not in json.dumps(note)


def test_terminal_progress_and_control_characters(notebook):
    nb = build_book.prepare(notebook)
    stderr, stdout = nb.cells[5].outputs
    assert stderr.text == "100%|###| 3/3\n"
    assert stdout.text == "sample: a\u241bb\u240cc \x1b[31mred\x1b[0m\n", "ANSI colours stay, stray controls show"


def test_stored_widget_outputs_get_the_still_as_their_safe_fallback(notebook):
    """An untrusted JupyterLab shows a widget output's richest safe type: the still, not ``VBox(...)`` or 0%."""
    nb = nbformat.read(notebook, as_version=4)
    assert build_book.add_stills(nb) == 2  # the bar and the explorer; the two with no saved state stay as they were
    (bar,) = nb.cells[2].outputs
    assert WIDGET_VIEW in bar.data, "the live widget stays for a trusted notebook with a kernel"
    assert bar.data["text/plain"] == "training: 100%| 300/300 [00:02<00:00]"
    assert '<progress max="300.0" value="300.0">' in bar.data["text/html"]
    widget = nb.cells[3].outputs[1]
    assert "<output>2.00</output>" in widget.data["text/html"] and "VBox" not in widget.data["text/plain"]
    assert [o.data["text/plain"] for o in nb.cells[4].outputs] == ["bigram:   0%|          | 0/300", "VBox(...)"]
    assert build_book.prepare(notebook).cells[3].outputs[1].data["text/html"] == widget.data["text/html"]


@pytest.mark.parametrize("path", build_book.course_notebooks(), ids=lambda p: p.stem[:2])
def test_the_stored_notebooks_carry_their_widget_stills(path):
    """What a learner sees on opening a stored notebook in JupyterLab, before any cell runs, is the book's still."""
    nb = nbformat.read(path, as_version=4)
    state = build_book._state(nb)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data and data[WIDGET_VIEW].get("model_id") in state:
                assert "text/html" in data, f"{path.name}: a widget output without its still ({cell.source[:60]!r})"
                assert not data["text/plain"].startswith(("VBox(", "HBox(")) and " 0%|" not in data["text/plain"]
