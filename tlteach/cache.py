"""A cache of artifacts (tokenizers, pretrained models) keyed by everything that determines them.

Taught in passing from notebook 01 on: a notebook asks for an artifact with :func:`cached`, which loads it
when a valid copy exists and otherwise builds it (deterministically) and stores it.

Safety rules:
- the key (corpus fingerprint, sizes, seed, format version...) is hashed into the file name;
- writes are atomic: built into a temporary file, checksummed, then renamed into place;
- a lock file serialises two processes building the same artifact;
- a file whose checksum does not match, or that fails to load, is rebuilt with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class CacheWarning(UserWarning):
    """A cached artifact was missing its checksum, corrupt or unreadable, and is being rebuilt."""


def cache_dir() -> Path:
    """The cache folder: ``TLTEACH_CACHE`` if set, else the user's cache directory (``~/.cache/tlteach``)."""
    env = os.environ.get("TLTEACH_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("tlteach", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def key_digest(key: dict) -> str:
    """A short, stable hash of a JSON-serialisable key."""
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def artifact_path(kind: str, key: dict, suffix: str) -> Path:
    """Where the artifact of this ``kind`` and ``key`` lives: ``<cache>/<kind>/<hash><suffix>``."""
    folder = cache_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key_digest(key)}{suffix}"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path.lock`` (POSIX ``flock``; Windows ``msvcrt``) while the block runs."""
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+b") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        except ImportError:  # pragma: no cover - Windows
            import msvcrt

            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)


def _valid(path: Path, key: dict) -> str | None:
    """``None`` when ``path`` matches its recorded checksum and key, else the reason it does not."""
    meta = _meta_path(path)
    if not meta.exists():
        return "no checksum recorded"
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its checksum file is unreadable"
    if info.get("key_digest") != key_digest(key):
        return "it was built for another key"
    if info.get("sha256") != file_sha256(path):
        return "its checksum does not match (truncated or corrupt)"
    return None


def has(kind: str, key: dict, suffix: str) -> bool:
    """Whether the cache holds a sound artifact for ``key`` (checked as :func:`cached` checks it, not loaded)."""
    path = artifact_path(kind, key, suffix)
    return path.exists() and _valid(path, key) is None


def _discard(path: Path, why: str) -> None:
    warnings.warn(f"cached artifact {path} is unusable ({why}); rebuilding it", CacheWarning, stacklevel=3)
    path.unlink(missing_ok=True)
    _meta_path(path).unlink(missing_ok=True)


def _try_load(path: Path, key: dict, load: Callable[[Path], T]) -> tuple[bool, T | None]:
    if not path.exists():
        return False, None
    why = _valid(path, key)
    if why is None:
        try:
            return True, load(path)
        except Exception as err:  # noqa: BLE001 - any failure to load means: rebuild
            why = f"loading failed: {type(err).__name__}: {err}"
    _discard(path, why)
    return False, None


def cached(kind: str, key: dict, suffix: str, build: Callable[[Path], None], load: Callable[[Path], T]) -> T:
    """Load the artifact for ``key`` from the cache, building and storing it first if needed.

    ``build(tmp_path)`` must write the artifact to ``tmp_path``; ``load(path)`` reads it back. A corrupt
    or truncated file is rebuilt with a :class:`CacheWarning`. Used by the tokenizer (notebook 01) and the
    pretrained model (notebook 02).
    """
    path = artifact_path(kind, key, suffix)
    ok, value = _try_load(path, key, load)
    if ok:
        return value  # type: ignore[return-value]
    with file_lock(path):
        ok, value = _try_load(path, key, load)  # another process may have built it meanwhile
        if ok:
            return value  # type: ignore[return-value]
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex}.tmp{suffix}")
        try:
            build(tmp)
            if not tmp.exists():
                raise RuntimeError(f"the builder for {kind!r} did not write {tmp}")
            meta = {"kind": kind, "key": key, "key_digest": key_digest(key), "sha256": file_sha256(tmp)}
            atomic_write_text(_meta_path(path), json.dumps(meta, indent=1, sort_keys=True, default=str))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return load(path)


def clear(kind: str | None = None) -> int:
    """Delete cached artifacts (of one ``kind``, or all); return how many files were removed."""
    root = cache_dir() if kind is None else cache_dir() / kind
    n = 0
    for p in sorted(root.rglob("*"), reverse=True):
        if p.is_file():
            p.unlink()
            n += 1
    return n
