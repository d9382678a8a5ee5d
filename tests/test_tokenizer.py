"""Both tokenizers: exact round trips, caching, determinism, clear errors."""

from __future__ import annotations

import pytest

from tlteach import cache, data, tokenizer

TRICKY = "Héllo wörld, naïve café — 日本語 🙂 ∑ x² \t tabs  and  spaces\r\n<|endoftext|>end\n\n"


@pytest.fixture(scope="module")
def bpe():
    return tokenizer.get_tokenizer("bpe", vocab_size=512)


def test_bpe_round_trips_any_text(bpe):
    assert bpe.vocab_size == 512
    for text in (TRICKY, "", " ", "a" * 1000, "\x00\x01 control", "ﬁ ligature and Ω"):
        assert bpe.decode(bpe.encode(text)) == text


def test_bpe_compresses_shakespeare(bpe):
    text = data.load_corpus("shakespeare")["validation"]["text"][0]
    assert len(text) / len(bpe.encode(text)) > 1.6  # learned merges: well over 1 character a token
    assert bpe.decode([bpe.eot_id]) == tokenizer.EOT


def test_bpe_is_a_transformers_tokenizer(bpe):
    from transformers import PreTrainedTokenizerFast

    assert isinstance(bpe.hf, PreTrainedTokenizerFast)
    assert bpe.hf("To be, or not to be")["input_ids"] == bpe.encode("To be, or not to be")
    assert bpe.hf.eos_token_id == bpe.eot_id


def test_bpe_is_cached_not_retrained(bpe, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("retrained")

    monkeypatch.setattr(tokenizer, "train_bpe", boom)
    again = tokenizer.get_tokenizer("bpe", vocab_size=512)
    assert again.encode(TRICKY) == bpe.encode(TRICKY)


def test_bpe_training_is_deterministic():
    texts = data.load_corpus("python-docs")["train"]["text"]
    a, b = tokenizer.train_bpe(texts, 400), tokenizer.train_bpe(texts, 400)
    assert a.hf.get_vocab() == b.hf.get_vocab()


def test_bpe_save_and_load(tmp_path, bpe):
    bpe.save(tmp_path / "t.json")
    back = tokenizer.load_tokenizer(tmp_path / "t.json")
    assert back.encode(TRICKY) == bpe.encode(TRICKY)


def test_corrupt_cached_tokenizer_is_rebuilt(fresh_cache):
    ds = data.load_text("\n\n".join(f"line {i} of some words here" for i in range(60)))
    tok = tokenizer.get_tokenizer("bpe", vocab_size=300, corpus=ds)
    (path,) = [p for p in (fresh_cache / "tokenizers").glob("*.json") if not p.name.endswith(".meta.json")]
    path.write_text(path.read_text()[:100])  # truncate it
    with pytest.warns(cache.CacheWarning, match="checksum"):
        again = tokenizer.get_tokenizer("bpe", vocab_size=300, corpus=ds)
    assert again.encode("line 7 of some words") == tok.encode("line 7 of some words")


def test_vocab_too_small():
    with pytest.raises(ValueError, match="at least 257"):
        tokenizer.train_bpe(["abc"], 100)


def test_char_tokenizer():
    tok = tokenizer.get_tokenizer("char", corpus="shakespeare")
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
    assert tok.decode(tok.encode(text)) == text
    assert 50 <= tok.vocab_size <= 90  # letters, digits, punctuation, newline, space
    with pytest.raises(ValueError, match="not in this tokenizer's vocabulary"):
        tok.encode("日本")


def test_unknown_kind():
    with pytest.raises(ValueError, match="'bpe' or 'char'"):
        tokenizer.get_tokenizer("wordpiece")
