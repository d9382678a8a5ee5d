"""The GPU path rehearsed on the CPU (issue 17): the ``gpu`` preset's shapes through every study function for two
steps with bf16 autocast ON, as the loop runs on a CUDA GPU.

``train.autocast_for`` turns autocast on for CUDA only; here it is patched (in ``train`` and in ``costs``, which
imported it by name) to give the CPU's bf16 autocast, so the dtypes are those of a GPU run: the matmuls and logits
in bf16; the loss, the parameters and their gradients, the Fisher and the penalty in fp32. The model is the ``gpu`` preset's
pretraining model (6 layers, 6 heads, 384 wide, context 256, vocabulary 4,096) with random weights and random ids;
the many-run studies use the ``gpu`` preset's study model (``study.study_preset``), as they do on a GPU, where the
transfer sweep is stacked. A CPU without native bf16 runs its matmuls slowly, so the windows are 16 tokens (one
evaluation uses the whole 256-token context) and batches have one or two rows.
"""

from __future__ import annotations

import copy
import math
import socket
from contextlib import nullcontext
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

import tlteach.costs
import tlteach.train
from tlteach import costs, data, distributed, ewc, forgetting, lora, methods, presets, stack, study, transfer
from tlteach.gpt import GPT, GPTConfig
from tlteach.methods import EWC, LoRA, Replay
from tlteach.train import TrainConfig, evaluate, train

GPU = presets.budget("gpu")
CONFIG = GPTConfig(vocab_size=GPU["vocab_size"], block_size=GPU["block_size"], n_layer=GPU["n_layer"],
                   n_head=GPU["n_head"], n_embd=GPU["n_embd"])
T = 16  # tokens per training window
BF16, FP32 = torch.bfloat16, torch.float32


def _cpu_bf16(device: torch.device, enabled: bool = True):
    """``train.autocast_for`` as it behaves on a CUDA GPU with bf16, for the CPU."""
    return torch.autocast("cpu", dtype=BF16) if enabled and device.type == "cpu" else nullcontext()


@pytest.fixture(autouse=True)
def bf16(monkeypatch):
    monkeypatch.setattr(tlteach.train, "autocast_for", _cpu_bf16)
    monkeypatch.setattr(tlteach.costs, "autocast_for", _cpu_bf16)


class Dtypes:
    """The dtypes the models computed in while it is installed: every ``nn.Linear``'s output, every GPT's logits
    and loss (a Stack's runs and peft's wrapped GPT included)."""

    def __init__(self) -> None:
        self.linear: set[torch.dtype] = set()
        self.logits: set[torch.dtype] = set()
        self.loss: set[torch.dtype] = set()
        self.shapes: set[tuple[int, ...]] = set()

    def __call__(self, module: nn.Module, args, output) -> None:
        if isinstance(module, GPT):
            logits, loss = output
            self.logits.add(logits.dtype)
            self.shapes.add(tuple(logits.shape))
            if loss is not None:
                self.loss.add(loss.dtype)
        elif isinstance(module, nn.Linear):
            self.linear.add(output.dtype)

    def assert_bf16_loop(self) -> None:
        """What the loop intends under autocast: bf16 matmuls and logits, an fp32 loss."""
        assert self.linear == {BF16}, self.linear
        assert self.logits == {BF16}, self.logits
        assert self.loss == {FP32}, self.loss

    def clear(self) -> None:
        for s in (self.linear, self.logits, self.loss, self.shapes):
            s.clear()


@pytest.fixture
def dtypes():
    seen = Dtypes()
    handle = nn.modules.module.register_module_forward_hook(seen)
    yield seen
    handle.remove()


def _model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CONFIG)


def _ids(n: int = 4000, seed: int = 0, vocab: int = CONFIG.vocab_size) -> torch.Tensor:
    return torch.randint(vocab, (n,), generator=torch.Generator().manual_seed(seed))


def _cfg(**changes) -> TrainConfig:
    cfg = TrainConfig(max_iters=2, batch_size=1, block_size=T, learning_rate=1e-3, warmup_iters=1, eval_interval=2,
                      eval_iters=1, progress=False)
    return replace(cfg, **changes)


