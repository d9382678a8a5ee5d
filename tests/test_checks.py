"""The one check of a setting (tlteach.checks): what it accepts, what it refuses and what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tlteach.checks import flag, id_tensor, outside_vocab, real, whole


def test_whole_takes_numpy_integers_as_plain_ints_and_refuses_the_rest():
    assert whole(np.int64(3), "n", 1) == 3 and type(whole(np.int64(3), "n", 1)) is int
    for bad in (True, 2.0, "2", None, torch.tensor(2)):
        with pytest.raises(TypeError, match="n must be a whole number, got"):
            whole(bad, "n", 1)
    with pytest.raises(ValueError, match="n must be at least 1, got 0; pick 4"):
        whole(0, "n", 1, hint="; pick 4")


def test_real_bounds_are_half_open_or_open_and_refuse_nan_and_inf():
    assert real(0, "x", "a number >= 0") == 0.0
    for bad in (-1e-9, math.inf, math.nan):
        with pytest.raises(ValueError, match="x must be a number >= 0, got"):
            real(bad, "x", "a number >= 0")
    with pytest.raises(ValueError, match=r"y must be in \(0, 1\), got 0"):
        real(0, "y", "in (0, 1)", 0, 1, low_open=True)
    assert real(0.5, "y", "in (0, 1)", 0, 1, low_open=True) == 0.5
    with pytest.raises(TypeError, match=r"x must be a number \(a number >= 0\), got True"):
        real(True, "x", "a number >= 0")


def test_flag_and_token_ids():
    assert flag(False, "f") is False
    with pytest.raises(TypeError, match="f must be True or False, got 'no'"):
        flag("no", "f")
    id_tensor(torch.tensor([1, 2]), "ids", "encode it")
    with pytest.raises(TypeError, match="ids must be a torch tensor of token ids, got list; encode it"):
        id_tensor([1, 2], "ids", "encode it")
    with pytest.raises(TypeError, match="torch.float32"):
        id_tensor(torch.tensor([1.0]), "ids", "encode it")
    err = outside_vocab("ids", 10, -1, 12, [-1, 12])
    assert isinstance(err, ValueError) and "outside [0, vocab_size=10): [-1, 12] (min -1, max 12)" in str(err)
