"""Bad input to the tokenizers and the text helpers: a clear error naming the value, never a silent wrong result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tlteach import cli, data, tokenizer
from tlteach.tokenizer import CharTokenizer

LONG_LINE = " ".join(f"word{i % 97} and more text" for i in range(15000))  # about 300 KB on one line


@pytest.fixture(scope="module")
def char():
    return CharTokenizer.train("abc \n")


@pytest.fixture(scope="module")
def bpe():
    return tokenizer.train_bpe(data.load_corpus("python-docs")["train"]["text"], 300)


@pytest.fixture(scope="module")
def tokenizers(char, bpe):
    return {"char": char, "bpe": bpe}


# --------------------------------------------------------------------------- token ids and texts
BAD_IDS = [
    ("-1", lambda n: [0, -1], ValueError, "outside this tokenizer's vocabulary"),
    ("vocab_size", lambda n: [n], ValueError, "outside this tokenizer's vocabulary"),
    ("huge", lambda n: [10**12], ValueError, "outside"),
    ("float", lambda n: [1.0], TypeError, "must be integers"),
    ("str id", lambda n: ["1"], TypeError, "must be integers"),
    ("bool", lambda n: [True], TypeError, "must be integers"),
    ("None id", lambda n: [None], TypeError, "must be integers"),
    ("nested", lambda n: [[1, 2]], TypeError, "one sequence at a time"),
    ("one int", lambda n: 3, TypeError, "wrap one id"),
    ("a str", lambda n: "abc", TypeError, "sequence of integers"),
    ("float tensor", lambda n: torch.tensor([1.5]), TypeError, "must be integers"),
    ("2-D tensor", lambda n: torch.tensor([[1, 2]]), TypeError, "one sequence at a time"),
    ("0-d tensor", lambda n: torch.tensor(1), TypeError, "wrap one id"),
    ("out-of-range tensor", lambda n: torch.tensor([n + 5]), ValueError, "outside"),
]


@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize("label, make, error, phrase", BAD_IDS, ids=[c[0] for c in BAD_IDS])
def test_decode_rejects_bad_ids(tokenizers, kind, label, make, error, phrase):
    tok = tokenizers[kind]
    with pytest.raises(error, match=phrase):
        tok.decode(make(tok.vocab_size))
    if kind == "bpe":
        with pytest.raises(error, match=phrase):
            tok.token_strings(make(tok.vocab_size))


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_decode_accepts_lists_tensors_and_numpy_ints(tokenizers, kind):
    import numpy as np

    tok = tokenizers[kind]
    ids = tok.encode("abc ab\n")
    text = tok.decode(ids)
    assert text == "abc ab\n"
    assert tok.decode(torch.tensor(ids)) == tok.decode(np.array(ids)) == tok.decode(list(torch.tensor(ids))) == text
    assert tok.decode([np.int64(i) for i in ids]) == text and tok.decode([]) == ""


BAD_TEXTS = [
    ("encode None", lambda t: t.encode(None), TypeError, "text must be a str"),
    ("encode int", lambda t: t.encode(5), TypeError, "text must be a str"),
    ("encode bytes", lambda t: t.encode(b"abc"), TypeError, "text must be a str"),
    ("encode a list", lambda t: t.encode(["abc"]), TypeError, "text must be a str"),
    ("batch of one str", lambda t: t.encode_batch("abc"), TypeError, "wrap one text"),
    ("batch with None", lambda t: t.encode_batch(["abc", None]), TypeError, r"texts\[1\] must be a str"),
    ("batch of ints", lambda t: t.encode_batch(5), TypeError, "list"),
]


@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize("label, call, error, phrase", BAD_TEXTS, ids=[c[0] for c in BAD_TEXTS])
def test_encode_rejects_non_text(tokenizers, kind, label, call, error, phrase):
    with pytest.raises(error, match=phrase):
        call(tokenizers[kind])


# --------------------------------------------------------------------------- sizes and building
BAD_BUILDS = [
    ("vocab 10**7", lambda: tokenizer.get_tokenizer("bpe", vocab_size=10**7), ValueError, "262,144"),
    ("vocab 300000", lambda: tokenizer.get_tokenizer("bpe", vocab_size=300_000), ValueError, "vocab_size=300,000"),
    ("vocab 256", lambda: tokenizer.get_tokenizer("bpe", vocab_size=256), ValueError, "at least 257"),
    ("vocab 0", lambda: tokenizer.get_tokenizer("bpe", vocab_size=0), ValueError, "at least 257"),
    ("vocab -5", lambda: tokenizer.train_bpe(["abc"], -5), ValueError, "at least 257"),
    ("vocab float", lambda: tokenizer.get_tokenizer("bpe", vocab_size=2048.0), TypeError, "vocab_size must be a whole number"),
    ("vocab str", lambda: tokenizer.get_tokenizer("bpe", vocab_size="2048"), TypeError, "vocab_size must be a whole number"),
    ("vocab None", lambda: tokenizer.get_tokenizer("bpe", vocab_size=None), TypeError, "vocab_size must be a whole number"),
    ("vocab bool", lambda: tokenizer.train_bpe(["abc"], True), TypeError, "vocab_size must be a whole number"),
    ("kind None", lambda: tokenizer.get_tokenizer(None), ValueError, "'bpe' or 'char'"),
    ("corpus int", lambda: tokenizer.get_tokenizer("char", corpus=3), TypeError, "corpus must be"),
    ("corpus list", lambda: tokenizer.get_tokenizer("char", corpus=["a b c"]), TypeError, "corpus must be"),
    ("unreachable", lambda: tokenizer.train_bpe(["ab"] * 3, 1000), ValueError, "cannot be reached on 6 bytes"),
    ("train on a str", lambda: tokenizer.train_bpe("some text", 300), TypeError, "wrap one text"),
    ("train on None rows", lambda: tokenizer.train_bpe(["a", None], 300), TypeError, r"texts\[1\] must be a str"),
    ("train on nothing", lambda: tokenizer.train_bpe(["", ""], 300), ValueError, "empty text"),
    ("char from a list", lambda: CharTokenizer.train(["ab", "cd"]), TypeError, "text must be a str"),
    ("char from None", lambda: CharTokenizer.train(None), TypeError, "text must be a str"),
    ("chars a str", lambda: CharTokenizer("abc"), TypeError, "list of single characters"),
    ("chars multi", lambda: CharTokenizer(["ab", "c"]), ValueError, "single characters"),
    ("chars repeated", lambda: CharTokenizer(["a", "a"]), ValueError, "distinct"),
    ("chars empty", lambda: CharTokenizer([]), ValueError, "non-empty"),
    ("not an hf", lambda: tokenizer.BPETokenizer("x"), TypeError, "PreTrainedTokenizerFast"),
]


@pytest.mark.parametrize("label, call, error, phrase", BAD_BUILDS, ids=[c[0] for c in BAD_BUILDS])
def test_bad_tokenizer_builds(label, call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()


def test_a_vocabulary_the_text_cannot_fill_is_warned_about():
    with pytest.warns(UserWarning, match=r"has 276 tokens, not the vocab_size=300"):
        tok = tokenizer.train_bpe(["the king and the queen and the lord"] * 50, vocab_size=300)
    assert tok.vocab_size == 276


# --------------------------------------------------------------------------- tokenizer files
def _write(tmp_path: Path, name: str, content) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return p


BAD_FILES = [
    ("folder", lambda tmp: tmp, IsADirectoryError, "is a folder"),
    ("missing", lambda tmp: tmp / "nope.json", FileNotFoundError, "no tokenizer file at"),
    ("not json", lambda tmp: _write(tmp, "t.json", "hello"), ValueError, "not valid JSON"),
    ("empty", lambda tmp: _write(tmp, "t.json", ""), ValueError, "not valid JSON"),
    ("latin-1", lambda tmp: _write(tmp, "t.json", b'{"k": "caf\xe9"}'), ValueError, "not valid JSON"),
    ("json list", lambda tmp: _write(tmp, "t.json", [1, 2]), ValueError, "not an object"),
    ("json object", lambda tmp: _write(tmp, "t.json", {"a": 1}), ValueError, "not a BPE tokenizer file"),
    ("bad chars", lambda tmp: _write(tmp, "t.json", {"kind": "char", "chars": ["ab"]}), ValueError,
     "not a valid character tokenizer"),
    ("char no list", lambda tmp: _write(tmp, "t.json", {"kind": "char", "chars": "abc"}), ValueError,
     "not a tlteach character tokenizer"),
    ("broken BPE", lambda tmp: _write(tmp, "t.json", {"model": {"type": "BPE"}}), ValueError,
     "not a valid BPE tokenizer file"),
]


@pytest.mark.parametrize("label, make, error, phrase", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_load_tokenizer_names_the_bad_file(tmp_path, label, make, error, phrase):
    path = make(tmp_path)
    with pytest.raises(error, match=phrase) as err:
        tokenizer.load_tokenizer(path)
    assert str(path) in str(err.value)


def test_load_tokenizer_in_a_checkpoint_folder_points_at_the_file(tmp_path, char):
    char.save(tmp_path / "tokenizer.json")
    with pytest.raises(IsADirectoryError, match="tokenizer.json"):
        tokenizer.load_tokenizer(tmp_path)
    with pytest.raises(TypeError, match="path must be a str or pathlib.Path"):
        tokenizer.load_tokenizer(3)
    assert tokenizer.load_tokenizer(tmp_path / "tokenizer.json").chars == char.chars


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_to_a_folder_or_a_missing_folder(tokenizers, tmp_path, kind):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        tokenizers[kind].save(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tokenizers[kind].save(tmp_path / "no" / "t.json")


# --------------------------------------------------------------------------- token streams and batches
def test_encode_split_without_end_of_text(char, bpe):
    docs = ["ab c\n", "cab\n", "a\n"]
    assert data.encode_split(docs, char).tolist() == char.encode("".join(docs))
    ids = data.encode_split(docs, bpe)
    assert ids.tolist() == [i for d in docs for i in [*bpe.encode(d), bpe.eot_id]]


def test_the_char_tokenizer_streams_a_named_corpus():
    tok = tokenizer.get_tokenizer("char", corpus="python-docs")
    splits = data.token_splits("python-docs", tok, ("train", "validation"))
    train = data.load_corpus("python-docs")["train"]["text"]
    assert tok.decode(splits["train"]) == "".join(train)


def test_pretrain_cli_with_the_char_tokenizer_on_a_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TLTEACH_CACHE", str(tmp_path / "cache"))
    argv = ["pretrain", "--dataset", "python-docs", "--tokenizer", "char", "--n-layer", "1", "--n-head", "2",
            "--n-embd", "16", "--block-size", "16", "--batch-size", "2", "--max-iters", "1", "--eval-interval", "1",
            "--eval-iters", "1", "--warmup-iters", "1", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert "char tokenizer" in capsys.readouterr().out


BAD_STREAMS = [
    ("one str", lambda t: data.encode_split("some text", t), TypeError, "wrap one text"),
    ("a DatasetDict", lambda t: data.encode_split(data.load_corpus("python-docs"), t), TypeError, "one split"),
    ("None rows", lambda t: data.encode_split(["ab", None], t), TypeError, "text 1 is None"),
    ("an int", lambda t: data.encode_split(5, t), TypeError, "list of str"),
    ("no tokenizer", lambda t: data.encode_split(["ab"], None), TypeError, "tlteach tokenizer"),
    ("splits a str", lambda t: data.token_splits("python-docs", t, "train"), TypeError, "wrap one"),
    ("unknown split", lambda t: data.token_splits("python-docs", t, ["val"]), ValueError, "no split 'val'"),
    ("corpus an int", lambda t: data.token_splits(3, t), TypeError, "corpus name"),
    ("corpus name None", lambda t: data.load_corpus(None), TypeError, "a corpus name is a str"),
    ("corpus a list", lambda t: data.load_corpus(["shakespeare"]), TypeError, "a corpus name is a str"),
    ("corpus a Path", lambda t: data.load_corpus(Path("shakespeare")), TypeError, "a corpus name is a str"),
    ("ids a list", lambda t: data.get_batch(list(range(100)), 8, 2), TypeError, "1-D tensor"),
    ("ids float", lambda t: data.get_batch(torch.rand(100), 8, 2), TypeError, "1-D tensor"),
    ("ids 2-D", lambda t: data.check_blocks(torch.zeros(2, 50, dtype=torch.long), 8), TypeError, "2-D"),
    ("block 0", lambda t: data.get_batch(torch.arange(100), 0, 2), ValueError, "block_size must be at least 1"),
    ("block -3", lambda t: data.check_blocks(torch.arange(100), -3), ValueError, "block_size must be at least 1"),
    ("block float", lambda t: data.get_batch(torch.arange(100), 8.0, 2), TypeError, "block_size must be a whole number"),
    ("block str", lambda t: data.check_blocks(torch.arange(100), "8"), TypeError, "block_size must be a whole number"),
    ("batch 0", lambda t: data.get_batch(torch.arange(100), 8, 0), ValueError, "batch_size must be at least 1"),
    ("generator", lambda t: data.get_batch(torch.arange(100), 8, 2, generator=0), TypeError, "torch.Generator"),
    ("play None", lambda t: data.clean_play(None), TypeError, "markdown must be a str"),
    ("description None", lambda t: data.split_esco_description(None), TypeError, "description must be a str"),
    ("batch float", lambda t: data.get_batch(torch.arange(100), 8, 2.5), TypeError, "batch_size must be a whole number"),
    ("val fraction", lambda t: data.split_by_document([{"id": i} for i in range(9)], "id", val=1.5), ValueError,
     r"val must be a fraction in \[0, 1\)"),
    ("no training", lambda t: data.split_by_document([{"id": i} for i in range(9)], "id", 0.5, 0.5), ValueError,
     "leaves no training"),
    ("separator", lambda t: data.corpus_text(["a", "b"], None), TypeError, "separator must be a str"),
]


@pytest.mark.parametrize("label, call, error, phrase", BAD_STREAMS, ids=[c[0] for c in BAD_STREAMS])
def test_bad_streams_and_batches(char, label, call, error, phrase):
    with pytest.raises(error, match=phrase):
        call(char)


# --------------------------------------------------------------------------- load_text
def _frame():
    import pandas as pd

    return pd.DataFrame({"text": ["a b c " * 30] * 12})


def _dataset(rows):
    from datasets import Dataset

    return Dataset.from_dict({"text": rows})


BAD_TEXT_SOURCES = [
    ("None rows", lambda tmp: data.load_text(_dataset(["a " * 50, None, "b " * 50] * 4)), TypeError, "row 1 is None"),
    ("int column", lambda tmp: data.load_text(_dataset(list(range(30)))), TypeError, "must hold str"),
    ("a DataFrame", lambda tmp: data.load_text(_frame()), TypeError, "Dataset.from_pandas"),
    ("a list", lambda tmp: data.load_text(["a b c " * 30] * 12), TypeError, "load_text takes a path"),
    ("bytes", lambda tmp: data.load_text(b"a b c\n" * 100), TypeError, "load_text takes a path"),
    ("an int", lambda tmp: data.load_text(3), TypeError, "load_text takes a path"),
    ("nothing", lambda tmp: data.load_text(), TypeError, "got neither"),
    ("both", lambda tmp: data.load_text("x\ny", text="x\ny"), TypeError, "got both"),
    ("text not str", lambda tmp: data.load_text(text=Path("a.txt")), TypeError, "text must be a str"),
    ("typo path", lambda tmp: data.load_text("corpus/my_textt.txt"), FileNotFoundError, "corpus/my_textt.txt"),
    ("typo name", lambda tmp: data.load_text("mytext.txt"), FileNotFoundError, "no text file at mytext.txt"),
    ("typo word", lambda tmp: data.load_text("shakespear"), FileNotFoundError, "no text file at shakespear"),
    ("typo spaces", lambda tmp: data.load_text("my notes/draft one.md"), FileNotFoundError, "draft one.md"),
    ("missing Path", lambda tmp: data.load_text(tmp / "gone.txt"), FileNotFoundError, "gone.txt"),
    ("folder", lambda tmp: data.load_text(tmp), IsADirectoryError, "is a folder"),
    ("folder as str", lambda tmp: data.load_text(str(tmp)), IsADirectoryError, "is a folder"),
    ("latin-1 file", lambda tmp: data.load_text(_write(tmp, "l1.txt", "café\n".encode("latin-1") * 300)),
     ValueError, "l1.txt is not UTF-8 text"),
    ("short one line", lambda tmp: data.load_text("the cat sat on the mat and then it slept"), ValueError,
     "too short"),
    ("explicit short text", lambda tmp: data.load_text(text="notes.txt"), ValueError, "too short"),
    ("min_chars 0", lambda tmp: data.load_text("a\nb\nc", min_chars=0), ValueError, "min_chars must be at least 1"),
    ("min_chars str", lambda tmp: data.load_text("a\nb\nc", min_chars="65"), TypeError, "min_chars must be a whole number"),
]


@pytest.mark.parametrize("label, call, error, phrase", BAD_TEXT_SOURCES, ids=[c[0] for c in BAD_TEXT_SOURCES])
def test_load_text_rejects_bad_sources(tmp_path, monkeypatch, label, call, error, phrase):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=phrase):
        call(tmp_path)


@pytest.mark.parametrize("lines", [1, 2])
def test_a_long_text_with_few_lines_is_cut_into_documents(tmp_path, lines):
    text = "\n".join([LONG_LINE] * lines)
    path = _write(tmp_path, "one.txt", text)
    for ds in (data.load_text(text), data.load_text(path), data.load_text(str(path)), data.load_text(text=text)):
        docs = [t for s in data.SPLITS for t in ds[s]["text"]]
        assert len(ds["validation"]) >= 1 and len(ds["test"]) >= 1 and len(ds["train"]) > len(ds["test"])
        assert max(len(d) for d in docs) <= data.MAX_DOC_CHARS + 1  # + its newline
        assert " ".join(" ".join(docs).split()) == " ".join(text.split())  # nothing lost, in order


def test_pretrain_cli_bpe_on_a_one_line_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TLTEACH_CACHE", str(tmp_path / "cache"))
    path = _write(tmp_path, "one.txt", LONG_LINE[:60_000])
    argv = ["pretrain", "--text", str(path), "--vocab-size", "300", "--n-layer", "1", "--n-head", "2", "--n-embd",
            "16", "--block-size", "16", "--batch-size", "2", "--max-iters", "1", "--eval-interval", "1",
            "--eval-iters", "1", "--warmup-iters", "1", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert "bpe tokenizer (300 tokens)" in capsys.readouterr().out


def test_an_existing_one_line_path_and_an_explicit_text_still_work(tmp_path):
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 30 for i in range(20))
    path = _write(tmp_path, "mine.txt", text)
    expected = data.load_text(text)["train"]["text"]
    assert data.load_text(str(path))["train"]["text"] == expected
    assert data.load_text(text=text)["train"]["text"] == expected


def test_a_long_one_line_text_with_a_slash_is_a_text():
    line = "see https://example.org/page for the details of the plan " * 60  # one line, over 256 characters
    ds = data.load_text(line)
    assert " ".join(t.strip() for s in data.SPLITS for t in ds[s]["text"]) == line.strip()
    assert len(ds["train"]) == 8 and len(ds["validation"]) == len(ds["test"]) == 1
