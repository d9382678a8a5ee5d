"""Pretraining the tiny GPT on the source corpus, cached so any notebook can be opened first (notebook 02).

:func:`pretrained_model` loads the preset's pretrained model from the cache, or trains it (deterministically,
for the seed) and stores it: a :func:`tlteach.study.cached_run`, like every run of the later studies.
:func:`main` is ``python -m tlteach pretrain``, with flags named as in nanoGPT, for pretraining on a named
corpus or on any text file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import data
from .cli import MAX_SEED
from .gpt import GPT, GPTConfig
from .presets import Preset, get_preset
from .tokenizer import MAX_VOCAB, MIN_BPE_VOCAB, CharTokenizer, get_tokenizer
from .train import TrainConfig, train

# ``study`` (the cache and the model zoo) and ``checkpoint`` (safetensors) are imported where they are used, and
# ``data``/``tokenizer`` import ``datasets``/``transformers`` only for a named corpus or a BPE: ``python -m tlteach
# pretrain --text FILE --tokenizer char`` starts with torch alone (tests/test_cli.py)


def pretrained_model(preset: Preset | None = None, corpus: str = data.SOURCE, progress: bool = True,
                     on_eval=None):
    """The preset's GPT pretrained on ``corpus``, with its tokenizer and training history (notebook 02).

    Loaded from the cache when there; otherwise trained now (the same seed gives the same model on the
    CPU) and stored. Returns ``(model, tokenizer, history)``; the model is on the preset's device.
    ``on_eval(row)`` is called after each evaluation while training (e.g. ``live.LiveLoss``).
    """
    from . import study

    preset = preset or get_preset()
    run = study.pretraining(corpus, preset, progress=progress, on_eval=on_eval)
    return run.model(), study.tokenizer(preset), run.history()


# ----------------------------------------------------------------------------- python -m tlteach pretrain
def check_device(device: str, source: str) -> str:
    """Raise a ``ValueError`` naming ``source`` (``--device cuda``, ``TLTEACH_DEVICE=mps``) unless this machine
    has ``device``; return it."""
    from .presets import check_device as usable

    fix = ("unset TLTEACH_DEVICE or set it to cpu" if source.startswith("TLTEACH_DEVICE") else
           "use --device cpu or leave --device out")
    return usable(device, source, fix)


def check_out(out: str, force: bool = False) -> Path:
    """Check, before training, that ``--out`` can take the checkpoint: a writable folder (or ``.safetensors``
    file) that holds no checkpoint yet, unless ``force``. Creates the folder; returns the path."""
    from .checkpoint import WEIGHTS
    from .cli import writable_folder

    path = Path(out).expanduser()
    if path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle"):
        raise ValueError(f"--out {path}: pretrain writes safetensors, not {path.suffix} pickles; give a folder "
                         f"or a file named {path.with_suffix('.safetensors').name}")
    if path.suffix == ".safetensors":
        if path.is_dir():
            raise IsADirectoryError(f"--out {path} is a folder, not a .safetensors file; give a file or a folder name")
        folder, files = path.parent, [path]
    else:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"--out {path} is a file, not a folder; give a folder (or a .safetensors file)")
        folder, files = path, [path / WEIGHTS, path / "config.json", path / "tokenizer.json"]
    there = [f.name for f in files if f.exists()]
    if there and not force:
        raise FileExistsError(f"--out {path} already holds a checkpoint ({', '.join(there)}); pass --force to "
                              "overwrite it, or choose another --out")
    writable_folder(folder, f"--out {path}")
    return path


def read_text_file(arg: str) -> tuple[Path, str]:
    """The ``--text`` file and its text: UTF-8 and not empty, or a clear error naming the flag."""
    path = Path(arg).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"--text {path} is a folder; give one UTF-8 text file")
    if not path.is_file():
        raise FileNotFoundError(f"--text {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"--text {path} is not UTF-8 text (byte {err.object[err.start]:#04x} at position "
                         f"{err.start}); convert it first, e.g. iconv -f latin1 -t utf-8") from None
    except OSError as err:
        raise type(err)(f"--text {path}: cannot read it ({err.strerror or err})") from None
    if not text.strip():
        raise ValueError(f"--text {path} is empty; give a text to train on")
    return path, text


def main(args: argparse.Namespace) -> int:
    """Run ``python -m tlteach pretrain`` on the ``args`` that :func:`tlteach.cli.build_parser` parsed (its flags
    are defined there); print nanoGPT-style progress, tokens/s and the wall time.

    Everything that can be checked is checked before any data is read or any step trained (the device, the
    sizes, the seed, ``--out``); bad input raises ``ValueError``/``OSError`` (``tlteach.cli.main`` prints it as
    one line). Ctrl-C saves what was trained to ``--out``, marked ``interrupted``, and returns 130.
    """
    wall = time.perf_counter()
    preset = get_preset(args.preset, device=args.device)
    env_device = os.environ.get("TLTEACH_DEVICE")
    check_device(preset.device, f"--device {args.device}" if args.device else
                 f"TLTEACH_DEVICE={env_device}" if env_device else f"device {preset.device}")
    pick = lambda value, default: default if value is None else value  # noqa: E731
    if args.seed is None and not 0 <= preset.seed <= MAX_SEED:
        raise ValueError(f"TLTEACH_SEED={preset.seed} is out of range: set an integer from 0 to {MAX_SEED}")
    char = args.tokenizer == "char"
    if char and args.vocab_size is not None:
        raise ValueError(f"--vocab-size {args.vocab_size} sizes the BPE tokenizer; with --tokenizer char the "
                         "vocabulary is the text's characters: leave --vocab-size out, or use --tokenizer bpe")
    vocab_size = None if char else pick(args.vocab_size, preset.vocab_size)
    if vocab_size is not None and not MIN_BPE_VOCAB <= vocab_size <= MAX_VOCAB:
        raise ValueError(f"--vocab-size {vocab_size} is out of range for a byte-level BPE (256 byte tokens and "
                         f"<|endoftext|> at least): give an integer from {MIN_BPE_VOCAB} to {MAX_VOCAB}")
    sizes = dict(block_size=pick(args.block_size, preset.block_size), n_layer=pick(args.n_layer, preset.n_layer),
                 n_head=pick(args.n_head, preset.n_head), n_embd=pick(args.n_embd, preset.n_embd),
                 dropout=args.dropout, bias=args.bias == "true")
    GPTConfig(vocab_size=vocab_size or 256, **sizes)  # checks the sizes now; the char vocabulary comes with the text
    lr = pick(args.learning_rate, preset.pretrain_lr)
    tcfg = TrainConfig(max_iters=pick(args.max_iters, preset.pretrain_iters),
                       batch_size=pick(args.batch_size, preset.batch_size), block_size=sizes["block_size"],
                       learning_rate=lr, min_lr=pick(args.min_lr, lr / 10), warmup_iters=pick(args.warmup_iters, 100),
                       lr_decay_iters=args.lr_decay_iters, weight_decay=pick(args.weight_decay, 0.1),
                       beta1=pick(args.beta1, 0.9), beta2=pick(args.beta2, 0.99), grad_clip=pick(args.grad_clip, 1.0),
                       eval_interval=pick(args.eval_interval, preset.eval_interval),
                       eval_iters=pick(args.eval_iters, preset.eval_iters), compile=args.compile,
                       seed=pick(args.seed, preset.seed), progress=sys.stderr.isatty(), log=True)
    out = check_out(args.out, force=getattr(args, "force", False)) if args.out else None
    if not (args.text and char):  # the tokenizer comes from the cache: a bad TLTEACH_CACHE fails now
        from .cache import cache_dir

        cache_dir()
    if args.text:
        path, text = read_text_file(args.text)
        n = int(0.9 * len(text))  # nanoGPT: the first 90% trains, the last 10% validates
        if char:
            tok = CharTokenizer.train(text)
        else:
            # the tokenizer learns from load_text's train split; the blocks are checked below, against --block-size
            corpus = data.load_text(text=text[:n], name=path.name, min_chars=1)
            tok = get_tokenizer("bpe", vocab_size=vocab_size, corpus=corpus)
        train_ids, val_ids = (torch.tensor(tok.encode(t), dtype=torch.long) for t in (text[:n], text[n:]))
        source, parts = str(path), (f"the first 90% of --text {path}", f"the last 10% of --text {path}")
    else:
        name = args.dataset or data.SOURCE
        tok = get_tokenizer("char", corpus=name) if char else get_tokenizer("bpe", vocab_size=vocab_size, corpus=name)
        splits = data.token_splits(name, tok, ("train", "validation"))
        train_ids, val_ids = splits["train"], splits["validation"]
        source, parts = name, (f"the train split of {name}", f"the validation split of {name}")
    for ids, what in zip((train_ids, val_ids), parts):
        data.check_blocks(ids, tcfg.block_size, what=f"{what} ({tok.kind} tokens)")
    config = GPTConfig(vocab_size=tok.vocab_size, **sizes)
    torch.manual_seed(tcfg.seed)
    model = GPT(config).to(preset.device)
    print(f"pretraining on {source}: {len(train_ids):,} training tokens, {len(val_ids):,} validation tokens, "
          f"{tok.kind} tokenizer ({tok.vocab_size} tokens); {model.num_params():,} parameters on {preset.device}")
    result = train(model, train_ids, tcfg, eval_sets={"train": train_ids, "val": val_ids})
    print(f"tokens/s: {result.tokens_per_s:,.0f} ({1000 * result.train_seconds / max(result.steps, 1):.1f} ms/iter "
          f"over {result.steps} iterations)")
    if out is not None:
        from . import checkpoint

        extra = {"train": tcfg.to_dict(), "source": source, "steps": result.steps, "interrupted": result.interrupted,
                 "diverged_at": result.diverged_at, "history": result.history.to_dict(orient="list")}
        try:
            where = checkpoint.save_model(result.model, out, tok, extra=extra)
        except OSError as err:  # the folder went away or the disk filled up while training: keep the model
            where = checkpoint.save_model(result.model, tempfile.mkdtemp(prefix="tlteach-pretrain-"), tok, extra=extra)
            print(f"error: could not write the checkpoint to {out} ({err}); saved it to {where.parent} instead",
                  file=sys.stderr)
            return 1
        print(f"checkpoint: {where}")
    print(f"wall time: {time.perf_counter() - wall:.1f} s")
    if result.interrupted:
        saved = f"; the checkpoint at {out} holds them, marked interrupted" if out is not None else ""
        print(f"interrupted after {result.steps} of {tcfg.max_iters} steps{saved}", file=sys.stderr)
        return 130
    return 0
