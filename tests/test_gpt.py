"""The tiny GPT: shapes, causal masking, generation, GPT-2 conversion both ways, checkpoints."""

from __future__ import annotations

import pytest
import torch

from tlteach import checkpoint
from tlteach.gpt import GPT, GPTConfig, from_hf, to_hf
from tlteach.tokenizer import CharTokenizer

CFG = GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_embd=32)


def _random_model(seed: int = 0, cfg: GPTConfig = CFG) -> GPT:
    """A model whose every weight is random and large (not the near-zero init), to make tests bite."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def test_shapes_and_loss():
    model = _random_model()
    x = torch.randint(CFG.vocab_size, (3, 20))
    logits, loss = model(x, x)
    assert logits.shape == (3, 20, CFG.vocab_size)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model(x)[1] is None
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, CFG.block_size + 1, dtype=torch.long))


def test_fresh_model_predicts_near_uniform():
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    x, y = torch.randint(CFG.vocab_size, (2, 4, 16))
    _, loss = model(x, y)
    assert abs(loss.item() - torch.log(torch.tensor(CFG.vocab_size * 1.0)).item()) < 0.1


def test_causal_a_later_token_never_changes_earlier_logits():
    model = _random_model()
    x = torch.randint(CFG.vocab_size, (2, 16))
    y = x.clone()
    y[:, 9:] = torch.randint(CFG.vocab_size, (2, 7))
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[:, :9], b[:, :9], atol=1e-5)
    assert not torch.allclose(a[:, 9:], b[:, 9:], atol=1e-3)


def test_tied_embeddings_and_param_count():
    model = GPT(CFG)
    assert model.lm_head.weight is model.transformer.wte.weight
    expected_block = 4 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32)
    assert model.num_params() == 97 * 32 + 24 * 32 + 2 * expected_block + 2 * 32


def test_invalid_config():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)


@pytest.mark.parametrize("seed", [0, 1])
def test_conversion_to_transformers_and_back_gives_the_same_logits(seed):
    model = _random_model(seed)
    x = torch.randint(CFG.vocab_size, (2, 20))
    hf = to_hf(model)
    ours, _ = model(x)
    theirs = hf(x).logits
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    back = from_hf(hf).eval()
    assert torch.allclose(back(x)[0], ours, atol=1e-5)
    # the transformers copy generates exactly as ours does (greedy)
    prompt = x[:1, :5]
    assert torch.equal(hf.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0),
                       model.generate(prompt, 6, temperature=0))


def test_generate_top_k_and_temperature():
    model = _random_model()
    g = torch.Generator().manual_seed(0)
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 30, temperature=0.8, top_k=1, generator=g)
    greedy = model.generate(torch.zeros(1, 1, dtype=torch.long), 30, temperature=0)
    assert out.shape == (1, 31) and torch.equal(out, greedy)  # top-1 sampling is greedy
    longer = model.generate(torch.zeros(1, 1, dtype=torch.long), CFG.block_size + 5, generator=g)
    assert longer.shape == (1, CFG.block_size + 6)  # crops the context past block_size


def test_checkpoint_round_trip(tmp_path):
    model = _random_model()
    tok = CharTokenizer([chr(32 + i) for i in range(CFG.vocab_size)])
    checkpoint.save_model(model, tmp_path / "ckpt", tok, extra={"note": "hi"})
    back = checkpoint.load_model(tmp_path / "ckpt", config=CFG, tokenizer=tok).eval()
    x = torch.randint(CFG.vocab_size, (2, 10))
    assert torch.equal(back(x)[0], model(x)[0])
    assert back.lm_head.weight is back.transformer.wte.weight
    assert checkpoint.read_metadata(tmp_path / "ckpt")["extra"] == {"note": "hi"}
    assert (tmp_path / "ckpt" / "tokenizer.json").exists() and (tmp_path / "ckpt" / "config.json").exists()


def test_checkpoint_mismatch_says_which(tmp_path):
    model = _random_model()
    tok = CharTokenizer([chr(32 + i) for i in range(CFG.vocab_size)])
    path = checkpoint.save_model(model, tmp_path / "m.safetensors", tok)
    other = GPTConfig(vocab_size=97, block_size=24, n_layer=3, n_head=4, n_embd=32)
    with pytest.raises(ValueError, match="n_layer: checkpoint 2, asked 3"):
        checkpoint.load_model(path, config=other)
    other_tok = CharTokenizer([chr(33 + i) for i in range(CFG.vocab_size)])
    with pytest.raises(ValueError, match="fingerprint"):
        checkpoint.load_model(path, tokenizer=other_tok)
    small_tok = CharTokenizer([chr(32 + i) for i in range(50)])
    with pytest.raises(ValueError, match="vocab_size: checkpoint 97, given 50"):
        checkpoint.load_model(path, tokenizer=small_tok)


def test_not_a_checkpoint(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not a tlteach GPT checkpoint"):
        checkpoint.load_model(tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load_model(tmp_path / "missing")


def test_gelu_is_gpt2s_tanh_gelu_with_its_gradient():
    """The CPU's sigmoid form of GELU computes F.gelu(approximate="tanh") and its gradient, also for extreme
    inputs (where x^3 is huge), and the same under torch.func's vmap(grad) (EWC's per-example gradients, a stack)."""
    import torch.nn.functional as F

    from tlteach.gpt import GELU

    x = torch.cat([torch.randn(4096) * 3, torch.tensor([-1e4, -30.0, -5.0, 0.0, 5.0, 30.0, 1e4])]).requires_grad_()
    g = torch.randn_like(x)
    ours, ref = GELU()(x), F.gelu(x, approximate="tanh")
    assert torch.allclose(ours, ref, atol=2e-6, rtol=1e-6)
    (d_ours,), (d_ref,) = torch.autograd.grad(ours, x, g), torch.autograd.grad(ref, x, g)
    assert torch.allclose(d_ours, d_ref, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(d_ours).all()
    few = x.detach()[:12].view(3, 4).requires_grad_()
    per_example = torch.func.vmap(torch.func.grad(lambda v: GELU()(v).sum()))(few.detach())
    (expected,) = torch.autograd.grad(F.gelu(few, approximate="tanh").sum(), few)
    assert torch.allclose(per_example, expected, atol=1e-6)
