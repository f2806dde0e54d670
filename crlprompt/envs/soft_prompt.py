"""SoftPromptEnv: soft-prompt search on a frozen LM as a Gymnasium environment."""

from __future__ import annotations

import logging
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..scoring import REWARD_RANGES
from .config import EnvConfig
from .search import PromptAccess, PromptSearch, check_reset_options, resolve_search

log = logging.getLogger(__name__)


def _one_thread_after_fork() -> None:
    """A forked worker (``gym.make_vec(..., vectorization_mode="async")`` on Linux's default
    ``fork`` start) inherits the parent's OpenMP thread pool but not its threads: its first
    parallel torch op waits forever. One intra-op thread per worker avoids the pool (and is what
    K worker processes on K cores want anyway)."""
    import torch

    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_after_fork)


class SoftPromptEnv(PromptAccess, gym.Env):
    """Search a soft prompt for a frozen language model; the reward scores it on D_RL (accuracy by default).

    ## Description
    A frozen LM with a soft prompt θ ∈ R^D (deep prefix or shallow) and a frozen classification
    head defines a classifier f(θ, x). The environment holds a *center* prompt and a reward subset
    D_RL of the training data. An action perturbs the center; the reward is how well the
    perturbed prompt classifies D_RL. This is the environment of CRL-Prompt (Algorithm 1): a
    Gaussian policy N(center, σ²I) is exactly an agent that samples ``a ~ N(0, I)``.

    ## Action Space
    ``Box(-1, 1, (d,), float32)``. The evaluated prompt is ``P' = center + σ · A · a`` where A is
    the identity (d = D) or, with ``projection_dim=d``, a fixed seeded Gaussian matrix of shape
    (D, d) with entries N(0, 1/d) (Black-Box-Tuning style; keeps PPO/CMA well conditioned). The
    env does **not** clip: values outside the nominal box are evaluated as given (so Gaussian
    agents get exact N(center, σ²AAᵀ) samples); NaN/inf, wrong shapes and non-float dtypes raise
    :class:`crlprompt.errors.EnvError` (a ``ValueError``) and leave the env unchanged.

    ## Observation Space
    ``Box(-inf, inf, (2,), float32)``: ``[last reward, t / episode_length]``; ``[0, 0]`` after reset.
    The task is a bandit (one step) by default, so the observation carries no state to exploit.

    ## Rewards
    ``reward="accuracy"`` (the default of :class:`EnvConfig`, as in the paper): fraction of D_RL (or
    of a seeded minibatch of ``reward_batch_size`` rows drawn with ``self.np_random``) classified
    correctly by P'. Denser options (:data:`crlprompt.scoring.REWARDS`): ``"ce"`` (mean log p(y), ≤ 0;
    **the registered 16-shot ids use it**, so their rewards are negative), ``"hinge"``, ``"margin"``,
    ``"softmax_diff"``; ``env.unwrapped.reward_range`` is the chosen reward's range
    (:data:`crlprompt.scoring.REWARD_RANGES`). ``info["accuracy"]`` is always the accuracy. ``env.unwrapped.evaluate(...)``
    scores any prompt on a whole split (test included).

    ## Starting State
    The center is the initial prompt (seeded random, or ``checkpoint``'s), or whatever
    ``reset(options={"center": θ})`` set last; an agent training θ by gradients hands θ over this way.

    ## Episode End
    ``episode_length=1`` (default): every step ends with ``terminated=True, truncated=False``.
    With ``episode_length=T > 1`` the center moves by each action within the episode and the
    episode is truncated after T steps (the base center is restored at reset).

    ## Arguments
    One :class:`~crlprompt.envs.EnvConfig` (``SoftPromptEnv(config)``), or its fields as keyword
    options (``gym.make(id, **kwargs)``): the :class:`~crlprompt.build.SetupConfig` names
    (``task``, ``model``, ``prompt``, ``num_tokens``, ``init``, ``seed``, ``data_seed``,
    ``drl_fraction``, ``max_train``, ``data_dir``...) and the env's own (``head``, ``sigma``,
    ``projection_dim``, ``projection_seed``, ``reward``, ``reward_batch_size``,
    ``episode_length``, ``max_drl``, ``probe_rows``, ``checkpoint``, ``max_rows``, ``device``);
    each field's docstring says what it does. ``setup=<a built crlprompt.build.Setup>`` reuses a
    model and data as they are; ``search=`` reuses a whole :class:`PromptSearch`.

    ## Info
    ``{"accuracy": float, "step": int}`` — plain, deterministic values (the lifetime count of
    prompt evaluations is ``env.unwrapped.search.num_evals``).

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self, config: EnvConfig | None = None, *, search: PromptSearch | None = None, render_mode: str | None = None,
        **kwargs: Any,
    ):  # fmt: skip
        super().__init__()
        if render_mode not in (None, *self.metadata["render_modes"]):
            # SB3's make_vec_env asks every env for "rgb_array"; there is no picture of a prompt.
            log.debug("SoftPromptEnv renders only 'ansi' text; render_mode=%r ignored", render_mode)
            render_mode = None
        self.render_mode = render_mode
        self._last: tuple[float, float] | None = None
        self.search = resolve_search(config, search, kwargs)
        self.config = self.search.config
        self.episode_length = self.config.episode_length
        self.action_space = spaces.Box(-1.0, 1.0, (self.search.action_dim,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.reward_range = REWARD_RANGES[self.config.reward]  # e.g. (-inf, 0] for the 16-shot ids' "ce"
        self._base_center = self.search.center.clone()
        self._t = 0

    @property
    def center(self) -> np.ndarray:
        return self.search.center.cpu().numpy()

    def prompt_for(self, action: Any) -> np.ndarray:
        return self.search.prompt_for(action)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        check_reset_options(options)
        if options and "center" in options:
            self.search.set_center(options["center"])
            self._base_center = self.search.center.clone()
        else:
            self.search.center = self._base_center.clone()
        self._t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: Any):
        a = self.search.check_actions(action, None)
        prompts = self.search.check_prompts(self.search.perturb(a))
        reward, acc = self.search.rewards(prompts, self.np_random)
        self._t += 1
        if self.episode_length > 1:
            self.search.center = prompts[0].clone()
        r = float(reward[0])
        obs = np.array([r, self._t / self.episode_length], np.float32)
        terminated = self.episode_length == 1
        truncated = self.episode_length > 1 and self._t >= self.episode_length
        info = {"accuracy": float(acc[0]), "step": self._t}
        self._last = (r, info["accuracy"])
        return obs, r, terminated, truncated, info

    def render(self) -> str | None:
        """``render_mode="ansi"``: one line with the step, the last reward and accuracy, the center's norm."""
        if self.render_mode != "ansi":
            return None
        last = "no step yet" if self._last is None else f"reward {self._last[0]:.4f} accuracy {self._last[1]:.4f}"
        return f"step {self._t}/{self.episode_length}: {last}; |center| {float(self.search.center.norm()):.3f}"

