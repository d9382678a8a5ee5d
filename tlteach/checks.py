"""What a valid setting is: the one check of whole numbers, real numbers and switches that every config,
constructor and the command line use, so each refuses a bad value with the same clear message (notebook 01's
first cells print the preset these settings come from; every later notebook passes them on)."""

from __future__ import annotations

import math
import numbers
from pathlib import Path


def whole(value: object, name: str, least: int = 0, hint: str = "") -> int:
    """``value`` as an ``int`` (a NumPy integer too), or a clear error naming ``name``: not a whole number
    (a bool, a float or a str is not one), or below ``least``. ``hint`` ends the message, e.g. what to pick."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}){hint}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value}{hint}")
    return int(value)


def real(value: object, name: str, rule: str, low: float = 0.0, high: float = math.inf, *,
         low_open: bool = False, hint: str = "") -> float:
    """``value`` as a ``float``, or a clear error naming ``name``: not a number, or outside ``[low, high)``
    (``(low, high)`` with ``low_open``); NaN is always refused and so is ``high`` itself, so the default
    ``high`` refuses infinity. ``rule`` says in words what is allowed, e.g. ``"a finite number >= 0"``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number ({rule}), got {value!r} ({type(value).__name__})")
    try:
        as_float, shown = float(value), value
    except OverflowError:  # an int beyond any float, e.g. 10**400
        as_float, shown = math.inf if value > 0 else -math.inf, f"an integer of {len(str(abs(value)))} digits"
    if not (low < as_float < high if low_open else low <= as_float < high):  # False for NaN
        raise ValueError(f"{name} must be {rule}, got {shown}{hint}")
    return as_float


def flag(value: object, name: str) -> bool:
    """``value`` if it is ``True`` or ``False``; otherwise a clear error (``"no"`` and ``1`` are not switches)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value



def id_tensor(ids: object, name: str, hint: str) -> None:
    """A clear error unless ``ids`` is a tensor of integer token ids (``torch.long`` or ``torch.int``); ``hint``
    says how to get one where ``name`` is used. The model (:meth:`gpt.GPT.forward`) and the loop
    (:func:`train.check_ids`) share it."""
    import torch

    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor of token ids, got {type(ids).__name__}; {hint}")
    if ids.dtype not in (torch.long, torch.int):
        raise TypeError(f"{name} must hold integer token ids (torch.long), got dtype {ids.dtype}; token ids are "
                        "whole numbers in [0, vocab_size): use .long() on integer ids")


def outside_vocab(name: str, vocab_size: int | None, low: int, high: int, examples: list[int] | None = None) -> ValueError:
    """The error for token ids outside ``[0, vocab_size)`` (the lowest and highest given, and a few examples)."""
    span = f"[0, vocab_size={vocab_size})" if vocab_size is not None else "[0, vocab_size)"
    shown = f": {examples}" if examples else ""
    return ValueError(f"{name} holds token ids outside {span}{shown} (min {low}, max {high}); encode the text with "
                      "the model's tokenizer, whose ids match the model's vocab_size")


def unicode_text(text: str, what: str) -> str:
    """``text`` if it is valid Unicode, that is, encodable as UTF-8; a lone surrogate (``"\\ud800"``, what a file
    read with ``errors="surrogateescape"`` holds for a bad byte) gets a clear error naming ``what`` and where."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} holds {text[e.start]!r} at character {e.start:,}, a lone surrogate, which is not "
                         "valid Unicode text (a file read with errors='surrogateescape'?); read the file as UTF-8 or "
                         "remove such characters") from None
    return text


def expand_home(path: str, what: str) -> Path:
    """``path`` as a ``Path`` with a leading ``~`` expanded, or a ``FileNotFoundError`` naming ``what`` when
    ``~someone`` is no user here (``pathlib`` would raise a bare ``RuntimeError``)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise FileNotFoundError(f"{what}: cannot expand {str(path).split('/')[0]!r}, no such user's home folder "
                                "here; give the full path") from None
