"""The from-scratch losses (notebook 01) against PyTorch's, including extreme logits, and the logit
explorer's arithmetic (``losses.explorer_state``)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from tlteach import losses


def reference_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@pytest.mark.parametrize("shape", [(7, 11), (4, 16, 50), (2, 3, 5, 257)])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_cross_entropy_equals_torch(shape: tuple[int, ...], scale: float) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(shape, generator=g) * scale
    targets = torch.randint(shape[-1], shape[:-1], generator=g)
    ours = losses.cross_entropy(logits, targets)
    assert ours.shape == ()
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, reference_ce(logits, targets), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_gradient_equals_autograd(scale: float) -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 16, 50, generator=g) * scale
    targets = torch.randint(50, (4, 16), generator=g)
    by_hand = losses.cross_entropy_grad(logits, targets)
    for fn in (reference_ce, losses.cross_entropy):
        z = logits.clone().requires_grad_()
        fn(z, targets).backward()
        torch.testing.assert_close(by_hand, z.grad, rtol=0, atol=1e-7)
    torch.testing.assert_close(by_hand.sum(-1), torch.zeros(4, 16), rtol=0, atol=1e-6)


def test_gradient_is_exact_for_large_close_logits() -> None:
    # two logits near 1e4 that are close: float32 holds 1e4 only to ~0.001, so any formula that adds and
    # removes the maximum loses precision here; PyTorch's does not, and neither should ours
    logits = torch.tensor([[1e4, 1e4 - 0.5, 1e4 - 3.0, 0.0], [-1e4, -1e4 - 0.7, 5.0, -2e4]])
    targets = torch.tensor([1, 0])
    z = logits.clone().requires_grad_()
    F.cross_entropy(z, targets).backward()
    torch.testing.assert_close(losses.cross_entropy_grad(logits, targets), z.grad, rtol=0, atol=1e-7)
    torch.testing.assert_close(losses.log_softmax(logits), torch.log_softmax(logits, -1), rtol=0, atol=1e-5)


def test_gradient_formula_on_a_known_case() -> None:
    logits = torch.zeros(2, 4)  # uniform: p = 1/4 everywhere
    grad = losses.cross_entropy_grad(logits, torch.tensor([1, 3]))
    expected = torch.full((2, 4), 0.25)
    expected[0, 1] -= 1
    expected[1, 3] -= 1
    torch.testing.assert_close(grad, expected / 2)


def test_logsumexp_is_stable_at_large_logits() -> None:
    z = torch.tensor([[1e4, 1e4 - 1.0, 0.0], [-1e4, -1e4 - 1.0, -2e4]])
    expected = torch.tensor([1e4 + math.log1p(math.exp(-1.0)), -1e4 + math.log1p(math.exp(-1.0))])
    out = losses.logsumexp(z)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, torch.logsumexp(z, dim=-1))


def test_log_softmax_and_softmax_match_torch() -> None:
    z = torch.randn(8, 30, generator=torch.Generator().manual_seed(3)) * 1e3
    torch.testing.assert_close(losses.log_softmax(z), torch.log_softmax(z, -1), rtol=1e-6, atol=1e-3)
    p = losses.softmax(z)
    torch.testing.assert_close(p, torch.softmax(z, -1))
    torch.testing.assert_close(p.sum(-1), torch.ones(8))


def test_naive_log_softmax_fails_at_large_logits_and_agrees_on_small() -> None:
    small = torch.tensor([2.0, 1.0, 0.1])
    torch.testing.assert_close(losses.naive_log_softmax(small), losses.log_softmax(small))
    assert not torch.isfinite(losses.naive_log_softmax(torch.tensor([1000.0, 999.0, 0.0]))).any()
    assert torch.isnan(losses.naive_log_softmax(torch.tensor([-1000.0, -1001.0]))).all()
    assert torch.isfinite(losses.log_softmax(torch.tensor([1000.0, 999.0, 0.0]))).all()


@pytest.mark.parametrize("V", [2, 50, 1024])
def test_uniform_logits_have_perplexity_V(V: int) -> None:
    loss = losses.cross_entropy(torch.zeros(5, V), torch.randint(V, (5,)))
    assert math.isclose(float(loss), math.log(V), rel_tol=1e-6)
    assert math.isclose(losses.perplexity(loss), V, rel_tol=1e-5)
    assert losses.perplexity(0.0) == 1.0


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="disagree"):
        losses.cross_entropy(torch.randn(4, 8, 50), torch.randint(50, (4, 7)))
    with pytest.raises(ValueError):
        losses.cross_entropy(torch.randn(4, 50), torch.randint(50, (4, 1)))


@pytest.mark.parametrize("temperature", [0.1, 1.0, 7.0])
@pytest.mark.parametrize("target", [0, 2])
def test_explorer_state(temperature: float, target: int) -> None:
    logits = [2.0, -1.0, 0.5, 3.0]
    s = losses.explorer_state(logits, temperature, target)
    assert (s.target, s.temperature) == (target, temperature)
    assert math.isclose(sum(s.probs), 1.0, rel_tol=1e-12)
    assert all(p > 0 for p in s.probs)
    assert math.isclose(s.loss, -math.log(s.probs[target]), rel_tol=1e-12)
    expected = torch.softmax(torch.tensor(logits, dtype=torch.float64) / temperature, 0)
    assert torch.allclose(torch.tensor(s.probs, dtype=torch.float64), expected)
    # the gradient against autograd of -log_softmax(z / T)[target], PyTorch's and ours, temperature included
    for log_softmax in (lambda x: torch.log_softmax(x, 0), losses.log_softmax):
        z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        (-log_softmax(z / temperature)[target]).backward()
        torch.testing.assert_close(torch.tensor(s.grad, dtype=torch.float64), z.grad, rtol=0, atol=1e-12)
    assert math.isclose(s.perplexity, 1 / s.probs[target], rel_tol=1e-9)


def test_explorer_state_at_temperature_one_is_cross_entropy_of_one_token() -> None:
    z = torch.tensor([0.3, -2.0, 1.7, 0.0, 4.0])
    s = losses.explorer_state(z.tolist(), 1.0, 3)
    assert math.isclose(s.loss, float(losses.cross_entropy(z[None], torch.tensor([3]))), rel_tol=1e-6)
    torch.testing.assert_close(torch.tensor(s.grad, dtype=torch.float32),
                               losses.cross_entropy_grad(z[None], torch.tensor([3]))[0])


def test_explorer_state_extremes_and_shift_invariance() -> None:
    base = losses.explorer_state([1.0, 2.0, 3.0], 1.0, 0)
    shifted = losses.explorer_state([1001.0, 1002.0, 1003.0], 1.0, 0)
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(base.probs, shifted.probs, strict=True))
    huge = losses.explorer_state([1e4, 0.0], 1.0, 1)
    assert math.isfinite(huge.loss) and math.isclose(huge.loss, 1e4)


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(temperature=-1.0), dict(target=3), dict(target=-1),
                                 dict(logits=[1.0])])
def test_explorer_state_rejects_bad_input(bad: dict) -> None:
    kwargs = dict(logits=[1.0, 2.0, 3.0], temperature=1.0, target=0) | bad
    with pytest.raises(ValueError):
        losses.explorer_state(**kwargs)


@pytest.mark.parametrize("module", ["tlteach.losses", "tlteach.embeddings"])
def test_core_modules_import_no_view_library(module: str) -> None:
    # the core computes, the views draw: importing the arithmetic must not pull in matplotlib or ipywidgets
    code = (f"import sys, {module}; "
            "views = [m for m in ('matplotlib', 'ipywidgets', 'tlteach.plots', 'tlteach.widgets', 'tlteach.live') "
            "if m in sys.modules]; "
            "assert not views, views")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
