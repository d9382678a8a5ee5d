"""The command line: one parser for every ``python -m tlteach`` subcommand.

- ``doctor`` checks Python, torch, the device, the packages, the corpora and the cache (README, Troubleshooting);
- ``pretrain`` pretrains the GPT on a named corpus or a text file, with nanoGPT's flag names (notebook 02, README);
- ``practice`` writes the ``practice/`` folder (solutions and implementations emptied), or checks that it is in
  step with ``--check``;
- ``ddp`` trains a GPT data-parallel, under ``torchrun`` or in one process (notebook 09).

Every flag is checked as it is parsed (a type function or a list of choices): a bad value stops the command at
once with one line, ``error: argument --batch-size: ...``, and exit status 2. What only the command can check (a
file, the device, sizes that go together) raises ``ValueError``, ``TypeError`` or ``OSError``, which :func:`main`
prints as one ``error: ...`` line with exit status 1; so are sizes too big for the machine's memory (an allocator
error, caught by :func:`main`). Ctrl-C exits with 130 (``pretrain`` saves first). A path flag may not be empty
(an empty ``--out`` would save nothing, an empty ``--text`` would train on the default corpus). Warnings are
printed as one line, ``warning: ...``.

The GPT-size flags (``--n-layer --n-head --n-embd --block-size --vocab-size --bias``) are defined once, in
:func:`add_gpt_flags`, and shared by ``pretrain``, ``ddp`` and ``benchmarks/train_speed.py``. Building the
parser imports nothing heavy: :func:`main` imports a command's module (and with it transformers, datasets
and the rest) only when that command runs, so ``python -m tlteach --help`` loads none of them. Data-parallel
training on two CPU processes::

    torchrun --standalone --nproc_per_node 2 -m tlteach ddp --steps 50 --out ddp.safetensors
    python -m tlteach ddp --steps 50 --out one.safetensors     # the same update, in one process
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

PROG = "python -m tlteach"
# tlteach.data.CORPORA's and tlteach.presets.PRESET_NAMES's names, written out so that building the parser does
# not import datasets (tests/test_cli.py and tests/test_bad_input_cli.py check that they agree)
CORPUS_NAMES = ("shakespeare", "esco-occupations", "esco-skills", "python-docs")
PRESET_NAMES = ("quick", "cpu", "gpu")
DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")  # the devices the course runs on
MAX_SEED = 2**64 - 1  # torch.manual_seed's largest
# what torch's allocators (CPU, CUDA, MPS) and Python say when a size does not fit in memory
OUT_OF_MEMORY = re.compile(r"out of memory|not enough memory|(can't|cannot|unable to|failed to|tried to) allocate"
                           r"|invalid buffer size", re.IGNORECASE)
# the flags that size what a command allocates, named when it runs out of memory
SIZE_FLAGS = {"pretrain": "--batch-size, --eval-iters, --block-size, --n-embd, --n-layer or --vocab-size",
              "ddp": "--global-batch, --eval-iters, --tokens, --block-size, --n-embd, --n-layer or --vocab-size"}


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``error: ...``, with exit status 2 (as argparse's)."""

    def error(self, message: str):  # type: ignore[override]
        """Print ``error: message`` and the way to ``--help`` on one line, and exit with status 2."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def writable_folder(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and write (then remove) a temporary file in it; raise an ``OSError`` that
    names ``what`` (a flag and its value) if that fails, so that a command fails before it trains, not after."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise NotADirectoryError(f"{what}: {blocker} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise type(err)(f"{what}: cannot write to {folder} ({err.strerror or err}); choose a folder you can "
                        "write to") from None


def nonblank_path(what: str) -> Callable[[str], str]:
    """A flag's type: a path, kept as given, that is not empty or blank; ``what`` says what to give instead,
    e.g. ``--out`` is ``nonblank_path("a folder name, or leave --out out to save nothing")``."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{text!r} is an empty path: give {what}")
        return text

    parse.__name__ = "nonblank_path"
    return parse


