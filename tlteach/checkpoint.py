"""Saving and loading models as safetensors with their config and tokenizer (notebook 02 onwards).

A checkpoint is one ``.safetensors`` file whose header metadata holds the model's config and the
fingerprint of the tokenizer it was trained with; a checkpoint *folder* (what ``python -m tlteach
pretrain --out DIR`` writes) adds ``config.json`` and ``tokenizer.json`` beside it. Nothing is unpickled.
Loading with a config or tokenizer that does not match says which, instead of failing with a shape error.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .gpt import GPT, GPTConfig

FORMAT = "tlteach-gpt/1"
WEIGHTS = "model.safetensors"


def tokenizer_info(tokenizer) -> dict:
    """What a checkpoint records about its tokenizer: kind, vocabulary size, vocabulary fingerprint."""
    return {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "fingerprint": tokenizer.fingerprint()}


def save_model(model: GPT, path: str | Path, tokenizer=None, extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (a ``.safetensors`` file, or a folder) atomically; return the weights file."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))
        if tokenizer is not None:
            tokenizer.save(path / "tokenizer.json")
        path = path / WEIGHTS
    # the output matrix is tied to the token embedding: store it once
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict()),
            "tokenizer": json.dumps(tokenizer_info(tokenizer) if tokenizer is not None else None),
            "extra": json.dumps(extra or {})}
    return save_atomic(state, path, meta)


def save_atomic(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    """Write ``state`` as a safetensors file at ``path`` atomically: a temporary file in the same folder, then a
    rename, so a reader never sees half a file (models here, LoRA adapters in notebook 07)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_metadata(path: str | Path) -> dict:
    """The config, tokenizer info and extras stored in a checkpoint's header (no weights are read)."""
    path = _weights_file(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tlteach GPT checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
    return {"config": json.loads(meta["config"]), "tokenizer": json.loads(meta.get("tokenizer", "null")),
            "extra": json.loads(meta.get("extra", "{}"))}


def _weights_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one first (python -m tlteach pretrain --out DIR)")
    return path


def load_model(path: str | Path, config: GPTConfig | None = None, tokenizer=None,
               device: str | torch.device = "cpu") -> GPT:
    """Load a checkpoint written by :func:`save_model` (notebook 02 onwards).

    With ``config`` or ``tokenizer`` given, check first that they match what the checkpoint was
    trained with and raise a ``ValueError`` naming every difference.
    """
    meta = read_metadata(path)
    stored = GPTConfig.from_dict(meta["config"])
    if config is not None and config != stored:
        diffs = [f"{k}: checkpoint {v!r}, asked {getattr(config, k)!r}" for k, v in stored.to_dict().items()
                 if getattr(config, k) != v]
        raise ValueError(f"the checkpoint at {path} has another architecture ({'; '.join(diffs)}); "
                         "load it without a config, or train a model with this one")
    if tokenizer is not None:
        saved = meta["tokenizer"]
        if saved is None:
            raise ValueError(f"the checkpoint at {path} records no tokenizer, so it cannot be checked against one")
        mine = tokenizer_info(tokenizer)
        diffs = [f"{k}: checkpoint {saved.get(k)!r}, given {v!r}" for k, v in mine.items() if saved.get(k) != v]
        if diffs:
            raise ValueError(f"the checkpoint at {path} was trained with another tokenizer ({'; '.join(diffs)}); "
                             "use the tokenizer saved beside it or the one it was trained with")
    model = GPT(stored)
    state = load_file(str(_weights_file(path)))
    state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state, strict=True)
    return model.to(device)