def _all_fp32(model: nn.Module) -> bool:
    return all(p.dtype == FP32 for p in model.parameters())


def _finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def test_pretraining_steps_on_the_gpu_model(dtypes):
    model = _model()
    assert model.num_params() == 12_318_720  # the gpu preset's model (the tied output matrix counted once)
    start = copy.deepcopy(model)
    cfg = replace(study.pretrain_config(presets.get_preset("gpu", device="cpu")), max_iters=2, batch_size=1,
                  block_size=T, eval_interval=2, eval_iters=1, progress=False)
    assert cfg.amp
    result = train(model, _ids(), cfg, eval_sets={"val": _ids(seed=1)})
    dtypes.assert_bf16_loop()
    h = result.history
    assert result.steps == 2 and list(h.step) == [0, 2]
    assert _finite(h.val) and _finite(h.batch_loss.iloc[1:])
    assert _all_fp32(model) and all(p.grad.dtype == FP32 for p in model.parameters())  # the last step's
    assert not torch.equal(model.transformer.h[5].mlp.c_fc.weight, start.transformer.h[5].mlp.c_fc.weight)

    dtypes.clear()  # the whole 256-token context, as a GPU evaluation sees it
    loss = evaluate(model, _ids(seed=2), CONFIG.block_size, 1, 1)
    assert math.isfinite(loss) and abs(loss - math.log(CONFIG.vocab_size)) < 1.0
    dtypes.assert_bf16_loop()
    assert dtypes.shapes == {(1, CONFIG.block_size, CONFIG.vocab_size)}


def test_the_fisher_vmap_path_and_an_ewc_step_on_the_gpu_model(dtypes):
    model = _model()
    fisher = ewc.fisher_diagonal(model, _ids(), n_examples=2, block_size=T, batch_size=2)  # as the studies call it
    params = dict(model.named_parameters())
    assert list(fisher) == list(params)
    assert all(f.shape == params[n].shape and f.dtype == FP32 and bool(torch.isfinite(f).all()) and f.min() >= 0
               for n, f in fisher.items())
    reference = ewc.fisher_reference(model, _ids(), n_examples=2, block_size=T)
    worst = max(float((fisher[n] - reference[n]).abs().max() / reference[n].abs().max()) for n in params
                if reference[n].abs().max() > 0)
    assert worst < 1e-4

    with torch.autocast("cpu", dtype=BF16):  # torch.func under autocast: still one fp32 Fisher per parameter
        mixed = ewc.fisher_diagonal(model, _ids(), n_examples=2, block_size=T, batch_size=2)
    assert all(mixed[n].shape == f.shape and mixed[n].dtype == FP32 and bool(torch.isfinite(mixed[n]).all())
               for n, f in fisher.items())
    flat = [torch.cat([f[n].flatten() for n in params]).log1p() for f in (fisher, mixed)]
    assert float(torch.corrcoef(torch.stack(flat))[0, 1]) > 0.9

    penalty = ewc.EWCPenalty(model, ewc.normalise(fisher), lam=1.0)
    at_anchor = penalty(model).detach()
    assert at_anchor.dtype == FP32 and float(at_anchor) == 0.0
    dtypes.clear()
    result = train(model, _ids(seed=1), _cfg(), eval_sets={"val": _ids(seed=2)}, penalty=penalty)
    dtypes.assert_bf16_loop()
    moved = penalty(model).detach()
    assert moved.dtype == FP32 and math.isfinite(float(moved)) and float(moved) > 0
    assert penalty.drift(model) > 0 and _finite(result.history.val) and _all_fp32(model)


