"""Bad input to the model, its checkpoints, GPT-2 conversion and LoRA gets a clear error (issue 17)."""

from __future__ import annotations

import copy
import json
import math
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tlteach import checkpoint, lora
from tlteach.gpt import GPT, GPTConfig, from_hf, to_hf

CFG = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16)


def model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG).eval()


# ----------------------------------------------------------------------------- GPTConfig
@pytest.mark.parametrize("kw, error, phrase", [
    (dict(n_head=0), ValueError, "n_head must be at least 1, got 0"),
    (dict(n_head=-2), ValueError, "n_head must be at least 1"),
    (dict(n_embd=30, n_head=4), ValueError, "divisible by n_head=4"),
    (dict(vocab_size=0), ValueError, "vocab_size must be at least 1"),
    (dict(block_size=-1), ValueError, "block_size must be at least 1"),
    (dict(n_layer=0), ValueError, "n_layer must be at least 1"),
    (dict(n_embd=0), ValueError, "n_embd must be at least 1"),
    (dict(n_layer=2.5), TypeError, "n_layer must be a whole number, got 2.5"),
    (dict(n_embd=128.0), TypeError, "n_embd must be a whole number"),
    (dict(vocab_size="100"), TypeError, "vocab_size must be a whole number, got '100'"),
    (dict(block_size=None), TypeError, "block_size must be a whole number"),
    (dict(n_head=True), TypeError, "n_head must be a whole number"),
    (dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
    (dict(dropout=-0.1), ValueError, "dropout"),
    (dict(dropout=float("nan")), ValueError, "dropout"),
    (dict(dropout="0.1"), TypeError, "dropout must be a number"),
    (dict(bias="yes"), TypeError, "bias must be True or False"),
])
def test_config_refuses_bad_sizes(kw, error, phrase):
    with pytest.raises(error, match=phrase):
        GPTConfig(**kw)


def test_config_takes_numpy_integers_as_plain_ints():
    c = GPTConfig(vocab_size=np.int64(50), n_embd=np.int32(16), n_head=2)
    assert type(c.vocab_size) is int and type(c.n_embd) is int
    json.dumps(c.to_dict())
    with pytest.raises(TypeError, match="needs a dict"):
        GPTConfig.from_dict([("n_head", 2)])


def test_config_from_dict_names_a_misspelt_key_instead_of_ignoring_it():
    good = GPTConfig(vocab_size=50, n_embd=16, n_head=2).to_dict()
    assert GPTConfig.from_dict(good) == GPTConfig(vocab_size=50, n_embd=16, n_head=2)
    with pytest.raises(ValueError, match="not config fields: n_heads.*the fields are"):
        GPTConfig.from_dict({**good, "n_heads": 4})


# ----------------------------------------------------------------------------- forward
ok = torch.randint(50, (2, 8), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("idx, targets, error, phrase", [
    (torch.full((2, 4), 50), None, ValueError, r"idx holds token ids outside \[0, vocab_size=50\): \[50\]"),
    (torch.tensor([[1, 2, 999]]), None, ValueError, r"outside \[0, vocab_size=50\).*max 999"),
    (torch.tensor([[1, -1, 3]]), None, ValueError, r"outside \[0, vocab_size=50\): \[-1\]"),
    (torch.tensor([[1, -100, 3]]), None, ValueError, "outside"),  # -100 is an ignored target, not an id
    (ok.float(), None, TypeError, "integer token ids.*torch.float32"),
    (ok.bool(), None, TypeError, "integer token ids"),
    (ok[0], None, ValueError, r"2-D \(batch, time\), got shape \(8,\); add a batch dimension"),
    (ok[None], None, ValueError, r"2-D \(batch, time\), got shape \(1, 2, 8\)"),
    (torch.zeros(1, 9, dtype=torch.long), None, ValueError, "length 9 is longer than the context, block_size=8"),
    (torch.zeros(1, 0, dtype=torch.long), None, ValueError, "idx is empty"),
    (torch.zeros(0, 4, dtype=torch.long), None, ValueError, "idx is empty"),
    ([[1, 2, 3]], None, TypeError, "idx must be a torch tensor of token ids, got list; use torch.tensor"),
    (ok, torch.full((2, 8), 50), ValueError, r"targets holds token ids outside \[0, vocab_size=50\)"),
    (ok, torch.full((2, 8), -3), ValueError, r"targets holds token ids outside.*\[-3\]"),
    (ok, ok.float(), TypeError, "targets must hold integer token ids"),
    (ok, ok.T.contiguous(), ValueError, r"targets must have the shape of idx, \(2, 8\), got \(8, 2\)"),
    (ok, ok.reshape(-1), ValueError, "targets must have the shape of idx"),
])
def test_forward_refuses_bad_ids(idx, targets, error, phrase):
    with pytest.raises(error, match=phrase):
        model()(idx, targets)


def test_forward_still_computes_the_same_for_valid_ids():
    m = model()
    logits, loss = m(ok, ok)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits.view(-1, 50), ok.view(-1)))
    masked = ok.clone()
    masked[:, :4] = -100  # cross-entropy's ignore_index still works
    _, part = m(ok, masked)
    assert torch.allclose(part, torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 50), ok[:, 4:].reshape(-1)))
    assert torch.equal(m(ok.int())[0], logits)  # int32 ids are ids too


