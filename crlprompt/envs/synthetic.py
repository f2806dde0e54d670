"""A tiny synthetic task for tiny random models: needs no weights or data files, steps in ms.

Texts are 4-8 filler words with one sentiment word inserted; the label is the sentiment. The
model is a random 2-layer transformer with a random, frozen linear head, so the initial prompt
scores near chance and a better prompt has to be *found*: a learnable search problem for
testing and comparing RL algorithms quickly.
"""

from __future__ import annotations

import numpy as np

from ..batching import encode
from ..build import Setup, build_model
from ..models import load_model
from ..scoring import fit_probe
from ..tasks import Split, TaskSpec

POSITIVE = ("great", "good", "fun", "wonderful", "fine")
NEGATIVE = ("bad", "terrible", "awful", "boring", "dull")
FILLER = ("the", "a", "movie", "film", "story", "plot", "acting", "it", "was", "this", "and", "of")
TINY_SPEC = TaskSpec(
    "tiny", ("negative", "positive"), ("bad", "good"), "{text} it was {mask}", "{text} it was {mask}"
)


def tiny_split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        y = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=int(rng.integers(4, 9))))
        words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(POSITIVE if y else NEGATIVE)))
        texts.append(" ".join(words))
        labels.append(y)
    return Split(texts, np.array(labels, dtype=np.int64))


def tiny_setup(
    *, model: str = "tiny-llama", prompt: str = "deep", num_tokens: int = 4, seed: int = 0, data_seed: int = 0,
    n_train: int = 256, n_rl: int = 64, n_test: int = 128,
) -> Setup:  # fmt: skip
    """Train / D_RL / test splits of the synthetic task on a tiny random model (CPU)."""
    if model not in ("tiny-bert", "tiny-llama"):
        raise ValueError(f"task 'tiny' runs on model 'tiny-bert' or 'tiny-llama', got {model!r}")
    lm = load_model(model)
    pm = build_model(lm, TINY_SPEC, prompt=prompt, num_tokens=num_tokens, head="linear", seed=seed, init="random")
    splits = [tiny_split(n, data_seed * 3 + i) for i, n in enumerate((n_train, n_rl, n_test))]
    enc = [encode(s, lm.tokenizer, max_length=32) for s in splits]
    fit_probe(pm, enc[0], ridge=0.1)  # head fitted at the planted prompt theta* (seed)
    fresh = build_model(lm, TINY_SPEC, prompt=prompt, num_tokens=num_tokens, head="linear", seed=seed + 1, init="random")
    pm.prompt.theta.data.copy_(fresh.prompt.theta.data)  # start the search from theta0 != theta*
    return Setup(TINY_SPEC, lm, pm, enc[0], enc[1], enc[2], "synthetic")
