"""StablePrompt's adaptive anchor (APPO) for a Gaussian prompt policy, acting only through the env API."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from ..errors import ConfigError
from ..losses import centered_ranks
from .base import AskTellAgent


class AnchorRule:
    """StablePrompt's adaptive-anchor bookkeeping, shared by the agents that take ``anchor`` options.

    Feed it the policy's measured (dev) reward once per round with :meth:`observe`; it answers
    what the caller does with its own parameters:

    * ``"measure"``: the policy *is* the anchor (first round, or just rolled back): r_A becomes the
      mean of all the anchor's measurements (with minibatch rewards a single lucky score would
      otherwise trigger rollback after rollback); take a step.
    * ``"move"``: the reward beat r_A: copy the policy into the anchor (r_A = its reward); take a step.
    * ``"rollback"``: the reward fell below r_A − ``rollback_tol``: copy the anchor into the policy,
      clear the optimiser's moments and take no step with this round's samples.
    * ``"hold"``: take a step.

    After a step the caller projects its policy into the trust region around the anchor.
    """

    def __init__(self, rollback_tol: float = 0.0):
        if not (isinstance(rollback_tol, (int, float)) and rollback_tol >= 0):
            raise ConfigError(f"rollback_tol must be a number >= 0, got {rollback_tol!r}")
        self.rollback_tol = float(rollback_tol)
        self.reward = -math.inf
        """r_A: the anchor's measured reward."""
        self.rollbacks = 0
        self.moves: list[tuple[int, float, float]] = []
        """``(evaluations, r_A before, r_A after)`` of each anchor move."""
        self._sum, self._n, self.at_anchor = 0.0, 0, True

    def observe(self, reward: float, evals: int) -> str:
        """The verdict on a round whose policy scored ``reward`` (after ``evals`` evaluations)."""
        if self.at_anchor:
            self._sum, self._n, self.at_anchor = self._sum + reward, self._n + 1, False
            self.reward = self._sum / self._n
            return "measure"
        if reward > self.reward:
            self.moves.append((evals, self.reward, reward))
            self.reward, self._sum, self._n = reward, reward, 1
            return "move"
        if reward < self.reward - self.rollback_tol:
            self.rollbacks += 1
            self.at_anchor = True
            return "rollback"
        return "hold"


def project_to_ball(m: np.ndarray, anchor: np.ndarray, radius: float) -> np.ndarray:
    """m moved onto the ball of ``radius`` around ``anchor`` if it lies outside: for two Gaussians
    of one covariance s²I, KL = ‖m − m_A‖²/(2s²), so a KL bound is this ball of radius s·√(2·KL)."""
    gap = float(np.linalg.norm(m - anchor))
    return m if gap <= radius else anchor + (m - anchor) * (radius / gap)


