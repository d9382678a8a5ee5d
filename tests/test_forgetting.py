"""Forgetting runs and their read-outs: methods, early-stopped trajectories, fronts, reference losses."""

from __future__ import annotations

import math

import pytest
import torch

from tlteach import cache, forgetting, lora, losses, methods, presets, replay, study, ulmfit
from tlteach.gpt import GPT, GPTConfig
from tlteach.methods import EWC, L2, Discriminative, Full, LoRA, Plugs, Replay, Unfreeze


def test_methods_are_checked_and_labelled():
    with pytest.raises(ValueError, match="lam > 0"):
        EWC(0.0)
    with pytest.raises(ValueError, match="rank >= 1"):
        LoRA(0)
    with pytest.raises(ValueError, match="positive"):
        Full(lr=0.0)
    with pytest.raises(ValueError, match="decay > 1"):
        Discriminative(1.0)
    with pytest.raises(ValueError, match="every >= 1"):
        Unfreeze(0)
    assert EWC(0.1).label == "ewc λ=0.1" and L2(0.1).label == "l2 λ=0.1"
    assert LoRA(4, embeddings=True, lr=1e-3).label == "lora r=4 +emb lr=1e-03"
    filled = LoRA(4).resolved({"lr": 1e-3, "steps": 50})
    assert (filled.lr, filled.steps, filled.alpha) == (1e-3, 50, 8.0)
    assert Full().resolved({"lr": 1e-3, "steps": 50}) == Full(lr=1e-3, steps=50)
    assert EWC(0.1).describe() == {"kind": "ewc", "lr": None, "steps": None, "lam": 0.1}
    assert EWC(0.1).needs_fisher and not L2(0.1).needs_fisher


def test_methods_compose():
    both = EWC(0.03) + Replay(0.25)
    assert both.kind == "ewc+replay" and both.label == "ewc λ=0.03 + replay 25%" and both.needs_fisher
    assert (both + Full()).parts == (EWC(0.03), Replay(0.25), Full())  # a sum of sums is flat
    assert (EWC(0.03, lr=3e-3) + Replay(0.25)).lr == 3e-3  # the schedule the parts agree on
    with pytest.raises(ValueError, match="different lr"):
        EWC(0.03, lr=3e-3) + Replay(0.25, lr=1e-3)
    resolved = both.resolved({"lr": 1e-3, "steps": 50})
    assert resolved.parts[0].lr == resolved.lr == 1e-3 and resolved.steps == 50
    assert resolved.describe()["parts"][1] == {"kind": "replay", "lr": 1e-3, "steps": 50, "share": 0.25}

    # the plugs add up: penalties sum, hooks concatenate, one method's batches are kept
    a = Plugs(penalty=lambda m: torch.tensor(1.0), hooks=("h1",))
    b = Plugs(penalty=lambda m: torch.tensor(2.0), batches="mix", hooks=("h2",), adapters=True)
    c = a + b
    assert float(c.penalty(None)) == 3.0 and c.batches == "mix" and c.hooks == ("h1", "h2") and c.adapters
    with pytest.raises(ValueError, match="both set the loop's batches"):
        b + Plugs(batches="other")
    with pytest.raises(ValueError, match="both set the loop's groups"):
        Plugs(groups=[{}]) + Plugs(groups=[{}])


def _record(targets, sources):
    return {"history": {"step": list(range(len(targets))), "target": targets, "source": sources}}


def test_source_at_target_follows_the_run_and_interpolates():
    rec = _record([5.0, 4.0, 3.0], [4.0, 4.5, 5.5])
    assert forgetting.source_at_target(rec, 5.5) == 4.0  # reached before any step
    assert forgetting.source_at_target(rec, 4.0) == 4.5
    assert forgetting.source_at_target(rec, 3.5) == pytest.approx(5.0)  # half way between 4.5 and 5.5
    assert math.isnan(forgetting.source_at_target(rec, 2.0))  # never reached


def test_frontier_and_pareto_front():
    targets, sources = [3.0, 4.0, 5.0, 4.5], [6.0, 5.0, 4.0, 5.5]
    assert forgetting.frontier_at(targets, sources, 4.0) == 5.0
    assert forgetting.frontier_at(targets, sources, 3.5) == pytest.approx(5.5)
    assert forgetting.frontier_at(targets, sources, 6.0) == 4.0  # a run that learned more than asked counts
    assert math.isnan(forgetting.frontier_at(targets, sources, 2.0))
    assert list(forgetting.pareto_front(targets, sources)) == [0, 1, 2]  # (4.5, 5.5) is beaten by (4.0, 5.0)


