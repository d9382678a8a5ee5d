"""The figures the notebooks show (matplotlib).

Every function returns a ``matplotlib.figure.Figure`` that is already closed in pyplot, so a notebook shows
it exactly once (as the cell's last expression or with ``display(fig)``) and a loop of figures leaks nothing.

- :func:`logit_explorer_figure` (notebook 01): the static stand-in for the logit explorer widget.
- :func:`loss_curve` (notebook 01 onwards): training loss per step, smoothed, with baselines and evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .widgets import explorer_state

TARGET_COLOUR = "#d62728"
OTHER_COLOUR = "#1f77b4"
EVAL_COLOURS = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")


def logit_explorer_figure(
    logits: Sequence[float],
    target: int = 0,
    labels: Sequence[str] | None = None,
    temperatures: Sequence[float] = (0.5, 1.0, 2.0),
) -> Figure:
    """Bars of ``softmax(logits / T)`` for a few temperatures, the target in red, its loss in the title (notebook 01).

    One panel per temperature; what :func:`tlteach.widgets.logit_explorer` shows, frozen for the book.
    """
    labels = list(labels) if labels is not None else [f"token {i}" for i in range(len(logits))]
    if len(labels) != len(logits):
        raise ValueError(f"{len(labels)} labels for {len(logits)} logits")
    if not temperatures:
        raise ValueError("give at least one temperature")
    fig, axes = plt.subplots(1, len(temperatures), figsize=(3.6 * len(temperatures), 3.0), sharey=True, squeeze=False)
    for ax, temp in zip(axes[0], temperatures, strict=True):
        state = explorer_state(logits, temp, target)
        colours = [TARGET_COLOUR if i == target else OTHER_COLOUR for i in range(len(logits))]
        ax.bar(range(len(logits)), state.probs, color=colours)
        ax.set_xticks(range(len(logits)), [repr(lab) for lab in labels], rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(f"T = {temp:g}: loss {state.loss:.2f} nats")
        for i, p in enumerate(state.probs):
            ax.text(i, p + 0.02, f"{p:.2f}", ha="center", fontsize=8)
    axes[0][0].set_ylabel("probability")
    fig.suptitle(f"softmax(logits / T); target {labels[target]!r} in red")
    fig.tight_layout()
    plt.close(fig)
    return fig


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """The mean of each value and up to ``window - 1`` before it (same length as ``values``)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def loss_curve(
    train_losses: Sequence[float],
    baselines: Mapping[str, float] | None = None,
    evals: Mapping[str, Sequence[tuple[int, float]]] | None = None,
    smooth: int = 20,
    title: str = "training loss",
    ylabel: str = "cross-entropy (nats per token)",
) -> Figure:
    """Training loss per step (faint) and its moving average, with dashed baselines and evaluation points.

    ``baselines`` maps a name to a constant loss (e.g. ``{"uniform log V": 6.93}``); ``evals`` maps a name
    (e.g. ``"validation"``) to ``(step, loss)`` pairs. Used from notebook 01 on.
    """
    if len(train_losses) == 0:
        raise ValueError("no training losses to plot")
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    steps = range(len(train_losses))
    ax.plot(steps, train_losses, color=OTHER_COLOUR, alpha=0.3, linewidth=0.8, label="train (per batch)")
    ax.plot(
        steps, moving_average(list(train_losses), smooth), color=OTHER_COLOUR, label=f"train (mean of {smooth} steps)"
    )
    styles = ("--", ":", "-.")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color="grey", linestyle=styles[i % len(styles)], linewidth=1.2, label=f"{name}: {value:.2f}")
    for i, (name, points) in enumerate((evals or {}).items()):
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "o-", color=EVAL_COLOURS[i % len(EVAL_COLOURS)], label=f"{name} (last {ys[-1]:.2f})")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig
