"""What every study stands on: the model zoo, one cached run, and the settings of each study (notebooks 02 to 09).

A *study* trains many models and compares them: pretraining (notebook 02), transfer and its learning curves
(notebooks 03 and 04, :mod:`tlteach.transfer`), forgetting and its cures (notebooks 05 to 08,
:mod:`tlteach.forgetting`). They are peers that share this module and nothing of each other's:

- :func:`cached_run` is the one recipe for a run worth keeping: build the start, train through the course's
  one loop (``train.train``), refuse an interrupted run, store the weights (safetensors) or only the record,
  with the training history, and load it back. It owns the cache key: what decides a run enters it (the
  study's ``spec``, the preset, the tokenizer, the training settings); how a run is shown (``progress``,
  ``log``, a live plot) never does, so watching a run never retrains it.
- :func:`source_model` is the zoo: ``"scratch"`` (the seed's random weights), a corpus (the study model
  pretrained on it) or stages joined by ``+`` (``"shakespeare+esco-skills"``: pretrained further on skills,
  domain-adaptive pretraining).
- :func:`study_preset` gives the many-run studies their small model; :func:`settings` each study's sweep.
- :func:`setup` is the first code cell of notebooks 05 to 08.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn

from . import cache, checkpoint, data
from .gpt import GPT, GPTConfig
from .presets import Preset, budget, device_key, get_preset, seed_everything, with_changes
from .tokenizer import get_tokenizer
from .train import TrainConfig, TrainResult, train

FORMAT_VERSION = 3  # 3: one key convention for every cached run (study.cached_run)
SCRATCH = "scratch"
NOT_IN_KEY = ("progress", "log")  # how a run is shown, never what it computes
ADDED_SINCE_FORMAT = {"decay": "cosine"}  # TrainConfig fields added after format 3, and their defaults

# The many-run studies train dozens of models, so they use a small model in every preset (fields not named
# here come from the preset), and each study has its settings per preset:
# - transfer (notebooks 03 and 04): the target-data fractions of the learning curve (nested subsets; in quick
#   0.1% to 3%: at 10% the runs need several times the step cap to converge, and what that size shows, the gain
#   shrinking as target data grows, the smaller sizes show already), the learning rates every source tries, the
#   step cap, the batch and the early-stopping schedule, and the "small" target size of notebook 04;
# - forgetting (notebooks 05 to 08): the steps and learning rate of the reference run, the rates of the sweep,
#   the batch, how often both domains are evaluated, how many windows estimate the Fisher, the penalty
#   strengths, the LoRA ranks, the replay shares and the gradual-unfreezing intervals.
LAMS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0)  # EWC and L2 strengths (the Fisher is normalised to mean 1)
RANKS = (2, 4, 8, 16)  # LoRA ranks of notebook 07's sweep
_STUDIES = {
    "quick": dict(
        model={},
        transfer=dict(fractions=(0.001, 0.003, 0.01, 0.03), lrs=(3e-4, 1e-3, 3e-3), max_iters=1500,
                      batch_size=8, eval_interval=50, eval_iters=16, patience=3, small=0.003),
        forgetting=dict(steps=300, lr=1e-3, lrs=(3e-4, 1e-3, 3e-3), batch_size=16, eval_interval=25, eval_iters=16,
                        fisher_examples=512, lams=LAMS, ranks=RANKS, replay=(0.1, 0.25, 0.5), unfreeze=(25, 75))),
    "gpu": dict(
        model=dict(vocab_size=2048, n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=32,
                   pretrain_iters=2000, pretrain_lr=2e-3, eval_interval=200, eval_iters=20),
        transfer=dict(fractions=(0.001, 0.003, 0.01, 0.03, 0.1), lrs=(3e-4, 1e-3, 3e-3), max_iters=4000,
                      batch_size=16, eval_interval=100, eval_iters=16, patience=4, small=0.003),
        forgetting=dict(steps=600, lr=1e-3, lrs=(3e-4, 1e-3, 3e-3), batch_size=32, eval_interval=50, eval_iters=20,
                        fisher_examples=2048, lams=LAMS, ranks=RANKS, replay=(0.1, 0.25, 0.5), unfreeze=(50, 150))),
}
# A laptop runs the studies with CI's settings on a deeper small model: quick's sizes and steps (not its bigram) with
# four blocks instead of two, so that the methods that treat layers differently (ULMFiT's discriminative rates and
# gradual unfreezing, notebook 08) have layers to treat differently.
_STUDIES["cpu"] = dict(_STUDIES["quick"],
                       model={**{k: v for k, v in budget("quick").items() if k != "bigram_steps"}, "n_layer": 4})


def study_preset(preset: Preset | None = None) -> Preset:
    """The preset of the many-run studies (notebooks 03 to 09): ``preset`` with the study's small model."""
    preset = preset or get_preset()
    return with_changes(preset, **_STUDIES[preset.name]["model"])


