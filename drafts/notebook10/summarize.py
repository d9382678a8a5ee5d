"""Summarise notebook 10's trials (jsonl from trial10.py): test accuracy per arm and label count, mean (min-max)."""
import collections
import json
import statistics
import sys

for path in sys.argv[1:]:
    rows = [json.loads(line) for line in open(path)]
    by = collections.defaultdict(list)
    for r in rows:
        by[(r["arm"], r["n"])].append(r)
    arms = sorted({a for a, _ in by}, key=lambda a: (a != "bow", a))
    counts = sorted({n for _, n in by})
    print(f"\n{path}: test accuracy, mean (min-max) over seeds [seeds]")
    print("| arm | " + " | ".join(f"{n} labels" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for a in arms:
        cells = []
        for n in counts:
            v = [r["test_acc"] for r in by.get((a, n), [])]
            cells.append(f"{statistics.mean(v):.3f} ({min(v):.2f}-{max(v):.2f}) [{len(v)}]" if v else "")
        print(f"| {a} | " + " | ".join(cells) + " |")
