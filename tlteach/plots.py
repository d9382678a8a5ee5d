"""The figures the notebooks show (matplotlib).

Every function returns a ``matplotlib.figure.Figure`` that is already closed in pyplot, so a notebook shows
it exactly once (as the cell's last expression or with ``display(fig)``) and a loop of figures leaks nothing.

- :func:`logit_explorer_figure` (notebook 01): the static stand-in for the logit explorer widget.
- :func:`loss_curve` (notebook 01 onwards): training loss per step, smoothed, with baselines and evaluations.
- :func:`eval_curve` (notebook 02 onwards): a training history's evaluation losses (``live.LiveLoss`` redraws it).
- :func:`embedding_map` (notebook 02): some tokens' embeddings in 2-D (``embeddings.pca_2d``), labelled by group.
- :func:`lr_search_figure` (notebook 03): validation curves of one source at several learning rates.
- :func:`learning_curve_figure` (notebook 03): test loss against target data, one line per source.
- :func:`labelled_scatter` (notebook 04): one labelled point per source (transfer gain against similarity).
- :func:`forgetting_curves` (notebooks 05 to 07): source and target loss while fine-tuning, one line per run.
- :func:`tradeoff_figure` (notebooks 06 to 08): target loss against source loss, one point per run.
- :func:`layer_change_figure` (notebook 05): how far each module's weights moved; :func:`barh_figure` in general.
- :func:`fisher_groups_figure` (notebook 06): the Fisher's mass per parameter group.

A view: it draws what the core modules compute (:mod:`tlteach.losses`, :mod:`tlteach.embeddings`) and imports
only them; the other views (:mod:`tlteach.widgets`, :mod:`tlteach.live`) import it, never the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .embeddings import pca_2d
from .losses import explorer_state

TARGET_COLOUR = "#d62728"
# The book's text column is about 690 px wide and the notebooks draw at 100 dpi: a figure at most WIDTH inches wide
# is shown at full size, so its smallest text (8 pt, 11 px) stays legible there.
WIDTH = 6.9
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
    fig, axes = plt.subplots(1, len(temperatures), figsize=(WIDTH, 3.0), sharey=True, squeeze=False)
    for ax, temp in zip(axes[0], temperatures, strict=True):
        state = explorer_state(logits, temp, target)
        colours = [TARGET_COLOUR if i == target else OTHER_COLOUR for i in range(len(logits))]
        ax.bar(range(len(logits)), state.probs, color=colours)
        ax.set_xticks(range(len(logits)), [repr(lab) for lab in labels], rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(f"T = {temp:g}: loss {state.loss:.2f} nats", fontsize=9)
        for i, p in enumerate(state.probs):
            ax.text(i, p + 0.02, f"{p:.2f}", ha="center", fontsize=8)
    axes[0][0].set_ylabel("probability")
    fig.suptitle(f"softmax(logits / T); target {labels[target]!r} in red")
    return _closed(fig)


NOT_LOSSES = ("step", "tokens", "lr", "batch_loss", "elapsed")  # history columns that are not losses


def _closed(fig: Figure) -> Figure:
    """Lay out ``fig``, close it in pyplot (so a notebook shows it once, as the value it is given) and return it."""
    fig.tight_layout()
    plt.close(fig)
    return fig


def _baselines(ax, baselines: Mapping[str, float] | None) -> None:
    """Dashed horizontal lines for reference losses (uniform, unigram...)."""
    styles = ("--", ":", "-.")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color="grey", linestyle=styles[i % len(styles)], linewidth=1.2, label=f"{name}: {value:.2f}")


def _finish(fig: Figure, ax, title: str, ylabel: str, title_size: float | None = None) -> Figure:
    """Labels, grid and legend of a loss figure; close it in pyplot and return it."""
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=title_size)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _closed(fig)


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
    fig, ax = plt.subplots(figsize=(WIDTH, 4.0))
    steps = range(len(train_losses))
    ax.plot(steps, train_losses, color=OTHER_COLOUR, alpha=0.3, linewidth=0.8, label="train (per batch)")
    ax.plot(
        steps, moving_average(list(train_losses), smooth), color=OTHER_COLOUR, label=f"train (mean of {smooth} steps)"
    )
    _baselines(ax, baselines)
    for i, (name, points) in enumerate((evals or {}).items()):
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "o-", color=EVAL_COLOURS[i % len(EVAL_COLOURS)], label=f"{name} (last {ys[-1]:.2f})")
    return _finish(fig, ax, title, ylabel)


def eval_curve(history, sets: Sequence[str] | None = None, baselines: Mapping[str, float] | None = None,
               title: str = "loss during training", total_steps: int | None = None) -> Figure:
    """Evaluation losses against the training step, one line per evaluation set, with dashed baselines
    (notebook 02 onwards). ``history`` (``train.TrainResult.history``, or a list of row dicts) has a ``step``
    column and one column per set (``train``, ``val``...); ``sets`` picks the columns (default: every loss
    column). ``total_steps`` fixes the x axis, so a live figure does not rescale as it grows."""
    rows = history.to_dict(orient="records") if hasattr(history, "to_dict") else [dict(r) for r in history]
    if sets is None:
        sets = [k for k in (rows[0] if rows else {}) if k not in NOT_LOSSES]
    fig, ax = plt.subplots(figsize=(WIDTH, 4.0))
    _baselines(ax, baselines)
    for name in sets:
        pts = [(r["step"], r[name]) for r in rows if r.get(name) is not None and r[name] == r[name]]  # skip NaN
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-", markersize=4, label=f"{name} (last {ys[-1]:.2f})")
    last = max((r["step"] for r in rows), default=0)
    ax.set_xlim(0, max(total_steps or 0, last, 1))
    if rows and "tokens" in rows[-1]:
        title = f"{title}  ({rows[-1]['tokens']:,} training tokens seen)"
    return _finish(fig, ax, title, "cross-entropy (nats per token)", title_size=10)


def _label_offsets(xy: torch.Tensor, near: float = 0.035) -> list[tuple[int, int]]:
    """An offset (points) for each point's label, so that labels of points close together do not overlap: each
    takes the first of a few positions around its point not already taken by a nearby label."""
    lo, span = xy.min(0).values, (xy.max(0).values - xy.min(0).values).clamp_min(1e-9)
    pos = ((xy - lo) / span).tolist()  # 0..1 on both axes
    choices = [(3, 2), (3, -10), (3, 13), (-50, 2), (-50, -10), (-50, 13), (3, -22), (3, 25)]
    taken: list[tuple[float, float]] = []
    out = []
    for x, y in pos:
        for offset in choices:
            spot = (x + offset[0] / 450, y + offset[1] / 300)  # points as a fraction of the axes (~450 x 300 pt)
            if all(abs(spot[0] - a) > 3 * near or abs(spot[1] - b) > near for a, b in taken):
                break
        taken.append(spot)
        out.append(offset)
    return out


def embedding_map(weight: torch.Tensor, token_ids: Sequence[int], labels: Sequence[str],
                  groups: Mapping[str, Sequence[int]] | None = None,
                  title: str = "token embeddings, first two principal components") -> Figure:
    """A labelled scatter of some tokens' embeddings projected to 2-D with ``embeddings.pca_2d`` (notebook 02).

    ``weight`` is the embedding matrix (one row per token). Tokens listed in ``groups`` (name -> ids) get that
    group's colour; the others are grey.
    """
    token_ids = list(token_ids)
    if len(labels) != len(token_ids):
        raise ValueError(f"{len(labels)} labels for {len(token_ids)} tokens")
    if weight.dim() != 2:
        raise ValueError(f"expected an embedding matrix (vocab, dim), got shape {tuple(weight.shape)}")
    xy, explained = pca_2d(weight.detach()[token_ids])
    colour_of = {}
    for g, members in enumerate((groups or {}).values()):
        for i in members:
            colour_of[i] = f"C{g}"
    fig, ax = plt.subplots(figsize=(WIDTH, 5.4))
    colours = [colour_of.get(i, "0.6") for i in token_ids]
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=18)
    for (x, y), text, colour, offset in zip(xy.tolist(), labels, colours, _label_offsets(xy), strict=True):
        ax.annotate(text.strip() or repr(text), (x, y), xytext=offset, textcoords="offset points", fontsize=8,
                    color=colour if colour != "0.6" else "0.3")
    ax.margins(0.12)  # room for the labels at the edges
    for g, name in enumerate((groups or {}).keys()):
        ax.scatter([], [], c=f"C{g}", s=18, label=name)
    if groups:
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}% of the variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f}%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _closed(fig)


SOURCE_COLOURS = {"scratch": "#7f7f7f", "shakespeare": OTHER_COLOUR, "esco-skills": "#2ca02c",
                  "python-docs": "#9467bd", "shakespeare+esco-skills": "#17becf", "shakespeare+shakespeare": "#8c564b"}


def lr_search_figure(runs: Sequence[Mapping], title: str = "one source, three learning rates") -> Figure:
    """Validation loss against step for runs that differ in learning rate, each run's best point ringed and
    the chosen run (lowest validation loss) drawn thick (notebook 03). ``runs`` are ``transfer.finetune_run``
    records."""
    if not runs:
        raise ValueError("no runs to plot")
    best = min(runs, key=lambda r: r["val"])
    fig, ax = plt.subplots(figsize=(WIDTH, 4.0))
    for i, r in enumerate(sorted(runs, key=lambda r: r["lr"])):
        h = r["history"]
        chosen = r is best
        line, = ax.plot(h["step"], h["val"], "-", linewidth=2.5 if chosen else 1.2,
                        color=EVAL_COLOURS[i % len(EVAL_COLOURS)],
                        label=f"lr {r['lr']:g}: best {r['val']:.3f} at step {r['step']}" + (" (chosen)" if chosen else ""))
        ax.plot([r["step"]], [r["val"]], "o", markersize=9, markerfacecolor="none", color=line.get_color())
    ax.set_ylabel("target validation loss (nats per token)")
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _closed(fig)


def learning_curve_figure(curve, y: str = "test", title: str = "learning curves on the target domain",
                          labels: Mapping[str, str] | None = None) -> Figure:
    """``y`` (default: test loss) against the number of target training tokens, log scale, one line per
    source (notebook 03). ``curve`` is a ``transfer.learning_curve`` table; runs stopped by the step cap
    rather than by early stopping are drawn as hollow markers."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
    for i, (source, rows) in enumerate(curve.groupby("source", sort=False)):
        rows = rows.sort_values("tokens")
        colour = SOURCE_COLOURS.get(source, EVAL_COLOURS[i % len(EVAL_COLOURS)])
        name = (labels or {}).get(source, source)
        ax.plot(rows["tokens"], rows[y], "-", color=colour, label=name)
        capped = rows["capped"] if "capped" in rows else [False] * len(rows)
        for t, v, c in zip(rows["tokens"], rows[y], capped, strict=True):
            ax.plot([t], [v], "o", color=colour, markerfacecolor="none" if c else colour)
    ax.set_xscale("log")
    ax.set_xlabel("target training tokens (log scale)")
    ax.set_ylabel(f"target {y} loss (nats per token)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if "capped" in curve and curve["capped"].any():
        ax.plot([], [], "o", color="grey", markerfacecolor="none", label="hollow: stopped by the step cap")
    ax.legend(fontsize=8)
    return _closed(fig)


def label_curve_figure(table, y: str = "test_acc", baselines: Mapping[str, float] | None = None,
                       title: str = "accuracy against the number of labels") -> Figure:
    """``y`` (default: test accuracy) against the number of labelled examples, log scale: one line per arm
    through its mean over seeds, with a band from the lowest seed to the highest (notebook 10). ``table`` is a
    ``few_labels.label_curve`` table; the bag of words is dashed; ``baselines`` are grey horizontal lines."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.2))
    for i, (arm, rows) in enumerate(table.groupby("arm", sort=False)):
        stats = rows.groupby("n")[y].agg(["mean", "min", "max"]).sort_index()
        colour = "black" if arm == "bag-of-words" else EVAL_COLOURS[i % len(EVAL_COLOURS)]
        ax.plot(stats.index, stats["mean"], "--" if arm == "bag-of-words" else "-o", color=colour, label=arm)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=0.12)
    _baselines(ax, baselines)
    ax.set_xscale("log")
    counts = sorted(table["n"].unique())
    ax.set_xticks(counts, [str(n) for n in counts])  # the counts measured, written out (not 3x10^1)
    ax.minorticks_off()
    ax.set_xlabel("labelled examples (log scale)")
    ax.set_ylabel(y.replace("_", " ").replace("acc", "accuracy"))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _closed(fig)


def labelled_scatter(xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], xlabel: str, ylabel: str,
                     title: str) -> Figure:
    """One labelled point per item, e.g. each source's transfer gain against its similarity (notebook 04)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for x, y, label in zip(xs, ys, labels, strict=True):
        ax.plot([x], [y], "o", markersize=8, color=SOURCE_COLOURS.get(label, OTHER_COLOUR))
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.2, y=0.2)
    return _closed(fig)


