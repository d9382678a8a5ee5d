"""Bad input to the artifact cache (issue 17): the cache heals what a crash or a stray command left in it, and
a bad ``TLTEACH_CACHE``, kind or suffix is a clear error naming what to change."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tlteach import cache

KEY = {"corpus": "demo", "n": 1}
PAYLOAD = "0123456789" * 50


def _build(p: Path) -> None:
    p.write_text(PAYLOAD)


def _get() -> str:
    return cache.cached("demo", KEY, ".txt", _build, lambda p: p.read_text())


def _paths() -> tuple[Path, Path, Path]:
    path = cache.artifact_path("demo", KEY, ".txt")
    return path, path.with_name(path.name + ".meta.json"), path.with_name(path.name + ".lock")


def _folder_in_place_of(p: Path) -> None:
    if p.exists():
        p.unlink()
    (p / "inner").mkdir(parents=True)
    (p / "inner" / "stray.txt").write_text("not an artifact")


# ------------------------------------------------------------------ something else where a file should be
@pytest.mark.parametrize("which", ["artifact", "metadata", "metadata without artifact", "garbage metadata",
                                   "metadata not a dict", "binary metadata"])
def test_a_damaged_artifact_or_metadata_is_rebuilt_with_a_warning(fresh_cache, which):
    assert _get() == PAYLOAD
    path, meta, _ = _paths()
    if which == "artifact":
        _folder_in_place_of(path)
    elif which == "metadata":
        _folder_in_place_of(meta)
    elif which == "metadata without artifact":
        path.unlink()
        _folder_in_place_of(meta)
    elif which == "garbage metadata":
        meta.write_text("{not json")
    elif which == "metadata not a dict":
        meta.write_text("[1, 2, 3]")
    else:
        meta.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.warns(cache.CacheWarning, match="rebuilding"):
        assert _get() == PAYLOAD
    assert path.is_file() and meta.is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        assert _get() == PAYLOAD  # healed: the next call loads without a warning
    assert cache.has("demo", KEY, ".txt")


def test_has_says_no_for_a_folder_in_place_of_the_artifact(fresh_cache):
    _get()
    path, _, _ = _paths()
    _folder_in_place_of(path)
    assert cache.has("demo", KEY, ".txt") is False


def test_a_folder_in_place_of_the_lock_or_the_kind_folder_is_replaced(fresh_cache):
    _get()
    path, _, lock = _paths()
    path.unlink()
    _folder_in_place_of(lock)
    assert _get() == PAYLOAD and lock.is_file()
    kind = fresh_cache / "other"
    kind.write_text("a file where the kind's folder goes")
    with pytest.warns(cache.CacheWarning, match="is a file"):
        assert cache.cached("other", KEY, ".txt", _build, lambda p: p.read_text()) == PAYLOAD
    assert kind.is_dir()


# ------------------------------------------------------------------ temporary files of killed builds
def test_a_killed_build_leaves_a_temporary_file_that_the_next_use_removes(fresh_cache):
    code = ("import os, sys\nfrom tlteach import cache\n"
            "def build(p):\n    p.write_text('half of it')\n    os._exit(9)  # killed mid-build: no finally runs\n"
            "cache.cached('demo', {'corpus': 'demo', 'n': 1}, '.txt', build, lambda p: p.read_text())\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TLTEACH_CACHE": str(fresh_cache)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    folder = fresh_cache / "demo"
    (orphan,) = [p for p in folder.iterdir() if ".tmp" in p.name]
    assert orphan.name.startswith(".") and orphan.read_text() == "half of it"
    assert cache.cached("demo", {"another": "key"}, ".txt", _build, lambda p: p.read_text()) == PAYLOAD
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]  # swept when the cache was next used
    assert _get() == PAYLOAD


def test_a_temporary_file_of_a_build_in_progress_is_kept(fresh_cache):
    path, meta, _ = _paths()
    tmps = [path.with_name(f".{path.stem}.123.abc.tmp.txt"), meta.with_name(f".{meta.name}.123.def.tmp")]
    with cache.file_lock(path):  # a build of this artifact is running
        for tmp in tmps:
            tmp.write_text("being written")
        assert cache.sweep(path.parent) == 0
        assert all(tmp.exists() for tmp in tmps)
    assert cache.sweep(path.parent) == 2  # the build is gone, its files are orphans
    assert not any(tmp.exists() for tmp in tmps)


def test_clear_removes_orphans_and_folders_in_place_of_artifacts(fresh_cache):
    _get()
    path, meta, _ = _paths()
    orphan = path.with_name(f".{path.stem}.99.abc.tmp.txt")
    orphan.write_text("left by a killed build")
    _folder_in_place_of(meta)
    assert cache.clear("demo") >= 3  # the artifact, the orphan, the stray file, the lock
    assert list((fresh_cache / "demo").iterdir()) == []
    assert _get() == PAYLOAD


# ------------------------------------------------------------------ TLTEACH_CACHE
@pytest.mark.parametrize("case", ["a file", "under a file"])
def test_tlteach_cache_that_cannot_be_a_folder_names_the_variable(tmp_path, monkeypatch, case):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TLTEACH_CACHE", str(blocker if case == "a file" else blocker / "cache"))
    with pytest.raises(NotADirectoryError, match=r"TLTEACH_CACHE=.*a-file.*(is a file|under).*set TLTEACH_CACHE"):
        cache.cache_dir()
    with pytest.raises(NotADirectoryError, match="TLTEACH_CACHE"):
        _get()


def test_tlteach_cache_not_writable_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TLTEACH_CACHE", str(tmp_path / "ro"))
    real_access = os.access
    monkeypatch.setattr(cache.os, "access", lambda p, mode: False if Path(p) == tmp_path / "ro" else
                        real_access(p, mode))
    with pytest.raises(PermissionError, match=r"TLTEACH_CACHE=.*ro is not writable"):
        cache.cache_dir()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_tlteach_cache_in_a_read_only_folder_names_the_variable(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for target in (ro, ro / "cache"):
            monkeypatch.setenv("TLTEACH_CACHE", str(target))
            with pytest.raises(PermissionError, match="TLTEACH_CACHE"):
                cache.cache_dir()
    finally:
        ro.chmod(0o755)


def test_blank_tlteach_cache_means_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("TLTEACH_CACHE", "   ")
    monkeypatch.setattr("platformdirs.user_cache_dir", lambda *a, **k: str(tmp_path / "user-cache"))
    assert cache.cache_dir() == tmp_path / "user-cache"


# ------------------------------------------------------------------ names that would leave the cache
@pytest.mark.parametrize("kind, key, suffix, error, phrase", [
    ("../escape", KEY, ".txt", ValueError, "kind must be a folder name"),
    ("a/b", KEY, ".txt", ValueError, "kind must be a folder name"),
    ("", KEY, ".txt", ValueError, "kind must be a folder name"),
    (3, KEY, ".txt", ValueError, "kind must be a folder name"),
    ("demo", ["not", "a", "dict"], ".txt", TypeError, "key must be a dict"),
    ("demo", KEY, "/../../x", ValueError, "suffix must be a file ending"),
    ("demo", KEY, "txt", ValueError, "suffix must be a file ending"),
])
def test_kind_key_and_suffix_are_checked(fresh_cache, kind, key, suffix, error, phrase):
    with pytest.raises(error, match=phrase):
        cache.cached(kind, key, suffix, _build, lambda p: p.read_text())
    assert not (fresh_cache.parent / "escape").exists()


def test_clear_refuses_a_kind_outside_the_cache(fresh_cache):
    (fresh_cache.parent / "keep.txt").write_text("a file beside the cache")
    with pytest.raises(ValueError, match="kind must be a folder name"):
        cache.clear("..")
    assert (fresh_cache.parent / "keep.txt").exists()


def test_build_and_load_must_be_functions(fresh_cache):
    with pytest.raises(TypeError, match="build and load must be functions"):
        cache.cached("demo", KEY, ".txt", "not a function", lambda p: p.read_text())
