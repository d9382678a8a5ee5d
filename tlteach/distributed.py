"""Data-parallel training: the one training loop on several processes at once (notebook 09, "what it costs").

Data parallelism is the simplest way to train on N devices (GPUs, or CPU processes here). Every process holds
a full copy of the model, starting from the same weights. At each step the global batch of B windows is cut
into N equal shards of B / N rows; each process runs forward and backward on its own shard only, then the
processes *average their gradients* (an all-reduce). With equal shards the mean of the N shard gradients is
the gradient of the mean loss over the whole global batch, so every copy takes the same optimizer step (and
clips the same averaged gradient) and the copies stay identical without any weights being sent around. The
maths is that of one process with the global batch, to float rounding; what changes is the cost: each process
does 1/N of the arithmetic, and all of them wait for the all-reduce, which moves one gradient's worth of
bytes every step.

We do not write the all-reduce ourselves. ``torch.nn.parallel.DistributedDataParallel`` (DDP) wraps the model
and averages gradient buckets during ``backward()``, overlapping communication with computation. ``torchrun
--nproc_per_node N`` starts N processes and tells each its ``RANK`` and ``WORLD_SIZE``; they talk through the
``gloo`` backend on CPU or ``nccl`` on CUDA. The loop is :func:`tlteach.train.train`, unchanged:
:func:`shard_batches` hands each rank its shard, DDP does the rest::

    torchrun --standalone --nproc_per_node 2 -m tlteach ddp --steps 50 --out ddp.safetensors
    python -m tlteach ddp --steps 50 --out one.safetensors     # the same update, in one process

The command's flags are defined in :mod:`tlteach.cli`, which builds every command of ``python -m tlteach``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .gpt import GPT, GPTConfig
from .train import Batches, TrainConfig, TrainResult, train


def shard_batches(ids: torch.Tensor, block_size: int, global_batch: int, rank: int, world: int) -> Batches:
    """A ``batches`` function for :func:`tlteach.train.train`: every rank draws the SAME global batch from the generator
    (``train`` seeds it with ``cfg.seed`` on every rank) and keeps its contiguous slice of ``global_batch //
    world`` rows, so the N shards together are exactly the batch one process would train on (notebook 09)."""
    from .data import check_blocks, get_batch

    if not 0 <= rank < world:
        raise ValueError(f"rank must be in 0..{world - 1} for {world} processes, got {rank}")
    if global_batch % world:
        raise ValueError(f"a global batch of {global_batch} rows cannot be split evenly over {world} processes; "
                         f"use a multiple of {world} (unequal shards would weigh some rows more than others)")
    check_blocks(ids, block_size)
    per = global_batch // world
    lo, hi = rank * per, (rank + 1) * per

    def batches(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = get_batch(ids, block_size, global_batch, generator=gen)
        return x[lo:hi], y[lo:hi]

    return batches


def setup(device: str = "cpu") -> tuple[int, int, torch.device]:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): gloo for CPU processes,
    nccl for ``device="cuda"`` (one GPU per process). Without torchrun, a single process: ``(0, 1, device)``
    and no process group (notebook 09)."""
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda, but this machine has no CUDA GPU; use --device cpu (gloo)")
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if cuda and torch.cuda.device_count() < world:
        raise ValueError(f"{world} processes need {world} GPUs for nccl (one each); this machine has "
                         f"{torch.cuda.device_count()}: use fewer processes, or --device cpu (gloo)")
    local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return rank, world, local


def cleanup() -> None:
    """Leave the process group, if this process joined one (notebook 09)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def ddp_train(model: nn.Module, ids: torch.Tensor, cfg: TrainConfig, **kwargs) -> TrainResult:
    """:func:`tlteach.train.train` on this rank's shard of every global batch of ``cfg.batch_size`` rows, the model wrapped
    in DDP when a process group is running; a plain ``train`` otherwise (notebook 09).

    ``model`` must already be on this rank's device, with the same weights on every rank (same seed). Other
    keyword arguments go to ``train``. ``eval_sets`` are evaluated on every rank: the copies are identical and
    ``evaluate`` reads fixed windows, so each rank gets the same numbers and ``on_eval`` stops them all at the
    same step. Only rank 0 shows a progress bar or logs. The returned ``model`` is the unwrapped one;
    ``tokens_per_s`` and the history's ``tokens`` count all ranks; ``batch_loss`` is rank 0's shard's loss.
    """
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    batches = shard_batches(ids, cfg.block_size, cfg.batch_size, rank, world)
    cfg = replace(cfg, progress=cfg.progress and rank == 0, log=cfg.log and rank == 0)
    device = next(model.parameters()).device
    wrapped = model
    if dist.is_initialized():
        wrapped = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    result = train(wrapped, batches, cfg, **kwargs)
    result.model = model
    result.tokens_per_s *= world  # the ranks step in lockstep, each on its own rows
    if "tokens" in result.history:
        result.history["tokens"] *= world
    return result


def state_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict on the CPU with each tied tensor stored once (``lm_head.weight`` is ``wte``'s, and
    safetensors refuses shared tensors); ``GPT.load_state_dict(..., strict=False)`` re-ties it (notebook 09)."""
    seen, out = set(), {}
    for name, t in model.state_dict().items():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            out[name] = t.detach().cpu().contiguous()
    return out


