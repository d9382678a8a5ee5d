"""Pretraining the tiny GPT on the source corpus, cached so any notebook can be opened first (notebook 02).

:func:`pretrained_model` loads the preset's pretrained model from the cache, or trains it (deterministically,
for the seed) and stores it: a :func:`tlteach.study.cached_run`, like every run of the later studies.
:func:`main` is ``python -m tlteach pretrain``, with flags named as in nanoGPT, for pretraining on a named
corpus or on any text file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from . import data
from .gpt import GPT, GPTConfig
from .presets import Preset, get_preset
from .tokenizer import CharTokenizer, get_tokenizer
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
def main(args: argparse.Namespace) -> int:
    """Run ``python -m tlteach pretrain`` on the ``args`` that :func:`tlteach.cli.build_parser` parsed (its flags
    are defined there); print nanoGPT-style progress, tokens/s and the wall time."""
    wall = time.perf_counter()
    preset = get_preset(args.preset, device=args.device)
    pick = lambda value, default: default if value is None else value  # noqa: E731
    if args.text:
        path = Path(args.text).expanduser()
        if not path.is_file():
            raise SystemExit(f"error: --text {path}: no such file")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise SystemExit(f"error: --text {path} is empty")
        n = int(0.9 * len(text))  # nanoGPT: the first 90% trains, the last 10% validates
        if args.tokenizer == "char":
            tok = CharTokenizer.train(text)
            train_ids, val_ids = (torch.tensor(tok.encode(t), dtype=torch.long) for t in (text[:n], text[n:]))
        else:
            corpus = data.load_text(text[:n], name=path.name)
            tok = get_tokenizer("bpe", vocab_size=pick(args.vocab_size, preset.vocab_size), corpus=corpus)
            train_ids, val_ids = (torch.tensor(tok.encode(t), dtype=torch.long) for t in (text[:n], text[n:]))
        source = str(path)
    else:
        name = args.dataset or data.SOURCE
        tok = (get_tokenizer("char", corpus=name) if args.tokenizer == "char"
               else get_tokenizer("bpe", vocab_size=pick(args.vocab_size, preset.vocab_size), corpus=name))
        splits = data.token_splits(name, tok, ("train", "validation"))
        train_ids, val_ids = splits["train"], splits["validation"]
        source = name
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=pick(args.block_size, preset.block_size),
                       n_layer=pick(args.n_layer, preset.n_layer), n_head=pick(args.n_head, preset.n_head),
                       n_embd=pick(args.n_embd, preset.n_embd), dropout=args.dropout, bias=args.bias == "true")
    lr = pick(args.learning_rate, preset.pretrain_lr)
    tcfg = TrainConfig(max_iters=pick(args.max_iters, preset.pretrain_iters),
                       batch_size=pick(args.batch_size, preset.batch_size), block_size=config.block_size,
                       learning_rate=lr, min_lr=pick(args.min_lr, lr / 10), warmup_iters=pick(args.warmup_iters, 100),
                       lr_decay_iters=args.lr_decay_iters, weight_decay=pick(args.weight_decay, 0.1),
                       beta1=pick(args.beta1, 0.9), beta2=pick(args.beta2, 0.99), grad_clip=pick(args.grad_clip, 1.0),
                       eval_interval=pick(args.eval_interval, preset.eval_interval),
                       eval_iters=pick(args.eval_iters, preset.eval_iters), compile=args.compile,
                       seed=pick(args.seed, preset.seed), progress=sys.stderr.isatty(), log=True)
    torch.manual_seed(tcfg.seed)
    model = GPT(config).to(preset.device)
    print(f"pretraining on {source}: {len(train_ids):,} training tokens, {len(val_ids):,} validation tokens, "
          f"{tok.kind} tokenizer ({tok.vocab_size} tokens); {model.num_params():,} parameters on {preset.device}")
    result = train(model, train_ids, tcfg, eval_sets={"train": train_ids, "val": val_ids})
    print(f"tokens/s: {result.tokens_per_s:,.0f} ({1000 * result.train_seconds / max(result.steps, 1):.1f} ms/iter "
          f"over {result.steps} iterations)")
    if args.out:
        from . import checkpoint

        where = checkpoint.save_model(result.model, args.out, tok,
                                      extra={"train": tcfg.to_dict(), "source": source,
                                             "history": result.history.to_dict(orient="list")})
        print(f"checkpoint: {where}")
    print(f"wall time: {time.perf_counter() - wall:.1f} s")
    return 130 if result.interrupted else 0
