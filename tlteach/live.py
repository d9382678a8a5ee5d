"""A loss curve that redraws itself while a model trains (notebook 02 onwards).

Pass a :class:`LiveLoss` as ``on_eval`` to ``train.train`` or ``pretrain.pretrained_model``: after every
evaluation it redraws the evaluation losses in place in the notebook. Call :meth:`LiveLoss.show` with the
finished history at the end: the figure is then the same whether the model was trained now or loaded from
the cache (when no evaluation ran live).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from .plots import eval_curve

__all__ = ["LiveLoss", "eval_curve"]


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
