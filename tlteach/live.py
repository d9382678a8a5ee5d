"""A loss curve that redraws itself while a model trains (notebook 02 onwards).

Pass a :class:`LiveLoss` as ``on_eval`` to ``train.train`` or ``pretrain.pretrained_model``: after every
evaluation it redraws the evaluation losses in place in the notebook. Call :meth:`LiveLoss.show` with the
finished history at the end: the figure is then the same whether the model was trained now or loaded from
the cache (when no evaluation ran live).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

NOT_LOSSES = ("step", "tokens", "lr", "batch_loss", "elapsed")


def _rows(history) -> list[dict]:
    """Rows of a history: a pandas DataFrame (``train.TrainResult.history``) or a list of dicts."""
    if hasattr(history, "to_dict"):
        return history.to_dict(orient="records")
    return [dict(r) for r in history]


def eval_curve(history, sets: Sequence[str] | None = None, baselines: Mapping[str, float] | None = None,
               title: str = "loss during training", total_steps: int | None = None) -> Figure:
    """Evaluation losses against the training step, one line per evaluation set, with dashed baselines
    (notebook 02 onwards). ``history`` has a ``step`` column and one column per set (``train``, ``val``...);
    ``sets`` picks the columns (default: every loss column). ``total_steps`` fixes the x axis, so a live
    figure does not rescale as it grows. The figure is closed in pyplot, so a notebook shows it once."""
    import matplotlib.pyplot as plt

    rows = _rows(history)
    if sets is None:
        sets = [k for k in (rows[0] if rows else {}) if k not in NOT_LOSSES]
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    styles = ("--", ":", "-.")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color="grey", linestyle=styles[i % len(styles)], linewidth=1.2, label=f"{name}: {value:.2f}")
    for name in sets:
        pts = [(r["step"], r[name]) for r in rows if r.get(name) is not None and r[name] == r[name]]  # skip NaN
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-", markersize=4, label=f"{name} (last {ys[-1]:.2f})")
    last = max((r["step"] for r in rows), default=0)
    ax.set_xlim(0, max(total_steps or 0, last, 1))
    if rows and "tokens" in rows[-1]:
        title = f"{title}  ({rows[-1]['tokens']:,} training tokens seen)"
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


class LiveLoss:
    """An ``on_eval`` callback that draws the evaluation losses as they come in (notebook 02 onwards).

    >>> live = LiveLoss(baselines={"unigram": 5.76}, total_steps=600)   # doctest: +SKIP
    >>> model, tok, history = pretrained_model(preset, on_eval=live)     # doctest: +SKIP
    >>> live.show(history)                                               # doctest: +SKIP
    """

    def __init__(self, sets: Sequence[str] | None = None, baselines: Mapping[str, float] | None = None,
                 title: str = "loss during training", total_steps: int | None = None) -> None:
        self.sets, self.baselines, self.title, self.total_steps = sets, dict(baselines or {}), title, total_steps
        self.rows: list[dict] = []
        self._handle = None

    def figure(self, history=None) -> Figure:
        """The curve of ``history`` (default: the rows received so far)."""
        return eval_curve(self.rows if history is None else history, self.sets, self.baselines, self.title,
                          self.total_steps)

    def _draw(self, fig: Figure) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)

    def __call__(self, row: Mapping) -> None:
        """Record one evaluation row and redraw."""
        self.rows.append(dict(row))
        self._draw(self.figure())

    def show(self, history=None) -> None:
        """Draw the finished curve, in place of the live one if training ran (``figure`` returns it)."""
        self._draw(self.figure(history))
