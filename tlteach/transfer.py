"""Transfer, measured: fine-tuning runs, fair learning rates, learning curves and data multiples
(notebooks 03 and 04).

A *source* is where a model starts: ``"scratch"`` (random weights), a corpus name (the study model
pretrained on it, see :func:`study_preset`), or stages joined by ``+``: ``"shakespeare+esco-skills"`` is the
Shakespeare model pretrained further on ESCO skills (domain-adaptive pretraining). Every fine-tuning run
goes through the course's one loop (``train.train``) with :class:`~tlteach.train.EarlyStopping` on the
target's validation loss; :func:`best_run` gives each source its own learning rate, picked on validation
loss, and reports the *test* loss of the chosen run. Runs are cached by everything that decides them, so
notebook 04 reuses notebook 03's runs and a rerun is instant.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from . import cache, checkpoint, data
from .gpt import GPT, GPTConfig
from .presets import _BUDGETS, Preset, device_key, get_preset, with_changes
from .pretrain import pretrain_config, pretrained_model
from .tokenizer import get_tokenizer
from .train import EarlyStopping, TrainConfig, evaluate, train

FORMAT_VERSION = 1
SCRATCH = "scratch"

# The many-run studies train dozens of models, so they use a small model in every preset: the `quick`
# preset's own model on a CPU, a larger one on a GPU. Fields not named here come from the preset.
_STUDY = {
    "quick": {},
    "cpu": {k: v for k, v in _BUDGETS["quick"].items() if k != "bigram_steps"},
    "gpu": dict(vocab_size=2048, n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=32,
                pretrain_iters=2000, pretrain_lr=2e-3, eval_interval=200, eval_iters=20),
}

# What a fine-tuning sweep does in each preset: the target-data fractions of the learning curve (nested
# subsets, two orders of magnitude), the learning rates every source tries, the step cap, the batch size and
# the early-stopping schedule, and the "small" target size of notebook 04.
_SWEEP = {
    "quick": dict(fractions=(0.001, 0.003, 0.01, 0.03, 0.1), lrs=(3e-4, 1e-3, 3e-3), max_iters=1500, batch_size=8,
                  eval_interval=50, eval_iters=16, patience=3, small=0.003),
    "gpu": dict(fractions=(0.001, 0.003, 0.01, 0.03, 0.1), lrs=(3e-4, 1e-3, 3e-3), max_iters=4000, batch_size=16,
                eval_interval=100, eval_iters=16, patience=4, small=0.003),
}
_SWEEP["cpu"] = _SWEEP["quick"]  # the same small study model as quick (see _STUDY)


def study_preset(preset: Preset | None = None) -> Preset:
    """The preset of the many-run studies (notebooks 03 to 08): ``preset`` with a small model."""
    preset = preset or get_preset()
    return with_changes(preset, **_STUDY[preset.name])


def sweep_settings(preset: Preset | None = None) -> dict:
    """Fractions, learning-rate grids, step cap and early-stopping schedule of the preset's sweeps."""
    preset = preset or get_preset()
    return dict(_SWEEP[preset.name])


def check_source(source: str) -> list[str]:
    """The stages of ``source`` (``"scratch"``, a corpus, or corpora joined by ``+``), or a clear error."""
    stages = [s.strip() for s in source.split("+")]
    if source == SCRATCH:
        return []
    for s in stages:
        if s not in data.CORPORA:
            raise ValueError(f"unknown source {source!r}: use 'scratch', a corpus ({', '.join(data.CORPORA)}) "
                             "or corpora joined by '+' (e.g. 'shakespeare+esco-skills')")
    return stages


