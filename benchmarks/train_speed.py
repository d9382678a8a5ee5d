#!/usr/bin/env python
"""Time training steps of the tlteach GPT and print tokens/s (and, on CUDA, model FLOPs utilisation).

    python benchmarks/train_speed.py                       # the preset's model on the best device
    python benchmarks/train_speed.py --preset gpu --steps 100 --compile
    python benchmarks/train_speed.py --n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --batch-size 12 --vocab-size 65

Steps run through the course's own loop (``tlteach.train.train``) on random tokens, so what is timed is
what every notebook trains with: forward, backward, gradient clipping, fused AdamW, bf16 autocast on CUDA.
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch

from tlteach.cli import add_gpt_flags
from tlteach.costs import StepClock
from tlteach.environment import device_description
from tlteach.gpt import GPT, GPTConfig
from tlteach.presets import get_preset
from tlteach.train import TrainConfig, train

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "T4": 65.0}


def flops_per_token(cfg: GPTConfig, n_params: int) -> float:
    """Training FLOPs per token, as in the PaLM paper's appendix B (and nanoGPT): 6N + 12 L H Q T."""
    return 6 * n_params + 12 * cfg.n_layer * cfg.n_head * (cfg.n_embd // cfg.n_head) * cfg.block_size


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags: the GPT-size flags of ``python -m tlteach pretrain`` (``tlteach.cli.add_gpt_flags``,
    left out: the preset's), the batch size, and how many steps to time."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default=None, help="quick, cpu or gpu: defaults for every size flag")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    add_gpt_flags(p)
    p.add_argument("--batch-size", type=int, default=None, help="rows per step (default: the preset's)")
    p.add_argument("--steps", type=int, default=50, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    return p


def main(argv: list[str] | None = None) -> None:
    """Time the steps and print tokens/s (and the MFU on CUDA)."""
    args = build_parser().parse_args(argv)
    preset = get_preset(args.preset, device=args.device)
    pick = lambda v, d: d if v is None else v  # noqa: E731
    cfg = GPTConfig(vocab_size=pick(args.vocab_size, preset.vocab_size), block_size=pick(args.block_size, preset.block_size),
                    n_layer=pick(args.n_layer, preset.n_layer), n_head=pick(args.n_head, preset.n_head),
                    n_embd=pick(args.n_embd, preset.n_embd), bias=args.bias == "true")
    batch = pick(args.batch_size, preset.batch_size)
    torch.manual_seed(0)
    model = GPT(cfg).to(preset.device)
    ids = torch.randint(cfg.vocab_size, (200_000,))
    clock = StepClock(torch.device(preset.device))
    tcfg = TrainConfig(max_iters=args.warmup + args.steps + 1, batch_size=batch, block_size=cfg.block_size,
                       learning_rate=1e-3, warmup_iters=5, eval_interval=10**9, compile=args.compile, progress=False)
    train(model, ids, tcfg, hooks=[clock])
    times = clock.times[args.warmup:]
    median = statistics.median(times)
    tokens = batch * cfg.block_size
    n = model.num_params()
    print(f"device: {device_description(preset.device)}; torch {torch.__version__}; python {platform.python_version()}")
    print(f"model: {n:,} parameters (n_layer={cfg.n_layer}, n_head={cfg.n_head}, n_embd={cfg.n_embd}, "
          f"block_size={cfg.block_size}, vocab={cfg.vocab_size}); batch {batch}; compile={args.compile}")
    print(f"step time: median {1000 * median:.2f} ms over {len(times)} steps "
          f"(min {1000 * min(times):.2f}, max {1000 * max(times):.2f})")
    print(f"tokens/s: {tokens / median:,.0f}")
    if preset.device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        achieved = flops_per_token(cfg, n) * tokens / median
        if peak:
            print(f"MFU: {100 * achieved / (peak * 1e12):.1f}% of {name}'s {peak:.0f} bf16 TFLOP/s "
                  f"({achieved / 1e12:.1f} TFLOP/s achieved)")
        else:
            print(f"achieved {achieved / 1e12:.1f} TFLOP/s (peak of {name} unknown: MFU not computed)")


if __name__ == "__main__":
    main()
