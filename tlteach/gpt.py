"""The tiny GPT, written from scratch, and its conversion to and from ``transformers``' GPT-2 (notebook 02).

Names follow GPT-2 (and nanoGPT): ``transformer.wte`` (token embedding), ``wpe`` (position embedding),
``h`` (the blocks: ``ln_1``, ``attn.c_attn``, ``attn.c_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``),
``ln_f`` and ``lm_head`` (tied to ``wte``). Attention goes through ``F.scaled_dot_product_attention``, so
CUDA gets flash attention. The GELU is GPT-2's tanh approximation, so the weights mean the same thing in
``transformers.GPT2LMHeadModel`` and the logits agree to float tolerance.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import flag, id_tensor, outside_vocab, real, whole

MAX_PARAMS = 10**10  # 40 GB of fp32 weights: far beyond any preset (the gpu one has 12.6 M), but a typo's size


@dataclass
class GPTConfig:
    """The architecture: sizes only (training settings live in ``train.TrainConfig``)."""

    vocab_size: int = 2048
    block_size: int = 128  # the longest context the position embedding covers
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # GPT-2 has biases in Linear and LayerNorm layers

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            # a numpy integer becomes a plain int (JSON, cache keys)
            setattr(self, name, whole(getattr(self, name), f"GPTConfig.{name}", 1))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head} (each head gets "
                             "n_embd // n_head dimensions); pick an n_head that divides n_embd")
        flag(self.bias, "GPTConfig.bias")
        n = self.n_params()
        if n > MAX_PARAMS:
            raise ValueError(f"this GPT would have {n:,} parameters ({4 * n / 2**30:,.0f} GiB of fp32 weights alone), "
                             f"more than the {MAX_PARAMS:,} this course's code is meant for; pick smaller n_layer, "
                             "n_embd, vocab_size or block_size")
        real(self.dropout, "GPTConfig.dropout", "in [0, 1)", 0.0, 1.0)

    def n_params(self) -> int:
        """The number of parameters this GPT has (tied ``lm_head`` counted once; notebook 02 counts them by hand)."""
        d, b = self.n_embd, int(self.bias)
        norm = d + b * d
        block = 2 * norm + (3 * d * d + b * 3 * d) + (d * d + b * d) + (4 * d * d + b * 4 * d) + (4 * d * d + b * d)
        return self.vocab_size * d + self.block_size * d + self.n_layer * block + norm

    @classmethod
    def from_preset(cls, preset, vocab_size: int | None = None) -> GPTConfig:
        """The model a preset asks for (``quick``, ``cpu``, ``gpu``)."""
        return cls(vocab_size=preset.vocab_size if vocab_size is None else vocab_size, block_size=preset.block_size,
                   n_layer=preset.n_layer, n_head=preset.n_head, n_embd=preset.n_embd)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """A config from a dict of config fields (``to_dict``'s); a key that is not a field is an error, so that a
        misspelt one (``n_heads``) is not silently left at its default."""
        if not isinstance(d, dict):
            raise TypeError(f"GPTConfig.from_dict needs a dict, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in d if k not in names)
        if unknown:
            raise ValueError(f"GPTConfig.from_dict got keys that are not config fields: {', '.join(unknown)}; "
                             f"the fields are {', '.join(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and earlier positions."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.causal = True  # a BERT-style encoder (tlteach.encoder, notebook 10) turns the mask off

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """``keys`` (B, T), True where a token may be attended to, masks padding out of a non-causal layer's
        attention (a causal layer's right padding comes after every real token, so it never needs one)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        mask = None if self.causal or keys is None else keys[:, None, None, :]  # (B, 1, 1, T): every query
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


_GELU_A = 2 * math.sqrt(2 / math.pi)  # GPT-2's GELU is x * sigmoid(A x + B x^3): (1 + tanh(u)) / 2 = sigmoid(2u)
_GELU_B = _GELU_A * 0.044715


class _SigmoidGELU(torch.autograd.Function):
    """GPT-2's GELU and its gradient written with a sigmoid, in place where it can be (see :class:`GELU`); it runs
    under ``torch.func``'s ``vmap`` and ``grad`` too (EWC's per-example gradients, a stack of runs)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = (x * x).mul_(_GELU_B).add_(_GELU_A).mul_(x).sigmoid_()
        return s * x, s  # the sigmoid too, kept for the backward pass

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: tuple) -> None:
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no tensor of zeros for the sigmoid's gradient
        ctx.save_for_backward(inputs[0], output[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        if grad is None:
            return None
        x, s = ctx.saved_tensors  # d/dx x s(z) = s (1 + (1 - s) x dz/dx), z = A x + B x^3
        t = (x * x).mul_(3 * _GELU_B).add_(_GELU_A).mul_(x)  # x dz/dx
        # t - t s: in place, but under vmap (which has no batching rule for addcmul_) into a new tensor
        batched = torch._C._functorch.is_functorch_wrapped_tensor(t)
        t = torch.addcmul(t, t, s, value=-1) if batched else t.addcmul_(t, s, value=-1)
        return t.add_(1).mul_(s).mul_(grad)


class GELU(nn.Module):
    """GPT-2's GELU, the tanh approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``"gelu_new"``;
    notebook 02 writes it out).

    On a CPU it is computed as ``x * sigmoid(2u)``, the same function (within 1e-6 in fp32), because torch's CPU
    ``tanh`` is about four times slower than its ``sigmoid``: with one thread, forward and backward take half the time
    of ``F.gelu(x, approximate="tanh")`` and a small GPT's training step 7-8% less (with two threads, 0-6% less;
    ``benchmarks/gelu_speed.py``). Elsewhere (a GPU, ``torch.compile``, other dtypes) it is ``F.gelu``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32 or torch.compiler.is_compiling():
            return F.gelu(x, approximate="tanh")
        return _SigmoidGELU.apply(x)[0]


