"""PromptClassifier's rules on a user's rows: one class is refused, rows it trained on never become its
saved test split by accident, and a saved run reloads with the pooling it was trained with."""

from __future__ import annotations

import json

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


def test_training_rows_are_not_kept_as_the_test_split_unless_asked(tmp_path, caplog):
    clf = PromptClassifier(["neg", "pos"], **KW).fit(TEXTS, LABELS)
    with caplog.at_level("WARNING", logger="crlprompt"):
        clf.evaluate(TEXTS[:6], LABELS[:6])
    assert "not kept as the run's test split" in caplog.text and "test" not in clf.splits
    held = ["a fun film", "the plot was bad"]
    clf.evaluate(held, ["pos", "neg"])
    clf.evaluate(TEXTS[:2], LABELS[:2])  # training rows again: the held-out rows stay the test split
    assert list(clf.splits["test"].texts) == held
    clf.evaluate(TEXTS[:2], LABELS[:2], as_test=True)
    assert list(clf.splits["test"].texts) == TEXTS[:2]


def test_a_saved_run_keeps_its_pooling(tmp_path):
    clf = PromptClassifier(["neg", "pos"], pooling="mean", **KW).fit(TEXTS, LABELS)
    clf.save(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["setup"]["pooling"] == "mean"
    again = PromptClassifier.load(tmp_path / "run")
    assert again.model.pooling == "mean"
    assert (again.predict_proba(TEXTS[:4]) == pytest.approx(clf.predict_proba(TEXTS[:4]), abs=1e-6))
