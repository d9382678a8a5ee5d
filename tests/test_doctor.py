"""``python -m tlteach doctor``: one OK/FAIL line per check, non-zero exit on failure."""

from __future__ import annotations

import os
import subprocess
import sys


def _doctor(env_changes: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_changes}
    return subprocess.run([sys.executable, "-m", "tlteach", "doctor"], capture_output=True, text=True, env=env,
                          timeout=300)


def test_doctor_passes_here(tmp_path):
    run = _doctor({"TLTEACH_CACHE": str(tmp_path)})
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith(("OK", "FAIL"))]
    assert run.returncode == 0, run.stdout + run.stderr
    assert lines and all(ln.startswith("OK") for ln in lines)
    names = " ".join(lines)
    for what in ("python", "torch", "device", "corpus shakespeare", "corpus esco-occupations", "cache writable"):
        assert what in names


def test_doctor_fails_on_an_unwritable_cache(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = _doctor({"TLTEACH_CACHE": str(blocker / "cache")})
    assert run.returncode == 1
    assert any(ln.startswith("FAIL") and "cache" in ln for ln in run.stdout.splitlines())


def test_the_environment_cell_says_what_produced_the_outputs(capsys):
    from tlteach import environment

    environment.show_environment()
    out = capsys.readouterr().out
    lines = out.splitlines()
    run = next(line for line in lines if line.startswith("run      :"))
    assert "UTC" in run and ("commit " in run or "no git checkout" in run)
    assert max(len(line) for line in lines) <= 90  # fits the book's column without scrolling sideways
    assert "torch" in out and "ipywidgets" in out
