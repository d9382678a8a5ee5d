"""Transfer, measured: fine-tuning runs, fair learning rates, learning curves and data multiples
(notebooks 03 and 04).

A run starts from a *source* of the study's model zoo (:func:`tlteach.study.source_model`: ``"scratch"``, a
corpus, or stages joined by ``+`` for domain-adaptive pretraining) and fine-tunes it on a share of the
target through the course's one loop (``train.train``) with :class:`~tlteach.train.EarlyStopping` on the
target's validation loss; :func:`best_run` gives each source its own learning rate, picked on validation
loss, and reports the *test* loss of the chosen run. Runs are cached by :func:`tlteach.study.cached_run`
(the record only, no weights), so notebook 04 reuses notebook 03's runs and a rerun is instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import data
from .presets import Preset
from .stack import shared_settings, train_stacked
from .study import (
    SCRATCH,
    Trained,
    cached_run,
    check_source,
    is_cached,
    schedule,
    source_model,
    stacking,
    study_preset,
    tokenizer,
)
from .study import settings as study_settings
from .train import EarlyStopping, TrainConfig, TrainResult, evaluate, train


def sweep_settings(preset: Preset | None = None) -> dict:
    """Fractions, learning-rate grids, step cap and early-stopping schedule of the preset's sweeps (a copy of
    :func:`tlteach.study.settings` for ``"transfer"``)."""
    return study_settings(preset, "transfer")


def target_subset(fraction: float, seed: int, corpus: str = data.TARGET):
    """The first ``fraction`` of the target's training documents in a seeded order (notebook 03).

    Subsets are nested: the 1% subset is inside the 3% one, so a bigger size only ever adds documents.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    train_ds = data.load_corpus(corpus)["train"]
    order = np.random.default_rng(seed).permutation(len(train_ds))
    n = max(1, round(fraction * len(train_ds)))
    return train_ds.select(sorted(order[:n].tolist()))


def finetune_config(preset: Preset, lr: float, settings: dict | None = None, train_tokens: int | None = None
                    ) -> TrainConfig:
    """A sweep's fine-tuning schedule (:func:`tlteach.study.schedule`): a short warmup, then cosine decay to a tenth
    of ``lr`` at the step cap.

    With ``train_tokens`` given, evaluation comes at least once per pass over the training text (but not
    more often than every 10 steps): on a few thousand tokens a model overfits within a few dozen steps,
    and early stopping must see it happen.
    """
    s = settings or sweep_settings(preset)
    interval = s["eval_interval"]
    if train_tokens is not None:
        epoch_steps = train_tokens // (s["batch_size"] * preset.block_size)
        interval = max(10, min(interval, epoch_steps))
    return schedule(preset, s["max_iters"], lr, s["batch_size"], interval, s["eval_iters"], warmup_div=50,
                    progress=False)


@dataclass(frozen=True)
class _Plan:
    """One fine-tuning run before it is trained: what :func:`finetune_run` caches it under, and its data."""

    source: str
    fraction: float
    lr: float
    spec: dict
    cfg: TrainConfig
    train_ids: torch.Tensor
    docs: int


def _plan(source: str, fraction: float, lr: float, preset: Preset, settings: dict, target: str) -> _Plan:
    check_source(source)
    subset = target_subset(fraction, preset.seed, target)
    train_ids = data.encode_split(subset, tokenizer(preset))
    spec = {"source": source, "fraction": float(fraction), "lr": float(lr), "target": target,
            "subset": data.fingerprint(subset), "patience": settings["patience"]}
    return _Plan(source, float(fraction), float(lr), spec, finetune_config(preset, lr, settings, len(train_ids)),
                 train_ids, len(subset))


def _trained(plan: _Plan, result: TrainResult, best: float, best_step: int, test_ids: torch.Tensor) -> Trained:
    """The record of a finished run, its best weights restored in ``result.model``: the test loss is theirs."""
    cfg = plan.cfg
    test = evaluate(result.model, test_ids, cfg.block_size, cfg.batch_size, 2 * cfg.eval_iters, cfg.amp)
    return Trained(result, {"source": plan.source, "fraction": plan.fraction, "lr": plan.lr, "docs": plan.docs,
                            "tokens": len(plan.train_ids), "val": best, "step": best_step, "test": test,
                            "stacked": int(result.extras.get("stacked", 1))})


