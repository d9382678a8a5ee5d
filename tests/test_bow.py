"""Notebook 10's baselines: majority class, bag of words, logistic regression, accuracy and macro-F1."""

from __future__ import annotations

import pytest
import torch

from tlteach import bow


def test_macro_f1_by_hand():
    labels = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 0]
    # class 0: TP 1, FP 1, FN 1 -> 2/4; class 1: TP 2, FP 1, FN 0 -> 4/5; class 2: TP 1, FP 0, FN 1 -> 2/3;
    # class 3 is neither predicted nor true: left out of the mean
    assert bow.macro_f1(pred, labels, n_classes=4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # a class predicted but never true counts, with F1 = 0: class 0 now TP 1, FP 0, FN 1 -> 2/3
    assert bow.macro_f1([0, 1, 1, 1, 2, 3], labels, 4) == pytest.approx((2 / 3 + 0.8 + 2 / 3 + 0) / 4)
    assert bow.macro_f1(torch.tensor(labels), torch.tensor(labels), 3) == 1.0
    assert bow.accuracy(pred, labels) == pytest.approx(4 / 6)


def test_scores_refuse_bad_input():
    with pytest.raises(ValueError, match="as long as"):
        bow.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        bow.macro_f1([], [], 3)
    with pytest.raises(ValueError, match="n_classes is 2"):
        bow.macro_f1([0, 2], [0, 1], 2)
    with pytest.raises(TypeError, match="class indices"):
        bow.accuracy(torch.tensor([0.0, 1.0]), [0, 1])


def test_majority_class():
    assert bow.majority_class([2, 1, 2, 0], 3).tolist() == [2, 2, 2]
    assert bow.majority_class([1, 0, 0, 1], 2).tolist() == [0, 0]  # a tie: the smallest class
    with pytest.raises(ValueError, match="empty"):
        bow.majority_class([], 2)


def test_bag_of_words_vocabulary_and_features():
    vec = bow.BagOfWords().fit(["The cat sat.", "the dog, the CAT!"])
    assert vec.vocab == {"cat": 0, "dog": 1, "sat": 2, "the": 3}
    x = vec.transform(["the the cat", "zebra 42", "Sat"])
    assert x.shape == (3, 4)
    expected = torch.tensor([torch.log1p(torch.tensor(1.0)), 0.0, 0.0, torch.log1p(torch.tensor(2.0))])
    assert torch.allclose(x[0], expected / expected.norm())  # log(1 + count), scaled to length 1
    assert torch.allclose(x.norm(dim=1), torch.tensor([1.0, 0.0, 1.0]))  # unit rows; no known word: zeros
    counts = bow.BagOfWords(sublinear=False).fit(["the cat"]).transform(["the the cat"])
    assert counts[0, 1] / counts[0, 0] == pytest.approx(2.0)
    assert bow.BagOfWords(min_count=2).fit(["a b", "b c"]).vocab == {"b": 0}
    with pytest.raises(RuntimeError, match="fit"):
        bow.BagOfWords().transform(["x"])
    with pytest.raises(TypeError, match="wrap one text"):
        bow.BagOfWords().fit("the cat")


def test_logistic_regression_separates_a_separable_set_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    y = torch.arange(3).repeat_interleave(20)
    X = centres[y] + 0.5 * torch.randn(60, 2, generator=g)
    W, b = bow.fit_logistic_regression(X, y, n_classes=3)
    assert W.shape == (2, 3) and b.shape == (3,)
    assert bow.accuracy(bow.predict(X, W, b), y) == 1.0
    W2, b2 = bow.fit_logistic_regression(X, y, n_classes=3)
    assert torch.equal(W, W2) and torch.equal(b, b2)
    with pytest.raises(ValueError, match="n_classes is 2"):
        bow.fit_logistic_regression(X, y, n_classes=2)
    with pytest.raises(ValueError, match="one label per row"):
        bow.fit_logistic_regression(X, y[:-1], n_classes=3)
    with pytest.raises(TypeError, match="2-D float tensor"):
        bow.fit_logistic_regression(y, y, n_classes=3)
    with pytest.raises(ValueError, match="fitted on"):
        bow.predict(torch.zeros(4, 5), W, b)


def test_bag_of_words_logistic_regression_learns_words():
    texts = ["the nurse treats patients", "a nurse cares for patients", "the welder joins steel",
             "a welder cuts metal", "patients see the nurse", "steel and metal for the welder"]
    y = [0, 0, 1, 1, 0, 1]
    vec = bow.BagOfWords().fit(texts)
    W, b = bow.fit_logistic_regression(vec.transform(texts), y, 2)
    assert bow.predict(vec.transform(["nurse", "welder", "unknown words"]), W, b)[:2].tolist() == [0, 1]
