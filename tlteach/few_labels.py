"""Transfer to a task with few labels: the runs of notebook 10, a peer of :mod:`tlteach.transfer`.

A run turns a *body* into a classifier (:class:`~tlteach.classifier.Classifier`) and trains it through the one
loop on ``n`` labelled examples of a task (:mod:`tlteach.tasks`), with early stopping on the validation split's
loss; it reports the test split's accuracy and macro-F1. An :class:`Arm` says which body, which pooling, what
trains, and whether ULMFiT's stage 3 is used (discriminative rates, gradual unfreezing, slanted triangular
rates). :func:`best_run` gives each arm its own learning rate, chosen on validation loss, as notebook 03 does.

The bodies, each the study model (:func:`tlteach.study.study_preset`), each cached:

- ``scratch``: random weights;
- ``shakespeare``: pretrained on Shakespeare (ULMFiT's stage 1: general-domain pretraining);
- ``shakespeare+task-lm``: then trained further as a language model on the task's unlabelled text
  (:func:`tlteach.tasks.task_lm_corpus`, stage 2), for half the pretraining steps at a third of its rate;
- ``task-lm``: the same stage 2 from random weights (ULMFiT without stage 1);
- ``encoder``: the BERT-style encoder (:mod:`tlteach.encoder`) pretrained by masked-LM on Shakespeare, with the
  GPT's steps, batch and context: the same compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from . import bow, classifier, data, tasks, ulmfit
from .classifier import Classifier, HFClassifier, encode_texts, freeze, label_batches, peft_lora, to_hf
from .encoder import Encoder, encoder_config, mlm_batches, mlm_loss
from .gpt import GPT
from .presets import Preset
from .study import (
    Trained,
    cached_run,
    continued_config,
    model_config,
    pretrain_config,
    source_model,
    study_preset,
    tokenizer,
)
from .train import EarlyStopping, Measure, TrainConfig, evaluate, train

if TYPE_CHECKING:
    import pandas as pd

TASKS = {"isco": tasks.load_isco_task, "word-order": tasks.load_word_order_task}
BODIES = ("scratch", "shakespeare", "shakespeare+task-lm", "task-lm", "encoder")
# per preset: label counts (None: every training example) for occupation coding and for word order, the count the
# methods are compared at, seeds, rates, steps, evaluation; max_val: the validation
# rows that early stopping reads (the first ones: the word-order task's 1,076 would cost more than the training)
SETTINGS = {
    "quick": dict(counts=(25, 100, None), order_counts=(100, 400), at=100, seeds=(0, 1, 2), lrs=(1e-4, 3e-4, 1e-3), probe_lrs=(1e-2, 3e-2, 1e-1),
                  lora_lrs=(1e-3, 3e-3, 1e-2), ulmfit_lrs=(3e-4, 1e-3, 3e-3), rank=4,
                  max_iters=400, batch_size=16, eval_interval=10, patience=8, decay=2.6, unfreeze_every=10, windows=1,
                  max_val=256),
    "gpu": dict(counts=(25, 50, 100, None), order_counts=(100, 400, 1600), at=100, seeds=(0, 1, 2, 3, 4), lrs=(1e-4, 3e-4, 1e-3), probe_lrs=(1e-2, 3e-2, 1e-1),
                lora_lrs=(1e-3, 3e-3, 1e-2), ulmfit_lrs=(3e-4, 1e-3, 3e-3), rank=4,
                max_iters=600, batch_size=32, eval_interval=10, patience=10, decay=2.6, unfreeze_every=10, windows=1,
                max_val=1024),
}
SETTINGS["cpu"] = SETTINGS["quick"]
TRAINABLE = (*classifier.TRAINABLE, "lora")  # lora: peft's adapters on the transformers twin, and the head


def settings(preset: Preset | None = None) -> dict:
    """The label counts, seeds, learning rates, step cap and early stopping of notebook 10 in this preset. The
    seeds (each a label draw and a head's start) count up from the preset's, so ``TLTEACH_SEED`` moves them too."""
    preset = study_preset(preset)
    chosen = dict(SETTINGS[preset.name])
    chosen["seeds"] = tuple(preset.seed + s for s in chosen["seeds"])
    return chosen


def load_task(name: str):
    """A task of notebook 10 by name: ``isco`` (occupation coding) or ``word-order`` (as written or shuffled)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}")
    return TASKS[name]()


