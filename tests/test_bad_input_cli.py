"""Bad input to ``python -m tlteach`` (issue 17), probed through the real entry point in a subprocess: every bad
flag, file or environment variable gives one line, ``error: ...``, naming it, and a non-zero exit, never a
traceback; ``pretrain`` checks ``--out`` before training, never overwrites a checkpoint unasked, and marks the
checkpoint of an interrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tlteach import checkpoint, cli

ROOT = Path(__file__).resolve().parents[1]
# the smallest run: 2 steps of a 1-layer model, so that a probe that slips past its check still ends quickly
TINY = ["--max-iters", "2", "--eval-interval", "1", "--eval-iters", "1", "--n-layer", "1", "--n-embd", "16",
        "--n-head", "2", "--block-size", "16", "--batch-size", "2", "--warmup-iters", "1", "--device", "cpu"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so --device cuda is valid")
ROOT_USER = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")


def _lines(n: int, long: bool = True) -> str:
    return "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog" if long else f"l{i}" for i in range(n))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """The files the probes name, as ``{tmp}/...``."""
    (tmp_path / "ok.txt").write_text(_lines(200) + "\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Gr\u00fc\u00dfe aus K\u00f6ln\n".encode("latin-1") * 50)
    (tmp_path / "empty.txt").write_text(" \n\n")
    (tmp_path / "tiny.txt").write_text("to be\n")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"an earlier run's weights")
    (tmp_path / "dir.safetensors").mkdir()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    return tmp_path


def _run(argv: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    base = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for name in ("TLTEACH_DEVICE", "TLTEACH_PRESET", "TLTEACH_SEED"):
        base.pop(name, None)
    return subprocess.run([sys.executable, "-m", "tlteach", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**base, **(env or {})}, timeout=timeout)


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and run.stderr.rstrip().splitlines()[-1] == errors[0], run.stderr
    return errors[0]


def _case(name: str, argv: list[str], env: dict, status: int, phrase: str, *marks):
    """One probe: ``argv`` and ``env`` (``{tmp}``: the test's folder) give exit ``status`` and one error line
    holding ``phrase``."""
    return pytest.param(argv, env, status, phrase, id=name, marks=marks)


def _fill(args: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in args]


TEXT = ["pretrain", "--text", "{tmp}/ok.txt", "--tokenizer", "char", *TINY]  # a valid run, to add one bad flag to
BAD = [  # _case(id, argv, environment, exit status, phrase of the one error line)
    # unknown names
    _case("dataset", ["pretrain", "--dataset", "wikipedia", *TINY], {}, 2, "argument --dataset: invalid choice: 'wikipedia'"),
    _case("ddp corpus", ["ddp", "--corpus", "nope"], {}, 2, "argument --corpus: invalid choice: 'nope'"),
    _case("preset", [*TEXT, "--preset", "huge"], {}, 2, "argument --preset: invalid choice: 'huge'"),
    _case("tokenizer", [*TEXT, "--tokenizer", "words"], {}, 2, "argument --tokenizer: invalid choice: 'words'"),
    _case("command", ["train"], {}, 2, "invalid choice: 'train'"),
    _case("no command", [], {}, 2, "the following arguments are required"),
    _case("flag", [*TEXT, "--epochs", "3"], {}, 2, "unrecognized arguments: --epochs 3"),
    _case("two sources", [*TEXT, "--dataset", "shakespeare"], {}, 2, "not allowed with argument"),
    # devices
    _case("device tpu", [*TEXT, "--device", "tpu"], {}, 2, "argument --device: unknown device 'tpu'"),
    _case("device cuda:x", [*TEXT, "--device", "cuda:x"], {}, 2, "argument --device: unknown device 'cuda:x'"),
    _case("device cuda", [*TEXT, "--device", "cuda"], {}, 1, "--device cuda: this machine has no CUDA GPU", NO_CUDA),
    _case("device cuda:99", [*TEXT, "--device", "cuda:99"], {}, 1, "--device cuda:99: this machine has"),
    _case("ddp device", ["ddp", "--device", "tpu"], {}, 2, "argument --device: invalid choice: 'tpu'"),
    _case("TLTEACH_DEVICE", [*TEXT[:-2]], {"TLTEACH_DEVICE": "tpu"}, 1, "TLTEACH_DEVICE=tpu: unknown device"),
    # the --text file
    _case("missing text", ["pretrain", "--text", "{tmp}/nope.txt", *TINY], {}, 1, "--text {tmp}/nope.txt: no such file"),
    _case("text folder", ["pretrain", "--text", "{tmp}", *TINY], {}, 1, "--text {tmp} is a folder"),
    _case("empty text", ["pretrain", "--text", "{tmp}/empty.txt", *TINY], {}, 1, "--text {tmp}/empty.txt is empty"),
    _case("latin-1 text", ["pretrain", "--text", "{tmp}/latin1.txt", *TINY], {}, 1, "is not UTF-8 text (byte 0xfc"),
    _case("short text char", ["pretrain", "--text", "{tmp}/tiny.txt", "--tokenizer", "char", *TINY], {}, 1,
     "--text {tmp}/tiny.txt (char tokens) has"),
    _case("short text bpe", ["pretrain", "--text", "{tmp}/tiny.txt", "--vocab-size", "257", *TINY], {}, 1,
          "--text {tmp}/tiny.txt (bpe tokens) has"),
    # sizes
    _case("vocab 100", ["pretrain", "--text", "{tmp}/ok.txt", "--vocab-size", "100", *TINY], {}, 1,
     "--vocab-size 100 is out of range"),
    _case("vocab 0", [*TEXT, "--vocab-size", "0"], {}, 2, "argument --vocab-size: 0 is out of range"),
    _case("vocab -5", [*TEXT, "--vocab-size", "-5"], {}, 2, "argument --vocab-size: -5 is out of range"),
    _case("vocab with char", [*TEXT, "--vocab-size", "500"], {}, 1, "--vocab-size 500 sizes the BPE tokenizer"),
    _case("n-head 0", [*TEXT, "--n-head", "0"], {}, 2, "argument --n-head: 0 is out of range"),
    _case("n-layer -2", [*TEXT, "--n-layer", "-2"], {}, 2, "argument --n-layer: -2 is out of range"),
    _case("block-size 0", [*TEXT, "--block-size", "0"], {}, 2, "argument --block-size: 0 is out of range"),
    _case("n-embd 2.5", [*TEXT, "--n-embd", "2.5"], {}, 2, "argument --n-embd: '2.5' is not an integer"),
    _case("n-embd not a multiple", [*TEXT, "--n-head", "3"], {}, 1, "n_embd=16 must be divisible by n_head=3"),
    # training settings
    _case("batch-size 0", [*TEXT, "--batch-size", "0"], {}, 2, "argument --batch-size: 0 is out of range"),
    _case("batch-size two", [*TEXT, "--batch-size", "two"], {}, 2, "argument --batch-size: 'two' is not an integer"),
    _case("max-iters -1", [*TEXT, "--max-iters", "-1"], {}, 2, "argument --max-iters: -1 is out of range"),
    _case("max-iters 0", [*TEXT, "--max-iters", "0"], {}, 2, "argument --max-iters: 0 is out of range"),
    _case("eval-interval 0", [*TEXT, "--eval-interval", "0"], {}, 2, "argument --eval-interval: 0 is out of range"),
    _case("eval-iters 0", [*TEXT, "--eval-iters", "0"], {}, 2, "argument --eval-iters: 0 is out of range"),
    _case("warmup -1", [*TEXT, "--warmup-iters", "-1"], {}, 2, "argument --warmup-iters: -1 is out of range"),
    _case("lr-decay-iters 0", [*TEXT, "--lr-decay-iters", "0"], {}, 2, "argument --lr-decay-iters: 0 is out of range"),
    _case("learning-rate nan", [*TEXT, "--learning-rate", "nan"], {}, 2, "argument --learning-rate: nan is out of range"),
    _case("learning-rate 0", [*TEXT, "--learning-rate", "0"], {}, 2, "argument --learning-rate: 0 is out of range"),
    _case("learning-rate fast", [*TEXT, "--learning-rate", "fast"], {}, 2, "argument --learning-rate: 'fast' is not a"),
    _case("min-lr -1", [*TEXT, "--min-lr", "-1"], {}, 2, "argument --min-lr: -1 is out of range"),
    _case("weight-decay inf", [*TEXT, "--weight-decay", "inf"], {}, 2, "argument --weight-decay: inf is out of range"),
    _case("beta2 1", [*TEXT, "--beta2", "1"], {}, 2, "argument --beta2: 1 is out of range"),
    _case("beta1 -0.1", [*TEXT, "--beta1", "-0.1"], {}, 2, "argument --beta1: -0.1 is out of range"),
    _case("grad-clip -1", [*TEXT, "--grad-clip", "-1"], {}, 2, "argument --grad-clip: -1 is out of range"),
    _case("dropout 1", [*TEXT, "--dropout", "1"], {}, 2, "argument --dropout: 1 is out of range"),
    _case("seed -1", [*TEXT, "--seed", "-1"], {}, 2, "argument --seed: -1 is out of range"),
    _case("seed 20 digits", [*TEXT, "--seed", "9" * 20], {}, 2, f"argument --seed: {'9' * 20} is out of range"),
    _case("ddp steps 0", ["ddp", "--steps", "0"], {}, 2, "argument --steps: 0 is out of range"),
    _case("ddp global-batch 0", ["ddp", "--global-batch", "0"], {}, 2, "argument --global-batch: 0 is out of range"),
    _case("ddp lr -1", ["ddp", "--lr", "-1"], {}, 2, "argument --lr: -1 is out of range"),
    _case("ddp eval-iters -1", ["ddp", "--eval-iters", "-1"], {}, 2, "argument --eval-iters: -1 is out of range"),
    _case("ddp tokens 0", ["ddp", "--tokens", "0"], {}, 2, "argument --tokens: 0 is out of range"),
    # environment variables
    _case("TLTEACH_SEED 20 digits", TEXT, {"TLTEACH_SEED": "9" * 20}, 1, "TLTEACH_SEED"),
    _case("TLTEACH_SEED text", TEXT, {"TLTEACH_SEED": "lucky"}, 1, "TLTEACH_SEED"),
    _case("TLTEACH_PRESET", TEXT, {"TLTEACH_PRESET": "huge"}, 1, "unknown preset 'huge'"),
    _case("TLTEACH_CACHE file", ["pretrain", "--dataset", "shakespeare", *TINY], {"TLTEACH_CACHE": "{tmp}/a-file"}, 1,
     "TLTEACH_CACHE={tmp}/a-file is a file, not a folder"),
    _case("TLTEACH_CACHE under a file", ["pretrain", "--text", "{tmp}/ok.txt", *TINY],
     {"TLTEACH_CACHE": "{tmp}/a-file/cache"}, 1, "TLTEACH_CACHE={tmp}/a-file/cache lies under {tmp}/a-file"),
    _case("TLTEACH_CACHE read-only", ["pretrain", "--dataset", "shakespeare", *TINY], {"TLTEACH_CACHE": "{tmp}/ro"}, 1,
          "TLTEACH_CACHE={tmp}/ro is not writable", ROOT_USER),
    # --out, checked before training
    _case("out exists", [*TEXT, "--out", "{tmp}/ckpt"], {}, 1, "--out {tmp}/ckpt already holds a checkpoint"),
    _case("out is a file", [*TEXT, "--out", "{tmp}/a-file"], {}, 1, "--out {tmp}/a-file is a file, not a folder"),
    _case("out under a file", [*TEXT, "--out", "{tmp}/a-file/ckpt"], {}, 1, "{tmp}/a-file is a file, not a folder"),
    _case("out pickle", [*TEXT, "--out", "{tmp}/model.pt"], {}, 1, "writes safetensors, not .pt pickles"),
    _case("out .safetensors folder", [*TEXT, "--out", "{tmp}/dir.safetensors"], {}, 1, "is a folder, not a .safetensors"),
    _case("out read-only", [*TEXT, "--out", "{tmp}/ro/ckpt"], {}, 1, "--out {tmp}/ro/ckpt: cannot write", ROOT_USER),
    _case("ddp out folder", ["ddp", "--out", "{tmp}"], {}, 1, "--out {tmp} is a folder"),
    _case("ddp out under a file", ["ddp", "--out", "{tmp}/a-file/w.safetensors"], {}, 1, "{tmp}/a-file is a file"),
    # practice
    _case("practice notebooks", ["practice", "--notebooks", "{tmp}/nope", "--out", "{tmp}/practice"], {}, 1,
     "--notebooks {tmp}/nope holds no course notebooks"),
    _case("practice into notebooks", ["practice", "--out", "notebooks", "--check"], {}, 1, "is the --notebooks folder"),
]


@pytest.mark.parametrize("argv, env, status, phrase", BAD)
def test_bad_input_is_one_error_line(files, argv, env, status, phrase):
    env = {"TLTEACH_CACHE": str(files / "cache"), **dict(zip(env, _fill(list(env.values()), files)))}
    run = _run(_fill(argv, files), env)
    line = _one_error_line(run)
    assert run.returncode == status, run.stdout + run.stderr
    assert _fill([phrase], files)[0] in line, line
    assert "step 1:" not in run.stdout  # refused before training


def test_the_names_written_out_in_the_parser_are_the_library_s():
    from tlteach import data, presets

    assert cli.CORPUS_NAMES == tuple(data.CORPORA)
    assert cli.PRESET_NAMES == presets.PRESET_NAMES


def test_names_are_forgiving_about_case_and_underscores():
    args = cli.build_parser().parse_args(["pretrain", "--dataset", "ESCO_Occupations", "--preset", "Quick",
                                          "--device", "CUDA:1"])
    assert (args.dataset, args.preset, args.device) == ("esco-occupations", "quick", "cuda:1")


def test_ctrl_c_before_training_is_one_line_and_130(monkeypatch, capsys):
    from tlteach import pretrain

    def stop(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "main", stop)
    assert cli.main(["pretrain"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["interrupted: python -m tlteach pretrain stopped"]


# ------------------------------------------------------------------ nothing trained is lost
def test_pretrain_writes_marks_and_refuses_to_overwrite_a_checkpoint(files):
    out = files / "new" / "run1"  # a folder that does not exist yet
    first = _run([*_fill(TEXT, files), "--out", str(out)], {"TLTEACH_CACHE": str(files / "cache")})
    assert first.returncode == 0, first.stderr
    extra = checkpoint.read_metadata(out)["extra"]
    assert (extra["interrupted"], extra["steps"], extra["train"]["max_iters"]) == (False, 2, 2)
    weights = (out / "model.safetensors").read_bytes()
    again = _run([*_fill(TEXT, files), "--seed", "1", "--out", str(out)],
                 {"TLTEACH_CACHE": str(files / "cache")})
    assert again.returncode == 1 and "--force" in _one_error_line(again)
    assert "step 0:" not in again.stdout and (out / "model.safetensors").read_bytes() == weights
    forced = _run([*_fill(TEXT, files), "--seed", "1", "--out", str(out), "--force"],
                  {"TLTEACH_CACHE": str(files / "cache")})
    assert forced.returncode == 0, forced.stderr
    assert (out / "model.safetensors").read_bytes() != weights


def test_a_diverging_run_keeps_its_last_good_weights_and_says_so(files):
    out = files / "diverged"
    run = _run([*_fill(TEXT, files), "--learning-rate", "1e9", "--max-iters", "20", "--eval-interval", "10",
                "--out", str(out)], {"TLTEACH_CACHE": str(files / "cache")})
    assert run.returncode == 0 and "became NaN or inf at step" in run.stderr, run.stderr
    extra = checkpoint.read_metadata(out)["extra"]
    assert extra["diverged_at"] is not None and extra["steps"] < extra["diverged_at"] <= 20
    model = checkpoint.load_model(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ctrl_c_saves_a_checkpoint_marked_interrupted(files):
    out = files / "stopped"
    argv = [*_fill(TEXT, files), "--max-iters", "1000000", "--eval-interval", "5",
            "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "TLTEACH_CACHE": str(files / "cache")}
    # Ctrl-C as in a terminal: a pytest-xdist worker ignores SIGINT, and a child inherits that (Python then installs
    # no KeyboardInterrupt handler), so the child starts with the default disposition
    proc = subprocess.Popen([sys.executable, "-m", "tlteach", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if line.startswith("step 5:"):
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    extra = checkpoint.read_metadata(out)["extra"]
    # "step 5:" is printed after 5 steps, so at least 5 were taken (train() counts the steps it took)
    assert extra["interrupted"] is True and 5 <= extra["steps"] < 1_000_000
    assert extra["train"]["max_iters"] == 1_000_000
    assert stderr.strip().splitlines()[-1] == (f"interrupted after {extra['steps']} of 1000000 steps; the checkpoint "
                                               f"at {out} holds them, marked interrupted")
    assert checkpoint.load_model(out).config.n_embd == 16


def test_a_checkpoint_that_cannot_be_written_after_training_is_saved_elsewhere(files, monkeypatch, capsys):
    real_save = checkpoint.save_model

    def fail_once(model, path, *args, **kwargs):
        if Path(path) == files / "gone":
            raise PermissionError(13, "Permission denied", str(path))
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_model", fail_once)
    argv = [*_fill(TEXT, files), "--out", str(files / "gone")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: could not write the checkpoint to {files / 'gone'}")
    rescued = Path(err.rsplit("saved it to ", 1)[1].removesuffix(" instead"))
    assert checkpoint.read_metadata(rescued)["extra"]["steps"] == 2
    shutil.rmtree(rescued)


# ------------------------------------------------------------------ documented usage that must train
@pytest.mark.parametrize("argv", [
    pytest.param(["pretrain", "--dataset", "shakespeare", "--tokenizer", "char"], id="char tokenizer on a corpus"),
    pytest.param(["pretrain", "--text", "{tmp}/one-line.txt", "--vocab-size", "300"], id="bpe on one line"),
    pytest.param(["pretrain", "--text", "{tmp}/two-lines.txt", "--vocab-size", "300"], id="bpe on two lines"),
])
def test_documented_usage_trains(files, argv):
    (files / "one-line.txt").write_text(" ".join(_lines(150).splitlines()) + "\n")
    (files / "two-lines.txt").write_text(" ".join(_lines(80).splitlines()) + "\n" + " ".join(_lines(80).splitlines()))
    run = _run(_fill(argv, files) + TINY, {"TLTEACH_CACHE": str(files / "cache")})
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "step 2: train loss" in run.stdout


# ------------------------------------------------------------------ third round: empty paths, practice's --out, memory
def _fails_at_once() -> bool:
    """Whether an allocation far beyond RAM fails at once here (Linux's default heuristic overcommit, or strict
    accounting); with ``vm.overcommit_memory=1`` it may succeed and the kernel kill the process later instead."""
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() in ("0", "2")
    except OSError:
        return False


HUGE_ALLOCATION = pytest.mark.skipif(not _fails_at_once(), reason="a huge allocation may not fail at once here")
NOTEBOOK = "01-loss-from-scratch.ipynb"  # copied from notebooks/ and practice/ into the probes' folders


@pytest.fixture
def notebook_files(files: Path) -> Path:
    """``files`` and folders of notebooks that ``practice`` must not read as course notebooks or must not replace."""
    import nbformat

    for folder, name, text in [("no-cells", NOTEBOOK, '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}'),
                               ("not-json", NOTEBOOK, "not json"),
                               ("broken-practice", NOTEBOOK, '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}')]:
        (files / folder).mkdir()
        (files / folder / name).write_text(text)
    (files / "mine").mkdir()  # a learner's own notebook, named like a course notebook
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("my_result = 42")]),
                   files / "mine" / "99-my-own-work.ipynb")
    (files / "lab").mkdir()  # a working copy of the full notebooks (make lab)
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, files / "lab" / NOTEBOOK)
    practice = nbformat.read(ROOT / "practice" / NOTEBOOK, as_version=4)
    answered, ran = nbformat.reads(nbformat.writes(practice), 4), nbformat.reads(nbformat.writes(practice), 4)
    next(c for c in answered.cells if "solution" in c.metadata.get("tags", [])).source = "my answer"
    next(c for c in ran.cells if c.cell_type == "code").execution_count = 1
    for folder, nb in [("answered", answered), ("ran", ran)]:
        (files / folder).mkdir()
        nbformat.write(nb, files / folder / NOTEBOOK)
    return files




def _refused(folder: str, name: str = NOTEBOOK) -> str:
    """The start of practice's refusal to replace ``{tmp}/folder/name``."""
    return f"--out {{tmp}}/{folder} holds notebooks that are not practice's to replace: {{tmp}}/{folder}/{name} ("

BAD_TOO = [  # _case(id, argv, environment, exit status, phrase of the one error line)
    # practice replaces or deletes only the notebooks it wrote, unworked, and says which file stops it
    _case("practice deletes own work", ["practice", "--out", "{tmp}/mine"], {}, 1,
          _refused("mine", "99-my-own-work.ipynb") + "not practice's"),
    _case("practice overwrites a full notebook", ["practice", "--out", "{tmp}/lab"], {}, 1,
          _refused("lab") + "not practice's: it does not open with the practice note"),
    _case("practice overwrites an answer", ["practice", "--out", "{tmp}/answered"], {}, 1,
          _refused("answered") + "it holds work: an answer in the solution cell"),
    _case("practice overwrites a run", ["practice", "--out", "{tmp}/ran"], {}, 1,
          _refused("ran") + "it was run: cell"),
    _case("practice out is a file", ["practice", "--out", "{tmp}/a-file"], {}, 1,
          "--out {tmp}/a-file is a file, not a folder"),
    _case("practice out under a file", ["practice", "--out", "{tmp}/a-file/practice"], {}, 1,
          "--out {tmp}/a-file/practice lies under {tmp}/a-file, a file"),
    _case("practice notebook without cells", ["practice", "--notebooks", "{tmp}/no-cells", "--out", "{tmp}/p"], {}, 1,
          f"--notebooks {{tmp}}/no-cells/{NOTEBOOK} is not a valid Jupyter notebook (missing an expected key: cells)"),
    _case("practice notebook not JSON", ["practice", "--notebooks", "{tmp}/not-json", "--out", "{tmp}/p"], {}, 1,
          f"--notebooks {{tmp}}/not-json/{NOTEBOOK} is not a valid Jupyter notebook"),
    _case("practice check a broken practice notebook", ["practice", "--out", "{tmp}/broken-practice", "--check"], {},
          1, f"--out {{tmp}}/broken-practice/{NOTEBOOK} is not a valid Jupyter notebook"),
    # empty paths: an empty --out saved nothing, an empty --text trained on Shakespeare, practice wrote into .
    _case("practice out empty", ["practice", "--out", "", "--check"], {}, 2, "argument --out: '' is an empty path"),
    _case("practice notebooks empty", ["practice", "--notebooks", "", "--check"], {}, 2,
          "argument --notebooks: '' is an empty path"),
    _case("out empty", [*TEXT, "--out", ""], {}, 2, "argument --out: '' is an empty path"),
    _case("out blank", [*TEXT, "--out", "  "], {}, 2, "argument --out: '  ' is an empty path"),
    _case("text empty", ["pretrain", "--text", "", *TINY], {}, 2, "argument --text: '' is an empty path"),
    _case("text blank", ["pretrain", "--text", " ", *TINY], {}, 2, "argument --text: ' ' is an empty path"),
    _case("ddp out empty", ["ddp", "--steps", "2", "--out", ""], {}, 2, "argument --out: '' is an empty path"),
    # sizes beyond the machine's memory: the allocator's error, as one line
    _case("batch-size huge", [*TEXT, "--batch-size", "1000000000000"], {}, 1,
          "pretrain needs more memory than this machine has", HUGE_ALLOCATION),
    _case("eval-iters huge", [*TEXT, "--eval-iters", "1000000000000"], {}, 1,
          "pretrain needs more memory than this machine has", HUGE_ALLOCATION),
    _case("ddp global-batch huge", ["ddp", "--steps", "2", "--global-batch", "1000000000000"], {}, 1,
          "ddp needs more memory than this machine has", HUGE_ALLOCATION),
    # ... and a GPT too big to build (GPTConfig's bound on the parameter count, a ValueError)
    _case("n-embd huge", [*TEXT, "--n-embd", "1000000", "--n-head", "1"], {}, 1, "parameters"),
    _case("n-layer huge", [*TEXT, "--n-layer", "1000000000"], {}, 1, "parameters"),
]


@pytest.mark.parametrize("argv, env, status, phrase", BAD_TOO)
def test_more_bad_input_is_one_error_line(notebook_files, argv, env, status, phrase):
    test_bad_input_is_one_error_line(notebook_files, argv, env, status, phrase)


def test_practice_keeps_what_it_did_not_write_and_replaces_what_it_did(notebook_files):
    kept = {p: p.read_bytes() for p in notebook_files.glob("*/[0-9][0-9]-*.ipynb")}
    for folder in ("mine", "lab", "answered", "ran"):
        run = _run(["practice", "--out", str(notebook_files / folder)])
        assert run.returncode == 1 and "Nothing was written" in _one_error_line(run)
        assert sorted(p.name for p in (notebook_files / folder).iterdir()) == sorted(
            p.name for p in kept if p.parent.name == folder)
    assert {p: p.read_bytes() for p in kept} == kept
    # its own notebooks, as shipped: regenerated in place (the same bytes), and deleted when their source is gone
    out = notebook_files / "practice"
    shutil.copytree(ROOT / "practice", out)
    shutil.copy(ROOT / "practice" / NOTEBOOK, out / "98-renamed.ipynb")
    run = _run(["practice", "--out", str(out)])
    assert run.returncode == 0, run.stderr
    assert not (out / "98-renamed.ipynb").exists()
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in (ROOT / "practice").glob("*.ipynb"))


