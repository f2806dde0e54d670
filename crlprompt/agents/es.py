"""A Gaussian bandit trained by OpenAI-ES, acting only through the soft-prompt env API."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch

from ..errors import ConfigError
from ..losses import centered_ranks, estimator_loss, sample_actions
from .base import ActionScorer, Callback, SearchResult, check_budget


class ESAgent:
    """OpenAI-ES (Salimans et al. 2017) on the env's action: a Gaussian policy N(m, noise_std² I).

    Each update draws ``pop`` antithetic pairs ``m ± noise_std·ε_j`` (2·pop actions), scores them
    with the env (with a vector env, K at a time in one batched forward), shapes the rewards by
    centered ranks and estimates the gradient of the expected reward with respect to m::

        g = Σ_j (w_j⁺ − w_j⁻) ε_j / (2 · pop · noise_std)

    which :class:`torch.optim.Adam` ascends, in float64: g is minus the gradient of the antithetic
    REINFORCE loss of :mod:`crlprompt.losses` on the ranks, for π = N(m, noise_std² I). Actions are
    not clipped, so the evaluated prompts are exact samples of N(center + σ A m, σ² noise_std² A Aᵀ).
    The best sample seen is kept as well as the mean.

    Args:
        env: a soft-prompt env or its vector form (then ``2·pop`` must be a multiple of K).
        pop: antithetic pairs per update (default: K/2 for a vector env, else 16).
        noise_std: exploration noise in action units (the prompt moves by σ·noise_std).
        lr: Adam step size on m (action units).
        betas, eps: Adam moments.
        move_center: after each update hand the new mean to the env as its center
            (``reset(options={"center": ...})``) and set m back to 0; the search is the same,
            but the env then sits at the current solution and m stays small (identity actions).
        seed: seeds the noise and the env (minibatch draws).
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        pop: int | None = None,
        noise_std: float = 1.0,
        lr: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        move_center: bool = False,
        seed: int = 0,
    ):
        self.scorer = ActionScorer(env)
        k = self.scorer.batch
        self.pop = pop or (max(1, k // 2) if self.scorer.vector else 16)
        if self.pop < 1 or (2 * self.pop) % k:
            raise ConfigError(
                f"2*pop = {2 * self.pop} actions per update must be a multiple of the vector env's num_envs={k}; "
                f"use pop={max(1, k // 2)} or make the vector env with num_envs=2*pop"
            )
        if not noise_std > 0:
            raise ConfigError(f"noise_std must be > 0, got {noise_std}")
        if not lr > 0:
            raise ConfigError(f"lr must be > 0, got {lr}")
        self.noise_std, self.lr, self.betas, self.eps = float(noise_std), float(lr), betas, eps
        self.move_center = move_center
        self.seed = seed
        self.mean_action: np.ndarray | None = None
        """The mean action m after ``learn`` (0 with ``move_center``: the env's center is the mean)."""

    def learn(self, budget: int, callback: Callback | None = None) -> SearchResult:
        """Run ``budget // (2·pop)`` updates (one evaluation per sampled action)."""
        n = 2 * self.pop
        budget = check_budget(budget, n, f"one update of 2*pop={n} evaluations")
        start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        d = self.scorer.action_dim
        self.scorer.reset(seed=self.seed)
        m = torch.zeros(d, dtype=torch.float64, requires_grad=True)  # mean action
        opt = torch.optim.Adam([m], lr=self.lr, betas=self.betas, eps=self.eps)
        best_prompt, best_r = self.scorer.prompt_for(m.detach().numpy()), -np.inf
        evals, history = 0, []
        for _ in range(budget // n):
            noise = torch.from_numpy(sample_actions(rng, n, d, "antithetic", dtype=np.float64))  # (2·pop, d): ±ε
            samples = m.detach() + self.noise_std * noise  # (2·pop, d)
            actions = samples.numpy().astype(np.float32)
            rewards = self.scorer(actions)  # (2·pop,)
            evals += n
            i = int(np.argmax(rewards))
            if rewards[i] > best_r:
                best_prompt, best_r = self.scorer.prompt_for(actions[i]), float(rewards[i])
            history.append((evals, best_r))

            ranks = centered_ranks(torch.from_numpy(rewards)).double()  # (2·pop,) in [-0.5, 0.5]
            opt.zero_grad(set_to_none=True)
            estimator_loss(m, samples, ranks, self.noise_std, "antithetic").backward()  # ∇m = -g
            opt.step()
            if self.move_center:
                # Actions are affine in the prompt, so re-centering on the mean keeps Adam's moments valid.
                self.scorer.reset(center=self.scorer.prompt_for(m.detach().numpy()))
                with torch.no_grad():
                    m.zero_()
            if callback is not None and callback(evals, best_r) is False:
                break
        self.mean_action = m.detach().numpy().copy()
        final_prompt = self.scorer.prompt_for(self.mean_action)
        final_r = self.scorer.score_one(self.mean_action.astype(np.float32))
        return SearchResult(
            best_prompt=best_prompt, best_reward=best_r, final_prompt=final_prompt, final_reward=final_r,
            history=history, evals=evals, seconds=time.perf_counter() - start, algo="es",
        )  # fmt: skip
