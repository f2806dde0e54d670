"""Compare search algorithms on a registered soft-prompt env at equal prompt-evaluation budgets.

    crl-prompt compare --env-id CRLPrompt/SST2-MiniLM-16Shot-v0 --algos random,es,cma,ppo \\
        --budget 8000 --seeds 0,1,2,3,4 --out runs/compare-sst2
    python -m crlprompt.runners.compare --env-id CRLPrompt/Tiny-v0 --algos random,cma --budget 400 \\
        --data-seeds 13,21,42 --out runs/compare-tiny
    python -m crlprompt.runners.compare --table results/search      # tables of every run under a dir

Each (algorithm, seed, data seed) run gets a fresh env around one frozen model and data split
(built once per data seed), spends ``budget`` prompt evaluations and returns its best and final
prompts; the one with the higher D_RL accuracy is the run's *selected* prompt, scored on the test
split. Beside the algorithms, per data seed: the start prompt, HandCraft (the template and
verbalizer without a prompt, where the head is a verbalizer) and the gradient ceiling (prompt
tuning by backprop on the same train rows, selected on the same D_RL rows: CRLAgent with
β = γ = 0 from the same start).

Writes ``OUT/results.jsonl`` (one record per run, with versions, commit and machine),
``OUT/baselines.jsonl``, ``OUT/table.md``, ``OUT/curves.png`` (best-so-far env reward, mean and
band over runs), ``OUT/config.json`` and, with ``save_prompts``, a checkpoint per run under
``OUT/runs/`` (``crl-prompt eval`` reads it). Rerunning the same command resumes: runs already in
the records are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..agents import registry
from ..atomic import atomic_write
from ..errors import ConfigError
from .common import check_out_dir, jsonable, machine, parse_config, setup_logging, versions
from .baselines import GRADIENT_EPOCHS, GRADIENT_LR
from .launch import GridOptions
from .records import append_record, read_records

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- config


@dataclass
class CompareConfig(GridOptions):
    """Run search algorithms side by side on one env id, each with the same evaluation budget."""

    env_id: str = "CRLPrompt/Tiny-v0"
    """A registered id (``import crlprompt`` registers ``CRLPrompt/...``; see ``crlprompt.env_ids()``)."""
    algos: tuple[str, ...] = ("random", "es", "cma", "ppo")
    """Names of the agent registry (listed above; ``crlprompt.agents.registry``, where ``register_agent``
    adds one), e.g. ``--algos random es cma`` (``random,es,cma`` is read the same)."""
    budget: int = 2000
    """Prompt evaluations per run (env steps for PPO, sampled actions for the others)."""
    out: Path = Path("runs/compare")
    """Output directory; a rerun resumes the runs it holds (see ``overwrite``)."""
    env_kwargs: str = "{}"
    """JSON object of ``gym.make`` overrides, e.g. ``{"reward": "hinge", "sigma": 0.5}``."""
    algo_kwargs: str = "{}"
    """JSON object of agent arguments per algorithm, e.g. ``{"es": {"lr": 0.05}, "cma": {"popsize": 40}}``."""
    num_envs: int = 20
    """K: prompts scored per batched forward (random search's batch, ES's 2·pop, CMA's popsize)."""
    baselines: bool = True
    """Also score the floors and the start prompt, and train the gradient ceiling, per data seed."""
    grad_epochs: float = GRADIENT_EPOCHS
    """Epochs of the gradient ceiling (prompt tuning by backprop; the best epoch on D_RL is kept)."""
    grad_lr: float = GRADIENT_LR
    """Learning rate of the gradient ceiling."""
    save_prompts: bool = True
    """Write each run's selected prompt as a run directory under ``OUT/runs/``."""
    overwrite: bool = False
    """Start afresh in an ``out`` that holds records of other settings (they are deleted)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.algos = tuple(a for v in ([self.algos] if isinstance(self.algos, str) else self.algos)
                           for a in str(v).replace(",", " ").split())  # fmt: skip
        algos, known = self.algo_list, registry.names(None)
        bad = [a for a in algos if a not in known]
        if bad or not algos:
            raise ConfigError(f"unknown algorithm(s) {bad or algos}; choose from {', '.join(known)}, e.g. --algos random,es,cma,ppo")
        for name in ("budget", "num_envs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        if not self.grad_epochs > 0 or not self.grad_lr > 0:
            raise ConfigError(f"grad_epochs and grad_lr must be > 0, got {self.grad_epochs!r}, {self.grad_lr!r}")
        for name in ("env_kwargs", "algo_kwargs"):
            value = self._json(name)
            if not isinstance(value, dict):
                raise ConfigError(f"--{name.replace('_', '-')} must be a JSON object, got {value!r}")  # noqa: TRY004
        kw = self._json("algo_kwargs")
        unknown = set(kw) - set(known)
        if unknown:
            raise ConfigError(f"--algo-kwargs has keys {sorted(unknown)}; use algorithm names {', '.join(known)}")

    def _json(self, name: str) -> Any:
        try:
            return json.loads(getattr(self, name))
        except json.JSONDecodeError as e:
            raise ConfigError(f"--{name.replace('_', '-')} is not valid JSON ({e}): {getattr(self, name)!r}") from None

    @property
    def algo_list(self) -> list[str]:
        return list(self.algos)

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds)

    @property
    def data_seed_list(self) -> list[int | None]:
        return list(self.data_seeds) or [None]

    def identity(self) -> dict:
        """The settings every record of one ``out`` must share (algos and seeds may grow)."""
        keys = ("env_id", "budget", "env_kwargs", "algo_kwargs", "num_envs", "grad_epochs", "grad_lr")
        d = {k: getattr(self, k) for k in keys}
        d["env_kwargs"], d["algo_kwargs"] = self._json("env_kwargs"), self._json("algo_kwargs")
        return d


# ----------------------------------------------------------------------------- running


def _env_options(env_id: str) -> dict:
    import gymnasium as gym

    import crlprompt

    try:
        return dict(gym.spec(env_id).kwargs)
    except gym.error.Error:
        raise ConfigError(f"unknown env id {env_id!r}; registered ids: {', '.join(crlprompt.env_ids())}") from None


def _open_out(cfg: CompareConfig) -> tuple[list[dict], list[dict]]:
    """Records already in ``cfg.out`` (to resume), after checking that they come from the same
    settings; with ``overwrite`` none (the files are deleted once the preflight has passed)."""
    out = Path(cfg.out)
    stored = out / "config.json"
    if cfg.overwrite:
        return [], []
    if stored.exists():
        try:
            saved = json.loads(stored.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{stored} is unreadable ({type(e).__name__}: {e}), so this rerun's settings cannot be "
                              "checked against it; pass --overwrite to replace the run, or another --out") from None  # fmt: skip
        if not isinstance(saved, dict):
            raise ConfigError(f"{stored} is not a compare run's config (not a JSON object); pass --overwrite to "
                              "replace the run, or another --out")  # fmt: skip
        old = CompareConfig(**{k: v for k, v in saved.items() if k in _field_names()})
        diff = [k for k, v in cfg.identity().items() if old.identity()[k] != v]
        if diff:
            raise ConfigError(f"{out} holds a compare run with other settings ({', '.join(diff)} differ); "
                              "pass --overwrite to replace it, or another --out")  # fmt: skip
    return read_records(out / "results.jsonl", "search"), read_records(out / "baselines.jsonl", "baseline")


def _field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(CompareConfig)}


def _key(r: dict) -> tuple:
    return (r["algo"], r["seed"], r["data_seed"])


def run_compare(cfg: CompareConfig) -> list[dict]:
    """Run every (algorithm, seed, data seed) not yet in ``cfg.out``; return all its run records."""
    import torch
    from tqdm.auto import tqdm

    from ..agents.base import search_of
    from ..envs import EnvConfig, make_search
    from ..scoring import accuracy
    from .baselines import baselines
    from .compare_cells import remote_cell, run_one
    from .compare_report import markdown_table, plot_curves
    from .compare_text import TEXT_BASELINES, build_text_search, is_text_id, run_text_one, text_baselines
    from .launch import run_cells

    check_out_dir(cfg.out)  # a file, or under a file or an unwritable directory: refused before anything loads
    options = _env_options(cfg.env_id)
    text = is_text_id(cfg.env_id)  # an instruction string per step (crlprompt.envs.text): its own rows and scoring
    if text and cfg.launcher == "ray":
        raise ConfigError("the text ids run with --launcher local (their agent LMs load in this process)")
    env_kwargs, algo_kwargs = json.loads(cfg.env_kwargs), json.loads(cfg.algo_kwargs)
    runs, base = _open_out(cfg)  # reads only: nothing is written before the preflight below passes
    # runs and baseline rows apart: a text comparison's `handcraft` is both an agent and a floor row
    done, done_base = {_key(r) for r in runs}, {_key(b) for b in base}
    plan = []  # (data seed override, its data seed, runs to do, baselines needed)
    for data_seed in cfg.data_seed_list:
        seed_kw = {} if data_seed is None else {"data_seed": data_seed}
        ds = _ds(options, seed_kw)
        todo = [(a, s) for a in cfg.algo_list for s in cfg.seed_list if (a, s, ds) not in done]
        last = TEXT_BASELINES[-1] if text else "gradient"
        need_base = cfg.baselines and (last, cfg.seed_list[0], ds) not in done_base  # the last baseline row
        if todo or need_base:
            plan.append((seed_kw, todo, need_base))
    out = Path(cfg.out)
    lm, bar, stamp, jobs = None, None, {"versions": versions()}, []

    def finished(job: tuple, rec: dict) -> None:  # in this process, as each run ends (any launcher)
        rec = append_record(out / "results.jsonl", rec, kind="search")
        runs.append(jsonable(rec))
        if bar is not None:
            bar.update(cfg.budget if cfg.launcher == "ray" else 0)

    try:
        for seed_kw, todo, need_base in plan:
            t0 = time.perf_counter()
            kwargs = {**options, **env_kwargs, **seed_kw}
            search = (build_text_search(kwargs, lm) if text else
                      make_search(EnvConfig.from_kwargs(**kwargs), lm=lm, require_test=True))  # fmt: skip
            lm, setup = search.setup.lm, search.setup
            ds = setup.config.data_seed
            space = "text prompts" if text else f"D={search.dim}, action dim {search.action_dim}"
            log.info("built %s (data seed %d) in %.1fs: %s, %d reward rows", cfg.env_id, ds,
                     time.perf_counter() - t0, space, len(search.data))  # fmt: skip
            run_kw = {**env_kwargs, **seed_kw, "setup": setup}
            if bar is None:
                _preflight(cfg, run_kw, algo_kwargs)  # bad settings fail here, before anything is written
                out.mkdir(parents=True, exist_ok=True)
                if cfg.overwrite:
                    for name in ("results.jsonl", "baselines.jsonl", "table.md", "curves.png"):
                        (out / name).unlink(missing_ok=True)
                atomic_write(out / "config.json", json.dumps(jsonable(asdict(cfg)), indent=2))  # a rerun reads it
                stamp["machine"] = machine(setup.model.device)
                total = sum(len(t) for _, t, _ in plan) * cfg.budget
                bar = tqdm(total=total, unit="eval", disable=not cfg.progress, file=sys.stderr)

            def acc(prompt, data) -> float:
                return accuracy(setup.model, data, theta=torch.as_tensor(prompt, dtype=torch.float32))

            common = {"env_id": cfg.env_id, "data_seed": ds, "env_kwargs": env_kwargs, **stamp}
            if need_base:  # a resumed run may hold some of them already
                bar.set_description(f"baselines, data {ds}")
                have = {a for a, s, d in done_base if s == cfg.seed_list[0] and d == ds}
                rows = (text_baselines(search, seed=cfg.seed_list[0], skip=have) if text else
                        baselines(search, seed=cfg.seed_list[0], grad_epochs=cfg.grad_epochs, grad_lr=cfg.grad_lr,
                                  skip=have))  # fmt: skip
                for rec in rows:
                    rec = {**common, **rec}
                    rec = append_record(out / "baselines.jsonl", rec, kind="baseline")
                    base.append(jsonable(rec))
            if not text:  # a text search has no center: every instruction is a whole action
                center = search.center.detach().cpu().numpy()
                common = {**common, "center_drl_acc": acc(center, setup.drl), "center_test_acc": acc(center, setup.test)}
            for algo, seed in todo:
                job = (cfg, registry.get_spec(algo).build, algo, seed, {**env_kwargs, **seed_kw}, algo_kwargs.get(algo, {}),
                       common)  # fmt: skip
                if cfg.launcher == "ray":  # each Ray task builds its own env; records are written as they end
                    jobs.append(({**options, **env_kwargs, **seed_kw}, job))
                    continue
                bar.set_description(f"{algo} seed {seed} data {ds}")
                finished(job, (run_text_one if text else run_one)(*job, setup=setup, bar=bar))
        if jobs:
            run_cells(jobs, remote_cell, lambda job, rec: finished(job[1], rec), launcher="ray",
                      address=cfg.ray_address, cpus_per_cell=cfg.cpus_per_run)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    if runs or base:
        atomic_write(out / "table.md", markdown_table(runs, base))
        if runs:
            plot_curves(runs, out / "curves.png", base)
    return runs


def _ds(options: dict, seed_kw: dict) -> int:
    """The data seed a run will use (the override, else the id's, else SetupConfig's default)."""
    from ..build import SetupConfig

    return seed_kw.get("data_seed", options.get("data_seed", SetupConfig().data_seed))


def _preflight(cfg: CompareConfig, run_kw: dict, algo_kwargs: dict) -> None:
    """Build every algorithm once and check that the budget covers one of its updates."""
    from .compare_text import check_space, is_text_id

    text = is_text_id(cfg.env_id)
    for algo in cfg.algo_list:
        check_space(algo, registry.get_spec(algo).space, text)
        agent, env = registry.get_spec(algo).build(cfg.env_id, run_kw, cfg.seed_list[0], num_envs=cfg.num_envs,
                                                   **algo_kwargs.get(algo, {}))  # fmt: skip
        env.close()
        per = getattr(agent, "evals_per_update", None)
        if not (isinstance(per, int) and per >= 1):
            raise ConfigError(f"{algo}'s agent {type(agent).__name__} has no evals_per_update >= 1; "
                              "subclass crlprompt.agents.SearchAgent (or AskTellAgent), which asks for it")  # fmt: skip
        if cfg.budget < per:
            raise ConfigError(f"budget {cfg.budget} is smaller than one update of {algo} ({per} evaluations); "
                              f"raise --budget to at least {per} or lower --num-envs")  # fmt: skip
        if cfg.budget % per:
            log.warning("budget %d is not a multiple of %s's %d evaluations per update: it spends %d",
                        cfg.budget, algo, per, cfg.budget // per * per)  # fmt: skip


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> CompareConfig:
    description = f"{__doc__.split(chr(10) * 2)[0]}\n\nalgorithms (--algos):\n{registry.help_text()}"
    return parse_config(CompareConfig, argv, description, "crl-prompt compare")


def main(argv: list[str] | None = None) -> list[dict]:
    """``python -m crlprompt.runners.compare [flags]`` / ``crl-prompt compare [flags]``;
    ``--table DIR`` prints (and writes DIR/table.md) the tables of every compare run under DIR;
    ``--algorithms`` prints the registry's algorithm table (the README's)."""
    from ..errors import CRLPromptError

    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--algorithms"]:
        print(algorithms_table(), end="")
        return []
    try:
        if args[:1] == ["--table"]:
            from .compare_report import table_main

            if len(args) != 2:
                raise SystemExit("usage: python -m crlprompt.runners.compare --table RESULTS_DIR")
            print(table_main(args[1]))
            return []
        cfg = parse_args(args)
        setup_logging()
        records = run_compare(cfg)
    except CRLPromptError as e:  # bad settings: one line, exit code 2 (nothing was written)
        print(f"crl-prompt compare: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print((Path(cfg.out) / "table.md").read_text())
    print(f"wrote {cfg.out}/results.jsonl, baselines.jsonl, table.md, curves.png")
    return records


def algorithms_table() -> str:
    """The README's algorithm table: CRLAgent's row (``crl-prompt train``), then the registry's."""
    train = ("(train)", "`CRLAgent`", "CRL-Prompt, Algorithm 1",
             "RL term selectable: faithful single sample (default), baseline, antithetic, ranks, `replay` "
             "(importance-weighted), `race`; contrastive term `paper` (clean positive, corrupted-prompt negatives, no "
             "same-class negatives; default), `supcon`, `noise` (the earlier form)")  # fmt: skip
    return registry.markdown_table([train])


if __name__ == "__main__":
    main()
