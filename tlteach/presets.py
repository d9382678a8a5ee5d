"""Presets: one course, three budgets (``quick``, ``cpu``, ``gpu``), device choice and seeding.

Every notebook reads one preset (taught from notebook 01 on). The preset follows the device unless
``TLTEACH_PRESET`` names one; ``TLTEACH_SEED`` sets the seed that every random choice follows.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .checks import real, whole

PRESET_NAMES = ("quick", "cpu", "gpu")
DEVICES = re.compile(r"cpu|mps|cuda(:\d+)?")  # the devices the course runs on (whether this machine has one:
# pretrain.check_device)
MAX_SEED = 2**64 - 1  # torch.manual_seed's largest (NumPy takes the seed modulo 2**32)


def native_bf16(device: torch.device | str = "cuda") -> bool:
    """Whether this CUDA GPU computes in bf16 natively (Ampere, compute capability 8.0, or newer). Older GPUs (a
    T4 or V100, Colab's free ones) only emulate it, slower than fp32, so the course keeps them in fp32."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


@dataclass(frozen=True)
class Preset:
    """A budget: tokenizer and model sizes, batch and step counts, device and precision."""

    name: str
    vocab_size: int  # BPE vocabulary trained on the source corpus
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int  # context length in tokens
    batch_size: int
    bigram_steps: int  # optimisation steps for notebook 01's bigram model
    pretrain_iters: int  # steps of pretraining on the source corpus (notebook 02)
    pretrain_lr: float
    eval_interval: int
    eval_iters: int  # batches per evaluation set
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        """A clear error for a device or seed the course cannot use (``with_changes`` checks again)."""
        object.__setattr__(self, "device", check_device_name(self.device, "Preset.device"))
        object.__setattr__(self, "seed", check_seed(self.seed, "Preset.seed"))
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "bigram_steps",
                     "pretrain_iters", "eval_interval", "eval_iters"):
            object.__setattr__(self, name, whole(getattr(self, name), f"Preset.{name}", 1))
        real(self.pretrain_lr, "Preset.pretrain_lr", "a finite learning rate > 0", low_open=True)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype: bf16 on a CUDA GPU that supports it, otherwise None (full fp32)."""
        if self.device.startswith("cuda") and native_bf16(self.device):
            return torch.bfloat16
        return None

    def as_dict(self) -> dict:
        """The preset as a plain dict (for printing and for cache keys)."""
        return asdict(self)


_BUDGETS = {
    # CI smoke budget on a 2-core CPU: every lesson's effect still shows, on a very small model.
    "quick": dict(vocab_size=1024, n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=16,
                  bigram_steps=300, pretrain_iters=3000, pretrain_lr=3e-3, eval_interval=250, eval_iters=8),
    # A learner's laptop: minutes per notebook.
    "cpu": dict(vocab_size=2048, n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=32,
                bigram_steps=500, pretrain_iters=2000, pretrain_lr=2e-3, eval_interval=200, eval_iters=20),
    # A CUDA GPU (sized on an H100): the figures in the published book.
    "gpu": dict(vocab_size=4096, n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64,
                bigram_steps=2000, pretrain_iters=2000, pretrain_lr=1e-3, eval_interval=250, eval_iters=20),
}


def best_device() -> str:
    """The best device available: ``cuda``, then Apple's ``mps``, then ``cpu`` (notebook 01)."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def device_key(device: str) -> str:
    """The device as part of a cache key: ``cuda:1`` and ``cuda`` are one kind, so they share artifacts."""
    return "cuda" if device.startswith("cuda") else device


def default_preset_name(device: str | None = None) -> str:
    """``gpu`` on CUDA, ``cpu`` elsewhere: the preset a device implies."""
    device = device or best_device()
    return "gpu" if device.startswith("cuda") else "cpu"


