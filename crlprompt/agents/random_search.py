"""Random search: the baseline every search algorithm must beat at equal budget."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from .base import ActionScorer, Callback, SearchResult, check_budget


class RandomSearch:
    """Sample actions ``a ~ N(0, scale² I)`` around the env's center and keep the best.

    Actions are not clipped to the nominal ``[-1, 1]`` box, so the prompts are exact samples of
    N(center, σ² scale² A Aᵀ). With ``include_center=True`` the first evaluation is the center
    itself (a = 0), so the result is never worse than the starting prompt on the env's reward.

    Args:
        env: a soft-prompt env (``gym.make("CRLPrompt/...")``) or its vector form
            (``gym.make_vec(..., vectorization_mode="vector_entry_point")``, K actions per forward).
        batch: actions drawn per round (default: the vector env's K, or 32); a multiple of K.
        scale: standard deviation of the actions.
        include_center: evaluate a = 0 first.
        seed: seeds the sampler and the env (minibatch draws).
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        batch: int | None = None,
        scale: float = 1.0,
        include_center: bool = True,
        seed: int = 0,
    ):
        self.scorer = ActionScorer(env)
        self.batch = batch or (self.scorer.batch if self.scorer.vector else 32)
        if self.batch < 1 or self.batch % self.scorer.batch:
            raise ConfigError(
                f"batch must be a positive multiple of the vector env's num_envs={self.scorer.batch}, got {batch}"
            )
        if not scale > 0:
            raise ConfigError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.include_center = include_center
        self.seed = seed

    def learn(self, budget: int, callback: Callback | None = None) -> SearchResult:
        """Spend at most ``budget`` prompt evaluations (whole batches) and return the best prompt."""
        budget = check_budget(budget, self.batch, f"one batch of {self.batch}")
        start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        d = self.scorer.action_dim
        self.scorer.reset(seed=self.seed)
        best_a, best_r = np.zeros(d, np.float32), -np.inf
        evals, history = 0, []
        while evals + self.batch <= budget:
            actions = (self.scale * rng.standard_normal((self.batch, d))).astype(np.float32)  # (batch, d)
            if evals == 0 and self.include_center:
                actions[0] = 0.0
            rewards = self.scorer(actions)  # (batch,)
            evals += self.batch
            i = int(np.argmax(rewards))
            if rewards[i] > best_r:
                best_a, best_r = actions[i].copy(), float(rewards[i])
            history.append((evals, best_r))
            if callback is not None and callback(evals, best_r) is False:
                break
        best_prompt = self.scorer.prompt_for(best_a)
        return SearchResult(
            best_prompt=best_prompt, best_reward=best_r, final_prompt=best_prompt.copy(), final_reward=best_r,
            history=history, evals=evals, seconds=time.perf_counter() - start, algo="random",
        )  # fmt: skip
