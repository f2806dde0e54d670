"""What every env-based search agent shares: the search loop, its result and its events.

Agents here see the soft-prompt environment only through the Gymnasium API:
``reset(seed=..., options={"center": θ})``, ``step(action)`` and ``env.unwrapped.prompt_for(action)``
to turn an action into a prompt. A *budget* is a number of prompt evaluations (one evaluation = one
prompt scored on D_RL or on a minibatch), so algorithms with different batch shapes compare at
equal cost.

:class:`SearchAgent` owns what every search shares: budget accounting, the best prompt so far, the
history ``(evaluations, best reward)``, the :class:`SearchResult` and a :class:`SearchEvent` per
batch to the callbacks. :class:`AskTellAgent` adds the loop itself, so that an algorithm is its
``ask`` (the next batch of actions) and ``tell`` (what it learns from their rewards)::

    while the next batch fits in the budget:
        actions = agent.ask()                     # (n, d)
        rewards = env rewards of the actions      # (n,), one batched forward per K actions
        best, history <- actions, rewards
        diagnostics = agent.tell(actions, rewards)
        callbacks(SearchEvent(...)); stop if one returns False
"""

from __future__ import annotations

import copy
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from ..errors import ConfigError, EnvError
from .result import Callback, SearchEvent, SearchResult, event_callbacks, run_config, search_of, takes_two_arguments

__all__ = ["ActionScorer", "AskTellAgent", "Callback", "SearchAgent", "SearchEvent", "SearchResult", "check_budget",
           "event_callbacks", "run_config", "search_of", "takes_two_arguments"]


class ActionScorer:
    """Scores a population of actions ``(n, d) -> (n,)`` rewards through the env API.

    A :class:`gymnasium.vector.VectorEnv` of K sub-envs scores K actions per ``step`` (one batched
    forward), so ``n`` must be a multiple of K. A single env is reset and stepped once per action
    (each evaluation is the first step of a fresh episode, whatever ``episode_length`` is).
    """

    def __init__(self, env: gym.Env | gym.vector.VectorEnv):
        self.env = env
        self.accuracies: np.ndarray | None = None
        """``(n,)`` the env's ``info["accuracy"]`` of the last call's actions (None if it has none)."""
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
        out, acc = np.empty(n, np.float64), np.full(n, np.nan)
        for i in range(0, n, self.batch):
            if self.vector:
                _, r, _, _, info = self.env.step(actions[i : i + self.batch])
                out[i : i + self.batch] = r
            else:
                self.env.reset()
                _, r, _, _, info = self.env.step(actions[i])
                out[i] = r
            acc[i : i + self.batch] = info.get("accuracy", np.nan)
        self.accuracies = None if np.isnan(acc).all() else acc
        return out

    def rng_state(self) -> dict:
        """The env's random state (its minibatch draws), to continue a search where it stood."""
        return copy.deepcopy(self.env.unwrapped.np_random.bit_generator.state)

    def set_rng_state(self, state: dict) -> None:
        self.env.unwrapped.np_random.bit_generator.state = copy.deepcopy(state)

    def null_action(self) -> np.ndarray:
        """The action that stands for "nothing scored yet" (0: the center)."""
        return np.zeros(self.action_dim, np.float32)

    def keep(self, action: Any) -> np.ndarray:
        """A copy of ``action`` to hold as the best one."""
        return np.asarray(action, np.float32).copy()

    def score_one(self, action: np.ndarray) -> float:
        """Reward of one action (a vector env scores it K times in one step and returns the first)."""
        return float(self(np.repeat(np.asarray(action, np.float32)[None], self.batch, 0))[0])

    def prompt_for(self, action: np.ndarray) -> np.ndarray:
        return self.search.prompt_for(np.asarray(action, np.float32))

    @property
    def center(self) -> np.ndarray:
        return self.search.center.detach().cpu().numpy().copy()


