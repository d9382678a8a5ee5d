"""LoRA, low-rank adaptation (Hu et al. 2021), written from scratch and then with ``peft`` (notebook 07).

Fine-tuning changes a weight matrix ``W`` (out x in) by some ``dW``. LoRA bets that ``dW`` needs only a few
directions: it freezes ``W`` and learns ``dW = (alpha / r) * B @ A``, with ``A`` (r x in) and ``B`` (out x r)
for a small rank ``r``. A layer then computes ``W x + (alpha / r) * B (A x)``: ``r * (in + out)`` trainable
numbers instead of ``in * out``. ``B`` starts at zero, so the adapted model starts exactly where the base
model is; ``A`` starts random (as in ``peft``), so the gradient reaches ``B`` from the first step.

Because the base weights never change, one base can carry many small adapters: switch them off
(:func:`disabled`) to get the base back exactly, save only the adapter (:func:`save_adapter`, kilobytes),
or fold ``B @ A`` into ``W`` (:func:`merge_lora`) for a plain model with no extra cost at inference.
:func:`peft_lora` and :func:`copy_lora_to_peft` show that ``peft`` computes the very same thing.
"""

from __future__ import annotations

import copy
import json
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn

from .checkpoint import CHECKSUM, as_path, load_tensors, read_header, refuse_pickle, save_atomic, tensors_sha256
from .checks import flag, real, whole

TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # suffixes of module names in every block
FORMAT = "tlteach-lora/1"
ADAPTER = "adapter.safetensors"
BASE = "base_sha256"  # the metadata key of the fingerprint of the base weights an adapter was trained on


def _check_rank_alpha(r: int, alpha: float) -> None:
    """A clear error for a rank that is not a whole number >= 1, or an alpha that would switch the update off."""
    whole(r, "the LoRA rank r", 1)
    real(alpha, "the LoRA alpha", "a positive finite number (the update is scaled by alpha / r; alpha=0 switches "
         "the adapter off for good)", low_open=True, hint="; the usual choice is 2 * r")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / r) * B @ A`` (notebook 07)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_rank_alpha(r, alpha)
        if r > min(base.in_features, base.out_features):
            raise ValueError(f"the LoRA rank r={r} is above the layer's width ({base.in_features} in, "
                             f"{base.out_features} out): B @ A cannot have rank above "
                             f"{min(base.in_features, base.out_features)}; pick a smaller r")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and peft initialise it
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        self.enabled: bool = True
        self.merged: bool = False

    def delta_weight(self) -> torch.Tensor:
        """The update LoRA adds to the base weight: ``scaling * B @ A`` (out x in) (notebook 07)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.enabled and not self.merged:
            out = out + self.scaling * ((x @ self.lora_A.T) @ self.lora_B.T)  # two thin matmuls, never B @ A
        return out

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base.weight`` so the forward is one matmul (notebook 07)."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge` (up to float rounding) (notebook 07)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, enabled={self.enabled}, merged={self.merged}"


def _linear_names(model: nn.Module) -> list[str]:
    """The Linear layers' names, block numbers replaced by ``*`` (so a long model lists a short menu)."""
    names = (re.sub(r"\.\d+\.", ".*.", n) for n, m in model.named_modules() if isinstance(m, nn.Linear))
    return sorted(set(names))


def add_lora(model: nn.Module, r: int = 4, alpha: float | None = None, targets: Sequence[str] = TARGETS,
             train_embeddings: bool = False, train_norms: bool = False) -> nn.Module:
    """Wrap every ``nn.Linear`` whose name ends with one of ``targets`` in a :class:`LoRALinear` and freeze
    everything else, in place (notebook 07). ``alpha`` defaults to ``2 * r``. ``train_embeddings`` keeps the
    embeddings trainable (the output matrix is tied to ``wte``), ``train_norms`` the LayerNorms."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"add_lora adapts a torch model (nn.Module), got {type(model).__name__}")
    _check_rank_alpha(r, 1.0 if alpha is None else alpha)
    r = int(r)  # a numpy integer becomes a plain int (stored as JSON with the adapter)
    alpha = 2 * r if alpha is None else alpha
    flag(train_embeddings, "train_embeddings")
    flag(train_norms, "train_norms")
    if lora_layers(model):
        raise ValueError("the model already has LoRA layers; add_lora a fresh copy of the base (copy.deepcopy)")
    if not isinstance(targets, (str, list, tuple)):
        raise TypeError(f"targets must be a layer name or a list of them, such as {list(TARGETS)}, got {targets!r}")
    targets = (targets,) if isinstance(targets, str) else tuple(targets)  # one name is one target, not its letters
    if not all(isinstance(t, str) for t in targets):
        raise TypeError(f"targets must be layer names (str) such as {TARGETS}, got {targets!r}")
    if not targets:
        raise ValueError(f"targets is empty: name at least one of the model's Linear layers {_linear_names(model)}")
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = {}
    for t in targets:
        hits = [n for n in linears if n == t or n.endswith("." + t)]
        if not hits:
            raise ValueError(f"the target {t!r} matches no Linear layer; the model's are {_linear_names(model)}")
        chosen.update({n: linears[n] for n in hits})
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for name, m in chosen.items():  # before anything changes in the model
        if id(m.weight) in embeddings:
            raise ValueError(f"{name} shares its weight with the token embedding (tied weights): an adapter on it "
                             "would change the input embedding too once merged; leave it out of targets and use "
                             "train_embeddings=True to adapt the shared matrix")
        if r > min(m.in_features, m.out_features):
            raise ValueError(f"the LoRA rank r={r} is above the width of {name} ({m.in_features} in, {m.out_features} "
                             f"out): B @ A cannot have rank above {min(m.in_features, m.out_features)}; pick a smaller r")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, linear in chosen.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, LoRALinear(linear, r, alpha))
    for m in model.modules():
        if (train_embeddings and isinstance(m, nn.Embedding)) or (train_norms and isinstance(m, nn.LayerNorm)):
            m.requires_grad_(True)
    model.lora_config = {"r": r, "alpha": alpha, "targets": list(targets), "train_embeddings": train_embeddings,
                         "train_norms": train_norms}
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's LoRA layers by module name (notebook 07)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch model (nn.Module), got {type(model).__name__}")
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def trainable_counts(model: nn.Module) -> dict:
    """Trainable and total parameter counts (tied weights counted once) and the trainable fraction (notebook 07)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"trainable_counts counts a torch model's parameters (nn.Module), got {type(model).__name__}")
    params = list(model.parameters())  # deduplicates the tied wte / lm_head matrix
    trainable, total = sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
    return {"trainable": trainable, "total": total, "fraction": trainable / total if total else 0.0}


@contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Switch every adapter off inside the block, so the model is exactly the base; restored after (notebook 07)."""
    layers = list(lora_layers(model).values())
    if any(layer.merged for layer in layers):
        raise ValueError("some LoRA layers are merged into the base weights; unmerge() them before disabling")
    before = [layer.enabled for layer in layers]
    try:
        for layer in layers:
            layer.enabled = False
        yield model
    finally:
        for layer, was in zip(layers, before):
            layer.enabled = was


def merge_lora(model: nn.Module) -> nn.Module:
    """A plain copy of ``model`` with each update folded into its Linear: the same logits, no LoRA layers,
    every parameter trainable again; ``model`` itself is untouched (notebook 07)."""
    lora_layers(model)  # a clear error for something that is not a model
    merged = copy.deepcopy(model)
    for name, layer in lora_layers(merged).items():
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(merged.get_submodule(parent), child, layer.base)
    merged.__dict__.pop("lora_config", None)
    merged.requires_grad_(True)
    return merged


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What an adapter consists of: every ``lora_A``/``lora_B`` and every other trainable tensor (notebook 07)."""
    if not lora_layers(model):
        raise ValueError("the model has no LoRA layers; call add_lora(model) first")
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad or ".lora_" in n}


def base_fingerprint(model: nn.Module) -> str:
    """A SHA-256 of the frozen base weights (every parameter the adapter does not hold): it tells which base
    model an adapter was trained on, so :func:`load_adapter` can refuse another base of the same shape."""
    adapter = adapter_state_dict(model)
    return tensors_sha256({n: p for n, p in model.named_parameters() if n not in adapter})


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write only the adapter (with its r, alpha, targets, a checksum and the fingerprint of its base model) to a
    safetensors file, atomically (notebook 07). A path not ending in ``.safetensors`` is a folder (created if
    missing) that gets ``adapter.safetensors``."""
    path = as_path(path, "adapter")
    refuse_pickle(path, "save_adapter")
    if path.suffix.lower() != ".safetensors":
        path = path / ADAPTER
    state = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    if any(layer.merged for layer in lora_layers(model).values()):  # the base weights would include the update
        raise ValueError("some LoRA layers are merged into the base weights; unmerge() them before saving the adapter")
    meta = {"format": FORMAT, "config": json.dumps(getattr(model, "lora_config", {})), "names": json.dumps(list(state)),
            CHECKSUM: tensors_sha256(state), BASE: base_fingerprint(model)}
    return save_atomic(state, path, meta)


def load_adapter(model: nn.Module, path: str | Path, check_base: bool = True) -> nn.Module:
    """Load an adapter written by :func:`save_adapter` into a model that ``add_lora`` was applied to with the
    same settings; a ``ValueError`` says what differs (notebook 07). Nothing is unpickled. The adapter's
    checksum is verified, and so is its base: an adapter trained on another base model is refused unless
    ``check_base=False`` (an adapter saved before fingerprints existed loads with a warning)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_adapter(model, path) loads into a torch model, got {type(model).__name__} as model")
    flag(check_base, "check_base")
    path = as_path(path, "adapter")
    if path.is_dir():
        path = path / ADAPTER
    if not path.is_file():
        raise FileNotFoundError(f"no adapter at {path}; write one with save_adapter(model, path)")
    meta = read_header(path, "LoRA adapter")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tlteach LoRA adapter (format {meta.get('format')!r}, expected {FORMAT})")
    try:
        stored = json.loads(meta["config"])
    except (KeyError, ValueError) as e:
        raise ValueError(f"LoRA adapter {path} is corrupt: its settings in the header are unreadable") from e
    if not isinstance(stored, dict):
        raise ValueError(f"LoRA adapter {path} is corrupt: its settings are {stored!r}, not a dict")
    mine = getattr(model, "lora_config", None)
    if mine is None or not lora_layers(model):
        raise ValueError(f"the model has no LoRA layers; call add_lora(model, r={stored.get('r')}, "
                         f"alpha={stored.get('alpha')}, targets={stored.get('targets')}) first")
    if any(layer.merged for layer in lora_layers(model).values()):
        raise ValueError("some LoRA layers are merged into the base weights; unmerge() them before loading")
    diffs = [f"{k}: adapter {v!r}, model {mine.get(k)!r}" for k, v in stored.items() if mine.get(k) != v]
    if diffs:
        raise ValueError(f"the adapter at {path} was made with other LoRA settings ({'; '.join(diffs)}); "
                         "add_lora a fresh copy of the base with the adapter's settings")
    state, params = load_tensors(path, meta, "LoRA adapter"), adapter_state_dict(model)
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    wrong = [f"{k}: adapter {tuple(v.shape)}, model {tuple(params[k].shape)}" for k, v in state.items()
             if k in params and v.shape != params[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"the adapter at {path} does not fit this model: missing {missing}, unexpected {unexpected}, "
                         f"shapes {wrong}; was it trained on another base model?")
    if BASE not in meta:
        warnings.warn(f"the adapter at {path} records no fingerprint of its base model (saved by an older tlteach), "
                      "so it cannot be checked that this is the base it was trained on", stacklevel=2)
    elif check_base and meta[BASE] != (here := base_fingerprint(model)):
        raise ValueError(f"the adapter at {path} was trained on another base model (base fingerprint "
                         f"{meta[BASE][:12]}..., this model's {here[:12]}...): its update only "
                         "makes sense on that base; add_lora a copy of the base it was trained on, or pass "
                         "check_base=False to load it anyway")
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v)
    return model