class AnchoredPolicyAgent(AskTellAgent):
    """A Gaussian policy N(m, noise_std² I) held in a trust region around an adaptive anchor.

    Follows StablePrompt (Kwon et al., EMNLP 2024), whose Adaptive PPO (APPO) measures the
    policy's trust region against an *anchor* rather than the previous policy: the anchor is
    replaced by the current policy only when the policy's (dev) reward beats the anchor's, and
    training rolls back to the anchor when the reward drops. What differs: StablePrompt anchors
    an LLM that *writes* discrete prompts and penalises KL to it inside PPO; here the policy is
    the paper's Gaussian over the env's action, the gradient is an OpenAI-ES estimate, the trust
    region is hard (KL(π‖π_anchor) = ‖m − m_anchor‖² / (2·noise_std²) <= ``max_kl``, enforced by
    projecting m), and the "dev reward" is the env reward of the mean (D_RL or its minibatch).

    Each round scores one batch through the env: the mean m itself and ``batch − 1`` samples
    m + noise_std·ε. Then, with r(m) the mean's reward and r_A the anchor's:

    * m is the anchor (first round, or just rolled back): r_A becomes the mean of all the
      anchor's measurements (with minibatch rewards a single lucky score would otherwise
      trigger rollback after rollback), and m takes a step;
    * r(m) > r_A: the anchor moves to m (r_A = r(m)) — an accepted step;
    * r(m) < r_A − ``rollback_tol``: m rolls back to the anchor, Adam's moments are cleared,
      and this round takes no step (its samples were drawn around the rejected mean);
    * otherwise m takes an Adam step on the centered-rank gradient of the samples, then is
      projected into the trust region around the anchor.

    ``anchor_moves`` and ``rollbacks`` count the two events in the last ``learn``. The result's
    ``final_prompt`` is the anchor and ``final_reward`` r_A (its measured reward; no extra
    evaluation). Not resumable.

    Args:
        env: a soft-prompt env or its vector form (``batch`` a multiple of num_envs).
        batch: actions per round, the mean included (default: the vector env's K, else 16; >= 3).
        noise_std: exploration noise in action units.
        lr: Adam step size on m.
        max_kl: trust-region radius as a KL to the anchor (same covariance: a ball of radius
            noise_std·sqrt(2·max_kl) around the anchor's mean).
        rollback_tol: the drop of r(m) below r_A that triggers a rollback (reward units).
        seed: seeds the noise and the env.

    Events carry the round's verdict (``anchor``: measure, move, rollback, hold), ``anchor_reward``
    r_A and ``kl_to_anchor`` after the step.
    """

    algo = "anchor"

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        batch: int | None = None,
        noise_std: float = 1.0,
        lr: float = 0.1,
        max_kl: float = 2.0,
        rollback_tol: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(env, seed)
        k = self.scorer.batch
        self.batch = batch or (k if self.scorer.vector else 16)
        if not (isinstance(self.batch, int) and self.batch >= 3 and self.batch % k == 0):
            raise ConfigError(
                f"batch must be an int >= 3 and a multiple of the vector env's num_envs={k}, got {batch!r}"
            )
        for name, v in (("noise_std", noise_std), ("lr", lr), ("max_kl", max_kl)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
        AnchorRule(rollback_tol)  # validates
        self.noise_std, self.lr, self.max_kl = float(noise_std), float(lr), float(max_kl)
        self.rollback_tol = float(rollback_tol)
        self.anchor_moves = 0
        """Times the anchor moved to the mean in the last ``learn``."""
        self.rollbacks = 0
        """Times the mean rolled back to the anchor in the last ``learn``."""
        self.moves: list[tuple[int, float, float]] = []
        """``(evaluations, r_A before, r_A after)`` of each anchor move in the last ``learn``."""
        self.mean_action: np.ndarray | None = None
        self.anchor_action: np.ndarray | None = None

    @property
    def evals_per_update(self) -> int:
        return self.batch

    @property
    def update_text(self) -> str:
        return f"batch={self.batch} (one round)"

    def start(self) -> None:
        d = self.scorer.action_dim
        self.rng = np.random.default_rng(self.seed)
        self.m, self._anchor_m = np.zeros(d), np.zeros(d)  # float64 means in action units; m starts at the anchor
        self.rule = AnchorRule(self.rollback_tol)
        self._adam = (np.zeros(d), np.zeros(d), 0)  # first and second moments, step count

    def ask(self) -> np.ndarray:
        self._eps = self.rng.standard_normal((self.batch - 1, self.scorer.action_dim))  # (n, d)
        return np.concatenate([self.m[None], self.m + self.noise_std * self._eps]).astype(np.float32)  # row 0: the mean

    def tell(self, actions: np.ndarray, rewards: np.ndarray) -> dict:
        eps, n, b1, b2 = self._eps, self.batch - 1, 0.9, 0.999
        verdict = self.rule.observe(float(rewards[0]), self.evals)
        if verdict == "move":
            self._anchor_m = self.m.copy()
        elif verdict == "rollback":
            self.m = self._anchor_m.copy()
            self._adam = (np.zeros_like(self.m), np.zeros_like(self.m), 0)
        if verdict != "rollback":  # a rollback takes no step: the samples were drawn around the rejected mean
            w = centered_ranks(torch.from_numpy(rewards[1:])).numpy().astype(np.float64)  # (n,)
            grad = (w @ eps) / (n * self.noise_std)  # (d,) ascent direction
            adam_m, adam_v, t = self._adam
            t += 1
            adam_m = b1 * adam_m + (1 - b1) * grad
            adam_v = b2 * adam_v + (1 - b2) * grad**2
            self._adam = (adam_m, adam_v, t)
            m = self.m + self.lr * (adam_m / (1 - b1**t)) / (np.sqrt(adam_v / (1 - b2**t)) + 1e-8)
            radius = self.noise_std * math.sqrt(2 * self.max_kl)
            self.m = project_to_ball(m, self._anchor_m, radius)  # the trust region is measured to the anchor
        gap = self.m - self._anchor_m
        return {"anchor": verdict, "anchor_reward": self.rule.reward,
                "kl_to_anchor": float(gap @ gap) / (2 * self.noise_std**2)}  # fmt: skip

    def finish(self) -> tuple[np.ndarray, float]:
        """The anchor and its measured reward r_A (no extra evaluation)."""
        rule = self.rule
        self.anchor_moves, self.rollbacks, self.moves = len(rule.moves), rule.rollbacks, rule.moves
        self.mean_action, self.anchor_action = self.m.astype(np.float32), self._anchor_m.astype(np.float32)
        return self.scorer.prompt_for(self.anchor_action), rule.reward
