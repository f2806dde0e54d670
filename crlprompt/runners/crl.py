"""Reproduce the paper's tables: tasks × models × methods × seeds -> results.jsonl + Markdown.

    python -m crlprompt.runners.crl --tasks trec sst2 agnews --models minilm smollm2 \\
        --methods handcraft ptv1 ptv2 crl --seeds 0 1 2 --out runs/paper

Every finished run appends one JSON line to ``OUT/results.jsonl`` and keeps its run directory
``OUT/runs/<task>-<model>-<method>-s<seed>/`` (config, metrics, TensorBoard, prompt, PEFT
adapter). Rerunning the same command skips the runs already in ``results.jsonl`` (resume after
an interruption); a run that was cut off is redone from its start. ``--ablation`` runs the
Table 2 rows (v2 only / + contrastive / + RL / full) instead. The tables (mean ± std over seeds)
are rewritten after every run to ``OUT/table1.md`` / ``OUT/table2.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..agents.crl import CRLConfig
from ..build import SetupConfig
from ..distributed import is_main
from ..errors import ConfigError, ModelError
from .common import append_jsonl, load_results, mean_std, parse_config, setup_logging
from .config import METHODS, TrainConfig
from .train import run

log = logging.getLogger("crlprompt")

TABLE1_METHODS = ("handcraft", "ptv1", "ptv2", "crl")
ABLATION_METHODS = ("ptv2", "crl-contrast", "crl-rl", "crl")
METHOD_NAMES = {name: m.title for name, m in METHODS.items()}
ABLATION_NAMES = {"ptv2": "v2 only", "crl-contrast": "+ contrastive", "crl-rl": "+ RL", "crl": "full (CRL-Prompt)"}
TASK_NAMES = {"agnews": "AG News", "trec": "TREC", "sst2": "SST-2", "empathetic_dialogues": "EmpDial"}


@dataclass
class ReproduceConfig:
    """The reproduction grid; every run uses the agent hyperparameters below."""

    tasks: tuple[str, ...] = ("trec", "sst2", "agnews")
    """Tasks to run."""
    models: tuple[str, ...] = ("minilm", "smollm2")
    """Models to run."""
    methods: tuple[str, ...] = TABLE1_METHODS
    """Methods (handcraft ptv1 ptv2 crl crl-contrast crl-rl); --ablation overrides them."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds per cell (the table reports mean ± std over them)."""
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
    progress: bool = True
    """Show a progress bar per run."""
    agent: CRLConfig = field(default_factory=CRLConfig)
    """Hyperparameters shared by every run."""

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"unknown methods {bad}; choose from {tuple(METHODS)}")


def run_name(task: str, model: str, method: str, seed: int) -> str:
    safe_model = model.replace("/", "_")
    return f"{task}-{safe_model}-{method}-s{seed}"


def table(results: list[dict], tasks, models, methods, names: dict[str, str], key: str = "test_acc") -> str:
    """Markdown in the paper's layout: rows = methods, columns = task × model, mean ± std."""
    cols = [(t, m) for m in models for t in tasks]
    head = "| Method | " + " | ".join(f"{TASK_NAMES.get(t, t)} ({m})" for t, m in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for meth in methods:
        row = [names.get(meth, meth)]
        for t, m in cols:
            recs = [r for r in results if (r["task"], r["model"], r["method"]) == (t, m, meth)]
            vals = [r[key] for r in recs if r.get(key) is not None]
            row.append("n/a" if recs and not vals else mean_std(vals))
        lines.append("| " + " | ".join(row) + " |")
    n = sorted({r["seed"] for r in results})
    lines.append("")
    lines.append(f"Test accuracy, mean ± sample std over seeds {n}; n/a = not applicable (HandCraft needs an LM head).")
    return "\n".join(lines) + "\n"


def write_tables(cfg: ReproduceConfig, results: list[dict]) -> Path:
    methods = ABLATION_METHODS if cfg.ablation else cfg.methods
    names = ABLATION_NAMES if cfg.ablation else METHOD_NAMES
    path = cfg.out / ("table2.md" if cfg.ablation else "table1.md")
    text = table(results, cfg.tasks, cfg.models, methods, names)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def reproduce(cfg: ReproduceConfig) -> list[dict]:
    methods = ABLATION_METHODS if cfg.ablation else cfg.methods
    cfg.out.mkdir(parents=True, exist_ok=True)
    results_path = cfg.out / "results.jsonl"
    results = load_results(results_path)
    done = {(r["task"], r["model"], r["method"], r["seed"]) for r in results}
    grid = [(t, m, meth, s) for t in cfg.tasks for m in cfg.models for meth in methods for s in cfg.seeds]
    todo = [g for g in grid if g not in done]
    log.info("%d runs in the grid, %d already done, %d to go", len(grid), len(grid) - len(todo), len(todo))
    for i, (task, model, method, seed) in enumerate(todo, 1):
        log.info("[%d/%d] %s", i, len(todo), run_name(task, model, method, seed))
        setup = SetupConfig(task=task, model=model, seed=seed, data_dir=cfg.data_dir,
                            max_train=cfg.max_train.get(task), max_test=cfg.max_test.get(task))  # fmt: skip
        tc = TrainConfig(setup=setup, method=method, out=cfg.out / "runs" / run_name(task, model, method, seed),
                         overwrite=True, device=cfg.device, agent=dataclasses.replace(cfg.agent))  # fmt: skip
        t0 = time.perf_counter()
        try:
            rec = run(tc, progress=cfg.progress)
        except ModelError as e:
            if method != "handcraft":
                raise
            # HandCraft needs an MLM/LM head (MiniLM has none): record the cell as not applicable.
            log.warning("skipping %s: %s", run_name(task, model, method, seed), e)
            rec = {"task": task, "model": model, "method": method, "seed": seed, "test_acc": None, "skipped": str(e)}
        rec["wall_seconds"] = time.perf_counter() - t0
        rec["config"] = {"max_train": setup.max_train, "max_test": setup.max_test, "agent": dataclasses.asdict(tc.agent_config())}
        results.append(rec)
        if is_main():
            append_jsonl(results_path, rec)
            write_tables(cfg, results)
    if is_main():
        path = write_tables(cfg, results)
        print(path.read_text())
    return results


def main(argv: list[str] | None = None):
    cfg = parse_config(ReproduceConfig, argv, __doc__.split("\n\n")[0])
    setup_logging()
    return reproduce(cfg)


if __name__ == "__main__":
    main()