# ----------------------------------------------------------------------------- the same with peft
def peft_lora_config(r: int = 4, alpha: float | None = None, targets: Sequence[str] = TARGETS, **extra):
    """The ``peft.LoraConfig`` matching :func:`add_lora` (no dropout, biases frozen, no task type) (notebook 07);
    ``extra`` goes to ``LoraConfig`` as it is (a ``transformers`` classifier's ``task_type="SEQ_CLS"``, notebook 10)."""
    from peft import LoraConfig

    _check_rank_alpha(r, 1.0 if alpha is None else alpha)
    targets = [targets] if isinstance(targets, str) else list(targets)  # one name is one target, not its letters
    return LoraConfig(r=r, lora_alpha=2 * r if alpha is None else alpha, target_modules=targets,
                      lora_dropout=0.0, bias="none", **extra)


def peft_lora(model: nn.Module, r: int = 4, alpha: float | None = None, targets: Sequence[str] = TARGETS,
              adapter_name: str = "default"):
    """``model`` with ``peft``'s LoRA on the same layers as :func:`add_lora` (notebook 07). peft modifies
    ``model`` in place: pass ``copy.deepcopy(base)`` if you need the original. No ``task_type``: the tiny
    GPT is not a ``transformers`` model, and ``peft_model(idx, targets)`` passes its arguments straight on.
    peft warns about an adapter name inside ``"lora_"`` (``"a"``, ``"r"``): pick words such as ``"news"``."""
    from peft import get_peft_model

    return get_peft_model(model, peft_lora_config(r, alpha, targets), adapter_name=adapter_name)


def copy_lora_to_peft(scratch_model: nn.Module, peft_model, adapter_name: str = "default") -> None:
    """Copy each :class:`LoRALinear`'s ``A`` and ``B`` into the peft adapter ``adapter_name``, so that the two
    models compute the same outputs (notebook 07)."""
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    theirs = {n: m for n, m in base.named_modules() if isinstance(m, LoraLayer) and adapter_name in m.lora_A}
    ours = lora_layers(scratch_model)
    if set(theirs) != set(ours):
        raise ValueError(f"the models adapt different layers: only scratch {sorted(set(ours) - set(theirs))}, "
                         f"only peft {sorted(set(theirs) - set(ours))} (adapter {adapter_name!r})")
    with torch.no_grad():
        for name, layer in ours.items():
            a, b = theirs[name].lora_A[adapter_name].weight, theirs[name].lora_B[adapter_name].weight
            if a.shape != layer.lora_A.shape or b.shape != layer.lora_B.shape:
                raise ValueError(f"{name}: peft's A {tuple(a.shape)}, B {tuple(b.shape)} but the scratch model's "
                                 f"A {tuple(layer.lora_A.shape)}, B {tuple(layer.lora_B.shape)}: use the same r")
            if not math.isclose(theirs[name].scaling[adapter_name], layer.scaling):
                raise ValueError(f"{name}: peft scales by {theirs[name].scaling[adapter_name]}, the scratch model by "
                                 f"{layer.scaling}: use the same alpha / r")
            a.copy_(layer.lora_A)
            b.copy_(layer.lora_B)
