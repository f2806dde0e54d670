"""The tiny synthetic sentiment task, generated in code: no files, no network, any size.

Texts are 4-8 filler words with one sentiment word inserted; the label is the sentiment
(0 = negative, 1 = positive). Every word is in the tiny models' word-level vocabulary. Rows are
drawn one after another from one ``default_rng(seed)``, so ``tiny_split(k, seed)`` is the first
``k`` rows of ``tiny_split(n, seed)`` for any ``n >= k``.
"""

from __future__ import annotations

import numpy as np

from .splits import Split

__all__ = ["FILLER", "NEGATIVE", "POSITIVE", "SIZES", "load_tiny", "tiny_split"]

POSITIVE = ("great", "good", "fun", "wonderful", "fine")
NEGATIVE = ("bad", "terrible", "awful", "boring", "dull")
FILLER = ("the", "a", "movie", "film", "story", "plot", "acting", "it", "was", "this", "and", "of")
SIZES = (256, 64, 128)  # rows of (train, D_RL, test)


def tiny_split(n: int, seed: int) -> Split:
    """``n`` rows drawn from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        y = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=int(rng.integers(4, 9))))
        words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(POSITIVE if y else NEGATIVE)))
        texts.append(" ".join(words))
        labels.append(y)
    return Split(texts, np.array(labels, dtype=np.int64))


def load_tiny(seed: int = 0) -> tuple[Split, Split, Split]:
    """(train, D_RL, test) with ``SIZES`` rows, drawn with seeds ``3*seed``, ``3*seed+1``, ``3*seed+2``."""
    return tiny_split(SIZES[0], seed * 3), tiny_split(SIZES[1], seed * 3 + 1), tiny_split(SIZES[2], seed * 3 + 2)
