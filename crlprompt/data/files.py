"""Split files in a data dir: GLUE-style ``.tsv``, ``.csv``, ``.jsonl``, and the original
EmpatheticDialogues CSVs.

TSV/CSV files need a header with a text column (``sentence``/``text``/...) and a label column
(``label``/...); JSONL lines are objects with ``text`` (or ``sentence``) and ``label``. Labels
are integers or (case-insensitive) label names. The EmpatheticDialogues CSVs hold one row per
utterance with ``_comma_`` for commas; we keep one row per conversation (text = the situation
``prompt``, label = the emotion ``context``). Every problem raises a one-line
:class:`~crlprompt.errors.DataError` naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .splits import Split, data_error

__all__ = ["ED_EMOTIONS", "parse_label", "read_split_file"]

# The 32 emotions of EmpatheticDialogues' ``context`` column, in label-id order (sorted).
ED_EMOTIONS = ("afraid", "angry", "annoyed", "anticipating", "anxious", "apprehensive",
               "ashamed", "caring", "confident", "content", "devastated", "disappointed",
               "disgusted", "embarrassed", "excited", "faithful", "furious", "grateful",
               "guilty", "hopeful", "impressed", "jealous", "joyful", "lonely", "nostalgic",
               "prepared", "proud", "sad", "sentimental", "surprised", "terrified", "trusting")
_TEXT_COLS = ("sentence", "text", "question", "prompt", "utterance")
_JSONL_FIX = 'write one object per line like {"text": "...", "label": 0}'
_LABEL_COLS = ("label", "labels", "coarse_label", "label_coarse", "class", "emotion", "context")


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise data_error(path, f"cannot read file ({e.strerror})", "check the path") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise data_error(f"{path}:{line}", f"not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})",
                         "re-save the file as UTF-8") from e
    if not text.strip():
        raise data_error(path, "file is empty", "write a header and at least one data row")
    return text


def parse_label(raw: Any, names: Sequence[str] | None, where: str) -> int:
    """Label id of ``raw``: an integer (or integral float/str) in range, or one of ``names``."""
    known = f"0..{len(names) - 1} or one of {', '.join(names)}" if names else "integers >= 0"
    value: int | None = None
    if isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
        value = int(raw)
        if abs(value) >= 2**62:
            raise data_error(where, f"label {value} is out of range", f"use labels {known}")
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str):
        s = raw.strip()
        if re.fullmatch(r"[+-]?\d{1,18}", s):
            value = int(s)
        elif re.fullmatch(r"[+-]?\d+", s):
            raise data_error(where, f"label {s[:20]}... is out of range", f"use labels {known}")
        elif names:
            lookup = {n.lower(): i for i, n in enumerate(names)}
            value = lookup.get(s.lower())
    if value is None:
        raise data_error(where, f"label {raw!r} is not an integer or a known label name",
                         f"use labels {known}")
    if value < 0 or (names is not None and value >= len(names)):
        raise data_error(where, f"label {value} is out of range", f"use labels {known}")
    return value


def _csv_records(reader, path: Path):
    """(line number, row) pairs; csv's own errors (huge fields, stray CR) become DataError."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise data_error(f"{path}:{reader.line_num}", f"malformed CSV ({e})",
                             "re-save it as standard CSV (RFC 4180)") from None
        yield reader.line_num, row


def _pick(header: Sequence[str], choices: Sequence[str], what: str, path: Path) -> int:
    cols = [h.strip().lower() for h in header]
    for c in choices:
        if c in cols:
            return cols.index(c)
    raise data_error(f"{path}:1", f"missing {what} column (header is {list(header)})",
                     f"name the {what} column one of {', '.join(choices)}")


def _finish(path: Path, rows: list[tuple[int, str, Any]], names: Sequence[str] | None) -> Split:
    if not rows:
        raise data_error(path, "no data rows after the header", "add at least one row")
    texts, labels = [], []
    for line, text, raw in rows:
        if not isinstance(text, str) or not text.strip():
            raise data_error(f"{path}:{line}", "empty text", "remove the row or fill in its text")
        texts.append(text.strip())
        labels.append(parse_label(raw, names, f"{path}:{line}"))
    return Split(texts, np.asarray(labels, dtype=np.int64))


