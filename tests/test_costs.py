"""What fine-tuning costs (notebook 09): memory arithmetic against measured tensors and RSS, speed, int8 size."""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import torch

from tlteach import costs
from tlteach.gpt import GPT, GPTConfig
from tlteach.lora import add_lora, trainable_counts
from tlteach.train import TrainConfig, train

TINY = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def batch(config: GPTConfig, batch_size: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(config.vocab_size, (batch_size, config.block_size), generator=g) for _ in range(2))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_memory_counts_gradients_and_adamw_only_for_trainable_parameters():
    assert costs.training_memory(1000, 100) == {"weights": 4000, "gradients": 400, "optimizer": 800, "total": 5200}
    assert costs.training_memory(1000, 1000, weight_bytes=2, grad_bytes=2)["total"] == 12_000
    with pytest.raises(ValueError, match="n_trainable"):
        costs.training_memory(10, 11)
    table = costs.extrapolate(7e9, lora_fraction=0.003)
    full, mixed, bf16, lora = table["total (GB)"]
    assert full == pytest.approx(112.0) and bf16 == pytest.approx(84.0)  # 16 and 12 bytes per parameter
    # bf16 weights and gradients plus an fp32 master copy and fp32 AdamW: 2 + 4 + 2 + 8 bytes, no saving on fp32
    assert mixed == pytest.approx(112.0) and table.iloc[1]["weights (GB)"] == pytest.approx(42.0)
    assert lora == pytest.approx(14.0 + 0.003 * 7 * 16)  # a bf16 base plus fp32 adapters with AdamW
    assert table.index[3] == "LoRA r=8 (frozen bf16 base)"


def test_measured_state_of_full_fine_tuning_is_the_arithmetic_with_the_tied_matrix_counted_once():
    torch.manual_seed(0)
    model = GPT(TINY)
    optimizer = costs.one_step(model, *batch(TINY))
    n = model.num_params()
    measured = costs.measured_state_bytes(model, optimizer)
    assert measured == costs.training_memory(n, n)
    state_dict_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert state_dict_bytes - measured["weights"] == 4 * TINY.vocab_size * TINY.n_embd  # lm_head is wte


def test_lora_pays_gradients_and_adamw_state_only_for_the_adapters():
    torch.manual_seed(0)
    base = GPT(TINY)
    full = costs.measured_state_bytes(base, costs.one_step(base, *batch(TINY)))
    lora_model = add_lora(GPT(TINY), r=2)
    lora = costs.measured_state_bytes(lora_model, costs.one_step(lora_model, *batch(TINY)))
    counts = trainable_counts(lora_model)
    assert lora["optimizer"] == 8 * counts["trainable"] and lora["gradients"] == 4 * counts["trainable"]
    assert lora == costs.training_memory(counts["total"], counts["trainable"])
    assert full["optimizer"] / lora["optimizer"] == pytest.approx(base.num_params() / counts["trainable"])
    assert full["optimizer"] > 10 * lora["optimizer"]


def test_process_memory_sees_a_64_mb_tensor():
    before = costs.process_memory()
    if before is None:
        pytest.skip("this system does not report the process's memory")
    big = torch.ones(16 * 2**20)  # 64 MiB, every page written
    grown = costs.process_memory() - before
    assert 0.8 * big.nbytes < grown < 1.3 * big.nbytes
    del big


def test_rss_growth_over_a_step_matches_gradients_plus_adamw_state():
    if costs.process_memory() is None:
        pytest.skip("this system does not report the process's memory")
    config = GPTConfig(vocab_size=2048, block_size=32, n_layer=3, n_head=2, n_embd=256)  # 2.9M parameters, 35 MB
    torch.manual_seed(0)
    model = GPT(config)
    grown, optimizer = costs.step_rss(model, *batch(config))
    computed = costs.training_memory(model.num_params(), model.num_params())
    expected = computed["gradients"] + computed["optimizer"]
    assert costs.measured_state_bytes(model, optimizer) == computed
    assert 0.95 * expected < grown < 1.3 * expected, (grown, expected)


def trained_model() -> GPT:
    """A tiny GPT trained briefly on a repeating pattern, so that its logits are confident (not near zero)."""
    config = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=64)
    ids = torch.arange(4000) % 11
    cfg = TrainConfig(max_iters=40, batch_size=8, block_size=32, learning_rate=3e-3, warmup_iters=5,
                      eval_interval=40, eval_iters=1, progress=False, amp=False)
    torch.manual_seed(0)
    return train(GPT(config), ids, cfg).model.eval()


