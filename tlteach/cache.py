"""A cache of artifacts (tokenizers, pretrained models) keyed by everything that determines them.

Taught in passing from notebook 01 on: a notebook asks for an artifact with :func:`cached`, which loads it
when a valid copy exists and otherwise builds it (deterministically) and stores it.

Safety rules:

- the key (corpus fingerprint, sizes, seed, format version...) is hashed into the file name;
- writes are atomic: built into a temporary file, checksummed, then renamed into place;
- a lock file serialises two processes building the same artifact;
- a file whose checksum does not match, that fails to load, or that is not a file at all (a folder in its
  place), is removed and rebuilt with a warning;
- the temporary files of a killed build (``.<hash>....tmp...``) are removed the next time the cache is used
  (once no process holds that artifact's lock) and by :func:`clear`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from .checks import expand_home

T = TypeVar("T")
STALE_SECONDS = 3600  # where locks cannot be probed (Windows), a temporary file this old is a killed build's
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9_-]+)*")


class CacheWarning(UserWarning):
    """A cached artifact was missing its checksum, corrupt or unreadable, and is being rebuilt."""


def cache_dir() -> Path:
    """The cache folder: ``TLTEACH_CACHE`` if set, else the user's cache directory (``~/.cache/tlteach``).

    Created if missing. Raises an ``OSError`` naming ``TLTEACH_CACHE`` when it is a file, lies under a file,
    or is not writable.
    """
    env = os.environ.get("TLTEACH_CACHE", "").strip()
    if env:
        name = f"TLTEACH_CACHE={env}"
        root = expand_home(env, name)
    else:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("tlteach", appauthor=False))
        name = f"the cache folder {root}"
    fix = "set TLTEACH_CACHE to a folder you can write to" + (", or unset it" if env else "")
    blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == root else f"lies under {blocker}, which is a file"
        raise NotADirectoryError(f"{name} {where}, not a folder: {fix}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise type(err)(f"{name} cannot be created ({err.strerror or err}): {fix}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} is not writable: {fix}")
    return root


def key_digest(key: dict) -> str:
    """A short, stable hash of a JSON-serialisable key."""
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def artifact_path(kind: str, key: dict, suffix: str) -> Path:
    """Where the artifact of this ``kind`` and ``key`` lives: ``<cache>/<kind>/<hash><suffix>``."""
    _check_names(kind, key, suffix)
    folder = cache_dir() / kind
    if folder.exists() and not folder.is_dir():
        warnings.warn(f"{folder} is a file, not the cache's {kind!r} folder; removing it", CacheWarning, stacklevel=2)
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key_digest(key)}{suffix}"


def _check_kind(kind: str) -> str:
    """A ``kind`` is one folder name (no ``/``, no ``..``), so nothing is read or written outside the cache."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"kind must be a folder name of letters, digits, '-' and '_', got {kind!r}")
    return kind


def _check_names(kind: str, key: dict, suffix: str) -> None:
    _check_kind(kind)
    if not isinstance(key, dict):
        raise TypeError(f"key must be a dict (JSON-serialisable), got {type(key).__name__}")
    if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
        raise ValueError(f"suffix must be a file ending such as '.json' or '.safetensors', got {suffix!r}")


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


def _remove(path: Path) -> None:
    """Remove a file, or a folder that stands where a file should."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:  # another process removed it first
        pass


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path.lock`` (POSIX ``flock``; Windows ``msvcrt``) while the block runs."""
    lock = path.with_name(path.name + ".lock")
    if lock.is_dir():  # a folder is nobody's lock
        _remove(lock)
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


def _orphan(tmp: Path) -> bool:
    """Whether the temporary file ``tmp`` was left by a killed build: no process holds the lock of its artifact,
    ``<hash>...lock``, which a build holds throughout (where locks cannot be probed, Windows: it is old)."""
    digest = tmp.name.lstrip(".").split(".", 1)[0]
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return time.time() - tmp.stat().st_mtime > STALE_SECONDS
    for lock in tmp.parent.glob(f"{digest}*.lock"):
        with open(lock, "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: that build is running
                return False
            fcntl.flock(f, fcntl.LOCK_UN)
    return bool(digest)


def sweep(folder: Path) -> int:
    """Remove the temporary files that killed builds left in ``folder`` (a kind's folder); return how many.

    Temporary files are named ``.<hash>.<pid>.<random>.tmp...`` (:func:`cached`, :func:`atomic_write_text`).
    """
    n = 0
    for tmp in folder.glob(".*.tmp*"):
        try:
            if _orphan(tmp):
                _remove(tmp)
                n += 1
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
    return n


def _valid(path: Path, key: dict) -> str | None:
    """``None`` when ``path`` matches its recorded checksum and key, else the reason it does not."""
    if not path.is_file():
        return "it is a folder, not a file" if path.is_dir() else "it is not a regular file"
    meta = _meta_path(path)
    if not meta.exists():
        return "no checksum recorded"
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its checksum file is unreadable"
    if not isinstance(info, dict):
        return "its checksum file is unreadable"
    if info.get("key_digest") != key_digest(key):
        return "it was built for another key"
    try:
        digest = file_sha256(path)
    except OSError as err:
        return f"it is unreadable ({err.strerror or err})"
    if info.get("sha256") != digest:
        return "its checksum does not match (truncated or corrupt)"
    return None


def has(kind: str, key: dict, suffix: str) -> bool:
    """Whether the cache holds a sound artifact for ``key`` (checked as :func:`cached` checks it, not loaded)."""
    path = artifact_path(kind, key, suffix)
    return path.exists() and _valid(path, key) is None


def _discard(path: Path, why: str) -> None:
    warnings.warn(f"cached artifact {path} is unusable ({why}); rebuilding it", CacheWarning, stacklevel=4)
    for p in (path, _meta_path(path)):
        try:
            _remove(p)
        except OSError as err:
            raise type(err)(f"cached artifact {p} is unusable ({why}) and cannot be removed "
                            f"({err.strerror or err}): delete it, or clear the cache") from None


def _try_load(path: Path, key: dict, load: Callable[[Path], T]) -> tuple[bool, T | None]:
    if not os.path.lexists(path):
        meta = _meta_path(path)
        if meta.exists() and not meta.is_file():  # a folder where the checksum file goes blocks every build
            _discard(path, "its checksum file is a folder")
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
    pretrained model (notebook 02). A folder (or anything unreadable) in the place of the artifact or its
    checksum file counts as corrupt; the temporary files of killed builds of this ``kind`` are removed.
    """
    if not callable(build) or not callable(load):
        raise TypeError("build and load must be functions of a path (build writes the artifact, load reads it)")
    path = artifact_path(kind, key, suffix)
    sweep(path.parent)
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
    """Delete cached artifacts (of one ``kind``, or all), temporary files and locks included; return how many
    files were removed. Folders found where artifacts belong go too; the kinds' folders stay."""
    top = cache_dir()
    root = top if kind is None else top / _check_kind(kind)
    n = 0
    for p in sorted(root.rglob("*"), reverse=True):  # a folder's files before the folder
        if p.is_file() or p.is_symlink():
            p.unlink()
            n += 1
        elif p.is_dir() and p.parent != top:
            p.rmdir()
    return n
