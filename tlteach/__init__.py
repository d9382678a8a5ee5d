"""tlteach: the helper package behind the transfer-learning course's notebooks.

Each module holds one idea (see DESIGN.md): ``data`` (corpora, splits, token blocks), ``tokenizer``,
``losses``, ``presets`` (budgets, device, seed), ``cache``, ``gpt`` (the model and its GPT-2 twin),
``checkpoint`` (safetensors), ``train`` (the one training loop), ``pretrain``, ``embeddings``, ``plots``,
``live`` (a loss curve drawn while training), ``widgets`` and ``practice`` (student versions).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .environment import show_environment  # noqa: E402
from .presets import Preset, get_preset, seed_everything  # noqa: E402

__all__ = ["Preset", "__version__", "get_preset", "seed_everything", "show_environment"]
