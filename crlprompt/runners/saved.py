"""What a saved prompt needs to be scored again: its setup, task spec and (for runs saved from Python) rows.

Three kinds of directory hold a prompt:

* a run directory of ``crl-prompt train`` (``config.json`` + ``prompt.safetensors``);
* a run directory saved by :class:`crlprompt.PromptClassifier` (the same, plus the task spec under
  ``"task_spec"`` in ``config.json`` and its rows in ``data/{train,rl,test}.jsonl``);
* a PEFT adapter directory: exported by crl-prompt (its model card records the setup) or trained
  with plain PEFT (then the task, and the model where ``base_model_name_or_path`` is unset, come
  from the caller: ``--task``, ``--model``; from Python the class names alone will do, as a
  task of the caller's own named :data:`CUSTOM_TASK`).

:func:`open_checkpoint` turns any of them into a :class:`SavedPrompt`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..build import SetupConfig
from ..data.files import read_split_file
from ..errors import CheckpointError, CRLPromptError
from ..prompt_io import ADAPTER_CONFIG, HEAD_FILE, PROMPT_FILE, read_adapter
from ..prompts import POOLINGS
from ..tasks import TASKS, PromptTemplate, Split, TaskData, TaskSpec, get_task
from .config import setup_from_run_config

#: the templates of a task defined from Python (they matter only to head="verbalizer")
CUSTOM_MLM, CUSTOM_LM = "{text} It was {mask}.", "{text}\nAnswer: {mask}"
SPLITS = ("train", "drl", "test")
#: the task name of rows and labels given from Python (PromptClassifier's default)
CUSTOM_TASK = "custom"


@dataclass
class SavedPrompt:
    """A saved prompt and what rebuilds its model: ``build(setup, data=data)``, then ``load_prompt(model, path)``."""

    path: Path
    """What :func:`crlprompt.prompts.load_prompt` reads: a prompt file or an adapter directory."""
    setup: SetupConfig
    spec: TaskSpec | None
    """The task spec (None: a task name :func:`crlprompt.tasks.load_task` knows, loaded with its data)."""
    data: TaskData | None = None
    """The run's own rows (runs saved from Python); None = load the task by name."""
    config: dict = dataclasses.field(default_factory=dict)
    """The run's config.json (empty for an adapter directory)."""


def custom_spec(name: str, labels: tuple[str, ...], verbalizer: tuple[str, ...] | None = None) -> TaskSpec:
    """A task spec for labels given from Python (verbalizer words default to the lower-cased labels)."""
    words = tuple(verbalizer) if verbalizer is not None else tuple(str(x).lower() for x in labels)
    return TaskSpec(name, tuple(labels), {"custom": PromptTemplate(CUSTOM_MLM, CUSTOM_LM, words)})


def spec_record(spec: TaskSpec) -> dict:
    return {"name": spec.name, "label_names": list(spec.label_names), "template": spec.template,
            "templates": {k: dataclasses.asdict(t) for k, t in spec.templates.items()}}  # fmt: skip


def spec_from_record(rec: Any, where: Path) -> TaskSpec:
    try:
        templates = {k: PromptTemplate(t["mlm"], t["lm"], tuple(t["verbalizer"])) for k, t in rec["templates"].items()}
        return TaskSpec(rec["name"], tuple(rec["label_names"]), templates, rec.get("template", ""))
    except (KeyError, TypeError, AttributeError, CRLPromptError) as e:
        raise CheckpointError(f"{where} has a malformed task_spec record ({type(e).__name__}: {e})") from None


def write_splits(run_dir: Path, splits: dict[str, Split]) -> dict[str, str]:
    """Write each split as JSON lines ``{"text", "label"}`` under ``run_dir/data``; their relative paths."""
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, split in splits.items():
        rel = f"data/{name}.jsonl"
        with open(run_dir / rel, "w") as f:
            for text, label in zip(split.texts, split.labels.tolist()):
                f.write(json.dumps({"text": text, "label": label}) + "\n")
        paths[name] = rel
    return paths


def read_splits(run_dir: Path, paths: dict, spec: TaskSpec) -> dict[str, Split]:
    """The splits a run directory stored (``paths``: its config's ``data``); a directory saved before D_RL's
    split was renamed names it ``rl``."""
    out = {}
    if "rl" in paths and "drl" not in paths:
        paths = {("drl" if k == "rl" else k): v for k, v in paths.items()}
    for name in SPLITS:
        if name in paths:
            file = run_dir / str(paths[name])
            if not file.is_file():
                raise CheckpointError(f"{run_dir} lacks its data file {paths[name]}; the run directory is incomplete")
            out[name] = read_split_file(file, spec.label_names) if file.stat().st_size else Split([], [])
    return out


