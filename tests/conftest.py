"""Shared test settings: offline, a private cache per test session, the quick preset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Every test run gets its own empty cache, so tests never see a learner's artifacts. The pytest-xdist
    workers of one run share it (the cache locks each artifact), so notebook 04 reuses notebook 03's runs
    as it does on a learner's machine."""
    old = os.environ.get("TLTEACH_CACHE")
    base = tmp_path_factory.getbasetemp()
    root = base.parent / "tlteach-cache" if os.environ.get("PYTEST_XDIST_WORKER") else base / "tlteach-cache"
    root.mkdir(exist_ok=True)
    os.environ["TLTEACH_CACHE"] = str(root)
    yield
    if old is None:
        os.environ.pop("TLTEACH_CACHE", None)
    else:
        os.environ["TLTEACH_CACHE"] = old


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder for one test."""
    monkeypatch.setenv("TLTEACH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def _session_tokenizers() -> Path:
    """The quick preset's BPE tokenizer, trained once per session (and worker) in the session's cache."""
    from tlteach.tokenizer import get_tokenizer

    get_tokenizer("bpe", vocab_size=1024)
    return Path(os.environ["TLTEACH_CACHE"]) / "tokenizers"


@pytest.fixture
def study_cache(_session_tokenizers, fresh_cache):
    """An empty cache but for the quick preset's tokenizer (a copy of the session's): for tests of runs, which
    would otherwise each train the same tokenizer again; tests of the tokenizer's own caching use fresh_cache."""
    shutil.copytree(_session_tokenizers, fresh_cache / "tokenizers",
                    ignore=shutil.ignore_patterns("*.lock", "*.tmp*"))
    return fresh_cache
