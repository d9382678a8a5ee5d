"""LoRA from scratch and with peft: the adapter's maths, what trains, disabling, merging, saving, peft agreement."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from tlteach import lora
from tlteach.gpt import GPT, GPTConfig
from tlteach.train import TrainConfig, train

CFG = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16)
X = torch.randint(50, (3, 8), generator=torch.Generator().manual_seed(1))


def base_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG).eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(X)[0]


def randomize_b(model, seed: int = 0) -> None:
    """Give every B random values, so the adapter actually changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora.lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def adapted(r: int = 4, alpha: float | None = None, seed: int = 0, **kw) -> tuple[GPT, GPT]:
    """A base model and a LoRA copy of it with random A and B."""
    base = base_model()
    model = lora.add_lora(copy.deepcopy(base), r=r, alpha=alpha, **kw)
    torch.manual_seed(seed)
    for layer in lora.lora_layers(model).values():
        torch.nn.init.kaiming_uniform_(layer.lora_A, a=5**0.5)
    randomize_b(model, seed)
    return base, model.eval()


def test_fresh_adapter_is_the_base_and_the_layer_computes_w_x_plus_scaled_b_a_x():
    base = base_model()
    model = lora.add_lora(copy.deepcopy(base), r=4, alpha=12)
    assert torch.equal(logits(model), logits(base))  # B = 0
    layer = model.transformer.h[0].mlp.c_fc
    assert isinstance(layer, lora.LoRALinear) and layer.scaling == 3.0
    layer.lora_B.data.normal_()
    x = torch.randn(5, 16)
    A, B = layer.lora_A.detach(), layer.lora_B.detach()
    expected = x @ layer.base.weight.T + layer.base.bias + 12 / 4 * (x @ A.T @ B.T)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.allclose(layer.delta_weight(), 3.0 * B @ A)
    assert not torch.allclose(layer(x), layer.base(x), atol=1e-3)


