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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..errors import ConfigError

log = logging.getLogger("crlprompt")
Cell = TypeVar("Cell")
Launcher = Literal["local", "ray"]
LAUNCHERS = ("local", "ray")


def int_list(name: str, value: Any, *, allow_empty: bool = True) -> tuple[int, ...]:
    """A list option as a tuple of ints >= 0, from ``(0, 1)``, ``["0", "1"]``, ``"0,1"`` or ``"0 1"``
    (records and config files written before the grid options were shared hold the string forms)."""
    items = value.replace(",", " ").split() if isinstance(value, str) else [
        part for v in (value or ()) for part in str(v).replace(",", " ").split()]  # fmt: skip
    try:
        out = tuple(int(v) for v in items)
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')} takes integers, e.g. --{name.replace('_', '-')} 0 1 2, "
                          f"got {value!r}") from None  # fmt: skip
    if any(v < 0 for v in out) or (not out and not allow_empty):
        raise ConfigError(f"--{name.replace('_', '-')} takes integers >= 0 (at least one), got {value!r}")
    return out


@dataclass
class GridOptions:
    """What every grid runner shares (``reproduce``, ``compare``): the seeds, where records go, how the
    cells run. One syntax for lists: ``--seeds 0 1 2`` (``--seeds 0,1,2`` is read the same)."""

    seeds: tuple[int, ...] = (0,)
    """Training / algorithm seeds, e.g. ``--seeds 0 1 2``."""
    data_seeds: tuple[int, ...] = ()
    """Data seeds (the D_RL split and k-shot draw; LM-BFF's are 13 21 42 87 100); empty = the runner's default."""
    out: Path = Path("runs/grid")
    """Output directory; a rerun skips the cells its records hold."""
    progress: bool = True
    """Show progress bars (--no-progress: log lines only, e.g. in batch jobs)."""
    launcher: Launcher = "local"
    """local: cells one after another here; ray: one Ray task per cell (needs the ray extra)."""
    ray_address: str | None = None
    """With --launcher ray: the cluster to join (auto, ray://head:10001); None starts a local Ray instance."""
    cpus_per_run: int = 1
    """With --launcher ray: CPUs (and torch threads) per cell."""

    def __post_init__(self) -> None:
        self.seeds = int_list("seeds", self.seeds, allow_empty=False)
        self.data_seeds = int_list("data_seeds", self.data_seeds)
        self.out = Path(self.out)
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        c = self.cpus_per_run
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ConfigError(f"--cpus-per-run must be an int >= 1, got {c!r}")


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
