"""The methods that fight forgetting, each as what it adds to the one loop (notebooks 05 to 08).

A method is a small frozen dataclass: its fields (a strength, a rank, a share...) plus the schedule every
method shares (``lr`` and ``steps``; ``None`` takes the study's). :meth:`Method.plug` returns what it adds to
``train.train`` as :class:`Plugs`: a ``penalty`` (EWC, L2), ``batches`` (replay's data mix), optimizer ``groups``
(discriminative learning rates), ``hooks`` (gradual unfreezing), ``adapters`` (LoRA, added to the model in place).
Plain full fine-tuning adds nothing. Two methods compose with ``+``: ``EWC(0.03) + Replay(0.25)`` sums the
penalties and keeps replay's batches; two methods that both set the batches or the groups are refused.

The pieces live beside this module: :mod:`tlteach.ewc`, :mod:`tlteach.lora`, :mod:`tlteach.replay`,
:mod:`tlteach.ulmfit`. :mod:`tlteach.forgetting` runs a method and caches the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn

from . import cache, data, ewc, lora, replay, ulmfit
from .checks import flag, real, whole
from .presets import Preset
from .study import FORMAT_VERSION, model_key, source_model, streams, study_preset
from .study import settings as study_settings
from .train import Batches


@dataclass(frozen=True)
class Plugs:
    """What a method adds to the loop: keyword arguments of ``train.train`` (``penalty``, ``groups``, ``hooks``),
    the ``batches`` to train on instead of the target's stream, and whether LoRA ``adapters`` were added to
    the model (the run merges them into the weights afterwards)."""

    penalty: Callable[[nn.Module], torch.Tensor] | None = None
    batches: Batches | None = None
    groups: Sequence[dict] | None = None
    hooks: tuple = ()
    adapters: bool = False

    def __add__(self, other: Plugs) -> Plugs:
        for name in ("batches", "groups"):
            if getattr(self, name) is not None and getattr(other, name) is not None:
                raise ValueError(f"two methods both set the loop's {name}; they cannot be combined")
        return Plugs(penalty=_sum(self.penalty, other.penalty),
                     batches=self.batches if self.batches is not None else other.batches,
                     groups=self.groups if self.groups is not None else other.groups,
                     hooks=(*self.hooks, *other.hooks), adapters=self.adapters or other.adapters)

    def loop_arguments(self) -> dict:
        """``penalty``, ``groups`` and ``hooks`` as keyword arguments of ``train.train``."""
        return {"penalty": self.penalty, "groups": self.groups, "hooks": self.hooks}


def _number(method: Method, name: str, rule: str, low: float, high: float = math.inf) -> None:
    """A clear error unless ``method.name`` is a finite number above ``low`` and below ``high`` (``rule`` says so)."""
    real(getattr(method, name), f"{type(method).__name__}({name}=...)", f"a finite {rule}", low, high, low_open=True)


def _whole(method: Method, name: str, least: int, rule: str) -> None:
    """A clear error unless ``method.name`` is a whole number >= ``least``; a NumPy integer becomes an ``int``."""
    object.__setattr__(method, name, whole(getattr(method, name), f"{type(method).__name__}({name}=...)", least,
                                           hint=f" ({rule})"))


def _sum(a, b):
    """Two penalties as one (either may be ``None``)."""
    if a is None:
        return b
    if b is None:
        return a
    return lambda model: a(model) + b(model)


@dataclass(frozen=True, kw_only=True)
class Method:
    """Plain full fine-tuning at ``lr`` for ``steps`` (notebook 05): every weight trains, nothing is added.
    The other methods are subclasses that add to the loop."""

    lr: float | None = None
    steps: int | None = None
    kind: ClassVar[str] = "full"

    def __post_init__(self) -> None:
        if self.lr is not None:
            _number(self, "lr", "positive learning rate, lr > 0 (None: the study's)", 0)
        if self.steps is not None:
            _whole(self, "steps", 1, "at least one step, steps >= 1 (None: the study's)")

    def plug(self, model: nn.Module, preset: Preset, settings: dict) -> Plugs:
        """What this method adds to the loop that trains ``model`` (in place for LoRA)."""
        return Plugs()

    @property
    def name(self) -> str:
        """The method and its own fields, for legends: ``ewc λ=10``, ``lora r=4``."""
        return "full"

    @property
    def label(self) -> str:
        """:attr:`name` with the learning rate when set: ``full lr=1e-03``."""
        return self.name + ("" if self.lr is None else f" lr={self.lr:.0e}")

    @property
    def needs_fisher(self) -> bool:
        """Whether the run reads the source Fisher (so its sample size enters the run's key)."""
        return False

    def describe(self) -> dict:
        """``kind``, ``lr``, ``steps`` and the method's own fields: a run's ``record["method"]`` and cache key."""
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}

    def resolved(self, settings: dict) -> Method:
        """This method with the study's learning rate and steps filled in where not set."""
        return replace(self, lr=self.lr or settings["lr"], steps=self.steps or settings["steps"])

    def __add__(self, other: Method) -> Combined:
        if not isinstance(other, Method):
            return NotImplemented  # Python's TypeError: unsupported operand type(s) for +
        mine = self.parts if isinstance(self, Combined) else (self,)
        theirs = other.parts if isinstance(other, Combined) else (other,)
        return Combined(parts=(*mine, *theirs))


