"""Stable-Baselines3 PPO on the soft-prompt env, with the same budget and result as the other agents.

Needs the ``rl`` extra (``pip install 'crl-prompt[rl]'``). Give PPO a projected env
(``CRLPrompt/...-Proj64-v0`` or ``projection_dim=64``): its diagonal Gaussian over a D = 92k..368k
dimensional action blows up (KL of 1e17 in one update, NaN means).
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from .anchor import AnchorRule
from .base import SearchAgent, search_of

#: Above this action dimension PPO's diagonal Gaussian is a doubtful choice (DESIGN, STYLE 3).
MAX_PPO_ACTION_DIM = 1024


def _require_sb3():
    try:
        import stable_baselines3
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("PPOPromptAgent needs stable-baselines3: pip install 'crl-prompt[rl]'") from e
    return stable_baselines3


class _Tracker(gym.Wrapper):
    """Hands each step PPO takes to the agent's bookkeeping (it does not change what PPO sends to the env)."""

    def __init__(self, env: gym.Env, agent: SearchAgent):
        super().__init__(env)
        self.agent = agent

    def step(self, action):
        action = np.asarray(action, np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        acc = info.get("accuracy")
        self.agent.observe(action[None], np.array([reward], np.float64),
                            accuracies=None if acc is None else np.array([acc], np.float64))  # fmt: skip
        return obs, reward, terminated, truncated, info


class PPOPromptAgent(SearchAgent):
    """SB3 PPO on a soft-prompt env; one timestep = one prompt evaluation.

    The observation is constant at the start of each (one-step) episode, so the policy is in
    effect a state-independent diagonal Gaussian over actions, trained by clipped policy
    gradients. PPO clips sampled actions to the env's Box ``[-1, 1]^d`` before the env sees them,
    so it searches center ± σ·A·[-1, 1]^d: the registered ids choose σ so that this box moves
    predictions. The result's ``final_prompt`` is the deterministic action (the policy mean);
    ``best_prompt`` is the best action PPO actually had scored.

    Args:
        env: a soft-prompt env (``gym.make("CRLPrompt/Tiny-Proj64-v0")``) or an env id.
        seed: seeds PPO (torch, numpy, env resets and minibatch draws).
        n_steps, batch_size, n_epochs, learning_rate, clip_range, ent_coef: PPO's, set for a
            small bandit (short rollouts, many updates).
        log_std_init: initial log standard deviation of PPO's Gaussian (in its own ``[-1, 1]`` units).
        net_arch: hidden sizes of the policy and value MLPs.
        device: torch device of the policy (MLPs run best on CPU).
        anchor_kl: StablePrompt's adaptive anchor (Kwon et al. 2024, APPO) as a stabiliser; None =
            off (plain PPO). See :class:`_PPOAnchor`: PPO's clipped step stays, and on top of it
            the policy is held within KL(π‖π_anchor) <= anchor_kl of an anchor that moves to the
            policy when a rollout's mean reward beats the anchor's, the policy rolling back to it
            when the reward drops by more than ``rollback_tol``. ``learn`` then ends with the
            policy at its anchor (``final_prompt`` is the anchor's deterministic action).
        rollback_tol: see ``anchor_kl``.
        env_kwargs: passed to ``gym.make`` when ``env`` is an id.
        ppo_kwargs: any other ``stable_baselines3.PPO`` argument (``tensorboard_log``, ``verbose``, ...).

    SB3's ``learn`` drives the loop, so this agent is a :class:`~crlprompt.agents.base.SearchAgent`
    without ask/tell: a wrapper hands each env step (one evaluation) to the shared bookkeeping and
    an SB3 callback sends the events (with ``anchor_kl``: ``kl_to_anchor``, the last projection's KL).
    The history keeps the points where the best improved, and the last one.
    """

    algo = "ppo"
    history_every_batch = False

    def __init__(
        self,
        env: gym.Env | str,
        *,
        seed: int = 0,
        n_steps: int = 64,
        batch_size: int = 32,
        n_epochs: int = 10,
        learning_rate: float = 3e-3,
        clip_range: float = 0.2,
        ent_coef: float = 0.0,
        log_std_init: float = -0.5,
        net_arch: tuple[int, ...] = (32,),
        device: str = "cpu",
        anchor_kl: float | None = None,
        rollback_tol: float = 0.0,
        env_kwargs: dict[str, Any] | None = None,
        **ppo_kwargs: Any,
    ):
        sb3 = _require_sb3()
        if anchor_kl is not None and not (isinstance(anchor_kl, (int, float)) and 0 < anchor_kl < np.inf):
            raise ConfigError(f"anchor_kl must be a finite number > 0 or None (no anchor), got {anchor_kl!r}")
        AnchorRule(rollback_tol)  # validates
        self.anchor_kl, self.rollback_tol = anchor_kl, float(rollback_tol)
        self.anchor: _PPOAnchor | None = None
        """The last ``learn``'s anchor (``rule.moves``, ``rule.rollbacks``, ``kls``), with ``anchor_kl``."""
        if isinstance(env, str):
            env = gym.make(env, **(env_kwargs or {}))
        if isinstance(env.unwrapped, gym.vector.VectorEnv):
            raise TypeError("PPOPromptAgent takes a single env (gym.make), not a gymnasium vector env")
        search_of(env)  # fail early on a foreign env
        d = int(np.prod(env.action_space.shape))
        if d > MAX_PPO_ACTION_DIM:
            warnings.warn(
                f"PPO on a {d}-dimensional action is unstable (a diagonal Gaussian this wide takes huge, NaN-"
                f"prone steps); use a projected env such as CRLPrompt/...-Proj64-v0 or projection_dim=64",
                stacklevel=2,
            )
        self.env = env
        super().__init__(env, seed)
        self.tracker = _Tracker(env, self)
        self.model = sb3.PPO(
            "MlpPolicy",
            self.tracker,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            learning_rate=learning_rate,
            clip_range=clip_range,
            ent_coef=ent_coef,
            gamma=1.0,  # one-step episodes: the return is the reward
            policy_kwargs={"log_std_init": log_std_init, "net_arch": list(net_arch)},
            seed=seed,
            device=device,
            **ppo_kwargs,
        )

    @property
    def evals_per_update(self) -> int:
        return 1

    @property
    def update_text(self) -> str:
        return "1 (one env step)"

    def run_search(self, budget: int) -> None:
        """Train PPO for exactly ``budget`` env steps (prompt evaluations)."""
        from stable_baselines3.common.callbacks import BaseCallback

        agent = self

        class _Stop(BaseCallback):
            def _on_step(self) -> bool:
                kl = {} if agent.anchor_kl is None or not agent.anchor.kls else {"kl_to_anchor": agent.anchor.kls[-1]}
                if not agent.emit(kl):
                    return False
                return agent.evals < budget  # stop mid-rollout at the budget

        callbacks = [_Stop()]
        if self.anchor_kl is not None:
            self.anchor = _PPOAnchor(self.model, self, self.anchor_kl, self.rollback_tol)
            callbacks.append(self.anchor.callback())
        self.model.learn(total_timesteps=budget, callback=callbacks, reset_num_timesteps=True)
        if self.anchor_kl is not None:
            self.anchor.restore()  # the result is the anchor

    def finish(self) -> tuple[np.ndarray, float]:
        """PPO's deterministic action and its reward (one extra env step, not counted)."""
        search = search_of(self.env)
        final_action = self.policy_mean()
        if self.best_prompt is None:  # no step beat -inf: the final action stands for the best
            self.best_action, self.best_prompt = final_action, search.prompt_for(final_action)
        final_prompt = search.prompt_for(final_action)
        self.env.reset()
        _, final_r, *_ = self.env.step(final_action)
        return final_prompt, float(final_r)

    def policy_mean(self) -> np.ndarray:
        """PPO's deterministic action (the policy mean, clipped to the Box) after a reset."""
        obs, _ = self.env.reset()
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, np.float32)


