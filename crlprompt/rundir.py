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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atomic import atomic_dir, atomic_write, partial_dir  # noqa: F401  (partial_dir: where a run is written)
from .prompt_io import ADAPTER_DIR, PROMPT_FILE, save_peft_adapter, save_prompt

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


def write_json(path: Path, obj: Any) -> None:
    """A JSON file (or ``obj`` as it is, when it is text) written atomically (:func:`~crlprompt.atomic.atomic_write`)."""
    atomic_write(path, obj if isinstance(obj, str) else json.dumps(obj, indent=2, default=str) + "\n")


def write_prompt_files(run_dir: Path, pm: Any, *, meta: dict | None = None, spec: Any = None, setup: Any = None,
                       record: dict | None = None, adapter: bool = True) -> None:  # fmt: skip
    """``prompt.safetensors`` (atomic) and, with ``adapter`` and a prompt of at least one token, the PEFT
    ``adapter/`` with its head and card (atomic too); an architecture PEFT cannot wrap leaves the prompt file alone."""
    save_prompt(pm, run_dir / PROMPT_FILE, meta)
    if adapter and pm.layout.num_tokens > 0:
        try:
            save_peft_adapter(pm, run_dir / ADAPTER_DIR, spec=spec, setup=setup, metrics=record)
        except Exception as e:  # noqa: BLE001 - an architecture PEFT cannot wrap: the prompt file still holds θ
            log.warning("could not write a PEFT adapter (%s: %s); %s holds the prompt", type(e).__name__, e, PROMPT_FILE)


def write_run_dir(out: Path | str, config: dict, pm: Any, *, meta: dict | None = None, spec: Any = None,
                  setup: Any = None, record: dict | None = None, adapter: bool = True,
                  extra: Callable[[Path], dict] | None = None) -> Path:  # fmt: skip
    """Write a whole run directory at ``out`` in one go: ``config.json`` (``config``, plus what
    ``extra(tmp)`` returns after writing its own files there), the prompt files, then the rename.
    Nothing half-written is left behind when any step fails."""
    with atomic_dir(out) as tmp:
        config = {**config, **(extra(tmp) if extra else {})}
        write_json(tmp / CONFIG_FILE, config)
        write_prompt_files(tmp, pm, meta=meta, spec=spec, setup=setup, record=record, adapter=adapter)
    return Path(out)
