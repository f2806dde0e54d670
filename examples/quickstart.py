"""Quickstart: a soft-prompt classifier trained on your own (text, label) pairs.

Train CRL-Prompt on the rows, score held-out rows, save a run directory, load it back, predict.
The run directory is what ``crl-prompt train`` writes (``crl-prompt eval --checkpoint
runs/quickstart`` scores it again), with a PEFT adapter in ``adapter/``. On ``tiny-bert`` (a
2-layer BERT with random weights, built in code) it runs in seconds and its accuracy means
nothing; ``model="minilm"`` (all-MiniLM-L6-v2) is the real thing:

    python examples/quickstart.py [OUT_DIR]
"""

from __future__ import annotations

import sys

from crlprompt import PromptClassifier

GOOD = ["the movie was great", "what a wonderful story", "the acting was fine and fun", "a good film",
        "this plot was great fun", "the story of the film was wonderful", "it was a good movie", "great acting"]
BAD = ["the movie was terrible", "what a boring story", "the acting was awful and dull", "a bad film",
       "this plot was dull", "the story of the film was awful", "it was a bad movie", "terrible acting"]
TEXTS, LABELS = GOOD + BAD, ["positive"] * len(GOOD) + ["negative"] * len(BAD)
TEST_TEXTS, TEST_LABELS = ["a wonderful film", "the plot was boring", "good fun", "an awful movie"], [1, 0, 1, 0]


def main(out: str = "runs/quickstart") -> dict:
    clf = PromptClassifier(["negative", "positive"], model="tiny-bert", num_tokens=4, batch_size=4, rl_interval=2)
    clf.fit(TEXTS, LABELS)  # phase 1: cross-entropy; phase 2: + InfoNCE + REINFORCE on a held-out D_RL
    scores = clf.evaluate(TEST_TEXTS, TEST_LABELS, as_test=True)  # labels as names or ids; saved as the test split
    clf.save(out, overwrite=True)
    clf = PromptClassifier.load(out)
    predicted = clf.predict(["what a great story", "the acting was dull"])
    print(f"test accuracy {scores['accuracy']:.3f} on {scores['n']} rows; saved to {out}; predictions {predicted}")
    return {"scores": scores, "predicted": predicted, "proba": clf.predict_proba(TEST_TEXTS)}


if __name__ == "__main__":
    main(*sys.argv[1:2])