def integer(least: int, most: int | None = None) -> Callable[[str], int]:
    """A flag's type: an integer from ``least`` (to ``most``), e.g. ``--batch-size`` is ``integer(1)``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < least or (most is not None and value > most):
            span = f"of at least {least}" if most is None else f"from {least} to {most}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: give an integer {span}")
        return value

    parse.__name__ = "integer"
    return parse


def number(least: float, most: float = math.inf, *, open_low: bool = False, open_high: bool = False
           ) -> Callable[[str], float]:
    """A flag's type: a finite number in ``[least, most]`` (``open_low``/``open_high``: the end excluded)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        low_ok = value > least if open_low else value >= least
        high_ok = value < most if open_high else value <= most
        if not (math.isfinite(value) and low_ok and high_ok):
            span = (f"{'above' if open_low else 'of at least'} {least:g}" if most == math.inf else
                    f"in {'(' if open_low else '['}{least:g}, {most:g}{')' if open_high else ']'}")
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number {span}")
        return value

    parse.__name__ = "number"
    return parse


def choice(text: str) -> str:
    """A flag's type for a name among choices: spaces, case and ``_`` for ``-`` do not matter."""
    return text.strip().lower().replace("_", "-")


def device(text: str) -> str:
    """A flag's type: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether this machine has it is checked later)."""
    value = text.strip().lower()
    if not DEVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: choose cpu, cuda, cuda:N or mps")
    return value


POSITIVE = integer(1)  # one function, so that every parser's GPT-size flags have the very same type
GPT_FLAGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias")
_GPT_HELP = {
    "n_layer": "transformer blocks",
    "n_head": "attention heads per block",
    "n_embd": "embedding width (a multiple of --n-head)",
    "block_size": "context length in tokens",
    "vocab_size": "vocabulary size (of the model; of the BPE tokenizer too, when one is trained; not with "
                  "--tokenizer char, whose vocabulary is the text's characters)",
}


def add_gpt_flags(parser: argparse.ArgumentParser, defaults: dict | None = None) -> None:
    """Add the GPT-size flags ``--n-layer --n-head --n-embd --block-size --vocab-size --bias`` to ``parser``.

    ``defaults`` maps a flag's name (``n_layer``, ``n_head``, ``n_embd``, ``block_size``, ``vocab_size``,
    ``bias``) to its default; a name left out defaults to ``None``, meaning "the preset's" (``pretrain``,
    ``benchmarks/train_speed.py``), except ``bias``, which defaults to ``"true"`` (GPT-2 has biases).
    ``ddp`` passes fixed numbers: its toy model needs no preset.
    """
    defaults = dict(defaults or {})
    unknown = set(defaults) - set(GPT_FLAGS)
    if unknown:
        raise ValueError(f"unknown GPT-size flags {sorted(unknown)}; the flags are {', '.join(GPT_FLAGS)}")
    group = parser.add_argument_group("GPT size")
    for name, what in _GPT_HELP.items():
        default = defaults.get(name)
        shown = "the preset's" if default is None else default
        group.add_argument("--" + name.replace("_", "-"), type=POSITIVE, default=default,
                           help=f"{what} (default: {shown})")
    group.add_argument("--bias", choices=["true", "false"], default=defaults.get("bias", "true"),
                       help="biases in Linear and LayerNorm layers (GPT-2 has them; nanoGPT's default is false; "
                            "default: %(default)s)")