# --------------------------------------------------------------------------- the bodies
def task_lm_model(preset: Preset | None = None, start: str = "shakespeare", progress: bool = False) -> GPT:
    """ULMFiT's stage 2: ``start`` (``"shakespeare"`` or ``"scratch"``) trained further as a language model on
    the task's unlabelled text, with :func:`tlteach.study.continued_config`'s schedule. Cached."""
    preset = study_preset(preset)
    corpus = tasks.task_lm_corpus()

    def body(cfg: TrainConfig) -> Trained:
        splits = data.token_splits(corpus, tokenizer(preset), ("train", "validation"))
        model = source_model(start, preset)
        return Trained(train(model, splits["train"], cfg, eval_sets={"val": splits["validation"]}))

    spec = {"start": start, "text": data.fingerprint(corpus["train"])}
    return cached_run("task-lm", spec, preset, continued_config(preset), body, progress=progress).model()


def encoder_model(preset: Preset | None = None, progress: bool = False) -> Encoder:
    """The BERT-style encoder pretrained by masked-LM on Shakespeare with the GPT's pretraining schedule (the
    same steps, batch and context: the same compute). Cached."""
    preset = study_preset(preset)
    config = encoder_config(model_config(preset))

    def body(cfg: TrainConfig) -> Trained:
        splits = data.token_splits(data.SOURCE, tokenizer(preset), ("train", "validation"))
        torch.manual_seed(preset.seed)
        model = Encoder(config).to(preset.device)
        measure = Measure({"val_mlm": mlm_loss(splits["validation"], cfg.block_size, cfg.batch_size, cfg.eval_iters,
                                               model.mask_id)})
        return Trained(train(model, mlm_batches(splits["train"], cfg.block_size, cfg.batch_size, model.mask_id),
                             cfg, on_eval=measure))

    spec = {"corpus": data.SOURCE, "text": data.fingerprint(data.load_corpus(data.SOURCE)["train"]),
            "objective": "masked-lm"}
    run = cached_run("encoder", spec, preset, pretrain_config(preset), body, progress=progress)
    model = Encoder(config)
    model.load_state_dict(run.model().state_dict())
    return model.to(preset.device)


def body_model(name: str, preset: Preset | None = None, progress: bool = False) -> GPT:
    """A fresh copy of one of the ``BODIES`` (cached; trained now if it is not)."""
    preset = study_preset(preset)
    if name in ("scratch", "shakespeare"):
        return source_model(name, preset, progress)
    if name == "shakespeare+task-lm":
        return task_lm_model(preset, "shakespeare", progress)
    if name == "task-lm":
        return task_lm_model(preset, "scratch", progress)
    if name == "encoder":
        return encoder_model(preset, progress)
    raise ValueError(f"unknown body {name!r}; the bodies are {', '.join(BODIES)}")


def lm_losses(body: GPT, preset: Preset | None = None) -> dict[str, float]:
    """A body's next-token loss on Shakespeare's validation text (``source``) and on the task's unlabelled
    validation text (``task``): what a classifier's training does to the language model in it (notebook 10).
    The encoder, which does not predict the next token, has none: use :func:`tlteach.encoder.mlm_loss`."""
    preset = study_preset(preset)
    if not all(b.attn.causal for b in body.transformer.h):
        raise ValueError("an encoder does not predict the next token; measure it with encoder.mlm_loss")
    cfg = continued_config(preset)
    return {k: evaluate(body, ids, cfg.block_size, cfg.batch_size, cfg.eval_iters)
            for k, ids in _lm_texts(tokenizer(preset)).items()}


_LM_TEXTS: dict[str, dict[str, torch.Tensor]] = {}  # by tokenizer fingerprint
_ENCODED: dict[tuple, torch.Tensor] = {}