def same_update(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-4,
                atol: float = 1e-6) -> float:
    """The largest absolute difference between two state dicts; raises ``AssertionError`` naming the worst
    tensor unless every tensor is ``allclose`` (notebook 09: one process vs N, after the same steps)."""
    if a.keys() != b.keys():
        raise AssertionError(f"different tensors: {sorted(a.keys() ^ b.keys())}")
    diffs = {k: (a[k].float() - b[k].float()).abs().max().item() if a[k].numel() else 0.0 for k in a}
    for k in a:
        if a[k].shape != b[k].shape or not torch.allclose(a[k].float(), b[k].float(), rtol=rtol, atol=atol):
            raise AssertionError(f"{k} differs: shapes {tuple(a[k].shape)} vs {tuple(b[k].shape)}, "
                                 f"max |difference| {diffs[k]:.3g} (rtol={rtol}, atol={atol})")
    return max(diffs.values(), default=0.0)


def toy_stream(n: int, vocab_size: int, seed: int = 0, branches: int = 2) -> torch.Tensor:
    """A seeded, learnable token stream: each token is followed by one of ``branches`` fixed successors, so
    the best loss is ln(branches) (a stand-in corpus for timing runs, notebook 09)."""
    g = torch.Generator().manual_seed(seed)
    successors = torch.randint(vocab_size, (vocab_size, branches), generator=g).tolist()
    picks = torch.randint(branches, (n,), generator=g).tolist()
    out = [0] * n
    for i in range(1, n):
        out[i] = successors[out[i - 1]][picks[i]]
    return torch.tensor(out, dtype=torch.long)


# ----------------------------------------------------------------------------- torchrun -m tlteach ddp
def main(args: argparse.Namespace) -> int:
    """``torchrun --standalone --nproc_per_node N -m tlteach ddp ...`` (or plain ``python -m tlteach ddp``: one
    process) on the ``args`` that :func:`tlteach.cli.build_parser` parsed: train a GPT data-parallel, print
    tokens/s and the wall time, and save the final weights from rank 0 (notebook 09)."""
    wall = time.perf_counter()
    rank, world, device = setup(args.device)
    try:
        if args.corpus:
            from . import data
            from .tokenizer import get_tokenizer

            tok = get_tokenizer("bpe", vocab_size=args.vocab_size, corpus=args.corpus)
            splits = data.token_splits(args.corpus, tok, ("train", "validation"))
            ids, val_ids = splits["train"], splits["validation"]
            vocab, source = tok.vocab_size, args.corpus
        else:
            stream = toy_stream(args.tokens, args.vocab_size, args.seed)
            n = int(0.9 * len(stream))  # the first 90% trains, the last 10% validates
            ids, val_ids, vocab, source = stream[:n], stream[n:], args.vocab_size, f"{args.tokens:,} toy tokens"
        config = GPTConfig(vocab_size=vocab, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                           n_embd=args.n_embd, bias=args.bias == "true")
        cfg = TrainConfig(max_iters=args.steps, batch_size=args.global_batch, block_size=args.block_size,
                          learning_rate=args.lr, warmup_iters=args.steps // 10 if args.warmup_iters is None
                          else args.warmup_iters, grad_clip=args.grad_clip, eval_interval=args.steps,
                          eval_iters=max(args.eval_iters, 1), amp=args.amp,
                          seed=args.seed, progress=sys.stderr.isatty(), log=True)
        torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also copies rank 0's)
        model = GPT(config).to(device)
        if rank == 0:
            backend = dist.get_backend() if dist.is_initialized() else "no process group"
            print(f"data-parallel training on {world} process(es) ({backend}, {device}): global batch "
                  f"{args.global_batch} = {world} x {args.global_batch // world} rows of {args.block_size} "
                  f"tokens; {model.num_params():,} parameters; {source}")
        result = ddp_train(model, ids, cfg, eval_sets={"val": val_ids} if args.eval_iters > 0 else None)
        if rank == 0:
            ms = 1000 * result.train_seconds / max(result.steps, 1)
            print(f"tokens/s: {result.tokens_per_s:,.0f} (all processes; {ms:.1f} ms/iter over {result.steps} steps)")
            if args.out:
                from safetensors.torch import save_file

                save_file(state_for_saving(result.model), args.out,
                          metadata={"world": str(world), "args": json.dumps(
                              {k: v for k, v in vars(args).items() if k != "command"})})
                print(f"weights: {args.out}")
            print(f"wall time: {time.perf_counter() - wall:.1f} s")
        return 130 if result.interrupted else 0
    finally:
        cleanup()