def continued_config(preset: Preset) -> TrainConfig:
    """Continued pretraining on a later stage: half the pretraining steps, at a third of its learning rate."""
    cfg = pretrain_config(preset)
    cfg.max_iters = max(1, preset.pretrain_iters // 2)
    cfg.learning_rate = preset.pretrain_lr / 3
    cfg.min_lr = cfg.learning_rate / 10
    cfg.warmup_iters = max(1, cfg.max_iters // 20)
    return cfg


def source_model(source: str, preset: Preset | None = None, progress: bool = False) -> GPT:
    """A fresh copy of the model a fine-tuning run starts from (notebooks 03 and 04).

    ``"scratch"`` is the study architecture with the seed's random weights; ``"esco-skills"`` the study
    model pretrained on that corpus; ``"shakespeare+esco-skills"`` the Shakespeare model trained further on
    ESCO skills for :func:`continued_config`'s steps (``"shakespeare+shakespeare"`` is its same-compute
    control). Pretrained and continued models are cached.
    """
    preset = preset or study_preset()
    stages = check_source(source)
    tok = get_tokenizer("bpe", vocab_size=preset.vocab_size)
    config = GPTConfig.from_preset(preset, vocab_size=tok.vocab_size)
    if not stages:
        torch.manual_seed(preset.seed)
        return GPT(config).to(preset.device)
    if len(stages) == 1:
        return pretrained_model(preset, stages[0], progress=progress)[0]
    parent = "+".join(stages[:-1])
    cfg = continued_config(preset)
    cfg.progress = progress
    key = {"format": FORMAT_VERSION, "source": source, "preset": model_key(preset), "tokenizer": tok.fingerprint(),
           "train": {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "log")},
           "corpus": data.fingerprint(data.load_corpus(stages[-1])["train"])}

    def build(path: Path) -> None:
        start = source_model(parent, preset, progress)
        ids = data.encode_split(data.load_corpus(stages[-1])["train"], tok)
        result = train(start, ids, cfg)
        if result.interrupted:
            raise KeyboardInterrupt("continued pretraining was interrupted; nothing was cached")
        checkpoint.save_model(result.model, path, tok, extra={"source": source})

    return cache.cached("continued", key, ".safetensors", build,
                        lambda p: checkpoint.load_model(p, config=config, tokenizer=tok, device=preset.device))


def model_key(preset: Preset) -> dict:
    """The preset as a cache key (any CUDA device counts as one: the same seed trains the same model)."""
    d = preset.as_dict()
    d["device"] = device_key(preset.device)
    return d


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
    """A sweep's fine-tuning schedule: short warmup, then cosine decay to a tenth of ``lr`` at the step cap.

    With ``train_tokens`` given, evaluation comes at least once per pass over the training text (but not
    more often than every 10 steps): on a few thousand tokens a model overfits within a few dozen steps,
    and early stopping must see it happen.
    """
    s = settings or sweep_settings(preset)
    interval = s["eval_interval"]
    if train_tokens is not None:
        epoch_steps = train_tokens // (s["batch_size"] * preset.block_size)
        interval = max(10, min(interval, epoch_steps))
    return TrainConfig(max_iters=s["max_iters"], batch_size=s["batch_size"], block_size=preset.block_size,
                       learning_rate=lr, min_lr=lr / 10, warmup_iters=max(1, s["max_iters"] // 50),
                       eval_interval=interval, eval_iters=s["eval_iters"], seed=preset.seed, progress=False)


def finetune_run(source: str, fraction: float, lr: float, preset: Preset | None = None,
                 settings: dict | None = None, target: str = data.TARGET) -> dict:
    """Fine-tune ``source`` on ``fraction`` of the target with learning rate ``lr`` and early stopping
    (notebooks 03 and 04). Cached.

    Returns a dict: ``source, fraction, lr, docs, tokens`` (training tokens), ``val`` (best validation loss),
    ``step`` (where it was best), ``steps`` (run), ``test`` (test loss of the best weights), ``seconds``,
    ``history`` (the loop's evaluations).
    """
    preset = preset or study_preset()
    settings = settings or sweep_settings(preset)
    check_source(source)
    tok = get_tokenizer("bpe", vocab_size=preset.vocab_size)
    subset = target_subset(fraction, preset.seed, target)
    train_ids = data.encode_split(subset, tok)
    cfg = finetune_config(preset, lr, settings, len(train_ids))
    key = {"format": FORMAT_VERSION, "source": source, "fraction": float(fraction), "lr": float(lr),
           "target": target, "subset": data.fingerprint(subset), "tokenizer": tok.fingerprint(),
           "preset": model_key(preset), "train": cfg.to_dict(), "patience": settings["patience"]}

    def build(path: Path) -> None:
        ds = data.load_corpus(target)
        val_ids, test_ids = data.encode_split(ds["validation"], tok), data.encode_split(ds["test"], tok)
        model = source_model(source, preset)
        stop = EarlyStopping("val", patience=settings["patience"])
        result = train(model, train_ids, cfg, eval_sets={"val": val_ids}, on_eval=stop)
        if result.interrupted:
            raise KeyboardInterrupt("fine-tuning was interrupted; nothing was cached")
        stop.restore(model)
        test = evaluate(model, test_ids, cfg.block_size, cfg.batch_size, 2 * cfg.eval_iters, cfg.amp)
        record = {"source": source, "fraction": float(fraction), "lr": float(lr), "docs": len(subset),
                  "tokens": len(train_ids), "val": stop.best, "step": stop.best_step, "steps": result.steps,
                  "test": test, "seconds": result.train_seconds,
                  "history": result.history.to_dict(orient="list")}
        cache.atomic_write_text(path, json.dumps(record))

    return cache.cached("finetune", key, ".json", build, lambda p: json.loads(p.read_text(encoding="utf-8")))


def best_run(source: str, fraction: float, preset: Preset | None = None, settings: dict | None = None,
             lrs: Sequence[float] | None = None) -> dict:
    """The run with the lowest *validation* loss over the learning-rate grid: each source gets its own
    fair learning rate (notebook 03). Its ``tried`` entry lists ``(lr, val)`` of every run."""
    preset = preset or study_preset()
    settings = settings or sweep_settings(preset)
    runs = [finetune_run(source, fraction, lr, preset, settings) for lr in (lrs or settings["lrs"])]
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
        for fraction in fractions:
            for s in sources:
                runs = []
                for lr in settings["lrs"]:
                    runs.append(finetune_run(s, fraction, lr, preset, settings))
                    bar.update(1)
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