class MLP(nn.Module):
    """Position-wise feed-forward: widen 4x, GELU, project back."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = GELU()  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), keys)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A GPT-2-style language model (notebook 02; fine-tuned in every later notebook)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied input and output embeddings
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (the tied output matrix counted once; optionally without the position embedding)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits ``(B, T, vocab)``, and the mean cross-entropy against ``targets`` when given."""
        self._check_ids(idx, targets)
        logits = self.lm_head(self.hidden(idx, checked=True))
        if targets is None:
            return logits, None
        # int32 ids embed as they are; the loss needs int64 targets
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1).long())
        return logits, loss

    def hidden(self, idx: torch.Tensor, keys: torch.Tensor | None = None, checked: bool = False) -> torch.Tensor:
        """The last block's output after ``ln_f``, ``(B, T, n_embd)``: what the output layer reads, and what a
        classifier head pools (notebook 10). ``keys``: see :class:`CausalSelfAttention`."""
        if not checked:
            self._check_ids(idx, None)
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x, keys)
        return self.transformer.ln_f(x)

    def _check_ids(self, idx: torch.Tensor, targets: torch.Tensor | None, any_length: bool = False) -> tuple[int, int]:
        """``(B, T)`` of a batch of token ids, or a clear error: a tensor of whole numbers, 2-D, not longer
        than ``block_size``, every id in ``[0, vocab_size)`` (targets may also be -100, cross-entropy's
        "ignore"). The value check is one comparison and one host sync; it is skipped for ids batched by ``vmap``."""
        V = self.config.vocab_size
        for name, t in (("idx", idx), ("targets", targets)):
            if t is None:
                continue
            id_tensor(t, name, "use torch.tensor([ids]) (a batch of one sequence)")
        if idx.dim() != 2:
            raise ValueError(f"idx must be 2-D (batch, time), got shape {tuple(idx.shape)}"
                             + ("; add a batch dimension with idx[None]" if idx.dim() == 1 else ""))
        B, T = idx.shape
        if B == 0 or T == 0:
            raise ValueError(f"idx is empty, shape {(B, T)}: give at least one sequence of at least one token")
        if T > self.config.block_size and not any_length:
            raise ValueError(f"sequence of length {T} is longer than the context, block_size={self.config.block_size}; "
                             f"keep the last block_size tokens (idx[:, -{self.config.block_size}:])")
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx, {tuple(idx.shape)}, got {tuple(targets.shape)}")
        given = {"idx": idx} if targets is None else {"idx": idx, "targets": targets}
        if not torch.compiler.is_compiling() and any(torch._C._functorch.is_functorch_wrapped_tensor(t)
                                                     for t in given.values()):
            return B, T  # batched by vmap (stack, EWC): a tensor's values cannot steer Python there
        outside = {name: ((t < 0) & (t != -100) if name == "targets" else t < 0) | (t >= V) for name, t in given.items()}
        if torch.stack([m.any() for m in outside.values()]).any():  # the one host sync
            name, t = next((n, given[n]) for n, m in outside.items() if m.any())
            raise outside_vocab(name, V, t.min().item(), t.max().item(), t[outside[name]].unique()[:5].tolist())
        return B, T

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``idx`` (B, T) by sampling ``max_new_tokens`` tokens (notebook 02).

        ``temperature`` < 1 sharpens the distribution, > 1 flattens it; ``top_k`` keeps only the k most
        likely tokens. ``temperature=0`` picks the most likely token (greedy).
        """
        self._check_generate(idx, max_new_tokens, temperature, top_k, generator)
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            cond = idx[:, -self.config.block_size:]
            logits, _ = self(cond)
            logits = logits[:, -1, :].float()
            if not bool(torch.isfinite(logits).all()):
                raise ValueError("the model's logits hold NaN or inf, so there is nothing to sample from: its weights "
                                 "hold NaN or inf (a run that diverged?); load a checkpoint saved before that")
            if temperature < torch.finfo(torch.float32).tiny:  # 0, or so small that it is greedy (and 0 in fp32)
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                # shift the best logit to 0 before dividing, so a tiny temperature gives -inf (probability 0)
                # for the others rather than inf - inf = NaN
                logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                probs = F.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs.cpu(), num_samples=1, generator=generator).to(idx.device)
            idx = torch.cat((idx, nxt), dim=1)
        self.train(was_training)
        return idx

    def _check_generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None,
                        generator: torch.Generator | None) -> None:
        """A clear error for a sampling setting :meth:`generate` cannot honour (the prompt itself: :meth:`_check_ids`)."""
        if isinstance(idx, torch.Tensor) and idx.dim() == 2:
            if idx.numel() == 0:
                raise ValueError(f"the prompt is empty, shape {tuple(idx.shape)}: give at least one token per row "
                                 "(for example the tokenizer's end-of-text id)")
        self._check_ids(idx, None, any_length=True)  # every id of the prompt: generate crops a long one itself
        whole(max_new_tokens, "max_new_tokens", 0)
        real(temperature, "temperature", "a finite number >= 0 (0 = greedy, 1 = the model's own distribution)",
             hint="; a negative one would favour the least likely tokens" if isinstance(temperature, numbers.Real)
             and temperature < 0 else "")
        if top_k is not None:
            whole(top_k, "top_k", 1, hint="; top_k keeps the k most likely tokens, None keeps them all")
        if generator is not None and not (isinstance(generator, torch.Generator) and generator.device.type == "cpu"):
            raise TypeError(f"generator must be a CPU torch.Generator (sampling draws on the CPU), got {generator!r}")


# ----------------------------------------------------------------------------- transformers' GPT-2
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def to_hf_config(config: GPTConfig, eos_token_id: int | None = None):
    """The ``transformers.GPT2Config`` describing the same architecture."""
    from transformers import GPT2Config

    return GPT2Config(vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
                      n_layer=config.n_layer, n_head=config.n_head, activation_function="gelu_new",
                      resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
                      layer_norm_epsilon=1e-5, bos_token_id=eos_token_id, eos_token_id=eos_token_id,
                      pad_token_id=eos_token_id, tie_word_embeddings=True)


def to_hf(model: GPT, eos_token_id: int | None = None):
    """A ``transformers.GPT2LMHeadModel`` with the same weights (notebook 02): same logits, usable by
    ``generate``, ``save_pretrained``, pipelines and ``peft``."""
    from transformers import GPT2LMHeadModel

    if not model.config.bias:
        raise ValueError("GPT-2 has biases; convert a model built with bias=True")
    hf = GPT2LMHeadModel(to_hf_config(model.config, eos_token_id))
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        sd[k] = v.t().contiguous() if k.endswith(_CONV1D) else v  # GPT-2's Conv1D stores (in, out)
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    missing = [m for m in missing if m != "lm_head.weight" and not m.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"conversion to GPT-2 failed: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf.to(next(model.parameters()).device).eval()


def _hf_differences(hf) -> list[str]:
    """What a ``GPT2LMHeadModel`` has that the course's GPT cannot represent, one phrase per field."""
    c, diffs = hf.config, []
    if c.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):  # both are GELU's tanh approximation
        diffs.append(f"activation_function={c.activation_function!r} (tlteach uses 'gelu_new')")
    if c.n_inner not in (None, 4 * c.n_embd):
        diffs.append(f"n_inner={c.n_inner} (tlteach's MLP is 4 * n_embd = {4 * c.n_embd} wide)")
    if c.layer_norm_epsilon != 1e-5:
        diffs.append(f"layer_norm_epsilon={c.layer_norm_epsilon} (tlteach's LayerNorm uses 1e-05)")
    for name, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                       ("reorder_and_upcast_attn", False), ("add_cross_attention", False),
                       ("tie_word_embeddings", True)):
        if getattr(c, name, want) != want:
            diffs.append(f"{name}={getattr(c, name)!r} (tlteach has {want})")
    if len({c.resid_pdrop, c.embd_pdrop, c.attn_pdrop}) > 1:
        diffs.append(f"resid_pdrop={c.resid_pdrop}, embd_pdrop={c.embd_pdrop}, attn_pdrop={c.attn_pdrop} "
                     "(tlteach has one dropout for all three)")
    head, wte = hf.lm_head.weight, hf.transformer.wte.weight
    if getattr(hf.lm_head, "bias", None) is not None or (head is not wte and not torch.equal(head, wte)):
        diffs.append("lm_head differs from transformer.wte (tlteach ties the output matrix to the token embedding)")
    return diffs


def from_hf(hf) -> GPT:
    """A tlteach :class:`GPT` from a ``transformers.GPT2LMHeadModel`` (the inverse of :func:`to_hf`). A model
    the course's GPT cannot represent exactly (another activation or LayerNorm epsilon, untied output
    matrix, other attention scaling, ...) is refused with a ``ValueError`` naming each field."""
    from transformers import GPT2LMHeadModel

    if not isinstance(hf, GPT2LMHeadModel):
        raise TypeError(f"from_hf converts a transformers GPT2LMHeadModel, got {type(hf).__name__}")
    diffs = _hf_differences(hf)
    if diffs:
        raise ValueError(f"cannot convert this GPT-2 exactly, the course's GPT does not model: {'; '.join(diffs)}")
    c = hf.config
    config = GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                       n_embd=c.n_embd, dropout=c.resid_pdrop, bias=True)
    model = GPT(config)
    sd = {k: (v.t().contiguous() if k.endswith(_CONV1D) else v) for k, v in hf.state_dict().items()
          if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict(sd, strict=True)
    return model.to(next(hf.parameters()).device)
