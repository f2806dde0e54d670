"""PromptClassifier's rules on a user's rows: one class is refused, scoring rows never changes what
``save`` writes unless ``as_test=True`` asks, and a saved run reloads with the pooling it was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlprompt import PromptClassifier
from crlprompt.errors import DataError

TEXTS = ["the movie was great", "a bad film", "what a wonderful story", "the acting was terrible",
         "this is fun", "boring and dull", "a great story", "an awful plot"] * 3  # fmt: skip
LABELS = ["pos", "neg"] * 12
KW = dict(model="tiny-bert", num_tokens=2, batch_size=8, phase1_epochs=1, phase2_epochs=0)


def test_fit_refuses_rows_of_one_class():
    with pytest.raises(DataError, match="at least two classes"):
        PromptClassifier(["neg", "pos"], **KW).fit(TEXTS[:4], ["pos"] * 4)


def saved_files(run: Path) -> dict:
    """What a saved run holds besides the prompt: its config (less the path it was saved to), record
    and rows, by relative path."""
    files = {str(p.relative_to(run)): p.read_text() for p in sorted(run.rglob("*"))
             if p.suffix in (".json", ".jsonl") and p.parent.name != "adapter"}  # fmt: skip
    config = json.loads(files.pop("config.json"))
    assert Path(config.pop("out")) == run
    return {**files, "config.json": config}


def test_evaluate_changes_what_save_writes_only_with_as_test(tmp_path):
    clf = PromptClassifier(["neg", "pos"], **KW).fit(TEXTS, LABELS)
    held = ["a fun film", "the plot was bad"]
    clf.evaluate(held, ["pos", "neg"], as_test=True)
    first = saved_files(clf.save(tmp_path / "first"))
    assert "data/test.jsonl" in first and json.loads(first["metrics.jsonl"])["n_test"] == 2

    other = ["a dull story", "what a great plot", "an awful film"]
    scores = clf.evaluate(other, ["neg", "pos", "neg"])  # scored, not kept
    assert scores["n"] == 3 and saved_files(clf.save(tmp_path / "second")) == first

    kept = clf.evaluate(other, ["neg", "pos", "neg"], as_test=True)
    third = saved_files(clf.save(tmp_path / "third"))
    assert third["data/test.jsonl"] != first["data/test.jsonl"]
    record = json.loads(third["metrics.jsonl"])
    assert record["test_acc"] == kept["accuracy"] and record["n_test"] == 3


def test_fit_alone_saves_no_test_split(tmp_path):
    clf = PromptClassifier(["neg", "pos"], **KW).fit(TEXTS, LABELS)
    clf.evaluate(["a fun film", "the plot was bad"], ["pos", "neg"])
    files = saved_files(clf.save(tmp_path / "run"))
    assert "data/test.jsonl" not in files and json.loads(files["metrics.jsonl"])["test_acc"] is None


def test_training_rows_kept_as_the_test_split_are_warned_about(caplog):
    clf = PromptClassifier(["neg", "pos"], **KW).fit(TEXTS, LABELS)
    with caplog.at_level("WARNING", logger="crlprompt"):
        clf.evaluate(TEXTS[:6], LABELS[:6])
        assert not caplog.text and "test" not in clf.splits
        clf.evaluate(TEXTS[:6], LABELS[:6], as_test=True)
    assert "not a held-out score" in caplog.text and list(clf.splits["test"].texts) == TEXTS[:6]


def test_a_saved_run_keeps_its_pooling(tmp_path):
    clf = PromptClassifier(["neg", "pos"], pooling="mean", **KW).fit(TEXTS, LABELS)
    clf.save(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["setup"]["pooling"] == "mean"
    again = PromptClassifier.load(tmp_path / "run")
    assert again.model.pooling == "mean"
    assert (again.predict_proba(TEXTS[:4]) == pytest.approx(clf.predict_proba(TEXTS[:4]), abs=1e-6))