Full = Method


@dataclass(frozen=True)
class EWC(Method):
    """Elastic Weight Consolidation (notebook 06): ``lam / 2 · Σ F (θ − θ*)²`` with the source Fisher ``F``
    (normalised to mean 1), pulling the weights that mattered for the source back to where they were."""

    lam: float
    kind: ClassVar[str] = "ewc"

    def __post_init__(self) -> None:
        super().__post_init__()
        _number(self, "lam", "penalty strength lam > 0", 0)

    def plug(self, model: nn.Module, preset: Preset, settings: dict) -> Plugs:
        return Plugs(penalty=ewc.EWCPenalty(model, self.fisher(model, preset, settings), self.lam))

    def fisher(self, model: nn.Module, preset: Preset, settings: dict) -> dict[str, torch.Tensor]:
        return source_fisher(preset, settings=settings)

    @property
    def name(self) -> str:
        return f"{self.kind} λ={self.lam:g}"

    @property
    def needs_fisher(self) -> bool:
        return True


@dataclass(frozen=True)
class L2(EWC):
    """EWC with a flat Fisher: every weight pulled back equally (notebook 06)."""

    kind: ClassVar[str] = "l2"

    def fisher(self, model: nn.Module, preset: Preset, settings: dict) -> dict[str, torch.Tensor]:
        return ewc.flat_fisher(model)

    @property
    def needs_fisher(self) -> bool:
        return False


@dataclass(frozen=True)
class LoRA(Method):
    """Low-rank adapters of rank ``rank`` on the attention and MLP matrices, the rest frozen (notebook 07);
    ``alpha`` defaults to ``2 * rank``; ``embeddings=True`` trains the embeddings and LayerNorms too."""

    rank: int
    alpha: float | None = None
    embeddings: bool = False
    kind: ClassVar[str] = "lora"

    def __post_init__(self) -> None:
        super().__post_init__()
        _whole(self, "rank", 1, "a whole rank >= 1")
        if self.alpha is not None:
            _number(self, "alpha", "alpha > 0 (the update is scaled by alpha / rank; None: 2 * rank)", 0)
        flag(self.embeddings, "LoRA(embeddings=...)")

    def plug(self, model: nn.Module, preset: Preset, settings: dict) -> Plugs:
        lora.add_lora(model, r=self.rank, alpha=self.alpha, train_embeddings=self.embeddings,
                      train_norms=self.embeddings)
        return Plugs(adapters=True)

    def resolved(self, settings: dict) -> LoRA:
        return replace(super().resolved(settings), alpha=self.alpha or 2.0 * self.rank)

    @property
    def name(self) -> str:
        return f"lora r={self.rank}{' +emb' if self.embeddings else ''}"


@dataclass(frozen=True)
class Replay(Method):
    """A ``share`` of every batch drawn from the source's training text (notebook 08, :mod:`tlteach.replay`)."""

    share: float
    kind: ClassVar[str] = "replay"

    def __post_init__(self) -> None:
        super().__post_init__()
        _number(self, "share", "share of source text to replay in each batch, 0 < share < 1", 0, 1)

    def plug(self, model: nn.Module, preset: Preset, settings: dict) -> Plugs:
        s = streams(preset)
        return Plugs(batches=replay.replay_batches(s["target_train"], s["source_train"], self.share,
                                                   preset.block_size, settings["batch_size"]))

    @property
    def name(self) -> str:
        return f"replay {self.share:.0%}"


