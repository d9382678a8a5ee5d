"""A learning-curve sweep trained one by one and stacked, and the pretraining step against nanoGPT's recipe.

Prints, for the ``quick`` study model: the runs of one learning-curve size (five sources x three learning
rates, each with early stopping), their total training steps, the wall time trained one by one and as one
:class:`tlteach.stack.Stack`, the ratio, and the largest difference in a run's test loss between the two; then
the tokens/s of the one loop on nanoGPT's CPU recipe (shakespeare_char, 4x4x128, block 64, batch 12) against
the figures stored in ``benchmarks/results/nanogpt_char_seed*.txt``. Each sweep starts from an empty cache of
runs (the sources are pretrained first, untimed).

It also prints where a training step's time goes (``floor``): one step of the study model alone and as a stack of
15, profiled, with the share of the time spent in matrix products, the rate at which those products ran (GFLOP/s)
and, for comparison, the rate of one large matrix product on the same threads, roughly what the cores can do. When
a lone run's products already run near that rate, stacking runs cannot make them faster. Usage::

    .venv/bin/python benchmarks/stacked_sweep.py [--fraction 0.01] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tlteach import data, study, transfer
from tlteach.gpt import GPT, GPTConfig
from tlteach.presets import get_preset
from tlteach.tokenizer import CharTokenizer
from tlteach.train import TrainConfig, train

SOURCES = ("scratch", "shakespeare", "esco-skills", "python-docs", "shakespeare+esco-skills")
RESULTS = Path(__file__).parent / "results"


def sweep(fraction: float) -> None:
    preset = study.study_preset(get_preset("quick", device="cpu"))
    settings = transfer.sweep_settings(preset)
    points = [(s, fraction, lr) for s in SOURCES for lr in settings["lrs"]]
    for s in SOURCES:
        study.source_model(s, preset, progress=True)  # pretrained once, in the shared cache, untimed
    timed = {}
    for name, stacked in (("one by one", False), ("stacked", True)):
        runs_cache = Path(tempfile.mkdtemp(prefix=f"tlteach-bench-{name.replace(' ', '-')}-"))
        for kind in ("pretrained", "continued", "tokenizers"):  # share the sources, not the fine-tuning runs
            src = Path(os.environ["TLTEACH_CACHE"]) / kind
            if src.exists():
                (runs_cache / kind).symlink_to(src)
        os.environ["TLTEACH_CACHE"], shared = str(runs_cache), os.environ["TLTEACH_CACHE"]
        start = time.perf_counter()
        timed[name] = (transfer.finetune_runs(points, preset, settings, stacked=stacked), time.perf_counter() - start)
        os.environ["TLTEACH_CACHE"] = shared
    alone, stacked_runs = timed["one by one"][0], timed["stacked"][0]
    steps = sum(r["steps"] for r in alone)
    worst = max(abs(a["test"] - b["test"]) for a, b in zip(alone, stacked_runs))
    t1, t2 = timed["one by one"][1], timed["stacked"][1]
    print(f"\nsweep: {len(points)} runs ({len(SOURCES)} sources x {len(settings['lrs'])} learning rates) on "
          f"{fraction:.1%} of the target, quick study model, early stopping (patience {settings['patience']})")
    print(f"  total training steps: {steps:,} (per run: {min(r['steps'] for r in alone)} to "
          f"{max(r['steps'] for r in alone)})")
    print(f"  one by one: {t1:6.1f} s   stacked: {t2:6.1f} s   one-by-one / stacked: {t1 / t2:.2f}x")
    print(f"  largest difference in a run's test loss, stacked vs alone: {worst:.2e} nats")


def pretraining_speed(iters: int = 300) -> None:
    text = Path(os.environ.get("TEXT", Path(__file__).parents[2] / "shared/data/tinyshakespeare.txt"))
    if not text.is_file():
        print(f"\npretraining speed: skipped ({text} not found; set TEXT=path/to/tinyshakespeare.txt)")
        return
    raw = text.read_text(encoding="utf-8")
    tok = CharTokenizer.train(raw)
    ids = torch.tensor(tok.encode(raw[: int(0.9 * len(raw))]), dtype=torch.long)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False))
    cfg = TrainConfig(max_iters=iters, batch_size=12, block_size=64, learning_rate=1e-3, min_lr=1e-4,
                      warmup_iters=100, eval_interval=iters, eval_iters=1, progress=False)
    result = train(model, ids, cfg)
    stored = []
    for f in sorted(RESULTS.glob("nanogpt_char_seed*.txt")):
        m = re.search(r"tokens/s: ([\d,]+)", f.read_text(encoding="utf-8"))
        if m:
            stored.append(int(m.group(1).replace(",", "")))
    print(f"\npretraining step, nanoGPT's CPU recipe for shakespeare_char (4x4x128, block 64, batch 12), "
          f"{iters} iterations: {result.tokens_per_s:,.0f} tokens/s "
          f"({1000 * result.train_seconds / result.steps:.1f} ms/iter)")
    if stored:
        print(f"  stored figures of the recipe (benchmarks/results/nanogpt_char_seed*.txt, {len(stored)} runs, "
              f"2000 iterations): median {statistics.median(stored):,.0f} tokens/s; now / stored: "
              f"{result.tokens_per_s / statistics.median(stored):.2f}")


MATMULS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def _profiled(step, repeats: int = 10) -> tuple[float, float, float, float]:
    """Milliseconds per call of ``step``, the share of it in matrix products, their GFLOP/s, and the share in
    operator calls that took under 20 microseconds each (what per-call overhead could be, at most)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    ms = 1000 * (time.perf_counter() - start) / repeats
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(repeats):
            step()
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    mm = [e for e in events if e.key in MATMULS]
    mm_us = sum(e.self_cpu_time_total for e in mm)
    flops = sum(e.flops for e in mm)
    small_us = sum(e.self_cpu_time_total for e in events if e.count and e.self_cpu_time_total / e.count < 20)
    return ms, mm_us / total_us, flops / mm_us / 1e3 if mm_us else float("nan"), small_us / total_us


