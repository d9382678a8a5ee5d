"""How ``make test`` shares its files between pytest-xdist's two workers (``-n 2 --dist loadfile``).

xdist hands out whole files, the ones with the most tests first. Test counts say little about cost here: a
notebook of 30 cells can take thirteen minutes and a file of 130 bad-input tests one. So the notebooks go first,
the longest first by their last measured ``quick`` time (``benchmarks/notebook_times.csv``, written by
``scripts/run_notebooks.py``), and the unit-test files, short, fill the end, where they even out the two workers.
Notebook 02 goes first of all: it pretrains the Shakespeare model that every later notebook starts from (the
cache's lock makes the others wait for it, never train it twice). Without xdist nothing changes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

TIMES = Path(__file__).parent / "benchmarks" / "notebook_times.csv"
FIRST = "02-pretraining-a-tiny-gpt"


def notebook_seconds(path: Path = TIMES, preset: str = "quick") -> dict[str, float]:
    """Each notebook's last measured time in ``preset`` (seconds), from ``run_notebooks.py``'s CSV; empty if the
    file is missing or unreadable (then the notebooks keep xdist's order among themselves)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return {row["notebook"]: float(row["seconds"]) for row in csv.DictReader(f) if row["preset"] == preset}
    except (OSError, KeyError, ValueError):
        return {}


def scope_rank(scope: str, seconds: dict[str, float]) -> tuple:
    """Where a file (xdist's scope: its node id) goes in the queue: notebook 02, the other notebooks longest first,
    then the unit-test files in xdist's own order (``sorted`` is stable)."""
    if not scope.endswith("ipynb"):  # nbval's node ids read "notebooks/02-...::ipynb::Cell 3"
        return (2, 0.0)
    name = Path(scope.removesuffix("ipynb").rstrip(":.")).name
    return (0, 0.0) if name == FIRST else (1, -seconds.get(name, 0.0))


@pytest.hookimpl(optionalhook=True)  # pytest without xdist (-p no:xdist) has no such hook
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    if config.getvalue("dist") != "loadfile":
        return None  # another --dist mode: xdist's own scheduler

    class CourseScheduling(LoadFileScheduling):
        """``--dist loadfile`` with the queue in :func:`scope_rank`'s order."""

        _ordered = False

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # the first assignment: xdist has just filled the queue
                self._ordered = True
                seconds = notebook_seconds()
                queue = sorted(self.workqueue.items(), key=lambda item: scope_rank(item[0], seconds))
                self.workqueue.clear()
                self.workqueue.update(queue)
                self.log("queue:", [scope for scope, _ in queue])
            super()._assign_work_unit(node)

    return CourseScheduling(config, log)
