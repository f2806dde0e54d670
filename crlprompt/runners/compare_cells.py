"""One cell of ``crl-prompt compare``: an (algorithm, seed, data seed) search and its record.

``run_one`` runs in the driver around the shared model (``--launcher local``); ``remote_cell``
is the same cell as a Ray task, which builds its own env from the id and options first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def learn_cell(agent: Any, budget: int, bar: Any = None) -> Any:
    """``agent.learn(budget)`` with ``bar`` (a tqdm bar, or None) advanced per batch; the SearchResult."""
    seen = [0]

    def progress(event) -> None:  # a SearchEvent after each batch
        if bar is not None:
            bar.update(event.evals - seen[0])
            bar.set_postfix(best=f"{event.best_reward:.3f}", refresh=False)
        seen[0] = event.evals

    result = agent.learn(budget, callback=progress)
    if bar is not None:
        bar.update(budget - seen[0])  # a run may stop short of the budget (whole generations)
    return result


def cell_record(cfg: Any, algo: str, seed: int, env: Any, env_kwargs: dict, algo_kwargs: dict, common: dict,
                result: Any, acc: Callable[[Any, str], float], **fields: Any) -> dict:  # fmt: skip
    """A run's record: its best and final prompts re-scored with ``acc(prompt, "drl" | "test")``, the one
    better on D_RL selected, ``fields`` added (what differs per env kind); saves the selected prompt when
    ``cfg.save_prompts`` and closes ``env``."""
    best_rl, final_rl = acc(result.best_prompt, "drl"), acc(result.final_prompt, "drl")
    best_test, final_test = acc(result.best_prompt, "test"), acc(result.final_prompt, "test")
    which = "best" if best_rl >= final_rl else "final"
    rec = {
        **common, "algo": algo, "seed": seed, "budget": cfg.budget, "evals": result.evals,
        "seconds": result.seconds, "evals_per_s": result.evals_per_second, **fields,
        "best_env_reward": result.best_reward, "final_env_reward": result.final_reward,
        "best_drl_acc": best_rl, "final_drl_acc": final_rl, "best_test_acc": best_test,
        "final_test_acc": final_test, "selected": which,
        "selected_drl_acc": max(best_rl, final_rl), "selected_test_acc": best_test if which == "best" else final_test,
        "history": result.history, "algo_kwargs": algo_kwargs,
    }  # fmt: skip
    if cfg.save_prompts:
        ds = common["data_seed"]
        name = f"{algo}-s{seed}" + ("" if "data_seed" not in env_kwargs else f"-d{ds}")
        rec["checkpoint"] = str(result.save(Path(cfg.out) / "runs" / name, env, which=which, meta={"seed": seed}).parent)
    env.close()
    return rec


def run_one(cfg: Any, factory: Callable, algo: str, seed: int, env_kwargs: dict, algo_kwargs: dict, common: dict,
            *, setup: Any = None, bar: Any = None) -> dict:  # fmt: skip
    """Search with ``factory``'s agent (a registry spec's ``build``) for ``cfg.budget`` evaluations;
    re-score its prompts on D_RL and test, keep the one better on D_RL (the *selected* prompt) and
    return the run's record."""
    import torch

    from ..agents.base import search_of
    from ..scoring import accuracy

    run_kw = dict(env_kwargs) if setup is None else {**env_kwargs, "setup": setup}
    agent, env = factory(cfg.env_id, run_kw, seed, num_envs=cfg.num_envs, **algo_kwargs)
    s = search_of(env)
    setup = s.setup

    def acc(prompt, split: str) -> float:
        return accuracy(setup.model, getattr(setup, split), theta=torch.as_tensor(prompt, dtype=torch.float32))

    result = learn_cell(agent, cfg.budget, bar)
    return cell_record(cfg, algo, seed, env, env_kwargs, algo_kwargs, common, result, acc,
                       example_forwards=result.evals * (s.reward_batch_size or len(s.data)),
                       action_dim=int(s.action_dim), reward=s.reward_kind)  # fmt: skip


def remote_cell(cell: tuple[dict, tuple]) -> dict:
    """A cell as a Ray task: build the env from its options (the model loads in the worker), then run it."""
    from ..envs import EnvConfig, make_search

    options, job = cell
    search = make_search(EnvConfig.from_kwargs(**options), require_test=True)
    return run_one(*job, setup=search.setup)