def test_bigram_loss_by_hand():
    train = torch.tensor([0, 1, 0, 1, 0, 2])
    ev = torch.tensor([0, 1, 2])
    # counts after 0: {1: 2, 2: 1}; after 1: {0: 2}; add-alpha smoothing over V = 3
    a, V = 0.5, 3
    p01 = (2 + a) / (3 + V * a)
    p12 = (0 + a) / (2 + V * a)
    expected = -(math.log(p01) + math.log(p12)) / 2
    assert losses.bigram_loss(train, ev, V, alpha=a) == pytest.approx(expected)
    pattern = torch.arange(4000) % 7
    assert losses.bigram_loss(pattern, pattern, 7) < 0.05 < losses.unigram_loss(pattern, pattern, 7)


def test_best_bigram_picks_the_smoothing_that_fits():
    g = torch.Generator().manual_seed(0)
    pattern = torch.arange(4000) % 7
    loss, alpha = losses.best_bigram_loss(pattern, pattern, 7)
    assert alpha == min(losses.ALPHAS)  # a deterministic sequence wants the least smoothing
    assert loss == pytest.approx(losses.bigram_loss(pattern, pattern, 7, alpha))
    # few counts of many pairs, evaluated on fresh draws: heavier smoothing wins, and the best is the lowest
    train, ev = torch.randint(0, 50, (300,), generator=g), torch.randint(0, 50, (3000,), generator=g)
    loss, alpha = losses.best_bigram_loss(train, ev, 50)
    assert alpha == max(losses.ALPHAS)
    assert all(loss <= losses.bigram_loss(train, ev, 50, a) for a in losses.ALPHAS)


def test_relative_change_per_module():
    torch.manual_seed(0)
    a = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8))
    b = GPT(a.config)
    b.load_state_dict(a.state_dict())
    assert all(v == 0 for v in forgetting.relative_change(a, b).values())
    with torch.no_grad():
        b.transformer.h[0].mlp.c_fc.weight.mul_(1.5)  # weight moves by half its norm; bias unchanged
    change = forgetting.relative_change(a, b)
    fc = a.transformer.h[0].mlp.c_fc
    expected = 0.5 * fc.weight.norm() / torch.sqrt(fc.weight.norm() ** 2 + fc.bias.norm() ** 2)
    expected = float(expected.detach())
    assert change["h.0.mlp.c_fc"] == pytest.approx(expected, rel=1e-5)
    assert change["wte"] == 0 and set(change) >= {"wte", "wpe", "h.0.attn.c_attn", "ln_f"}


def _tiny():
    quick = presets.get_preset("quick", device="cpu")
    return presets.with_changes(quick, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, pretrain_iters=8,
                                eval_interval=4, eval_iters=1, seed=0)


TINY = dict(steps=20, lr=3e-3, lrs=(1e-3, 3e-3), batch_size=4, eval_interval=5, eval_iters=2, fisher_examples=8,
            lams=(1.0,), ranks=(2,))


def test_forgetting_runs_measure_both_domains_and_are_cached(study_cache):
    p = _tiny()
    full = forgetting.forgetting_run(Full(), p, settings=TINY)
    h = forgetting.history(full)
    assert list(h.step) == [0, 5, 10, 15, 20]
    assert full["forgetting"] == pytest.approx(full["source_after"] - full["source_before"])
    assert full["learning"] == pytest.approx(full["target_before"] - full["target_after"])
    assert full["learning"] > 0  # 20 steps at a high rate on the target do lower its loss
    assert full["trainable"] == study.source_model("shakespeare", p).num_params()
    assert forgetting.forgetting_run(Full(lr=3e-3), p, settings=TINY) == full  # same run, from the cache
    tuned, start = forgetting.run_model(Full(), p, settings=TINY), study.source_model("shakespeare", p)
    assert not torch.equal(tuned.transformer.wte.weight, start.transformer.wte.weight)
    after = forgetting.evaluate_both(tuned, p, settings=TINY)
    assert after["source"] == pytest.approx(full["source_after"], abs=1e-5)

    held = forgetting.forgetting_run(L2(1e4), p, settings=TINY)
    assert max(held["change"].values()) < 0.05 * max(full["change"].values())  # the pull holds every weight
    strong = forgetting.forgetting_run(EWC(1e4), p, settings=TINY)
    assert sum(strong["change"].values()) < 0.5 * sum(full["change"].values())  # holds the weights that matter
    assert len(list((study_cache / "fisher").glob("*.safetensors"))) == 1
    fisher = methods.source_fisher(p, settings=TINY)
    assert list(fisher) == [n for n, _ in start.named_parameters()]  # in the model's order, as computed
    assert sum(float(f.sum()) for f in fisher.values()) == pytest.approx(start.num_params(), rel=1e-4)  # mean 1

    adapted = forgetting.forgetting_run(LoRA(2), p, settings=TINY)
    assert adapted["trainable"] == lora.trainable_counts(lora.add_lora(start, r=2))["trainable"]
    merged = forgetting.run_model(LoRA(2), p, settings=TINY)
    fresh = study.source_model("shakespeare", p)
    assert torch.equal(merged.transformer.wte.weight, fresh.transformer.wte.weight)  # frozen under LoRA
    assert not torch.equal(merged.transformer.h[0].mlp.c_fc.weight, fresh.transformer.h[0].mlp.c_fc.weight)
    cache.clear("forgetting")
    torch.rand(1000)  # whatever ran before in the process must not change a rebuilt run
    again = forgetting.forgetting_run(LoRA(2), p, settings=TINY)
    assert again["history"]["target"] == adapted["history"]["target"] and again["change"] == adapted["change"]
    table = forgetting.table([full, strong, adapted])
    assert list(table.kind) == ["full", "ewc", "lora"] and (table.forgetting == table.source_after
                                                            - table.source_before).all()


