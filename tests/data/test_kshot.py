"""k-shot sampling (LM-BFF): exact per-class counts, seeded, disjoint from D_RL and test."""

from __future__ import annotations

import numpy as np
import pytest

from crlprompt.data.splits import Split, k_shot
from crlprompt.errors import DataError
from crlprompt.tasks import load_task


def _split(n_per_class=(40, 30, 25)) -> Split:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    return Split([f"row {i}" for i in range(len(labels))], labels.astype(np.int64))


def test_exact_counts_disjoint_and_seeded():
    data = _split()
    tr, dev = k_shot(data, 8, seed=13, num_labels=3)
    assert np.bincount(tr.labels, minlength=3).tolist() == [8, 8, 8]
    assert np.bincount(dev.labels, minlength=3).tolist() == [8, 8, 8]
    assert not set(tr.texts) & set(dev.texts)
    tr2, dev2 = k_shot(data, 8, seed=13, num_labels=3)
    assert tr2.texts == tr.texts and dev2.texts == dev.texts
    tr3, _ = k_shot(data, 8, seed=21, num_labels=3)
    assert tr3.texts != tr.texts


def test_too_few_rows_in_a_class_is_refused():
    with pytest.raises(DataError, match="class 2 has 25 training rows"):
        k_shot(_split(), 13, seed=0, num_labels=3)
    with pytest.raises(DataError, match="positive integer"):
        k_shot(_split(), 0, seed=0)


def test_load_task_k_shot_tiny_keeps_test_and_is_disjoint():
    full = load_task("tiny", seed=42)
    few = load_task("tiny", seed=42, k_shot=16)
    assert np.bincount(few.train.labels).tolist() == [16, 16]
    assert np.bincount(few.drl.labels).tolist() == [16, 16]
    assert few.test.texts == full.test.texts
    assert not set(few.train.texts) & set(few.drl.texts) - set(full.train.texts)  # both from train
    assert set(few.train.texts) <= set(full.train.texts) and set(few.drl.texts) <= set(full.train.texts)


def test_load_task_k_shot_trec(needs_staicc):
    data = load_task("trec", seed=13, k_shot=16)
    assert np.bincount(data.train.labels, minlength=6).tolist() == [16] * 6
    assert np.bincount(data.drl.labels, minlength=6).tolist() == [16] * 6
    assert len(data.test) == 500
    assert not set(data.train.texts) & set(data.drl.texts)
    assert not set(data.train.texts) & set(data.test.texts)