# ----------------------------------------------------------------------------- generate
prompt = torch.tensor([[1, 2, 3]])


@pytest.mark.parametrize("kw, error, phrase", [
    (dict(temperature=-1.0), ValueError, "temperature must be a finite number >= 0.*got -1.0.*least likely"),
    (dict(temperature=float("nan")), ValueError, "temperature must be a finite number >= 0 .*got nan$"),
    (dict(temperature=float("inf")), ValueError, "temperature must be a finite number"),
    (dict(temperature="hot"), TypeError, "temperature must be a number"),
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be at least 0, got -1"),
    (dict(max_new_tokens=2.5), TypeError, "max_new_tokens must be a whole number"),
    (dict(top_k=0), ValueError, "top_k must be at least 1, got 0"),
    (dict(top_k=-5), ValueError, "top_k must be at least 1"),
    (dict(top_k=2.0), TypeError, "top_k must be a whole number"),
    (dict(generator=0), TypeError, "generator must be a CPU torch.Generator"),
    (dict(idx=torch.zeros(1, 0, dtype=torch.long)), ValueError, r"the prompt is empty, shape \(1, 0\)"),
    (dict(idx=torch.zeros(0, 3, dtype=torch.long)), ValueError, "the prompt is empty"),
    (dict(idx=torch.tensor([1, 2])), ValueError, "2-D.*add a batch dimension"),
    (dict(idx=torch.tensor([[1, 77]])), ValueError, r"outside \[0, vocab_size=50\)"),
    (dict(idx=torch.tensor([[1.0, 2.0]])), TypeError, "integer token ids"),
])
def test_generate_refuses_bad_settings(kw, error, phrase):
    args = dict(idx=prompt, max_new_tokens=3) | kw
    with pytest.raises(error, match=phrase):
        model().generate(**args)


def test_generate_keeps_its_valid_behaviour():
    m = model()
    assert torch.equal(m.generate(prompt, 0), prompt)
    greedy = m.generate(prompt, 5, temperature=0)
    assert torch.equal(m.generate(prompt, 5, temperature=0.7, top_k=1, generator=torch.Generator().manual_seed(0)),
                       greedy)
    long = torch.randint(50, (1, 20))  # a prompt longer than the context is cropped, as before
    assert m.generate(long, 2).shape == (1, 22)


# ----------------------------------------------------------------------------- checkpoints
def _saved(tmp_path, name: str = "m.safetensors"):
    m = model()
    return m, checkpoint.save_model(m, tmp_path / name)


