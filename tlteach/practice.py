"""Practice versions of the notebooks (for instructors): what a student opens to work the course by hand.

In the manner of fastbook's ``clean/`` folder, ``practice/NN-*.ipynb`` holds the same cells as
``notebooks/NN-*.ipynb``, in the same order and with the same cell ids, except that

- cells tagged ``solution`` are emptied: a code cell keeps a ``# Your solution here`` comment, a markdown cell
  becomes ``*Write your answer here.*``;
- code cells tagged ``implementation`` keep what a student needs to start (imports, constants, and each
  ``def``/``class`` line with its docstring) while every body becomes ``...  # TODO: implement``;
- outputs, execution counts, run timings and the stored widget state are removed;
- a first markdown cell says that this is the practice version and where the full one is.

Cells tagged ``exercise`` (the prompts) and untagged cells are copied unchanged. The emptied code must parse,
not run. Regenerate with ``python -m tlteach practice``; ``python -m tlteach practice --check`` (and
``tests/test_practice.py``) fail when ``practice/`` is out of step with ``notebooks/``.

``python -m tlteach practice`` only replaces or deletes notebooks it wrote itself, and only while nobody has
worked in them (:func:`not_replaceable`): its notebooks open with the practice note (cell id ``practice-note``),
and keep no outputs, no answers in the solution cells and no code in the implementation cells' bodies. Any
other ``NN-*.ipynb`` in ``--out`` (a learner's own notebook, a working copy that was run or filled in) stops
the command before it writes anything, with one line naming the file.
"""

from __future__ import annotations

import ast
import copy
import io
import re
import tokenize
from collections.abc import Iterable
from pathlib import Path

import nbformat

SOLUTION, IMPLEMENTATION = "solution", "implementation"
CODE_SOLUTION_PLACEHOLDER = "# Your solution here"
MARKDOWN_SOLUTION_PLACEHOLDER = "*Write your answer here.*"
TODO = "...  # TODO: implement"
TODO_FALLBACK = "# TODO: implement (see the text above)"
NOTE_ID = "practice-note"
NOTEBOOK_GLOB = "[0-9][0-9]-*.ipynb"
# Cell metadata that records one particular run, not the lesson: dropped from practice notebooks.
RUN_METADATA = ("execution", "ExecuteTime")


class _Unsafe(Exception):
    """An implementation cell whose skeleton cannot be cut out safely (the caller falls back to a comment)."""


# --- emptying one cell --------------------------------------------------------------------------------------


def emptied_kind(cell: nbformat.NotebookNode) -> str | None:
    """``"solution"`` or ``"implementation"`` when the practice version empties ``cell``, else ``None``."""
    tags = cell.get("metadata", {}).get("tags", [])
    if SOLUTION in tags:
        return SOLUTION
    if IMPLEMENTATION in tags and cell.cell_type == "code":
        return IMPLEMENTATION
    return None


def implementation_skeleton(source: str) -> str:
    """The start of an implementation cell for a student: signatures and docstrings, bodies replaced by a TODO.

    Imports, ``UPPER_CASE = ...`` constants and assignments of literal values are kept; any other top-level
    statement becomes one ``# TODO`` comment. A cell that ``ast`` cannot parse (IPython magics, say), or whose
    layout cannot be cut safely (a one-line ``def f(): ...``), becomes only ``# TODO: implement (see the text
    above)``.
    """
    try:
        tree = ast.parse(source)
        lines = source.splitlines()
        pieces = _skeleton_statements(tree.body, lines, top_level=True)
        skeleton = "\n".join(pieces).strip("\n")
        ast.parse(skeleton)  # never hand out code that does not parse
    except (SyntaxError, _Unsafe, tokenize.TokenError):
        return TODO_FALLBACK
    return skeleton or TODO_FALLBACK


def _skeleton_statements(body: list[ast.stmt], lines: list[str], top_level: bool) -> list[str]:
    """The kept lines of a module or class body, with the source's blank lines between kept statements.

    A run of dropped statements leaves one ``# TODO`` comment in its place.
    """
    pieces: list[str] = []
    previous_end: int | None = None
    dropped = False
    for node in body:
        kept = _skeleton_of(node, lines, top_level)
        previous_dropped, dropped = dropped, kept is None
        if dropped and previous_dropped:
            previous_end = node.end_lineno
            continue
        start = node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno
        if previous_end is not None:
            blank = sum(1 for line in lines[previous_end : start - 1] if not line.strip())
            pieces.extend([""] * min(blank, 2 if top_level else 1))
        if dropped:
            kept = [lines[node.lineno - 1][: node.col_offset] + TODO_FALLBACK]
        pieces.extend(kept)
        previous_end = node.end_lineno
    return pieces