def _lm_texts(tok) -> dict[str, torch.Tensor]:
    key = tok.fingerprint()
    if key not in _LM_TEXTS:
        _LM_TEXTS[key] = {"source": data.token_splits(data.SOURCE, tok, ("validation",))["validation"],
                          "task": data.token_splits(tasks.task_lm_corpus(), tok, ("validation",))["validation"]}
    return _LM_TEXTS[key]


def _encode(texts: list[str], tok, block_size: int, windows: int) -> torch.Tensor:
    """``encode_texts``, remembered: a study's runs read the same splits again and again."""
    key = (tok.fingerprint(), block_size, windows, tuple(texts))
    if key not in _ENCODED:
        if len(_ENCODED) >= 32:
            _ENCODED.pop(next(iter(_ENCODED)))
        _ENCODED[key] = encode_texts(texts, tok, block_size, windows=windows)
    return _ENCODED[key]


# --------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class Arm:
    """How a classifier is made and trained: its body, pooling, what trains (``head``: a linear probe;
    ``last``: the last block and the head; ``all``; ``lora``: ``peft``'s LoRA on the ``transformers`` twin,
    which pools the last token) and whether ULMFiT's stage 3 is used."""

    body: str = "shakespeare"
    pooling: str = "mean"
    trainable: str = "all"
    ulmfit: bool = False

    def __post_init__(self) -> None:
        if self.body not in BODIES:
            raise ValueError(f"unknown body {self.body!r}; the bodies are {', '.join(BODIES)}")
        if self.pooling not in classifier.POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; pick one of {', '.join(classifier.POOLINGS)}")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"unknown choice {self.trainable!r}; pick one of {', '.join(TRAINABLE)}")
        if self.trainable == "lora" and (self.pooling != "last" or self.body == "encoder"):
            raise ValueError("LoRA trains the transformers GPT-2 classifier, which pools the last token of a causal "
                             "model: use pooling='last' and a GPT body (not the encoder)")
        if self.ulmfit and self.trainable != "all":
            raise ValueError("ULMFiT's gradual unfreezing ends with every layer training: use trainable='all'")


def classifier_config(preset: Preset, lr: float, seed: int, chosen: dict, slanted: bool = False) -> TrainConfig:
    """A classifier run's schedule: ``max_iters`` steps of ``batch_size`` texts, warmup then cosine decay, or
    with ``slanted`` ULMFiT's slanted triangular rates (a tenth of the steps up, then linearly down to 1/32)."""
    steps = chosen["max_iters"]
    return TrainConfig(max_iters=steps, batch_size=chosen["batch_size"], block_size=preset.block_size,
                       learning_rate=lr, min_lr=lr / (32 if slanted else 10),
                       warmup_iters=steps // 10 if slanted else max(1, steps // 20),
                       decay="linear" if slanted else "cosine", eval_interval=chosen["eval_interval"], eval_iters=1,
                       seed=seed, progress=False)


def build_classifier(arm: Arm, n_classes: int, preset: Preset | None = None) -> Classifier | HFClassifier:
    """``arm``'s classifier before training: its body (cached), a new head, and only what ``arm.trainable`` names
    left to train (for ``lora``, ``peft``'s adapters on the ``transformers`` twin) (notebook 10)."""
    preset = study_preset(preset)
    model = Classifier(body_model(arm.body, preset), n_classes, arm.pooling, pad_id=tokenizer(preset).eot_id)
    model = model.to(preset.device)
    if arm.trainable == "lora":
        return HFClassifier(peft_lora(to_hf(model), r=settings(preset)["rank"]))
    return freeze(model, arm.trainable)


def _labelled(task, n: int | None, seed: int):
    return task["train"] if n is None or n >= len(task["train"]) else tasks.label_subset(task["train"], n, seed)


