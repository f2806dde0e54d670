"""Resumable training state in one safetensors file: atomic, checksummed, never pickle.

A state file holds tensors (prompt, head, optimizer moments, RNG states, best snapshot, the
current epoch's batch order) and a JSON document in the safetensors metadata (counters, history,
NumPy generator states, config). The metadata also stores a SHA-256 over every tensor's bytes
and the JSON, so a torn or corrupted file is detected and refused, never silently loaded. Writes
go through :func:`crlprompt.atomic.atomic_file` (a temporary file beside it, fsynced, renamed into place).

:func:`save_train_state` / :func:`load_train_state` lay a :class:`TrainState` (with the model's
trainable parameters, the optimizer and the RNGs) out in that file:

==============================  ==========================================================
tensor                          content
==============================  ==========================================================
``param.<name>``                trainable parameters of the model
``opt.<i>.<key>``               optimizer state tensors (scalars go to the document)
``best.<name>``                 snapshot with the best D_RL accuracy so far
``p1best.<name>``               the best snapshot of phase 1
``rng.torch`` / ``rng.cuda``    torch generator states (CUDA when the model is on a GPU)
``batches.flat`` / ``.sizes``   the current epoch's batch order, concatenated
==============================  ==========================================================

The document holds the counters (``step``, ``phase2_step``, ``progress``), ``history``,
``best_acc``, ``best_loss`` (absent in files written before it), ``phase1_best_acc``, ``reward_mean``,
``elapsed``, the NumPy generator states
(``rng_numpy``, ``rng_env``), the optimizer's JSON part, and the ``config`` and ``seed`` that a
resume must match.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_file
from .errors import CheckpointError  # re-exported: crlprompt.checkpoint.CheckpointError
from .prompt_io import tensor_digest

STATE_FILE = "state.safetensors"
FORMAT = "crlprompt-state-v1"


@dataclass
class TrainState:
    """Where a CRL training run stands: everything a resume needs besides the model, the optimizer
    and the RNGs. The loop is a state machine over (phase, epoch, batch position)."""

    step: int = 0
    """Optimizer steps so far, both phases."""
    phase2_step: int = 0
    """Optimizer steps so far in phase 2 (the RL term comes every N-th)."""
    phase_idx: int = 0
    """Index into the phase plan (0 = phase 1, 1 = phase 2, 2 = done)."""
    phase_step: int = 0
    """Optimizer steps taken in the current phase (against its budget)."""
    epoch: int = 0
    """Epochs finished in the current phase."""
    batch_pos: int = 0
    """Index of the next batch in ``batches``."""
    batches: list[np.ndarray] | None = None
    """The current epoch's batch order (row indices per batch); None between epochs."""
    loss_sums: dict[str, torch.Tensor | float] = field(default_factory=dict)
    """Sum over the epoch's steps of each loss part (for the epoch means in ``history``)."""
    best: dict[str, torch.Tensor] | None = None
    """Trainable parameters with the best D_RL accuracy so far (None before the first epoch end)."""
    best_acc: float = -1.0
    """D_RL accuracy of ``best``."""
    best_loss: float | None = None
    """D_RL cross-entropy of ``best`` (breaks ties in D_RL accuracy; None in states saved before it)."""
    phase1_best: dict[str, torch.Tensor] | None = None
    """``best`` as it stood at the end of phase 1 (the P-Tuning result); None before then."""
    phase1_best_acc: float | None = None
    """D_RL accuracy of ``phase1_best``."""
    reward_mean: float | None = None
    """Running mean of RL rewards (the baseline of ``rl_estimator="baseline"`` with one sample)."""
    history: list[dict] = field(default_factory=list)
    """One record per finished epoch."""
    elapsed: float = 0.0
    """Training seconds before this process (set when saving)."""


def _digest(tensors: dict[str, torch.Tensor], doc: str) -> str:
    return tensor_digest(tensors, doc)


