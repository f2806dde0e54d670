"""The rows of one split, the seeded D_RL holdout, the row caps and the one-line error format."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import DataError

__all__ = ["SPLITS", "Split", "cap", "check_fraction", "check_limit", "data_error", "deprecated_alias", "split_drl",
           "split_name", "split_rl", "warn_renamed"]

#: a task's three splits: ``train`` (D_RL removed), ``drl`` (D_RL: the reward rows, also used to select a
#: prompt or an epoch) and ``test`` (never used for selection). ``"rl"`` is the D_RL split's earlier name.
SPLITS = ("train", "drl", "test")
#: the earlier names of renamed splits and fields: ``rl`` meant both the D_RL split and the RL term
RENAMED = {"rl": "drl", "rl_fraction": "drl_fraction", "max_rl": "max_drl"}


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old!r} is now called {new!r} (the D_RL split; 'rl' names the RL term); the old name "
                  "will be removed", DeprecationWarning, stacklevel=stacklevel)


def split_name(name: object) -> object:
    """A split's name in today's words: ``"rl"`` becomes ``"drl"`` with a DeprecationWarning; anything
    else is returned as it is (callers check it against their own choices)."""
    if name == "rl":
        warn_renamed("rl", "drl", stacklevel=3)
        return "drl"
    return name


def deprecated_alias(new: str) -> property:
    """A property forwarding the earlier name of field ``new`` to it (read and write), warning on use."""
    old = next(k for k, v in RENAMED.items() if v == new)

    def get(self):
        warn_renamed(old, new)
        return getattr(self, new)

    def put(self, value):
        warn_renamed(old, new)
        setattr(self, new, value)

    return property(get, put, doc=f"Deprecated: the earlier name of ``{new}``.")


def data_error(where: object, problem: str, fix: str) -> DataError:
    """``DataError("{where}: {problem}. Fix: {fix}")``: the one-line form of every data error."""
    return DataError(f"{where}: {problem}. Fix: {fix}")


@dataclass
class Split:
    """Rows of one split: ``texts`` (n strings) and ``labels`` (int64 array, shape (n,))."""

    texts: list[str]
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.texts = list(self.texts)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.texts) != len(self.labels):
            raise DataError(f"Split has {len(self.texts)} texts but {len(self.labels)} labels. "
                            "Fix: pass one label per text")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> Split:
        """Rows at integer positions ``idx`` (or where a boolean mask of length n is true)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        return Split([self.texts[i] for i in idx], self.labels[idx])


def check_fraction(fraction: float) -> None:
    """Refuse a ``drl_fraction`` outside the open interval (0, 1) (or not a number)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
            or not 0.0 < float(fraction) < 1.0:
        raise data_error("split_drl", f"drl_fraction={fraction!r} is not in (0, 1)",
                         "pass a fraction such as 0.1")


def split_drl(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Seeded, class-stratified holdout: returns ``(train_rest, d_rl)``, both in original order.

    ``len(d_rl) = round(fraction * n)`` clipped to ``[1, n-1]``; rng = ``default_rng(seed)``.
    """
    check_fraction(fraction)
    n = len(train)
    if n < 2:
        raise data_error("split_drl", f"only {n} training row(s)", "provide at least 2 training rows")
    k = min(max(int(round(fraction * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    lab = train.labels[perm]
    _, lab = np.unique(lab, return_inverse=True)
    counts = np.bincount(lab)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n)
    rank[np.argsort(lab, kind="stable")] = np.arange(n) - np.repeat(starts, counts)
    key = (rank + 0.5) / counts[lab]  # within-class quantile: equal quotas per class
    chosen = np.zeros(n, dtype=bool)
    chosen[perm[np.argsort(key, kind="stable")[:k]]] = True
    return train.subset(~chosen), train.subset(chosen)


def split_rl(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Deprecated: the earlier name of :func:`split_drl`."""
    warn_renamed("split_rl", "split_drl")
    return split_drl(train, fraction, seed)


def check_limit(limit: int | None, what: str) -> None:
    """Refuse a row cap (``max_train`` / ``max_test``) that is not None or a positive integer."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
                              or limit < 1):
        raise data_error("load_task", f"{what}={limit!r} is not a positive integer",
                         f"pass {what} >= 1 or None")


def cap(split: Split, limit: int | None, seed: int, what: str) -> Split:
    """Seeded subsample of ``limit`` rows (kept in original order); no-op if None or >= n."""
    if limit is None or limit >= len(split):
        return split
    rng = np.random.default_rng([seed, 1 if what == "max_train" else 2])
    return split.subset(np.sort(rng.choice(len(split), size=int(limit), replace=False)))


def k_shot(train: Split, k: int, seed: int, num_labels: int | None = None) -> tuple[Split, Split]:
    """Few-shot sampling as LM-BFF does it: ``k`` rows per class for training and ``k`` more per
    class, disjoint from them, for the dev / reward set D_RL; returns ``(train_k, dev_k)``.

    Rows are drawn per class from ``default_rng(seed)`` (LM-BFF's data seeds are 13, 21, 42, 87
    and 100) and kept in their original order. Every class (0..num_labels-1, or every label
    present) must have at least ``2k`` rows.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise data_error("k_shot", f"k={k!r} is not a positive integer", "pass k >= 1, e.g. 16")
    labels = np.asarray(train.labels)
    classes = range(num_labels) if num_labels is not None else np.unique(labels)
    rng = np.random.default_rng(seed)
    picked_train, picked_dev = [], []
    for c in classes:
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2 * k:
            raise data_error("k_shot", f"class {c} has {len(rows)} training rows, fewer than 2k = {2 * k}",
                             f"pass a smaller k (at most {len(rows) // 2})")
        chosen = rng.choice(rows, size=2 * k, replace=False)
        picked_train.append(chosen[:k])
        picked_dev.append(chosen[k:])
    return train.subset(np.sort(np.concatenate(picked_train))), train.subset(np.sort(np.concatenate(picked_dev)))
