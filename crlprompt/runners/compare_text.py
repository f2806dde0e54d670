"""``crl-prompt compare`` on the text ids (``CRLPrompt/*-Text-v0``): what differs from the soft runs.

The loop, the resume, the records and the table are :mod:`crlprompt.runners.compare`'s; here are
the text ids' pieces. A run's best and final instructions are re-scored on D_RL and test with the
text env's :meth:`~crlprompt.envs.text.TextPromptSearch.evaluate`, the one better on D_RL is the
selected one, and the record holds both instructions verbatim and the wall clock split into agent
and target time. The baseline rows per data seed are the decoder floors (``handcraft``: the
template alone, ``icl``: in-context demonstrations); there is no start prompt, and the gradient
ceiling is the soft ids' (run ``compare`` on the matching ``-16Shot`` id to get it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, Callable

from ..errors import ConfigError

#: The baseline rows of a text comparison, in the order they are written (the last one ends the set).
TEXT_BASELINES = ("handcraft", "icl")


def entry_point(env_id: str) -> str:
    import gymnasium as gym

    try:
        return str(gym.spec(env_id).entry_point)
    except gym.error.Error:
        return ""


def is_text_id(env_id: str) -> bool:
    """Whether ``env_id`` is a text id (its entry point is the text env); a token twin is refused."""
    from ..registry import TEXT_ENTRY, TOKENS_ENTRY

    entry = entry_point(env_id)
    if entry == TOKENS_ENTRY:
        raise ConfigError(f"{env_id} is a token twin for array agents (SB3 and the like, used directly); compare the "
                          f"text agents on its text id {env_id.replace('-Tokens-', '-Text-')}")  # fmt: skip
    return entry == TEXT_ENTRY


def check_space(algo: str, space: str, text: bool) -> None:
    """Refuse a soft-prompt agent on a text id and a text agent on a soft id, naming the other kind."""
    from ..agents import registry

    want = "text" if text else "soft"
    if space != want:
        fit = [n for n, s in registry.REGISTRY.items() if s.space == want]
        raise ConfigError(f"{algo} searches {space} prompts; this env id takes {want}-prompt agents: {', '.join(fit)}")


def build_text_search(kwargs: dict, lm: Any = None):
    """The text search (model and rows) of a text id's options; its test rows are required."""
    from ..envs.text import TextEnvConfig, make_text_search

    return make_text_search(TextEnvConfig.from_kwargs(**kwargs), lm=lm, require_test=True)


def text_baselines(search, *, seed: int = 0, skip: Collection[str] = ()) -> Iterator[dict]:
    """The floors of a text comparison (:data:`TEXT_BASELINES` not in ``skip``), as compare records."""
    from ..floors import handcraft_floor, icl_floor

    free = {"seed": seed, "evals": 0, "example_forwards": 0, "seconds": 0.0}
    if "handcraft" not in skip:
        f = handcraft_floor(search.setup)
        yield {"algo": "handcraft", **free, "selected_drl_acc": f["drl_acc"], "selected_test_acc": f["test_acc"]}
    if "icl" not in skip:
        f = icl_floor(search.setup, seed=seed)
        yield {"algo": "icl", **free, "demos": f["demos"], "selected_drl_acc": f["drl_acc"],
               "selected_test_acc": f["test_acc"]}  # fmt: skip


def run_text_one(cfg: Any, factory: Callable, algo: str, seed: int, env_kwargs: dict, algo_kwargs: dict, common: dict,
                 *, setup: Any = None, bar: Any = None) -> dict:  # fmt: skip
    """One text run: search for ``cfg.budget`` target evaluations, re-score the best and final
    instructions on D_RL and test, keep the one better on D_RL, return the record (the soft runs'
    :func:`~.compare_cells.cell_record`, with both instructions verbatim and the agent / target time)."""
    from .compare_cells import cell_record, learn_cell

    run_kw = dict(env_kwargs) if setup is None else {**env_kwargs, "setup": setup}
    agent, env = factory(cfg.env_id, run_kw, seed, num_envs=cfg.num_envs, **algo_kwargs)
    search = env.unwrapped.search
    result = learn_cell(agent, cfg.budget, bar)

    def acc(prompt: str, split: str) -> float:
        return search.evaluate(prompt, split=split)["accuracy"]

    return cell_record(cfg, algo, seed, env, env_kwargs, algo_kwargs, common, result, acc,
                       example_forwards=result.evals * len(search.data), action_dim="text",
                       reward=search.reward_kind, best_prompt=result.best_prompt, final_prompt=result.final_prompt,
                       agent_seconds=result.agent_seconds, target_seconds=result.target_seconds)  # fmt: skip