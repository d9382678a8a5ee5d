"""What each size of notebook 03's learning curve costs, and what the curve would claim without its largest size.

Trains nothing: for each ``SEED=CACHE`` given (a ``TLTEACH_CACHE`` folder in which notebook 03 ran with
``TLTEACH_SEED=SEED``, e.g. under nbval), it loads the curve's runs through ``transfer.learning_curve`` and prints
their training seconds by size, the points whose chosen run ended at the step cap, and each pretrained source's
gain over scratch at every size with its ratio to the gain at the smallest. Notebook 03 asserts that the gain at
the largest size is less than half the gain at the smallest: the ratios say whether that would still hold if the
curve stopped one size earlier.

    python benchmarks/learning_curve_costs.py [--preset quick] 0=CACHE0 1=CACHE1 ...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tlteach import study, transfer
from tlteach.presets import get_preset, with_changes

SOURCES = ("shakespeare", "esco-skills")  # notebook 03's sources, with scratch


def cached_curve(seed: int, cache: Path, preset_name: str):
    """Notebook 03's curve for ``seed`` from ``cache``, or ``None`` if a run of it is not there (nothing trains)."""
    os.environ["TLTEACH_CACHE"] = str(cache)
    preset = study.study_preset(with_changes(get_preset(preset_name), seed=seed))
    settings = transfer.sweep_settings(preset)
    for s in (*SOURCES, study.SCRATCH):
        for f in settings["fractions"]:
            for lr in settings["lrs"]:
                plan = transfer._plan(s, f, lr, preset, settings, transfer.data.TARGET)
                if not study.is_cached("finetune", plan.spec, preset, plan.cfg, weights=False):
                    return None
    return transfer.learning_curve([*SOURCES, study.SCRATCH], preset=preset, settings=settings, progress=False)


def report(seed: int, cache: Path, preset_name: str) -> str:
    curve = cached_curve(seed, cache, preset_name)
    if curve is None:
        return f"seed {seed} ({cache}): notebook 03's curve is not all in this cache; run the notebook first"
    by_size = curve.groupby("fraction")["seconds"].sum()
    total = by_size.sum()
    lines = [f"seed {seed}: {len(curve)} points, {total:.0f} s of training",
             "  seconds by size: " + ", ".join(f"{f:.1%} {s:.0f} ({s / total:.0%})" for f, s in by_size.items())]
    capped = curve[curve.capped]
    lines.append(f"  points whose chosen run ended at the step cap: {len(capped)}"
                 + "".join(f"; {r.source} at {r.fraction:.1%} (lr {r.lr:g})" for r in capped.itertuples()))
    test = curve.pivot(index="fraction", columns="source", values="test")
    for source in SOURCES:
        gain = test[study.SCRATCH] - test[source]
        lines.append(f"  {source}: gain over scratch (ratio to {gain.index[0]:.1%}'s) "
                     + ", ".join(f"{f:.1%} {g:+.3f} ({g / gain.iloc[0]:.2f})" for f, g in gain.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caches", nargs="+", metavar="SEED=CACHE", help="a seed and the TLTEACH_CACHE it ran in")
    parser.add_argument("--preset", default="quick")
    args = parser.parse_args()
    for item in args.caches:
        seed, sep, cache = item.partition("=")
        if not sep or not seed.isdigit():
            parser.error(f"expected SEED=CACHE (e.g. 1=/tmp/cache-seed1), got {item!r}")
        print(report(int(seed), Path(cache), args.preset))


if __name__ == "__main__":
    main()
