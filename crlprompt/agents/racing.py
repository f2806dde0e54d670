"""Racing search: random search whose K candidates per round are raced on D_RL instead of scored in full.

Racing reads the env's reward data directly: it scores prompts with
:func:`crlprompt.losses.race.race` on ``search_of(env).data`` (D_RL) through the env's frozen
model, on subsets it chooses itself, instead of calling ``env.step`` (a step always pays for all
of D_RL, or for one minibatch of the env's ``reward_batch_size``). Candidates still come from the
env API (``reset(options={"center": θ})`` and ``prompt_for``), and the cost is counted in
*example-forwards* (one prompt on one example); ``example_forwards / len(D_RL)`` is the equivalent
number of full prompt evaluations. ``search.num_evals`` does not count races. The race itself and
its RL term live in :mod:`crlprompt.losses.race` (re-exported here).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from ..errors import ConfigError
from ..losses.race import RULES, RaceResult, check_race_args, race, race_rl_term, race_schedule
from .base import AskTellAgent, search_of

__all__ = ["RULES", "RaceResult", "RacingSearch", "check_race_args", "race", "race_rl_term", "race_schedule"]


class RacingSearch(AskTellAgent):
    """Random search whose K candidates per round are raced on D_RL instead of scored in full.

    Each round draws K actions ``a ~ N(base, scale² I)`` — base = 0 (the env's center, as
    :class:`RandomSearch`) or, with ``around_best=True``, the best action so far (a (1, K)
    hill-climber) — turns them into prompts with the env's ``prompt_for`` and picks one with
    :func:`race`; the winner's full-D_RL reward is exact and kept if it is the best so far. The
    budget is in full prompt evaluations, ``budget × len(D_RL)`` example-forwards, so a race that
    costs ~5/16 of scoring every candidate in full lets the search try ~3× more prompts.
    ``best_reward`` is always measured on all of D_RL (the env's ``reward_batch_size`` is not used).

    Follows racing for model/configuration selection (Maron & Moore 1994; successive halving as
    in Hyperband, Li et al. 2018); differs in racing prompts of a frozen LM on subsets of D_RL.
    Not resumable.

    Args:
        env: a soft-prompt env or vector env (only its center, ``prompt_for`` and search are used).
        k: candidates per race.
        rule, eta, finalists, block, z: of :func:`race` (a ``paired`` race is budgeted at its
            worst case, k·len(D_RL), so it only starts when that much budget is left).
        scale: standard deviation of the actions.
        around_best: draw around the best action so far rather than around the center.
        include_center: the first race includes a = 0.
        seed: seeds the sampler and the example order.

    Events carry each candidate's mean reward on the rows it was raced on (``rewards``), the
    winner's full-D_RL reward and the race's example-forwards.
    """

    algo = "racing"

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        k: int = 16,
        rule: str = "halving",
        eta: int = 2,
        finalists: int = 2,
        block: int = 8,
        z: float = 2.5,
        scale: float = 1.0,
        around_best: bool = False,
        include_center: bool = True,
        seed: int = 0,
    ):
        super().__init__(env, seed)
        self.search = search_of(env)
        if not (isinstance(k, int) and k >= 2):
            raise ConfigError(f"k must be an int >= 2, got {k!r}")
        if not (isinstance(finalists, int) and 1 <= finalists <= k):
            raise ConfigError(f"finalists must be an int in [1, k={k}], got {finalists!r}")
        self.race_kwargs = {"rule": rule, "eta": eta, "finalists": finalists, "block": block, "z": z}
        check_race_args(**self.race_kwargs)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"scale must be a finite number > 0, got {scale!r}")
        self.k, self.scale = k, float(scale)
        self.around_best, self.include_center = around_best, include_center
        self.example_forwards = 0
        """Prompt-example pairs scored by the last ``learn``."""
        self.races: list[RaceResult] = []

    @property
    def evals_per_update(self) -> int:
        """Full prompt evaluations one race costs at most (its example-forwards / len(D_RL), rounded up)."""
        return math.ceil(self.race_cost() / len(self.search.data))

    @property
    def update_text(self) -> str:
        return f"{self.evals_per_update} (one race of k={self.k})"

    def race_cost(self) -> int:
        """Example-forwards of one race at most: the halving schedule's, or k·len(D_RL) for ``paired``."""
        n = len(self.search.data)
        if self.race_kwargs["rule"] == "paired":
            return self.k * n
        sched = race_schedule(self.k, n, eta=self.race_kwargs["eta"], finalists=self.race_kwargs["finalists"])
        return sum(alive * (size - prev) for (alive, size), prev in zip(sched, [0] + [s for _, s in sched]))

    def start(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.example_forwards, self.races = 0, []

    def fits(self, budget: int) -> bool:
        """Another race fits when its worst-case example-forwards do."""
        return self.example_forwards + self.race_cost() <= budget * len(self.search.data)

    def ask(self) -> np.ndarray:
        d = self.scorer.action_dim
        base = self.best_action if self.around_best else np.zeros(d, np.float32)
        actions = (base + self.scale * self.rng.standard_normal((self.k, d))).astype(np.float32)  # (k, d)
        if not self.races and self.include_center:
            actions[0] = 0.0
        return actions

    def evaluate(self, actions: np.ndarray) -> np.ndarray:
        """Race the candidates; ``(k,)`` their mean rewards on the rows each was raced on. The best
        is the winner, whose reward is exact (all of D_RL); evaluations are example-forwards / len(D_RL)."""
        prompts = torch.from_numpy(np.stack([self.scorer.prompt_for(a) for a in actions]))  # (k, D)
        res = race(self.search, prompts, rng=self.rng, **self.race_kwargs)
        self.races.append(res)
        self.example_forwards += res.example_forwards
        spent = math.ceil(self.example_forwards / len(self.search.data)) - self.evals
        self.observe(actions, res.means, spent=spent, best=(res.winner, res.reward))
        return res.means

    def tell(self, actions: np.ndarray, rewards: np.ndarray) -> dict:
        res = self.races[-1]
        return {"winner_reward": res.reward, "example_forwards": res.example_forwards}