def test_int8_copy_predicts_like_the_original_in_less_space_and_leaves_it_untouched():
    model = trained_model()
    before = copy.deepcopy(model)
    quantized = costs.quantize_int8(model)
    seq = (torch.arange(8 * 33).view(8, 33) + torch.arange(8)[:, None]) % 11  # the pattern the model learned
    x, y = seq[:, :-1], seq[:, 1:]
    with torch.no_grad():
        logits, loss = model(x, y)
        q_logits, q_loss = quantized(x, y)
    assert loss < 1.0  # the model learned something, so the comparison means something
    assert abs(q_loss.item() - loss.item()) < 0.05
    assert (q_logits - logits).abs().mean() < 0.05 * logits.abs().mean()
    assert (q_logits.argmax(-1) == logits.argmax(-1)).float().mean() > 0.95
    assert costs.model_bytes(quantized) < 0.5 * costs.model_bytes(model)  # Linear layers dominate this model
    assert same_weights(model, before) and model.lm_head.weight is model.transformer.wte.weight
    assert type(model.lm_head) is torch.nn.Linear and type(quantized.lm_head) is not torch.nn.Linear
    ids = torch.arange(2000) % 11
    for m in (model, quantized):
        assert costs.inference_speed(m, ids, block_size=32, batch_size=4, batches=2) > 0
    with pytest.raises(ValueError, match="block_size"):
        costs.inference_speed(model, ids[:32], block_size=32, batch_size=4)


def test_model_bytes_counts_a_tied_matrix_once():
    model = GPT(TINY)
    n = model.num_params()
    assert 4 * n < costs.model_bytes(model) < 4 * n + 64 * 1024  # the tensors plus a little pickling overhead


def test_step_speed_times_a_copy_and_labels_the_setting():
    torch.manual_seed(0)
    model = GPT(TINY)
    before = copy.deepcopy(model)
    for amp in (False, True):  # the loop's autocast is for CUDA: on a CPU both run in fp32
        result = costs.step_speed(model, batch_size=2, block_size=16, steps=3, warmup=1, amp=amp, device="cpu")
        assert result["setting"] == "fp32" and result["tokens_per_s"] > 0 and result["compile_seconds"] == 0.0
        assert result["ms_per_step"] == pytest.approx(2 * 16 / result["tokens_per_s"] * 1000)
    assert same_weights(model, before)
    with pytest.raises(ValueError, match="warmup"):
        costs.step_speed(model, 2, 16, compile=True, warmup=0)


def test_step_clock_times_each_step_of_the_loop():
    from tlteach.train import TrainConfig, train

    clock = costs.StepClock(torch.device("cpu"))
    cfg = TrainConfig(max_iters=5, batch_size=2, block_size=8, eval_interval=10**9, progress=False)
    train(GPT(TINY), torch.randint(50, (500,)), cfg, hooks=[clock])
    assert len(clock.times) == 4 and all(t > 0 for t in clock.times)  # called before each of 5 steps


@pytest.mark.skipif(not (shutil.which(os.environ.get("CXX") or "g++") or shutil.which("clang++")),
                    reason="torch.compile's inductor backend generates C++ for the CPU: no C++ compiler here")
def test_step_speed_with_torch_compile_generating_kernels():
    model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, n_embd=8))
    result = costs.step_speed(model, batch_size=2, block_size=8, steps=1, warmup=1, compile=True, device="cpu")
    assert result["setting"] == "fp32 + torch.compile" and result["tokens_per_s"] > 0
    assert result["compile_seconds"] > 0


def test_cuda_peak_is_none_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present (see test_cuda_peak_sees_a_64_mb_tensor)")
    assert costs.cuda_peak(lambda: torch.ones(4)) is None


@CUDA
def test_cuda_peak_sees_a_64_mb_tensor_and_step_speed_uses_bf16():
    peak = costs.cuda_peak(lambda: torch.ones(16 * 2**20, device="cuda"))
    assert peak >= 64 * 2**20
    result = costs.step_speed(GPT(TINY), batch_size=2, block_size=16, steps=2, warmup=1, amp=True, device="cuda")
    bf16 = torch.cuda.is_bf16_supported()
    assert result["setting"] == ("CUDA bf16 autocast" if bf16 else "fp32") and result["tokens_per_s"] > 0


def test_activations_grow_with_the_batch_and_vanish_without_autograd():
    torch.manual_seed(0)
    model = GPT(TINY)
    one, four = (costs.activation_bytes(model, *batch(TINY, b)) for b in (1, 4))
    assert one > 0 and 3.5 * one < four <= 4.5 * one  # what autograd saves is per window
    with torch.no_grad():
        assert costs.activation_bytes(model, *batch(TINY, 4)) == 0  # nothing is kept for a backward pass


def test_memory_figure_stacks_the_parts():
    from tlteach import plots

    fig = plots.memory_figure({"full": {"weights": 4.0, "gradients": 4.0}, "LoRA": {"weights": 4.0}})
    ax = fig.axes[0]
    assert [round(p.get_width(), 1) for p in ax.patches] == [4.0, 4.0, 4.0, 0.0]
    assert fig.get_figwidth() <= plots.WIDTH
