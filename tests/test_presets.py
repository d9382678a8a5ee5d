"""Presets follow the device unless TLTEACH_PRESET says otherwise; the seed follows TLTEACH_SEED."""

from __future__ import annotations

import pytest
import torch

from tlteach import presets


def test_preset_follows_device(monkeypatch):
    monkeypatch.delenv("TLTEACH_PRESET", raising=False)
    monkeypatch.delenv("TLTEACH_DEVICE", raising=False)
    assert presets.get_preset(device="cuda").name == "gpu"
    assert presets.get_preset(device="cpu").name == "cpu"
    assert presets.get_preset(device="mps").name == "cpu"


def test_env_and_argument_override(monkeypatch):
    monkeypatch.setenv("TLTEACH_PRESET", "quick")
    assert presets.get_preset(device="cuda").name == "quick"
    assert presets.get_preset("gpu", device="cpu").name == "gpu"


def test_unknown_preset_lists_the_three(monkeypatch):
    monkeypatch.setenv("TLTEACH_PRESET", "huge")
    with pytest.raises(ValueError) as err:
        presets.get_preset()
    assert all(n in str(err.value) for n in ("quick", "cpu", "gpu"))


def test_presets_grow_with_budget():
    q, c, g = (presets.get_preset(n, device="cpu") for n in presets.PRESET_NAMES)
    for field in ("vocab_size", "n_embd", "block_size", "bigram_steps"):
        assert getattr(q, field) <= getattr(c, field) <= getattr(g, field)
    assert g.n_embd % g.n_head == 0 and c.n_embd % c.n_head == 0


def test_seed(monkeypatch):
    monkeypatch.setenv("TLTEACH_SEED", "7")
    assert presets.get_preset("quick").seed == 7
    monkeypatch.setenv("TLTEACH_SEED", "seven")
    with pytest.raises(ValueError, match="TLTEACH_SEED"):
        presets.get_seed()


def test_seed_everything_repeats():
    presets.seed_everything(3)
    a = torch.randn(5)
    g = presets.seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(3)))


def test_no_autocast_on_cpu():
    assert presets.get_preset("gpu", device="cpu").amp_dtype is None


@pytest.mark.parametrize("capability, bf16", [((7, 5), False), ((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_autocast_only_where_the_gpu_computes_it_natively(monkeypatch, capability, bf16):
    """A T4 (7.5) or V100 (7.0) only emulates bf16, slower than fp32: the course keeps them in fp32."""
    from tlteach import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation counts for torch
    assert presets.native_bf16() is bf16
    assert (presets.Preset("gpu", device="cuda", **presets.budget("gpu")).amp_dtype == torch.bfloat16) is bf16
    context = train.autocast_for(torch.device("cuda"))
    assert isinstance(context, torch.autocast) is bf16
