"""Command line: ``python -m tlteach doctor`` (checks the installation), ``pretrain`` and ``practice``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tlteach``."""
    parser = argparse.ArgumentParser(prog="python -m tlteach", description="The tlteach course's helper commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check Python, torch, the device, the packages, the corpora and the cache")
    from .pretrain import add_arguments

    add_arguments(sub.add_parser("pretrain", help="pretrain the GPT on a named corpus or a text file (nanoGPT's flags)"))
    practice = sub.add_parser("practice", help="write practice/ (solutions and implementations emptied), or --check it")
    practice.add_argument("--notebooks", default="notebooks", help="folder of the full notebooks (default: notebooks)")
    practice.add_argument("--out", default="practice", help="folder of the practice notebooks (default: practice)")
    practice.add_argument("--check", action="store_true", help="write nothing; exit 1 if the folder is out of step")
    args = parser.parse_args(argv)
    if args.command == "pretrain":
        from .pretrain import main as pretrain_main

        return pretrain_main(args)
    if args.command == "practice":
        from .practice import main as practice_main

        return practice_main(args.notebooks, args.out, check=args.check)
    if args.command == "doctor":
        from .environment import doctor

        return 1 if doctor() else 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
