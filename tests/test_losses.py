"""The from-scratch losses (notebook 01) against PyTorch's, including extreme logits."""

from __future__ import annotations

import math

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