def check_budget(budget: Any, per_update: int, what: str) -> int:
    """``budget`` as an int, or a :class:`ConfigError` when it is not an int >= ``per_update``."""
    if isinstance(budget, bool) or not (isinstance(budget, (int, np.integer)) and budget >= per_update):
        raise ConfigError(f"budget must be an int >= {what}, got {budget!r}; raise the budget or make the update smaller")
    return int(budget)


class SearchAgent(ABC):
    """The bookkeeping every env-based search agent shares, around its own search loop.

    ``learn(budget, callback)`` checks the budget, runs :meth:`run_search` and returns a
    :class:`SearchResult`. The loop reports each batch it had scored with :meth:`observe`
    (evaluations, best action and prompt, history) and, once the agent has updated, with
    :meth:`emit` (a :class:`SearchEvent` to the callbacks; False from one stops the loop).
    :class:`AskTellAgent` is the loop for agents that own it; the Stable-Baselines3 agents
    subclass this class directly, since SB3's ``learn`` drives their loop and calls back into
    these two methods (from the env wrapper and an SB3 callback).

    A subclass sets ``algo`` and ``evals_per_update`` (the fewest evaluations one update spends:
    the compare runner checks budgets with it) and may override :meth:`finish` (the final prompt;
    default: the best one). During and after ``learn``, ``evals``, ``history``, ``best_action``,
    ``best_prompt`` and ``best_reward`` say where the search stands.
    """

    algo: ClassVar[str] = ""
    history_every_batch: ClassVar[bool] = True
    """True: a history point after every batch; False: only when the best improves, and at the end
    (the SB3 agents, whose batches are single env steps)."""

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, seed: int = 0):
        self.scorer = self.make_scorer(env)
        self.seed = seed
        self._start_run()

    def make_scorer(self, env: Any) -> "ActionScorer":
        """What scores this agent's actions through ``env`` (text agents score strings)."""
        return ActionScorer(env)

    @property
    @abstractmethod
    def evals_per_update(self) -> int:
        """The fewest prompt evaluations one update spends (a ``learn`` budget must cover it)."""

    @property
    def update_text(self) -> str:
        """What one update is, for the budget error: ``"popsize=20 (one generation)"``."""
        return f"{self.evals_per_update} (one update of {type(self).__name__})"

    def check_budget(self, budget: Any) -> int:
        return check_budget(budget, self.evals_per_update, self.update_text)

    @abstractmethod
    def run_search(self, budget: int) -> None:
        """Spend at most ``budget`` evaluations, calling :meth:`observe` and :meth:`emit`."""

    def finish(self) -> tuple[np.ndarray, float]:
        """``(final prompt (D,), its reward)`` after the search; default: the best prompt."""
        return self._best_prompt().copy(), self.best_reward

    def learn(
        self, budget: int, callback: Callback | None = None, callbacks: Iterable[Callback] = (), *,
        state: dict | None = None,
    ) -> SearchResult:  # fmt: skip
        """Spend at most ``budget`` prompt evaluations (whole updates) and return the best and final prompts.

        ``callback`` and each of ``callbacks`` get a :class:`SearchEvent` after each batch (a
        function of two arguments gets ``(evals, best_reward)``); one returning False stops the run.
        ``state``: a snapshot from :meth:`AskTellAgent.state_dict` to continue that search instead of
        starting afresh (``budget`` counts the evaluations it had spent too).
        """
        budget = self.check_budget(budget)
        if state is not None and not isinstance(self, AskTellAgent):
            raise ConfigError(f"{type(self).__name__} cannot resume a search from a state; start it afresh")
        if state is not None:
            self._check_state(state)
        start = time.perf_counter()
        self._start_run(event_callbacks(callback, callbacks))
        self._resume = state
        self.run_search(budget)
        if not self.history_every_batch and self.history and self.history[-1][0] != self.evals:
            self.history.append((self.evals, self.best_reward))
        final_prompt, final_reward = self.finish()
        return SearchResult(
            best_prompt=self._best_prompt(), best_reward=self.best_reward, final_prompt=final_prompt,
            final_reward=final_reward, history=list(self.history), evals=self.evals,
            seconds=time.perf_counter() - start, algo=self.algo,
        )  # fmt: skip

    def _start_run(self, callbacks: list[Callable] | None = None) -> None:
        """Zero the bookkeeping: ``evals``, ``history``, ``best_action`` / ``best_prompt`` / ``best_reward``."""
        self.evals, self.history = 0, []
        self.best_action = self.scorer.null_action()
        self.best_reward, self.best_prompt = -math.inf, None
        self._callbacks = callbacks or []
        self._last: tuple[np.ndarray, np.ndarray | None] = (np.empty(0), None)

    def _best_prompt(self) -> np.ndarray:
        if self.best_prompt is None:  # nothing scored beat -inf: the best action is still 0
            self.best_prompt = self.scorer.prompt_for(self.best_action)
        return self.best_prompt

    def observe(self, actions: np.ndarray, rewards: np.ndarray, *, accuracies: np.ndarray | None = None,
                 spent: int | None = None, best: tuple[int, float] | None = None) -> None:  # fmt: skip
        """Count a scored batch ``actions (n, d)`` with ``rewards (n,)``: ``spent`` evaluations (default n),
        the best so far (``best``: the batch's best ``(index, reward)``, default its argmax)."""
        values = np.append(np.ravel(rewards), [] if best is None else [best[1]]).astype(np.float64)
        if not np.isfinite(values).all():  # unrankable: NaN would become the best, inf poisons ranks and means
            raise EnvError(f"{self.algo or type(self).__name__} got a non-finite reward "
                           f"({values[~np.isfinite(values)][0]}); rewards must be finite: fix the env's reward "
                           "(a custom reward function or wrapper that returns NaN or inf)")  # fmt: skip
        self.evals += len(actions) if spent is None else spent
        if best is None:
            i = int(np.argmax(rewards))
            best = (i, float(rewards[i]))
        i, r = best
        improved = r > self.best_reward
        if improved:
            self.best_action, self.best_reward = self.scorer.keep(actions[i]), r
            self.best_prompt = self.scorer.prompt_for(self.best_action)
        if improved or self.history_every_batch:
            self.history.append((self.evals, self.best_reward))
        self._last = (np.asarray(rewards), accuracies)

    def emit(self, diagnostics: dict[str, Any] | None = None) -> bool:
        """Send the last observed batch's :class:`SearchEvent` to the callbacks; False: stop."""
        if not self._callbacks:
            return True
        rewards, accuracies = self._last
        event = SearchEvent("batch", self.evals, self.best_reward, rewards, accuracies, diagnostics or {},
                            self._best_prompt(), self.algo)  # fmt: skip
        return not any([cb(event) is False for cb in self._callbacks])  # every callback sees the event


class AskTellAgent(SearchAgent):
    """A search agent that owns its loop: :meth:`ask` for actions, :meth:`tell` their rewards.

    ``learn`` resets the env with the agent's seed, calls :meth:`start`, then, while the next batch
    fits in the budget: ``actions = ask()`` (``(n, d)`` float32), scores them through the env
    (:meth:`evaluate`), records the best and the history, ``tell(actions, rewards)`` (which may
    return diagnostics for the event), emits the event, and ends early when a callback returns
    False or :meth:`done` says so. :meth:`session` wraps the whole loop (e.g. a private torch
    random state).

    :meth:`state_dict` snapshots the search between two updates (in a callback, or after
    ``learn``); ``learn(budget, state=snapshot)``, on this agent or a new one built the same way on
    an env of the same settings, continues it: the same batches, rewards and prompts as a run that
    was never stopped.
    """

    global_rngs: ClassVar[tuple[str, ...]] = ()
    """Process-wide random streams the agent draws from (``"numpy"``: ``np.random``; ``"torch"``:
    e.g. BoTorch, inside the agent's private :meth:`session`): snapshotted with the search."""
    STATE_VERSION: ClassVar[int] = 1

    def _shared(self) -> dict[int, Any]:
        """What a snapshot refers to but does not copy: the env, its search and model."""
        keep = [self.scorer, self.scorer.env, self.scorer.search, getattr(self, "search", None)]
        return {id(o): o for o in keep if o is not None}

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the search as it stands: the bookkeeping (evaluations, history, best),
        the agent's own state (random streams, mean, optimiser, CMA's strategy...), the env's random
        state and center. Take it between updates (in a callback or after ``learn``); it holds
        numpy arrays, tensors and library objects (keep it in memory, or pickle it to a file you trust)."""
        agent = {k: v for k, v in vars(self).items() if k not in ("scorer", "_callbacks", "_resume")}
        return {
            "version": self.STATE_VERSION, "algo": self.algo, "action_dim": self.scorer.action_dim,
            "agent": copy.deepcopy(agent, self._shared()), "env_rng": self.scorer.rng_state(),
            "center": self.scorer.center,
            "numpy_rng": np.random.get_state() if "numpy" in self.global_rngs else None,
            "torch_rng": _torch_rng_state() if "torch" in self.global_rngs else None,
        }  # fmt: skip

    def _check_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("version") != self.STATE_VERSION:
            raise ConfigError("state must be a snapshot from AskTellAgent.state_dict() of this version of crl-prompt")
        if (state["algo"], state["action_dim"]) != (self.algo, self.scorer.action_dim):
            raise ConfigError(
                f"the state is of a {state['algo']!r} search with action dim {state['action_dim']}; this agent is "
                f"{self.algo!r} on action dim {self.scorer.action_dim}: resume with the agent and env that wrote it"
            )

    def _restore(self, state: dict) -> None:
        """Put a snapshot back (inside :meth:`session`, where a private random stream lives)."""
        vars(self).update(copy.deepcopy(state["agent"], self._shared()))
        if state["numpy_rng"] is not None:
            np.random.set_state(state["numpy_rng"])
        if state["torch_rng"] is not None:
            import torch

            torch.set_rng_state(state["torch_rng"])

    def start(self) -> None:
        """Set up the search state (random streams, policy) at the start of ``learn``."""

    @abstractmethod
    def ask(self) -> np.ndarray:
        """The next batch of actions ``(n, d)`` float32 to score."""

    @abstractmethod
    def tell(self, actions: np.ndarray, rewards: np.ndarray) -> dict[str, Any] | None:
        """Learn from the batch's ``rewards (n,)``; return diagnostics for the event (or None)."""

    def next_batch_size(self) -> int:
        """Evaluations the next ``ask`` will cost (default: ``evals_per_update``)."""
        return self.evals_per_update

    def fits(self, budget: int) -> bool:
        """Whether the next batch fits in what is left of ``budget``."""
        return self.evals + self.next_batch_size() <= budget

    def evaluate(self, actions: np.ndarray) -> np.ndarray:
        """Score ``actions (n, d)`` through the env and :meth:`observe` them; ``(n,)`` rewards."""
        rewards = self.scorer(actions)  # (n,), one batched forward per K actions
        self.observe(actions, rewards, accuracies=self.scorer.accuracies)
        return rewards

    def done(self) -> bool:
        """True to end the search before the budget is spent (after the batch's event)."""
        return False

    @contextmanager
    def session(self) -> Iterator[None]:
        """Context around the whole loop; default: none."""
        yield

    def run_search(self, budget: int) -> None:
        state, self._resume = getattr(self, "_resume", None), None
        if state is None:
            self.scorer.reset(seed=self.seed)
        else:
            self.scorer.reset(seed=self.seed, center=state["center"])
            self.scorer.set_rng_state(state["env_rng"])
        with self.session():
            self.start() if state is None else self._restore(state)
            while self.fits(budget):
                actions = self.ask()
                rewards = self.evaluate(actions)
                if not self.emit(self.tell(actions, rewards)) or self.done():
                    break


def _torch_rng_state():
    import torch

    return torch.get_rng_state()
