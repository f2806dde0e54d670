"""Data-parallel training with ``torch.distributed`` (``torchrun``), gloo on CPU, NCCL on GPU.

    torchrun --nproc_per_node=P -m crlprompt.runners.crl ...      (or -m crlprompt.cli train ...)

Every rank holds the whole (small) prompt and head, draws the same global batch order, RL samples
and noise (same seeds), and computes the loss on its shard ``batch[rank::world]``. Per-example
terms are weighted by shard/global size and rank-identical terms (the RL term) by 1/world, so
that the all-reduced (summed) gradient equals the 1-process gradient of the same global batch.
Reward and accuracy evaluation shard D_RL the same way and all-reduce the correct counts. Rank 0
alone writes logs, checkpoints and results. (The InfoNCE term uses in-batch negatives from the
rank's own shard, so with β > 0 it is a per-shard estimate.)
"""

from __future__ import annotations

import atexit
import os

import numpy as np
import torch


def is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> tuple[int, int]:
    """Join the process group torchrun describes in the environment (no-op when run plainly).

    Returns (rank, world_size). CUDA ranks use NCCL and ``cuda:LOCAL_RANK``; CPU ranks use gloo.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return rank(), world_size()
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    # Leave the group before the interpreter tears down: a rank that exits with gloo's threads still
    # alive aborts ("terminate called without an active exception") and torchrun fails the whole job.
    atexit.register(_leave_group)
    return dist.get_rank(), dist.get_world_size()


def _leave_group() -> None:
    """Wait (at most 30 s: a rank that crashed never arrives) for every rank to finish, then leave."""
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=30))
        else:
            dist.barrier()
    except Exception:  # noqa: BLE001 - another rank failed; leaving is all that is left to do
        pass
    dist.destroy_process_group()


def default_device() -> str | None:
    """``cuda:LOCAL_RANK`` under torchrun with CUDA, else None (let the caller decide)."""
    if is_distributed() and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return None


def shard_batch(idx: np.ndarray, rank_: int | None = None, world: int | None = None) -> tuple[np.ndarray, float]:
    """This rank's rows ``idx[rank::world]`` of a global batch ``idx``, and their weight.

    The weight ``len(shard) / len(idx)`` scales the shard's mean per-example loss so that the
    summed gradients over ranks are the global batch's. A tail batch smaller than the world leaves
    some ranks without rows: they take one row with weight 0, so that every rank still joins the
    gradient all-reduce. ``rank_`` / ``world`` default to the process group's (1 process: the whole
    batch, weight 1).
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if world <= 1:
        return idx, 1.0
    shard = idx[rank_::world]
    if len(shard) == 0:
        return idx[:1], 0.0
    return shard, len(shard) / len(idx)


def all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (returns ``t``); identity without a process group."""
    if is_distributed():
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_grads_(params) -> None:
    """Sum the gradients of ``params`` over ranks, flattened into one collective."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum_(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()