def floor(runs: int = 15) -> None:
    """Where one training step of the quick study model goes, alone and as a stack of ``runs``."""
    from tlteach.stack import Stack
    from tlteach.train import clip_per_run, decay_groups, make_optimizer

    preset = study.study_preset(get_preset("quick", device="cpu"))
    settings = transfer.sweep_settings(preset)
    config = study.model_config(preset)
    models = []
    for i in range(runs):
        torch.manual_seed(i)
        models.append(GPT(config))
    gen = torch.Generator().manual_seed(0)
    shape = (runs, settings["batch_size"], preset.block_size)
    x, y = (torch.randint(0, config.vocab_size, shape, generator=gen) for _ in range(2))
    cfg = TrainConfig()

    def stepper(model, groups, xs, ys):
        opt = make_optimizer(groups, cfg, torch.device("cpu"))

        def step():
            _, loss = model(xs, ys)
            opt.zero_grad(set_to_none=True)
            (loss if loss.dim() == 0 else loss.nansum()).backward()
            clip_per_run(opt.param_groups, cfg.grad_clip)
            opt.step()
        return step

    alone = stepper(models[0], decay_groups(list(models[0].parameters()), 0.1), x[0], y[0])
    stack = Stack(models)
    groups = [g for i, m in enumerate(models) for g in decay_groups(list(m.parameters()), 0.1, run=i)]
    together = stepper(stack, groups, x, y)
    one_ms, one_share, one_rate, one_small = _profiled(alone)
    all_ms, all_share, all_rate, all_small = _profiled(together)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    big = 2 * 1024**3 * 10 / (time.perf_counter() - start) / 1e9
    print(f"\nwhere a training step goes ({config.n_layer} layers x {config.n_embd} wide, vocabulary {config.vocab_size},"
          f" batch {shape[1]} x {shape[2]} tokens; forward, backward, clipping, AdamW), {torch.get_num_threads()} threads:")
    print(f"  one run alone:      {one_ms:6.1f} ms/step; matrix products {one_share:.0%} of it, at {one_rate:5.1f} GFLOP/s;"
          f" operator calls under 20 us: {one_small:.0%}")
    print(f"  a stack of {runs}:     {all_ms:6.1f} ms/step = {all_ms / runs:5.1f} ms per run; matrix products "
          f"{all_share:.0%}, at {all_rate:5.1f} GFLOP/s; operator calls under 20 us: {all_small:.0%}")
    print(f"  one 1024 x 1024 matrix product: {big:5.1f} GFLOP/s (about what these cores can do)")
    print(f"  {runs} steps alone / one stacked step: {runs * one_ms / all_ms:.2f}x")
    grouped_ms = grouped(models, x, y)
    print(f"  grouped products by hand: {grouped_ms:6.1f} ms/step = {grouped_ms / runs:5.1f} ms per run (no vmap, one "
          f"bmm per layer for all {runs} runs, one fused AdamW over the stacked weights: the most a stack can gain)")
    print(f"  {runs} steps alone / one grouped step: {runs * one_ms / grouped_ms:.2f}x")