def classifier_run(arm: Arm, task_name: str, n: int | None, seed: int, lr: float, preset: Preset | None = None
                   ) -> dict:
    """One classifier: ``arm`` trained on ``n`` labels of ``task_name`` (``None``: all) drawn with ``seed``, at
    learning rate ``lr``, with early stopping on validation loss; cached (the record only). Returns ``val``
    (best validation loss), ``val_acc``, ``test_acc``, ``test_f1``, ``step`` (the best), ``steps``, ``history``,
    and, where a GPT body trained (not a probe, not LoRA), ``lm_after``: its language-model losses afterwards
    (:func:`lm_losses`)."""
    preset = study_preset(preset)
    chosen = settings(preset)
    task = load_task(task_name)
    labelled = _labelled(task, n, seed)
    held_out = {"validation": task["validation"].select(range(min(len(task["validation"]), chosen["max_val"]))),
                "test": task["test"]}
    cfg = classifier_config(preset, lr, seed, chosen, arm.ulmfit)
    tok = tokenizer(preset)

    def body(cfg: TrainConfig) -> Trained:
        w = chosen["windows"]  # contexts read per text (Classifier.features)
        x, y = _encode(labelled["text"], tok, cfg.block_size, w), torch.tensor(labelled["label"])
        held = {s: (_encode(d["text"], tok, cfg.block_size, w), torch.tensor(d["label"])) for s, d in held_out.items()}
        torch.manual_seed(seed)
        model = build_classifier(arm, task["train"].features["label"].num_classes, preset)
        groups = hooks = None
        if arm.ulmfit:
            groups = ulmfit.discriminative_groups(model, chosen["decay"], cfg.weight_decay)
            hooks = [ulmfit.Unfreezer(model, chosen["unfreeze_every"])]
        stop = EarlyStopping("val", chosen["patience"])
        result = train(model, label_batches(x, y, cfg.batch_size), cfg, groups=groups, hooks=hooks or (),
                       on_eval=Measure({"val": classifier.measure(*held["validation"])}, then=stop))
        stop.restore(model)
        test = classifier.scores(classifier.predict(model, held["test"][0]), held["test"][1])
        h = result.history
        moved = arm.trainable not in ("head", "lora") and arm.body != "encoder"  # (an encoder has no next token)
        after = {"lm_after": lm_losses(model.body, preset)} if moved else {}
        return Trained(result, {**asdict(arm), "task": task_name, "n": len(labelled), "seed": seed, "lr": lr,
                                "val": stop.best, "val_acc": float(h.loc[h["val"].idxmin(), "val_acc"]),
                                "step": stop.best_step, "test_acc": test["acc"], "test_f1": test["f1"], **after})

    spec = {**asdict(arm), "task": task_name, "labels": data.fingerprint(labelled), "patience": chosen["patience"],
            "windows": chosen["windows"], "val_rows": len(held_out["validation"]), **({"rank": chosen["rank"]} if arm.trainable == "lora" else {}),
            **({"decay": chosen["decay"], "unfreeze_every": chosen["unfreeze_every"]} if arm.ulmfit else {})}
    return cached_run("classifier", spec, preset, cfg, body, weights=False).record


def best_run(arm: Arm, task_name: str, n: int | None, seed: int, preset: Preset | None = None) -> dict:
    """The run of ``arm`` whose learning rate (from the preset's grid) gave the lowest validation loss: each arm
    gets its own rate, chosen without looking at the test split (notebook 10)."""
    preset = study_preset(preset)
    chosen = settings(preset)
    # a new head alone, low-rank adapters that start at zero, or ULMFiT's rates (the top layer's; each one below
    # 2.6 times less) take larger steps than a whole pretrained body
    lrs = chosen["ulmfit_lrs"] if arm.ulmfit else {"head": chosen["probe_lrs"], "lora": chosen["lora_lrs"]}.get(
        arm.trainable, chosen["lrs"])
    runs = [classifier_run(arm, task_name, n, seed, lr, preset) for lr in lrs]
    return min(runs, key=lambda r: r["val"])


