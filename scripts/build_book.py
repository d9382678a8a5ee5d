#!/usr/bin/env python
"""Build the course book (Jupyter Book 1.x) from the notebooks' stored outputs, with warnings as errors.

    python scripts/build_book.py                 # book/_build/html/index.html (what `make book` runs)
    python scripts/build_book.py --out DIR       # build into DIR/html instead (the browser test does)
    python scripts/build_book.py --prepare-only  # only refresh book/chapters/

Jupyter Book needs its pages inside book/, so the build copies every notebooks/NN-*.ipynb to book/chapters/
(generated, gitignored; the notebooks themselves are never changed) and adjusts the copies for a static page:

- a markdown cell tagged ``solution`` goes inside a collapsed "Solution" dropdown, and a code cell tagged
  ``solution`` gets myst-nb's ``hide-cell`` tag, so its code and output sit behind a toggle too;
- an ipywidgets output (which needs a kernel) becomes static HTML drawn from the widget state the notebook
  saved: a finished tqdm bar becomes its final line with a full bar, any other widget a still of its controls
  marked as such; a widget with no saved state shows nothing (tqdm) or a note (anything else);
- the widget state itself is dropped from the copy, so that no page loads the widget manager from a CDN;
- a text stream with carriage returns keeps, per line, only what a terminal would show last.

The download button of a chapter offers the original notebook, not the adjusted copy.

The build fails, before Sphinx runs, when a notebook is missing from book/_toc.yml or the TOC names a
chapter with no notebook; Sphinx then runs with -W -n --keep-going on a fresh environment, so any warning
(a broken cross-reference, a missing image, a docstring autodoc cannot parse) fails it.
"""

from __future__ import annotations

import argparse
import copy
import html
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
CHAPTERS = BOOK / "chapters"
TOC = BOOK / "_toc.yml"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


# --------------------------------------------------------------------------------------------- the TOC


