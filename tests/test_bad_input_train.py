"""Bad input to the loop, the methods, EWC and the presets gets a clear error; a run whose loss becomes NaN or
inf stops with its last good weights; an interrupted run counts its steps (issue 17)."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from tlteach import ewc, presets
from tlteach.gpt import GPT, GPTConfig
from tlteach.methods import EWC, L2, Discriminative, Full, LoRA, Replay, Unfreeze
from tlteach.stack import Stack
from tlteach.train import EarlyStopping, TrainConfig, evaluate, train

CFG = GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, n_embd=16)
NAN, INF = math.nan, math.inf


def _data(n: int = 2000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(n, generator=g) < 0.1, torch.randint(16, (n,), generator=g), torch.arange(n) % 7)


def _model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG)


def _cfg(**kw) -> TrainConfig:
    base = dict(max_iters=30, batch_size=4, block_size=16, learning_rate=3e-3, warmup_iters=2, eval_interval=10,
                eval_iters=2, progress=False)
    return TrainConfig(**{**base, **kw})


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(p.isfinite().all()) for p in model.parameters())


# ---------------------------------------------------------------------------------------------- TrainConfig
@pytest.mark.parametrize("change, error, phrase", [
    (dict(batch_size=0), ValueError, "TrainConfig.batch_size must be at least 1, got 0"),
    (dict(batch_size=-3), ValueError, "TrainConfig.batch_size must be at least 1"),
    (dict(eval_interval=0), ValueError, "TrainConfig.eval_interval must be at least 1"),
    (dict(eval_iters=-1), ValueError, "TrainConfig.eval_iters must be at least 1"),
    (dict(max_iters=-5), ValueError, "TrainConfig.max_iters must be at least 0, got -5"),
    (dict(block_size=0), ValueError, "TrainConfig.block_size"),
    (dict(warmup_iters=-1), ValueError, "TrainConfig.warmup_iters"),
    (dict(lr_decay_iters=-10), ValueError, "TrainConfig.lr_decay_iters"),
    (dict(learning_rate=-1e-3), ValueError, "TrainConfig.learning_rate must be a finite number >= 0"),
    (dict(learning_rate=NAN), ValueError, "TrainConfig.learning_rate must be a finite number >= 0, got nan"),
    (dict(learning_rate=INF), ValueError, "TrainConfig.learning_rate"),
    (dict(min_lr=-1.0), ValueError, "TrainConfig.min_lr"),
    (dict(weight_decay=NAN), ValueError, "TrainConfig.weight_decay"),
    (dict(beta1=1.0), ValueError, "TrainConfig.beta1 must be in [0, 1)"),
    (dict(beta2=-0.1), ValueError, "TrainConfig.beta2"),
    (dict(grad_clip=-1.0), ValueError, "TrainConfig.grad_clip"),
    (dict(seed=-1), ValueError, "TrainConfig.seed must be at least 0"),
    (dict(seed=2**64), ValueError, "TrainConfig.seed must be below 2**64"),
    (dict(batch_size="32"), TypeError, "TrainConfig.batch_size must be a whole number, got '32'"),
    (dict(max_iters=10.5), TypeError, "TrainConfig.max_iters must be a whole number"),
    (dict(eval_iters=True), TypeError, "TrainConfig.eval_iters must be a whole number"),
    (dict(learning_rate="3e-3"), TypeError, "TrainConfig.learning_rate must be a number (a finite number >= 0), got '3e-3'"),
    (dict(amp="yes"), TypeError, "TrainConfig.amp must be True or False"),
    (dict(progress=1), TypeError, "TrainConfig.progress must be True or False"),
])
def test_train_config_refuses(change, error, phrase):
    with pytest.raises(error, match=phrase.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("*", r"\*")):
        _cfg(**change)
    with pytest.raises(error):  # dataclasses.replace checks again
        replace(_cfg(), **change)


def test_train_config_keeps_valid_edges():
    cfg = _cfg(max_iters=0, warmup_iters=0, learning_rate=0.0, grad_clip=0.0, batch_size=np.int64(4), seed=2**64 - 1)
    assert cfg.batch_size == 4 and type(cfg.batch_size) is int
    result = train(_model(), _data(), cfg, eval_sets={"val": _data(seed=1)})  # max_iters=0: step 0's evaluation
    assert result.steps == 0 and list(result.history["step"]) == [0]


# ------------------------------------------------------------------------------------------ token ids, arguments
IDS = _data()


@pytest.mark.parametrize("where, ids, error, phrase", [
    ("batches", IDS + 10, ValueError, r"the training text \(batches\) holds token ids outside \[0, vocab_size=16\)"),
    ("batches", IDS - 3, ValueError, r"training text \(batches\) holds token ids outside .*min -3"),
    ("batches", IDS.float(), TypeError, r"training text \(batches\) must hold integer token ids"),
    ("batches", IDS.view(20, 100), ValueError, r"training text \(batches\) must be 1-D"),
    ("batches", IDS.tolist(), TypeError, "batches must be a token stream"),
    ("eval", IDS + 16, ValueError, r"eval_sets\['val'\] holds token ids outside \[0, vocab_size=16\)"),
    ("eval", -IDS - 1, ValueError, r"eval_sets\['val'\] holds token ids outside"),
    ("eval", IDS.double(), TypeError, r"eval_sets\['val'\] must hold integer token ids"),
    ("eval", IDS.view(2, -1), ValueError, r"eval_sets\['val'\] must be 1-D"),
    ("eval", IDS[:10], ValueError, "fewer than one training block"),
])
def test_train_checks_the_token_ids_before_training(where, ids, error, phrase):
    calls = []
    kw = dict(batches=ids, eval_sets={"val": IDS}) if where == "batches" else dict(batches=IDS, eval_sets={"val": ids})
    with pytest.raises(error, match=phrase):
        train(_model(), kw["batches"], _cfg(), eval_sets=kw["eval_sets"], hooks=[lambda s, m: calls.append(s)])
    assert calls == []  # not one step ran


@pytest.mark.parametrize("ids, error, phrase", [
    (IDS + 20, ValueError, r"the evaluation text \(ids\) holds token ids outside \[0, vocab_size=16\)"),
    (IDS.float(), TypeError, "must hold integer token ids"),
    (IDS.view(4, -1), ValueError, "must be 1-D"),
    ("some text", TypeError, "must be a torch tensor of token ids, got str"),
])
def test_evaluate_checks_its_ids(ids, error, phrase):
    with pytest.raises(error, match=phrase):
        evaluate(_model(), ids, 16, 4, 2)


@pytest.mark.parametrize("args, error, phrase", [
    ((16, 4, 0), ValueError, "eval_iters must be at least 1, got 0"),
    ((16, 0, 2), ValueError, "batch_size must be at least 1"),
    ((16, 4, 2.5), TypeError, "eval_iters must be a whole number"),
])
def test_evaluate_checks_its_sizes(args, error, phrase):
    with pytest.raises(error, match=phrase):
        evaluate(_model(), IDS, *args)


def _bad_batches(kind: str):
    def draw(g: torch.Generator):
        x = torch.randint(16, (4, 16), generator=g)
        if kind == "range":
            return x + 16, x
        if kind == "float":
            return x.float(), x
        if kind == "ignored":
            return x, torch.full_like(x, -100)
        return x, x[:, :8]

    return draw


@pytest.mark.parametrize("kind, error, phrase", [
    ("range", ValueError, r"batches\(generator\) returned token ids outside \[0, vocab_size=16\)"),
    ("float", TypeError, r"batches\(generator\) must return \(x, y\), two tensors of integer token ids"),
    ("shape", ValueError, r"x and y of one shape"),
    ("ignored", ValueError, r"every target of the first batch is -100 .* undefined \(NaN\)"),
])
def test_a_batch_function_has_its_first_batch_checked(kind, error, phrase):
    with pytest.raises(error, match=phrase):
        train(_model(), _bad_batches(kind), _cfg())
    stack = Stack([_model(0), _model(1)])  # vmap skips the model's own check: the loop's is the one
    with pytest.raises(error, match=phrase):
        train(stack, lambda g: tuple(t.expand(2, -1, -1) for t in _bad_batches(kind)(g)), _cfg(),
              groups=stack.groups([_cfg(), _cfg()]))


@pytest.mark.parametrize("change, error, phrase", [
    (dict(cfg={"max_iters": 3}), TypeError, "cfg must be a TrainConfig, got dict"),
    (dict(model="gpt"), TypeError, r"train needs a torch model \(nn.Module\), got str"),
    (dict(eval_sets=[IDS]), TypeError, "eval_sets must map names to token streams"),
    (dict(eval_sets={"step": IDS}), ValueError, "eval_sets name 'step' must be a str other than the history's"),
    (dict(penalty=3.0), TypeError, "penalty must be a function"),
    (dict(on_eval="stop"), TypeError, "on_eval must be a function"),
    (dict(hooks=lambda s, m: None), TypeError, "hooks must be a list of functions"),
    (dict(hooks=[1]), TypeError, "hooks must be a list of functions"),
])
def test_train_refuses_arguments_of_the_wrong_kind(change, error, phrase):
    kw = {**dict(model=_model(), batches=IDS, cfg=_cfg()), **change}
    with pytest.raises(error, match=phrase):
        train(**kw)


@pytest.mark.parametrize("patience, min_delta, error", [(0, 0.0, ValueError), ("3", 0.0, TypeError), (3, "0", TypeError),
                                                        (3, NAN, ValueError), (3, -1.0, ValueError)])
def test_early_stopping_refuses(patience, min_delta, error):
    with pytest.raises(error, match="patience|min_delta"):
        EarlyStopping("val", patience, min_delta)


# ------------------------------------------------------------------------------- NaN and inf stop the run
def _explodes_at(call: int):
    """A penalty that is 0 until its ``call``-th call, then infinite (the gradient: NaN)."""
    calls = [0]

    def penalty(model):
        calls[0] += 1
        return model.transformer.wte.weight.sum() * (INF if calls[0] == call else 0.0)

    return penalty


def test_a_nan_loss_stops_the_run_with_the_last_good_weights():
    model, val = _model(), _data(seed=1)
    with pytest.warns(RuntimeWarning, match="the loss became NaN or inf at step 16.*weights of step 10"):
        result = train(model, IDS, _cfg(), eval_sets={"val": val}, penalty=_explodes_at(15))
    assert result.diverged_at == 16 and result.steps == 10 and not result.interrupted
    assert list(result.history["step"]) == [0, 10]  # the last row is the model returned
    assert _finite(model)
    assert evaluate(model, val, 16, 4, 2) == pytest.approx(result.history["val"].iloc[-1], abs=1e-6)


def test_the_last_good_weights_are_those_of_the_same_run_stopped_there():
    model, val = _model(), _data(seed=1)
    with pytest.warns(RuntimeWarning):
        train(model, IDS, _cfg(), eval_sets={"val": val}, penalty=_explodes_at(15))
    same = _model()  # the same run, 10 steps (max_iters and the schedule as above)
    calls = []
    train(same, IDS, _cfg(), eval_sets={"val": val}, on_eval=lambda row: row["step"] == 10,
          hooks=[lambda s, m: calls.append(s)])
    assert calls[-1] == 10
    for a, b in zip(model.parameters(), same.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cfg", [_cfg(learning_rate=1e6, grad_clip=0.0, warmup_iters=0),
                                 _cfg(learning_rate=1e30, warmup_iters=0)])
def test_too_high_a_learning_rate_stops_with_finite_weights(cfg):
    model = _model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(model, IDS, cfg, eval_sets={"val": _data(seed=1)})
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "became NaN or inf at step" in messages[0]
    assert result.diverged_at is not None and result.steps <= result.diverged_at and _finite(model)
    assert result.history["val"].notna().all()


def test_weights_that_become_nan_on_the_last_step_are_caught_at_the_last_evaluation():
    def poison(step, model):
        if step == 30:  # the loss of step 30 is finite; its update is NaN
            model.transformer.wte.weight.register_hook(lambda g: g * NAN)

    model = _model()
    with pytest.warns(RuntimeWarning, match="the weights became NaN or inf at step 30.*step 20"):
        result = train(model, IDS, _cfg(grad_clip=0.0), hooks=[poison])
    assert result.diverged_at == 30 and result.steps == 20 and _finite(model)
    assert list(result.history["step"]) == [0, 10, 20]


def test_weights_that_are_not_finite_before_training_are_refused():
    model = _model()
    with torch.no_grad():
        model.transformer.wte.weight[0, 0] = NAN
    with pytest.raises(ValueError, match="weights hold NaN or inf before training"):
        train(model, IDS, _cfg())


def test_a_stacked_run_that_diverges_leaves_the_stack_and_the_others_go_on():
    cfg = _cfg(grad_clip=0.05)
    stack = Stack([_model(0), _model(1)])
    with pytest.warns(RuntimeWarning, match="run 1 of the stack: the loss became NaN or inf at step 16"):
        result = train(stack, stack.batches([IDS, IDS], [0, 0], 16, 4), cfg, eval_sets={"val": _data(seed=1)},
                       groups=stack.groups([cfg, cfg]), penalty=stack.penalty([None, _explodes_at(15)]))
    assert result.steps == 30 and result.diverged_at == 16 and result.extras["diverged"] == {1: 16}
    good, bad = stack.results(result)
    assert bad.steps == 10 and list(bad.history["step"]) == [0, 10] and _finite(bad.model)
    assert (bad.diverged_at, bad.stopped_early) == (16, False) and good.diverged_at is None
    assert evaluate(bad.model, _data(seed=1), 16, 4, 2) == pytest.approx(bad.history["val"].iloc[-1], abs=1e-5)
    alone = train(_model(0), IDS, cfg, eval_sets={"val": _data(seed=1)})  # the other run's numbers are unchanged
    assert good.steps == 30
    torch.testing.assert_close(torch.tensor(good.history["val"].to_numpy()),
                               torch.tensor(alone.history["val"].to_numpy()), rtol=0, atol=3e-4)


# ------------------------------------------------------------------------------------------------ interrupts
@pytest.mark.parametrize("where, at, steps, rows", [("on_eval", 10, 10, [0, 10]), ("on_eval", 0, 0, [0]),
                                                    ("hook", 25, 24, [0, 10, 20]), ("hook", 1, 0, [0])])
def test_an_interrupted_run_counts_the_steps_it_took(where, at, steps, rows):
    def stop(step):
        if step == at:
            raise KeyboardInterrupt

    kw = dict(on_eval=lambda row: stop(row["step"])) if where == "on_eval" else dict(hooks=[lambda s, m: stop(s)])
    result = train(_model(), IDS, _cfg(), eval_sets={"val": IDS}, **kw)
    assert result.interrupted and result.steps == steps and list(result.history["step"]) == rows
    assert result.diverged_at is None and not result.stopped_early


# ---------------------------------------------------------------------------------------------------- methods
@pytest.mark.parametrize("make, error, phrase", [
    (lambda: Full(steps=-5), ValueError, r"Method\(steps=...\) must be at least 1, got -5 \(at least one step"),
    (lambda: Full(steps=0), ValueError, r"must be at least 1, got 0 \(at least one step, steps >= 1 \(None: the study's\)\)"),
    (lambda: Full(steps=2.5), TypeError, r"Method\(steps=...\) must be a whole number"),
    (lambda: Full(steps="300"), TypeError, "must be a whole number"),
    (lambda: Full(lr=-1e-3), ValueError, r"Method\(lr=...\) must be a finite positive learning rate"),
    (lambda: Full(lr=NAN), ValueError, "positive learning rate"),
    (lambda: Full(lr=INF), ValueError, "positive learning rate"),
    (lambda: Full(lr="1e-3"), TypeError, r"Method\(lr=...\) must be a number"),
    (lambda: Replay(1.5), ValueError, r"Replay\(share=...\) must be a finite share .* 0 < share < 1, got 1.5"),
    (lambda: Replay(-0.25), ValueError, "0 < share < 1"),
    (lambda: Replay(NAN), ValueError, "0 < share < 1"),
    (lambda: Replay("0.25"), TypeError, r"Replay\(share=...\) must be a number"),
    (lambda: EWC(INF), ValueError, r"EWC\(lam=...\) must be a finite penalty strength lam > 0, got inf"),
    (lambda: EWC(NAN), ValueError, "lam > 0"),
    (lambda: EWC(-1.0), ValueError, "lam > 0"),
    (lambda: EWC("10"), TypeError, r"EWC\(lam=...\) must be a number"),
    (lambda: L2(INF), ValueError, r"L2\(lam=...\) must be a finite penalty strength lam > 0, got inf"),
    (lambda: LoRA(2.5), TypeError, r"LoRA\(rank=...\) must be a whole number"),
    (lambda: LoRA("4"), TypeError, "must be a whole number"),
    (lambda: LoRA(-4), ValueError, r"LoRA\(rank=...\) must be at least 1, got -4 \(a whole rank >= 1\)"),
    (lambda: LoRA(4, alpha=-8.0), ValueError, r"LoRA\(alpha=...\) must be a finite alpha > 0"),
    (lambda: LoRA(4, alpha=NAN), ValueError, "alpha > 0"),
    (lambda: LoRA(4, embeddings="yes"), TypeError, "must be True or False"),
    (lambda: Discriminative(INF), ValueError, r"Discriminative\(decay=...\) must be a finite decay > 1"),
    (lambda: Discriminative("2.6"), TypeError, "must be a number"),
    (lambda: Unfreeze(NAN), TypeError, r"Unfreeze\(every=...\) must be a whole number"),
    (lambda: Unfreeze(-2), ValueError, "every >= 1"),
    (lambda: EWC(0.03) + 3, TypeError, "unsupported operand"),
])
def test_methods_refuse(make, error, phrase):
    with pytest.raises(error, match=phrase):
        make()


def test_methods_take_numpy_numbers_as_plain_ones():
    assert LoRA(np.int64(4)).rank == 4 and type(LoRA(np.int64(4)).rank) is int
    assert Full(steps=np.int32(50)).describe() == {"kind": "full", "lr": None, "steps": 50}


# -------------------------------------------------------------------------------------------------------- EWC
@pytest.mark.parametrize("lam, error, phrase", [(INF, ValueError, "finite number >= 0, got inf"),
                                                (NAN, ValueError, "finite number >= 0, got nan"),
                                                (-1.0, ValueError, ">= 0"), ("1", TypeError, r"lam must be a number \(the penalty's strength.*got '1'"),
                                                (None, TypeError, r"lam must be a number \(the penalty's strength")])
def test_ewc_penalty_refuses_its_strength(lam, error, phrase):
    model = _model()
    with pytest.raises(error, match=phrase):
        ewc.EWCPenalty(model, ewc.flat_fisher(model), lam)


@pytest.mark.parametrize("bad", [NAN, INF, -1.0])
def test_ewc_penalty_refuses_a_fisher_that_is_not_finite_and_nonnegative(bad):
    model = _model()
    fisher = ewc.flat_fisher(model)
    fisher["transformer.wte.weight"][0, 0] = bad
    with pytest.raises(ValueError, match="Fisher of transformer.wte.weight holds NaN, inf or negative"):
        ewc.EWCPenalty(model, fisher, 1.0)


@pytest.mark.parametrize("other, phrase", [
    (lambda: GPT(replace(CFG, n_layer=2)), r"not covered transformer.h.1"),
    (lambda: GPT(replace(CFG, n_embd=32)), r"other shapes transformer.wte.weight \(16, 32\) \(made for \(16, 16\)\)"),
    (lambda: GPT(replace(CFG, bias=False)), r"missing transformer.h.0.ln_1.bias"),
])
def test_ewc_penalty_refuses_a_model_it_was_not_made_for(other, phrase):
    model = _model()
    penalty = ewc.EWCPenalty(model, ewc.flat_fisher(model), 1.0)
    with pytest.raises(ValueError, match="not the model the penalty was made for: .*" + phrase):
        penalty(other())
    with pytest.raises(ValueError, match="not the model the penalty was made for"):
        penalty.drift(other())


def test_ewc_penalty_takes_its_model_with_some_layers_frozen():
    model = _model()
    penalty = ewc.EWCPenalty(model, ewc.flat_fisher(model), 1.0)
    model.transformer.h[0].requires_grad_(False)  # gradual unfreezing: frozen weights are still covered
    assert float(penalty(model).detach()) == 0.0


# ----------------------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("raw, phrase", [("9" * 20, "TLTEACH_SEED must be from 0 to 2\\*\\*64 - 1"),
                                         ("-1", "TLTEACH_SEED must be at least 0, got -1; seeds are whole numbers from 0 to 2\\*\\*64 - 1"), ("1.5", "TLTEACH_SEED must be an integer"),
                                         ("lucky", "TLTEACH_SEED must be an integer"),
                                         (str(2**64), "TLTEACH_SEED must be from 0")])
def test_the_seed_variable_is_checked(monkeypatch, raw, phrase):
    monkeypatch.setenv("TLTEACH_SEED", raw)
    with pytest.raises(ValueError, match=phrase):
        presets.get_seed()
    with pytest.raises(ValueError, match="TLTEACH_SEED"):
        presets.get_preset("quick", device="cpu")


def test_the_largest_seed_works(monkeypatch):
    monkeypatch.setenv("TLTEACH_SEED", str(2**64 - 1))
    assert presets.get_seed() == 2**64 - 1
    presets.seed_everything(2**64 - 1)


@pytest.mark.parametrize("seed, error", [(2**64, ValueError), (-5, ValueError), (1.5, TypeError), ("3", TypeError),
                                         (True, TypeError)])
def test_seed_everything_refuses(seed, error):
    with pytest.raises(error, match="seed must be"):
        presets.seed_everything(seed)


@pytest.mark.parametrize("call, error, phrase", [
    (lambda: presets.get_preset("quick", device="tpu"), ValueError, r"device=...\): unknown device 'tpu'"),
    (lambda: presets.get_preset("quick", device=0), TypeError, "must be a device name"),
    (lambda: presets.get_preset("huge", device="cpu"), ValueError, "unknown preset 'huge'; choose one of: quick"),
    (lambda: presets.get_preset(3, device="cpu"), TypeError, "preset name must be a str"),
    (lambda: presets.budget("huge"), ValueError, "unknown preset"),
    (lambda: presets.with_changes(presets.get_preset("quick", device="cpu"), seed=-1), ValueError, "Preset.seed"),
    (lambda: presets.with_changes(presets.get_preset("quick", device="cpu"), device="tpu"), ValueError,
     "Preset.device: unknown device"),
])
def test_presets_refuse(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()


def test_the_device_variable_is_checked(monkeypatch):
    monkeypatch.setenv("TLTEACH_DEVICE", "tpu")
    with pytest.raises(ValueError, match="TLTEACH_DEVICE=tpu: unknown device 'tpu'"):
        presets.get_preset("quick")
    monkeypatch.setenv("TLTEACH_DEVICE", " CPU ")
    assert presets.get_preset("quick").device == "cpu"
