"""A second round of hostile probes, with other values than the first (issue 17): int32 ids, tied weights, tiny
temperatures, a config changed after it was built, foreign optimizer groups, empty paths, lone surrogates. Each
case was a raw error from inside torch, tokenizers or pathlib, or a silent wrong result, before it was fixed."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from tlteach import checkpoint, data, ewc, lora, presets
from tlteach.checks import real
from tlteach.gpt import GPT, GPTConfig
from tlteach.methods import EWC, LoRA
from tlteach.tokenizer import get_tokenizer
from tlteach.train import TrainConfig, evaluate, train

CFG = GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16)
IDS = torch.randint(50, (400,), generator=torch.Generator().manual_seed(0))


def _model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(max_iters=3, batch_size=2, block_size=16, eval_interval=1, eval_iters=1,
                                 progress=False), **kw})


# ----------------------------------------------------------------------------- int32 token ids work everywhere
def test_int32_ids_train_evaluate_and_score_like_int64():
    m = _model()
    x = IDS[:16].view(1, 16)
    assert torch.equal(m(x, x)[1], m(x.int(), x.int())[1])
    assert evaluate(m, IDS.int(), 8, 2, 1) == evaluate(m, IDS, 8, 2, 1)
    r = train(_model(), IDS.int(), _cfg())
    assert r.steps == 3 and r.history["batch_loss"].iloc[1:].notna().all()  # step 0 has no batch yet


# ----------------------------------------------------------------------------- the Fisher's arguments
@pytest.mark.parametrize("kw, error, phrase", [
    (dict(ids=IDS + 100), ValueError, r"the text for the Fisher \(ids\) holds token ids outside \[0, vocab_size=50\)"),
    (dict(n_examples=2.5), TypeError, "n_examples must be a whole number, got 2.5"),
    (dict(n_examples="4"), TypeError, "n_examples must be a whole number, got '4'"),
    (dict(batch_size=None), TypeError, "batch_size must be a whole number, got None"),
    (dict(model="gpt"), TypeError, r"the Fisher needs the torch model \(nn.Module\)"),
])
def test_fisher_arguments(kw, error, phrase):
    args = dict(model=_model(), ids=IDS, n_examples=2)
    with pytest.raises(error, match=phrase):
        ewc.fisher_diagonal(**{**args, **kw})


@pytest.mark.parametrize("fisher, top, phrase", [
    ({"a": torch.tensor([math.inf, 1.0])}, None, "NaN, inf or negative"),
    ({"a": torch.tensor([-1.0, 3.0])}, None, "NaN, inf or negative"),
    ({"a": torch.tensor([1.0, 3.0])}, "0.1", r"top must be a number"),
    ({"a": torch.tensor([1.0, 3.0])}, 1.5, r"top must be a fraction of the entries, in \(0, 1\], got 1.5"),
])
def test_fisher_measures_refuse_what_no_fisher_holds(fisher, top, phrase):
    with pytest.raises((ValueError, TypeError), match=phrase):
        ewc.normalise(fisher) if top is None else ewc.concentration(fisher, top)


# ----------------------------------------------------------------------------- LoRA
def test_lora_refuses_the_tied_output_layer_whose_merge_would_change_the_embedding():
    m = _model()
    with pytest.raises(ValueError, match="lm_head shares its weight with the token embedding"):
        lora.add_lora(m, 2, targets="lm_head")
    assert not lora.lora_layers(m) and all(p.requires_grad for p in m.parameters())  # left alone


@pytest.mark.parametrize("call, error, phrase", [
    (lambda: lora.add_lora(_model(), 2, targets=None), TypeError, "targets must be a layer name or a list"),
    (lambda: lora.add_lora(_model(), 2, targets=5), TypeError, "targets must be a layer name or a list"),
    (lambda: lora.trainable_counts("x"), TypeError, r"trainable_counts counts a torch model's parameters"),
    (lambda: lora.merge_lora(None), TypeError, r"expected a torch model \(nn.Module\), got NoneType"),
    (lambda: lora.disabled("x").__enter__(), TypeError, r"expected a torch model \(nn.Module\), got str"),
    (lambda: LoRA(4) + LoRA(8), ValueError, r"lora appears twice in the combination \(lora \+ lora\)"),
    (lambda: EWC(10**400), ValueError, r"EWC\(lam=...\) must be a finite .* got an integer of 401 digits"),
])
def test_lora_and_method_arguments(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()


def test_save_adapter_refuses_a_pickle_name(tmp_path):
    m = lora.add_lora(_model(), 2)
    with pytest.raises(ValueError, match=r"save_adapter writes safetensors, not .pt pickles"):
        lora.save_adapter(m, tmp_path / "a.pt")
    assert not (tmp_path / "a.pt").exists()


# ----------------------------------------------------------------------------- generation
def test_a_tiny_temperature_is_greedy_and_nan_weights_are_named():
    m = _model().eval()
    prompt = torch.tensor([[1, 2, 3]])
    greedy = m.generate(prompt, 5, temperature=0)
    for t in (1e-40, 1e-300):
        assert torch.equal(m.generate(prompt, 5, temperature=t), greedy)
    with torch.no_grad():
        m.transformer.wte.weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="the model's logits hold NaN or inf"):
        m.generate(prompt, 2)


def test_a_long_prompt_is_checked_before_it_is_cropped():
    m = _model()
    prompt = torch.tensor([[99] + [1] * 20])  # longer than block_size=16; the bad id would be cropped away
    with pytest.raises(ValueError, match=r"idx holds token ids outside \[0, vocab_size=50\): \[99\]"):
        m.generate(prompt, 1)


def test_config_size_cap_and_from_preset_vocab():
    with pytest.raises(ValueError, match=r"this GPT would have [\d,]+ parameters .* pick smaller n_layer"):
        GPTConfig(n_layer=10**9)
    assert GPTConfig(n_layer=3, n_embd=32, n_head=2).n_params() == sum(
        p.numel() for p in GPT(GPTConfig(n_layer=3, n_embd=32, n_head=2)).parameters())
    with pytest.raises(ValueError, match="GPTConfig.vocab_size must be at least 1, got 0"):
        GPTConfig.from_preset(presets.get_preset("quick"), vocab_size=0)


# ----------------------------------------------------------------------------- the loop
@pytest.mark.parametrize("field, value, error, phrase", [
    ("eval_interval", 0, ValueError, "TrainConfig.eval_interval must be at least 1, got 0"),
    ("learning_rate", math.nan, ValueError, "TrainConfig.learning_rate must be a finite number >= 0, got nan"),
    ("beta1", 1.5, ValueError, r"TrainConfig.beta1 must be in \[0, 1\), got 1.5"),
    ("max_iters", "3", TypeError, "TrainConfig.max_iters must be a whole number, got '3'"),
    ("grad_clip", -1, ValueError, "TrainConfig.grad_clip must be a finite number >= 0"),
])
def test_a_config_changed_after_it_was_built_is_checked_when_training_starts(field, value, error, phrase):
    cfg = _cfg()
    setattr(cfg, field, value)
    with pytest.raises(error, match=phrase):
        train(_model(), IDS, cfg)


def test_min_lr_above_the_learning_rate_is_refused():
    with pytest.raises(ValueError, match="TrainConfig.min_lr=0.01 is above learning_rate=0.001"):
        _cfg(learning_rate=1e-3, min_lr=1e-2)


@pytest.mark.parametrize("groups, error, phrase", [
    ([], TypeError, "groups must be a non-empty list of dicts"),
    ("abc", TypeError, "groups must be a non-empty list of dicts"),
    ({"params": []}, TypeError, "groups must be a non-empty list of dicts"),
    ([{"lr_scale": 1.0}], TypeError, r"groups\[0\] must be a dict with a 'params' list"),
    ([{"params": "w"}], TypeError, r"groups\[0\]\['params'\] must be a list of the model's parameters"),
    ("other", ValueError, r"groups\[0\] holds parameters that are not the model's"),
])
def test_optimizer_groups_are_checked(groups, error, phrase):
    if groups == "other":
        groups = [{"params": list(_model(1).parameters())}]
    m = _model()
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(error, match=phrase):
        train(m, IDS, _cfg(), groups=groups)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))


@pytest.mark.parametrize("kw, error, phrase", [
    (dict(penalty=lambda m: None), TypeError, r"penalty\(model\) must return one number as a 0-D tensor.*None"),
    (dict(penalty=lambda m: torch.ones(3, requires_grad=True)), TypeError, r"a tensor of shape \(3,\)"),
    (dict(on_eval=lambda row: "no"), TypeError, r"on_eval\(row\) must return True \(stop training\), False or None"),
    (dict(batches=lambda g: (IDS[:16].view(1, 16),) * 3), TypeError,
     r"batches\(generator\) must return \(x, y\), two tensors of token ids, got tuple of 3"),
    (dict(batches=lambda g: None), TypeError, r"batches\(generator\) must return \(x, y\).*got NoneType"),
])
def test_plugs_that_return_the_wrong_thing(kw, error, phrase):
    args = dict(model=_model(), batches=IDS, cfg=_cfg())
    with pytest.raises(error, match=phrase):
        train(**{**args, **kw})


def test_evaluate_amp_is_a_switch():
    with pytest.raises(TypeError, match="amp must be True or False, got 'yes'"):
        evaluate(_model(), IDS, 8, 2, 1, amp="yes")


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("kw, error, phrase", [
    (dict(tokenizer="char"), TypeError, "tokenizer must be a tlteach tokenizer"),
    (dict(device="tpu"), ValueError, r"load_model\(device=...\): unknown device 'tpu'"),
    (dict(device=7), TypeError, "must be a device name such as 'cpu' or 'cuda'"),
])
def test_load_model_checks_its_tokenizer_and_device(tmp_path, kw, error, phrase):
    path = checkpoint.save_model(_model(), tmp_path / "m")
    with pytest.raises(error, match=phrase):
        checkpoint.load_model(path, **kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_load_model_on_a_missing_gpu_says_so(tmp_path):
    path = checkpoint.save_model(_model(), tmp_path / "m")
    with pytest.raises(ValueError, match="this machine has no CUDA GPU"):
        checkpoint.load_model(path, device="cuda")


def test_paths_empty_and_suffix_case(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for empty in ("", "   "):
        with pytest.raises(ValueError, match="the checkpoint path is empty"):
            checkpoint.save_model(_model(), empty)
    assert not list(tmp_path.iterdir())  # nothing written into the current folder
    written = checkpoint.save_model(_model(), tmp_path / "x.SAFETENSORS")
    assert written.is_file() and written.name == "x.SAFETENSORS"
    assert torch.equal(checkpoint.load_model(written).transformer.wte.weight, _model().transformer.wte.weight)


def test_saving_nan_weights_warns(tmp_path):
    m = _model()
    with torch.no_grad():
        m.transformer.h[0].mlp.c_fc.weight[0, 0] = math.nan
    with pytest.warns(RuntimeWarning, match=r"saving weights that hold NaN or inf \(transformer.h.0.mlp.c_fc.weight\)"):
        checkpoint.save_model(m, tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint.save_model(_model(), tmp_path / "ok")  # finite weights: no warning


# ----------------------------------------------------------------------------- text and presets
@pytest.mark.parametrize("call, phrase", [
    (lambda: get_tokenizer("char").encode("ab\ud800"), None),
    (lambda: data.load_text(text="ab \ud800 cd\n" * 100), r"the text holds '\\ud800' at character 3, a lone surrogate"),
])
def test_lone_surrogates_are_named(call, phrase):
    with pytest.raises(ValueError, match=phrase or "surrogate"):
        call()


def test_decode_refuses_unordered_ids_and_load_text_drops_a_bom():
    tok = get_tokenizer("char")
    for ids in ({1, 2}, {1: "a", 2: "b"}):
        with pytest.raises(TypeError, match="token ids must be a sequence of integers"):
            tok.decode(ids)
    text = "\ufeff" + "\n".join(f"line {i} of some text that is long enough" for i in range(40))
    first = data.load_text(text=text)["train"][0]["text"]
    assert not first.startswith("\ufeff") and first.startswith("line 0")


@pytest.mark.parametrize("kw, error, phrase", [
    (dict(n_layer=0), ValueError, "Preset.n_layer must be at least 1, got 0"),
    (dict(batch_size="x"), TypeError, "Preset.batch_size must be a whole number, got 'x'"),
    (dict(pretrain_lr=-1.0), ValueError, "Preset.pretrain_lr must be a finite learning rate > 0"),
])
def test_with_changes_checks_the_sizes(kw, error, phrase):
    with pytest.raises(error, match=phrase):
        presets.with_changes(presets.get_preset("quick"), **kw)


def test_a_cache_under_an_unknown_home_is_named(monkeypatch):
    from tlteach import cache

    monkeypatch.setenv("TLTEACH_CACHE", "~no_such_user_here_xyz/cache")
    with pytest.raises(OSError, match="TLTEACH_CACHE=~no_such_user_here_xyz/cache: cannot expand"):
        cache.cache_dir()


def test_real_refuses_ints_beyond_any_float():
    with pytest.raises(ValueError, match="got an integer of 401 digits"):
        real(10**400, "x", "a finite number >= 0")
