"""tlteach: the helper package behind the transfer-learning course's notebooks.

Each module holds one idea (see DESIGN.md). The core, free of plots and command lines: ``data`` (corpora,
splits, token streams), ``tokenizer``, ``losses`` (and the logit explorer's arithmetic), ``presets`` (budgets,
device, seed), ``cache``, ``gpt`` (the model and its GPT-2 twin), ``checkpoint`` (safetensors) and ``train``
(the one training loop). What plugs into the loop: ``ewc``, ``lora``, ``replay``, ``ulmfit``; ``stack`` (many runs trained as one). The studies:
``study`` (the model zoo, one cached run, each study's settings), and its peers ``pretrain``, ``transfer``
(with ``similarity``), ``forgetting`` (with ``methods``), ``costs`` and ``distributed``; ``embeddings`` reads
what a model learned. Transfer to a task (notebook 10): ``tasks`` (the labelled tasks), ``bow`` (the baselines),
``classifier`` (a head on the model, and its ``transformers`` twin), ``encoder`` (BERT-style, masked-LM). The views import the core, never the reverse: ``plots``, ``live`` (a loss curve drawn
while training), ``widgets``. And ``cli`` (``python -m tlteach``), ``environment`` and ``practice``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Preset", "__version__", "get_preset", "seed_everything", "show_environment"]
_LAZY = {"Preset": "presets", "get_preset": "presets", "seed_everything": "presets", "show_environment": "environment"}


def __getattr__(name: str):
    """``tlteach.get_preset`` and friends, imported on first use: ``python -m tlteach`` parses and checks its
    arguments before it imports torch, so a mistyped flag costs a fraction of a second, not torch's start-up."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
