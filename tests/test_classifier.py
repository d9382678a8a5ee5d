"""The classification head (notebook 10): pooling, padding, the transformers twin, peft's LoRA, what trains, and
training through the one loop."""

from __future__ import annotations

import copy

import pytest
import torch

from tlteach import classifier, ulmfit
from tlteach.classifier import Classifier, freeze, pool
from tlteach.encoder import Encoder, encoder_config
from tlteach.gpt import GPT, GPTConfig
from tlteach.train import EarlyStopping, Measure, TrainConfig, train

PAD = 0


def tiny(vocab: int = 50, cls=GPT) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=vocab, block_size=16, n_layer=2, n_head=2, n_embd=32)
    return cls(encoder_config(config) if cls is Encoder else config)


def padded_batch() -> torch.Tensor:
    x = torch.randint(1, 50, (4, 16), generator=torch.Generator().manual_seed(1))
    x[0, 10:] = PAD
    x[1, 5:] = PAD
    return x


def test_pool_by_hand():
    h = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3)
    real = torch.tensor([[True, True, False, False], [True, True, True, True]])
    assert torch.equal(pool(h, real, "last"), torch.stack([h[0, 1], h[1, 3]]))
    assert torch.allclose(pool(h, real, "mean"), torch.stack([h[0, :2].mean(0), h[1].mean(0)]))
    cat = pool(h, real, "concat")
    assert cat.shape == (2, 9)
    assert torch.equal(cat[0, 3:6], h[0, :2].amax(0))  # max over real tokens only, padding left out


@pytest.mark.parametrize("pooling", classifier.POOLINGS)
@pytest.mark.parametrize("cls", [GPT, Encoder])
def test_padding_changes_nothing(pooling, cls):
    """A text padded to the block gets the same logits as the text alone, in a causal body and in an encoder
    (whose attention masks the padding out)."""
    model = Classifier(tiny(cls=cls), 3, pooling, pad_id=PAD).eval()
    x = padded_batch()
    alone = model(x[:1, :10])[0]
    padded = model(x[:1])[0]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_encoder_without_key_mask_would_see_padding():
    """The key mask matters: without it the encoder's states read the padding (so the test above could fail)."""
    body = tiny(cls=Encoder).eval()
    x = padded_batch()[:1]
    real = x != PAD
    with_mask = body.hidden(x, keys=real)[0, :10]
    without = body.hidden(x)[0, :10]
    assert not torch.allclose(with_mask, without, atol=1e-4)


def test_transformers_twin_gives_the_same_logits():
    model = Classifier(tiny(), 3, "last", pad_id=PAD).eval()
    torch.nn.init.normal_(model.score.weight)
    hf = classifier.to_hf(model)
    x = padded_batch()
    ours = model(x)[0]
    theirs = classifier.HFClassifier(hf)(x)[0]
    assert ours.shape == (4, 3)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours, hf(input_ids=x).logits, atol=1e-5)  # without an attention mask too (causal)


@pytest.mark.parametrize("pooling", ["mean", "concat"])
def test_transformers_twin_refuses_what_it_cannot_pool(pooling):
    with pytest.raises(ValueError, match="pooling='last'"):
        classifier.to_hf(Classifier(tiny(), 3, pooling, pad_id=PAD))
    with pytest.raises(ValueError, match="causal"):
        classifier.to_hf(Classifier(tiny(cls=Encoder), 3, "last", pad_id=PAD))


def test_peft_lora_trains_only_adapters_and_head():
    hf = classifier.to_hf(Classifier(tiny(), 3, "last", pad_id=PAD))
    peft_model = classifier.peft_lora(copy.deepcopy(hf), r=2)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or ".score." in n for n in trainable)
    assert any(".score." in n for n in trainable)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    xs, ys = torch.randint(1, 50, (32, 16)), torch.randint(0, 3, (32,))
    cfg = TrainConfig(max_iters=5, batch_size=8, block_size=16, eval_interval=5, warmup_iters=0, progress=False)
    train(classifier.HFClassifier(peft_model), classifier.label_batches(xs, ys, 8), cfg)
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(trainable)
    assert any("lora_B" in n for n in changed)


@pytest.mark.parametrize("what, expect", [("head", {"score.weight"}),
                                          ("last", {"score.weight", "body.transformer.ln_f.weight"}),
                                          ("all", {"score.weight", "body.transformer.wte.weight"})])