def test_ulmfit_layers_groups_and_unfreezing():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=3, n_head=2, n_embd=8))
    layers = ulmfit.layers(model)
    assert len(layers) == 3 + 2  # ln_f, three blocks, the embeddings
    assert sum(p.numel() for ps in layers for p in ps) == model.num_params()  # every weight once (tied head)
    groups = ulmfit.scaled_groups(model, [2.6 ** -d for d in range(len(layers))])
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    emb = next(g for g in groups if any(p is model.transformer.wte.weight for p in g["params"]))
    assert emb["lr_scale"] == pytest.approx(2.6 ** -4) and emb["weight_decay"] > 0
    unfreeze = ulmfit.Unfreezer(model, every=10)
    trainable = lambda: [all(p.requires_grad for p in ps) for ps in layers]  # noqa: E731
    assert trainable() == [True, False, False, False, False]
    unfreeze(11, model)
    assert trainable() == [True, True, False, False, False]
    unfreeze(41, model)
    assert all(trainable())


def test_replay_mixes_source_windows_into_every_batch():
    target, source = torch.zeros(500, dtype=torch.long), torch.ones(500, dtype=torch.long)
    batches = replay.replay_batches(target, source, 0.25, block_size=8, batch_size=8)
    x, y = batches(torch.Generator().manual_seed(0))
    assert x.shape == (8, 8) and (x.sum(dim=1) > 0).sum() == 2  # two of eight windows are source text
    with pytest.raises(ValueError, match="no source window"):
        replay.replay_batches(target, source, 0.01, 8, 8)
    with pytest.raises(ValueError, match="replay"):
        Replay(1.0)


def test_ulmfit_and_replay_runs(study_cache):
    p = _tiny()
    full = forgetting.forgetting_run(Full(), p, settings=TINY)
    late = forgetting.forgetting_run(Unfreeze(30), p, settings=TINY)  # never past the top layer
    assert late["change"]["wte"] == 0 and late["change"]["h.0.attn.c_attn"] == 0 and late["change"]["ln_f"] > 0
    assert late["trainable"] == sum(q.numel() for q in study.source_model("shakespeare", p).transformer.ln_f.parameters())
    slow = forgetting.forgetting_run(Discriminative(100.0), p, settings=TINY)
    assert slow["change"]["wte"] < 0.1 * full["change"]["wte"]  # the bottom learns 100^2 times slower
    mixed = forgetting.forgetting_run(Replay(0.5), p, settings=TINY)
    assert mixed["trainable"] == full["trainable"] and mixed["history"] != full["history"]


def test_a_composed_method_is_one_run_with_both_plugs(study_cache):
    p = _tiny()
    both = forgetting.forgetting_run(EWC(1e3) + Replay(0.5), p, settings=TINY)
    assert both["method"]["kind"] == "ewc+replay" and both["label"] == "ewc λ=1000 + replay 50% lr=3e-03"
    alone = {m.kind: forgetting.forgetting_run(m, p, settings=TINY) for m in (EWC(1e3), Replay(0.5))}
    assert all(both["history"]["target"] != r["history"]["target"] for r in alone.values())
    # the same run by hand: the replay mix as the batches and the EWC penalty, through the one loop
    from tlteach.train import train

    model, s = study.source_model("shakespeare", p), study.streams(p)
    mix = replay.replay_batches(s["target_train"], s["source_train"], 0.5, p.block_size, TINY["batch_size"])
    pen = methods.EWC(1e3).plug(model, p, TINY).penalty
    cfg = forgetting.run_config((EWC(1e3) + Replay(0.5)).resolved(TINY), p, TINY)
    res = train(model, mix, cfg, eval_sets={"source": s["source"], "target": s["target"]}, penalty=pen)
    assert res.history.target.tolist() == pytest.approx(both["history"]["target"], abs=1e-6)
    assert res.history.source.iloc[-1] == pytest.approx(both["source_after"], abs=1e-6)
