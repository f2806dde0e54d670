"""Reproduce the paper's tables: tasks × models × methods × seeds -> results.jsonl + Markdown.

    python -m crlprompt.runners.crl --tasks trec sst2 agnews --models minilm smollm2 \\
        --methods handcraft ptv1 ptv2 crl --seeds 0 1 2 --out runs/paper

Every finished run appends one JSON line to ``OUT/results.jsonl`` (or ``--results FILE``) and
keeps its run directory ``OUT/runs/<task>-<model>-<method>-s<seed>/`` (config, metrics,
TensorBoard, prompt, PEFT adapter). Rerunning the same command skips the runs already recorded
(resume after an interruption); a run that was cut off is redone from its start. ``OUT/config.json``
keeps each grid's settings: a rerun may add tasks, models, methods and seeds, but one whose agent
settings (or ``--phase2-lrs``, ``--max-train``, ``--max-test``) differ from those the same task, k
and tag were run with is refused before anything runs (``--overwrite`` starts those afresh). ``--ablation``
runs the Table 2 rows (v2 only / + contrastive / + RL / full) instead. The tables (mean ± std
over seeds) are rewritten after every run to ``OUT/table1.md`` / ``OUT/table2.md``.

Few-shot grids (LM-BFF): ``--k-shots 16 64 --data-seeds 13 21 42 87 100`` adds k (rows per class)
and the data seed to the grid; ``--tag NAME`` names a variant of the agent config (a sweep
point), so several variants share one results file. Every record carries the schema, the commit, the
package versions and the machine (:mod:`crlprompt.runners.records`); a results file written before
records had a schema is refused until ``python scripts/migrate_records.py`` converts it.

The paper's learning-rate protocol (phase 1 at 1e-3, phase 2 at the best on D_RL of four rates):
``--lr 1e-3 --phase2-lrs 1e-3 2e-3 5e-4 1e-4 --tag paper-lr``; every method of the grid
(Prompt v2 continues with CE in phase 2) gets the same selection, and the tables pair runs of one tag.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path


from ..agents.crl import CRLConfig
from ..atomic import atomic_write
from ..build import SetupConfig
from ..distributed import is_main
from ..errors import ConfigError, CRLPromptError, ModelError
from .common import check_out_dir, jsonable, load_results, parse_config, setup_logging
from .config import METHODS, TrainConfig
from .launch import GridOptions, run_cells
from .records import append_record, read_records, stamp
from .tables import ABLATION_METHODS, ABLATION_NAMES, METHOD_NAMES, TABLE1_METHODS, few_shot_sections, normalize, table
from .train import _dict_diff, run

log = logging.getLogger("crlprompt")
__all__ = ["ReproduceConfig", "Cell", "grid", "reproduce", "run_cell", "run_name", "table", "write_tables", "load_results",
           "TABLE1_METHODS", "ABLATION_METHODS", "METHOD_NAMES", "ABLATION_NAMES"]


@dataclass
class ReproduceConfig(GridOptions):
    """The reproduction grid; every run uses the agent hyperparameters below."""

    tasks: tuple[str, ...] = ("trec", "sst2", "agnews")
    """Tasks to run."""
    models: tuple[str, ...] = ("minilm", "smollm2")
    """Models to run."""
    methods: tuple[str, ...] = TABLE1_METHODS
    """Methods (handcraft ptv1 ptv2 crl crl-contrast crl-rl); --ablation overrides them."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds per cell (the table reports mean ± std over them)."""
    k_shots: tuple[int, ...] = ()
    """Few-shot k (rows per class, LM-BFF); empty = full data with the drl_fraction holdout."""
    data_seeds: tuple[int, ...] = (0,)
    """Data seeds (D_RL split, k-shot draw); LM-BFF's are 13 21 42 87 100."""
    tag: str = ""
    """Name of this agent-config variant (a sweep point), stored in records and run names."""
    phase2_lrs: tuple[float, ...] = ()
    """The paper's protocol: run phase 2 at each of these learning rates (e.g. 1e-3 2e-3 5e-4 1e-4, phase 1 at
    --lr) and keep the one with the best D_RL accuracy; every point is in the record. Needs --tag."""
    results: Path | None = None
    """Append records to this JSON-lines file instead of OUT/results.jsonl."""
    ablation: bool = False
    """Run Table 2 (v2 only / + contrastive / + RL / full) instead of Table 1."""
    out: Path = Path("runs/paper")
    """Output directory (results.jsonl, table1.md / table2.md, runs/)."""
    data_dir: str | None = None
    """Task data directory (SST-2 needs sst2/dev.tsv)."""
    max_train: dict[str, int] = field(default_factory=dict)
    """Per-task training-pool caps as pairs, e.g. `--max-train agnews 4000 sst2 4000` (documented subsets)."""
    max_test: dict[str, int] = field(default_factory=dict)
    """Per-task test caps."""
    device: str = "auto"
    """auto | cpu | cuda."""
    agent: CRLConfig = field(default_factory=CRLConfig)
    """Hyperparameters shared by every run."""
    overwrite: bool = False
    """Start afresh: delete the records, run directories and stored settings of this grid's tasks, k and tag
    in OUT (and the records in --results) before running; other tags' and tasks' runs are kept."""

    def __post_init__(self):
        from ..tasks import TASKS

        super().__post_init__()
        self.data_seeds = self.data_seeds or (0,)

        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"unknown methods {bad}; choose from {tuple(METHODS)}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ConfigError(f"unknown tasks {bad or list(self.tasks)}; choose from {tuple(TASKS)}")
        if not self.models:
            raise ConfigError("--models needs at least one value")
        check_out_dir(self.out)
        if self.results is not None:
            if self.results.is_dir():
                raise ConfigError(f"--results {self.results} is a directory; pass a JSON-lines file path")
            check_out_dir(self.results.parent, "--results (its directory)")
        if self.phase2_lrs and not self.tag:
            raise ConfigError("--phase2-lrs selects runs by D_RL: name the protocol with --tag (e.g. --tag paper-lr) "
                              "so its records are kept apart from fixed-lr runs")  # fmt: skip
        if any(not lr > 0 for lr in self.phase2_lrs):
            raise ConfigError(f"--phase2-lrs must all be > 0, got {self.phase2_lrs}")