class _PPOAnchor:
    """StablePrompt's adaptive anchor around SB3 PPO's actor, through SB3 callbacks.

    At each rollout's end (advantages computed, before ``train``) the rollout's mean reward, the
    expected reward of the policy that drew it, is the dev reward that
    :class:`~crlprompt.agents.anchor.AnchorRule` judges: on ``"move"`` the actor is copied into
    the anchor; on ``"rollback"`` the anchor is copied into the actor, Adam's moments are cleared
    and the rollout's advantages are zeroed, so the coming ``train`` does not move the actor with
    samples of the rejected policy (the critic still fits their rewards). After each ``train``
    (at the next rollout's start, and at the end of ``learn``) the actor's parameters are pulled
    back along the line to the anchor's, by bisection, until KL(π‖π_anchor) <= ``max_kl`` at the
    constant observation. What differs from StablePrompt: their KL to the anchor is a penalty in
    PPO's loss on an LLM that writes prompts; here it is a hard bound on a Gaussian over actions.
    """

    def __init__(self, model, agent: SearchAgent, max_kl: float, rollback_tol: float):
        import torch

        self.model, self.agent, self.max_kl = model, agent, float(max_kl)
        self.rule = AnchorRule(rollback_tol)
        self.keys = [k for k in model.policy.state_dict() if "value" not in k]  # the actor and log_std
        self.anchor = self._actor()
        self.kls: list[float] = []
        """KL(π‖π_anchor) after each projection."""
        self.projections = 0
        """Times the actor was pulled back into the trust region."""
        self._torch = torch

    def _actor(self) -> dict:
        sd = self.model.policy.state_dict()
        return {k: sd[k].detach().clone() for k in self.keys}

    def _load(self, actor: dict) -> None:
        self.model.policy.load_state_dict(actor, strict=False)

    def restore(self) -> None:
        """Put the anchor's actor into the policy."""
        self._load(self.anchor)

    def kl(self) -> float:
        """KL(π‖π_anchor) of the diagonal Gaussians at the (constant) observation."""
        torch, policy = self._torch, self.model.policy
        obs = torch.as_tensor(self.model._last_obs, device=policy.device)
        with torch.no_grad():
            new = policy.get_distribution(obs).distribution
            current = self._actor()
            self._load(self.anchor)
            old = policy.get_distribution(obs).distribution
            self._load(current)
            return float(torch.distributions.kl_divergence(new, old).sum(-1).max())

    def project(self) -> None:
        kl = self.kl()
        if kl > self.max_kl:
            new, lo, hi = self._actor(), 0.0, 1.0
            for _ in range(30):  # the largest step toward the new actor whose KL to the anchor fits
                mid = (lo + hi) / 2
                self._load({k: self.anchor[k] + mid * (new[k] - self.anchor[k]) for k in self.keys})
                lo, hi = (mid, hi) if self.kl() <= self.max_kl else (lo, mid)
            self._load({k: self.anchor[k] + lo * (new[k] - self.anchor[k]) for k in self.keys})
            self.projections += 1
            kl = self.kl()
        self.kls.append(kl)

    def on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        verdict = self.rule.observe(float(buffer.rewards.mean()), self.agent.evals)
        if verdict == "move":
            self.anchor = self._actor()
        elif verdict == "rollback":
            self._load(self.anchor)
            self.model.policy.optimizer.state.clear()
            buffer.advantages[:] = 0.0  # no actor step with the rejected policy's samples

    def callback(self):
        from stable_baselines3.common.callbacks import BaseCallback

        anchor = self

        class _Anchor(BaseCallback):
            def _on_rollout_start(self) -> None:
                if self.model._n_updates:  # a train() ran since the last rollout
                    anchor.project()

            def _on_rollout_end(self) -> None:
                anchor.on_rollout_end()

            def _on_training_end(self) -> None:
                anchor.project()

            def _on_step(self) -> bool:
                return True

        return _Anchor()
