"""Trials for notebook 10: which arms beat which, across seeds, through the package's study (tlteach.few_labels:
its cached bodies, one cached run per arm, label count, seed and learning rate, each arm's rate chosen on
validation loss, the bag of words beside them).

Usage: trial10.py isco|word-order SEEDS PRESET COUNTS ARMS [WINDOWS]
  e.g. trial10.py word-order 0,1,2 quick 100,400 scratch,shakespeare,stage2 1
Writes one JSON line per (arm, count, seed) to /tmp/t10/TASK_PRESET[_wWINDOWS].jsonl (summarize.py tables them).

The results in results/ were made by an earlier copy of this script that trained the same bodies and runs by hand
(400 steps at most, early stopping with patience 8 at every 10 steps, the same rate grids); the package's
``quick`` settings are those. Its ULMFiT arm (in isco_quick_v1.jsonl only) used cosine rates and unfroze a layer
every 20 steps.
"""

import json
import sys

from tlteach import few_labels, presets
from tlteach.few_labels import Arm

ARMS = {"scratch": Arm("scratch"), "shakespeare": Arm("shakespeare"), "stage2": Arm("shakespeare+task-lm"),
        "ulmfit": Arm("shakespeare+task-lm", ulmfit=True), "task-lm": Arm("task-lm"), "encoder": Arm("encoder"),
        "probe-stage2": Arm("shakespeare+task-lm", trainable="head"), "probe-scratch": Arm("scratch", trainable="head"),
        "probe-enc": Arm("encoder", trainable="head")}

if __name__ == "__main__":
    task, seeds, preset_name, counts, arms = sys.argv[1:6]
    windows = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    preset = presets.get_preset(preset_name)
    few_labels.SETTINGS[few_labels.study_preset(preset).name]["windows"] = windows
    curve = few_labels.label_curve({a: ARMS[a] for a in arms.split(",")}, task,
                                   [int(c) for c in counts.split(",")], [int(s) for s in seeds.split(",")], preset)
    out = f"/tmp/t10/{task}_{preset_name}{'' if windows == 1 else f'_w{windows}'}.jsonl"
    with open(out, "a") as f:
        for row in curve.to_dict(orient="records"):
            f.write(json.dumps({**row, "arm": "bow" if row["arm"] == "bag-of-words" else row["arm"]}) + "\n")