def run_name(task: str, model: str, method: str, seed: int, data_seed: int = 0, k_shot: int | None = None,
             tag: str = "") -> str:  # fmt: skip
    safe_model = model.replace("/", "_")
    name = f"{task}-{safe_model}-{method}-s{seed}"
    if k_shot is not None:
        name += f"-k{k_shot}"
    if data_seed or k_shot is not None:
        name += f"-d{data_seed}"
    return name + (f"-{tag}" if tag else "")


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    task: str
    model: str
    method: str
    seed: int
    data_seed: int = 0
    k_shot: int | None = None
    tag: str = ""

    @property
    def name(self) -> str:
        return run_name(self.task, self.model, self.method, self.seed, self.data_seed, self.k_shot, self.tag)


def record_cell(rec: dict) -> Cell:
    """The grid cell a results record belongs to (records written before k-shot grids: data seed 0, full data)."""
    return Cell(rec["task"], rec["model"], rec["method"], rec["seed"], rec.get("data_seed", 0), rec.get("k_shot"),
                rec.get("tag", ""))  # fmt: skip


def grid(cfg: "ReproduceConfig") -> list[Cell]:
    methods = ABLATION_METHODS if cfg.ablation else cfg.methods
    ks = cfg.k_shots or (None,)
    return [Cell(t, m, meth, s, d, k, cfg.tag) for t in cfg.tasks for k in ks for d in cfg.data_seeds
            for m in cfg.models for meth in methods for s in cfg.seeds]  # fmt: skip


def write_tables(cfg: ReproduceConfig, results: list[dict]) -> Path:
    """Table 1 / Table 2 (mean ± std) of a full-data grid; for a few-shot or tagged grid, the paired
    differences with Prompt v2 (``kshot.md``)."""
    results = [normalize(r) for r in results]
    if cfg.k_shots or cfg.tag:
        path = cfg.out / "kshot.md"
        few = [r for r in results if r["k_shot"] is not None or r["tag"]]
        text = "\n".join(few_shot_sections(few))
    else:
        methods = ABLATION_METHODS if cfg.ablation else cfg.methods
        names = ABLATION_NAMES if cfg.ablation else METHOD_NAMES
        path = cfg.out / ("table2.md" if cfg.ablation else "table1.md")
        full = [r for r in results if r["k_shot"] is None and not r["tag"]]
        text = table(full, cfg.tasks, cfg.models, methods, names)
    atomic_write(path, text)
    return path


def run_cell(cfg: ReproduceConfig, cell: Cell) -> dict:
    """Train and evaluate one cell; its record. With ``cfg.phase2_lrs``: one run per phase-2 learning
    rate, the record of the best on D_RL (the first of equals, in the order given) with every point
    under ``phase2_lr_grid``."""
    if not cfg.phase2_lrs or not METHODS[cell.method].trains:
        return _run_one(cfg, cell, cfg.agent, cfg.out / "runs" / cell.name)
    t0, points = time.perf_counter(), []
    for lr in cfg.phase2_lrs:
        agent = dataclasses.replace(cfg.agent, phase2_lr=lr)
        points.append(_run_one(cfg, cell, agent, cfg.out / "runs" / f"{cell.name}-lr2_{lr:g}"))
    best = max(points, key=lambda r: r["drl_acc"])  # max keeps the first of equals
    grid = [{k: r.get(k) for k in ("drl_acc", "test_acc", "phase1_drl_acc", "phase1_test_acc")}
            | {"phase2_lr": r["config"]["agent"]["phase2_lr"]} for r in points]  # fmt: skip
    log.info("%s: phase-2 lr %g chosen on D_RL (%s)", cell.name, best["config"]["agent"]["phase2_lr"],
             ", ".join(f"{p['phase2_lr']:g}: {p['drl_acc']:.4f}" for p in grid))  # fmt: skip
    return {**best, "phase2_lr_grid": grid, "wall_seconds": time.perf_counter() - t0}