def open_checkpoint(path: str | Path, *, task: str | None = None, model: str | None = None,
                    head: str | None = None, labels: tuple[str, ...] | None = None) -> SavedPrompt:  # fmt: skip
    """Resolve a run or adapter directory (see the module docstring); ``task``, ``model`` and
    ``head`` override what it records (and supply what a plain-PEFT adapter does not). ``labels``:
    the class names of an adapter that names no task; it then gets the task :data:`CUSTOM_TASK` of
    these labels (a spec the caller builds with :func:`custom_spec`)."""
    path = Path(path)
    over = {k: v for k, v in (("task", task), ("model", model), ("head", head)) if v is not None}
    if (path / "config.json").is_file() and (path / PROMPT_FILE).is_file():
        return _open_run(path, over)
    if (path / ADAPTER_CONFIG).is_file():
        return _open_adapter(path, over, labels)
    raise CheckpointError(f"{path} is neither a crl-prompt run directory (config.json and {PROMPT_FILE}) nor a PEFT "
                          f"adapter directory ({ADAPTER_CONFIG})")  # fmt: skip


def _open_run(path: Path, over: dict) -> SavedPrompt:
    try:
        saved = json.loads((path / "config.json").read_text())
    except ValueError as e:
        raise CheckpointError(f"{path / 'config.json'} is not valid JSON ({e}); pass a run directory written by crl-prompt") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path / 'config.json'} is not a JSON object; pass a run directory written by crl-prompt")
    setup = dataclasses.replace(setup_from_run_config(saved), **over)
    spec = data = None
    if "task_spec" in saved and "task" not in over:  # rows given from Python, stored with the run
        spec = spec_from_record(saved["task_spec"], path)
        splits = read_splits(path, saved.get("data") or {}, spec)
        if "train" in splits and "drl" in splits:
            test = splits.get("test") or splits["drl"]
            data = TaskData(spec, splits["train"], splits["drl"], test, f"run:{path}")
    return SavedPrompt(path / PROMPT_FILE, setup, spec, data, saved)


def _open_adapter(path: Path, over: dict, labels: tuple[str, ...] | None = None) -> SavedPrompt:
    info = read_adapter(path)
    rec = info.record
    fields = {}
    if isinstance(rec.get("setup"), dict):
        try:
            fields = dataclasses.asdict(SetupConfig.from_stored(rec["setup"]))
        except CRLPromptError as e:
            raise CheckpointError(f"{path} records a setup crl-prompt cannot read ({e})") from None
    task = over.get("task") or rec.get("task") or fields.get("task") or (CUSTOM_TASK if labels else None)
    if not task:
        raise CheckpointError(f"{path} does not say which task it was trained for (an adapter trained with plain PEFT "
                              f"does not); pass --task NAME (one of {', '.join(TASKS)})")  # fmt: skip
    model = over.get("model") or info.model
    if not model:
        raise CheckpointError(f"{path} does not name its base model (base_model_name_or_path is unset); pass --model "
                              "NAME (a named model, an HF id or a local directory)")  # fmt: skip
    head = over.get("head") or rec.get("head") or ("linear" if info.head is not None else None)
    if head is None:
        raise CheckpointError(f"{path} has no {HEAD_FILE}, and classifying with this prompt needs a head: save the "
                              f"linear head trained with it there (tensors 'weight' (C, H), 'bias' (C,)), or pass "
                              "--head verbalizer to score the LM's own label words")  # fmt: skip
    fields.update(task=task, model=model, head=head, prompt=info.kind, num_tokens=info.num_tokens)
    # the card's pooling; a plain-PEFT adapter (no card) keeps the rule documented before the option
    fields["pooling"] = rec.get("pooling") if rec.get("pooling") in POOLINGS else fields.get("pooling", "legacy")
    if "prompt_encoder" in {f.name for f in dataclasses.fields(SetupConfig)}:
        fields["prompt_encoder"] = "none"  # an adapter holds the prompt itself, whatever encoder trained it
    spec = None
    names = list(labels) if labels else rec.get("labels")
    if _known_task(task) is None and isinstance(names, list) and names:  # a task defined from Python
        spec = custom_spec(task, tuple(str(x) for x in names))
    return SavedPrompt(path, SetupConfig(**fields), spec)


def _known_task(name: str) -> TaskSpec | None:
    try:
        return get_task(name)
    except CRLPromptError:
        return None
