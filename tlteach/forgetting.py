"""Catastrophic forgetting, measured, and the methods that fight it (notebooks 05 to 08).

A *forgetting run* fine-tunes the Shakespeare model (the study model of :func:`tlteach.transfer.study_preset`) on the
ESCO occupations for a fixed number of steps, through the course's one loop, while it evaluates *both*
domains at every interval. Forgetting is the rise of the source's validation loss; learning is the fall of
the target's. Every method is the same run with something added to the loop, described by a :class:`Method`:

- ``full``: plain full fine-tuning at a learning rate (notebook 05);
- ``ewc`` / ``l2``: a penalty pulling the weights to the pretrained ones, weighted by the Fisher or flat
  (notebook 06, :mod:`tlteach.ewc`);
- ``lora``: low-rank adapters, the rest frozen (notebook 07, :mod:`tlteach.lora`);
- ``replay``: a share of every batch is source text (a data mix, notebook 08);
- ``discriminative`` and ``unfreeze``: ULMFiT's cures (Howard & Ruder, 2018), lower layers learning slower or
  joining the training one at a time, top first (parameter groups and a hook, notebook 08).

Runs are cached by everything that decides them (the record as the metadata of a safetensors file holding
the weights after the run, LoRA merged in), so notebook 08 reuses the runs of 05 to 07.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import cache, checkpoint, data, ewc, lora
from .gpt import GPT, GPTConfig
from .presets import Preset, get_preset
from .tokenizer import get_tokenizer
from .train import TrainConfig, decay_groups, evaluate, train
from .transfer import model_key, source_model, study_preset

FORMAT_VERSION = 2  # 2: LoRA's adapters are initialised from the seed
KINDS = ("full", "ewc", "l2", "lora", "replay", "discriminative", "unfreeze")

RANKS = (2, 4, 8, 16)  # LoRA ranks of notebook 07's sweep
LAMS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0)  # EWC and L2 strengths (the Fisher is normalised to mean 1)
# Per preset: the fine-tuning steps and learning rate of the reference run, the learning rates of the sweep,
# the batch, how often both domains are evaluated, how many windows estimate the Fisher, the penalty strengths,
# the LoRA ranks, the replay shares and the gradual-unfreezing intervals (notebook 08).
_FORGET = {
    "quick": dict(steps=300, lr=1e-3, lrs=(3e-4, 1e-3, 3e-3), batch_size=16, eval_interval=25, eval_iters=16,
                  fisher_examples=512, lams=LAMS, ranks=RANKS,
                  replay=(0.1, 0.25, 0.5), unfreeze=(25, 75)),
    "gpu": dict(steps=600, lr=1e-3, lrs=(3e-4, 1e-3, 3e-3), batch_size=32, eval_interval=50, eval_iters=20,
                fisher_examples=2048, lams=LAMS, ranks=RANKS,
                replay=(0.1, 0.25, 0.5), unfreeze=(50, 150)),
}
_FORGET["cpu"] = _FORGET["quick"]


def forgetting_settings(preset: Preset | None = None) -> dict:
    """Steps, learning rates, batch, evaluation schedule and Fisher sample size of the preset's forgetting runs."""
    preset = preset or get_preset()
    return dict(_FORGET[preset.name])