def test_only_the_adapters_are_trainable_and_their_count_is_r_times_in_plus_out():
    r, E = 4, CFG.n_embd
    sizes = [(E, 3 * E), (E, E), (E, 4 * E), (4 * E, E)]  # c_attn, attn.c_proj, c_fc, mlp.c_proj
    expected = CFG.n_layer * sum(r * (i + o) for i, o in sizes)
    model = lora.add_lora(base_model(), r=r)
    counts = lora.trainable_counts(model)
    assert counts["trainable"] == expected
    assert counts["total"] == GPT(CFG).num_params() + expected
    assert counts["fraction"] == pytest.approx(expected / counts["total"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 2 * 4 * CFG.n_layer and all(n.endswith(("lora_A", "lora_B")) for n in trainable)

    with_emb = lora.add_lora(base_model(), r=r, train_embeddings=True)
    emb = CFG.vocab_size * E + CFG.block_size * E  # wte (tied to lm_head, counted once) and wpe
    assert lora.trainable_counts(with_emb)["trainable"] == expected + emb
    with_norms = lora.add_lora(base_model(), r=r, train_norms=True)
    norms = (2 * CFG.n_layer + 1) * 2 * E  # ln_1, ln_2 per block and ln_f, weight and bias
    assert lora.trainable_counts(with_norms)["trainable"] == expected + norms


def test_add_lora_says_what_is_wrong():
    with pytest.raises(ValueError, match="at least 1"):
        lora.add_lora(base_model(), r=0)
    with pytest.raises(ValueError, match=r"'attn\.q_proj'.*'lm_head', 'transformer\.h\.\*\.attn\.c_attn'"):
        lora.add_lora(base_model(), targets=("attn.c_attn", "attn.q_proj"))
    model = lora.add_lora(base_model())
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.add_lora(model)


def training_run(model):
    ids = torch.randint(50, (400,), generator=torch.Generator().manual_seed(2))
    cfg = TrainConfig(max_iters=5, batch_size=4, block_size=8, progress=False, eval_interval=5, warmup_iters=1,
                      learning_rate=1e-2)
    return train(model, ids, cfg)


def test_training_changes_only_a_and_b():
    base = base_model()
    model = lora.add_lora(copy.deepcopy(base), r=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    training_run(model)
    for name, p in model.named_parameters():
        if name.endswith(("lora_A", "lora_B")):
            assert not torch.equal(p, before[name]), f"{name} did not train"
        else:
            assert torch.equal(p, before[name]), f"{name} changed"
    assert not torch.allclose(logits(model), logits(base))


def test_disabled_gives_the_base_exactly_and_is_restored_even_after_an_error():
    base = base_model()
    model = lora.add_lora(copy.deepcopy(base), r=4)
    training_run(model)
    tuned = logits(model)
    with lora.disabled(model):
        assert torch.equal(logits(model), logits(base))
    assert torch.equal(logits(model), tuned) and not torch.equal(tuned, logits(base))
    with pytest.raises(RuntimeError, match="boom"), lora.disabled(model):
        raise RuntimeError("boom")
    assert all(layer.enabled for layer in lora.lora_layers(model).values())
    assert torch.equal(logits(model), tuned)


def test_merge_lora_gives_a_plain_model_with_the_same_logits():
    _, model = adapted()
    merged = lora.merge_lora(model)
    assert not lora.lora_layers(merged) and isinstance(merged.transformer.h[1].attn.c_attn, torch.nn.Linear)
    assert torch.allclose(logits(merged), logits(model), atol=1e-5)
    assert merged.lm_head.weight is merged.transformer.wte.weight  # still tied
    layers = lora.lora_layers(model)  # the original keeps its (unmerged) adapters
    assert len(layers) == 4 * CFG.n_layer and not any(m.merged for m in layers.values())
    layer = model.transformer.h[0].attn.c_proj  # in-place merge on one layer, and back
    x = torch.randn(2, 16)
    out = layer(x)
    layer.merge()
    assert torch.allclose(layer(x), out, atol=1e-6)
    layer.unmerge()
    assert torch.allclose(layer(x), out, atol=1e-6)


def test_peft_computes_the_same_as_the_scratch_adapter():
    base, scratch = adapted(r=4, alpha=8)
    peft_model = lora.peft_lora(copy.deepcopy(base), r=4, alpha=8)
    assert torch.equal(logits(peft_model), logits(base))  # peft's B starts at zero too
    lora.copy_lora_to_peft(scratch, peft_model)
    assert torch.allclose(logits(peft_model), logits(scratch), atol=1e-5)
    assert not torch.allclose(logits(peft_model), logits(base), atol=1e-3)
    with peft_model.disable_adapter():
        assert torch.equal(logits(peft_model), logits(base))
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert (trainable, total) == (lora.trainable_counts(scratch)["trainable"], lora.trainable_counts(scratch)["total"])
    other = lora.peft_lora(copy.deepcopy(base), r=2)
    with pytest.raises(ValueError, match="same r"):
        lora.copy_lora_to_peft(scratch, other)


def test_save_and_load_adapter_round_trip_and_clear_errors(tmp_path):
    base, model = adapted()
    path = lora.save_adapter(model, tmp_path / "news")
    assert path == tmp_path / "news" / "adapter.safetensors" and path.is_file()
    assert not list(tmp_path.rglob("*.tmp"))
    assert set(lora.adapter_state_dict(model)) == {n for n, _ in model.named_parameters() if ".lora_" in n}
    fresh = lora.load_adapter(lora.add_lora(copy.deepcopy(base), r=4), path)
    assert torch.equal(logits(fresh), logits(model))

    with pytest.raises(ValueError, match="r: adapter 4, model 2"):
        lora.load_adapter(lora.add_lora(copy.deepcopy(base), r=2), path)
    with pytest.raises(ValueError, match="train_embeddings"):
        lora.load_adapter(lora.add_lora(copy.deepcopy(base), r=4, train_embeddings=True), path)
    with pytest.raises(ValueError, match="no LoRA layers"):
        lora.load_adapter(copy.deepcopy(base), path)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a tlteach LoRA adapter"):
        lora.load_adapter(lora.add_lora(copy.deepcopy(base)), other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="not a"):
        lora.load_adapter(lora.add_lora(copy.deepcopy(base)), junk)


def test_two_peft_adapters_on_one_base_switch_outputs():
    base, news = adapted(r=4, seed=1)
    _, poems = adapted(r=2, seed=2)
    peft_model = lora.peft_lora(copy.deepcopy(base), r=4, adapter_name="news")
    peft_model.add_adapter("poems", lora.peft_lora_config(r=2))
    lora.copy_lora_to_peft(news, peft_model, "news")
    lora.copy_lora_to_peft(poems, peft_model, "poems")
    wte = peft_model.get_base_model().transformer.wte.weight
    peft_model.set_adapter("news")
    under_news = logits(peft_model)
    peft_model.set_adapter("poems")
    under_poems = logits(peft_model)
    assert peft_model.get_base_model().transformer.wte.weight is wte  # the same base, never reloaded
    assert not torch.allclose(under_news, under_poems, atol=1e-3)
    assert torch.allclose(under_news, logits(news), atol=1e-5)
    assert torch.allclose(under_poems, logits(poems), atol=1e-5)