@pytest.mark.parametrize("error, phrase", [
    pytest.param(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 8 GiB total)"),
                 "needs more memory than this machine has (it tried to allocate 20.00 GiB at once)", id="cuda"),
    pytest.param(RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                              "memory: you tried to allocate 4294967296 bytes. Error code 12"),
                 "needs more memory than this machine has (it tried to allocate 4.0 GiB at once)", id="cpu"),
    pytest.param(RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"), "needs more memory", id="mps"),
    pytest.param(MemoryError(), "needs more memory than this machine has; use smaller sizes: --batch-size",
                 id="MemoryError"),
])
def test_out_of_memory_is_one_error_line(monkeypatch, capsys, error, phrase):
    from tlteach import pretrain

    def run_out_of_memory(args):
        raise error

    monkeypatch.setattr(pretrain, "main", run_out_of_memory)
    assert cli.main(["pretrain"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: python -m tlteach pretrain ") and phrase in err[0], err


def test_any_other_runtime_error_keeps_its_traceback(monkeypatch):
    from tlteach import pretrain

    def bug(args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)")

    monkeypatch.setattr(pretrain, "main", bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        cli.main(["pretrain"])


def test_warnings_are_one_line_without_tlteach_s_source(monkeypatch, capsys):
    import warnings

    from tlteach import pretrain

    def warn(args):
        warnings.warn("the loss became NaN or inf at step 7 (an in-process probe);\n lower the learning rate",
                      RuntimeWarning, stacklevel=1)
        return 0

    shown = warnings.showwarning
    monkeypatch.setattr(pretrain, "main", warn)
    assert cli.main(["pretrain"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: the loss became NaN or inf at step 7 (an in-process probe); lower the learning rate"]
    assert warnings.showwarning is shown  # restored: only the command line's warnings are one line


def test_a_diverging_run_warns_in_one_line(files):
    run = _run([*_fill(TEXT, files), "--learning-rate", "1e9", "--max-iters", "20", "--eval-interval", "10"],
               {"TLTEACH_CACHE": str(files / "cache")})
    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stderr.splitlines() if "became NaN or inf" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: the loss became NaN or inf at step"), run.stderr
    assert ".py:" not in run.stderr and "log_eval" not in run.stderr, run.stderr
