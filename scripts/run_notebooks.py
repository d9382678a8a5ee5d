#!/usr/bin/env python
"""Execute the course's notebooks top to bottom in one preset and record how long each took.

    python scripts/run_notebooks.py                  # every notebook, the preset the device implies
    python scripts/run_notebooks.py --preset quick 01 02

Each notebook runs in a fresh kernel (nbclient), is written back with its outputs, and gets a row in
benchmarks/notebook_times.csv (notebook, preset, device, seconds, versions, date). ``make course`` uses it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
RECORD = ROOT / "benchmarks" / "notebook_times.csv"
FIELDS = ["notebook", "preset", "device", "seconds", "ok", "python", "torch", "tlteach", "date"]


def select(patterns: list[str]) -> list[Path]:
    """The notebooks to run: all ``NN-*.ipynb`` in order, or those whose names start with a pattern."""
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if not patterns:
        return every
    chosen = [nb for nb in every if any(nb.name.startswith(p) or nb.stem == p for p in patterns)]
    if not chosen:
        sys.exit(f"no notebook matches {patterns}; the notebooks are: {[nb.name for nb in every]}")
    return chosen


def record(row: dict) -> None:
    """Add or replace the row for (notebook, preset, device) in the timing table."""
    rows = []
    if RECORD.exists():
        with open(RECORD, newline="") as f:
            rows = [r for r in csv.DictReader(f)
                    if (r["notebook"], r["preset"], r["device"]) != (row["notebook"], row["preset"], row["device"])]
    rows.append(row)
    rows.sort(key=lambda r: (r["preset"], r["device"], r["notebook"]))
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    with open(RECORD, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook name prefixes (default: all)")
    parser.add_argument("--preset", default=None, help="quick, cpu or gpu (default: what the device implies)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/notebook_times.csv")
    args = parser.parse_args(argv)

    import nbformat
    import torch
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    import tlteach

    sys.path.insert(0, str(ROOT / "scripts"))
    from build_book import add_stills

    from tlteach.environment import device_description
    from tlteach.presets import get_preset

    preset = get_preset(args.preset)  # validates the name before anything runs
    os.environ["TLTEACH_PRESET"] = preset.name
    device = device_description(preset.device)
    failures = 0
    for path in select(args.notebooks):
        print(f"running {path.name} in the {preset.name} preset on {device} ...", flush=True)
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}})
        start = time.perf_counter()
        ok = True
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError) as err:  # record it and go on to the next notebook
            ok = False
            failures += 1
            print(f"  FAILED: {str(err).strip().splitlines()[-1]}", flush=True)
        seconds = time.perf_counter() - start
        add_stills(nb)  # what an untrusted JupyterLab shows of a widget before its cells run
        nbformat.write(nb, path)
        print(f"  {'done' if ok else 'stopped'} in {seconds:.1f} s -> {path.relative_to(ROOT)}", flush=True)
        if not args.no_record:
            record({"notebook": path.stem, "preset": preset.name, "device": device, "seconds": f"{seconds:.1f}",
                    "ok": ok, "python": platform.python_version(), "torch": torch.__version__,
                    "tlteach": tlteach.__version__, "date": dt.date.today().isoformat()})
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