def get_seed() -> int:
    """The seed from ``TLTEACH_SEED`` (default 0): a whole number from 0 to 2**64 - 1."""
    raw = os.environ.get("TLTEACH_SEED", "0").strip() or "0"
    try:
        seed = int(raw)
    except ValueError:
        raise ValueError(f"TLTEACH_SEED must be an integer, got {raw!r}; unset it or set e.g. TLTEACH_SEED=1") from None
    return check_seed(seed, "TLTEACH_SEED")


def check_seed(seed: object, source: str = "seed") -> int:
    """``seed`` as an ``int``, or a clear error naming ``source``: not a whole number, or outside the range
    torch accepts, 0 to 2**64 - 1."""
    seed = whole(seed, source, 0, hint="; seeds are whole numbers from 0 to 2**64 - 1")
    if seed > MAX_SEED:
        raise ValueError(f"{source} must be from 0 to 2**64 - 1 (the seeds torch accepts), got {seed}; "
                         "pick one in that range, e.g. 0")
    return int(seed)


def check_device_name(device: object, source: str = "device") -> str:
    """``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``mps``), or a clear error naming ``source``; whether this
    machine has it is checked where the device is used (``pretrain.check_device``)."""
    if not isinstance(device, str):
        raise TypeError(f"{source} must be a device name such as 'cpu' or 'cuda', got {type(device).__name__}")
    if not DEVICES.fullmatch(device.strip().lower()):
        raise ValueError(f"{source}: unknown device {device!r}; choose cpu, cuda, cuda:N or mps")
    return device.strip().lower()


def check_device(device: object, source: str = "device", fix: str = "use 'cpu'") -> str:
    """``device`` if it names a device this machine has (``cpu``, ``cuda``, ``cuda:N``, ``mps``); otherwise a
    ``ValueError`` naming ``source`` (``--device cuda``, ``load_model(device=...)``) and saying ``fix``."""
    device = check_device_name(str(device) if isinstance(device, torch.device) else device, source)
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(device.partition(":")[2] or 0) >= count:
            have = f"{count} CUDA GPU(s)" if count else "no CUDA GPU (torch.cuda.is_available() is False)"
            raise ValueError(f"{source}: this machine has {have}; {fix}")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"{source}: Apple's MPS is not available on this machine; {fix}")
    return device


def get_preset(name: str | None = None, device: str | None = None) -> Preset:
    """The preset to run with (notebook 01 onwards).

    ``name`` wins, then ``TLTEACH_PRESET``, then the preset the device implies. ``device`` defaults to
    the best one available (``TLTEACH_DEVICE`` overrides it).
    """
    env = os.environ.get("TLTEACH_DEVICE", "")
    if device not in (None, ""):
        device = check_device_name(device, "get_preset(device=...)")
    elif env.strip():
        device = check_device_name(env, f"TLTEACH_DEVICE={env}")
    device = device or best_device()
    if name is not None and not isinstance(name, str):
        raise TypeError(f"the preset name must be a str, one of {', '.join(PRESET_NAMES)}; got {type(name).__name__}")
    name = name or os.environ.get("TLTEACH_PRESET") or default_preset_name(device)
    name = name.strip().lower()
    if name not in _BUDGETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESET_NAMES)} "
                         "(set TLTEACH_PRESET or pass name=...)")
    return Preset(name=name, device=device, seed=get_seed(), **_BUDGETS[name])


def budget(name: str) -> dict:
    """The sizes and step counts of preset ``name`` (a copy), without device or seed (notebook 03's study model)."""
    if not isinstance(name, str) or name not in _BUDGETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESET_NAMES)}")
    return dict(_BUDGETS[name])


def with_changes(preset: Preset, **changes) -> Preset:
    """A copy of ``preset`` with some fields changed (for exercises and sweeps)."""
    return replace(preset, **changes)


def seed_everything(seed: int | None = None) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh ``torch.Generator`` seeded the same way (notebook 01)."""
    seed = get_seed() if seed is None else check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
