"""EWC: the Fisher against a by-hand one, the fast Fisher against the slow loop, the penalty and its gradient."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tlteach import ewc
from tlteach.gpt import GPT, GPTConfig
from tlteach.train import TrainConfig, train

CFG = GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=16)


class Bigram(nn.Module):
    """The smallest language model: logits = W[previous token]. Its Fisher can be written down by hand."""

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size)
        self.W = nn.Parameter(torch.randn(vocab_size, vocab_size, generator=torch.Generator().manual_seed(0)))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.W[idx]
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def _stream(n: int = 2000, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randint(vocab, (n,), generator=torch.Generator().manual_seed(seed))


def _gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG)


def _total(fisher: dict) -> float:
    return sum(float(f.double().sum()) for f in fisher.values())


def test_windows_are_seeded_shifted_slices_of_the_stream():
    ids = torch.arange(100) * 3
    x, y = ewc.windows(ids, 20, 5, seed=1)
    assert x.shape == y.shape == (20, 5)
    assert torch.equal(y, x + 3)  # the next token of each position
    assert torch.equal(x[:, 1:], x[:, :-1] + 3)  # contiguous windows
    assert torch.equal(x, ewc.windows(ids, 20, 5, seed=1)[0])
    assert not torch.equal(x, ewc.windows(ids, 20, 5, seed=2)[0])


def test_empirical_fisher_of_a_bigram_matches_the_formula():
    V, T, n = 4, 2, 30
    model = Bigram(V, T)
    ids = _stream(300, V)
    x, y = ewc.windows(ids, n, T, seed=0)
    p = F.softmax(model.W.detach(), dim=-1)
    expected = torch.zeros(V, V)
    for xi, yi in zip(x, y):  # d log p(y|x) / d W[x, j] = onehot(y)_j - p(x)_j, averaged over the window
        g = torch.zeros(V, V)
        for xt, yt in zip(xi, yi):
            g[xt] += (F.one_hot(yt, V).float() - p[xt]) / T
        expected += g**2
    expected /= n
    for got in (ewc.fisher_diagonal(model, ids, n, batch_size=7), ewc.fisher_reference(model, ids, n)):
        assert set(got) == {"W"}
        torch.testing.assert_close(got["W"], expected, rtol=1e-5, atol=1e-7)


def test_true_fisher_of_a_bigram_converges_to_the_expected_fisher():
    # block_size 1: E_y[(onehot(y)_j - p_j)^2] = p_j (1 - p_j) for y ~ p, weighted by how often each row x is seen
    V, n = 4, 4000
    model = Bigram(V, 1)
    ids = torch.arange(400) % V  # the observed next token is always x + 1: the empirical Fisher differs
    x, _ = ewc.windows(ids, n, 1, seed=0)
    p = F.softmax(model.W.detach(), dim=-1)
    freq = torch.bincount(x.flatten(), minlength=V).float() / n
    expected = freq[:, None] * p * (1 - p)
    true = ewc.fisher_diagonal(model, ids, n, kind="true", batch_size=500)["W"]
    torch.testing.assert_close(true, expected, rtol=0.1, atol=0.01)
    empirical = ewc.fisher_diagonal(model, ids, n)["W"]
    assert (empirical - expected).abs().max() > 0.05


@pytest.mark.parametrize("kind", ewc.KINDS)
def test_fast_fisher_equals_the_slow_loop_on_a_gpt(kind):
    torch.manual_seed(0)
    model, ids = GPT(GPTConfig(**{**CFG.to_dict(), "dropout": 0.1})), _stream()  # dropout must be off for it
    model.train()
    fast = ewc.fisher_diagonal(model, ids, 10, kind=kind, batch_size=4, seed=3, progress=True)
    assert model.training  # the mode is restored
    slow = ewc.fisher_reference(model, ids, 10, kind=kind, seed=3)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert list(fast) == list(slow) == trainable and "lm_head.weight" not in fast
    for n, p in model.named_parameters():
        assert fast[n].shape == p.shape and fast[n].dtype == torch.float32
        assert (fast[n] >= 0).all()
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-4, atol=1e-6 * float(slow[n].abs().max()) + 1e-12)
    assert all(p.grad is None for p in model.parameters())  # the reference leaves .grad alone
    assert _total(fast) > 0


def test_true_and_empirical_fishers_differ_and_frozen_parameters_are_left_out():
    model, ids = _gpt(), _stream()
    model.transformer.wpe.weight.requires_grad_(False)
    emp = ewc.fisher_diagonal(model, ids, 8, kind="empirical")
    true = ewc.fisher_diagonal(model, ids, 8, kind="true")
    assert "transformer.wpe.weight" not in emp and "transformer.wpe.weight" not in true
    assert not torch.allclose(emp["transformer.wte.weight"], true["transformer.wte.weight"])


def test_squared_mean_gradient_is_the_mistake_and_smaller():
    model, ids = _gpt(), _stream()
    fisher = ewc.fisher_diagonal(model, ids, 16)
    sq = ewc.squared_mean_gradient(model, ids, 16)
    assert list(sq) == list(fisher)
    for n in fisher:  # Jensen, entry by entry: mean(g)^2 <= mean(g^2)
        assert (sq[n] <= fisher[n] * (1 + 1e-4) + 1e-12).all()
    assert _total(sq) < 0.5 * _total(fisher)
    one = ewc.fisher_diagonal(model, ids, 1)  # with one example, mean of squares = square of mean
    for n, f in ewc.squared_mean_gradient(model, ids, 1).items():
        torch.testing.assert_close(f, one[n], rtol=1e-4, atol=1e-6 * float(one[n].abs().max()) + 1e-12)


def test_normalise_concentration_and_groups():
    g = torch.Generator().manual_seed(0)
    fisher = {"a": torch.rand(3, 4, generator=g), "b": torch.rand(7, generator=g) * 5}
    norm = ewc.normalise(fisher)
    assert torch.cat([f.flatten() for f in norm.values()]).mean() == pytest.approx(1.0, rel=1e-6)
    torch.testing.assert_close(norm["a"] / norm["b"][0], fisher["a"] / fisher["b"][0])  # only scaled

    flat = {"a": torch.ones(600), "b": torch.ones(20, 20)}
    assert ewc.concentration(flat, 0.1) == pytest.approx(0.1)
    spike = {"a": torch.zeros(600), "b": torch.zeros(20, 20)}
    spike["b"][3, 4] = 2.0
    assert ewc.concentration(spike, 0.1) == pytest.approx(1.0)
    assert ewc.concentration({"a": torch.tensor([1.0, 4.0, 2.0, 3.0])}, 0.25) == pytest.approx(0.4)

    model = _gpt()
    df = ewc.fisher_by_group(ewc.fisher_diagonal(model, _stream(), 8))
    assert list(df.index)[:3] == ["wte", "wpe", "h.0.ln_1"] and list(df.index)[-1] == "ln_f"
    assert {"h.0.attn.c_attn", "h.0.mlp.c_fc"} <= set(df.index)
    assert df.loc["h.0.attn.c_attn", "params"] == 16 * 48 + 48  # weight and bias together
    assert df["mass"].sum() == pytest.approx(1.0) and (df["mass"] >= 0).all()
    assert df["params"].sum() == model.num_params()
    assert (df["per_param"] * df["params"]).sum() == pytest.approx(model.num_params())  # mean 1 overall
    flat_groups = ewc.fisher_by_group(ewc.flat_fisher(model))
    assert flat_groups["per_param"].to_numpy() == pytest.approx(1.0)


def test_penalty_value_gradient_and_anchor():
    model, lam = _gpt(), 3.0
    g = torch.Generator().manual_seed(1)
    fisher = {n: torch.rand(p.shape, generator=g) for n, p in model.named_parameters()}
    penalty = ewc.EWCPenalty(model, fisher, lam)
    assert float(penalty(model).detach()) == 0.0 and penalty.drift(model) == 0.0
    old = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p += 0.01 * torch.randn(p.shape, generator=g)
    deltas = {n: p.detach() - old[n] for n, p in model.named_parameters()}  # theta - theta*, as stored
    by_hand = sum(float((fisher[n].double() * deltas[n].double() ** 2).sum()) for n in fisher)
    value = penalty(model)
    assert value.dim() == 0 and float(value.detach()) == pytest.approx(lam / 2 * by_hand, rel=1e-4)
    assert penalty.drift(model) == pytest.approx(by_hand, rel=1e-4)
    value.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, lam * fisher[n] * deltas[n], rtol=1e-5, atol=1e-9)
    flat = ewc.EWCPenalty(model, ewc.flat_fisher(model), 1.0)  # flat Fisher: half the squared L2 distance
    with torch.no_grad():
        model.transformer.wte.weight[0, 0] += 2.0
    assert float(flat(model).detach()) == pytest.approx(0.5 * 4.0, rel=1e-5)


def test_a_strong_penalty_keeps_training_near_the_anchor():
    model = _gpt()
    fisher = ewc.normalise(ewc.fisher_diagonal(model, _stream(seed=0), 16))
    new = torch.randint(10, (2000,), generator=torch.Generator().manual_seed(1))  # new text: other tokens
    cfg = TrainConfig(max_iters=25, batch_size=8, block_size=8, learning_rate=1e-2, warmup_iters=0,
                      eval_interval=25, eval_iters=1, progress=False)
    drifts = {}
    for lam in (0.0, 1000.0):
        m = copy.deepcopy(model)
        penalty = ewc.EWCPenalty(m, fisher, lam)
        train(m, new, cfg, penalty=penalty)
        drifts[lam] = penalty.drift(m)
    assert drifts[0.0] > 0 and drifts[1000.0] < 0.2 * drifts[0.0]


def test_clear_errors():
    model, ids = _gpt(), _stream()
    with pytest.raises(ValueError, match="unknown Fisher kind 'fisher'"):
        ewc.fisher_diagonal(model, ids, 4, kind="fisher")
    with pytest.raises(ValueError, match="n_examples"):
        ewc.fisher_diagonal(model, ids, 0)
    with pytest.raises(ValueError, match="5 tokens.*block_size"):
        ewc.fisher_diagonal(model, ids[:5], 4)
    with pytest.raises(ValueError, match="5 tokens"):
        ewc.windows(ids[:5], 4, 8)
    fisher = ewc.flat_fisher(model)
    with pytest.raises(ValueError, match="transformer.h.0.ln_1.bias"):
        ewc.EWCPenalty(model, {n: f for n, f in fisher.items() if n != "transformer.h.0.ln_1.bias"}, 1.0)
    with pytest.raises(ValueError, match="transformer.wpe.weight has shape"):
        ewc.EWCPenalty(model, {**fisher, "transformer.wpe.weight": torch.ones(3)}, 1.0)
    with pytest.raises(ValueError, match="lam"):
        ewc.EWCPenalty(model, fisher, -1.0)
    with pytest.raises(ValueError, match="zero everywhere"):
        ewc.normalise({"a": torch.zeros(3)})