def _read_empathetic(path: Path, text: str, names: Sequence[str]) -> Split:
    """Original ED CSV: one row per utterance, ``_comma_`` escapes; keep one row per conv_id."""
    lines = text.split("\n")
    header = lines[0].rstrip("\r").split(",")
    i_conv, i_emo, i_text = (_pick(header, (c,), c, path) for c in ("conv_id", "context", "prompt"))
    need, seen, rows = max(i_conv, i_emo, i_text) + 1, set(), []
    for ln, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) < need:
            raise data_error(f"{path}:{ln}", f"{len(parts)} fields, expected at least {need}",
                             "use the original EmpatheticDialogues CSV (commas written as _comma_)")
        if parts[i_conv] not in seen:
            seen.add(parts[i_conv])
            rows.append((ln, parts[i_text].replace("_comma_", ","), parts[i_emo]))
    return _finish(path, rows, names)


def read_split_file(path: str | os.PathLike, label_names: Sequence[str] | None = None) -> Split:
    """Read a ``.tsv`` / ``.csv`` / ``.jsonl`` split file into a :class:`Split`.

    TSV/CSV need a header with a text column (``sentence``/``text``/...) and a label column
    (``label``/...); JSONL lines are objects with ``text`` (or ``sentence``) and ``label``.
    Labels are ints in ``0..len(label_names)-1`` or (case-insensitive) label names. A CSV whose
    header has ``conv_id``, ``context`` and ``prompt`` is read as EmpatheticDialogues.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".tsv", ".csv", ".jsonl", ".json"):
        raise data_error(path, f"unsupported file type {suffix!r}", "use .tsv, .csv or .jsonl")
    text = _decode(path)
    rows: list[tuple[int, str, Any]] = []
    if suffix in (".jsonl", ".json"):
        for ln, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                e.msg = getattr(e, "msg", "nested too deeply")
                raise data_error(f"{path}:{ln}", f"invalid JSON ({e.msg})",
                                 _JSONL_FIX) from e
            if not isinstance(obj, dict):
                raise data_error(f"{path}:{ln}", "line is not a JSON object",
                                 _JSONL_FIX)
            t_key = next((k for k in _TEXT_COLS if k in obj), None)
            l_key = next((k for k in _LABEL_COLS if k in obj), None)
            if t_key is None or l_key is None:
                raise data_error(f"{path}:{ln}", f"missing 'text' or 'label' key (keys: {list(obj)})",
                                 _JSONL_FIX)
            rows.append((ln, obj[t_key], obj[l_key]))
        return _finish(path, rows, label_names)
    if suffix == ".csv":
        first = text.split("\n", 1)[0].lower().split(",")
        if {"conv_id", "context", "prompt"} <= {h.strip() for h in first}:
            return _read_empathetic(path, text, label_names or ED_EMOTIONS)
        reader = csv.reader(io.StringIO(text, newline=""))
        records = _csv_records(reader, path)
    else:  # GLUE-style TSV: no quoting, fields split on tabs
        records = ((ln, line.rstrip("\r").split("\t"))
                   for ln, line in enumerate(text.split("\n"), start=1))
    header: list[str] | None = None
    for ln, rec in records:
        if not any(f.strip() for f in rec):
            continue
        if header is None:
            header = rec
            i_text = _pick(header, _TEXT_COLS, "text", path)
            i_label = _pick(header, _LABEL_COLS, "label", path)
            continue
        if len(rec) != len(header):
            raise data_error(f"{path}:{ln}", f"{len(rec)} fields but the header has {len(header)}",
                             "fix the separators/quoting on this line")
        rows.append((ln, rec[i_text], rec[i_label]))
    return _finish(path, rows, label_names)