@dataclass(frozen=True)
class Discriminative(Method):
    """ULMFiT's discriminative learning rates: each layer learns ``decay`` times slower than the one above
    (ULMFiT: 2.6; notebook 08, :mod:`tlteach.ulmfit`)."""

    decay: float
    kind: ClassVar[str] = "discriminative"

    def __post_init__(self) -> None:
        super().__post_init__()
        _number(self, "decay", "decay > 1 between layers' learning rates (ULMFiT: 2.6)", 1)

    def plug(self, model: nn.Module, preset: Preset, settings: dict) -> Plugs:
        return Plugs(groups=ulmfit.discriminative_groups(model, self.decay))

    @property
    def name(self) -> str:
        return f"discriminative ÷{self.decay:g}"


@dataclass(frozen=True)
class Unfreeze(Method):
    """ULMFiT's gradual unfreezing: one more layer joins the training every ``every`` steps, from the top
    (notebook 08, :mod:`tlteach.ulmfit`)."""

    every: int
    kind: ClassVar[str] = "unfreeze"

    def __post_init__(self) -> None:
        super().__post_init__()
        _whole(self, "every", 1, "every >= 1 steps between layers")

    def plug(self, model: nn.Module, preset: Preset, settings: dict) -> Plugs:
        groups = ulmfit.scaled_groups(model, [1.0] * len(ulmfit.layers(model)))  # every weight in the optimizer
        return Plugs(groups=groups, hooks=(ulmfit.Unfreezer(model, self.every),))

    @property
    def name(self) -> str:
        return f"unfreeze every {self.every}"


@dataclass(frozen=True)
class Combined(Method):
    """Several methods in one run (``EWC(0.03) + Replay(0.25)``): their plugs added together, in order.
    The schedule is the combination's own, or the one its parts agree on."""

    parts: tuple[Method, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.parts, tuple) or not all(isinstance(p, Method) for p in self.parts):
            raise TypeError(f"Combined(parts=...) must be a tuple of methods (EWC(0.03) + Replay(0.25)), got "
                            f"{self.parts!r}")
        if len(self.parts) < 2:
            raise ValueError("combine at least two methods (e.g. EWC(0.03) + Replay(0.25))")
        kinds = [p.kind for p in self.parts]
        twice = sorted({k for k in kinds if kinds.count(k) > 1})
        if twice:
            raise ValueError(f"{' and '.join(twice)} appears twice in the combination ({' + '.join(kinds)}): one run "
                             "takes each method once; keep one of them (with the setting you want)")
        for attr in ("lr", "steps"):
            values = {getattr(p, attr) for p in self.parts} - {None}
            if len(values) > 1:
                raise ValueError(f"the combined methods ask for different {attr}: {sorted(values)}; set it on the "
                                 "combination instead")
            if values and getattr(self, attr) is None:
                object.__setattr__(self, attr, values.pop())

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "+".join(p.kind for p in self.parts)

    def plug(self, model: nn.Module, preset: Preset, settings: dict) -> Plugs:
        total = Plugs()
        for part in self.parts:
            total = total + part.plug(model, preset, settings)
        return total

    def resolved(self, settings: dict) -> Combined:
        return replace(super().resolved(settings), parts=tuple(p.resolved(settings) for p in self.parts))

    @property
    def name(self) -> str:
        return " + ".join(p.name for p in self.parts)

    @property
    def needs_fisher(self) -> bool:
        return any(p.needs_fisher for p in self.parts)

    def describe(self) -> dict:
        return {"kind": self.kind, "lr": self.lr, "steps": self.steps, "parts": [p.describe() for p in self.parts]}


def source_fisher(preset: Preset | None = None, kind: str = "empirical", settings: dict | None = None
                  ) -> dict[str, torch.Tensor]:
    """The pretrained model's diagonal Fisher on source training text, normalised to mean 1, in the model's
    parameter order (notebook 06). Cached."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    preset = preset or study_preset()
    n = (settings or study_settings(preset, "forgetting"))["fisher_examples"]
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