def test_flipped_bytes_in_the_weights_are_caught(tmp_path):
    _, path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10  # a byte of the last tensor
    path.write_bytes(bytes(data))
    checkpoint.read_metadata(path)  # the header is intact
    with pytest.raises(ValueError, match=rf"checkpoint {path} is corrupt \(checksum"):
        checkpoint.load_model(path)


def test_a_changed_header_is_caught(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    at = data.index(b'n_layer\\": ') + len(b'n_layer\\": ')  # the config, a JSON string inside the header
    assert data[at:at + 1].isdigit()
    path.write_bytes(data[:at] + b"7" + data[at + 1:])  # same length: the file still parses
    for read in (checkpoint.read_metadata, checkpoint.load_model):
        with pytest.raises(ValueError, match=rf"checkpoint {path} is corrupt \(the checksum of its header"):
            read(path)


def test_a_checkpoint_without_checksum_still_loads(tmp_path):
    m, path = _saved(tmp_path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    del meta[checkpoint.CHECKSUM], meta[checkpoint.HEADER_CHECKSUM]
    old = tmp_path / "old.safetensors"
    save_file(state, str(old), metadata=meta)
    assert torch.equal(checkpoint.load_model(old)(ok)[0], m(ok)[0])


class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('UNPICKLED').write_text('oops')",))


def _pickle(path):
    torch.save({"w": torch.zeros(2)}, path)
    return path


def _raw_pickle(path):
    path.write_bytes(pickle.dumps(_Boom()))
    return path


@pytest.mark.parametrize("make, phrase", [
    (lambda p: _pickle(p / "model.pt"), "not a safetensors checkpoint but a PyTorch pickle"),
    (lambda p: _raw_pickle(p / "evil.safetensors"), "pickle.*pickles are not loaded"),
    (lambda p: (p / "x.safetensors").write_bytes(b"hello, this is just some random text!" * 5) and p / "x.safetensors",
     "not a safetensors checkpoint.*pickles are not loaded"),
    (lambda p: (p / "e.safetensors").write_bytes(b"") or p / "e.safetensors", "not a safetensors checkpoint"),
    (lambda p: (p / "u.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00\xff\xfe\xfd{}{}{}")
     and p / "u.safetensors", "not a safetensors checkpoint"),
    (lambda p: (p / "t.safetensors").write_bytes(_saved(p, "full.safetensors")[1].read_bytes()[:-50])
     and p / "t.safetensors", "not a safetensors checkpoint.*truncated"),
])
def test_files_that_are_not_checkpoints(tmp_path, monkeypatch, make, phrase):
    monkeypatch.chdir(tmp_path)
    path = make(tmp_path)
    for call in (checkpoint.load_model, checkpoint.read_metadata):
        with pytest.raises(ValueError, match=phrase) as info:
            call(path)
        assert "header too large" not in str(info.value) and "too small" not in str(info.value)
    assert not (tmp_path / "UNPICKLED").exists()


def test_checkpoint_paths_that_are_wrong(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="the folder holds no model.safetensors"):
        checkpoint.load_model(tmp_path / "empty")
    with pytest.raises(TypeError, match="checkpoint path must be a str or pathlib.Path, got GPT"):
        checkpoint.load_model(model())
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        checkpoint.load_model(_saved(tmp_path)[1], config=CFG.to_dict())


def test_saving_creates_missing_folders_and_refuses_the_impossible(tmp_path):
    m = model()
    deep = checkpoint.save_model(m, tmp_path / "a" / "b" / "m.safetensors")  # documented: folders are created
    assert torch.equal(checkpoint.load_model(deep)(ok)[0], m(ok)[0])
    assert checkpoint.save_model(m, tmp_path / "c" / "d") == tmp_path / "c" / "d" / "model.safetensors"
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        checkpoint.save_model(m, tmp_path / "file" / "m.safetensors")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        checkpoint.save_model(m, tmp_path / "file")
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        checkpoint.save_model(m, tmp_path / "dir.safetensors")
    with pytest.raises(ValueError, match="writes safetensors, not .pt pickles"):
        checkpoint.save_model(m, tmp_path / "m.pt")
    with pytest.raises(TypeError, match="saves a tlteach GPT, got PosixPath"):
        checkpoint.save_model(tmp_path / "m.safetensors", m)
    with pytest.raises(ValueError, match="lora.save_adapter"):
        checkpoint.save_model(lora.add_lora(model(), r=2), tmp_path / "l.safetensors")
    with pytest.raises(TypeError, match="extra must hold only JSON values"):
        checkpoint.save_model(m, tmp_path / "x.safetensors", extra={"f": object()})
    assert not list(tmp_path.rglob("*.tmp"))


# ----------------------------------------------------------------------------- from_hf
def _hf(**kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    base = dict(vocab_size=50, n_positions=8, n_embd=16, n_layer=1, n_head=2, activation_function="gelu_new",
                layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                eos_token_id=0)
    return GPT2LMHeadModel(GPT2Config(**(base | kw)))


@pytest.mark.parametrize("kw, phrase", [
    (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon=1e-06"),
    (dict(tie_word_embeddings=False), "tie_word_embeddings=False"),
    (dict(scale_attn_weights=False), "scale_attn_weights=False"),
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True"),
    (dict(reorder_and_upcast_attn=True), "reorder_and_upcast_attn=True"),
    (dict(activation_function="relu"), "activation_function='relu'"),
    (dict(n_inner=40), "n_inner=40"),
    (dict(attn_pdrop=0.1), "attn_pdrop=0.1"),
])
def test_from_hf_refuses_what_the_course_gpt_cannot_represent(kw, phrase):
    with pytest.raises(ValueError, match=f"cannot convert this GPT-2 exactly.*{phrase}"):
        from_hf(_hf(**kw))


def test_from_hf_refuses_an_untied_output_matrix_and_non_gpt2_models():
    hf = _hf(tie_word_embeddings=False)
    hf.config.tie_word_embeddings = True  # the config says tied, the weights differ
    with pytest.raises(ValueError, match="lm_head differs from transformer.wte"):
        from_hf(hf)
    with pytest.raises(TypeError, match="GPT2LMHeadModel, got GPT"):
        from_hf(model())
    back = from_hf(to_hf(model()))  # the round trip still works
    assert torch.allclose(back.eval()(ok)[0], model()(ok)[0], atol=1e-5)


# ----------------------------------------------------------------------------- LoRA
@pytest.mark.parametrize("kw, error, phrase", [
    (dict(r=0), ValueError, "at least 1, got 0"),
    (dict(r=-3), ValueError, "at least 1"),
    (dict(r=2.5), TypeError, "rank r must be a whole number"),
    (dict(r="4"), TypeError, "rank r must be a whole number, got '4'"),
    (dict(r=True), TypeError, "rank r must be a whole number"),
    (dict(r=17), ValueError, r"r=17 is above the width of transformer.h.0.attn.c_attn \(16 in, 48 out\)"),
    (dict(r=4, alpha=0), ValueError, "alpha must be a positive finite number.*got 0"),
    (dict(r=4, alpha=-8), ValueError, "alpha must be a positive"),
    (dict(r=4, alpha=float("nan")), ValueError, "alpha must be a positive"),
    (dict(r=4, alpha="8"), TypeError, r"alpha must be a number \(a positive finite number"),
    (dict(targets="attn.q_proj"), ValueError, r"'attn\.q_proj' matches no Linear layer.*'transformer\.h\.\*\.mlp\.c_fc'"),
    (dict(targets=()), ValueError, "targets is empty"),
    (dict(targets=(1, 2)), TypeError, "targets must be layer names"),
    (dict(train_embeddings="yes"), TypeError, "train_embeddings must be True or False"),
])
def test_add_lora_refuses_bad_settings_and_leaves_the_model_alone(kw, error, phrase):
    m = model()
    with pytest.raises(error, match=phrase):
        lora.add_lora(m, **kw)
    assert not lora.lora_layers(m) and all(p.requires_grad for p in m.parameters())


def test_a_single_target_string_is_one_target():
    m = lora.add_lora(model(), r=2, targets="attn.c_attn")
    assert sorted(lora.lora_layers(m)) == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert m.lora_config["targets"] == ["attn.c_attn"]
    assert lora.add_lora(model(), r=np.int64(2)).lora_config["r"] == 2
    assert lora.add_lora(model(), r=16, targets="attn.c_proj").lora_config["alpha"] == 32  # r = width is allowed
    with pytest.raises(ValueError, match="above the layer's width"):
        lora.LoRALinear(torch.nn.Linear(4, 8), r=5, alpha=1)
    with pytest.raises(ValueError, match="alpha must be a positive"):
        lora.LoRALinear(torch.nn.Linear(4, 8), r=2, alpha=0)


def _trained_adapter(tmp_path, base: GPT):
    m = lora.add_lora(copy.deepcopy(base), r=2)
    with torch.no_grad():
        for layer in lora.lora_layers(m).values():
            layer.lora_B.normal_()
    return m, lora.save_adapter(m, tmp_path / "adapter")


def test_an_adapter_refuses_another_base_of_the_same_shape(tmp_path):
    base, other = model(0), model(1)
    tuned, path = _trained_adapter(tmp_path, base)
    with pytest.raises(ValueError, match="was trained on another base model.*check_base=False"):
        lora.load_adapter(lora.add_lora(copy.deepcopy(other), r=2), path)
    forced = lora.load_adapter(lora.add_lora(copy.deepcopy(other), r=2), path, check_base=False)
    assert torch.equal(forced.transformer.h[0].attn.c_attn.lora_B, tuned.transformer.h[0].attn.c_attn.lora_B)
    same = lora.load_adapter(lora.add_lora(copy.deepcopy(base), r=2), path)
    assert torch.equal(same(ok)[0], tuned(ok)[0])
    with pytest.raises(TypeError, match="check_base must be True or False"):
        lora.load_adapter(lora.add_lora(copy.deepcopy(base), r=2), path, check_base="no")


def test_an_old_adapter_without_fingerprint_loads_with_a_warning(tmp_path):
    base = model(0)
    tuned, path = _trained_adapter(tmp_path, base)
    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    del meta[lora.BASE], meta[checkpoint.CHECKSUM], meta[checkpoint.HEADER_CHECKSUM]  # as an old file was written
    old = tmp_path / "old.safetensors"
    save_file(state, str(old), metadata=meta)
    with pytest.warns(UserWarning, match="records no fingerprint of its base model"):
        loaded = lora.load_adapter(lora.add_lora(copy.deepcopy(model(1)), r=2), old)
    assert torch.equal(loaded.transformer.h[1].mlp.c_fc.lora_B, tuned.transformer.h[1].mlp.c_fc.lora_B)


def test_a_corrupt_adapter_or_a_merged_model(tmp_path):
    base = model(0)
    tuned, path = _trained_adapter(tmp_path, base)
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="LoRA adapter .* is corrupt \\(checksum"):
        lora.load_adapter(lora.add_lora(copy.deepcopy(base), r=2), path)
    path.write_bytes(bytes(data[:-20]))
    with pytest.raises(ValueError, match="not a safetensors LoRA adapter.*truncated"):
        lora.load_adapter(lora.add_lora(copy.deepcopy(base), r=2), path)
    tuned.transformer.h[0].attn.c_attn.merge()
    with pytest.raises(ValueError, match="unmerge\\(\\) them before saving"):
        lora.save_adapter(tuned, tmp_path / "merged")
    assert math.isfinite(tuned(ok)[0].sum().item())