def _add_pretrain(p: argparse.ArgumentParser) -> None:
    """The flags of ``pretrain`` (nanoGPT's names where the idea is the same; ``None``: the preset's)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", type=choice, choices=CORPUS_NAMES, default=None,
                     help=f"a named corpus: {', '.join(CORPUS_NAMES)} (default shakespeare)")
    src.add_argument("--text", type=nonblank_path("a UTF-8 text file, or use --dataset"), default=None,
                     help="a UTF-8 text file: the first 90%% trains, the last 10%% validates")
    p.add_argument("--preset", type=choice, choices=PRESET_NAMES, default=None,
                   help="quick, cpu or gpu: the defaults of every flag left out")
    p.add_argument("--tokenizer", choices=["char", "bpe"], default="bpe",
                   help="bpe (the default; --vocab-size sets its size) or char (the text's characters)")
    add_gpt_flags(p)
    count, positive, fraction = POSITIVE, number(0, open_low=True), number(0, 1, open_high=True)
    for flag, typ in [("--batch-size", count), ("--max-iters", count), ("--learning-rate", positive),
                      ("--min-lr", number(0)), ("--warmup-iters", integer(0)), ("--lr-decay-iters", count),
                      ("--eval-interval", count), ("--eval-iters", count), ("--weight-decay", number(0)),
                      ("--beta1", fraction), ("--beta2", fraction), ("--grad-clip", number(0)),
                      ("--seed", integer(0, MAX_SEED))]:
        p.add_argument(flag, type=typ, default=None)
    p.add_argument("--dropout", type=fraction, default=0.0)
    p.add_argument("--device", type=device, default=None,
                   help="cpu, cuda, cuda:1, mps (default: TLTEACH_DEVICE, else the best available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--out", type=nonblank_path("a folder or a .safetensors file, or leave --out out to save nothing"),
                   default=None,
                   help="checkpoint folder to write (model.safetensors, config.json, tokenizer.json), or a "
                        ".safetensors file; checked before training, and never overwritten without --force")
    # absent from the namespace unless given, so that the parsed flags stay the ones scripts already know
    p.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                   help="overwrite the checkpoint already at --out (without it, pretrain refuses before training)")


def _add_ddp(p: argparse.ArgumentParser) -> None:
    """The flags of ``ddp`` (a small model on a seeded toy stream unless told otherwise)."""
    p.add_argument("--steps", type=POSITIVE, default=50)
    p.add_argument("--global-batch", type=POSITIVE, default=32, help="rows per step over ALL processes together")
    add_gpt_flags(p, {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "vocab_size": 256})
    p.add_argument("--lr", type=number(0, open_low=True), default=1e-3)
    p.add_argument("--warmup-iters", type=integer(0), default=None, help="default: steps // 10")
    p.add_argument("--grad-clip", type=number(0), default=1.0)
    p.add_argument("--seed", type=integer(0, MAX_SEED), default=0)
    p.add_argument("--tokens", type=integer(2), default=100_000, help="length of the seeded toy token stream")
    p.add_argument("--corpus", type=choice, choices=CORPUS_NAMES, default=None,
                   help="train on a named corpus instead (BPE tokens of --vocab-size)")
    p.add_argument("--eval-iters", type=integer(0), default=4,
                   help="validation batches at the start and the end (0: none)")
    p.add_argument("--device", type=choice, choices=["cpu", "cuda"], default="cpu",
                   help="cpu (gloo, the default) or cuda (nccl, one GPU per process)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (off: float32, exact comparison)")
    p.add_argument("--out", type=nonblank_path("a .safetensors file, or leave --out out to save nothing"),
                   default=None, help="a .safetensors file for the final weights (written by rank 0)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m tlteach`` with its four subcommands: ``doctor``, ``pretrain``, ``practice``
    and ``ddp``. The chosen one is ``args.command``. Imports nothing beyond argparse."""
    parser = Parser(prog=PROG, description="The tlteach course's helper commands.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{doctor,pretrain,practice,ddp}")
    sub.add_parser("doctor", help="check Python, torch, the device, the packages, the corpora and the cache",
                   description="Check Python, torch, the device, the packages, the corpora and the cache; "
                               "exit 1 if something is missing (README, Troubleshooting).")
    _add_pretrain(sub.add_parser(
        "pretrain", help="pretrain the GPT on a named corpus or a text file (nanoGPT's flags)",
        description="Pretrain the course's GPT on a named corpus or a text file, with nanoGPT's flag names; print "
                    "each evaluation, tokens/s and the wall time (notebook 02, README). Flags left out take the "
                    "preset's value."))
    practice = sub.add_parser("practice", help="write practice/ (solutions and implementations emptied), or --check it",
                              description="Write the practice notebooks (solutions and implementations emptied, "
                                          "outputs cleared) from the full ones, or --check that they are in step.")
    practice.add_argument("--notebooks", type=nonblank_path("a folder, or leave --notebooks out"),
                          default="notebooks", help="folder of the full notebooks (default: notebooks)")
    practice.add_argument("--out", type=nonblank_path("a folder, or leave --out out"), default="practice",
                          help="folder of the practice notebooks (default: practice); only practice notebooks "
                               "nobody has worked in are replaced")
    practice.add_argument("--check", action="store_true", help="write nothing; exit 1 if the folder is out of step")
    _add_ddp(sub.add_parser(
        "ddp", help="train a GPT data-parallel (run it under torchrun for several processes)",
        description="Train a GPT data-parallel, print tokens/s and the wall time, and save the final weights from "
                    "rank 0 (notebook 09): torchrun --standalone --nproc_per_node N -m tlteach ddp ... for N "
                    "processes, or plain python -m tlteach ddp for one."))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m tlteach`` on ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Only the chosen command's module is imported, here, so that parsing and ``--help`` stay fast. A bad flag
    exits with status 2; a ``ValueError``, ``TypeError`` or ``OSError`` from the command is printed as one line,
    ``error: ...``, with status 1, and so is running out of memory (``MemoryError``, torch's
    ``OutOfMemoryError`` or an allocator's ``RuntimeError``; any other ``RuntimeError`` is a bug and keeps its
    traceback); Ctrl-C returns 130: no traceback for bad input. Warnings are printed as ``warning: ...``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores the previous showwarning on the way out
            warnings.showwarning = _show_warning
            return _run(parser, args)
    except KeyboardInterrupt:
        print(f"interrupted: {PROG} {args.command} stopped", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise
        print(f"error: {_memory_message(args.command, err)}", file=sys.stderr)
        return 1


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says that memory ran out: ``MemoryError``, torch's ``OutOfMemoryError`` (CUDA), or a
    ``RuntimeError`` from torch's CPU or MPS allocator (``DefaultCPUAllocator: can't allocate memory``)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and OUT_OF_MEMORY.search(str(err)) is not None


