#!/usr/bin/env python
"""Render benchmarks/notebook_times.csv as a Markdown table into README.md (between the timing-table markers).

    python scripts/timing_table.py          # rewrite the table in README.md
    python scripts/timing_table.py --print  # only print it
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- timing-table:start -->", "<!-- timing-table:end -->"


def table() -> str:
    """One row per notebook, one column per (preset, device) recorded, wall time in seconds."""
    with open(ROOT / "benchmarks" / "notebook_times.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["ok"] == "True"]
    columns = sorted({(r["preset"], r["device"]) for r in rows}, key=lambda c: (["quick", "cpu", "gpu"].index(c[0]), c[1]))
    notebooks = sorted({r["notebook"] for r in rows})
    seconds = {(r["notebook"], r["preset"], r["device"]): float(r["seconds"]) for r in rows}
    lines = ["| notebook | " + " | ".join(f"`{p}` on {d}" for p, d in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for nb in notebooks:
        cells = [f"{seconds[(nb, p, d)]:.0f} s" if (nb, p, d) in seconds else "" for p, d in columns]
        lines.append(f"| {nb} | " + " | ".join(cells) + " |")
    totals = []  # the whole course, where every notebook has a time in the column
    for p, d in columns:
        have = [seconds[(nb, p, d)] for nb in notebooks if (nb, p, d) in seconds]
        totals.append(f"**{sum(have) / 60:.0f} min**" if len(have) == len(notebooks) else
                      f"({len(notebooks) - len(have)} missing)")
    lines.append("| **whole course** | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def main() -> None:
    text = table()
    if "--print" in sys.argv:
        print(text)
        return
    readme = ROOT / "README.md"
    s = readme.read_text(encoding="utf-8")
    if START not in s or END not in s:
        sys.exit(f"README.md has no {START} ... {END} markers")
    head, rest = s.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
