"""Resumable training state in one safetensors file: atomic, checksummed, never pickle.

A state file holds tensors (prompt, head, optimizer moments, RNG states, best snapshot, the
current epoch's batch order) and a JSON document in the safetensors metadata (counters, history,
NumPy generator states, config). The metadata also stores a SHA-256 over every tensor's bytes
and the JSON, so a torn or corrupted file is detected and refused, never silently loaded. Writes
go to a temporary file in the same directory, are fsynced, then ``os.replace``d into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

STATE_FILE = "state.safetensors"
FORMAT = "crlprompt-state-v1"


from .errors import CheckpointError  # noqa: E402  (re-exported: crlprompt.checkpoint.CheckpointError)


def _digest(tensors: dict[str, torch.Tensor], doc: str) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(doc.encode())
    return h.hexdigest()


def save_state(path: str | Path, tensors: dict[str, torch.Tensor], doc: dict) -> None:
    """Atomically write ``tensors`` and the JSON-able ``doc`` to ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # clone: no shared storage
    text = json.dumps(doc)
    meta = {"format": FORMAT, "doc": text, "sha256": _digest(tensors, text)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