def settings(preset: Preset | None = None, study: str = "forgetting") -> dict:
    """A study's settings in the preset (``"transfer"``: notebooks 03-04; ``"forgetting"``: 05-08), a copy."""
    preset = preset or get_preset()
    if study not in ("transfer", "forgetting"):
        raise ValueError(f"unknown study {study!r}; choose 'transfer' or 'forgetting'")
    return dict(_STUDIES[preset.name][study])


def model_key(preset: Preset) -> dict:
    """The preset as a cache key (any CUDA device counts as one: the same seed trains the same model)."""
    d = preset.as_dict()
    d["device"] = device_key(preset.device)
    return d


def tokenizer(preset: Preset):
    """The preset's BPE tokenizer, trained on the source corpus (cached; notebook 01 builds it)."""
    return get_tokenizer("bpe", vocab_size=preset.vocab_size)


def model_config(preset: Preset) -> GPTConfig:
    """The GPT the preset asks for, with its tokenizer's vocabulary."""
    return GPTConfig.from_preset(preset, vocab_size=tokenizer(preset).vocab_size)


# ----------------------------------------------------------------------------- one cached run
@dataclass
class Trained:
    """What a run's body hands to :func:`cached_run`: the loop's result, the fields the study adds to the
    record, and the model to store (default: the one trained; ignored when the run keeps no weights)."""

    result: TrainResult
    record: dict = field(default_factory=dict)
    model: nn.Module | None = None


@dataclass(frozen=True)
class Run:
    """A cached run: its ``record`` (the study's fields plus ``history``, ``steps``, ``seconds``,
    ``tokens_per_s``) and, where the weights were kept, :meth:`model` to load them."""

    record: dict
    path: Path | None = None
    device: str = "cpu"

    def history(self):
        """The loop's evaluations as a DataFrame (step, tokens, lr, batch_loss, one column per set, elapsed)."""
        import pandas as pd

        return pd.DataFrame(self.record["history"])

    def model(self) -> GPT:
        """The weights after the run, on the preset's device (a fresh copy at every call)."""
        if self.path is None:
            raise ValueError("this run kept no weights (cached_run(..., weights=False)); only its record")
        return checkpoint.load_model(self.path, device=self.device)


def train_key(cfg: TrainConfig) -> dict:
    """A training config as it enters a cache key: every field but how the run is shown (``NOT_IN_KEY``); a
    field added since ``FORMAT_VERSION`` 3 enters only when it is not at its default, so older runs keep their keys."""
    return {k: v for k, v in cfg.to_dict().items()
            if k not in NOT_IN_KEY and not (k in ADDED_SINCE_FORMAT and v == ADDED_SINCE_FORMAT[k])}


def run_key(kind: str, spec: dict, preset: Preset, cfg: TrainConfig) -> dict:
    """The cache key of a run: the format, the study's ``kind`` and ``spec`` (what it trains on, from what,
    with which method), the preset, the tokenizer and the training settings."""
    return {"format": FORMAT_VERSION, "kind": kind, "spec": spec, "preset": model_key(preset),
            "tokenizer": tokenizer(preset).fingerprint(), "train": train_key(cfg)}


def cached_run(kind: str, spec: dict, preset: Preset, cfg: TrainConfig, body: Callable[[TrainConfig], Trained],
               progress: bool = False, weights: bool = True) -> Run:
    """The one recipe for a run worth keeping (notebooks 02 to 09): load it from the cache, or run
    ``body(cfg)`` now and store what it trained.

    ``body`` builds its start and trains it through ``train.train`` with the config it is given (``cfg`` with
    ``progress`` set), and returns a :class:`Trained`. An interrupted run (the stop button) raises
    ``KeyboardInterrupt`` and stores nothing, so the cache never holds half a run. With ``weights`` the
    model is stored as safetensors with the record in its header; without, only the record (JSON).
    """
    key = run_key(kind, spec, preset, cfg)
    tok = tokenizer(preset)

    def build(path: Path) -> None:
        trained = body(replace(cfg, progress=progress))
        result = trained.result
        if result.interrupted:
            raise KeyboardInterrupt(f"the {kind} run was interrupted at step {result.steps}; nothing was cached")
        record = {**trained.record, "history": result.history.to_dict(orient="list"), "steps": result.steps,
                  "seconds": result.train_seconds, "tokens_per_s": result.tokens_per_s,
                  "diverged_at": result.diverged_at}  # a NaN/inf loss: the loop kept the last good weights
        if weights:
            model = result.model if trained.model is None else trained.model
            checkpoint.save_model(model, path, tok, extra={"record": record})
        else:
            cache.atomic_write_text(path, json.dumps(record))

    def load(path: Path) -> Run:
        if not weights:
            return Run(json.loads(path.read_text(encoding="utf-8")))
        return Run(checkpoint.read_metadata(path)["extra"]["record"], path, preset.device)

    return cache.cached(kind, key, ".safetensors" if weights else ".json", build, load)