def _memory_message(command: str, err: BaseException) -> str:
    """The one line for running out of memory: how much was asked for (when the error says) and what to shrink."""
    text = str(err)
    asked = ""
    if found := re.search(r"allocate (\d+) bytes", text):
        asked = f" (it tried to allocate {int(found.group(1)) / 2**30:,.1f} GiB at once)"
    elif found := re.search(r"allocate ([\d.]+ ?[KMGTP]i?B)", text, re.IGNORECASE):
        asked = f" (it tried to allocate {found.group(1)} at once)"
    flags = SIZE_FLAGS.get(command)
    fix = f"use smaller sizes: {flags}" if flags else "use smaller inputs"
    return f"{PROG} {command} needs more memory than this machine has{asked}; {fix}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command line: ``warning: message`` on one line, without the file and the
    source line of where it was raised (which are tlteach's, not the user's)."""
    text = " ".join(str(message).split()) or category.__name__
    try:
        print(f"warning: {text}", file=sys.stderr if file is None else file)
    except OSError:  # stderr closed: nowhere to say it
        pass


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "doctor":
        from .environment import doctor

        return 1 if doctor() else 0
    if args.command == "pretrain":
        from .pretrain import main as pretrain_main

        return pretrain_main(args)
    if args.command == "practice":
        from .practice import NOTEBOOK_GLOB
        from .practice import main as practice_main

        notebooks, out = Path(args.notebooks).expanduser(), Path(args.out).expanduser()
        if not notebooks.is_dir() or not any(notebooks.glob(NOTEBOOK_GLOB)):  # else practice/ would be emptied
            raise FileNotFoundError(f"--notebooks {notebooks} holds no course notebooks ({NOTEBOOK_GLOB}): run this "
                                    "in the repository's root folder, or pass --notebooks FOLDER")
        if out.resolve() == notebooks.resolve():
            raise ValueError(f"--out {out} is the --notebooks folder: the practice copies would overwrite the full "
                             "notebooks; give another --out (default: practice)")
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            where = "is a file" if blocker == out else f"lies under {blocker}, a file"
            raise NotADirectoryError(f"--out {out} {where}, not a folder: give a folder for the practice notebooks "
                                     "(default: practice)")
        return practice_main(str(notebooks), str(out), check=args.check)  # ~ expanded
    if args.command == "ddp":
        from .distributed import main as ddp_main

        if args.out:  # a file, overwritten when the cell is run again; its folder must be writable before training
            out = Path(args.out).expanduser()
            if out.is_dir():
                raise IsADirectoryError(f"--out {out} is a folder: give a file name, e.g. {out / 'ddp.safetensors'}")
            writable_folder(out.parent, f"--out {out}")
        return ddp_main(args)
    parser.error(f"unknown command {args.command!r}")
    return 2
