#!/usr/bin/env python
"""Notebook 06's claims, seed by seed: what EWC gains over L2 (and over stopping early) at a matched target loss.

    TLTEACH_PRESET=quick TLTEACH_SEED=3 python benchmarks/ewc_margin_seeds.py   # one line per run

Runs what notebook 06 runs for its three claims (the forgetting run, EWC and L2 at every strength; cached like
the notebook's) and prints, for the seed in TLTEACH_SEED: the source loss's rise under full fine-tuning, claim 1's
cut in forgetting within +10% target loss, claim 2's lead over stopping early, and claim 3's margins (the source
loss L2 keeps at each EWC run's target loss minus EWC's: positive means EWC forgot less) with their mean. A seed
loop around it gives the seed-to-seed spread that notebook 06 quotes (results in benchmarks/results/).
"""

from __future__ import annotations

import time

from tlteach import forgetting
from tlteach.methods import EWC, L2, Full
from tlteach.study import setup


def main() -> None:
    start = time.perf_counter()
    study, settings, _, _ = setup(progress=False)
    ewc_runs = forgetting.runs([EWC(lam) for lam in settings["lams"]], study, progress=False)
    l2_runs = forgetting.runs([L2(lam) for lam in settings["lams"]], study, progress=False)
    full = forgetting.forgetting_run(Full(), study)
    l2_t, l2_s = [r["target_after"] for r in l2_runs], [r["source_after"] for r in l2_runs]
    margins = [forgetting.frontier_at(l2_t, l2_s, r["target_after"]) - r["source_after"] for r in ewc_runs]
    margins = [m for m in margins if m == m]  # inside L2's range
    within = [r for r in ewc_runs if r["target_after"] <= 1.10 * full["target_after"]]
    best = min(within, key=lambda r: r["forgetting"])
    early = forgetting.source_at_target(full, best["target_after"])
    print(f"seed {study.seed} {study.name}: rise {full['forgetting'] / full['source_before']:.3f}, "
          f"claim 1 cut {1 - best['forgetting'] / full['forgetting']:.3f}, "
          f"claim 2 lead over stopping early {early - best['source_after']:+.3f}, "
          f"claim 3 margins {[round(m, 3) for m in margins]} mean {sum(margins) / len(margins):+.3f} "
          f"min {min(margins):+.3f} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
