"""A Gaussian bandit trained by OpenAI-ES, acting only through the soft-prompt env API."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from ..errors import ConfigError
from ..losses import centered_ranks, estimator_loss, sample_actions
from .anchor import AnchorRule, project_to_ball
from .base import AskTellAgent


class ESAgent(AskTellAgent):
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
        anchor_kl: StablePrompt's adaptive anchor (Kwon et al. 2024) as a stabiliser; None = off.
            The mean's dev reward is the population's mean reward (the Gaussian-smoothed reward
            at m: no extra evaluation); by :class:`~crlprompt.agents.anchor.AnchorRule` the anchor
            moves to m when it improves, m rolls back to the anchor when it drops by more than
            ``rollback_tol`` (Adam's moments cleared, no step that round), and after each step m
            is projected so that KL(π‖π_anchor) = ‖m − m_A‖²/(2·noise_std²) <= anchor_kl. The
            result's ``final_prompt`` is then the anchor. Not with ``move_center``.
        rollback_tol: see ``anchor_kl``.
        seed: seeds the noise and the env (minibatch draws).

    Events carry ``mean_reward`` (the population's) and, with ``anchor_kl``, the anchor's verdict
    and ``kl_to_anchor``.
    """

    algo = "es"

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
        anchor_kl: float | None = None,
        rollback_tol: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(env, seed)
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
        if anchor_kl is not None and not (isinstance(anchor_kl, (int, float)) and 0 < anchor_kl < np.inf):
            raise ConfigError(f"anchor_kl must be a finite number > 0 or None (no anchor), got {anchor_kl!r}")
        if anchor_kl is not None and move_center:
            raise ConfigError("anchor_kl bounds the mean's distance to an anchor in action units; not with move_center")
        AnchorRule(rollback_tol)  # validates
        self.move_center, self.anchor_kl, self.rollback_tol = move_center, anchor_kl, float(rollback_tol)
        self.anchor: AnchorRule | None = None
        """The last ``learn``'s anchor bookkeeping (``moves``, ``rollbacks``, ``reward``), with ``anchor_kl``."""
        self.anchor_action: np.ndarray | None = None
        self.mean_action: np.ndarray | None = None
        """The mean action m after ``learn`` (0 with ``move_center``: the env's center is the mean)."""

    @property
    def evals_per_update(self) -> int:
        return 2 * self.pop

    @property
    def update_text(self) -> str:
        return f"2*pop={2 * self.pop} (one update)"

    def start(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        d = self.scorer.action_dim
        self.m = torch.zeros(d, dtype=torch.float64, requires_grad=True)  # mean action
        self.opt = torch.optim.Adam([self.m], lr=self.lr, betas=self.betas, eps=self.eps)
        self.anchor = None if self.anchor_kl is None else AnchorRule(self.rollback_tol)
        self._anchor_m = np.zeros(d)  # m_A (action units), with anchor_kl

    def ask(self) -> np.ndarray:
        n = 2 * self.pop
        noise = torch.from_numpy(sample_actions(self.rng, n, self.scorer.action_dim, "antithetic", dtype=np.float64))
        self._samples = self.m.detach() + self.noise_std * noise  # (2·pop, d): m ± noise_std·ε
        return self._samples.numpy().astype(np.float32)

    def tell(self, actions: np.ndarray, rewards: np.ndarray) -> dict:
        m, rule = self.m, self.anchor
        diagnostics = {"mean_reward": float(rewards.mean())}
        if rule is not None:
            verdict = diagnostics["anchor"] = rule.observe(float(rewards.mean()), self.evals)  # smoothed reward at m
            if verdict == "move":
                self._anchor_m = m.detach().numpy().copy()
            elif verdict == "rollback":  # back to the anchor, fresh moments, no step with these samples
                with torch.no_grad():
                    m.copy_(torch.from_numpy(self._anchor_m))
                self.opt = torch.optim.Adam([m], lr=self.lr, betas=self.betas, eps=self.eps)
                return diagnostics
        ranks = centered_ranks(torch.from_numpy(rewards)).double()  # (2·pop,) in [-0.5, 0.5]
        self.opt.zero_grad(set_to_none=True)
        estimator_loss(m, self._samples, ranks, self.noise_std, "antithetic").backward()  # ∇m = -g
        self.opt.step()
        if rule is not None:  # the trust region is measured to the anchor, not to the last mean
            radius = self.noise_std * np.sqrt(2 * self.anchor_kl)
            with torch.no_grad():
                m.copy_(torch.from_numpy(project_to_ball(m.detach().numpy(), self._anchor_m, radius)))
            gap = m.detach().numpy() - self._anchor_m
            diagnostics["kl_to_anchor"] = float(gap @ gap) / (2 * self.noise_std**2)
        if self.move_center:
            # Actions are affine in the prompt, so re-centering on the mean keeps Adam's moments valid.
            self.scorer.reset(center=self.scorer.prompt_for(m.detach().numpy()))
            with torch.no_grad():
                m.zero_()
        return diagnostics

    def finish(self) -> tuple[np.ndarray, float]:
        """The mean (or, with ``anchor_kl``, the anchor) and its reward: one extra evaluation, not counted."""
        self.mean_action = self.m.detach().numpy().copy()
        self.anchor_action = None if self.anchor is None else self._anchor_m.astype(np.float32)
        final = self.mean_action if self.anchor is None else self._anchor_m  # with an anchor, the anchor is the result
        return self.scorer.prompt_for(final), self.scorer.score_one(final.astype(np.float32))
