"""The logit explorer widget and the static figures (notebook 01 onwards); the explorer's arithmetic,
``losses.explorer_state``, is tested in test_losses.py."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tlteach import losses, plots, widgets  # noqa: E402


def test_state_html_marks_target() -> None:
    html = widgets.state_html(losses.explorer_state([1.0, 0.0], 1.0, 1), ["a", "<b>"])
    assert "&lt;b&gt;" in html and "'<b>'" not in html  # labels are escaped
    rows = html.split("<tr>")[2:]  # after the header row
    assert "target" not in rows[0] and "target" in rows[1]


def test_state_html_shows_extremes_readably() -> None:
    sure = widgets.state_html(losses.explorer_state([40.0, 0.0, 0.0], 1.0, 0), list("abc"))
    hopeless = widgets.state_html(losses.explorer_state([40.0, 0.0, 0.0], 1.0, 1), list("abc"))
    assert "<b>0.000</b>" in sure and "-0.000" not in sure  # no negative zero loss
    assert "perplexity 2.35e+17" in hopeless  # not 235385266837020000.00


def test_logit_explorer_widget_reacts() -> None:
    box = widgets.logit_explorer([2.0, 1.0, 0.0], labels=["x", "y", "z"], target=0)
    sliders = box.children[0].children[0].children
    html = box.children[1]
    before = html.value
    assert f"{losses.explorer_state([2.0, 1.0, 0.0], 1.0, 0).loss:.3f}" in before
    sliders[0].value = -5.0
    assert html.value != before
    assert f"{losses.explorer_state([-5.0, 1.0, 0.0], 1.0, 0).loss:.3f}" in html.value
    with pytest.raises(ValueError):
        widgets.logit_explorer([1.0, 2.0], labels=["only one"])


def test_logit_explorer_figure() -> None:
    fig = plots.logit_explorer_figure(
        [2.0, 1.0, 0.5, -1.0], target=1, labels=list("abcd"), temperatures=(0.5, 1.0, 2.0)
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    _legible_in_the_book(fig)
    for ax, temp in zip(fig.axes, (0.5, 1.0, 2.0), strict=True):
        heights = [bar.get_height() for bar in ax.patches]
        assert len(heights) == 4 and math.isclose(sum(heights), 1.0, rel_tol=1e-9)
        loss = losses.explorer_state([2.0, 1.0, 0.5, -1.0], temp, 1).loss
        assert f"{loss:.2f}" in ax.get_title()
        assert ax.patches[1].get_facecolor() != ax.patches[0].get_facecolor()  # the target stands out
    with pytest.raises(ValueError):
        plots.logit_explorer_figure([1.0, 2.0], labels=["a"])


def test_loss_curve() -> None:
    history = [6.9 - 0.01 * i for i in range(100)]
    fig = plots.loss_curve(
        history,
        baselines={"uniform": 6.93, "unigram": 5.7, "third": 5.0, "fourth": 4.0},
        evals={"validation": [(99, 6.0)]},
        smooth=10,
    )
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "step"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("uniform" in t for t in labels) and any("fourth" in t for t in labels)
    assert any("validation" in t for t in labels)
    assert len(ax.lines) == 2 + 4 + 1
    with pytest.raises(ValueError):
        plots.loss_curve([])


def test_moving_average() -> None:
    assert plots.moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert plots.moving_average([5.0], 10) == [5.0]
    with pytest.raises(ValueError):
        plots.moving_average([1.0], 0)


def _run(label: str, rise: float, steps=(0, 10, 20)) -> dict:
    src = [4.0 + rise * i / (len(steps) - 1) for i in range(len(steps))]
    tgt = [5.0 - 0.5 * i for i in range(len(steps))]
    return {"label": label, "history": {"step": list(steps), "source": src, "target": tgt},
            "source_before": src[0], "source_after": src[-1], "target_before": tgt[0], "target_after": tgt[-1],
            "forgetting": rise, "trainable": 1234}


def test_run_explorer_highlights_the_chosen_run() -> None:
    runs = [_run("lr=1e-04", 0.2), _run("lr=1e-03", 1.0)]
    text = widgets.run_html(runs, 1)
    assert "<b>lr=1e-03</b>" in text and "+1.000 nats" in text and "+25%" in text and "1,234" in text
    assert text.count("data:image/png;base64,") == 1
    box = widgets.run_explorer(runs, description="lr", start=0)
    slider, out = box.children
    assert [label for label, _ in slider.options] == ["lr=1e-04", "lr=1e-03"]
    assert "<b>lr=1e-04</b>" in out.value
    slider.value = 1
    assert "<b>lr=1e-03</b>" in out.value
    with pytest.raises(ValueError, match="no runs"):
        widgets.run_explorer([])


def _legible_in_the_book(fig) -> None:
    """Shown at full size in the book's column, and no text smaller than 8 pt (11 px at 100 dpi)."""
    from matplotlib.text import Text

    assert fig.get_figwidth() <= plots.WIDTH
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text()]
    assert sizes and min(sizes) >= 8, min(sizes)


