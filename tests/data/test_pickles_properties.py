"""Property tests of :func:`crlprompt.data.pickles.safe_unpickle`: random bytes, plain data, payloads.

See :mod:`helpers.properties` for what a property promises and how pinned bugs are kept.
"""

from __future__ import annotations

import contextlib
import copyreg
import os
import pickle
import pickletools
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from crlprompt.tasks import DataError, safe_unpickle

from helpers.properties import count_case, fresh_name, fuzz

PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)


def _plain(obj, depth: int = 0) -> bool:
    """Only builtin scalars and containers, all the way down (no instance of any other class)."""
    if type(obj) not in PLAIN_TYPES or depth > 200:
        return False
    if isinstance(obj, dict):
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return all(_plain(v, depth + 1) for v in obj if v is not obj)
    return True


def _memo_bomb(data: bytes) -> bool:
    """A PUT/LONG_BINPUT memo index large enough to make the C unpickler allocate gigabytes."""
    with contextlib.suppress(Exception):  # a broken stream: the unpickler stops at the same point
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("PUT", "LONG_BINPUT") and arg > 10**6:
                return True
    return False


class Payload:
    """Pickles as a call of ``fn(*args)``: what a malicious pickle does on load."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def payloads(marker: Path) -> list:
    m = str(marker)
    return [
        Payload(open, m, "w"),
        Payload(exec, f"open({m!r}, 'w').close()"),
        Payload(eval, f"open({m!r}, 'w')"),
        Payload(os.system, f"touch {m}"),
        Payload(Path.touch, marker),
        Payload(os.mkdir, m + ".d"),
        Payload(getattr, __builtins__ if isinstance(__builtins__, dict) else vars(__builtins__), "get"),
        Payload(Payload, open, m, "w"),  # an instance of a class from this module
        Path(m),  # any class instance at all
    ]


PLAIN_DATA = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda c: (
        st.lists(c, max_size=4)
        | st.lists(c, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4) | st.integers(), c, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=4), max_size=4)
    ),
    max_leaves=20,
)


@fuzz(300)
@given(data=st.binary(max_size=200) | st.binary(max_size=100).map(lambda b: b"\x80\x04" + b), as_file=st.booleans())
def test_safe_unpickle_random_bytes(workdir, data, as_file):
    """Random bytes: DataError (or UnpicklingError) or plain builtin data, never anything else."""
    count_case("safe_unpickle_random_bytes")
    assume(not _memo_bomb(data))  # see the report: a 7-byte pickle can make the unpickler allocate GBs
    src = data
    if as_file:
        src = workdir / fresh_name("pkl")
        src.write_bytes(data)
    try:
        out = safe_unpickle(src)
    except (DataError, pickle.UnpicklingError) as e:
        assert isinstance(e, DataError)  # the refusal is both
        return
    assert _plain(out)


def _pickled_as_global(obj, proto: int) -> bool:
    """Containers that older protocols write as a call of a global (set/frozenset < 4, bytes < 3)."""
    if isinstance(obj, (set, frozenset)) and proto < 4 or isinstance(obj, bytes) and proto < 3:
        return True
    if isinstance(obj, dict):
        return any(_pickled_as_global(k, proto) or _pickled_as_global(v, proto) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return any(_pickled_as_global(v, proto) for v in obj)
    return False


@fuzz(200)
@given(obj=PLAIN_DATA, proto=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_safe_unpickle_plain_roundtrip(obj, proto):
    """Plain data pickled with any protocol loads back equal (or, where the protocol writes a
    set/frozenset/bytes as a call of a global, is refused like any global)."""
    count_case("safe_unpickle_plain_roundtrip")
    blob = pickle.dumps(obj, protocol=proto)
    if _pickled_as_global(obj, proto):
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            safe_unpickle(blob)
    else:
        assert safe_unpickle(blob) == obj


@fuzz(300)
@given(data=st.data(), proto=st.integers(0, pickle.HIGHEST_PROTOCOL), mutate=st.booleans())
def test_safe_unpickle_never_runs_code(workdir, data, proto, mutate):
    """A pickle calling open/exec/os.system/... (anywhere inside plain data, possibly damaged):
    refused with DataError (also an UnpicklingError), and provably nothing ran: no marker file."""
    count_case("safe_unpickle_never_runs_code")
    marker = workdir / fresh_name("MARKER")
    payload = data.draw(st.sampled_from(payloads(marker)), label="payload")
    wrap = data.draw(st.sampled_from(["bare", "list", "dict", "tuple", "nested"]), label="wrap")
    obj = {
        "bare": payload,
        "list": [1, "a", payload],
        "dict": {"k": payload, "n": None},
        "tuple": (payload, 2.5),
        "nested": [[{"x": (payload,)}]],
    }[wrap]
    blob = pickle.dumps(obj, protocol=proto)
    if mutate:
        pos = data.draw(st.integers(0, len(blob) - 1), label="pos")
        blob = blob[:pos] + bytes([blob[pos] ^ data.draw(st.integers(1, 255), label="xor")]) + blob[pos + 1 :]
        assume(not _memo_bomb(blob))
    try:
        out = safe_unpickle(blob)
    except DataError as e:
        if not mutate:
            assert isinstance(e, pickle.UnpicklingError) and "refused" in str(e)
    else:
        assert mutate and _plain(out)  # only a damaged payload can come back, and only as plain data
    assert not marker.exists() and not Path(str(marker) + ".d").exists(), "code from the pickle ran"


def test_bug_safe_unpickle_message_is_one_line():
    with pytest.raises(DataError) as e:
        safe_unpickle(b"P0\n.")  # PERSID: "A load persistent id instruction was encountered,\nbut ..."
    assert "\n" not in str(e.value), str(e.value)


def test_bug_safe_unpickle_extension_cache_bypass(tmp_path):
    """If any code in the process registered a copyreg extension and loaded it once, a pickle
    using that extension code calls the function without safe_unpickle ever seeing a global."""
    marker = tmp_path / "made-by-pickle"
    code = 0x7FFE1234
    copyreg.add_extension("posix", "mkdir", code)
    try:
        blob = pickle.dumps(Payload(os.mkdir, str(marker)), protocol=2)
        assert b"\x84" in blob  # EXT4: no GLOBAL opcode anywhere
        pickle.loads(pickle.dumps(Payload(os.mkdir, str(tmp_path / "warm")), protocol=2))  # fills the cache
        with contextlib.suppress(DataError):
            safe_unpickle(blob)
        assert not marker.exists(), "safe_unpickle called os.mkdir"
    finally:
        copyreg.remove_extension("posix", "mkdir", code)
