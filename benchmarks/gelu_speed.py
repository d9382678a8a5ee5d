"""GPT-2's GELU on a CPU: ``F.gelu(approximate="tanh")`` against the course's sigmoid form (``tlteach.gpt.GELU``).

Prints, for the MLP activations of the ``quick`` study model (8 x 64 tokens, 256 wide) and of nanoGPT's CPU recipe
(12 x 64 tokens, 512 wide): microseconds for forward and backward of each (and of the exact, erf GELU, which GPT-2
does not use), the largest difference from ``F.gelu``, then one training step of each model (forward, backward,
AdamW) with either activation, interleaved so that the machine's load falls on both alike. Usage::

    .venv/bin/python benchmarks/gelu_speed.py [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from tlteach.gpt import GELU, GPT, GPTConfig


class TanhGELU(nn.Module):
    """What the course's GPT used before: torch's own tanh GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


def micros(fn, repeats: int = 100) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1e6 * (time.perf_counter() - start) / repeats


def activation(shape: tuple[int, int]) -> None:
    x = torch.randn(*shape, requires_grad=True)
    g = torch.randn(*shape)
    ours, tanh = GELU(), TanhGELU()
    diff = (ours(x) - tanh(x)).abs().max().item()
    print(f"  activations {shape[0]} x {shape[1]}: forward + backward, microseconds "
          f"(largest difference from F.gelu: {diff:.1e})")
    for name, fn in (("F.gelu(approximate='tanh')", lambda: tanh(x).backward(g)),
                     ("tlteach.gpt.GELU (sigmoid form)", lambda: ours(x).backward(g)),
                     ("F.gelu, exact (erf; not GPT-2's)", lambda: F.gelu(x).backward(g))):
        print(f"    {name:<34} {statistics.median(micros(fn) for _ in range(3)):8.0f}")


def step_ms(config: GPTConfig, batch: int, act: type[nn.Module]) -> float:
    torch.manual_seed(0)
    model = GPT(config)
    for block in model.transformer.h:
        block.mlp.gelu = act()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x, y = (torch.randint(0, config.vocab_size, (batch, config.block_size)) for _ in range(2))

    def step() -> None:
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return micros(step, 40) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    models = {"quick study model (2 x 64, vocabulary 1024, batch 8 x 64)":
              (GPTConfig(vocab_size=1024, block_size=64, n_layer=2, n_head=2, n_embd=64), 8),
              "nanoGPT's CPU recipe (4 x 128, 65 characters, batch 12 x 64)":
              (GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False), 12)}
    for name, (config, batch) in models.items():
        print(name)
        activation((batch * config.block_size, 4 * config.n_embd))
        pairs = [(step_ms(config, batch, TanhGELU), step_ms(config, batch, GELU)) for _ in range(3)]
        old, new = statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)
        print(f"  training step: {old:.1f} ms with F.gelu's tanh, {new:.1f} ms with the sigmoid form "
              f"({new / old - 1:+.0%})")


if __name__ == "__main__":
    main()
