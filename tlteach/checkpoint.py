"""Saving and loading models as safetensors with their config and tokenizer (notebook 02 onwards).

A checkpoint is one ``.safetensors`` file whose header metadata holds the model's config, the
fingerprint of the tokenizer it was trained with and a SHA-256 checksum of the weights; a checkpoint
*folder* (what ``python -m tlteach pretrain --out DIR`` writes) adds ``config.json`` and ``tokenizer.json``
beside it. Missing folders are created when saving. Loading verifies the checksum (a checkpoint written
before checksums existed loads unverified), and loading with a config or tokenizer that does not match says
which, instead of failing with a shape error. Nothing is unpickled: a ``torch.save`` file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .gpt import GPT, GPTConfig
from .presets import check_device

FORMAT = "tlteach-gpt/1"
WEIGHTS = "model.safetensors"
CHECKSUM = "sha256"  # the metadata key of the weights' checksum
HEADER_CHECKSUM = "header_sha256"  # the metadata key of the checksum of the rest of the metadata
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def tokenizer_info(tokenizer) -> dict:
    """What a checkpoint records about its tokenizer: kind, vocabulary size, vocabulary fingerprint."""
    return {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "fingerprint": tokenizer.fingerprint()}


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over tensors' names, dtypes, shapes and bytes, in name order (checkpoints, LoRA adapters)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def header_sha256(metadata: dict[str, str]) -> str:
    """A SHA-256 over a safetensors header's metadata (config, tokenizer, record, the weights' checksum), all but
    its own key: what a bit flipped in the header, where the weights' checksum cannot see, would change."""
    plain = {k: v for k, v in metadata.items() if k != HEADER_CHECKSUM}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def as_path(path, what: str) -> Path:
    """``path`` as a ``Path``, or a ``TypeError`` naming what it should have been the path of; an empty
    path (which would mean the current folder) is refused."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the {what} path must be a str or pathlib.Path, got {type(path).__name__}")
    if not os.fspath(path).strip():
        raise ValueError(f"the {what} path is empty; give a file or folder name, e.g. 'runs/my-model'")
    return Path(path)


def refuse_pickle(path: Path, what: str) -> None:
    """A clear error for a file name whose suffix says pickle (``.pt``, ``.bin``, ...): the course writes
    safetensors and never unpickles."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ValueError(f"{what} writes safetensors, not {path.suffix} pickles: name the file "
                         f"{path.with_suffix('.safetensors').name} or give a folder")


def _check_tokenizer(tokenizer: object) -> None:
    if not all(hasattr(tokenizer, a) for a in ("kind", "vocab_size", "fingerprint")):
        raise TypeError(f"tokenizer must be a tlteach tokenizer (tokenizer.get_tokenizer, load_tokenizer), got "
                        f"{type(tokenizer).__name__}")


def save_model(model: GPT, path: str | Path, tokenizer=None, extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (a ``.safetensors`` file, or a folder, created if missing) atomically, with a
    checksum of its weights; return the weights file."""
    if not isinstance(model, GPT):
        raise TypeError(f"save_model(model, path, ...) saves a tlteach GPT, got {type(model).__name__} as model")
    path = as_path(path, "checkpoint")
    refuse_pickle(path, "save_model")
    with torch.device("meta"):
        plain = set(GPT(model.config).state_dict())
    if set(model.state_dict()) != plain:
        extra_keys = sorted(set(model.state_dict()) - plain)[:3]
        raise ValueError(f"the model's weights are not a plain GPT's (for example {extra_keys}): save a LoRA model's "
                         "adapter with lora.save_adapter, or lora.merge_lora(model) first and save the merged copy")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict (stored as JSON), got {type(extra).__name__}")
    try:
        extra_json = json.dumps(extra or {})
    except (TypeError, ValueError) as e:
        raise TypeError(f"extra must hold only JSON values (str, numbers, lists, dicts): {e}") from e
    if tokenizer is not None:
        _check_tokenizer(tokenizer)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                             f"vocab_size={model.config.vocab_size}: save the model with the tokenizer it was trained with")
    if path.suffix.lower() != ".safetensors":
        _make_folder(path)
        (path / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))
        if tokenizer is not None:
            tokenizer.save(path / "tokenizer.json")
        path = path / WEIGHTS
    # the output matrix is tied to the token embedding: store it once
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict()),
            "tokenizer": json.dumps(tokenizer_info(tokenizer) if tokenizer is not None else None),
            "extra": extra_json, CHECKSUM: tensors_sha256(state)}
    return save_atomic(state, path, meta)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents, or say clearly why it cannot be one."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise NotADirectoryError(f"cannot save into {folder}: {e.filename or folder} is a file, not a folder; "
                                 "choose another path") from e


def save_atomic(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    """Write ``state`` as a safetensors file at ``path`` atomically: a temporary file in the same folder, then a
    rename, so a reader never sees half a file (models here, LoRA adapters in notebook 07). A missing folder
    is created."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder; give a file name ending in .safetensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        warnings.warn(f"saving weights that hold NaN or inf ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}) to "
                      f"{path}: a run that diverged? A model loaded from it predicts nothing useful", RuntimeWarning,
                      stacklevel=3)
    _make_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    metadata = {**metadata, HEADER_CHECKSUM: header_sha256(metadata)}
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_header(path: Path, what: str = "checkpoint") -> dict[str, str]:
    """The metadata of the safetensors file at ``path``, or a ``ValueError`` saying it is not one (a pickle, a
    truncated or random file): never unpickled, never a raw safetensors error."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except SafetensorError as e:
        with open(path, "rb") as f:
            head = f.read(4)
        pickle = head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05")
        kind = " but a PyTorch pickle (torch.save)" if pickle else ""
        raise ValueError(f"{path} is not a safetensors {what}{kind}, or it is truncated or corrupt; tlteach reads only "
                         "safetensors files, pickles are not loaded (they can run code)") from e
    if HEADER_CHECKSUM in meta and header_sha256(meta) != meta[HEADER_CHECKSUM]:  # (older files have none)
        raise ValueError(f"{what} {path} is corrupt (the checksum of its header, which holds its config and record, "
                         "does not match the one stored when it was saved); save it again or restore a copy")
    return meta


def load_tensors(path: Path, meta: dict[str, str], what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file at ``path``, checked against the checksum in its ``meta`` (a file
    written before checksums existed has none, and loads unverified)."""
    try:
        state = load_file(str(path))
    except SafetensorError as e:
        raise ValueError(f"{what} {path} is corrupt or truncated (its weights cannot be read); "
                         "save it again or restore a copy") from e
    if CHECKSUM in meta and tensors_sha256(state) != meta[CHECKSUM]:
        raise ValueError(f"{what} {path} is corrupt (checksum of its weights does not match the one stored when it "
                         "was saved: some bytes changed); save it again or restore a copy")
    return state


