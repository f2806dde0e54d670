"""The one writer of run directories: what ``crl-prompt train``, ``PromptClassifier.save`` and a
search result's ``save`` leave behind, and what ``crl-prompt eval``, ``PromptClassifier.load``,
``gym.make(..., checkpoint=...)`` and PEFT read.

A run directory holds ``config.json`` (the resolved :class:`~crlprompt.build.SetupConfig` under
``"setup"``, plus what made the prompt: a method and its agent config, or a search algorithm and
the env's options), ``prompt.safetensors`` (θ, the head, the layout, pooling and a checksum) and,
where PEFT can wrap the model, ``adapter/`` (a standard PEFT adapter with the head and a model card).
It appears complete or not at all: it is written in ``.<name>.partial`` beside it and renamed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .prompt_io import ADAPTER_DIR, PROMPT_FILE, save_peft_adapter, save_prompt

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


def partial_dir(out: Path | str) -> Path:
    """Where a run directory is written before it is complete: ``.<name>.partial`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def write_json(path: Path, obj: Any) -> None:
    """A JSON file written atomically (a temp file in the same directory, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n" if not isinstance(obj, str) else obj)
    os.replace(tmp, path)


def write_prompt_files(run_dir: Path, pm: Any, *, meta: dict | None = None, spec: Any = None, setup: Any = None,
                       record: dict | None = None, adapter: bool = True) -> None:  # fmt: skip
    """``prompt.safetensors`` (atomic) and, with ``adapter`` and a prompt of at least one token, the PEFT
    ``adapter/`` with its head and card; an architecture PEFT cannot wrap leaves the prompt file alone."""
    tmp = run_dir / (PROMPT_FILE + ".tmp")
    save_prompt(pm, tmp, meta)
    os.replace(tmp, run_dir / PROMPT_FILE)
    if adapter and pm.layout.num_tokens > 0:
        try:
            save_peft_adapter(pm, run_dir / ADAPTER_DIR, spec=spec, setup=setup, metrics=record)
        except Exception as e:  # noqa: BLE001 - an architecture PEFT cannot wrap: the prompt file still holds θ
            log.warning("could not write a PEFT adapter (%s: %s); %s holds the prompt", type(e).__name__, e, PROMPT_FILE)


def commit(tmp: Path, out: Path) -> Path:
    """Move the finished ``tmp`` into place as ``out`` (replacing what was there)."""
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)
    return out


def write_run_dir(out: Path | str, config: dict, pm: Any, *, meta: dict | None = None, spec: Any = None,
                  setup: Any = None, record: dict | None = None, adapter: bool = True,
                  extra: Callable[[Path], dict] | None = None) -> Path:  # fmt: skip
    """Write a whole run directory at ``out`` in one go: ``config.json`` (``config``, plus what
    ``extra(tmp)`` returns after writing its own files there), the prompt files, then the rename.
    Nothing half-written is left behind when any step fails."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        config = {**config, **(extra(tmp) if extra else {})}
        write_json(tmp / CONFIG_FILE, config)
        write_prompt_files(tmp, pm, meta=meta, spec=spec, setup=setup, record=record, adapter=adapter)
        return commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
