"""Shared pieces of the property-based tests (Hypothesis) of every input boundary.

The property tests (``tests/**/test_*_properties.py``) try bad input systematically. Each
property states what *any* input must lead to: a valid result or the documented clean error
(``ValueError`` from the envs, ``DataError`` from the data readers, ``CheckpointError`` from
training-state files, exit code 2 with a short message from the CLI), never another exception,
never garbage, and nothing half-done left behind (an env that still steps the same way, no
``--out`` or ``.partial`` directory, no code run from a pickle).

Where a property found a bug, the generic property leaves that narrow region out (each exclusion
names its test) and a ``test_bug_*`` test pins the bug with explicit inputs, marked
``xfail(strict=True)`` at first; all of them are fixed now and run as plain tests, which
is the signal to drop the mark and the exclusion.

The number of Hypothesis cases tried per property is printed at the end of the session
("hypothesis cases tried", from ``tests/conftest.py``). ``CRLPROMPT_FUZZ_SCALE=10`` multiplies
every budget for a deeper search.
"""

from __future__ import annotations

import collections
import os
import struct

from hypothesis import settings
from hypothesis import strategies as st

NAN, INF = float("nan"), float("inf")

FUZZ_SCALE = float(os.environ.get("CRLPROMPT_FUZZ_SCALE", "1"))  # e.g. 10 for a deeper (nightly) search


def fuzz(n: int, **kw) -> settings:
    """Settings of one property: ``n`` cases (times ``$CRLPROMPT_FUZZ_SCALE``), no deadline (steps
    share 2 busy cores)."""
    return settings(max_examples=max(1, int(n * FUZZ_SCALE)), deadline=None, **kw)


# ----------------------------------------------------------------------------- case counter

CASES: collections.Counter[str] = collections.Counter()


def count_case(prop: str) -> None:
    CASES[prop] += 1


def report_cases(terminalreporter) -> None:
    """Print the number of Hypothesis cases each property ran (called at the end of the session)."""
    if not CASES:
        return
    terminalreporter.write_sep("-", "hypothesis cases tried (tests/**/test_*_properties.py)")
    for prop, n in sorted(CASES.items()):
        terminalreporter.write_line(f"{prop:<42} {n:>6}")
    terminalreporter.write_line(f"{'total':<42} {sum(CASES.values()):>6}")


_serial = iter(range(10**9))


def fresh_name(stem: str = "f") -> str:
    """A new name of fixed length: a strategy that draws from data built on the name (a pickle
    holding the path) then draws the same choices when Hypothesis replays a case."""
    return f"{stem}{next(_serial):09d}"


# ----------------------------------------------------------------------------- damaged files


@st.composite
def damaged(draw, original: bytes):
    how = draw(st.sampled_from(["random", "truncate", "flip", "flip", "flip-header", "append", "zero-run"]))
    n = len(original)
    header_end = 8 + struct.unpack("<Q", original[:8])[0]
    if how == "random":
        return draw(st.binary(max_size=400) | st.binary(min_size=8, max_size=64).map(lambda b: b + original[len(b) :]))
    if how == "truncate":
        return original[: draw(st.integers(0, n - 1))]
    if how == "append":
        return original + draw(st.binary(min_size=1, max_size=16))
    if how == "zero-run":
        p = draw(st.integers(0, n - 1))
        k = min(draw(st.integers(1, 64)), n - p)
        return original[:p] + bytes(k) + original[p + k :]
    hi = header_end if how == "flip-header" else n
    out = bytearray(original)
    for pos, bit in draw(st.lists(st.tuples(st.integers(0, hi - 1), st.integers(0, 7)), min_size=1, max_size=8)):
        out[pos] ^= 1 << bit
    return bytes(out)