def test_freeze(what, expect):
    model = freeze(Classifier(tiny(), 3), what)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert expect <= trainable
    blocks = {n.split(".")[3] for n in trainable if n.startswith("body.transformer.h.")}
    assert blocks == {"head": set(), "last": {"1"}, "all": {"0", "1"}}[what]


def test_ulmfit_layers_put_the_head_on_top():
    model = Classifier(tiny(), 3)
    layers = ulmfit.layers(model)
    assert layers[0] == [model.score.weight]
    assert len(layers) == 1 + len(ulmfit.layers(model.body))
    groups = ulmfit.discriminative_groups(model, 2.6)
    assert max(g["lr_scale"] for g in groups) == 1.0  # the head learns at the full rate


def test_trains_through_the_loop_and_learns_a_separable_task():
    """Label 1 when token 7 is in the text: the loop trains the classifier (labels, not next tokens), Measure
    records validation accuracy in the history, and early stopping keeps the best weights."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(8, 50, (200, 12), generator=g)
    y = torch.randint(0, 2, (200,), generator=g)
    x[y == 1, 3] = 7
    model = Classifier(tiny(), 2, "mean", pad_id=PAD)
    stop = EarlyStopping("val", 5)
    on_eval = Measure({"val": classifier.measure(x[150:], y[150:])}, then=stop)
    cfg = TrainConfig(max_iters=150, batch_size=16, block_size=12, eval_interval=25, learning_rate=3e-3,
                      warmup_iters=10, progress=False)
    result = train(model, classifier.label_batches(x[:150], y[:150], 16), cfg, on_eval=on_eval)
    h = result.history
    assert {"val", "val_acc", "val_f1"} <= set(h.columns)
    assert h["val_acc"].iloc[0] < 0.75
    assert h["val_acc"].max() >= 0.95
    stop.restore(model)
    assert classifier.scores(classifier.predict(model, x[150:]), y[150:])["loss"] == pytest.approx(stop.best, abs=1e-5)


def test_bad_labels_and_settings_are_named():
    model = Classifier(tiny(), 3, pad_id=PAD)
    x = padded_batch()
    with pytest.raises(ValueError, match=r"labels must be classes in \[0, 3\)"):
        model(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="one class per text"):
        model(x, torch.zeros(4, 16, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model(x, torch.zeros(4))
    with pytest.raises(ValueError, match="unknown pooling"):
        Classifier(tiny(), 3, "max")
    with pytest.raises(ValueError, match="at least 2"):
        Classifier(tiny(), 1)
    with pytest.raises(ValueError, match="outside the body's vocabulary"):
        Classifier(tiny(), 3, pad_id=50)
    with pytest.raises(ValueError, match="unknown choice"):
        freeze(model, "top")


def test_encode_texts_cuts_and_pads():
    class Words:
        eot_id = 0

        def encode(self, text):
            return [len(w) for w in text.split()]

    x = classifier.encode_texts(["a bb ccc", "dddd " * 20], Words(), block_size=5)
    assert x.tolist() == [[1, 2, 3, 0, 0], [4, 4, 4, 4, 4]]
    with pytest.raises(ValueError, match="no tokens"):
        classifier.encode_texts(["a", ""], Words(), block_size=5)


@pytest.mark.parametrize("pooling", classifier.POOLINGS)
def test_windows_are_read_one_by_one_and_averaged(pooling):
    """A text of two windows gets the mean of the two windows' vectors; a window of padding only is left out."""
    model = Classifier(tiny(), 3, pooling, pad_id=PAD).eval()
    g = torch.Generator().manual_seed(2)
    first, second = torch.randint(1, 50, (1, 16), generator=g), torch.randint(1, 50, (1, 16), generator=g)
    both = model.features(torch.cat([first, second], 1))
    assert torch.allclose(both, (model.features(first) + model.features(second)) / 2, atol=1e-6)
    padding = torch.full((1, 16), PAD)
    assert torch.allclose(model.features(torch.cat([first, padding], 1)), model.features(first), atol=1e-6)
    with pytest.raises(ValueError, match="whole windows"):
        model.features(torch.randint(1, 50, (1, 20)))


def test_encode_texts_in_windows():
    class Words:
        eot_id = 0

        def encode(self, text):
            return [len(w) for w in text.split()]

    x = classifier.encode_texts(["a bb ccc", "dddd " * 20], Words(), block_size=2, windows=3)
    assert x.tolist() == [[1, 2, 3, 0, 0, 0], [4] * 6]