@dataclass(frozen=True)
class Method:
    """What a forgetting run adds to plain fine-tuning (notebooks 05 to 08).

    ``lr`` and ``steps`` (``None``: the preset's) set the schedule; ``lam`` is the strength of the ``ewc``
    or ``l2`` penalty; ``rank`` (and ``alpha``, default ``2 * rank``) shape ``lora``'s adapters, and
    ``embeddings=True`` lets LoRA train the embeddings and LayerNorms too. ``replay`` is the share of each
    batch drawn from the source; ``decay`` divides the learning rate once per layer going down (ULMFiT uses
    2.6); ``unfreeze`` is the number of steps between unfreezing one more layer, from the top.
    """

    kind: str = "full"
    lr: float | None = None
    steps: int | None = None
    lam: float = 0.0
    rank: int = 0
    alpha: float | None = None
    embeddings: bool = False
    replay: float = 0.0
    decay: float = 0.0
    unfreeze: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown method {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind in ("ewc", "l2") and not self.lam > 0:
            raise ValueError(f"{self.kind} needs a penalty strength lam > 0, got {self.lam}")
        if self.kind == "lora" and self.rank < 1:
            raise ValueError(f"lora needs rank >= 1, got {self.rank}")
        if self.kind == "replay" and not 0 < self.replay < 1:
            raise ValueError(f"replay needs a share of source text in each batch, 0 < replay < 1; got {self.replay}")
        if self.kind == "discriminative" and not self.decay > 1:
            raise ValueError(f"discriminative learning rates need decay > 1 (ULMFiT: 2.6), got {self.decay}")
        if self.kind == "unfreeze" and self.unfreeze < 1:
            raise ValueError(f"gradual unfreezing needs unfreeze >= 1 steps between layers, got {self.unfreeze}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"the learning rate must be positive, got {self.lr}")

    @property
    def label(self) -> str:
        """A short name for legends: ``full lr=1e-03``, ``ewc λ=10``, ``lora r=4``."""
        lr = "" if self.lr is None else f" lr={self.lr:.0e}"
        if self.kind in ("ewc", "l2"):
            return f"{self.kind} λ={self.lam:g}{lr}"
        if self.kind == "lora":
            return f"lora r={self.rank}{' +emb' if self.embeddings else ''}{lr}"
        if self.kind == "replay":
            return f"replay {self.replay:.0%}{lr}"
        if self.kind == "discriminative":
            return f"discriminative ÷{self.decay:g}{lr}"
        if self.kind == "unfreeze":
            return f"unfreeze every {self.unfreeze}{lr}"
        return f"full{lr}"

    def key(self) -> dict:
        """The fields that decide the run (the later ones only when set, so older cached runs stay valid)."""
        later = ("replay", "decay", "unfreeze")
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in later or getattr(self, f.name) != f.default}

    def resolved(self, settings: dict) -> Method:
        """This method with the preset's defaults filled in."""
        return replace(self, lr=self.lr or settings["lr"], steps=self.steps or settings["steps"],
                       alpha=(self.alpha or 2.0 * self.rank) if self.kind == "lora" else None)


@lru_cache(maxsize=4)
def _streams(vocab_size: int) -> dict[str, torch.Tensor]:
    tok = get_tokenizer("bpe", vocab_size=vocab_size)
    src, tgt = data.load_corpus(data.SOURCE), data.load_corpus(data.TARGET)
    return {"source_train": data.encode_split(src["train"], tok), "source": data.encode_split(src["validation"], tok),
            "target_train": data.encode_split(tgt["train"], tok), "target": data.encode_split(tgt["validation"], tok)}


def streams(preset: Preset | None = None) -> dict[str, torch.Tensor]:
    """Token streams of the runs: ``source_train``, ``source`` (validation), ``target_train``, ``target``."""
    return _streams((preset or study_preset()).vocab_size)


def run_config(method: Method, preset: Preset, settings: dict) -> TrainConfig:
    """The fine-tuning schedule of a forgetting run: short warmup, cosine decay to a tenth of the rate."""
    return TrainConfig(max_iters=method.steps, batch_size=settings["batch_size"], block_size=preset.block_size,
                       learning_rate=method.lr, min_lr=method.lr / 10, warmup_iters=max(1, method.steps // 30),
                       eval_interval=settings["eval_interval"], eval_iters=settings["eval_iters"], seed=preset.seed,
                       progress=False)


def source_fisher(preset: Preset | None = None, kind: str = "empirical", settings: dict | None = None
                  ) -> dict[str, torch.Tensor]:
    """The pretrained model's diagonal Fisher on source training text, normalised to mean 1 (notebook 06). Cached."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    preset = preset or study_preset()
    n = (settings or forgetting_settings(preset))["fisher_examples"]
    key = {"format": FORMAT_VERSION, "kind": kind, "n": n, "preset": model_key(preset), "layout": 2}

    def build(path: Path) -> None:
        model = source_model(data.SOURCE, preset)
        fisher = ewc.fisher_diagonal(model, streams(preset)["source_train"], n_examples=n, kind=kind,
                                     seed=preset.seed, progress=True)
        save_file({k: v.cpu().contiguous() for k, v in ewc.normalise(fisher).items()}, str(path),
                  metadata={"order": json.dumps(list(fisher))})  # safetensors sorts the names: keep the model's order

    def load(path: Path) -> dict[str, torch.Tensor]:
        with safe_open(str(path), framework="pt") as f:
            return {n: f.get_tensor(n).to(preset.device) for n in json.loads(f.metadata()["order"])}

    return cache.cached("fisher", key, ".safetensors", build, load)


def prepare(model: GPT, method: Method, preset: Preset, settings: dict | None = None) -> dict:
    """What ``method`` adds to the loop, as keyword arguments of ``train.train``: a ``penalty`` (EWC, L2), a data
    mix as ``batches`` (replay), parameter ``groups`` with learning-rate scales (discriminative), ``groups`` and
    a ``hooks`` entry that unfreezes layers (gradual unfreezing); LoRA adds adapters to ``model`` in place."""
    settings = settings or forgetting_settings(preset)
    if method.kind in ("ewc", "l2"):
        fisher = source_fisher(preset, settings=settings) if method.kind == "ewc" else ewc.flat_fisher(model)
        return {"penalty": ewc.EWCPenalty(model, fisher, method.lam)}
    if method.kind == "lora":
        lora.add_lora(model, r=method.rank, alpha=method.alpha, train_embeddings=method.embeddings,
                      train_norms=method.embeddings)
    if method.kind == "replay":
        s = streams(preset)
        return {"batches": replay_batches(s["target_train"], s["source_train"], method.replay, preset.block_size,
                                          settings["batch_size"])}
    if method.kind == "discriminative":
        return {"groups": scaled_groups(model, [method.decay ** -depth for depth in range(len(layers(model)))])}
    if method.kind == "unfreeze":
        groups = scaled_groups(model, [1.0] * len(layers(model)))  # every weight in the optimizer from the start
        return {"groups": groups, "hooks": [Unfreezer(model, method.unfreeze)]}
    return {}


def replay_batches(target: torch.Tensor, source: torch.Tensor, share: float, block_size: int, batch_size: int):
    """A data mix for the loop (notebook 08): ``round(share * batch_size)`` windows of every batch from the
    source, the rest from the target."""
    from .data import get_batch

    n_source = round(share * batch_size)
    if not 0 < n_source < batch_size:
        raise ValueError(f"a replay share of {share} leaves no {'source' if n_source == 0 else 'target'} window "
                         f"in a batch of {batch_size}")

    def batches(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xt, yt = get_batch(target, block_size, batch_size - n_source, generator=gen)
        xs, ys = get_batch(source, block_size, n_source, generator=gen)
        return torch.cat([xt, xs]), torch.cat([yt, ys])

    return batches


def layers(model: GPT) -> list[list[nn.Parameter]]:
    """The model's parameters in layers, top first: the final LayerNorm, each block from the last down, then the
    embeddings (the output layer is tied to the token embedding, so it sits at the bottom with it)."""
    t = model.transformer
    return [list(t.ln_f.parameters()), *[list(b.parameters()) for b in reversed(t.h)],
            [t.wte.weight, t.wpe.weight]]


def scaled_groups(model: GPT, scales: Sequence[float], weight_decay: float = 0.1) -> list[dict]:
    """Optimizer groups, one pair per layer of :func:`layers` (matrices decay, vectors do not), with the
    layer's ``lr_scale`` (ULMFiT's discriminative learning rates: ``decay ** -depth``)."""
    return [g for params, scale in zip(layers(model), scales, strict=True)
            for g in decay_groups(params, weight_decay, lr_scale=scale)]


class Unfreezer:
    """ULMFiT's gradual unfreezing as a hook of the loop: at first only the top layer trains; every ``every``
    steps one more layer joins, from the top down (notebook 08)."""

    def __init__(self, model: GPT, every: int) -> None:
        self.layers, self.every = layers(model), every
        self(1, model)

    def __call__(self, step: int, model: nn.Module) -> None:
        n = 1 + (step - 1) // self.every  # layers training at this step
        for i, params in enumerate(self.layers):
            for p in params:
                p.requires_grad_(i < n)


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


def forgetting_run(method: Method, preset: Preset | None = None, progress: bool = False,
                   settings: dict | None = None) -> dict:
    """Fine-tune the Shakespeare model on the occupations with ``method``, evaluating both domains
    (notebooks 05 to 08). Cached; :func:`run_model` gives the weights after the run.

    Returns a dict: ``method`` (its fields), ``label``, ``history`` (step, source, target, ...),
    ``source_before/after``, ``target_before/after``, ``forgetting`` (source rise, nats), ``learning``
    (target fall), ``trainable`` (parameters trained), ``seconds``, ``change`` (per-group relative change).
    ``settings`` overrides :func:`forgetting_settings` (for tests and exercises).
    """
    return _run(method, preset, progress, settings)[0]


def run_model(method: Method, preset: Preset | None = None, progress: bool = False,
              settings: dict | None = None) -> GPT:
    """The model after :func:`forgetting_run` (LoRA merged into the weights), on the preset's device."""
    return _run(method, preset, progress, settings)[1]()


def _run(method: Method, preset: Preset | None, progress: bool, settings: dict | None):
    preset = preset or study_preset()
    settings = settings or forgetting_settings(preset)
    method = method.resolved(settings)
    tok = get_tokenizer("bpe", vocab_size=preset.vocab_size)
    config = GPTConfig.from_preset(preset, vocab_size=tok.vocab_size)
    cfg = run_config(method, preset, settings)
    key = {"format": FORMAT_VERSION, "method": method.key(), "preset": model_key(preset), "train": cfg.to_dict(),
           "tokenizer": tok.fingerprint(), "fisher": settings["fisher_examples"] if method.kind == "ewc" else None}

    def build(path: Path) -> None:
        s = streams(preset)
        start = source_model(data.SOURCE, preset)
        model = source_model(data.SOURCE, preset)
        torch.manual_seed(preset.seed)  # LoRA's random A: the same run whatever ran before it in this process
        extra = prepare(model, method, preset, settings)
        cfg.progress = progress
        batches = extra.pop("batches", s["target_train"])
        result = train(model, batches, cfg, eval_sets={"source": s["source"], "target": s["target"]}, **extra)
        if result.interrupted:
            raise KeyboardInterrupt("the run was interrupted; nothing was cached")
        trainable = lora.trainable_counts(model)["trainable"]
        final = lora.merge_lora(model) if method.kind == "lora" else model
        h = result.history
        record = {"method": asdict(method), "label": method.label, "history": h.to_dict(orient="list"),
                  "source_before": float(h.source.iloc[0]), "source_after": float(h.source.iloc[-1]),
                  "target_before": float(h.target.iloc[0]), "target_after": float(h.target.iloc[-1]),
                  "trainable": trainable, "seconds": result.train_seconds,
                  "change": relative_change(start, final)}
        record["forgetting"] = record["source_after"] - record["source_before"]
        record["learning"] = record["target_before"] - record["target_after"]
        checkpoint.save_model(final, path, tok, extra={"record": record})

    def load(path: Path):
        record = checkpoint.read_metadata(path)["extra"]["record"]
        return record, lambda: checkpoint.load_model(path, config=config, tokenizer=tok, device=preset.device)

    return cache.cached("forgetting", key, ".safetensors", build, load)


def runs(methods: Sequence[Method], preset: Preset | None = None, progress: bool = True,
         settings: dict | None = None) -> list[dict]:
    """Run (or load) every method, with one progress bar over them; their records (notebooks 05 to 08)."""
    from tqdm.auto import tqdm

    return [forgetting_run(m, preset, settings=settings)
            for m in tqdm(methods, desc="fine-tuning runs", disable=not progress)]


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