def test_forgetting_figures() -> None:
    runs = [_run("a", 0.2), _run("b", 1.0)]
    fig = plots.forgetting_curves(runs, highlight=0, baselines={"unigram": 5.0})
    _legible_in_the_book(fig)
    source, target = fig.axes
    assert len(source.lines) == 3 and len(target.lines) == 2  # two runs and the baseline on the source panel
    assert source.lines[1].get_alpha() == 1.0 and source.lines[2].get_alpha() < 1.0
    # an explorer's view names the chosen run; the faint rest share one legend entry however many they are
    many = [_run(f"r{i}", 0.1 * i) for i in range(7)]
    legend = plots.forgetting_curves(many, highlight=3).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"r3 ({many[3]['history']['source'][-1]:.2f})",
                                                         "the other 6 runs"]
    assert len(plots.forgetting_curves(many).axes[0].get_legend().get_texts()) == 7  # no highlight: every run
    fig = plots.tradeoff_figure({"ewc": [(4.0, 5.0, "λ 1"), (4.5, 4.6, "")]},
                                paths={"stopped early": ([5.0, 4.0], [4.0, 5.5])}, front=[(4.0, 5.0), (4.5, 4.6)],
                                start=(5.0, 4.0))
    _legible_in_the_book(fig)
    ax = fig.axes[0]
    assert "target" in ax.get_xlabel() and "source" in ax.get_ylabel()
    two = plots.tradeoff_figure({"lora": [(4.0, 5.0, "")], "lora + embeddings": [(3.5, 5.5, "")]}).axes[0]
    assert len({line.get_marker() for line in two.lines}) == 2  # a variant is told apart from its method
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"ewc", "stopped early", "Pareto front"}
    fig = plots.layer_change_figure({"wte": 0.5, "ln_f": 0.1})
    assert [p.get_width() for p in fig.axes[0].patches] == [0.5, 0.1]


def test_fisher_groups_figure_marks_the_parameter_share() -> None:
    import pandas as pd

    table = pd.DataFrame({"params": [30, 10], "mass": [0.25, 0.75]}, index=pd.Index(["wte", "ln_f"], name="group"))
    fig = plots.fisher_groups_figure({"empirical": table, "true": table})
    ax = fig.axes[0]
    assert [round(p.get_width(), 2) for p in ax.patches] == [0.25, 0.75, 0.25, 0.75]
    (ticks,) = [line for line in ax.lines if line.get_marker() == "|"]
    assert list(ticks.get_xdata()) == [0.75, 0.25]  # each group's share of the parameters


def test_embedding_map_moves_the_labels_of_close_points_apart() -> None:
    import torch

    xy = torch.tensor([[0.0, 0.0], [0.001, 0.0], [0.002, 0.001], [1.0, 1.0]])
    offsets = plots._label_offsets(xy)
    assert len(set(offsets[:3])) == 3  # three points on top of each other: three places for their labels
    assert offsets[3] == offsets[0]  # a point far from the rest keeps the first place


def test_label_curve_figure_draws_each_arm_through_its_mean_over_seeds() -> None:
    import pandas as pd

    rows = [{"arm": arm, "n": n, "seed": s, "test_acc": base + 0.001 * n + 0.01 * s}
            for arm, base in (("bag-of-words", 0.3), ("scratch", 0.1)) for n in (25, 100) for s in (0, 1, 2)]
    fig = plots.label_curve_figure(pd.DataFrame(rows), baselines={"majority class": 0.2})
    _legible_in_the_book(fig)
    ax = fig.axes[0]
    bow, scratch, majority = ax.lines
    assert list(scratch.get_xdata()) == [25, 100]
    assert list(scratch.get_ydata()) == pytest.approx([0.1 + 0.025 + 0.01, 0.1 + 0.1 + 0.01])  # the seeds' mean
    assert bow.get_linestyle() == "--" and ax.get_xscale() == "log"
    assert list(majority.get_ydata()) == [0.2, 0.2]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"bag-of-words", "scratch", "majority class: 0.20"}
