"""Tests of crlprompt.data.pickles: safe_unpickle loads plain data and never runs code."""
from __future__ import annotations

import os
import pickle

import pytest

from crlprompt.data.pickles import safe_unpickle
from crlprompt.errors import DataError


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_safe_unpickle_refuses_globals(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([(["hi"], 1), _Evil(target)]))
    with pytest.raises(DataError, match="evil.pkl.*refused"):
        safe_unpickle(path)
    with pytest.raises(pickle.UnpicklingError):
        safe_unpickle(path.read_bytes())
    assert not target.exists()


def test_safe_unpickle_plain_and_corrupt(tmp_path):
    data = [(["a"], 0), ("b", 1, 2.5, None, {"k": [True]})]
    for proto in (2, pickle.HIGHEST_PROTOCOL):
        assert safe_unpickle(pickle.dumps(data, protocol=proto)) == data
    bad = tmp_path / "cut.pkl"
    bad.write_bytes(pickle.dumps(data)[:10])
    with pytest.raises(DataError, match="cut.pkl.*not a valid pickle"):
        safe_unpickle(bad)


def test_safe_unpickle_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.pkl: cannot read pickle.*check the path"):
        safe_unpickle(tmp_path / "nope.pkl")
