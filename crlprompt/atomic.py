"""Files that a reader finds whole or not at all, even when their writer is killed mid-write.

One helper per shape of write:

* :func:`atomic_file` / :func:`atomic_write`: a file replaced as a whole (``config.json``, a table,
  a safetensors file). It is written under a temporary name in the same directory (the same
  filesystem, so the rename is atomic), flushed to disk, then ``os.replace``\\d onto its name. A killed
  writer leaves the old file or the new one, never a mix; at most a stray ``.<name>.*.tmp*`` beside it.
* :func:`atomic_dir`: a directory that appears complete (a run directory, a PEFT adapter): written
  as ``.<name>.partial`` beside it (:func:`partial_dir`), renamed into place (:func:`replace_dir`),
  removed on an error.
* :func:`append_line`: one record appended to a JSON-lines file. The line goes down in one ``write``
  to a file opened for appending, after a newline when the file does not end with one (a writer
  killed mid-line left a torn tail), so a new record never merges into a torn one. Readers skip a
  line that does not parse (:func:`crlprompt.runners.common.load_results`); every whole line before
  and after it is read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on a normal exit it is fsynced and renamed onto
    ``path``, on an error deleted. The temporary name ends with ``path``'s suffix, so writers that
    pick a format by suffix (matplotlib) still do."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` by ``data`` (text is written as UTF-8) atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` (no newline in it) and a newline to ``path`` in one write, first ending a line
    torn by a killed writer; fsynced, so a record that was written survives a crash."""
    if "\n" in line:
        raise ValueError("append_line writes one line: the text holds a newline")
    data = (line + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if os.lseek(fd, 0, os.SEEK_END) > 0:
            os.lseek(fd, -1, os.SEEK_END)  # (O_APPEND: the write still goes to the end)
            if os.read(fd, 1) != b"\n":
                data = b"\n" + data  # the torn tail stays a line of its own; readers skip it
        view = memoryview(data)
        while view:  # a regular file takes it in one write; a short write continues the same line
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def partial_dir(out: str | Path) -> Path:
    """Where a directory is written before it is complete: ``.<name>.partial`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def replace_dir(tmp: Path, out: Path) -> Path:
    """Move the finished directory ``tmp`` into place as ``out``, replacing what was there."""
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    elif out.exists() or out.is_symlink():
        out.unlink()
    os.replace(tmp, out)
    _fsync_dir(out.parent)
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """An empty ``.<name>.partial`` directory to fill; on a normal exit it replaces ``out``
    (:func:`replace_dir`), on an error it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
