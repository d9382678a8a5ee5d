"""tlteach: the helper package behind the transfer-learning course's notebooks.

Each module holds one idea (see DESIGN.md). The core, free of plots and command lines: ``data`` (corpora,
splits, token streams), ``tokenizer``, ``losses`` (and the logit explorer's arithmetic), ``presets`` (budgets,
device, seed), ``cache``, ``gpt`` (the model and its GPT-2 twin), ``checkpoint`` (safetensors) and ``train``
(the one training loop). What plugs into the loop: ``ewc``, ``lora``, ``replay``, ``ulmfit``; ``stack`` (many runs trained as one). The studies:
``study`` (the model zoo, one cached run, each study's settings), and its peers ``pretrain``, ``transfer``
(with ``similarity``), ``forgetting`` (with ``methods``), ``costs`` and ``distributed``; ``embeddings`` reads
what a model learned. The views import the core, never the reverse: ``plots``, ``live`` (a loss curve drawn
while training), ``widgets``. And ``cli`` (``python -m tlteach``), ``environment`` and ``practice``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .environment import show_environment  # noqa: E402
from .presets import Preset, get_preset, seed_everything  # noqa: E402

__all__ = ["Preset", "__version__", "get_preset", "seed_everything", "show_environment"]
