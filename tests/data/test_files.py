"""Tests of crlprompt.data.files: TSV/CSV/JSONL split files, EmpatheticDialogues CSVs, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crlprompt.data.files import ED_EMOTIONS, read_split_file
from crlprompt.errors import DataError

TREC = ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")
SST2 = ("negative", "positive")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_read_tsv_csv_jsonl(tmp_path):
    tsv = _write(tmp_path / "a.tsv", "sentence\tlabel\nWho is he ? \t3\nWhat is 'NaN' ?\tNUM\n")
    s = read_split_file(tsv, TREC)
    assert s.texts == ["Who is he ?", "What is 'NaN' ?"] and s.labels.tolist() == [3, 5]
    csv_ = _write(tmp_path / "a.csv", 'text,label\n"Hello, world",abbr\nplain,1\n')
    s = read_split_file(csv_, TREC)
    assert s.texts == ["Hello, world", "plain"] and s.labels.tolist() == [0, 1]
    jl = _write(tmp_path / "a.jsonl", json.dumps({"text": "x", "label": "LOC"}) + "\n\n"
                + json.dumps({"text": "y", "label": 2}) + "\n")
    s = read_split_file(jl, TREC)
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [4, 2] and len(s) == 2


def test_shared_sst2_dev_tsv(shared_data_dir):
    dev = shared_data_dir / "sst2" / "dev.tsv"
    if not dev.is_file():
        pytest.skip(f"SST-2 dev.tsv not found at {dev} (expected ../shared/data beside the checkout)")
    s = read_split_file(dev, SST2)
    assert len(s) == 872 and tuple(np.bincount(s.labels)) == (428, 444)
    assert s.texts[0] == "it 's a charming and often affecting journey ."


ED_HEAD = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"


def test_empathetic_dialogues_csv(tmp_path):
    body = ("hit:0_conv:1,1,sentimental,I remember going_comma_ long ago.,1,Hi,5|5|5_2|2|5,\n"
            "hit:0_conv:1,2,sentimental,I remember going_comma_ long ago.,0,Yo,5|5|5_2|2|5,\n"
            "hit:1_conv:2,1,afraid,A dog chased me.,1,Eek,,\n")
    s = read_split_file(_write(tmp_path / "train.csv", ED_HEAD + body))  # ED_EMOTIONS by default
    assert s.texts == ["I remember going, long ago.", "A dog chased me."]  # one row per conversation
    assert [ED_EMOTIONS[y] for y in s.labels] == ["sentimental", "afraid"]
    assert len(ED_EMOTIONS) == 32 and list(ED_EMOTIONS) == sorted(ED_EMOTIONS)
    _write(tmp_path / "bad" / "train.csv", ED_HEAD + "c1,1,bored,text,1,u,,\n")
    with pytest.raises(DataError, match=r"train.csv:2.*'bored'"):
        read_split_file(tmp_path / "bad" / "train.csv")
    _write(tmp_path / "short" / "train.csv", ED_HEAD + "c1,1,sad\n")
    with pytest.raises(DataError, match=r"train.csv:2: 3 fields, expected at least 4.*_comma_"):
        read_split_file(tmp_path / "short" / "train.csv")


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
        read_split_file(path, SST2)
    msg = str(info.value)
    assert "Fix:" in msg and "\n" not in msg and name in msg


def test_non_utf8(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("sentence\tlabel\nok\t1\ncaf\u00e9\t0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.tsv:3: not UTF-8.*re-save the file as UTF-8"):
        read_split_file(path)
