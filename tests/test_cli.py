"""The command line (``tlteach.cli``): every subcommand's flags, the GPT-size flags shared with the benchmark,
and a parser that loads nothing heavy."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlteach import cli

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["doctor", "pretrain", "practice", "ddp"]

# tlteach.distributed.main's flags and defaults before they moved into cli.py (notebook 09 relies on them)
OLD_DDP_DEFAULTS = {"steps": 50, "global_batch": 32, "block_size": 64, "lr": 1e-3, "warmup_iters": None,
                    "grad_clip": 1.0, "seed": 0, "n_layer": 2, "n_head": 2, "n_embd": 64, "bias": "true",
                    "vocab_size": 256, "tokens": 100_000, "corpus": None, "eval_iters": 4, "device": "cpu",
                    "amp": False, "out": None}
# tlteach.pretrain.add_arguments's flags and defaults before they moved (None: the preset's)
OLD_PRETRAIN_DEFAULTS = {"dataset": None, "text": None, "preset": None, "tokenizer": "bpe", "vocab_size": None,
                         **dict.fromkeys(["n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters",
                                          "learning_rate", "min_lr", "warmup_iters", "lr_decay_iters",
                                          "eval_interval", "eval_iters", "weight_decay", "beta1", "beta2",
                                          "grad_clip", "seed"]),
                         "dropout": 0.0, "bias": "true", "device": None, "compile": False, "out": None}


def _subparser(name: str) -> argparse.ArgumentParser:
    (action,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices[name]


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {opt: a for a in parser._actions for opt in a.option_strings if opt not in ("-h", "--help")}


def _gpt_flags() -> dict[str, argparse.Action]:
    p = argparse.ArgumentParser()
    cli.add_gpt_flags(p)
    return _flags(p)


def _benchmark_parser() -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks" / "train_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def test_the_four_subcommands_and_a_required_choice():
    parser = cli.build_parser()
    for name in COMMANDS:
        assert _subparser(name).prog == f"python -m tlteach {name}"
    assert parser.parse_args(["doctor"]).command == "doctor"
    with pytest.raises(SystemExit):
        parser.parse_args([])
    with pytest.raises(SystemExit):
        parser.parse_args(["train"])


def test_gpt_flags_are_the_six_and_take_per_caller_defaults():
    assert set(_gpt_flags()) == {"--n-layer", "--n-head", "--n-embd", "--block-size", "--vocab-size", "--bias"}
    p = argparse.ArgumentParser()
    cli.add_gpt_flags(p, {"n_layer": 5, "bias": "false"})
    args = p.parse_args([])
    assert (args.n_layer, args.n_head, args.bias) == (5, None, "false")
    assert p.parse_args(["--n-embd", "48", "--bias", "true"]).n_embd == 48
    with pytest.raises(SystemExit):
        p.parse_args(["--bias", "maybe"])
    with pytest.raises(ValueError, match="n_layers"):
        cli.add_gpt_flags(argparse.ArgumentParser(), {"n_layers": 2})


def test_pretrain_flags_and_defaults_are_the_old_ones():
    args = cli.build_parser().parse_args(["pretrain"])
    assert vars(args) == {"command": "pretrain", **OLD_PRETRAIN_DEFAULTS}
    args = cli.build_parser().parse_args(["pretrain", "--n-layer", "3", "--text", "in.txt", "--tokenizer", "char",
                                          "--learning-rate", "3e-4", "--bias", "false", "--compile"])
    assert (args.n_layer, args.text, args.tokenizer, args.learning_rate, args.bias, args.compile) == (
        3, "in.txt", "char", 3e-4, "false", True)
    with pytest.raises(SystemExit):  # one source or the other
        cli.build_parser().parse_args(["pretrain", "--text", "in.txt", "--dataset", "shakespeare"])


def test_ddp_flags_and_defaults_are_the_old_ones():
    assert vars(cli.build_parser().parse_args(["ddp"])) == {"command": "ddp", **OLD_DDP_DEFAULTS}
    args = cli.build_parser().parse_args(["ddp", "--steps", "5", "--global-batch", "8", "--n-embd", "32",
                                          "--lr", "1e-2", "--amp", "--device", "cuda"])
    assert (args.steps, args.global_batch, args.n_embd, args.lr, args.amp, args.device) == (5, 8, 32, 1e-2, True,
                                                                                            "cuda")


def test_practice_flags():
    args = cli.build_parser().parse_args(["practice", "--check"])
    assert vars(args) == {"command": "practice", "notebooks": "notebooks", "out": "practice", "check": True}


def test_pretrain_ddp_and_the_benchmark_share_the_gpt_flags():
    gpt = _gpt_flags()
    bench = _flags(_benchmark_parser())
    for name, flags in [("pretrain", _flags(_subparser("pretrain"))), ("ddp", _flags(_subparser("ddp"))),
                        ("benchmark", bench)]:
        assert set(gpt) <= set(flags), f"{name} lacks {sorted(set(gpt) - set(flags))}"
        for opt, action in gpt.items():
            assert (flags[opt].type, flags[opt].choices, flags[opt].dest) == (action.type, action.choices,
                                                                              action.dest), (name, opt)
    pretrain = _subparser("pretrain")
    for opt in gpt:  # None means the preset's, in both
        assert bench[opt].default == _flags(pretrain)[opt].default, opt
    assert {"--preset", "--device", "--batch-size", "--steps", "--warmup", "--compile"} <= set(bench)
    args = _benchmark_parser().parse_args(["--n-layer", "4", "--vocab-size", "65", "--steps", "3"])
    assert (args.n_layer, args.vocab_size, args.n_head, args.steps, args.bias) == (4, 65, None, 3, "true")


def test_the_corpus_names_in_the_help_are_the_corpora():
    from tlteach import data

    assert cli.CORPUS_NAMES == tuple(data.CORPORA)
    assert data.SOURCE in cli.CORPUS_NAMES


def test_help_lists_every_subcommand():
    done = subprocess.run([sys.executable, "-m", "tlteach", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m tlteach")
    for name in COMMANDS:
        assert f"\n    {name} " in done.stdout, name


def test_building_the_parser_imports_nothing_heavy():
    # tlteach/__init__ imports torch (presets); the command modules, transformers and datasets must wait
    heavy = ["transformers", "datasets", "tlteach.data", "tlteach.pretrain", "tlteach.distributed",
             "tlteach.practice", "nbformat"]
    code = ("import sys, tlteach.cli; tlteach.cli.build_parser().parse_args(['pretrain', '--n-layer', '3']); "
            f"loaded = [m for m in {heavy!r} if m in sys.modules]; assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_pretrain_on_a_text_file_with_the_char_tokenizer_imports_neither_datasets_nor_transformers(tmp_path):
    # nanoGPT's shakespeare_char recipe (benchmarks/cli_vs_nanogpt.sh) needs torch only: a start-up that loads
    # datasets (with pandas and pyarrow) or transformers for it is time the learner waits for nothing
    text = tmp_path / "input.txt"
    text.write_text("\n".join(f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(200)))
    argv = ["pretrain", "--text", str(text), "--tokenizer", "char", "--n-layer", "1", "--n-head", "2", "--n-embd",
            "16", "--block-size", "16", "--batch-size", "2", "--max-iters", "2", "--eval-interval", "1",
            "--eval-iters", "1", "--warmup-iters", "1", "--device", "cpu", "--out", str(tmp_path / "ckpt")]
    code = ("import runpy, sys\n"
            f"sys.argv = ['tlteach', *{argv!r}]\n"
            "try:\n"
            "    runpy.run_module('tlteach', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as stop:\n"
            "    assert not stop.code, f'python -m tlteach pretrain exited with {stop.code!r}'\n"
            "print('LOADED', [m for m in ('datasets', 'transformers') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TLTEACH_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert "step 2: train loss" in done.stdout and (tmp_path / "ckpt" / "model.safetensors").is_file()
    assert done.stdout.splitlines()[-1] == "LOADED []", done.stdout


def test_main_runs_the_chosen_command(monkeypatch):
    from tlteach import practice

    seen = []
    monkeypatch.setattr(practice, "main", lambda notebooks, out, check: seen.append((notebooks, out, check)) or 7)
    assert cli.main(["practice", "--out", "elsewhere"]) == 7
    assert seen == [("notebooks", "elsewhere", False)]