def course_notebooks() -> list[Path]:
    """The course's notebooks, in order: notebooks/NN-*.ipynb."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def toc_files(toc_path: Path = TOC) -> list[str]:
    """Every ``file:`` (and ``root:``) entry of a Jupyter Book TOC, in order, without extensions."""
    toc = yaml.safe_load(toc_path.read_text())
    found: list[str] = [toc["root"]] if "root" in toc else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(re.sub(r"\.(ipynb|md)$", "", node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def check_toc(notebooks: list[Path], toc_path: Path = TOC) -> list[str]:
    """Problems between the notebooks and the TOC: each notebook must be a chapter, in course order."""
    toc_name = _shown(toc_path)
    entries = toc_files(toc_path)
    chapters = [e for e in entries if e.startswith("chapters/")]
    expected = [f"chapters/{nb.stem}" for nb in notebooks]
    problems = [
        f"notebooks/{nb.name} is not in {toc_name}: add the line `- file: chapters/{nb.stem}`"
        for nb, entry in zip(notebooks, expected)
        if entry not in chapters
    ]
    problems += [
        f"{toc_name} lists {entry}, but there is no notebooks/{entry.removeprefix('chapters/')}.ipynb"
        for entry in chapters
        if entry not in expected
    ]
    listed = [entry for entry in chapters if entry in expected]
    if not problems and listed != expected:
        problems.append(f"the chapters in {toc_name} are not in course order: {listed}")
    return problems


# ------------------------------------------------------------------------------------- widgets, statically


def _state(nb) -> dict:
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def _ref(value) -> str | None:
    return value.removeprefix("IPY_MODEL_") if isinstance(value, str) and value.startswith("IPY_MODEL_") else None


def _is_tqdm(model: dict, state: dict) -> bool:
    """tqdm.notebook draws an HBox of [HTML prefix, FloatProgress, HTML postfix]."""
    if model.get("model_name") != "HBoxModel":
        return False
    kids = [state.get(_ref(c) or "", {}).get("model_name") for c in model["state"].get("children", [])]
    return kids == ["HTMLModel", "FloatProgressModel", "HTMLModel"]


def _tqdm_html(model: dict, state: dict) -> tuple[str, str]:
    prefix, bar, postfix = (state[_ref(c)]["state"] for c in model["state"]["children"])
    value, top = bar.get("value", 0), bar.get("max", 100)
    text = f"{prefix.get('value', '')}|{postfix.get('value', '')}"
    plain = html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\u2007", " ")
    markup = (
        f'<div class="tlteach-progress"><span>{prefix.get("value", "")}</span>'
        f'<progress max="{top}" value="{value}"></progress><span>{postfix.get("value", "")}</span></div>'
    )
    return markup, plain


def _label(s: dict) -> str:
    description = s.get("description") or ""
    return f"<label>{html.escape(description)}</label>" if description else ""


def _widget_html(model_id: str, state: dict, depth: int = 0) -> str:
    """A static, disabled rendering of one widget and its children, from the saved state."""
    model = state.get(model_id)
    if model is None or depth > 20:
        return ""
    name, s = model.get("model_name", ""), model.get("state", {})
    if _is_tqdm(model, state):
        return _tqdm_html(model, state)[0]
    if name in {"HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel", "AccordionModel", "TabModel", "StackModel"}:
        kind = "tlteach-box tlteach-vbox" if name in {"VBoxModel", "AccordionModel", "TabModel"} else "tlteach-box"
        inner = "".join(_widget_html(_ref(c) or "", state, depth + 1) for c in s.get("children", []))
        return f'<div class="{kind}">{inner}</div>'
    if name in {"HTMLModel", "HTMLMathModel"}:
        return f"<div>{_label(s)}{s.get('value', '')}</div>"
    if name == "LabelModel":
        return f"<div>{html.escape(str(s.get('value', '')))}</div>"
    if name in {"SelectionSliderModel", "SelectionRangeSliderModel"}:  # the value is an index into the labels
        labels, index = s.get("_options_labels", []), s.get("index", 0)
        index = index[0] if isinstance(index, list) else index
        shown = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else ""
        return (
            f'<div class="tlteach-control">{_label(s)}<input type="range" disabled min="0" '
            f'max="{max(len(labels) - 1, 0)}" step="1" value="{index}"><output>{html.escape(str(shown))}</output></div>'
        )
    if name.endswith("SliderModel"):
        value = s.get("value")
        shown = value if not isinstance(value, list) else "–".join(map(str, value))
        fmt = s.get("readout_format", "")
        if isinstance(value, (int, float)) and fmt:
            try:
                shown = format(value, fmt.lstrip("~"))
            except ValueError:
                pass
        if name == "FloatLogSliderModel":  # min and max are exponents: place the knob on that scale
            base = s.get("base", 10)
            lo, hi = s.get("min", 0), s.get("max", 4)
            pos = math.log(value, base) if isinstance(value, (int, float)) and value > 0 else lo
        else:
            lo, hi, pos = s.get("min", 0), s.get("max", 100), value if not isinstance(value, list) else value[0]
        return (
            f'<div class="tlteach-control">{_label(s)}<input type="range" disabled min="{lo}" max="{hi}" '
            f'step="any" value="{pos}"><output>{html.escape(str(shown))}</output></div>'
        )
    if name.endswith("ProgressModel"):
        return (
            f'<div class="tlteach-control">{_label(s)}<progress max="{s.get("max", 100)}" '
            f'value="{s.get("value", 0)}"></progress></div>'
        )
    if name in {"DropdownModel", "SelectModel", "RadioButtonsModel", "ToggleButtonsModel", "SelectMultipleModel"}:
        labels, index = s.get("_options_labels", []), s.get("index")
        chosen = set(index) if isinstance(index, list) else {index}
        options = "".join(
            f"<option{' selected' if i in chosen else ''}>{html.escape(str(label))}</option>"
            for i, label in enumerate(labels)
        )
        if name == "SelectMultipleModel":  # every option visible, ticked or not (a disabled list box greys them)
            boxes = "".join(
                f'<label><input type="checkbox" disabled{" checked" if i in chosen else ""}> {html.escape(str(label))}'
                "</label>" for i, label in enumerate(labels)
            )
            return f'<div class="tlteach-control">{_label(s)}<span class="tlteach-choices">{boxes}</span></div>'
        return f'<div class="tlteach-control">{_label(s)}<select disabled>{options}</select></div>'
    if name in {"CheckboxModel", "ToggleButtonModel"}:
        checked = " checked" if s.get("value") else ""
        return f'<div class="tlteach-control">{_label(s)}<input type="checkbox" disabled{checked}></div>'
    if name == "ButtonModel":
        return f'<div class="tlteach-control"><button disabled>{html.escape(s.get("description", ""))}</button></div>'
    if name.endswith("TextModel") or name == "TextareaModel":
        value = html.escape(str(s.get("value", "")))
        return f'<div class="tlteach-control">{_label(s)}<input type="text" disabled value="{value}"></div>'
    if name == "OutputModel":
        parts = []
        for out in s.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                parts.append(f'<img alt="widget output" src="data:image/png;base64,{data["image/png"].strip()}">')
            elif "text/html" in data:
                parts.append("".join(data["text/html"]))
            elif "text/plain" in data or "text" in out:
                parts.append(f"<pre>{html.escape(''.join(data.get('text/plain', out.get('text', ''))))}</pre>")
        return f"<div>{''.join(parts)}</div>"
    return f"<div><em>({html.escape(name.removesuffix('Model') or 'widget')})</em></div>"


WIDGET_NOTE = (
    '<div class="tlteach-widget-note">An interactive widget, shown here as it first appeared. Run the notebook '
    "in JupyterLab (<code>make lab</code>) to move its controls.</div>"
)
PLAIN_NOTE = "An interactive widget: run the notebook in JupyterLab (make lab) to move its controls."


def static_widget_output(output, state: dict):
    """The replacement for one widget-view output, or None to drop it."""
    model_id = output["data"][WIDGET_VIEW].get("model_id", "")
    model = state.get(model_id)
    plain = "".join(output["data"].get("text/plain", ""))
    if model is None:
        if re.search(r"\d+%\|", plain):  # a tqdm bar with no saved state: its text would be the 0% start
            return None
        markup = f'<div class="tlteach-widget">{WIDGET_NOTE}</div>'
    elif _is_tqdm(model, state):
        markup, plain = _tqdm_html(model, state)
    else:
        markup = f'<div class="tlteach-widget">{WIDGET_NOTE}{_widget_html(model_id, state)}</div>'
        plain = PLAIN_NOTE
    return nbformat.v4.new_output("display_data", data={"text/html": markup, "text/plain": plain})


def add_stills(nb) -> int:
    """Give every widget output of ``nb`` (in place) the still the book shows, as ``text/html``, and a
    ``text/plain`` that is the still's text: a finished tqdm bar's last line, or what the widget is.

    JupyterLab renders a widget's view only in a trusted notebook with its kernel's models; a notebook just
    opened (a clone, a download) is untrusted, so it falls back to the richest *safe* type. Without this it
    would be the ``text/plain`` ipywidgets recorded when the widget was created: ``VBox(children=(...`` or a
    bar at ``0%``. A widget whose state was not saved keeps its output as it is. Returns how many changed.
    ``scripts/run_notebooks.py`` calls it on every notebook it writes.
    """
    state, changed = _state(nb), 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if out.get("output_type") not in ("display_data", "execute_result") or WIDGET_VIEW not in data:
                continue
            if data[WIDGET_VIEW].get("model_id", "") not in state:
                continue
            still = static_widget_output(out, state)
            data["text/html"], data["text/plain"] = still.data["text/html"], still.data["text/plain"]
            changed += 1
    return changed


def _terminal_text(text: str) -> str:
    """What a terminal shows of a stream with carriage returns (tqdm's text bars): the last rewrite per line."""
    return "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
                     for line in text.split("\n"))


# C0 control characters other than tab, newline and carriage return, and an ESC that does not start an ANSI
# colour code: text sampled from a byte-level model can contain them; they become visible control pictures.
_CONTROL = re.compile(r"\x1b(?!\[[0-9;]*m)|[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")


def _visible_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: "\u2421" if m.group(0) == "\x7f" else chr(0x2400 + ord(m.group(0))), text)


# ------------------------------------------------------------------------------------------ the copies


def _fence(text: str) -> str:
    """A colon fence longer than any run of colons at a line start inside ``text``."""
    runs = [len(m.group(0)) for m in re.finditer(r"^ *:{3,}", text, flags=re.M)]
    return ":" * max([3, *[r + 1 for r in runs]])


def prepare(nb_path: Path):
    """The book's copy of one notebook (a new NotebookNode; the source notebook is not touched)."""
    nb = nbformat.read(nb_path, as_version=4)
    nb = copy.deepcopy(nb)
    state = _state(nb)
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "markdown" and "solution" in tags:
            body = cell.source.strip()
            fence = _fence(body)
            cell.source = (
                f"{fence}{{dropdown}} Solution\n:class-container: tlteach-solution\n:icon: light-bulb\n\n"
                f"{body}\n{fence}\n"
            )
        if cell.cell_type == "code":
            if "solution" in tags and "hide-cell" not in tags:
                cell.metadata["tags"] = [*tags, "hide-cell"]
                cell.metadata.setdefault("mystnb", {}).update(
                    code_prompt_show="Solution: show the code and its output",
                    code_prompt_hide="Solution: hide the code and its output",
                )
            outputs = []
            for out in cell.get("outputs", []):
                if out.get("output_type") in ("display_data", "execute_result") and WIDGET_VIEW in out.get("data", {}):
                    out = static_widget_output(out, state)
                    if out is None:
                        continue
                elif out.get("output_type") == "stream":
                    out["text"] = _visible_controls(_terminal_text(out["text"]))
                elif "text/plain" in out.get("data", {}):
                    out["data"]["text/plain"] = _visible_controls(out["data"]["text/plain"])
                outputs.append(out)
            cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return nb


def write_chapters(notebooks: list[Path]) -> list[Path]:
    """Refresh book/chapters/: one prepared copy per notebook, rewritten only when it changed."""
    CHAPTERS.mkdir(parents=True, exist_ok=True)
    keep = set()
    for nb_path in notebooks:
        target = CHAPTERS / nb_path.name
        keep.add(target.name)
        text = nbformat.writes(prepare(nb_path)) + "\n"
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    for stale in CHAPTERS.iterdir():
        if stale.name not in keep:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return [CHAPTERS / nb.name for nb in notebooks]


# ----------------------------------------------------------------------------------------------- build


def jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_book.cli.main"]


def build(out: Path | None = None, quiet: bool = False) -> Path:
    """Prepare the chapters and build the HTML book; return the path of its index page."""
    notebooks = course_notebooks()
    problems = check_toc(notebooks)
    if problems:
        raise SystemExit("book: the table of contents does not match notebooks/:\n  " + "\n  ".join(problems))
    write_chapters(notebooks)
    cmd = [*jupyter_book(), "build", str(BOOK), "--builder", "html", "--all", "-W", "-n", "--keep-going"]
    if out is not None:
        cmd += ["--path-output", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=quiet, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        if quiet:
            sys.stderr.write(proc.stdout[-20000:] + proc.stderr[-20000:])
        raise SystemExit(f"book: the build failed (exit {proc.returncode}); every warning above is an error")
    html = (out if out is not None else BOOK) / "_build" / "html"
    # The page's download button offers the notebook itself, not the build's adjusted copy.
    for nb_path in notebooks:
        offered = html / "_sources" / "chapters" / nb_path.name
        if offered.exists():
            shutil.copyfile(nb_path, offered)
    index = html / "index.html"
    print(f"book: built {len(notebooks)} chapters in {seconds:.1f} s")
    return index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="build into OUT/_build/html instead of book/_build/html")
    parser.add_argument("--prepare-only", action="store_true", help="only check the TOC and refresh book/chapters/")
    parser.add_argument("--quiet", action="store_true", help="print Sphinx's output only if the build fails")
    args = parser.parse_args(argv)
    if args.prepare_only:
        notebooks = course_notebooks()
        problems = check_toc(notebooks)
        if problems:
            raise SystemExit("book: " + "\n  ".join(problems))
        for path in write_chapters(notebooks):
            print(path.relative_to(ROOT))
        return
    index = build(args.out.resolve() if args.out else None, quiet=args.quiet)
    print(f"The book: {index}")


if __name__ == "__main__":
    main()

