"""Tests of crlprompt.data.synthetic: the tiny task's rows are pinned, seeded and well-formed."""
from __future__ import annotations

import numpy as np

from crlprompt.data.synthetic import FILLER, NEGATIVE, POSITIVE, SIZES, load_tiny, tiny_split


def test_tiny_rows_pinned_for_data_seed_0():
    train, rl, test = load_tiny(0)
    assert (len(train), len(rl), len(test)) == SIZES == (256, 64, 128)
    assert train.texts[0] == "acting film film the the the wonderful movie" and train.labels[0] == 1
    assert np.bincount(train.labels).tolist() == [123, 133]
    assert np.bincount(rl.labels).tolist() == [36, 28]
    assert np.bincount(test.labels).tolist() == [57, 71]


def test_tiny_seeds():
    train, rl, test = load_tiny(2)
    assert train.texts == tiny_split(256, 6).texts and rl.texts == tiny_split(64, 7).texts
    assert (test.labels == tiny_split(128, 8).labels).all()
    assert load_tiny(0)[0].texts != train.texts
    assert tiny_split(10, 6).texts == train.texts[:10]  # a prefix: rows are drawn one by one


def test_tiny_rows_well_formed():
    s = tiny_split(200, 0)
    assert s.labels.dtype == np.int64 and set(s.labels.tolist()) == {0, 1}
    for text, y in zip(s.texts, s.labels):
        words = text.split()
        assert 5 <= len(words) <= 9 and all(w in FILLER + POSITIVE + NEGATIVE for w in words)
        sentiment = [w for w in words if w in POSITIVE + NEGATIVE]
        assert len(sentiment) == 1 and (sentiment[0] in POSITIVE) == bool(y)