def _cached(plan: _Plan, preset: Preset, settings: dict, target: str) -> dict:
    """The run's record from the cache, or the run trained alone now (and cached)."""
    def body(cfg: TrainConfig) -> Trained:
        held_out = data.token_splits(target, tokenizer(preset), ("validation", "test"))
        model = source_model(plan.source, preset)
        stop = EarlyStopping("val", patience=settings["patience"])
        result = train(model, plan.train_ids, cfg, eval_sets={"val": held_out["validation"]}, on_eval=stop)
        stop.restore(model)
        return _trained(plan, result, stop.best, stop.best_step, held_out["test"])

    return cached_run("finetune", plan.spec, preset, plan.cfg, body, weights=False).record


def finetune_run(source: str, fraction: float, lr: float, preset: Preset | None = None,
                 settings: dict | None = None, target: str = data.TARGET) -> dict:
    """Fine-tune ``source`` on ``fraction`` of the target with learning rate ``lr`` and early stopping
    (notebooks 03 and 04): one run, alone. Cached.

    Returns a dict: ``source, fraction, lr, docs, tokens`` (training tokens), ``val`` (best validation loss),
    ``step`` (where it was best), ``steps`` (run), ``test`` (test loss of the best weights), ``seconds``,
    ``stacked`` (how many runs it was trained with: 1 alone), ``history`` (the loop's evaluations).
    """
    preset = preset or study_preset()
    settings = settings or sweep_settings(preset)
    return _cached(_plan(source, fraction, lr, preset, settings, target), preset, settings, target)


def finetune_runs(points: Sequence[tuple[str, float, float]], preset: Preset | None = None,
                  settings: dict | None = None, target: str = data.TARGET, stacked: bool | None = None,
                  progress: bool = False, on_run: Callable[[dict], None] | None = None) -> list[dict]:
    """The records of many ``(source, fraction, lr)`` runs, as :func:`finetune_run` gives them (notebook 03).

    With ``stacked`` (default: :func:`tlteach.study.stacking`, on a GPU), the runs not cached yet that share a
    schedule (those of one fraction) are trained together as one :class:`~tlteach.stack.Stack`, each with its
    own start, data, learning rate and early stopping, and cached one by one: the same numbers, to float
    tolerance, as training them alone. ``on_run(record)`` is called as each run's record is ready (a progress bar).
    """
    preset = preset or study_preset()
    settings = settings or sweep_settings(preset)
    plans = [_plan(s, f, lr, preset, settings, target) for s, f, lr in points]
    if stacking(preset) if stacked is None else stacked:
        by_schedule: dict[tuple, list[_Plan]] = {}
        for p in plans:
            if not is_cached("finetune", p.spec, preset, p.cfg, weights=False):
                by_schedule.setdefault(shared_settings(p.cfg), []).append(p)
        groups = [g for g in by_schedule.values() if len(g) > 1]  # a run with no partner is trained alone below
        held_out = data.token_splits(target, tokenizer(preset), ("validation", "test")) if groups else {}
        for group in groups:
            results = train_stacked([source_model(p.source, preset) for p in group], [p.train_ids for p in group],
                                    [p.cfg for p in group], {"val": held_out["validation"]}, settings["patience"],
                                    progress=progress)
            for p, r in zip(group, results):
                done = _trained(p, r, r.extras["best"], r.extras["best_step"], held_out["test"])
                cached_run("finetune", p.spec, preset, p.cfg, lambda cfg, done=done: done, weights=False)
    records = []
    for p in plans:
        records.append(_cached(p, preset, settings, target))
        if on_run is not None:
            on_run(records[-1])
    return records


def best_run(source: str, fraction: float, preset: Preset | None = None, settings: dict | None = None,
             lrs: Sequence[float] | None = None) -> dict:
    """The run with the lowest *validation* loss over the learning-rate grid: each source gets its own
    fair learning rate (notebook 03). Its ``tried`` entry lists ``(lr, val)`` of every run."""
    preset = preset or study_preset()
    settings = settings or sweep_settings(preset)
    runs = finetune_runs([(source, fraction, lr) for lr in (lrs or settings["lrs"])], preset, settings)
    best = dict(min(runs, key=lambda r: r["val"]))
    best["tried"] = [(r["lr"], r["val"]) for r in runs]
    return best