def forgetting_curves(records: Sequence[Mapping], highlight: int | None = None,
                      baselines: Mapping[str, float] | None = None,
                      title: str = "fine-tuning on the target, watching the source") -> Figure:
    """Source (top) and target (bottom) validation loss against the fine-tuning step, one line per run
    (notebooks 05 to 07). ``records`` are ``forgetting.forgetting_run`` results; run ``highlight`` is drawn
    thick and the others faint; ``baselines`` (e.g. the source's unigram loss) go on the source panel."""
    if not records:
        raise ValueError("no runs to plot")
    fig, axes = plt.subplots(2, 1, figsize=(WIDTH, 7.2), sharex=True)  # one panel per row: legible in a column
    colours = plt.get_cmap("viridis")([i / max(1, len(records) - 1) * 0.85 for i in range(len(records))])
    _baselines(axes[0], baselines)
    others = [i for i in range(len(records)) if highlight is not None and i != highlight]
    for i, r in enumerate(records):
        h = r["history"]
        faint = i in others
        style = dict(color=colours[i], alpha=0.25 if faint else 1.0, linewidth=1.0 if faint else 2.2)
        for ax, domain in zip(axes, ("source", "target")):
            # a highlighted run is named in the legend; the faint rest share one entry (an explorer's view)
            label = f"{r['label']} ({h[domain][-1]:.2f})" if not faint else (
                f"the other {len(others)} runs" if i == others[0] else "_nolegend_")
            ax.plot(h["step"], h[domain], "-", label=label, **style)
    for ax, name in zip(axes, ("source (Shakespeare): forgetting", "target (ESCO occupations): learning")):
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("validation loss (nats per token)")
        ax.grid(alpha=0.3)
        many = highlight is None and len(records) > 4
        pairs = sorted(zip(*ax.get_legend_handles_labels()), key=lambda p: p[1].startswith("the other "))
        ax.legend(*zip(*pairs), fontsize=8, ncols=2 if many else 1)  # many runs: two columns, fewer lines hidden
    axes[1].set_xlabel("fine-tuning step")
    fig.suptitle(title, fontsize=11)
    return _closed(fig)


