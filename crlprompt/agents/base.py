"""What every env-based search agent shares: its result, and scoring actions through the env API.

Agents here (random search, ES, SB3 PPO) see the soft-prompt environment only through the
Gymnasium API: ``reset(seed=..., options={"center": θ})``, ``step(action)`` and
``env.unwrapped.prompt_for(action)`` to turn their best action into a prompt. A *budget* is a
number of prompt evaluations (one evaluation = one prompt scored on D_RL or on a minibatch),
so algorithms with different batch shapes compare at equal cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import ConfigError

#: ``callback(evals, best_reward)`` after each batch of evaluations; returning ``False`` stops early.
Callback = Callable[[int, float], "bool | None"]


@dataclass
class SearchResult:
    """The outcome of one search run.

    Rewards are what the env returned (a minibatch estimate when the env has
    ``reward_batch_size``); re-score ``best_prompt`` on full data to compare runs.
    """

    best_prompt: np.ndarray
    """``(D,)`` the best prompt any evaluated action produced."""
    best_reward: float
    """The env reward of ``best_prompt``."""
    final_prompt: np.ndarray
    """``(D,)`` where the algorithm ended: ES's mean, PPO's deterministic action, random search's best."""
    final_reward: float
    """The env reward of ``final_prompt`` (one extra evaluation, not counted in ``evals``)."""
    history: list[tuple[int, float]] = field(default_factory=list)
    """``(evaluations so far, best reward so far)`` after each batch."""
    evals: int = 0
    """Prompt evaluations spent by the search (at most the budget)."""
    seconds: float = 0.0
    """Wall-clock time of ``learn``."""
    algo: str = ""

    @property
    def evals_per_second(self) -> float:
        return self.evals / self.seconds if self.seconds > 0 else float("nan")

    def save(
        self, path: str | Path, env: gym.Env | gym.vector.VectorEnv, *, which: str = "best", meta: dict | None = None
    ) -> Path:
        """Write the run directory ``path/`` that ``crl-prompt eval --checkpoint path`` scores.

        ``prompt.safetensors`` holds θ (``which`` = ``"best"`` or ``"final"``) and the env's
        frozen head; ``config.json`` says how to rebuild the model and data (task, model, prompt
        kind, tokens, head, data seed...), taken from the env. The env's model keeps its own θ:
        the prompt is copied in only while saving. Returns the path of the prompt file.
        """
        import torch

        from ..prompts import PROMPT_FILE, save_prompt

        if which not in ("best", "final"):
            raise ConfigError(f"which must be 'best' or 'final', got {which!r}")
        prompt = self.best_prompt if which == "best" else self.final_prompt
        pm = search_of(env).model
        theta = pm.prompt.theta
        if tuple(theta.shape) != tuple(prompt.shape):
            raise ConfigError(
                f"this result holds a prompt of shape {prompt.shape}, the env's model needs {tuple(theta.shape)}"
            )
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        info = {"algo": self.algo, "which": which, "reward": self.best_reward if which == "best" else self.final_reward,
                "evals": self.evals, **(meta or {})}  # fmt: skip
        old = theta.detach().clone()
        try:
            with torch.no_grad():
                theta.copy_(torch.as_tensor(prompt, dtype=theta.dtype))
            tmp = out / (PROMPT_FILE + ".tmp")
            save_prompt(pm, tmp, info)
            tmp.replace(out / PROMPT_FILE)  # atomic: never a half-written checkpoint
        finally:
            with torch.no_grad():
                theta.copy_(old)
        cfg = {**run_config(env), "algo": self.algo, "which": which, "env_reward": info["reward"], "evals": self.evals}
        (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
        return out / PROMPT_FILE


def run_config(env: Any) -> dict:
    """What ``crl-prompt eval`` needs to rebuild an env's model and data: its :class:`SetupConfig`
    (stored as is) and the search options, as a run directory's ``config.json`` holds them."""
    import dataclasses

    search = search_of(env)
    spec = getattr(env.unwrapped, "spec", None)
    layout = search.model.layout
    setup = search.setup.config
    return {
        "env_id": spec.id if spec is not None else None,
        "setup": dataclasses.asdict(setup),
        "method": "ptv2" if layout.kind == "deep" else "ptv1",  # ptv1 = shallow prompt, ptv2 = deep prefix
        "sigma": search.sigma,
        "projection_dim": search.action_dim if search.projection is not None else None,
    }


def search_of(env: Any):
    """The :class:`~crlprompt.envs.PromptSearch` behind a (wrapped) single or vector env."""
    search = getattr(env.unwrapped, "search", None)
    if search is None:
        raise TypeError(f"{env!r} is not a crl-prompt soft-prompt env (no .unwrapped.search)")
    return search


class ActionScorer:
    """Scores a population of actions ``(n, d) -> (n,)`` rewards through the env API.

    A :class:`gymnasium.vector.VectorEnv` of K sub-envs scores K actions per ``step`` (one batched
    forward), so ``n`` must be a multiple of K. A single env is reset and stepped once per action
    (each evaluation is the first step of a fresh episode, whatever ``episode_length`` is).
    """

    def __init__(self, env: gym.Env | gym.vector.VectorEnv):
        self.env = env
        self.vector = isinstance(env.unwrapped, gym.vector.VectorEnv)
        self.batch = env.num_envs if self.vector else 1
        space = env.single_action_space if self.vector else env.action_space
        self.action_dim = int(np.prod(space.shape))
        self.search = search_of(env)

    def reset(self, seed: int | None = None, center: np.ndarray | None = None) -> None:
        self.env.reset(seed=seed, options=None if center is None else {"center": center})

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float32).reshape(-1, self.action_dim)
        n = len(actions)
        if n % self.batch:
            raise ConfigError(f"{n} actions do not split into steps of the vector env's {self.batch} sub-envs")
        out = np.empty(n, np.float64)
        for i in range(0, n, self.batch):
            if self.vector:
                _, r, *_ = self.env.step(actions[i : i + self.batch])
                out[i : i + self.batch] = r
            else:
                self.env.reset()
                _, r, *_ = self.env.step(actions[i])
                out[i] = r
        return out

    def score_one(self, action: np.ndarray) -> float:
        """Reward of one action (a vector env scores it K times in one step and returns the first)."""
        return float(self(np.repeat(np.asarray(action, np.float32)[None], self.batch, 0))[0])

    def prompt_for(self, action: np.ndarray) -> np.ndarray:
        return self.search.prompt_for(np.asarray(action, np.float32))

    @property
    def center(self) -> np.ndarray:
        return self.search.center.detach().cpu().numpy().copy()


def check_budget(budget: Any, per_update: int, what: str) -> int:
    if not (isinstance(budget, (int, np.integer)) and budget >= per_update):
        raise ConfigError(f"budget must be an int >= {per_update} ({what}), got {budget!r}")
    return int(budget)