def is_cached(kind: str, spec: dict, preset: Preset, cfg: TrainConfig, weights: bool = True) -> bool:
    """Whether :func:`cached_run` would load this run rather than train it (how a sweep picks the runs it must
    still train, to train them together in a :class:`~tlteach.stack.Stack`)."""
    return cache.has(kind, run_key(kind, spec, preset, cfg), ".safetensors" if weights else ".json")


def stacking(preset: Preset) -> bool:
    """Whether the studies train their sweeps' runs stacked (:mod:`tlteach.stack`): on a GPU, where a stack fills
    the device; not on a CPU, where one small run's step is already compute-bound (``benchmarks/stacked_sweep.py``).
    ``TLTEACH_STACK=1`` or ``0`` overrides the choice."""
    import os

    chosen = os.environ.get("TLTEACH_STACK", "").strip()
    if chosen in ("0", "1"):
        return chosen == "1"
    return preset.device.startswith("cuda")


def how_trained(preset: Preset, study: str = "transfer") -> str:
    """One sentence a notebook prints: how the ``study``'s runs are trained in this preset (notebooks 03 to 08, and
    10 with ``study="few-labels"``). The transfer sweeps stack their runs where :func:`stacking` says so; the
    forgetting studies (whose methods change the model and the loss run by run) and notebook 10's classifiers
    (whose arms train different parts of different bodies) train every run alone."""
    if study not in ("transfer", "forgetting", "few-labels"):
        raise ValueError(f"unknown study {study!r}; choose 'transfer', 'forgetting' or 'few-labels'")
    if study == "forgetting":
        return "Runs are trained one at a time through the one loop, each from the same pretrained model."
    if study == "few-labels":
        return ("Classifiers are trained one at a time through the one loop, each with early stopping on its "
                f"validation split, on {preset.device}.")
    if stacking(preset):
        return ("Runs are trained through the one loop, those that share a schedule together as one stack "
                "(tlteach.stack): the numbers are those of each run alone, to rounding (bf16's, under autocast).")
    return (f"Runs are trained one at a time through the one loop, on {preset.device}: here a small model's step "
            "is compute-bound and stacking runs (tlteach.stack, used on a GPU) would not make them faster.")


