"""Data-parallel training: 2 processes under torchrun make the same update as 1 process with the same global batch."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from tlteach import distributed
from tlteach.distributed import ddp_train, same_update, shard_batches, state_for_saving, toy_stream
from tlteach.gpt import GPT, GPTConfig
from tlteach.train import TrainConfig, train

# no biases: the attention's key bias has a zero gradient in exact maths (softmax ignores a constant added to every
# score), so Adam, dividing by the gradient's own size, turns float rounding there into steps that differ by ~1e-6
ARGS = ["--steps", "5", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--vocab-size", "64",
        "--block-size", "16", "--global-batch", "8", "--lr", "1e-2", "--seed", "0", "--bias", "false"]
CONFIG = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32, bias=False)


def test_shards_together_are_the_global_batch():
    ids = toy_stream(2000, 64)
    x, y = shard_batches(ids, 16, 8, rank=0, world=1)(torch.Generator().manual_seed(3))
    shards = [shard_batches(ids, 16, 8, rank=r, world=4)(torch.Generator().manual_seed(3)) for r in range(4)]
    assert all(sx.shape == (2, 16) for sx, _ in shards)
    assert torch.equal(torch.cat([sx for sx, _ in shards]), x) and torch.equal(torch.cat([sy for _, sy in shards]), y)
    assert torch.equal(y[:, :-1], x[:, 1:])
    with pytest.raises(ValueError, match="cannot be split evenly over 3 processes"):
        shard_batches(ids, 16, 8, rank=0, world=3)
    with pytest.raises(ValueError, match="rank"):
        shard_batches(ids, 16, 8, rank=2, world=2)


def test_one_process_ddp_train_is_the_plain_loop():
    ids = toy_stream(2000, 64)
    cfg = TrainConfig(max_iters=3, batch_size=8, block_size=16, warmup_iters=1, eval_interval=3, eval_iters=1,
                      progress=False)
    runs = []
    for fit in (lambda m: ddp_train(m, ids, cfg), lambda m: train(m, ids, cfg)):
        torch.manual_seed(0)
        runs.append(state_for_saving(fit(GPT(CONFIG)).model))
    assert same_update(*runs, rtol=0, atol=0) == 0.0
    assert "lm_head.weight" not in runs[0] and "transformer.wte.weight" in runs[0]


def test_same_update_reports_and_refuses():
    a = {"w": torch.zeros(3)}
    assert same_update(a, {"w": torch.tensor([0.0, 5e-7, 0.0])}) == pytest.approx(5e-7)
    with pytest.raises(AssertionError, match="w differs"):
        same_update(a, {"w": torch.tensor([0.0, 1e-3, 0.0])})
    with pytest.raises(AssertionError, match="different tensors"):
        same_update(a, {"v": torch.zeros(3)})


def _run(cmd: list[str], cwd) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch built without gloo")
def test_two_processes_make_the_same_update_as_one(tmp_path):
    from safetensors.torch import load_file

    one = _run([sys.executable, "-m", "tlteach", "ddp", *ARGS, "--out", "one.safetensors"], tmp_path)
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "tlteach", "ddp", *ARGS, "--out", "two.safetensors"], tmp_path)
    assert "1 process(es)" in one and "2 process(es) (gloo" in two and "tokens/s" in two and "wall time" in two
    a, b = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert same_update(a, b, rtol=1e-4, atol=1e-6) < 1e-6
    torch.manual_seed(0)
    start = state_for_saving(GPT(CONFIG))
    assert start.keys() == a.keys()
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-3  # it trained: the weights moved
    val = [[float(v) for v in re.findall(r"val loss ([\d.]+)", out)] for out in (one, two)]
    assert len(val[0]) == 2 and val[0] == pytest.approx(val[1], abs=1e-3)  # evaluation inside the loop agrees


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gives")
def test_asking_for_cuda_without_a_gpu_says_what_to_do(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match="--device cpu"):
        distributed.setup("cuda")
    assert distributed.setup("cpu") == (0, 1, torch.device("cpu"))
