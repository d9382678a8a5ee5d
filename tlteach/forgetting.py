"""Catastrophic forgetting, measured: cached fine-tuning runs that watch both domains, and their read-outs
(notebooks 05 to 08).

A *forgetting run* fine-tunes the Shakespeare model (the study model, :func:`tlteach.study.source_model`) on the
ESCO occupations for a fixed number of steps, through the course's one loop, evaluating *both* domains at every
interval. Forgetting is the rise of the source's validation loss; learning is the fall of the target's. A run
is plain fine-tuning plus what a :class:`tlteach.methods.Method` adds to the loop (a penalty, a data mix,
optimizer groups, hooks, adapters), so every cure (EWC, L2, LoRA, replay, ULMFiT's) and any combination of them
is the same run. Runs are cached by :func:`tlteach.study.cached_run`: the record sits in the header of a safetensors
file that holds the weights after the run (LoRA merged in), so notebook 08 reuses the runs of 05 to 07.

The read-outs: :func:`table`, :func:`history`, :func:`source_at_target` (a run stopped early),
:func:`frontier_at` and :func:`pareto_front` (learning against forgetting), :func:`relative_change`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from . import data, ewc, lora
from .gpt import GPT
from .methods import Method
from .presets import Preset
from .study import Run, Trained, cached_run, schedule, source_model, streams, study_preset
from .study import settings as study_settings
from .train import TrainConfig, evaluate, train


def forgetting_settings(preset: Preset | None = None) -> dict:
    """Steps, learning rates, batch, evaluation schedule, Fisher sample size and sweeps of the preset's forgetting
    runs (a copy of :func:`tlteach.study.settings` for ``"forgetting"``)."""
    return study_settings(preset, "forgetting")


def run_config(method: Method, preset: Preset, settings: dict) -> TrainConfig:
    """The fine-tuning schedule of a forgetting run (``method`` resolved; :func:`tlteach.study.schedule`): a short
    warmup, then cosine decay to a tenth of the rate."""
    return schedule(preset, method.steps, method.lr, settings["batch_size"], settings["eval_interval"],
                    settings["eval_iters"], warmup_div=30, progress=False)


def forgetting_run(method: Method, preset: Preset | None = None, progress: bool = False,
                   settings: dict | None = None) -> dict:
    """Fine-tune the Shakespeare model on the occupations with ``method``, evaluating both domains
    (notebooks 05 to 08). Cached; :func:`run_model` gives the weights after the run.

    Returns a dict: ``method`` (its fields), ``label``, ``history`` (step, source, target, ...),
    ``source_before/after``, ``target_before/after``, ``forgetting`` (source rise, nats), ``learning``
    (target fall), ``trainable`` (parameters trained), ``seconds``, ``change`` (per-group relative change).
    ``settings`` overrides :func:`forgetting_settings` (for tests and exercises).
    """
    return _run(method, preset, progress, settings).record


def run_model(method: Method, preset: Preset | None = None, progress: bool = False,
              settings: dict | None = None) -> GPT:
    """The model after :func:`forgetting_run` (LoRA merged into the weights), on the preset's device."""
    return _run(method, preset, progress, settings).model()


def _run(method: Method, preset: Preset | None, progress: bool, settings: dict | None) -> Run:
    preset = preset or study_preset()
    settings = settings or forgetting_settings(preset)
    method = method.resolved(settings)

    def body(cfg: TrainConfig) -> Trained:
        s = streams(preset)
        start, model = source_model(data.SOURCE, preset), source_model(data.SOURCE, preset)
        torch.manual_seed(preset.seed)  # LoRA's random A: the same run whatever ran before it in this process
        plugs = method.plug(model, preset, settings)
        result = train(model, plugs.batches or s["target_train"], cfg,
                       eval_sets={"source": s["source"], "target": s["target"]}, **plugs.loop_arguments())
        trainable = lora.trainable_counts(model)["trainable"]
        final = lora.merge_lora(model) if plugs.adapters else model
        h = result.history
        record = {"method": method.describe(), "label": method.label,
                  "source_before": float(h.source.iloc[0]), "source_after": float(h.source.iloc[-1]),
                  "target_before": float(h.target.iloc[0]), "target_after": float(h.target.iloc[-1]),
                  "trainable": trainable, "change": relative_change(start, final)}
        record["forgetting"] = record["source_after"] - record["source_before"]
        record["learning"] = record["target_before"] - record["target_after"]
        return Trained(result, record, final)

    spec = {"method": method.describe(), "fisher": settings["fisher_examples"] if method.needs_fisher else None}
    return cached_run("forgetting", spec, preset, run_config(method, preset, settings), body, progress=progress)


