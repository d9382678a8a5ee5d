"""The command line: one parser for every ``python -m tlteach`` subcommand.

- ``doctor`` checks Python, torch, the device, the packages, the corpora and the cache (README, Troubleshooting);
- ``pretrain`` pretrains the GPT on a named corpus or a text file, with nanoGPT's flag names (notebook 02, README);
- ``practice`` writes the ``practice/`` folder (solutions and implementations emptied), or checks that it is in
  step with ``--check``;
- ``ddp`` trains a GPT data-parallel, under ``torchrun`` or in one process (notebook 09).

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

PROG = "python -m tlteach"
# tlteach.data.CORPORA's names, written out so that building the parser does not import datasets
# (tests/test_cli.py checks that the two agree)
CORPUS_NAMES = ("shakespeare", "esco-occupations", "esco-skills", "python-docs")
GPT_FLAGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias")
_GPT_HELP = {
    "n_layer": "transformer blocks",
    "n_head": "attention heads per block",
    "n_embd": "embedding width (a multiple of --n-head)",
    "block_size": "context length in tokens",
    "vocab_size": "vocabulary size (of the model; of the BPE tokenizer too, when one is trained)",
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
        group.add_argument("--" + name.replace("_", "-"), type=int, default=default, help=f"{what} (default: {shown})")
    group.add_argument("--bias", choices=["true", "false"], default=defaults.get("bias", "true"),
                       help="biases in Linear and LayerNorm layers (GPT-2 has them; nanoGPT's default is false; "
                            "default: %(default)s)")


def _add_pretrain(p: argparse.ArgumentParser) -> None:
    """The flags of ``pretrain`` (nanoGPT's names where the idea is the same; ``None``: the preset's)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help=f"a named corpus: {', '.join(CORPUS_NAMES)} (default shakespeare)")
    src.add_argument("--text", default=None, help="a UTF-8 text file: the first 90%% trains, the last 10%% validates")
    p.add_argument("--preset", default=None, help="quick, cpu or gpu: the defaults of every flag left out")
    p.add_argument("--tokenizer", choices=["char", "bpe"], default="bpe")
    add_gpt_flags(p)
    for flag, typ in [("--batch-size", int), ("--max-iters", int), ("--learning-rate", float), ("--min-lr", float),
                      ("--warmup-iters", int), ("--lr-decay-iters", int), ("--eval-interval", int),
                      ("--eval-iters", int), ("--weight-decay", float), ("--beta1", float), ("--beta2", float),
                      ("--grad-clip", float), ("--seed", int)]:
        p.add_argument(flag, type=typ, default=None)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--out", default=None, help="checkpoint folder to write (model.safetensors, config.json, tokenizer.json)")


def _add_ddp(p: argparse.ArgumentParser) -> None:
    """The flags of ``ddp`` (a small model on a seeded toy stream unless told otherwise)."""
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--global-batch", type=int, default=32, help="rows per step over ALL processes together")
    add_gpt_flags(p, {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "vocab_size": 256})
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-iters", type=int, default=None, help="default: steps // 10")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokens", type=int, default=100_000, help="length of the seeded toy token stream")
    p.add_argument("--corpus", default=None, help="train on a named corpus instead (BPE tokens of --vocab-size)")
    p.add_argument("--eval-iters", type=int, default=4, help="validation batches at the start and the end (0: none)")
    p.add_argument("--device", default="cpu", help="cpu (gloo, the default) or cuda (nccl, one GPU per process)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA (off: float32, exact comparison)")
    p.add_argument("--out", default=None, help="a .safetensors file for the final weights (written by rank 0)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m tlteach`` with its four subcommands: ``doctor``, ``pretrain``, ``practice``
    and ``ddp``. The chosen one is ``args.command``. Imports nothing beyond argparse."""
    parser = argparse.ArgumentParser(prog=PROG, description="The tlteach course's helper commands.")
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
    practice.add_argument("--notebooks", default="notebooks", help="folder of the full notebooks (default: notebooks)")
    practice.add_argument("--out", default="practice", help="folder of the practice notebooks (default: practice)")
    practice.add_argument("--check", action="store_true", help="write nothing; exit 1 if the folder is out of step")
    _add_ddp(sub.add_parser(
        "ddp", help="train a GPT data-parallel (run it under torchrun for several processes)",
        description="Train a GPT data-parallel, print tokens/s and the wall time, and save the final weights from "
                    "rank 0 (notebook 09): torchrun --standalone --nproc_per_node N -m tlteach ddp ... for N "
                    "processes, or plain python -m tlteach ddp for one."))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m tlteach`` on ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Only the chosen command's module is imported, here, so that parsing and ``--help`` stay fast.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from .environment import doctor

        return 1 if doctor() else 0
    if args.command == "pretrain":
        from .pretrain import main as pretrain_main

        return pretrain_main(args)
    if args.command == "practice":
        from .practice import main as practice_main

        return practice_main(args.notebooks, args.out, check=args.check)
    if args.command == "ddp":
        from .distributed import main as ddp_main

        return ddp_main(args)
    parser.error(f"unknown command {args.command!r}")
    return 2
