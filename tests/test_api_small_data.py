"""The Python API on a user's few hundred rows of real text: at least the no-prompt floor on held-out
rows phrased differently from the training rows (both computed here, on the offline MiniLM)."""

from __future__ import annotations

import itertools
import logging

import pytest

from crlprompt import PromptClassifier

LABELS = ["sports", "cooking"]
_TRAIN = {
    "sports": ["The {t} won the {g} last night", "Fans cheered as the {t} scored in the {g}",
               "The {t} lost the {g} after extra time", "A late goal decided the {g} for the {t}"],
    "cooking": ["Stir the {f} slowly and add a pinch of {s}", "Bake the {f} until golden, then sprinkle {s}",
                "Simmer the {f} for ten minutes with {s}", "Chop the {f} and season it with {s}"],
}  # fmt: skip
_HELD_OUT = {
    "sports": ["Our coach says the players trained hard before the {g}", "Who will the {t} face in the {g} final?",
               "Tickets for the {t} {g} sold out in an hour"],
    "cooking": ["My grandmother's recipe for {f} needs fresh {s}", "How long should {f} rest before serving with {s}?",
                "This {f} tastes better with a little {s}"],
}  # fmt: skip
_FILL = {"t": ["home team", "visitors", "champions", "underdogs", "city club"],
         "g": ["match", "game", "tournament", "derby", "league"],
         "f": ["soup", "bread", "sauce", "pasta", "stew"], "s": ["salt", "pepper", "basil", "garlic", "thyme"]}  # fmt: skip


def _rows(templates: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for label, forms in templates.items():
        keys = ("t", "g") if label == "sports" else ("f", "s")
        for form, (a, b) in itertools.product(forms, itertools.product(_FILL[keys[0]], _FILL[keys[1]])):
            texts.append(form.format(**{keys[0]: a, keys[1]: b}))
            labels.append(label)
    return texts, labels


@pytest.mark.slow
def test_prompt_classifier_scores_at_least_the_no_prompt_floor_on_held_out_rows(caplog):
    texts, labels = _rows(_TRAIN)  # 2 x 4 x 25 = 200 rows
    held_texts, held_labels = _rows(_HELD_OUT)  # 150 rows in other words
    assert len(texts) == 200 and len(set(texts) & set(held_texts)) == 0
    floor = PromptClassifier(LABELS, model="minilm", method="probe").fit(texts, labels)
    floor_acc = floor.evaluate(held_texts, held_labels)["accuracy"]
    with caplog.at_level(logging.INFO, logger="crlprompt"):
        clf = PromptClassifier(LABELS, model="minilm").fit(texts, labels)  # the defaults: CRL-Prompt
    acc = clf.evaluate(held_texts, held_labels)["accuracy"]
    assert floor_acc > 0.6  # the task is learnable without a prompt: the comparison means something
    assert acc >= floor_acc, f"PromptClassifier {acc:.3f} < no-prompt floor {floor_acc:.3f}"
    said = caplog.text
    assert "D_RL has 20 rows" in said  # a 10% holdout of 200 rows is too small to separate epochs: said so
    assert "logistic-regression probe at the start prompt" in said