def learning_curve(sources: Sequence[str], fractions: Sequence[float] | None = None, preset: Preset | None = None,
                   settings: dict | None = None, progress: bool = True,
                   on_point: Callable[[dict], None] | None = None):
    """For each source and target fraction, the best run over the learning-rate grid (notebook 03).

    Returns a DataFrame with one row per (source, fraction): ``tokens``, ``lr`` (the one picked), ``val``,
    ``test``, ``step``, ``steps``, ``seconds``. Shows one progress bar over all runs.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    preset = preset or study_preset()
    settings = settings or sweep_settings(preset)
    fractions = tuple(fractions or settings["fractions"])
    for s in sources:
        source_model(s, preset, progress=progress)  # pretrain (or load) every source first, with its own bar
    total = len(settings["lrs"]) * len(sources) * len(fractions)
    rows = []
    with tqdm(total=total, desc="fine-tuning runs", disable=not progress) as bar:
        for fraction in fractions:  # one size's runs at a time (stacked together where study.stacking says so)
            done = finetune_runs([(s, fraction, lr) for s in sources for lr in settings["lrs"]], preset, settings,
                                 progress=progress, on_run=lambda _: bar.update(1))
            for s in sources:
                runs = [r for r in done if r["source"] == s]
                best = min(runs, key=lambda r: r["val"])
                row = {k: best[k] for k in ("source", "fraction", "docs", "tokens", "lr", "val", "test", "step",
                                            "steps")}
                row["capped"] = best["steps"] >= settings["max_iters"]  # stopped by the cap, not by early stopping
                row["seconds"] = sum(r["seconds"] for r in runs)
                rows.append(row)
                if on_point is not None:
                    on_point(row)
    return pd.DataFrame(rows)


def data_multiple(sizes: Sequence[float], scratch_losses: Sequence[float], loss: float, size: float) -> float:
    """How much more target data scratch needs to reach ``loss`` than the pretrained model used (``size``):
    the size where scratch's curve, interpolated linearly in log size, crosses ``loss``, divided by ``size``
    (the "data multiple" read off a learning curve, notebook 03).

    Scratch's curve is made monotone first (a bigger size never counts as worse). Returns ``inf`` when
    scratch never reaches ``loss`` within the sizes measured (the multiple is then more than
    ``max(sizes) / size``), and a value below 1 when the pretrained model is worse than scratch.
    """
    order = np.argsort(sizes)
    xs = np.log(np.asarray(sizes, dtype=float)[order])
    ys = np.minimum.accumulate(np.asarray(scratch_losses, dtype=float)[order])
    if loss >= ys[0]:  # no better than scratch at its smallest size
        return _below(xs, ys, loss, size)
    if loss < ys[-1]:
        return math.inf
    for i in range(len(xs) - 1):
        if ys[i] >= loss >= ys[i + 1]:
            t = 0.0 if ys[i] == ys[i + 1] else (ys[i] - loss) / (ys[i] - ys[i + 1])
            return float(np.exp(xs[i] + t * (xs[i + 1] - xs[i])) / size)
    return math.inf  # unreachable: the curve is monotone


def _below(xs: np.ndarray, ys: np.ndarray, loss: float, size: float) -> float:
    """A pretrained model worse than scratch at the smallest size: extrapolate scratch's first segment."""
    if loss == ys[0] or len(xs) < 2 or ys[0] == ys[1]:
        return float(np.exp(xs[0]) / size)
    slope = (xs[1] - xs[0]) / (ys[1] - ys[0])  # d log-size / d loss (negative)
    return float(np.exp(xs[0] + (loss - ys[0]) * slope) / size)


def multiples(curve, sources: Sequence[str], fraction: float | None = None):
    """The data multiple of each pretrained source at each fraction (or one), from a :func:`learning_curve`
    table, using test losses."""
    import pandas as pd

    scratch = curve[curve.source == SCRATCH].sort_values("fraction")
    rows = []
    for s in sources:
        mine = curve[curve.source == s].sort_values("fraction")
        for _, r in mine.iterrows():
            if fraction is not None and r.fraction != fraction:
                continue
            rows.append({"source": s, "fraction": r.fraction, "test": r.test,
                         "scratch": float(scratch[scratch.fraction == r.fraction].test.iloc[0]),
                         "multiple": data_multiple(list(scratch.fraction), list(scratch.test), r.test, r.fraction)})
    out = pd.DataFrame(rows)
    out["gain"] = out["scratch"] - out["test"]
    return out