def _run_one(cfg: ReproduceConfig, cell: Cell, agent: CRLConfig, out: Path) -> dict:
    """One training run of ``cell`` with ``agent`` into ``out`` (HandCraft on a model without an LM head: skipped)."""
    setup = SetupConfig(task=cell.task, model=cell.model, seed=cell.seed, data_seed=cell.data_seed, k_shot=cell.k_shot,
                        data_dir=cfg.data_dir, max_train=cfg.max_train.get(cell.task),
                        max_test=cfg.max_test.get(cell.task))  # fmt: skip
    tc = TrainConfig(setup=setup, method=cell.method, out=out, overwrite=True, device=cfg.device,
                     agent=dataclasses.replace(agent))  # fmt: skip
    t0 = time.perf_counter()
    try:
        rec = run(tc, progress=cfg.progress)
    except ModelError as e:
        if cell.method not in ("handcraft", "handcraft-cloze"):
            raise
        # HandCraft needs an MLM/LM head (MiniLM has none): record the cell as not applicable.
        log.warning("skipping %s: %s", cell.name, e)
        rec = stamp({"task": cell.task, "model": cell.model, "method": cell.method, "seed": cell.seed,
                     "test_acc": None, "skipped": str(e)}, kind="train")  # fmt: skip
    # run() stamped the record (schema, versions, the machine of the process that trained it)
    rec.update(data_seed=cell.data_seed, k_shot=cell.k_shot, tag=cell.tag, wall_seconds=time.perf_counter() - t0)
    rec["config"] = {"max_train": setup.max_train, "max_test": setup.max_test, "setup": jsonable(tc.resolved_setup()),
                     "agent": dataclasses.asdict(tc.agent_config())}  # fmt: skip
    return rec


def _run_cell_pair(pair: tuple[ReproduceConfig, Cell]) -> dict:
    """One launcher cell (module level, so Ray can ship it to a worker)."""
    return run_cell(*pair)


def reproduce(cfg: ReproduceConfig) -> list[dict]:
    made = not cfg.out.exists()
    cfg.out.mkdir(parents=True, exist_ok=True)
    try:
        return _reproduce(cfg)
    except CRLPromptError:
        if made and not any(cfg.out.rglob("*.jsonl")):  # nothing was recorded: leave nothing behind
            shutil.rmtree(cfg.out, ignore_errors=True)
        raise


#: ReproduceConfig fields that say how a grid runs, not what it computes: never stored or compared
HOW = ("progress", "launcher", "ray_address", "cpus_per_run", "overwrite")
GRID_CONFIG = "config.json"


def _stored_grids(out: Path) -> list[dict]:
    """The grid settings ``OUT/config.json`` holds (none for a directory written before it was kept)."""
    path = out / GRID_CONFIG
    if not path.is_file():
        return []
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is unreadable ({type(e).__name__}); delete it to resume without the check of "
                          "settings, or pass --overwrite to start afresh") from None  # fmt: skip
    grids = stored.get("grids") if isinstance(stored, dict) else None
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise ConfigError(f"{path} is not a reproduce grid's config (no list under 'grids'); pass another --out, "
                          "or --overwrite to start afresh")  # fmt: skip
    return grids


def _groups(grid_cfg: dict) -> set[tuple]:
    """The (task, k, tag) whose runs must share settings: the same agent on every model, method and seed."""
    return {(t, k, grid_cfg.get("tag", "")) for t in grid_cfg.get("tasks", ()) for k in grid_cfg.get("k_shots") or (None,)}


def _group_of(rec: dict) -> tuple:
    """The (task, k, tag) of a results record."""
    cell = record_cell(rec)
    return cell.task, cell.k_shot, cell.tag


def _settings(grid_cfg: dict, task: str) -> dict:
    """What a rerun of ``task`` must repeat: the agent, the phase-2 rates and the task's data caps."""
    return {"agent": grid_cfg.get("agent", {}), "phase2_lrs": grid_cfg.get("phase2_lrs", []),
            "max_train": (grid_cfg.get("max_train") or {}).get(task), "max_test": (grid_cfg.get("max_test") or {}).get(task)}  # fmt: skip


