#!/usr/bin/env python
"""Print each corpus's size per split in documents, characters and tokens (BPE of a preset's size).

    python benchmarks/corpus_stats.py [--preset quick|cpu|gpu] [--markdown benchmarks/corpus_stats.md]
"""

from __future__ import annotations

import argparse
import platform
import time

from tlteach import data
from tlteach.presets import get_preset
from tlteach.tokenizer import get_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default=None)
    parser.add_argument("--markdown", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()
    preset = get_preset(args.preset)
    start = time.perf_counter()
    tok = get_tokenizer("bpe", vocab_size=preset.vocab_size)
    lines = [f"Corpus sizes; tokens from the BPE of the `{preset.name}` preset (vocabulary {tok.vocab_size}, "
             f"trained on the Shakespeare training split). Produced by `benchmarks/corpus_stats.py` "
             f"on an {platform.machine()} machine with Python {platform.python_version()}.",
             "", "| corpus | split | documents | characters | tokens | characters/token |", "|---|---|---:|---:|---:|---:|"]
    for name in data.CORPORA:
        ds = data.load_corpus(name)
        for split in data.SPLITS:
            chars = sum(len(t) for t in ds[split]["text"])
            tokens = sum(len(ids) for ids in tok.encode_batch(ds[split]["text"]))
            lines.append(f"| {name} | {split} | {len(ds[split]):,} | {chars:,} | {tokens:,} | {chars / tokens:.2f} |")
    lines.append("")
    lines.append(f"(computed in {time.perf_counter() - start:.1f} s)")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