def test_lora_on_the_gpu_model(dtypes):
    base = _model()
    adapted = lora.add_lora(copy.deepcopy(base), r=4)
    result = train(adapted, _ids(), _cfg(), eval_sets={"val": _ids(seed=1)})
    dtypes.assert_bf16_loop()
    assert _finite(result.history.val) and _all_fp32(adapted)
    layers = lora.lora_layers(adapted)
    assert len(layers) == 4 * CONFIG.n_layer  # c_attn, attn.c_proj, c_fc, mlp.c_proj in every block
    assert all(bool(layer.lora_B.ne(0).any()) for layer in layers.values())  # the adapters trained
    frozen = {n: p for n, p in adapted.named_parameters() if ".lora_" not in n}
    assert all(not p.requires_grad for p in frozen.values())
    mine = dict(base.named_parameters())
    assert all(torch.equal(p, mine[n.replace(".base.", ".")]) for n, p in frozen.items())  # the base untouched

    x = _ids(2 * T, seed=3).view(2, T)
    with torch.no_grad():  # folded into the weights: the same fp32 logits
        gap = (lora.merge_lora(adapted)(x)[0] - adapted(x)[0]).abs().max().item()
    assert gap < 1e-4


def test_peft_lora_on_the_gpu_model(dtypes):
    peft_model = lora.peft_lora(_model(), r=4)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    result = train(peft_model, _ids(), _cfg(), eval_sets={"val": _ids(seed=1)})
    dtypes.assert_bf16_loop()
    assert _finite(result.history.val) and _all_fp32(peft_model)
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".lora_B." in n or ".lora_A." in n for n in changed)
    assert any(".lora_B." in n for n in changed)


def test_costs_on_the_gpu_model(dtypes):
    model = _model()
    start = copy.deepcopy(model)
    speed = costs.step_speed(model, batch_size=1, block_size=T, steps=2, warmup=1, amp=True)
    assert speed["setting"] == "CUDA bf16 autocast"  # the label follows the loop's autocast
    assert speed["tokens_per_s"] > 0 and math.isfinite(speed["ms_per_step"])
    dtypes.assert_bf16_loop()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), start.parameters()))  # a copy was timed

    x = _ids(2 * T, seed=1).view(2, T)
    y = torch.roll(x, -1, 1)
    n = model.num_params()
    assert costs.measured_state_bytes(model, costs.one_step(model, x, y)) == costs.training_memory(n, n)
    assert _all_fp32(model) and all(p.grad.dtype == FP32 for p in model.parameters())
    assert costs.activation_bytes(model, x, y) > 0
    assert costs.inference_speed(model, _ids(), T, batch_size=2, batches=1) > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch built without gloo")
def test_the_ddp_launcher_on_the_gpu_model_with_gloo(monkeypatch, dtypes):
    wrapped = []

    class CountingDDP(distributed.DDP):
        def __init__(self, *args, **kwargs):
            wrapped.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(distributed, "DDP", CountingDDP)
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(k, v)
    cfg = _cfg(batch_size=2, eval_interval=2)
    try:
        rank, world, device = distributed.setup("cpu")
        assert (rank, world, device.type) == (0, 1, "cpu") and dist.get_backend() == "gloo"
        ddp = distributed.ddp_train(_model(), _ids(), cfg, eval_sets={"val": _ids(seed=1)})
    finally:
        distributed.cleanup()
    assert not dist.is_initialized()
    assert len(wrapped) == 1 and wrapped[0]["device_ids"] is None  # a CPU model: no device ids for DDP
    dtypes.assert_bf16_loop()
    assert isinstance(ddp.model, GPT) and _all_fp32(ddp.model) and _finite(ddp.history.val)
    alone = train(_model(), _ids(), cfg, eval_sets={"val": _ids(seed=1)})  # one process, no group: the same update
    assert distributed.same_update(distributed.state_for_saving(ddp.model), distributed.state_for_saving(alone.model),
                                   rtol=1e-6, atol=1e-7) < 1e-6


def _study_preset() -> presets.Preset:
    """The gpu preset's study model (as on a GPU), pretrained for two steps of two rows."""
    p = study.study_preset(presets.get_preset("gpu", device="cpu"))
    return presets.with_changes(p, pretrain_iters=2, batch_size=2, eval_interval=2, eval_iters=1, seed=0)


