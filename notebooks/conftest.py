"""nbval's settings for the course's notebooks (``make test`` runs them in the ``quick`` preset)."""

from __future__ import annotations

# After a cell's code finishes, nbval waits at most this long for each of its remaining output messages. Its own
# 5 s failed CI once on notebook 02's pretraining cell, whose live loss plot sends many display updates, while
# both cores were busy with the unit tests' subprocesses: a slow message, not a wrong result. 60 s failed twice
# on notebook 04's continued-pretraining cell (two progress bars) with five processes on the two cores.
OUTPUT_TIMEOUT = 300


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval cell
            item.output_timeout = OUTPUT_TIMEOUT