METHOD_MARKERS = {"full": "o", "ewc": "s", "l2": "D", "lora": "^", "replay": "v", "discriminative": "P",
                  "unfreeze": "X"}
METHOD_COLOURS = {"full": "#7f7f7f", "ewc": TARGET_COLOUR, "l2": "#ff7f0e", "lora": "#2ca02c", "replay": "#9467bd",
                  "discriminative": "#8c564b", "unfreeze": "#17becf"}
# variants that share a method's first word get their own marker and colour
METHOD_MARKERS["lora + embeddings"], METHOD_COLOURS["lora + embeddings"] = "<", "#98df8a"


def tradeoff_figure(points: Mapping[str, Sequence[tuple[float, float, str]]],
                    paths: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                    front: Sequence[tuple[float, float]] | None = None, start: tuple[float, float] | None = None,
                    title: str = "learning against forgetting",
                    highlight: tuple[float, float] | None = None) -> Figure:
    """Target loss (x: learning, lower is better) against source loss (y: forgetting, lower is better), one
    marker per run (notebooks 06 to 08). ``points`` maps a method to ``(target, source, label)`` triples;
    ``paths`` maps a name to a run's trajectory (full fine-tuning stopped early at each evaluation); ``front``
    is the Pareto front, ``start`` the pretrained model before fine-tuning, ``highlight`` a run to ring."""
    fig, ax = plt.subplots(figsize=(WIDTH, 5.0))
    for name, (xs, ys) in (paths or {}).items():
        ax.plot(xs, ys, "--", color="grey", alpha=0.8, linewidth=1.2, label=name)
    for method, pts in points.items():
        if not pts:
            continue
        xs, ys, labels = zip(*pts)
        kind = method if method in METHOD_MARKERS else method.split()[0]
        ax.plot(xs, ys, METHOD_MARKERS.get(kind, "o"), color=METHOD_COLOURS.get(kind, OTHER_COLOUR), markersize=7,
                linestyle="-", linewidth=0.8, label=method)
        for x, y, label in pts:
            if label:
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if front:
        fx, fy = zip(*sorted(front))
        ax.plot(fx, fy, "-", color="black", linewidth=2.5, alpha=0.35, label="Pareto front", zorder=0)
    if start is not None:
        ax.plot([start[0]], [start[1]], "*", color="black", markersize=12, label="before fine-tuning")
    if highlight is not None:
        ax.plot([highlight[0]], [highlight[1]], "o", markersize=18, markerfacecolor="none", color="black",
                markeredgewidth=2)
    ax.set_xlabel("target validation loss (nats per token): lower = learned more")
    ax.set_ylabel("source validation loss (nats per token): lower = forgot less")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _closed(fig)