def _skeleton_of(node: ast.stmt, lines: list[str], top_level: bool) -> list[str] | None:
    """The lines a student keeps from one statement, or ``None`` when it is dropped."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return _definition_skeleton(node, lines)
    if isinstance(node, (ast.Import, ast.ImportFrom)) and top_level:
        return _verbatim(node, lines)
    if (isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_constant(node)) or _is_docstring(node):
        return _verbatim(node, lines)
    return None


def _verbatim(node: ast.stmt, lines: list[str]) -> list[str]:
    """The statement's own lines; it must not share a line with another statement."""
    first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
    if first[: node.col_offset].strip() or last[node.end_col_offset :].split("#")[0].strip():
        raise _Unsafe(f"line {node.lineno} holds more than one statement")
    return lines[node.lineno - 1 : node.end_lineno]


def _is_constant(node: ast.Assign | ast.AnnAssign) -> bool:
    """An assignment to ``UPPER_CASE`` names, or of a literal value (``ast.literal_eval`` accepts it)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    if all(isinstance(t, ast.Name) and t.id.isupper() for t in targets):
        return True
    if node.value is None:
        return True  # a bare annotation, ``x: int``
    try:
        ast.literal_eval(node.value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _definition_skeleton(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lines: list[str]) -> list[str]:
    """Decorators and header lines, then the docstring and the TODO (a function) or the members' skeletons (a class)."""
    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    header_end = _header_end(node, lines)
    if node.body[0].lineno <= header_end:
        raise _Unsafe(f"the body of {node.name} starts on its header line")
    indent = lines[node.body[0].lineno - 1][: node.body[0].col_offset]
    kept = list(lines[start - 1 : header_end])
    if isinstance(node, ast.ClassDef):
        members = _skeleton_statements(node.body, lines, top_level=False)
        if not any(line.strip() and not line.strip().startswith("#") for line in members):
            members = [indent + TODO]  # nothing kept but comments: the class still needs a body
        return kept + members
    if _is_docstring(node.body[0]):
        kept.extend(_verbatim(node.body[0], lines))
    return kept + [indent + TODO]


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _indent_width(line: str) -> int:
    return len(line) - len(line.lstrip())


def _header_end(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lines: list[str]) -> int:
    """The line number of the ``:`` that ends a ``def``/``class`` header (outside any brackets)."""
    text = "\n".join(lines[node.lineno - 1 :]) + "\n"
    depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type != tokenize.OP:
            continue
        if tok.string in "([{":
            depth += 1
        elif tok.string in ")]}":
            depth -= 1
        elif tok.string == ":" and depth == 0:
            return node.lineno + tok.start[0] - 1
    raise _Unsafe(f"no end of the header of {node.name}")


def empty_cell(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The practice version of one cell: emptied if tagged, outputs and run metadata removed, id kept."""
    new = copy.deepcopy(cell)
    for key in RUN_METADATA:
        new.metadata.pop(key, None)
    kind = emptied_kind(cell)
    if kind == SOLUTION:
        new.source = CODE_SOLUTION_PLACEHOLDER if cell.cell_type == "code" else MARKDOWN_SOLUTION_PLACEHOLDER
        new.pop("attachments", None)
    elif kind == IMPLEMENTATION:
        new.source = implementation_skeleton(cell.source)
    if new.cell_type == "code":
        new.outputs = []
        new.execution_count = None
    return new


# --- whole notebooks ----------------------------------------------------------------------------------------


def read_notebook(path: Path | str, what: str = "the notebook") -> nbformat.NotebookNode:
    """The notebook at ``path`` (as nbformat 4), checked against nbformat's schema; a file that is not one raises
    a ``ValueError`` (an unreadable one an ``OSError``) of one line that names ``what`` (a flag) and the file."""
    path = Path(path)
    invalid: dict = {}  # nbformat.read stores a schema error here instead of logging it
    try:
        nb = nbformat.read(path, as_version=4, capture_validation_error=invalid)
        if not invalid:
            nbformat.validate(nb)
    except OSError as err:
        raise type(err)(f"{what} {path}: cannot read it ({err.strerror or err})") from None
    except (ValueError, TypeError, KeyError, AttributeError, nbformat.ValidationError) as err:
        invalid["ValidationError"] = err  # not JSON, not UTF-8, not a notebook's shape, an unknown nbformat
    if invalid:
        reason = (str(invalid["ValidationError"]).strip().splitlines() or ["not a notebook"])[0]
        reason = reason.removeprefix("The notebook is invalid and is ")
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        raise ValueError(f"{what} {path} is not a valid Jupyter notebook ({reason}); fix it, or move it out of "
                         f"{path.parent}") from None
    return nb


def practice_note(name: str) -> nbformat.NotebookNode:
    """The markdown cell that opens the practice version of the notebook file ``name``."""
    source = (
        f"> **This is the practice version of notebook {name[:2]}:** solutions and the cells marked for you to "
        "implement are emptied, and outputs are cleared. Write your own code where a cell says `TODO` or "
        f"*Write your answer here*. The full version, with solutions and outputs, is "
        f"[`notebooks/{name}`](../notebooks/{name}), and the course's book."
    )
    cell = nbformat.v4.new_markdown_cell(source)
    cell.id = NOTE_ID
    return cell


def practice_notebook(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The practice version of the notebook ``nb`` (whose file name is ``name``), built in memory."""
    new = copy.deepcopy(nb)
    new.metadata.pop("widgets", None)
    new.cells = [practice_note(name)] + [empty_cell(cell) for cell in nb.cells]
    return new


def make_practice(src: Path, dst: Path) -> nbformat.NotebookNode:
    """Write the practice version of the notebook ``src`` to ``dst`` (for instructors); return it.

    The file is only rewritten when its bytes change, and the same input always gives the same bytes.
    """
    src, dst = Path(src), Path(dst)
    nb = practice_notebook(read_notebook(src), src.name)
    text = nbformat.writes(nb) + "\n"
    if not dst.exists() or dst.read_text(encoding="utf-8") != text:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(dst, "w", encoding="utf-8", newline="\n") as f:  # the same bytes on every platform
            f.write(text)
    return nb


def write_practice(notebooks_dir: Path | str = "notebooks", practice_dir: Path | str = "practice") -> list[Path]:
    """Regenerate ``practice_dir`` from every ``NN-*.ipynb`` in ``notebooks_dir`` (for instructors).

    Returns the practice notebooks' paths. A practice notebook whose source is gone is deleted. This replaces
    and deletes without asking; ``python -m tlteach practice`` first refuses (:func:`check_replaceable`) when
    one of those files is not a practice notebook that nobody has worked in.
    """
    notebooks_dir, practice_dir = Path(notebooks_dir), Path(practice_dir)
    sources = sorted(notebooks_dir.glob(NOTEBOOK_GLOB))
    written = [practice_dir / src.name for src in sources]
    for src, dst in zip(sources, written):
        make_practice(src, dst)
    for stale in sorted(set(practice_dir.glob(NOTEBOOK_GLOB)) - set(written)):
        stale.unlink()
    return written


# --- never replacing someone's work --------------------------------------------------------------------------


def _still_skeleton(body: Iterable[ast.stmt], top_level: bool = True) -> bool:
    """Whether statements hold no more than :func:`implementation_skeleton` keeps (every function body only a
    docstring and ``...``): a body a learner filled in is not a skeleton."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            rest = node.body[1:] if _is_docstring(node.body[0]) else node.body
            if not (len(rest) == 1 and _is_ellipsis(rest[0])):
                return False
        elif isinstance(node, ast.ClassDef):
            if not _still_skeleton(node.body, top_level=False):
                return False
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if not top_level:
                return False
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            if not _is_constant(node):
                return False
        elif not (_is_docstring(node) or _is_ellipsis(node)):  # ``...``: a class whose members were all dropped
            return False
    return True


def _is_ellipsis(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node.value.value is Ellipsis


def not_replaceable(path: Path) -> str | None:
    """Why ``python -m tlteach practice`` must not replace or delete the file ``path``, or ``None`` if it may.

    It may only when ``path`` is a practice notebook as this module writes it (a plain file that opens with the
    practice note, id ``practice-note``) in which nobody has worked since: no outputs or execution counts, every
    solution cell still its placeholder, every implementation cell still a skeleton (bodies ``...``).
    """
    if path.is_symlink():
        return "not practice's: a link"
    if not path.is_file():
        return "not practice's: not a file"
    try:
        nb = read_notebook(path)
    except (ValueError, OSError):
        return "not practice's: not a notebook it can read"
    cells = list(nb.cells)
    if not cells or cells[0].get("id") != NOTE_ID or cells[0].cell_type != "markdown":
        return f"not practice's: it does not open with the practice note, cell id {NOTE_ID!r}"
    for number, cell in enumerate(cells[1:], start=2):  # counted in the file, the note being cell 1
        where = f"cell {number}"
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            return f"it was run: {where} has {'outputs' if cell.get('outputs') else 'an execution count'}"
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION in tags:
            placeholder = CODE_SOLUTION_PLACEHOLDER if cell.cell_type == "code" else MARKDOWN_SOLUTION_PLACEHOLDER
            if cell.source.strip() != placeholder:
                return f"it holds work: an answer in the solution {where}"
        elif IMPLEMENTATION in tags and cell.cell_type == "code" and cell.source.strip() != TODO_FALLBACK:
            try:
                kept = _still_skeleton(ast.parse(cell.source).body)
            except (SyntaxError, ValueError):
                kept = False
            if not kept:
                return f"it holds work: code in the implementation {where}"
    return None


def check_replaceable(notebooks_dir: Path | str, practice_dir: Path | str, flag: str = "--out") -> None:
    """Raise ``FileExistsError`` (one line, naming the files) unless every ``NN-*.ipynb`` that regenerating
    ``practice_dir`` would replace or delete is a practice notebook nobody has worked in (:func:`not_replaceable`).
    """
    notebooks_dir, practice_dir = Path(notebooks_dir), Path(practice_dir)
    sources = {p.name for p in notebooks_dir.glob(NOTEBOOK_GLOB)}
    refused = []
    for path in sorted(practice_dir.glob(NOTEBOOK_GLOB)):
        why = not_replaceable(path)
        if why is not None:
            refused.append(f"{path} ({why}; it would be {'overwritten' if path.name in sources else 'deleted'})")
    if refused:
        listed = "; ".join(refused[:3]) + (f"; and {len(refused) - 3} more" if len(refused) > 3 else "")
        them = "it" if len(refused) == 1 else "them"
        raise FileExistsError(f"{flag} {practice_dir} holds notebooks that are not practice's to replace: {listed}. "
                              f"Nothing was written: move {them} out of {practice_dir}, or choose another {flag}")


# --- checking that practice/ is in step ---------------------------------------------------------------------


def _parses(source: str) -> str | None:
    """``None`` if the cell's code parses (IPython ``%``/``!`` lines and ``%%`` cells skipped), else the error."""
    if source.lstrip().startswith("%%"):
        return None
    code = "\n".join(
        line[: _indent_width(line)] + "pass" if line.lstrip().startswith(("%", "!")) else line
        for line in source.splitlines()
    )
    try:
        ast.parse(code)
    except SyntaxError as err:
        return f"{err.msg} (line {err.lineno})"
    return None


def _substantive(text: str) -> set[str]:
    """The stripped lines of ``text`` that say something (not blank, not only brackets or punctuation)."""
    return {line.strip() for line in text.splitlines() if re.search(r"\w", line)}


def check_in_step(
    src_nb: nbformat.NotebookNode, practice_nb: nbformat.NotebookNode, name: str | None = None
) -> list[str]:
    """The ways ``practice_nb`` is out of step with its notebook ``src_nb`` (for instructors); empty if none.

    Checks the opening note (its exact text when the file ``name`` is given), the cells' count, order, ids and
    types, that every cell not emptied has the notebook's source and tags, that every emptied cell holds no
    solution text and is exactly its emptied form, that no outputs, execution counts or widget state are
    stored, and that every code cell parses.
    """
    problems: list[str] = []
    cells = list(practice_nb.cells)
    if not cells or cells[0].get("id") != NOTE_ID or cells[0].cell_type != "markdown":
        problems.append(f"the first cell is not the practice note (id {NOTE_ID!r})")
    else:
        if name is not None and cells[0].source != practice_note(name).source:
            problems.append("the practice note's text differs from the expected one")
        cells = cells[1:]
    if "widgets" in practice_nb.metadata:
        problems.append("widget state is stored in the notebook metadata")

    src_ids = [cell.get("id") for cell in src_nb.cells]
    ids = [cell.get("id") for cell in cells]
    if len(cells) != len(src_nb.cells):
        problems.append(f"{len(cells)} cells, but the notebook has {len(src_nb.cells)}")
    if ids != src_ids:
        missing = [i for i in src_ids if i not in ids]
        extra = [i for i in ids if i not in src_ids]
        if missing:
            problems.append(f"cells missing from the practice version: ids {missing}")
        if extra:
            problems.append(f"cells not in the notebook: ids {extra}")
        if not missing and not extra:
            problems.append("the cells are in a different order than in the notebook")

    practice_by_id = {cell.get("id"): cell for cell in cells}
    for number, src in enumerate(src_nb.cells, start=1):
        cell = practice_by_id.get(src.get("id"))
        if cell is None:
            continue
        where = f"notebook cell {number} (id {src.get('id')})"
        if cell.cell_type != src.cell_type:
            problems.append(f"{where}: a {cell.cell_type} cell, but a {src.cell_type} cell in the notebook")
            continue
        if cell.get("metadata", {}).get("tags", []) != src.get("metadata", {}).get("tags", []):
            problems.append(f"{where}: its tags differ from the notebook's")
        kind = emptied_kind(src)
        expected = empty_cell(src).source
        if kind is None:
            if cell.source != src.source:
                problems.append(f"{where}: its source differs from the notebook's")
        else:
            leftover = (_substantive(src.source) - _substantive(expected)) & _substantive(cell.source)
            if leftover:
                problems.append(f"{where}: the emptied {kind} cell still contains solution text: {min(leftover)!r}")
            elif cell.source != expected:
                problems.append(f"{where}: the {kind} cell is not emptied as expected")
        if cell.cell_type == "code":
            if cell.get("outputs"):
                problems.append(f"{where}: has stored outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"{where}: has an execution count")
            error = _parses(cell.source)
            if error:
                problems.append(f"{where}: does not parse: {error}")
    return problems


def check_folder(notebooks_dir: Path | str = "notebooks", practice_dir: Path | str = "practice") -> list[str]:
    """Every way ``practice_dir`` is out of step with ``notebooks_dir`` (for instructors), file by file."""
    notebooks_dir, practice_dir = Path(notebooks_dir), Path(practice_dir)
    sources = {p.name: p for p in notebooks_dir.glob(NOTEBOOK_GLOB)}
    practices = {p.name: p for p in practice_dir.glob(NOTEBOOK_GLOB)}
    problems = [
        f"{practice_dir / n}: missing (the notebook {notebooks_dir / n} has no practice version)"
        for n in sorted(sources.keys() - practices.keys())
    ]
    problems += [
        f"{practice_dir / n}: has no notebook {notebooks_dir / n}" for n in sorted(practices.keys() - sources.keys())
    ]
    for n in sorted(sources.keys() & practices.keys()):
        src_nb = read_notebook(sources[n], "--notebooks")
        practice_nb = read_notebook(practices[n], "--out")
        problems += [f"{practice_dir / n}: {p}" for p in check_in_step(src_nb, practice_nb, name=n)]
    return problems


def main(notebooks_dir: Path | str = "notebooks", practice_dir: Path | str = "practice", check: bool = False) -> int:
    """``python -m tlteach practice [--check]``: regenerate ``practice/``, or only report how it is out of step.

    Before writing anything, every notebook is read (a broken one raises a ``ValueError`` naming it) and every
    file that would be replaced or deleted is checked to be a practice notebook nobody has worked in (else a
    ``FileExistsError`` naming it): nothing is written unless all of it can be.
    """
    if check:
        problems = check_folder(notebooks_dir, practice_dir)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{len(problems)} problem(s): run `python -m tlteach practice` to regenerate {practice_dir}/")
            return 1
        print(f"{practice_dir}/ is in step with {notebooks_dir}/")
        return 0
    for src in sorted(Path(notebooks_dir).glob(NOTEBOOK_GLOB)):
        read_notebook(src, "--notebooks")
    check_replaceable(notebooks_dir, practice_dir)
    try:
        written = write_practice(notebooks_dir, practice_dir)
    except OSError as err:
        where = err.filename or practice_dir
        raise type(err)(f"--out {practice_dir}: cannot write {where} ({err.strerror or err}); choose a folder you "
                        "can write to") from None
    for path in written:
        print(f"wrote {path}")
    return 0
