"""Loading pickles of plain data without running code: an opcode prescan, then an unpickler
that refuses every global.

A pickle is a program: ``GLOBAL`` / ``REDUCE`` and friends import and call anything. The
offline datasets (StaICC) are pickled lists of ``([text], label)``, which need none of that, so
:func:`safe_unpickle` first scans the opcodes and refuses every one that can reach an object
other than a builtin container or scalar, then loads with an unpickler whose ``find_class``
refuses every global.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

from ..errors import DataError
from .splits import data_error

__all__ = ["RefusedGlobal", "safe_unpickle"]


class RefusedGlobal(DataError, pickle.UnpicklingError):
    """A pickle asked for a global (class/function); caught by either exception type."""


class _NoGlobalsUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        raise RefusedGlobal(f"{self._where}: pickle refers to global {module}.{name}, which is "
                            "refused (loading it could run code). Fix: only load pickles of "
                            "plain lists/tuples/str/int from a trusted source")


def safe_unpickle(path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview) -> Any:
    """Load a pickle of builtin containers/scalars; any global (class, function) is refused."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        where, data = "<pickle bytes>", bytes(path_or_bytes)
    else:
        where = str(path_or_bytes)
        try:
            data = Path(path_or_bytes).read_bytes()
        except OSError as e:
            raise data_error(where, f"cannot read pickle ({e.strerror})", "check the path") from e
    _prescan(data, where)
    try:
        return _NoGlobalsUnpickler(io.BytesIO(data), where).load()
    except RefusedGlobal:
        raise
    except Exception as e:  # truncated / corrupt stream
        msg = " ".join(str(e).split())  # one line
        raise data_error(where, f"not a valid pickle ({type(e).__name__}: {msg})",
                         "re-download or regenerate the file") from e


# Opcodes that reach objects other than builtin containers and scalars. EXT1/2/4 fetch from
# copyreg's extension cache without calling find_class, so they are refused up front.
_REFUSED_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX",
                "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}
_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}
_MAX_MEMO = 10_000_000


def _prescan(data: bytes, where: str) -> None:
    """Refuse code-reaching opcodes and absurd memo indexes before unpickling anything."""
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in _REFUSED_OPS:
                raise RefusedGlobal(f"{where}: pickle uses opcode {op.name}, which is refused (loading it "
                                    "could run code). Fix: only load pickles of plain lists/tuples/str/int")
            if op.name in _MEMO_OPS and isinstance(arg, int) and arg > _MAX_MEMO:
                raise data_error(where, f"pickle memo index {arg} is implausible",
                                 "re-download or regenerate the file")
    except DataError:  # RefusedGlobal included
        raise
    except Exception as e:  # malformed stream: let the loader report it
        if not isinstance(e, (ValueError, EOFError, KeyError, IndexError, TypeError, UnicodeDecodeError)):
            raise