def grouped(models: list, x: torch.Tensor, y: torch.Tensor, repeats: int = 10) -> float:
    """Milliseconds per training step of ``models`` written as one model with grouped matrix products: every weight
    stacked along a leading run dimension, each linear layer one ``baddbmm`` over the runs, attention over
    ``runs x batch`` sequences, one cross-entropy, one fused AdamW (one learning rate, no clipping: a best case that
    a stack with each run's own schedule can only approach). Its losses are checked against each model's own."""
    import torch.nn.functional as F

    R, (B, T), c = len(models), x.shape[1:], models[0].config
    C, H = c.n_embd, c.n_head
    stacked = {n: torch.stack([m.get_parameter(n).detach() for m in models]) for n, _ in models[0].named_parameters()}
    # (runs, in, out) for a linear layer's weight, (runs, 1, n) for a vector; the embeddings as they are
    P = {n: (w if n.startswith("transformer.w") else w.transpose(1, 2) if w.dim() == 3 else w.unsqueeze(1))
         .contiguous().requires_grad_() for n, w in stacked.items()}

    def linear(h, name):
        return torch.baddbmm(P[f"{name}.bias"], h, P[f"{name}.weight"])

    def norm(h, name):
        return F.layer_norm(h, (C,)) * P[f"{name}.weight"] + P[f"{name}.bias"]

    def losses(idx, targets):
        wte = P["transformer.wte.weight"]
        h = torch.gather(wte, 1, idx.reshape(R, B * T, 1).expand(-1, -1, C))
        h = (h.view(R, B, T, C) + P["transformer.wpe.weight"][:, None, :T]).view(R, B * T, C)
        for i in range(c.n_layer):
            a = f"transformer.h.{i}"
            q, k, v = linear(norm(h, f"{a}.ln_1"), f"{a}.attn.c_attn").view(R * B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(R, B * T, C)
            h = h + linear(att, f"{a}.attn.c_proj")
            h = h + linear(F.gelu(linear(norm(h, f"{a}.ln_2"), f"{a}.mlp.c_fc"), approximate="tanh"), f"{a}.mlp.c_proj")
        logits = torch.bmm(norm(h, "transformer.ln_f"), wte.transpose(1, 2))
        return F.cross_entropy(logits.view(-1, c.vocab_size), targets.reshape(-1), reduction="none").view(R, -1).mean(1)

    with torch.no_grad():
        alone = torch.stack([m(x[i], y[i])[1] for i, m in enumerate(models)])
        assert torch.allclose(losses(x, y), alone, atol=1e-5), "the grouped model does not compute the models' losses"
    opt = torch.optim.AdamW(list(P.values()), lr=1e-3, fused=True)

    def step():
        loss = losses(x, y)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.01, help="the learning-curve size (default 0.01)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--only-floor", action="store_true", help="only where a step's time goes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TLTEACH_CACHE", tempfile.mkdtemp(prefix="tlteach-bench-"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"cache {os.environ['TLTEACH_CACHE']}")
    data.load_corpus(data.TARGET)
    floor()
    if args.only_floor:
        return
    if not args.skip_sweep:
        sweep(args.fraction)
    pretraining_speed()


if __name__ == "__main__":
    main()