def _check_rerun(cfg: ReproduceConfig, mine: dict, stored: list[dict]) -> None:
    """Refuse a rerun whose settings differ from those the same (task, k, tag) were run with: one line naming
    the differing fields and the two ways forward. Fields added to the code since a grid was stored pass."""
    for old in stored:
        for task, k, tag in sorted(_groups(old) & _groups(mine), key=str):
            a, b = _settings(old, task), _settings(mine, task)
            a["agent"] = {f: v for f, v in a["agent"].items() if f in b["agent"]}
            b["agent"] = {f: v for f, v in b["agent"].items() if f in a["agent"]}
            diff = _dict_diff(a, b)
            if diff:
                what = f"task {task}" + (f" k={k}" if k is not None else "") + (f" tag {tag!r}" if tag else "")
                raise ConfigError(f"{cfg.out} holds runs of {what} made with other settings ({diff}); pass --overwrite "
                                  "to delete them and start afresh, or choose another --out")  # fmt: skip


def _start_afresh(cfg: ReproduceConfig, groups: set[tuple], stored: list[dict], results_path: Path) -> list[dict]:
    """``--overwrite``: drop the records (in ``results_path``) and run directories of the (task, k, tag)
    ``groups`` from OUT; returns the stored settings of the other groups, which stay."""
    lines = results_path.read_text().splitlines(keepends=True) if results_path.is_file() else []
    kept = []
    for line in lines:
        try:
            rec = json.loads(line)
            group = _group_of(rec)
        except (ValueError, KeyError, TypeError, AttributeError):  # a torn or foreign line: not this grid's to drop
            kept.append(line)
            continue
        if group not in groups:
            kept.append(line)
            continue
        cell = record_cell(rec)
        for run_dir in (cfg.out / "runs").glob(f"{cell.name}*"):  # the run, and its phase-2 lr points
            if run_dir.name == cell.name or run_dir.name.startswith(f"{cell.name}-lr2_"):
                shutil.rmtree(run_dir, ignore_errors=True)
    if len(kept) < len(lines):
        atomic_write(results_path, "".join(kept))
    return [g for g in stored if not _groups(g) & groups]


def _reproduce(cfg: ReproduceConfig) -> list[dict]:
    results_path = cfg.results or cfg.out / "results.jsonl"
    mine = json.loads(json.dumps({k: v for k, v in jsonable(cfg).items() if k not in HOW}, default=str))
    try:
        stored = _stored_grids(cfg.out)
    except ConfigError:
        if not cfg.overwrite:
            raise
        stored = []  # --overwrite: an unreadable config.json is replaced
    if not cfg.overwrite:
        _check_rerun(cfg, mine, stored)
    results = read_records(results_path)  # records of an older schema are refused, naming the migration
    results_path.parent.mkdir(parents=True, exist_ok=True)
    if cfg.overwrite:
        groups = _groups(mine)
        results = [r for r in results if _group_of(r) not in groups]
        if is_main():
            stored = _start_afresh(cfg, groups, stored, results_path)
    if is_main() and mine not in stored:
        atomic_write(cfg.out / GRID_CONFIG, json.dumps({"grids": [*stored, mine]}, indent=2) + "\n")
    done, done_before = {record_cell(r) for r in results}, len(results)  # the file may hold other grids' records too
    cells = grid(cfg)
    todo = [c for c in cells if c not in done]
    log.info("%d runs in the grid, %d already done, %d to go", len(cells), len(cells) - len(todo), len(todo))

    def finished(cell: Cell, rec: dict) -> None:  # in this process, as each run ends (any launcher)
        results.append(rec)
        log.info("[%d/%d] %s: test accuracy %s", len(results) - done_before, len(todo), cell.name,
                 rec.get("test_acc"))  # fmt: skip
        if is_main():
            append_record(results_path, rec, kind="train")
            write_tables(cfg, results)

    run_cells([(cfg, c) for c in todo], _run_cell_pair, lambda pair, rec: finished(pair[1], rec),
              launcher=cfg.launcher, address=cfg.ray_address, cpus_per_cell=cfg.cpus_per_run)  # fmt: skip
    if is_main():
        path = write_tables(cfg, results)
        print(path.read_text())
    return results


def main(argv: list[str] | None = None):
    """``crl-prompt reproduce``: bad settings are one line on stderr and exit code 2, nothing written."""
    import sys

    try:
        cfg = parse_config(ReproduceConfig, argv, __doc__.split("\n\n")[0], "crl-prompt reproduce")
        setup_logging()
        return reproduce(cfg)
    except CRLPromptError as e:
        print(f"crl-prompt reproduce: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
