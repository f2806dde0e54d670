"""Tests of crlprompt.data.splits: the Split container, the seeded D_RL holdout and the caps."""
from __future__ import annotations

import numpy as np
import pytest

from crlprompt.data.splits import Split, cap, check_limit, split_drl
from crlprompt.errors import DataError


def test_split_drl_seeded_disjoint():
    texts = [f"t{i}" for i in range(103)]
    s = Split(texts, np.arange(103) % 3)
    a_rest, a_rl = split_drl(s, 0.1, seed=7)
    b_rest, b_rl = split_drl(s, 0.1, seed=7)
    _, c_rl = split_drl(s, 0.1, seed=8)
    assert a_rl.texts == b_rl.texts and a_rest.texts == b_rest.texts
    assert a_rl.texts != c_rl.texts
    assert (len(a_rest), len(a_rl)) == (93, 10)
    assert not set(a_rest.texts) & set(a_rl.texts)
    assert set(a_rest.texts) | set(a_rl.texts) == set(texts)
    assert a_rl.labels.dtype == np.int64
    assert np.bincount(a_rl.labels, minlength=3).min() >= 3  # stratified
    assert len(split_drl(Split(["a", "b"], [0, 1]), 0.01, 0)[1]) == 1


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.1"])
def test_split_drl_bad_fraction(fraction):
    with pytest.raises(DataError, match="not in \\(0, 1\\)"):
        split_drl(Split(["a", "b", "c"], [0, 1, 0]), fraction, 0)


def test_split_drl_needs_two_rows():
    with pytest.raises(DataError, match="only 1 training row"):
        split_drl(Split(["a"], [0]), 0.5, 0)


def test_split_subset_and_mismatch():
    s = Split(["a", "b", "c"], [0, 1, 2])
    assert s.subset([2, 0]).texts == ["c", "a"]
    assert s.subset(np.array([True, False, True])).labels.tolist() == [0, 2]
    with pytest.raises(DataError):
        Split(["a"], [0, 1])


def test_cap_is_a_seeded_ordered_subsample():
    s = Split([f"t{i}" for i in range(50)], np.zeros(50))
    a, b = cap(s, 10, 3, "max_train"), cap(s, 10, 3, "max_train")
    assert len(a) == 10 and a.texts == b.texts
    assert a.texts == sorted(a.texts, key=lambda t: int(t[1:]))  # original order kept
    assert cap(s, 10, 3, "max_test").texts != a.texts  # train and test caps draw differently
    assert cap(s, None, 3, "max_train") is s and cap(s, 50, 3, "max_train") is s


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "3"])
def test_check_limit_refuses(limit):
    with pytest.raises(DataError, match="max_train=.*not a positive integer"):
        check_limit(limit, "max_train")
    check_limit(None, "max_train")
    check_limit(np.int64(3), "max_train")
