"""What each size of the transfer learning curve costs, and what the curve would claim without its largest size.

Reads the fine-tuning runs that notebooks 03 and 04 cached (``TLTEACH_CACHE`` folders, one per seed, e.g. the
caches of nbval runs with ``TLTEACH_SEED=1, 2, 3``; no training) and prints, per cache: the runs, their training
seconds by size, the runs that ended at the step cap, and each pretrained source's gain over scratch (best
learning rate by validation loss, test loss) at every size with its ratio to the gain at the smallest. Notebook 03
asserts that the gain at the largest size is less than half the gain at the smallest: the ratios say whether that
would still hold if the curve stopped one size earlier.

    python benchmarks/learning_curve_costs.py CACHE [CACHE ...]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def runs(cache: Path) -> list[dict]:
    """The records of the cached fine-tuning runs (``transfer.finetune_run``) in ``cache``."""
    out = []
    for path in sorted((cache / "finetune").rglob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if {"source", "fraction", "lr", "val", "test", "steps", "seconds"} <= set(record):
            out.append(record)
    return out


def report(cache: Path, cap: int, sources: list[str]) -> str:
    records = runs(cache)
    if not records:
        return f"{cache}: no fine-tuning runs"
    seconds = defaultdict(float)
    best: dict[tuple, dict] = {}
    for r in records:
        seconds[r["fraction"]] += r["seconds"]
        key = (r["source"], r["fraction"])
        if key not in best or r["val"] < best[key]["val"]:
            best[key] = r
    total = sum(seconds.values())
    sizes = sorted(seconds)
    lines = [f"{cache}: {len(records)} runs, {total:.0f} s of training",
             "  seconds by size: " + ", ".join(f"{f:.1%} {seconds[f]:.0f} ({seconds[f] / total:.0%})" for f in sizes)]
    capped = [f"{r['source']} at {r['fraction']:.1%}, lr {r['lr']:g}" for r in records if r["steps"] >= cap]
    lines.append(f"  ended at the {cap}-step cap: {len(capped)}" + (f" ({'; '.join(capped)})" if capped else ""))
    for source in sources:
        at = [f for f in sizes if (source, f) in best and ("scratch", f) in best]
        if not at:
            continue
        gain = {f: best[("scratch", f)]["test"] - best[(source, f)]["test"] for f in at}
        lines.append(f"  {source}: gain over scratch (ratio to {at[0]:.1%}'s) "
                     + ", ".join(f"{f:.1%} {gain[f]:+.3f} ({gain[f] / gain[at[0]]:.2f})" for f in at))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caches", nargs="+", type=Path, help="TLTEACH_CACHE folders, one per seed")
    parser.add_argument("--cap", type=int, default=1500, help="the sweep's step cap (quick and cpu: 1500)")
    parser.add_argument("--sources", nargs="+", default=["shakespeare", "esco-skills"])
    args = parser.parse_args()
    for cache in args.caches:
        print(report(cache, args.cap, args.sources))


if __name__ == "__main__":
    main()
