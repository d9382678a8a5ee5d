"""The artifact cache: keyed, atomic, safe under concurrency, and self-healing."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from tlteach import cache


def _build_slowly(path: Path, log: str, content: str) -> None:
    with open(log, "a") as f:
        f.write("built\n")
    time.sleep(0.5)
    path.write_text(content)


def _worker(root: str, log: str, out: str) -> None:
    os.environ["TLTEACH_CACHE"] = root
    value = cache.cached("demo", {"k": 1}, ".txt", lambda p: _build_slowly(p, log, "payload" * 1000),
                         lambda p: p.read_text())
    Path(out).write_text(value)


def test_builds_once_then_loads(fresh_cache):
    calls = []

    def build(p):
        calls.append(p)
        p.write_text("hello")

    assert cache.cached("demo", {"a": 1}, ".txt", build, lambda p: p.read_text()) == "hello"
    assert cache.cached("demo", {"a": 1}, ".txt", build, lambda p: p.read_text()) == "hello"
    assert len(calls) == 1
    assert cache.cached("demo", {"a": 2}, ".txt", build, lambda p: p.read_text()) == "hello"
    assert len(calls) == 2  # another key, another artifact
    assert not list(fresh_cache.rglob("*.tmp*"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-meta", "garbage-meta"])
def test_corrupt_artifact_is_rebuilt_with_a_warning(fresh_cache, damage):
    def build(p):
        p.write_text("0123456789" * 100)

    cache.cached("demo", {"d": 1}, ".txt", build, lambda p: p.read_text())
    path = cache.artifact_path("demo", {"d": 1}, ".txt")
    meta = path.with_name(path.name + ".meta.json")
    if damage == "truncate":
        path.write_text("0123")
    elif damage == "flip":
        path.write_text("0123456789" * 99 + "0123456788")
    elif damage == "no-meta":
        meta.unlink()
    else:
        meta.write_text("{not json")
    with pytest.warns(cache.CacheWarning):
        value = cache.cached("demo", {"d": 1}, ".txt", build, lambda p: p.read_text())
    assert value == "0123456789" * 100


def test_loader_failure_is_rebuilt(fresh_cache):
    # an artifact whose bytes are intact but that no longer loads (say, written by an older version)
    cache.cached("demo", {"x": 1}, ".txt", lambda p: p.write_text("bad"), lambda p: p.read_text())

    def load(p):
        text = p.read_text()
        if text == "bad":
            raise ValueError("unparseable")
        return text

    with pytest.warns(cache.CacheWarning, match="unparseable"):
        assert cache.cached("demo", {"x": 1}, ".txt", lambda p: p.write_text("good"), load) == "good"


def test_failed_build_leaves_nothing(fresh_cache):
    def build(p):
        p.write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.cached("demo", {"f": 1}, ".txt", build, lambda p: p.read_text())
    assert not cache.artifact_path("demo", {"f": 1}, ".txt").exists()
    assert not [p for p in fresh_cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_two_processes_build_once(tmp_path):
    root, log = str(tmp_path / "c"), str(tmp_path / "log")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(root, log, str(tmp_path / f"out{i}"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert Path(log).read_text().count("built") == 1
    for i in range(2):
        assert (tmp_path / f"out{i}").read_text() == "payload" * 1000


def test_cache_dir_follows_env(fresh_cache):
    assert cache.cache_dir() == fresh_cache
    assert fresh_cache.is_dir()
