"""``python -m tlteach``: the commands of :mod:`tlteach.cli` (doctor, pretrain, practice, ddp)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
