"""Run the independent cells of a grid here, one after another, or as Ray tasks on a cluster.

    crl-prompt reproduce ... --launcher ray                     # a local Ray instance
    crl-prompt reproduce ... --launcher ray --ray-address auto  # the cluster this host joined

A cell is one training run (``reproduce``) or one (algorithm, seed) search (``compare``). The
driver writes every record as its cell finishes, so a rerun skips finished cells whichever
launcher ran them. Under Ray each cell is a task with ``cpus_per_cell`` CPUs and as many torch
threads; run directories are written where the config says, so on a multi-host cluster give
``--out`` on a filesystem every node shares. Needs the ``ray`` extra (``pip install 'crl-prompt[ray]'``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from ..errors import ConfigError

log = logging.getLogger("crlprompt")
Cell = TypeVar("Cell")
Launcher = Literal["local", "ray"]
LAUNCHERS = ("local", "ray")


def _in_worker(fn: Callable[[Any], dict], cell: Any, threads: int) -> dict:
    """Body of one Ray task: the cell's own torch threads, quiet logs, then the cell."""
    from .common import set_threads

    set_threads(threads)
    return fn(cell)


def run_cells(
    cells: Iterable[Cell],
    fn: Callable[[Cell], dict],
    on_result: Callable[[Cell, dict], None],
    *,
    launcher: Launcher = "local",
    address: str | None = None,
    cpus_per_cell: int = 1,
) -> int:
    """Run ``fn(cell)`` for every cell; call ``on_result(cell, record)`` in this process as each
    finishes (in completion order under Ray). Returns the number of cells run.

    ``fn`` must be a module-level function and the cells picklable (Ray ships them to workers).
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if isinstance(cpus_per_cell, bool) or not isinstance(cpus_per_cell, int) or cpus_per_cell < 1:
        raise ConfigError(f"cpus_per_cell must be an int >= 1, got {cpus_per_cell!r}")
    cells = list(cells)
    if launcher == "local":
        for cell in cells:
            on_result(cell, fn(cell))
        return len(cells)
    try:
        import ray
    except ImportError:
        raise ConfigError("--launcher ray needs Ray: pip install 'crl-prompt[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    log.info("Ray: %d cells on %s CPUs, %d CPU(s) each", len(cells), ray.cluster_resources().get("CPU"), cpus_per_cell)
    task = ray.remote(num_cpus=cpus_per_cell, max_retries=0)(_in_worker)
    pending = {task.remote(fn, cell, cpus_per_cell): cell for cell in cells}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done[0])
            on_result(cell, ray.get(done[0]))  # a failed cell raises here, after the others' records
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()
    return len(cells)