def barh_figure(values: Mapping[str, float], xlabel: str, title: str, fmt: str | None = None) -> Figure:
    """One horizontal bar per entry, in order, labelled with its value when ``fmt`` is given (notebooks 05 and 09)."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.28 * len(names) + 1.2))
    bars = ax.barh(range(len(names)), [values[n] for n in names], color=OTHER_COLOUR)
    if fmt:
        ax.bar_label(bars, [format(values[n], fmt) for n in names], padding=3, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.margins(x=0.15)
    return _closed(fig)


def memory_figure(parts: Mapping[str, Mapping[str, float]], unit: str = "MB",
                  title: str = "what training holds in memory") -> Figure:
    """One stacked horizontal bar per setting (e.g. full fine-tuning, LoRA), split into its parts (weights,
    gradients, optimizer state, activations), in ``unit`` (notebook 09)."""
    names = list(parts)
    kinds = list(dict.fromkeys(k for m in parts.values() for k in m))
    fig, ax = plt.subplots(figsize=(WIDTH, 0.5 * len(names) + 1.6))
    left = [0.0] * len(names)
    for j, kind in enumerate(kinds):
        widths = [parts[n].get(kind, 0.0) for n in names]
        ax.barh(range(len(names)), widths, left=left, color=f"C{j}", label=kind)
        left = [a + b for a, b in zip(left, widths)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total:,.0f} {unit}", va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncols=len(kinds), loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(names) < 3 else -0.2))
    ax.margins(x=0.18)
    return _closed(fig)


def layer_change_figure(change: Mapping[str, float], title: str = "how far each part of the model moved") -> Figure:
    """Relative weight change ``‖Δθ‖ / ‖θ‖`` per module, one horizontal bar each (notebook 05)."""
    return barh_figure(change, "relative change of the weights, ‖θ_after − θ_before‖ / ‖θ_before‖", title)


def fisher_groups_figure(groups: Mapping[str, object], title: str = "where the Fisher's mass sits") -> Figure:
    """Share of the Fisher's total per parameter group, one bar per Fisher kind, with each group's share of the
    parameters as a tick (where a flat Fisher would put it) (notebook 06). ``groups`` maps a kind to
    ``ewc.fisher_by_group``'s table."""
    tables = list(groups.items())
    names = list(tables[0][1].index)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.32 * len(names) + 1.4))
    height = 0.8 / len(tables)
    for i, (kind, df) in enumerate(tables):
        ax.barh([j + i * height for j in range(len(names))], df.loc[names, "mass"], height=height,
                color=EVAL_COLOURS[i % len(EVAL_COLOURS)], label=f"{kind} Fisher")
    share = tables[0][1].loc[names, "params"] / tables[0][1]["params"].sum()
    ax.plot(share, [j + 0.4 - height / 2 for j in range(len(names))], "|", color="black", markersize=12,
            label="share of the parameters (a flat Fisher)")
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(names))], names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the Fisher's total")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="lower right")
    return _closed(fig)