def save_state(path: str | Path, tensors: dict[str, torch.Tensor], doc: dict) -> None:
    """Atomically write ``tensors`` and the JSON-able ``doc`` to ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # clone: no shared storage
    text = json.dumps(doc)
    meta = {"format": FORMAT, "doc": text, "sha256": _digest(tensors, text)}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a state file; raises :class:`CheckpointError` on any damage."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training state at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # torn / truncated / not safetensors
        raise CheckpointError(f"{path} is not a readable state file ({type(e).__name__}: {e}); delete it to start over") from None
    if meta.get("format") != FORMAT or "doc" not in meta:
        raise CheckpointError(f"{path} is not a crl-prompt training state (format {meta.get('format')!r})")
    if _digest(tensors, meta["doc"]) != meta.get("sha256"):
        raise CheckpointError(f"{path} failed its checksum (corrupted); delete it to start over")
    try:
        doc = json.loads(meta["doc"])
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path} has a malformed state document; delete it to start over")
    return tensors, doc


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as (tensors, JSON) without pickle."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], doc: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in doc.get("scalars", {}).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": doc["param_groups"]})


def jsonable(obj: Any) -> Any:
    """Dataclasses, paths, tuples and NumPy scalars as plain JSON values, so that a config
    compares equal to itself after a save and a load (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {k: v for k, v in model.named_parameters() if v.requires_grad}


def save_train_state(
    path: str | Path,
    state: TrainState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    rng: np.random.Generator,
    env_rng: np.random.Generator | None,
    config: dict,
    seed: int,
) -> None:
    """Atomically write ``state``, the model's trainable parameters, the optimizer and the RNGs.

    Args:
        rng: the trainer's generator (batch order, RL samples); env_rng: the RL env's, if built.
        config, seed: what produced the run; :func:`load_train_state` refuses any other.

    Raises:
        FloatingPointError: a trainable parameter is NaN/inf; the file at ``path`` is left as it was.
    """
    params = _trainable(model)
    if not all(torch.isfinite(p).all() for p in params.values()):
        raise FloatingPointError(
            f"non-finite loss/parameters: the prompt or head became NaN/inf by step {state.step}; lower --lr "
            f"or --gamma; the last good checkpoint {path} is kept"
        )
    tensors = {f"param.{k}": v for k, v in params.items()}
    opt_t, opt_doc = optimizer_to_flat(optimizer)
    tensors.update(opt_t)
    tensors["rng.torch"] = torch.get_rng_state()
    device = next(iter(params.values())).device if params else torch.device("cpu")
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    tensors.update({f"best.{k}": v for k, v in (state.best or {}).items()})
    tensors.update({f"p1best.{k}": v for k, v in (state.phase1_best or {}).items()})
    if state.batches is not None:
        tensors["batches.flat"] = torch.as_tensor(np.concatenate(state.batches), dtype=torch.long)
        tensors["batches.sizes"] = torch.as_tensor([len(b) for b in state.batches], dtype=torch.long)
    progress = {"phase_idx": state.phase_idx, "done": state.phase_step, "epoch": state.epoch,
                "pos": state.batch_pos, "sums": {k: float(v) for k, v in state.loss_sums.items()}}  # fmt: skip
    doc = {
        "config": jsonable(config), "seed": seed, "step": state.step, "phase2_step": state.phase2_step,
        "progress": progress, "history": state.history, "best_acc": state.best_acc, "best_loss": state.best_loss,
        "phase1_best_acc": state.phase1_best_acc, "reward_mean": state.reward_mean,
        "rng_numpy": rng.bit_generator.state, "rng_env": None if env_rng is None else env_rng.bit_generator.state,
        "optimizer": opt_doc, "elapsed": state.elapsed,
    }  # fmt: skip
    save_state(path, tensors, doc)


def load_train_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    rng: np.random.Generator,
    env_rng: Callable[[], np.random.Generator],
    config: dict,
    seed: int,
) -> TrainState:
    """Restore what :func:`save_train_state` wrote into ``model``, ``optimizer`` and the RNGs.

    Args:
        rng: the trainer's generator, set in place.
        env_rng: returns the RL env's generator (set in place); called only when the file holds
            one, so that a lazily built env is built only if the saved run had built it.
        config, seed: must equal what the file was written with.

    Raises:
        CheckpointError: the file is missing, damaged, or from another configuration or seed.
    """
    tensors, doc = load_state(path)
    if doc.get("config") != jsonable(config) or doc.get("seed") != seed:
        raise CheckpointError(f"{path} was written with another configuration or seed; delete it or use --overwrite")
    params = _trainable(model)
    try:
        with torch.no_grad():
            for k, v in tensors.items():
                if k.startswith("param."):
                    params[k[6:]].copy_(v)
        optimizer_from_flat(optimizer, tensors, doc["optimizer"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"{path} does not fit this model ({type(e).__name__}: {e}); delete it to start over"
        ) from None
    torch.set_rng_state(tensors["rng.torch"])
    device = next(iter(params.values())).device if params else torch.device("cpu")
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    rng.bit_generator.state = doc["rng_numpy"]

    def snapshot(prefix: str) -> dict[str, torch.Tensor]:
        named = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        return {k: v.to(params[k].device) for k, v in named.items()}

    batches = None
    if "batches.flat" in tensors:
        flat, sizes = tensors["batches.flat"].numpy(), tensors["batches.sizes"].tolist()
        batches = np.split(flat, np.cumsum(sizes)[:-1])
    prog = doc["progress"]
    state = TrainState(
        step=doc["step"], phase2_step=doc["phase2_step"], phase_idx=prog["phase_idx"], phase_step=prog["done"],
        epoch=prog["epoch"], batch_pos=prog["pos"], batches=batches, loss_sums=prog["sums"],
        best=snapshot("best.") or None, best_acc=doc["best_acc"], best_loss=doc.get("best_loss"),
        phase1_best=None if doc["phase1_best_acc"] is None else snapshot("p1best."),
        phase1_best_acc=doc["phase1_best_acc"], reward_mean=doc["reward_mean"], history=doc["history"],
        elapsed=doc["elapsed"],
    )  # fmt: skip
    if doc["rng_env"] is not None:
        env_rng().bit_generator.state = doc["rng_env"]
    return state
