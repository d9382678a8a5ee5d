"""Embedding helpers and the live loss curve (notebook 02)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tlteach import embeddings, live, plots  # noqa: E402


def test_nearest_neighbours_by_cosine() -> None:
    w = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])  # 1 is 0's direction at another length
    nn = embeddings.nearest_neighbours(w, 0, k=3)
    assert [i for i, _ in nn] == [1, 2, 3]
    assert nn[0][1] == pytest.approx(10 / math.sqrt(101))
    assert nn[-1][1] == pytest.approx(-1.0)
    assert [i for i, _ in embeddings.nearest_neighbours(w, 0, k=5, candidates=[0, 2, 3])] == [2, 3]


def test_frequent_words_keeps_whole_words_only() -> None:
    strings = ["<eot>", " king", "dom", " the", " a", ",", " kin", "sman", "x"]
    s = {t: i for i, t in enumerate(strings)}
    text = ([" the", " king", ","] * 5 + [" king", "dom", ","] * 2 + [" kin", "sman", ","] * 9 + [" a", ","] * 9)
    ids = torch.tensor([s[t] for t in text])
    words = embeddings.frequent_words(ids, strings, n=10, word_end=0.6)
    # " kin" is frequent but always a word start; " a" is one letter; " king" ends a word 5 times in 7
    assert words == [s[" king"], s[" the"]]  # most frequent first
    assert embeddings.frequent_words(ids, strings, n=10, word_end=0.9) == [s[" the"]]
    assert embeddings.frequent_words(ids, strings, n=1, word_end=0.6) == [s[" king"]]


def test_group_separation() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 5
    w = torch.cat([centres[i] + 0.1 * torch.randn(4, 16, generator=g) for i in range(3)])
    groups = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7], "c": [8, 9, 10, 11]}
    sep = embeddings.group_separation(w, groups)
    assert sep.nn_accuracy == 1.0 and sep.within > 0.95 and sep.gap > 0.5
    random = embeddings.group_separation(torch.randn(5000, 64, generator=g), groups)
    assert abs(random.gap) < 0.2
    with pytest.raises(ValueError, match="at least 2"):
        embeddings.group_separation(w, {"a": [0], "b": [1, 2]})
    with pytest.raises(ValueError, match="more than one group"):
        embeddings.group_separation(w, {"a": [0, 1], "b": [1, 2]})


def test_pca_2d_matches_the_top_directions_and_is_sign_stable() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 2, generator=g) * torch.tensor([5.0, 1.0])
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=g)).Q
    data = torch.cat([x, 0.01 * torch.randn(200, 4, generator=g)], dim=1) @ rotation.T
    xy, explained = embeddings.pca_2d(data)
    assert xy.shape == (200, 2)
    assert explained[0] > 0.9 and explained.sum() > 0.99
    for k in range(2):  # the two components recover the two wide directions (up to sign)
        assert abs(torch.corrcoef(torch.stack([xy[:, k], x[:, k]]))[0, 1]) > 0.99
    # the signs are fixed by the data's directions, not by the SVD's arbitrary choice: -data gives -xy
    xy2, _ = embeddings.pca_2d(-data)
    assert torch.allclose(xy, -xy2, atol=1e-4)


def test_embedding_map_is_a_closed_figure_of_the_pca() -> None:
    w = torch.nn.Parameter(torch.randn(10, 8, generator=torch.Generator().manual_seed(4)))  # like wte.weight
    fig = plots.embedding_map(w, [1, 2, 3, 4], [" a", " b", " c", " d"], groups={"g": [1, 2]})
    assert isinstance(fig, Figure)
    import matplotlib.pyplot as plt

    assert fig.number not in plt.get_fignums()
    ax = fig.axes[0]
    xy, _ = embeddings.pca_2d(w.detach()[[1, 2, 3, 4]])
    points = ax.collections[0]
    assert torch.allclose(torch.tensor(points.get_offsets().data, dtype=torch.float32), xy, atol=1e-5)
    colours = [tuple(c) for c in points.get_facecolors()]
    assert colours[0] == colours[1] != colours[2] == colours[3]  # the group's colour, then grey
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c", "d"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["g"]
    with pytest.raises(ValueError, match="labels"):
        plots.embedding_map(w, [1, 2], [" a"])
    with pytest.raises(ValueError, match="embedding matrix"):
        plots.embedding_map(torch.randn(10), [1, 2], [" a", " b"])


def test_live_loss_draws_rows_and_a_history() -> None:
    rows = [{"step": 0, "tokens": 0, "lr": 1e-4, "batch_loss": float("nan"), "train": 6.9, "val": 6.9, "elapsed": 0.1},
            {"step": 100, "tokens": 1000, "lr": 1e-3, "batch_loss": 5.0, "train": 5.1, "val": 5.2, "elapsed": 1.0}]
    fig = live.eval_curve(pd.DataFrame(rows), baselines={"unigram": 5.8})
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels[0].startswith("unigram") and any(lab.startswith("val") for lab in labels)
    assert not any(lab.startswith(("lr", "batch_loss", "elapsed")) for lab in labels)

    curve = live.LiveLoss(baselines={"unigram": 5.8}, total_steps=600)
    shown = []
    curve._draw = shown.append  # no notebook here: record what would be displayed
    for r in rows:
        curve(r)
    curve.show(pd.DataFrame(rows))
    assert len(shown) == 3 and len(curve.rows) == 2
    assert shown[-1].axes[0].get_xlim()[1] == 600
