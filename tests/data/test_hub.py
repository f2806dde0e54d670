"""Tests of crlprompt.data.hub with a stand-in ``datasets`` module (the real hub needs network)."""
from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from crlprompt.data.hub import load_hf
from crlprompt.errors import DataError
from crlprompt.tasks import load_task


class FakeDS(dict):
    pass


def _fake_datasets(monkeypatch, load_dataset) -> None:
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())


def test_hf_source_with_fake_datasets(monkeypatch):
    def load_dataset(hub_id):
        assert hub_id == "CogComp/trec"
        return FakeDS(train={"text": ["a", "b", "c"], "coarse_label": [0, 1, 5]},
                      test={"text": ["d"], "coarse_label": [4]})

    _fake_datasets(monkeypatch, load_dataset)
    d = load_task("trec", source="hf", drl_fraction=0.34)
    assert d.source == "hf:CogComp/trec" and len(d.train) + len(d.drl) == 3
    assert d.test.labels.tolist() == [4]


def test_hf_empathetic_dialogues_one_row_per_conversation(monkeypatch):
    rows = {"conv_id": ["c1", "c1", "c2"], "prompt": ["went_comma_ home ", "went_comma_ home ", "dog"],
            "context": ["sad", "sad", "afraid"]}
    _fake_datasets(monkeypatch, lambda hub_id: FakeDS(train=rows, test=rows))
    train, test = load_hf("empathetic_dialogues", ("afraid", "sad"))
    assert train.texts == ["went, home", "dog"] and train.labels.tolist() == [1, 0]
    assert len(test) == 2


def test_hf_errors(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="`datasets` is not installed.*--data-dir"):
        load_hf("trec", ("a",) * 6)

    def offline(hub_id):
        raise ConnectionError("no network")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(DataError, match=r"hf:fancyzhx/ag_news: could not load.*ConnectionError.*network"):
        load_hf("agnews", ("a", "b", "c", "d"))
