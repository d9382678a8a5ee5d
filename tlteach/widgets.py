"""Interactive explorers for the notebooks (ipywidgets).

- :func:`logit_explorer` (notebook 01): move a few logits and a temperature, pick the target token, and see
  the probabilities, the loss ``-log p[target]`` and its gradient change. :func:`explorer_state` is the
  computation behind it, usable (and tested) without a browser.

Where no kernel runs (the rendered book), the notebooks show a static figure from :mod:`tlteach.plots` first.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from . import losses

if TYPE_CHECKING:
    import ipywidgets

DEFAULT_LOGITS = (2.0, 1.0, 0.5, -1.0)


@dataclass(frozen=True)
class ExplorerState:
    """What the logit explorer shows for one setting of its controls."""

    probs: tuple[float, ...]  # softmax(logits / temperature)
    loss: float  # -log probs[target], in nats
    grad: tuple[float, ...]  # d loss / d logits = (probs - onehot(target)) / temperature
    target: int
    temperature: float

    @property
    def perplexity(self) -> float:
        """``exp(loss)``."""
        return math.exp(self.loss)


def explorer_state(logits: Sequence[float], temperature: float = 1.0, target: int = 0) -> ExplorerState:
    """Probabilities, loss and gradient for ``logits`` at ``temperature`` with the given ``target`` (notebook 01).

    The loss is the cross-entropy of one token: ``-log softmax(z / T)[target]``; its gradient with respect to
    the logits ``z`` is ``(softmax(z / T) - onehot(target)) / T``.
    """
    if len(logits) < 2:
        raise ValueError(f"need at least 2 logits to make a distribution, got {len(logits)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0 <= target < len(logits):
        raise ValueError(f"target {target} is not an index into {len(logits)} logits")
    z = torch.tensor([float(v) for v in logits], dtype=torch.float64) / temperature
    logp = losses.log_softmax(z)
    probs = torch.exp(logp)
    onehot = torch.zeros_like(probs)
    onehot[target] = 1.0
    grad = (probs - onehot) / temperature
    return ExplorerState(
        probs=tuple(probs.tolist()),
        loss=float(-logp[target]),
        grad=tuple(grad.tolist()),
        target=int(target),
        temperature=float(temperature),
    )


def state_html(state: ExplorerState, labels: Sequence[str]) -> str:
    """An HTML table of the state: one bar per token (the target highlighted), then the loss."""
    rows = []
    for i, (label, p, g) in enumerate(zip(labels, state.probs, state.grad, strict=True)):
        colour = "#d62728" if i == state.target else "#1f77b4"
        mark = " &larr; target" if i == state.target else ""
        bar = f'<div style="background:{colour};height:14px;width:{max(p * 260, 1):.0f}px;display:inline-block"></div>'
        rows.append(
            f"<tr><td><code>{html.escape(repr(label))}</code></td><td>{bar}</td>"
            f"<td style='text-align:right'>{p:.3f}</td><td style='text-align:right'>{g:+.3f}</td>"
            f"<td>{mark}</td></tr>"
        )
    head = "<tr><th>token</th><th>probability</th><th>p</th><th>dL/dz</th><th></th></tr>"
    loss = (
        f"<p>loss = &minus;log p[target] = <b>{state.loss:.3f}</b> nats "
        f"(perplexity {state.perplexity:.2f}; uniform would be {math.log(len(labels)):.3f} nats)</p>"
    )
    return f"<table>{head}{''.join(rows)}</table>{loss}"


def logit_explorer(
    logits: Sequence[float] = DEFAULT_LOGITS,
    labels: Sequence[str] | None = None,
    target: int = 0,
    temperature: float = 1.0,
) -> ipywidgets.VBox:
    """A widget with one slider per logit, a temperature slider and a target choice (notebook 01).

    Returns an ``ipywidgets.VBox``; display it in a notebook (it needs a running kernel to react).
    """
    import ipywidgets as w

    labels = list(labels) if labels is not None else [f"token {i}" for i in range(len(logits))]
    if len(labels) != len(logits):
        raise ValueError(f"{len(labels)} labels for {len(logits)} logits")
    explorer_state(logits, temperature, target)  # validate the starting point
    style = {"description_width": "110px"}
    sliders = [
        w.FloatSlider(
            value=float(v),
            min=-10.0,
            max=10.0,
            step=0.1,
            description=f"logit {lab!r}",
            style=style,
            continuous_update=True,
        )
        for v, lab in zip(logits, labels, strict=True)
    ]
    temp = w.FloatLogSlider(
        value=float(temperature), base=10, min=-1, max=1, step=0.02, description="temperature", style=style
    )
    choice = w.Dropdown(
        options=[(repr(lab), i) for i, lab in enumerate(labels)], value=int(target), description="target", style=style
    )
    out = w.HTML()

    def update(_change=None) -> None:
        state = explorer_state([s.value for s in sliders], temp.value, choice.value)
        out.value = state_html(state, labels)

    for control in (*sliders, temp, choice):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox([w.VBox(sliders), w.VBox([temp, choice])]), out])