def test_a_stacked_run_computes_in_the_dtypes_of_the_run_alone(dtypes):
    """On a GPU the transfer sweeps train their runs stacked (vmap over the runs' weights) under autocast. vmap
    leaves a Linear's bias out of autocast (pytorch/pytorch#192617), so the Stack casts the biases itself: its
    Linear layers give bf16, as one run's do, not fp32."""
    p = study.study_preset(presets.get_preset("gpu", device="cpu"))
    shapes = GPTConfig(vocab_size=p.vocab_size, block_size=p.block_size, n_layer=p.n_layer, n_head=p.n_head,
                       n_embd=p.n_embd)
    streams = [_ids(seed=s, vocab=shapes.vocab_size) for s in (0, 1)]
    configs = [_cfg(batch_size=2, learning_rate=lr, seed=s) for s, lr in ((0, 1e-3), (1, 3e-3))]
    val = {"val": _ids(seed=2, vocab=shapes.vocab_size)}

    def start(seed: int) -> GPT:
        torch.manual_seed(seed)
        return GPT(shapes)

    stacked = stack.train_stacked([start(0), start(1)], streams, configs, val)
    dtypes.assert_bf16_loop()
    alone = [train(start(s), ids, c, eval_sets=val) for s, ids, c in zip((0, 1), streams, configs)]
    for a, b in zip(alone, stacked):  # bf16 rounding apart, far less than the two runs are
        assert _finite(b.history.val) and _all_fp32(b.model)
        assert abs(a.history.val.iloc[-1] - b.history.val.iloc[-1]) < 5e-3
        assert abs(a.history.batch_loss.iloc[-1] - b.history.batch_loss.iloc[-1]) < 5e-3
        assert max((x - y).abs().max().item() for x, y in zip(a.model.parameters(), b.model.parameters())) < 0.02
    runs = zip(stacked[0].model.parameters(), stacked[1].model.parameters())
    assert max((x - y).abs().max().item() for x, y in runs) > 0.1


def test_the_studies_on_the_gpu_study_model(fresh_cache, dtypes):
    """A stacked transfer sweep, the cached pretraining, the source Fisher (fp32, outside the loop) and forgetting
    runs with EWC, replay and LoRA, on the gpu preset's study model."""
    p = _study_preset()
    sweep = dict(fractions=(0.001,), lrs=(1e-3, 3e-3), max_iters=2, batch_size=1, eval_interval=1, eval_iters=1,
                 patience=1, small=0.001)
    records = transfer.finetune_runs([("scratch", 0.001, lr) for lr in sweep["lrs"]], p, sweep, stacked=True)
    dtypes.assert_bf16_loop()
    assert [r["stacked"] for r in records] == [2, 2] and [r["steps"] for r in records] == [2, 2]
    assert _finite(r[k] for r in records for k in ("val", "test"))

    settings = dict(steps=2, lr=1e-3, lrs=(1e-3,), batch_size=2, eval_interval=2, eval_iters=1, fisher_examples=2,
                    lams=(1.0,), ranks=(2,), replay=(0.5,), unfreeze=(1,))
    pretrained = study.source_model(data.SOURCE, p)  # pretrained through the loop, stored, loaded back
    assert pretrained.config.vocab_size == p.vocab_size and _all_fp32(pretrained)
    fisher = methods.source_fisher(p, settings=settings)
    assert {n: f.shape for n, f in fisher.items()} == {n: q.shape for n, q in pretrained.named_parameters()}
    assert all(f.dtype == FP32 and bool(torch.isfinite(f).all()) for f in fisher.values())
    dtypes.clear()
    both = forgetting.forgetting_run(EWC(1.0) + Replay(0.5), p, settings=settings)
    adapted = forgetting.forgetting_run(LoRA(2), p, settings=settings)
    dtypes.assert_bf16_loop()
    for r in (both, adapted):
        assert _finite([r["source_before"], r["source_after"], r["target_before"], r["target_after"]])
        assert _finite(r["change"].values()) and r["change"]["h.0.mlp.c_fc"] > 0
    model = forgetting.run_model(LoRA(2), p, settings=settings)
    assert isinstance(model, GPT) and _all_fp32(model) and not lora.lora_layers(model)  # merged
