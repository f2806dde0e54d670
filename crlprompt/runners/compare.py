"""Compare RL algorithms on a registered soft-prompt env at equal prompt-evaluation budgets.

    python -m crlprompt.runners.compare --env-id CRLPrompt/Tiny-v0 --algos random,es,ppo \\
        --budget 2000 --seeds 0 --out runs/compare-tiny
    crl-prompt compare --env-id CRLPrompt/TREC-MiniLM-Proj64-v0 --budget 256 \\
        --env-kwargs '{"reward_batch_size": 64}' --out runs/compare-trec

Each (algorithm, seed) run gets a fresh env around one shared frozen model (built once), spends
``budget`` prompt evaluations, and then its best and final prompts are re-scored on all of D_RL
and on the test split. Writes ``OUT/results.jsonl`` (one record per run), ``OUT/table.md``,
``OUT/curves.png`` (best-so-far env reward against evaluations), ``OUT/config.json`` and, with
``save_prompts``, a checkpoint per run under ``OUT/runs/ALGO-sSEED/`` (``crl-prompt eval`` reads it).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import mean_std, parse_config, setup_logging

log = logging.getLogger(__name__)

ALGOS = ("random", "es", "ppo")


@dataclass
class CompareConfig:
    """Run RL algorithms side by side on one env id, each with the same evaluation budget."""

    env_id: str = "CRLPrompt/Tiny-v0"
    """A registered id (``import crlprompt`` registers ``CRLPrompt/...``; see ``crlprompt.env_ids()``)."""
    algos: str = "random,es,ppo"
    """Comma-separated algorithms: random (random search), es (OpenAI-ES bandit), ppo (SB3 PPO)."""
    budget: int = 2000
    """Prompt evaluations per run (env steps for PPO, sampled actions for ES and random search)."""
    seeds: str = "0"
    """Comma-separated seeds, e.g. ``0,1,2``."""
    out: Path = Path("runs/compare")
    """Output directory (results.jsonl, table.md, curves.png); existing files in it are replaced."""
    env_kwargs: str = "{}"
    """JSON object of ``gym.make`` overrides, e.g. ``{"reward_batch_size": 64, "sigma": 0.1}``."""
    algo_kwargs: str = "{}"
    """JSON object of agent arguments per algorithm, e.g. ``{"es": {"lr": 0.05}, "ppo": {"n_steps": 32}}``."""
    num_envs: int = 32
    """K: actions scored per batched forward by random search and ES (their vector env's size)."""
    ppo_projection_dim: int | None = None
    """Action dimension for PPO's env; by default 64 when the env's action has more than 1024
    dimensions (PPO on a D-dimensional Gaussian blows up), else the env's own."""
    save_prompts: bool = True
    """Write each run's best prompt as a checkpoint under ``OUT/runs/``."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        algos = self.algo_list
        bad = [a for a in algos if a not in ALGOS]
        if bad or not algos:
            raise ConfigError(f"unknown algorithm(s) {bad or algos}; choose from {ALGOS}, e.g. --algos random,es,ppo")
        if self.budget < 1:
            raise ConfigError(f"budget must be >= 1 prompt evaluation, got {self.budget}")
        if self.num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {self.num_envs}")
        _ = self.seed_list  # validates
        for name in ("env_kwargs", "algo_kwargs"):
            value = self._json(name)
            if not isinstance(value, dict):
                # ValueError, not TypeError: bad user input, which the CLI reports as one line.
                raise ConfigError(f"--{name.replace('_', '-')} must be a JSON object, got {value!r}")  # noqa: TRY004
        unknown = set(self._json("algo_kwargs")) - set(ALGOS)
        if unknown:
            raise ConfigError(f"--algo-kwargs has keys {sorted(unknown)}; use algorithm names {ALGOS}")

    def _json(self, name: str) -> Any:
        try:
            return json.loads(getattr(self, name))
        except json.JSONDecodeError as e:
            raise ConfigError(f"--{name.replace('_', '-')} is not valid JSON ({e}): {getattr(self, name)!r}") from None

    @property
    def algo_list(self) -> list[str]:
        return [a.strip() for a in self.algos.split(",") if a.strip()]

    @property
    def seed_list(self) -> list[int]:
        try:
            return [int(s) for s in str(self.seeds).split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"seeds must be comma-separated integers, got {self.seeds!r}") from None


def make_agent(algo: str, env_id: str, env_kwargs: dict, cfg: CompareConfig, seed: int, action_dim: int):
    """(agent, env) for one run; random search and ES get the batched vector env."""
    import gymnasium as gym

    from ..agents.es import ESAgent
    from ..agents.random_search import RandomSearch
    from ..agents.sb3 import MAX_PPO_ACTION_DIM, PPOPromptAgent

    kwargs = json.loads(cfg.algo_kwargs).get(algo, {})
    if algo == "ppo":
        proj = cfg.ppo_projection_dim
        if proj is None and action_dim > MAX_PPO_ACTION_DIM:
            proj = 64
            log.info("PPO gets a 64-dimensional projected action (the env's has %d dimensions)", action_dim)
        if proj is not None:
            env_kwargs = {**env_kwargs, "projection_dim": proj}
        env = gym.make(env_id, **env_kwargs)
        return PPOPromptAgent(env, seed=seed, **kwargs), env
    env = gym.make_vec(env_id, num_envs=cfg.num_envs, vectorization_mode="vector_entry_point", **env_kwargs)
    if algo == "es":
        return ESAgent(env, seed=seed, **kwargs), env
    return RandomSearch(env, seed=seed, **kwargs), env


def run_compare(cfg: CompareConfig) -> list[dict]:
    """Run every (algorithm, seed); write results.jsonl, table.md, curves.png; return the records."""
    import gymnasium as gym
    import torch
    from tqdm.auto import tqdm

    import crlprompt  # noqa: F401 - registers the ids

    from ..agents.base import search_of
    from ..scoring import accuracy

    env_kwargs = json.loads(cfg.env_kwargs)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))

    t0 = time.perf_counter()
    base_env = gym.make(cfg.env_id, **env_kwargs)  # builds the frozen model and data once
    base = search_of(base_env)
    setup, action_dim = base.setup, base.action_dim
    log.info("built %s in %.1fs (D=%d, action dim %d)", cfg.env_id, time.perf_counter() - t0, base.dim, action_dim)
    pm = setup.model

    def acc(prompt, data) -> float:
        return accuracy(pm, data, theta=torch.as_tensor(prompt, dtype=torch.float32))

    center = base.center.detach().cpu().numpy()
    center_rl, center_test = acc(center, setup.rl), acc(center, setup.test)

    if cfg.budget % cfg.num_envs and {"random", "es"} & set(cfg.algo_list):
        log.warning(
            "budget %d is not a multiple of num_envs=%d: random search and ES spend whole batches (%d evaluations)",
            cfg.budget, cfg.num_envs, cfg.budget // cfg.num_envs * cfg.num_envs,
        )  # fmt: skip
    runs = [(a, s) for a in cfg.algo_list for s in cfg.seed_list]
    records = []
    results_file = out / "results.jsonl"
    results_file.write_text("")
    bar = tqdm(total=len(runs) * cfg.budget, unit="eval", disable=not cfg.progress, file=sys.stderr)
    for algo, seed in runs:
        bar.set_description(f"{algo} seed {seed}")
        agent, env = make_agent(algo, cfg.env_id, {**env_kwargs, "setup": setup}, cfg, seed, action_dim)
        done = [0]

        def progress(evals: int, best: float, done=done) -> None:
            bar.update(evals - done[0])
            bar.set_postfix(best=f"{best:.3f}", refresh=False)
            done[0] = evals

        result = agent.learn(cfg.budget, callback=progress)
        bar.update(cfg.budget - done[0])  # a run may stop short of the budget (whole batches only)
        rec = {
            "env_id": cfg.env_id, "algo": algo, "seed": seed, "budget": cfg.budget, "evals": result.evals,
            "seconds": result.seconds, "evals_per_s": result.evals_per_second,
            "action_dim": int(search_of(env).action_dim), "reward": search_of(env).reward_kind,
            "center_rl_acc": center_rl, "center_test_acc": center_test,
            "best_env_reward": result.best_reward, "final_env_reward": result.final_reward,
            "best_rl_acc": acc(result.best_prompt, setup.rl), "final_rl_acc": acc(result.final_prompt, setup.rl),
            "best_test_acc": acc(result.best_prompt, setup.test), "final_test_acc": acc(result.final_prompt, setup.test),
            "history": result.history, "env_kwargs": env_kwargs, "algo_kwargs": json.loads(cfg.algo_kwargs).get(algo, {}),
        }  # fmt: skip
        if cfg.save_prompts:
            rec["checkpoint"] = str(result.save(out / "runs" / f"{algo}-s{seed}", env, meta={"seed": seed}).parent)
        records.append(rec)
        with results_file.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        env.close()
    bar.close()
    base_env.close()
    (out / "table.md").write_text(markdown_table(records))
    plot_curves(records, out / "curves.png")
    return records


def markdown_table(records: list[dict]) -> str:
    """One row per algorithm (mean ± std over seeds): accuracies on full D_RL and test, speed."""
    if not records:
        return ""

    def acc(x: float) -> str:
        return f"{x:.3f}"

    def col(rs: list[dict], key: str, fmt: str = "{:.3f}") -> str:
        return mean_std([r[key] for r in rs], fmt)

    head = ("| algo | seeds | action dim | evals | center acc (D_RL / test) | best D_RL acc | final D_RL acc "
            "| best test acc | final test acc | evals/s | seconds |")  # fmt: skip
    lines = [
        (f"Env `{records[0]['env_id']}`, budget {records[0]['budget']} prompt evaluations per run. "
         "Accuracies re-scored on all of D_RL and on the test split."),
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]  # fmt: skip
    for algo in dict.fromkeys(r["algo"] for r in records):
        rs = [r for r in records if r["algo"] == algo]
        lines.append(
            f"| {algo} | {len(rs)} | {rs[0]['action_dim']} | {rs[0]['evals']} "
            f"| {acc(rs[0]['center_rl_acc'])} / {acc(rs[0]['center_test_acc'])} "
            f"| {col(rs, 'best_rl_acc')} | {col(rs, 'final_rl_acc')} | {col(rs, 'best_test_acc')} "
            f"| {col(rs, 'final_test_acc')} | {col(rs, 'evals_per_s', '{:.0f}')} "
            f"| {col(rs, 'seconds', '{:.1f}')} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(records: list[dict], path: Path) -> None:
    """Best-so-far env reward against evaluations: one line per algorithm (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in dict.fromkeys(r["algo"] for r in records):
        rs = [r for r in records if r["algo"] == algo and r["history"]]
        if not rs:
            continue
        grid = np.unique(np.concatenate([[e for e, _ in r["history"]] for r in rs]))
        ys = []
        for r in rs:
            ev, best = np.array(r["history"], dtype=float).T
            i = np.searchsorted(ev, grid, side="right") - 1  # step function: last value at or before
            ys.append(np.where(i >= 0, best[np.clip(i, 0, None)], np.nan))
        ax.plot(
            grid,
            np.nanmean(np.array(ys), 0),
            label=f"{algo} ({len(rs)} seed{'s' * (len(rs) > 1)})",
            drawstyle="steps-post",
        )
    reward = records[0].get("reward", "accuracy")
    if reward == "accuracy":  # the same units as the curves
        ax.axhline(records[0]["center_rl_acc"], color="gray", ls="--", lw=1, label="center (D_RL acc)")
    ax.set_xlabel("prompt evaluations")
    ax.set_ylabel(f"best-so-far env reward ({reward})")
    ax.set_title(records[0]["env_id"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> CompareConfig:
    return parse_config(CompareConfig, argv, __doc__.split("\n\n")[0])


def main(argv: list[str] | None = None) -> list[dict]:
    """``python -m crlprompt.runners.compare [flags]`` / ``crl-prompt compare [flags]``."""
    cfg = parse_args(argv)
    setup_logging()
    records = run_compare(cfg)
    print((Path(cfg.out) / "table.md").read_text())
    print(f"wrote {cfg.out}/results.jsonl, table.md, curves.png")
    return records


if __name__ == "__main__":
    main()
