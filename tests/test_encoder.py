"""The BERT-style encoder (notebook 10): no causal mask, BERT's 15% / 80-10-10 corruption, masked-LM training."""

from __future__ import annotations

import pytest
import torch

from tlteach.encoder import Encoder, encoder_config, mask_tokens, mlm_batches, mlm_loss
from tlteach.gpt import GPT, GPTConfig
from tlteach.train import Measure, TrainConfig, train

CONFIG = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32)


def test_the_encoder_reads_both_ways_and_the_gpt_does_not():
    torch.manual_seed(0)
    gpt, enc = GPT(CONFIG).eval(), Encoder(encoder_config(CONFIG)).eval()
    x = torch.randint(0, 40, (1, 16))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 40  # change only the last token
    assert torch.allclose(gpt(x)[0][0, :-1], gpt(y)[0][0, :-1], atol=1e-6)  # earlier positions cannot see it
    assert not torch.allclose(enc(x)[0][0, :-1], enc(y)[0][0, :-1], atol=1e-4)  # the encoder's can
    assert enc.config.vocab_size == 41 and enc.mask_id == 40


def test_mask_tokens_follows_bert():
    x = torch.randint(0, 40, (400, 64), generator=torch.Generator().manual_seed(0))
    inputs, targets = mask_tokens(x, 40, torch.Generator().manual_seed(1))
    chosen = targets != -100
    assert abs(chosen.float().mean().item() - 0.15) < 0.01
    assert torch.equal(targets[chosen], x[chosen])
    assert torch.equal(inputs[~chosen], x[~chosen])  # only chosen positions are touched
    masked = (inputs[chosen] == 40).float().mean().item()
    kept = (inputs[chosen] == x[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.02
    assert 0.08 < kept < 0.13  # 10% left as they are, plus random draws that hit the same id
    assert int(inputs.max()) <= 40 and int(inputs.min()) >= 0
    again = mask_tokens(x, 40, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)  # the generator decides


def test_every_row_has_a_target():
    x = torch.randint(0, 40, (500, 3), generator=torch.Generator().manual_seed(0))
    _, targets = mask_tokens(x, 40, torch.Generator().manual_seed(0))
    assert bool((targets != -100).any(1).all())


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="mask_id"):
        mask_tokens(torch.tensor([[1, 40]]), 40)
    with pytest.raises(ValueError, match="rate"):
        mask_tokens(torch.tensor([[1, 2]]), 40, rate=0.0)


def test_masked_lm_trains_through_the_loop():
    """Text where each token repeats its neighbours: an encoder learns to fill a gap from both sides, and the
    loop's Measure records the masked-LM loss falling."""
    torch.manual_seed(0)
    ids = torch.arange(4000) // 3 % 39
    enc = Encoder(encoder_config(CONFIG))
    cfg = TrainConfig(max_iters=240, batch_size=16, block_size=16, eval_interval=80, learning_rate=3e-3,
                      warmup_iters=10, progress=False)
    measure = Measure({"mlm": mlm_loss(ids[3000:], 16, 16, 4, enc.mask_id)})
    result = train(enc, mlm_batches(ids[:3000], 16, 16, enc.mask_id), cfg, on_eval=measure)
    h = result.history
    assert h["mlm"].iloc[-1] < 0.5 * h["mlm"].iloc[0]
    same = mlm_loss(ids[3000:], 16, 16, 4, enc.mask_id)
    assert same(enc) == pytest.approx(same(enc))  # the same masks every time