def runs(methods: Sequence[Method], preset: Preset | None = None, progress: bool = True,
         settings: dict | None = None) -> list[dict]:
    """Run (or load) every method, with one progress bar over them; their records (notebooks 05 to 08)."""
    from tqdm.auto import tqdm

    return [forgetting_run(m, preset, settings=settings)
            for m in tqdm(methods, desc="fine-tuning runs", disable=not progress)]


def relative_change(before: nn.Module, after: nn.Module) -> dict[str, float]:
    """Per module group (``wte``, ``h.0.attn.c_attn``, ...), ``‖θ_after − θ_before‖ / ‖θ_before‖`` (notebook 05)."""
    b, a = dict(before.named_parameters()), dict(after.named_parameters())
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for name, p in b.items():
        group = ewc.group_of(name)
        num[group] = num.get(group, 0.0) + float((a[name].detach() - p.detach()).pow(2).sum())
        den[group] = den.get(group, 0.0) + float(p.detach().pow(2).sum())
    return {g: math.sqrt(num[g] / den[g]) if den[g] > 0 else 0.0 for g in num}


def table(records: Sequence[dict]):
    """One row per run: its label, method fields, losses before and after, forgetting, learning, cost."""
    import pandas as pd

    return pd.DataFrame([{"label": r["label"], **r["method"], **{k: r[k] for k in (
        "source_before", "source_after", "target_before", "target_after", "forgetting", "learning", "trainable",
        "seconds")}} for r in records])


def history(record: dict):
    """A run's evaluations as a DataFrame (step, source, target, ...)."""
    import pandas as pd

    return pd.DataFrame(record["history"])


def source_at_target(record: dict, target: float) -> float:
    """The source loss of a run *stopped early*, at the first point where its target loss reaches ``target``,
    interpolated linearly between evaluations (notebook 06). ``nan`` if the run never reaches it."""
    h = history(record)
    t, s = h.target.to_numpy(), h.source.to_numpy()
    if t[0] <= target:
        return float(s[0])
    for i in range(1, len(t)):
        if t[i] <= target:
            w = (t[i - 1] - target) / (t[i - 1] - t[i])
            return float(s[i - 1] + w * (s[i] - s[i - 1]))
    return float("nan")


def frontier_at(targets: Sequence[float], sources: Sequence[float], target: float) -> float:
    """The least source loss a set of runs reaches with target loss at most ``target``, interpolating the
    lower-left boundary of the points (notebooks 06 and 08). ``nan`` if no run reaches ``target``."""
    pts = sorted(zip(targets, sources))
    best = float("nan")
    for (t0, s0), (t1, s1) in zip(pts, pts[1:]):
        if t0 <= target <= t1 and t1 > t0:
            s = s0 + (target - t0) / (t1 - t0) * (s1 - s0)
            best = s if math.isnan(best) else min(best, s)
    for t, s in pts:
        if t <= target:
            best = s if math.isnan(best) else min(best, s)
    return best


def pareto_front(targets: Sequence[float], sources: Sequence[float]) -> np.ndarray:
    """Indices of the runs no other run beats on both target and source loss (lower is better on both)."""
    t, s = np.asarray(targets, float), np.asarray(sources, float)
    keep = [i for i in range(len(t)) if not np.any((t <= t[i]) & (s <= s[i]) & ((t < t[i]) | (s < s[i])))]
    return np.array(sorted(keep, key=lambda i: t[i]), dtype=int)


def evaluate_both(model: nn.Module, preset: Preset | None = None, settings: dict | None = None) -> dict[str, float]:
    """Validation loss of ``model`` on the source and the target, as the runs measure it (notebook 05)."""
    preset = preset or study_preset()
    s, st = streams(preset), settings or forgetting_settings(preset)
    return {d: evaluate(model, s[d], preset.block_size, st["batch_size"], st["eval_iters"]) for d in ("source", "target")}