# ----------------------------------------------------------------------------- the model zoo
def schedule(preset: Preset, steps: int, lr: float, batch_size: int, eval_interval: int, eval_iters: int,
             warmup_div: int = 20, progress: bool = True) -> TrainConfig:
    """The one schedule of every study (notebook 02 onwards): ``steps`` of ``batch_size`` windows of the preset's
    context, a linear warmup over ``steps // warmup_div`` steps (at least one), then cosine decay to a tenth of
    ``lr`` at the last step, and an evaluation every ``eval_interval`` steps on ``eval_iters`` batches."""
    return TrainConfig(max_iters=steps, batch_size=batch_size, block_size=preset.block_size, learning_rate=lr,
                       min_lr=lr / 10, warmup_iters=max(1, steps // warmup_div), eval_interval=eval_interval,
                       eval_iters=eval_iters, seed=preset.seed, progress=progress)


def pretrain_config(preset: Preset) -> TrainConfig:
    """The pretraining schedule a preset asks for (notebook 02)."""
    return schedule(preset, preset.pretrain_iters, preset.pretrain_lr, preset.batch_size, preset.eval_interval,
                    preset.eval_iters)


def continued_config(preset: Preset) -> TrainConfig:
    """Continued pretraining on a later stage: half the pretraining steps, at a third of its learning rate
    (notebook 04)."""
    return schedule(preset, max(1, preset.pretrain_iters // 2), preset.pretrain_lr / 3, preset.batch_size,
                    preset.eval_interval, preset.eval_iters)


def pretraining(corpus: str, preset: Preset, progress: bool = False, on_eval=None) -> Run:
    """The preset's GPT pretrained on ``corpus`` from the seed's random weights, evaluating on its training
    and validation text (notebook 02). Cached; ``on_eval`` (a live plot) is called while it trains."""
    config = model_config(preset)

    def body(cfg: TrainConfig) -> Trained:
        splits = data.token_splits(corpus, tokenizer(preset), ("train", "validation"))
        torch.manual_seed(preset.seed)
        model = GPT(config).to(preset.device)
        return Trained(train(model, splits["train"], cfg, on_eval=on_eval,
                             eval_sets={"train": splits["train"], "val": splits["validation"]}))

    spec = {"corpus": corpus, "text": data.fingerprint(data.load_corpus(corpus)["train"])}
    return cached_run("pretrained", spec, preset, pretrain_config(preset), body, progress=progress)


def check_source(source: str) -> list[str]:
    """The stages of ``source`` (``"scratch"``, a corpus, or corpora joined by ``+``), or a clear error."""
    if source == SCRATCH:
        return []
    stages = [s.strip() for s in source.split("+")]
    for s in stages:
        if s not in data.CORPORA:
            raise ValueError(f"unknown source {source!r}: use 'scratch', a corpus ({', '.join(data.CORPORA)}) "
                             "or corpora joined by '+' (e.g. 'shakespeare+esco-skills')")
    return stages


def source_model(source: str, preset: Preset | None = None, progress: bool = False) -> GPT:
    """A fresh copy of the model a study's run starts from (notebooks 03 to 09), on the preset's device.

    ``"scratch"`` is the architecture with the seed's random weights; ``"esco-skills"`` the model pretrained
    on that corpus; ``"shakespeare+esco-skills"`` the Shakespeare model trained further on ESCO skills for
    :func:`continued_config`'s steps (``"shakespeare+shakespeare"`` is its same-compute control).
    """
    preset = preset or study_preset()
    stages = check_source(source)
    if not stages:
        torch.manual_seed(preset.seed)
        return GPT(model_config(preset)).to(preset.device)
    if len(stages) == 1:
        return pretraining(stages[0], preset, progress).model()
    parent = "+".join(stages[:-1])

    def body(cfg: TrainConfig) -> Trained:
        start = source_model(parent, preset, progress)
        return Trained(train(start, data.token_splits(stages[-1], tokenizer(preset), ("train",))["train"], cfg))

    spec = {"source": source, "text": data.fingerprint(data.load_corpus(stages[-1])["train"])}
    return cached_run("continued", spec, preset, continued_config(preset), body, progress=progress).model()


@lru_cache(maxsize=4)
def _streams(vocab_size: int) -> dict[str, torch.Tensor]:
    tok = get_tokenizer("bpe", vocab_size=vocab_size)
    src = data.token_splits(data.SOURCE, tok, ("train", "validation"))
    tgt = data.token_splits(data.TARGET, tok, ("train", "validation"))
    return {"source_train": src["train"], "source": src["validation"], "target_train": tgt["train"],
            "target": tgt["validation"]}


def streams(preset: Preset | None = None) -> dict[str, torch.Tensor]:
    """Token streams of the source and target: ``source_train``, ``source`` (validation), ``target_train``,
    ``target`` (validation), for notebooks 05 to 09. Computed once per tokenizer in a process."""
    return _streams((preset or study_preset()).vocab_size)


class Setup(NamedTuple):
    """What :func:`setup` returns: unpack it as ``study, settings, streams, pretrained = setup()``."""

    preset: Preset  # the study preset (its small model)
    settings: dict
    streams: dict[str, torch.Tensor]
    pretrained: GPT  # the Shakespeare model every run of the study starts from


def setup(study: str = "forgetting", preset: Preset | None = None, progress: bool = True) -> Setup:
    """The first code cell of notebooks 05 to 08: the study preset (printed with the device and versions),
    the study's settings, every generator seeded, the token streams and the pretrained source model (loaded
    from the cache, or pretrained now with a progress bar)."""
    from .environment import show_environment

    preset = study_preset(preset)
    show_environment(preset)
    print(how_trained(preset, study))
    chosen = settings(preset, study)
    seed_everything(preset.seed)
    return Setup(preset, chosen, streams(preset), source_model(data.SOURCE, preset, progress=progress))
