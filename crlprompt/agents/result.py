"""What a search reports and returns: the :class:`SearchEvent` its callbacks get after each batch and
the :class:`SearchResult` of a run (saved as a run directory that ``crl-prompt eval``, PEFT and
:class:`~crlprompt.PromptClassifier` read)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class SearchEvent:
    """What an agent reports to its callbacks: after each batch of evaluations (``kind="batch"``),
    and from :class:`~crlprompt.agents.CRLAgent` after each RL step (``"rl"``) and epoch (``"epoch"``)."""

    kind: str
    """``"batch"`` (a search agent's batch), ``"rl"`` or ``"epoch"`` (CRLAgent)."""
    evals: int
    """Prompt evaluations spent so far."""
    best_reward: float
    """The best reward so far (an epoch event: the best D_RL accuracy so far)."""
    rewards: np.ndarray
    """``(n,)`` the rewards of this batch (racing: each candidate's mean on the rows it was raced on;
    an epoch event: the current prompt's D_RL accuracy)."""
    accuracies: np.ndarray | None = None
    """``(n,)`` their D_RL accuracies where the env reports them (``info["accuracy"]``), else None."""
    diagnostics: dict[str, Any] = field(default_factory=dict)
    """The agent's own plain values: ESS, KL to an anchor, CMA's sigma, the RL term's seconds..."""
    best_prompt: np.ndarray | None = None
    """``(D,)`` the best prompt so far (the agent's own array: copy it to keep it)."""
    algo: str = ""


#: ``callback(event)`` after each batch; returning ``False`` stops early. A function of two
#: arguments is called as ``callback(evals, best_reward)`` (the short form).
Callback = Callable[[SearchEvent], "bool | None"] | Callable[[int, float], "bool | None"]


def takes_two_arguments(fn: Callable) -> bool:
    """True when ``fn`` needs exactly two positional arguments (the short callback forms)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: give it the event
        return False
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in params) == 2


def event_callbacks(callback: Callback | None = None, callbacks: Iterable[Callback] = ()) -> list[Callable]:
    """``callback`` and ``callbacks`` as functions of a :class:`SearchEvent`."""
    out = []
    for cb in ([] if callback is None else [callback]) + list(callbacks):
        if not callable(cb):
            raise ConfigError(f"a callback must be callable, got {cb!r}")
        out.append((lambda ev, cb=cb: cb(ev.evals, ev.best_reward)) if takes_two_arguments(cb) else cb)
    return out


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

        from ..prompt_io import PROMPT_FILE

        if which not in ("best", "final"):
            raise ConfigError(f"which must be 'best' or 'final', got {which!r}")
        prompt = self.best_prompt if which == "best" else self.final_prompt
        search = search_of(env)
        theta = search.model.prompt.theta
        if tuple(theta.shape) != tuple(prompt.shape):
            raise ConfigError(
                f"this result holds a prompt of shape {prompt.shape}, the env's model needs {tuple(theta.shape)}"
            )
        info = {"algo": self.algo, "which": which, "reward": self.best_reward if which == "best" else self.final_reward,
                "evals": self.evals, **(meta or {})}  # fmt: skip
        cfg = {**run_config(env), "algo": self.algo, "which": which, "env_reward": info["reward"], "evals": self.evals}
        out = search.write_run(path, torch.as_tensor(prompt, dtype=theta.dtype), cfg, info)
        return out / PROMPT_FILE


def run_config(env: Any) -> dict:
    """What ``crl-prompt eval`` needs to rebuild an env's model and data (its run directory's ``config.json``):
    :meth:`~crlprompt.envs.PromptSearch.run_config` of the env's search, with the env's registered id."""
    spec = getattr(env.unwrapped, "spec", None)
    return search_of(env).run_config(spec.id if spec is not None else None)


def search_of(env: Any):
    """The :class:`~crlprompt.envs.PromptSearch` behind a (wrapped) single or vector env."""
    search = getattr(env.unwrapped, "search", None)
    if search is None:
        raise TypeError(f"{env!r} is not a crl-prompt soft-prompt env (no .unwrapped.search)")
    return search
