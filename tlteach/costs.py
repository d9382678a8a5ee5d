"""What fine-tuning costs: memory, speed and size, computed and then measured (notebook 09).

Memory. Training with AdamW keeps four numbers per parameter: the weight, its gradient and AdamW's two
moments (``exp_avg`` and ``exp_avg_sq``). In fp32 that is 4 + 4 + 8 = 16 bytes per parameter, so a 7B-parameter
model needs about 112 GB before a single activation is stored. Gradients and moments exist only for
*trainable* parameters: LoRA freezes the base, so it pays the 12 extra bytes only for its adapters (well under
1% of the parameters) and the frozen base can sit in bf16 (2 bytes). :func:`training_memory` does the
arithmetic, :func:`measured_state_bytes` counts the tensors PyTorch really allocated, :func:`step_rss` asks the
operating system how much the process grew, :func:`cuda_peak` asks the GPU. Activations (which grow with batch
size and context) are not in the arithmetic; a GPU's peak includes them, RSS after a step does not (freed by then).

Speed. :func:`step_speed` times steps of the course's one training loop. Mixed precision (bf16 autocast, which the
loop uses on a CUDA GPU) runs matmuls in 16 bits while the weights and AdamW stay fp32: on tensor cores that is
much faster.
``torch.compile`` fuses operations into generated kernels: it costs compile time once, then may run faster.

Compression. :func:`quantize_int8` stores each Linear weight as 8-bit integers plus a scale (dynamic
quantization: activations are quantized on the fly), a quarter of fp32's bytes, for inference on a CPU. It costs
a little accuracy; whether it is faster depends on the CPU and on the matrices (tiny ones gain nothing).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import gc
import io
import os
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn as nn

from .train import TrainConfig, autocast_for, make_optimizer, param_groups

GB = 1e9


# ----------------------------------------------------------------------------- memory: arithmetic
def training_memory(n_params: int, n_trainable: int, weight_bytes: int = 4, grad_bytes: int = 4,
                    optimizer_bytes: int = 8) -> dict[str, int]:
    """Bytes of weights, gradients and optimizer state for training with AdamW (notebook 09).

    Every parameter is stored (``weight_bytes`` each); only the ``n_trainable`` ones get a gradient
    (``grad_bytes``) and AdamW's two moments (``optimizer_bytes``: 2 x fp32). Activations are not included.
    """
    if not 0 <= n_trainable <= n_params:
        raise ValueError(f"n_trainable must lie in [0, n_params={n_params}], got {n_trainable}")
    out = {"weights": n_params * weight_bytes, "gradients": n_trainable * grad_bytes,
           "optimizer": n_trainable * optimizer_bytes}
    out["total"] = sum(out.values())
    return out


def extrapolate(n_params: float = 7e9, lora_fraction: float = 0.003, lora_rank: int = 8):
    """Weights, gradients and AdamW state in GB for full fine-tuning and LoRA of an ``n_params`` model (notebook 09).

    Assumptions, kept simple: AdamW's moments are always fp32 (8 bytes per trainable parameter); gradients
    have the dtype of the weights; "bf16 weights, no master copy" means the weights themselves are bf16 and
    updated in bf16; mixed-precision training as usually done keeps an fp32 master copy of the weights beside the
    bf16 ones (4 more bytes per parameter, counted with the weights in its row); LoRA trains ``lora_fraction`` of
    the parameter count in fp32 on top of a frozen bf16 base (r=8 on every Linear of a 7B Llama is about 20M
    parameters, 0.3%; on the attention's q and v only, 0.06%; ``lora_rank`` only names the row). No activations,
    no framework overhead, no CUDA context: real runs need more.
    """
    import pandas as pd

    n, n_lora = int(n_params), round(n_params * lora_fraction)
    base, adapters = training_memory(n, 0, weight_bytes=2), training_memory(n_lora, n_lora)
    rows = {
        "full fine-tuning (fp32 + AdamW)": training_memory(n, n),
        "full fine-tuning (mixed precision: bf16 weights + fp32 master copy, fp32 AdamW)":
            training_memory(n, n, weight_bytes=2 + 4, grad_bytes=2),
        "full fine-tuning (bf16 weights, no master copy, fp32 AdamW)": training_memory(n, n, weight_bytes=2,
                                                                                       grad_bytes=2),
        f"LoRA r={lora_rank} (frozen bf16 base)": {k: base[k] + adapters[k] for k in base},
    }
    table = pd.DataFrame({name: {f"{k} (GB)": v / GB for k, v in m.items()} for name, m in rows.items()})
    return table.T


# ----------------------------------------------------------------------------- memory: measured
def _storage_bytes(tensors, seen: set) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a tensor sharing a storage already in ``seen`` is free)."""
    total = 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.numel() > 0:
            s = t.untyped_storage()
            if s.data_ptr() not in seen:
                seen.add(s.data_ptr())
                total += s.nbytes()
    return total


def measured_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """What PyTorch really holds for training, found by walking the tensors (notebook 09): the distinct storages
    of the parameters, of their ``.grad`` and of the optimizer's state (tied weights count once). AdamW's
    ``step`` counters (one scalar per parameter tensor, a few bytes) are left out, as in :func:`training_memory`,
    whose keys this returns."""
    seen: set = set()
    params = list(model.parameters())
    moments = (v for state in optimizer.state.values() for k, v in state.items() if k != "step")
    out = {"weights": _storage_bytes(params, seen), "gradients": _storage_bytes((p.grad for p in params), seen),
           "optimizer": _storage_bytes(moments, seen)}
    out["total"] = sum(out.values())
    return out


def activation_bytes(model: nn.Module, batch_x: torch.Tensor, batch_y: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps from one forward pass for the backward pass: the activations
    (notebook 09). Counted as they are saved (``torch.autograd.graph.saved_tensors_hooks``), each storage once,
    the model's own parameters left out; they grow with the batch and the context, unlike the other three parts
    of training memory."""
    seen = {p.untyped_storage().data_ptr() for p in model.parameters()}
    device = next(model.parameters()).device  # the batch goes where the model is (a GPU, notebook 09)
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += _storage_bytes([t], seen)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(batch_x.to(device), batch_y.to(device))
    del loss
    return total


def one_step(model: nn.Module, batch_x: torch.Tensor, batch_y: torch.Tensor, lr: float = 1e-3) -> torch.optim.Optimizer:
    """One AdamW step with the loop's parameter groups and optimizer (``TrainConfig``'s defaults), so that
    gradients and optimizer state exist; returns the optimizer (notebook 09). The gradients are kept (not
    zeroed) so that they can be measured."""
    cfg = TrainConfig(learning_rate=lr)
    device = next(model.parameters()).device
    optimizer = make_optimizer(param_groups(model, cfg.weight_decay), cfg, device)
    model.train()
    _, loss = model(batch_x.to(device), batch_y.to(device))
    loss.backward()
    optimizer.step()
    return optimizer


def process_memory(release: bool = True) -> int | None:
    """This process's resident memory (RSS) in bytes, or None where the system cannot say (notebook 09).

    With ``release``, garbage is collected and the C allocator asked to hand freed memory back to the system
    first (glibc's ``malloc_trim``; it would otherwise keep some for reuse), so RSS shows what is in use.
    """
    if release:
        gc.collect()
        try:
            ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
        except (OSError, AttributeError, TypeError):  # no glibc (macOS, musl, Windows)
            pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # no psutil, or it cannot read this system
        return None  # resource.getrusage gives only the peak, not the current size


def step_rss(model: nn.Module, batch_x: torch.Tensor, batch_y: torch.Tensor, lr: float = 1e-3):
    """How much this process's RSS grows over :func:`one_step` on a CPU model, and the optimizer (notebook 09).

    The activations are freed by the end of the step, so the growth is about the gradients plus AdamW's state.
    A warm-up step on a tiny GPT runs first, so that the libraries' one-off start-up memory (kernels, thread
    pools) is not counted. GPU memory is not in RSS: for a model on a GPU the growth is None (the step still
    runs); there use :func:`cuda_peak`.
    """
    from .gpt import GPT, GPTConfig

    if next(model.parameters()).device.type != "cpu":
        return None, one_step(model, batch_x, batch_y, lr)

    tiny = GPT(GPTConfig(vocab_size=512, block_size=32, n_layer=1, n_head=2, n_embd=64))  # big enough for threads
    one_step(tiny, torch.randint(512, (4, 32)), torch.randint(512, (4, 32)))
    del tiny
    before = process_memory()
    optimizer = one_step(model, batch_x, batch_y, lr)
    after = process_memory()
    return (None if before is None or after is None else after - before), optimizer


def cuda_peak(fn: Callable[[], object]) -> int | None:
    """The most GPU memory PyTorch allocated while ``fn()`` ran, in bytes; None without CUDA (notebook 09)."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())


# ----------------------------------------------------------------------------- speed
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """A hook of the training loop that records the wall time of every step (notebook 09, benchmarks/):
    the loop calls it before each step, so the gap between two calls is one whole step."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self._last = device, [], None

    def __call__(self, step: int, model: nn.Module) -> None:
        _sync(self.device)
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def step_speed(model: nn.Module, batch_size: int, block_size: int, steps: int = 10, warmup: int = 2,
               amp: bool = False, compile: bool = False, device: str | torch.device | None = None) -> dict:
    """Tokens per second of the course's training loop (``train.train``: forward, backward, clipping, AdamW) on
    random tokens, timed step by step with :class:`StepClock` (notebook 09).

    A copy of ``model`` is trained, so ``model`` is untouched. The first ``warmup`` steps are not counted; with
    ``compile=True`` they include the compilation, and their time is returned as ``compile_seconds``. ``amp`` is
    the loop's bf16 autocast, which it uses on a CUDA GPU only; ``setting`` says what ran. The median step time
    gives ``ms_per_step``.
    """
    import statistics

    from .train import train

    device = torch.device(device) if device is not None else next(model.parameters()).device
    if steps < 1 or warmup < (1 if compile else 0):
        raise ValueError(f"need steps >= 1 and warmup >= {1 if compile else 0}, got steps={steps}, warmup={warmup}")
    model = copy.deepcopy(model).to(device)
    ids = torch.randint(model.config.vocab_size, (max(10 * batch_size * block_size, 2 * block_size),),
                        generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(max_iters=warmup + steps + 1, batch_size=batch_size, block_size=block_size, warmup_iters=1,
                      eval_interval=10**9, compile=compile, amp=amp, progress=False)
    clock = StepClock(device)
    train(model, ids, cfg, hooks=[clock])
    timed = clock.times[warmup:]
    median = statistics.median(timed)
    bf16 = isinstance(autocast_for(device, amp), torch.autocast)
    label = ("CUDA bf16 autocast" if bf16 else "fp32") + (" + torch.compile" if compile else "")
    return {"setting": label, "tokens_per_s": batch_size * block_size / median, "ms_per_step": 1000 * median,
            "compile_seconds": sum(clock.times[:warmup]) if compile else 0.0}


@torch.no_grad()
def inference_speed(model: nn.Module, ids: torch.Tensor, block_size: int, batch_size: int, batches: int = 10) -> float:
    """Tokens per second of eval-mode forward passes over windows of ``ids``, after one untimed batch (notebook 09)."""
    device = next(model.parameters()).device
    n = (batches + 1) * batch_size
    if len(ids) <= block_size:
        raise ValueError(f"ids has {len(ids)} tokens; windows of block_size={block_size} need more")
    starts = torch.linspace(0, len(ids) - block_size - 1, n).long()
    x = ids[starts[:, None] + torch.arange(block_size)].to(device).split(batch_size)
    was_training = model.training
    model.eval()
    model(x[0])
    _sync(device)
    t0 = time.perf_counter()
    for chunk in x[1:]:
        model(chunk)
    _sync(device)
    model.train(was_training)
    return batches * batch_size * block_size / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- compression
def quantize_int8(model: nn.Module) -> nn.Module:
    """An int8 copy of ``model`` for CPU inference: every ``nn.Linear`` dynamically quantized (notebook 09).

    The weights become int8 with a scale; activations are quantized on the fly at each matmul. The tied
    ``lm_head`` becomes an int8 copy of ``wte``'s matrix, while the embedding itself stays fp32 (lookups
    need no matmul): the tie is broken, harmless for inference, and :func:`model_bytes` counts both.
    ``model`` is untouched. Uses ``torch.ao.quantization``, which warns that it is moving to ``torchao``.
    """
    quantized = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():  # torch.ao.quantization warns that it is moving to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(quantized, {nn.Linear}, dtype=torch.qint8, inplace=True)


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's saved state dict (``torch.save`` into memory): shared tensors count once and int8
    packed weights count at their real size (notebook 09)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