def read_metadata(path: str | Path) -> dict:
    """The config, tokenizer info and extras stored in a checkpoint's header (no weights are read)."""
    path = _weights_file(path)
    meta = read_header(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tlteach GPT checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
    try:
        out = {"config": json.loads(meta["config"]), "tokenizer": json.loads(meta.get("tokenizer", "null")),
               "extra": json.loads(meta.get("extra", "{}"))}
    except (KeyError, ValueError) as e:
        raise ValueError(f"checkpoint {path} is corrupt: its header metadata is unreadable ({e!r})") from e
    if not isinstance(out["config"], dict):
        raise ValueError(f"checkpoint {path} is corrupt: its config is {out['config']!r}, not a dict")
    return out


def _weights_file(path: str | Path) -> Path:
    path = as_path(path, "checkpoint")
    if path.is_dir():
        if not (path / WEIGHTS).is_file():
            raise FileNotFoundError(f"no checkpoint at {path}: the folder holds no {WEIGHTS}; give the folder "
                                    "save_model wrote, or the .safetensors file itself")
        path = path / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one first (python -m tlteach pretrain --out DIR)")
    return path


def load_model(path: str | Path, config: GPTConfig | None = None, tokenizer=None,
               device: str | torch.device = "cpu") -> GPT:
    """Load a checkpoint written by :func:`save_model` (notebook 02 onwards), verifying its checksum.

    With ``config`` or ``tokenizer`` given, check first that they match what the checkpoint was
    trained with and raise a ``ValueError`` naming every difference.
    """
    if config is not None and not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig (or None), got {type(config).__name__}")
    if tokenizer is not None:
        _check_tokenizer(tokenizer)
    device = check_device(device, "load_model(device=...)", "load with device='cpu' (the default)")
    meta = read_metadata(path)
    try:
        stored = GPTConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {path} records an invalid config ({e})") from e
    if config is not None and config != stored:
        diffs = [f"{k}: checkpoint {v!r}, asked {getattr(config, k)!r}" for k, v in stored.to_dict().items()
                 if getattr(config, k) != v]
        raise ValueError(f"the checkpoint at {path} has another architecture ({'; '.join(diffs)}); "
                         "load it without a config, or train a model with this one")
    if tokenizer is not None:
        saved = meta["tokenizer"]
        if saved is None:
            raise ValueError(f"the checkpoint at {path} records no tokenizer, so it cannot be checked against one")
        if not isinstance(saved, dict):
            raise ValueError(f"checkpoint {path} records its tokenizer as {type(saved).__name__}, not a tokenizer's "
                             "description: the file was written by other code or edited; load it without tokenizer=")
        mine = tokenizer_info(tokenizer)
        diffs = [f"{k}: checkpoint {saved.get(k)!r}, given {v!r}" for k, v in mine.items() if saved.get(k) != v]
        if diffs:
            raise ValueError(f"the checkpoint at {path} was trained with another tokenizer ({'; '.join(diffs)}); "
                             "use the tokenizer saved beside it or the one it was trained with")
    file = _weights_file(path)
    state = load_tensors(file, read_header(file))
    model = GPT(stored)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state) - {"lm_head.weight"}), sorted(set(state) - set(own))
    wrong = sorted(k for k, v in state.items() if k in own and v.shape != own[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"checkpoint {path} is corrupt: its weights do not fit its own config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, other shapes {wrong[:3]})")
    state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state, strict=True)
    return model.to(device)
