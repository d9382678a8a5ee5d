"""Interactive explorers for the notebooks (ipywidgets).

- :func:`run_explorer` (notebooks 05 to 07): a slider over fine-tuning runs, their curves and numbers.
- :func:`tradeoff_explorer` (notebook 08): pick methods and a run on the learning-against-forgetting plot.
- :func:`logit_explorer` (notebook 01): move a few logits and a temperature, pick the target token, and see
  the probabilities, the loss ``-log p[target]`` and its gradient change. The arithmetic behind it is
  :func:`tlteach.losses.explorer_state`, usable (and tested) without a browser.

Where no kernel runs (the rendered book), the notebooks show a static figure from :mod:`tlteach.plots` first.
A view: it imports the core (:mod:`tlteach.losses`) and the figures (:mod:`tlteach.plots`); neither imports it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import plots
from .losses import ExplorerState, explorer_state

if TYPE_CHECKING:
    import ipywidgets

DEFAULT_LOGITS = (2.0, 1.0, 0.5, -1.0)


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
    ppl = state.perplexity  # a huge perplexity reads better as a power of ten
    shown = f"{ppl:,.2f}" if ppl < 1e6 else f"{ppl:.2e}"
    loss = (  # a loss is never negative: -0.000 would be rounding
        f"<p>loss = &minus;log p[target] = <b>{max(state.loss, 0.0) + 0.0:.3f}</b> nats "
        f"(perplexity {shown}; uniform would be {math.log(len(labels)):.3f} nats)</p>"
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


def figure_html(fig, dpi: int = 80) -> str:
    """A matplotlib figure as an inline PNG ``<img>`` (so a widget's HTML can show a plot, in the book too)."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def run_html(records: Sequence[dict], index: int, baselines: dict | None = None) -> str:
    """What :func:`run_explorer` shows for run ``index``: its numbers, then every run's curves with it
    highlighted."""
    r = records[index]
    rise = r["forgetting"] / r["source_before"]
    head = (f"<p><b>{html.escape(r['label'])}</b>: source loss {r['source_before']:.3f} &rarr; "
            f"{r['source_after']:.3f} (forgetting {r['forgetting']:+.3f} nats, {rise:+.0%}); target loss "
            f"{r['target_before']:.3f} &rarr; {r['target_after']:.3f}; {r['trainable']:,} parameters trained</p>")
    return head + figure_html(plots.forgetting_curves(records, highlight=index, baselines=baselines, title=""))


def run_explorer(records: Sequence[dict], description: str = "run", baselines: dict | None = None,
                 start: int = 0) -> ipywidgets.VBox:
    """A slider over forgetting runs (a learning rate, a λ or a rank, notebooks 05 to 07): move it and the
    chosen run's source and target curves stand out from the others, with its numbers above them."""
    import ipywidgets as w

    if not records:
        raise ValueError("no runs to explore")
    slider = w.SelectionSlider(options=[(r["label"], i) for i, r in enumerate(records)], value=start,
                               description=description, continuous_update=False,
                               style={"description_width": "80px"}, layout=w.Layout(width="520px"))
    out = w.HTML(run_html(records, start, baselines))
    slider.observe(lambda change: setattr(out, "value", run_html(records, change["new"], baselines)), names="value")
    return w.VBox([slider, out])


def tradeoff_html(records: Sequence[dict], kinds: Sequence[str], index: int, front: Sequence[int] = ()) -> str:
    """What :func:`tradeoff_explorer` shows: the chosen run's numbers, then the learning-against-forgetting
    plot of the runs of the chosen ``kinds``, the Pareto front and the chosen run ringed (notebook 08)."""
    r = records[index]
    points: dict[str, list] = {}
    for rec in records:
        if rec["method"]["kind"] in kinds:
            points.setdefault(rec["method"]["kind"], []).append((rec["target_after"], rec["source_after"], ""))
    fr = [(records[i]["target_after"], records[i]["source_after"]) for i in front]
    head = (f"<p><b>{html.escape(r['label'])}</b>: target loss {r['target_after']:.3f}, source loss "
            f"{r['source_after']:.3f} (forgetting {r['forgetting']:+.3f} nats); {r['trainable']:,} parameters "
            f"trained; {'on' if index in set(front) else 'off'} the Pareto front</p>")
    fig = plots.tradeoff_figure(points, front=fr, start=(r["target_before"], r["source_before"]), title="",
                                highlight=(r["target_after"], r["source_after"]))
    return head + figure_html(fig)


def tradeoff_explorer(records: Sequence[dict], front: Sequence[int] = (), start: int = 0) -> ipywidgets.VBox:
    """Pick the methods to show and a run to highlight on the learning-against-forgetting plot (notebook 08)."""
    import ipywidgets as w

    if not records:
        raise ValueError("no runs to explore")
    kinds = list(dict.fromkeys(r["method"]["kind"] for r in records))
    pick = w.SelectMultiple(options=kinds, value=tuple(kinds), description="methods", rows=len(kinds))
    run = w.Dropdown(options=[(r["label"], i) for i, r in enumerate(records)], value=start, description="highlight")
    out = w.HTML()

    def update(_change=None) -> None:
        out.value = tradeoff_html(records, pick.value, run.value, front)

    for control in (pick, run):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox([pick, run]), out])