def bow_run(task_name: str, n: int | None, seed: int, weight_decays: Sequence[float] = (0.0, 1e-4, 1e-3)) -> dict:
    """The bag-of-words baseline on the same labels: a logistic regression whose weight decay is chosen on the
    validation split's accuracy (notebook 10)."""
    task = load_task(task_name)
    labelled = _labelled(task, n, seed)
    n_classes = task["train"].features["label"].num_classes
    words = bow.BagOfWords().fit(labelled["text"])
    x, xv, xt = (words.transform(t) for t in (labelled["text"], task["validation"]["text"], task["test"]["text"]))
    best = None
    for wd in weight_decays:
        W, b = bow.fit_logistic_regression(x, labelled["label"], n_classes, weight_decay=wd)
        val = bow.accuracy(bow.predict(xv, W, b), task["validation"]["label"])
        if best is None or val > best["val_acc"]:
            pred = bow.predict(xt, W, b)
            best = {"weight_decay": wd, "val_acc": val, "test_acc": bow.accuracy(pred, task["test"]["label"]),
                    "test_f1": bow.macro_f1(pred, task["test"]["label"], n_classes)}
    return {"body": "bag-of-words", "task": task_name, "n": len(labelled), "seed": seed, **best}


def label_curve(arms: dict[str, Arm], task_name: str, counts: Sequence[int | None] | None = None,
                seeds: Sequence[int] | None = None, preset: Preset | None = None, progress: bool = True):
    """A table with one row per (arm, label count, seed), and the bag of words (``bag-of-words``) on the same
    labels (notebook 10). At each label count, an arm's learning rate is the one :func:`best_run` picks on the
    validation split with the first seed's labels; the other seeds' draws train at that rate (a third of the
    runs a search per seed would take). Nothing is chosen on the test split."""
    import pandas as pd
    from tqdm.auto import tqdm

    preset = study_preset(preset)
    chosen = settings(preset)
    counts, seeds = counts or chosen["counts"], seeds or chosen["seeds"]
    rows = []
    with tqdm(total=len(counts) * len(seeds) * (len(arms) + 1), desc="label curve", disable=not progress) as bar:
        for n in counts:
            rates = {}
            for seed in seeds:
                rows.append({"arm": "bag-of-words", **bow_run(task_name, n, seed)})
                bar.update(1)
                for name, arm in arms.items():
                    if name not in rates:  # the first seed: each arm's own rate, on validation
                        r = best_run(arm, task_name, n, seed, preset)
                        rates[name] = r["lr"]
                    else:
                        r = classifier_run(arm, task_name, n, seed, rates[name], preset)
                    rows.append({"arm": name, **{k: v for k, v in r.items() if k != "history"}})
                    bar.update(1)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, label count) of a :func:`label_curve` table: test accuracy's mean, lowest and highest
    over the seeds, macro-F1's mean, and the learning rate the arm trained at (notebook 10)."""
    agg = {"acc": ("test_acc", "mean"), "acc_min": ("test_acc", "min"), "acc_max": ("test_acc", "max"),
           "f1": ("test_f1", "mean"), "seeds": ("seed", "nunique")}
    if "lr" in table:
        agg["lr"] = ("lr", "first")
    out = table.groupby(["arm", "n"], sort=False).agg(**agg)
    if "lr" in out:  # as written ("3e-04"), so that rounding the table for display does not turn it into 0.0
        out["lr"] = out["lr"].map(lambda v: "" if v != v else f"{v:.0e}")
    return out


def label_multiple(counts: Sequence[float], scratch_acc: Sequence[float], acc: float, n: float) -> float:
    """How many times more labels scratch needs to reach accuracy ``acc`` than the arm that reached it with
    ``n`` labels: notebook 03's data multiple (:func:`tlteach.transfer.data_multiple`), read on accuracy
    (higher is better). ``inf``: scratch never reaches it within the counts measured."""
    from .transfer import data_multiple

    return data_multiple(counts, [-a for a in scratch_acc], -acc, n)


__all__ = ["BODIES", "SETTINGS", "TASKS", "Arm", "best_run", "body_model", "bow_run", "classifier_config",
           "build_classifier", "classifier_run", "encoder_model", "label_curve", "label_multiple", "lm_losses", "load_task",
           "settings", "summary", "task_lm_model"]

