"""SoftPromptVectorEnv: K environments whose K actions are scored in one batched forward."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ..errors import ConfigError
from ..scoring import REWARD_RANGES
from .config import EnvConfig
from .search import PromptAccess, PromptSearch, check_reset_options, resolve_search


class SoftPromptVectorEnv(PromptAccess, VectorEnv):
    """``num_envs`` copies of :class:`~crlprompt.envs.SoftPromptEnv` sharing one frozen scorer.

    ``step(actions (K, d))`` builds the K perturbed prompts and scores all of them over D_RL in
    one model call per chunk of examples (row k·b+i = prompt k, example i), instead of K
    separate passes. Episodes are one step (a bandit), so every sub-env terminates every step
    and is reset in that same step (``AutoresetMode.SAME_STEP``): the returned observations are
    reset observations and ``infos["final_obs"]`` holds the terminal ones.

    With ``reward_batch_size`` all K prompts are scored on one shared minibatch per step (common
    random numbers, drawn from ``self.np_random``), which is also what makes them comparable.
    ``reset(options={"center": θ})`` sets the center of every sub-env.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self, num_envs: int = 8, config: EnvConfig | None = None, *, search: PromptSearch | None = None, **kwargs: Any
    ):
        if isinstance(num_envs, bool) or not (isinstance(num_envs, int) and num_envs >= 1):
            raise ConfigError(f"num_envs must be an int >= 1, got {num_envs!r}")
        self.search = resolve_search(config, search, kwargs)
        self.config = self.search.config
        if self.config.episode_length != 1:
            raise ConfigError(
                f"the batched vector env runs one-step episodes; got episode_length={self.config.episode_length}. "
                "Use gym.make_vec(..., vectorization_mode='sync') for multi-step episodes"
            )
        self.num_envs = num_envs
        self.single_action_space = spaces.Box(-1.0, 1.0, (self.search.action_dim,), np.float32)
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.reward_range = REWARD_RANGES[self.config.reward]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        check_reset_options(options)
        if options and "center" in options:
            self.search.set_center(options["center"])
        return np.zeros((self.num_envs, 2), np.float32), {}

    def step(self, actions: Any):
        a = self.search.check_actions(actions, self.num_envs)
        prompts = self.search.check_prompts(self.search.perturb(a))  # (K, D)
        reward, acc = self.search.rewards(prompts, self.np_random)
        rewards = reward.numpy().astype(np.float64)
        final_obs = np.stack([rewards, np.ones(self.num_envs)], 1).astype(np.float32)
        obs = np.zeros((self.num_envs, 2), np.float32)
        infos = {
            "accuracy": acc.numpy().astype(np.float64),
            "final_obs": final_obs,
            "_final_obs": np.ones(self.num_envs, bool),
        }
        terminated = np.ones(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        return obs, rewards, terminated, truncated, infos
