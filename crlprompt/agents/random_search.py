"""Random search: the baseline every search algorithm must beat at equal budget."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from .base import AskTellAgent


class RandomSearch(AskTellAgent):
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

    algo = "random"

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        batch: int | None = None,
        scale: float = 1.0,
        include_center: bool = True,
        seed: int = 0,
    ):
        super().__init__(env, seed)
        self.batch = batch or (self.scorer.batch if self.scorer.vector else 32)
        if self.batch < 1 or self.batch % self.scorer.batch:
            raise ConfigError(
                f"batch must be a positive multiple of the vector env's num_envs={self.scorer.batch}, got {batch}"
            )
        if not scale > 0:
            raise ConfigError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.include_center = include_center

    @property
    def evals_per_update(self) -> int:
        return self.batch

    @property
    def update_text(self) -> str:
        return f"batch={self.batch} (one batch)"

    def start(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def ask(self) -> np.ndarray:
        actions = (self.scale * self.rng.standard_normal((self.batch, self.scorer.action_dim))).astype(np.float32)
        if self.evals == 0 and self.include_center:
            actions[0] = 0.0
        return actions  # (batch, d)

    def tell(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        return None  # nothing to learn: the base keeps the best
