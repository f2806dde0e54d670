"""Stable-Baselines3 off-policy agents (SAC, TD3; sb3-contrib CrossQ and ARS) on the batched vector env.

Needs the ``rl`` extra (``pip install 'crl-prompt[rl]'``; CrossQ and ARS also ``sb3-contrib``).
SB3's ``DummyVecEnv`` steps its envs one by one; :class:`PromptVecEnv` is an SB3 ``VecEnv`` over
the crl-prompt vector env (``gym.make_vec(id, num_envs=K, vectorization_mode=
"vector_entry_point")``) whose ``step_wait`` scores all K actions in one batched call.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from .base import SearchAgent, search_of
from .limits import require_action_dim

#: Above this action dimension the SB3 agents are refused (use a ``-Proj`` id).
MAX_SB3_ACTION_DIM = 1024
ALGOS = ("sac", "td3", "crossq", "ars")

try:
    from stable_baselines3.common.vec_env import VecEnv
except ImportError:  # pragma: no cover - the rl extra is missing; PromptVecEnv() then says what to install
    VecEnv = object


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"SB3OffPolicyAgent needs {module}: pip install {extra}") from e


class PromptVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a crl-prompt gymnasium vector env: ``step_wait`` is one batched ``env.step``.

    Actions from SB3 (in the Box ``[-1, 1]^d``) reach the env unchanged: no private action scaling
    (the registered ids choose σ so that an unchanged SB3 algorithm learns inside the Box; to search
    a wider region pass ``sigma=`` to ``gym.make``, which every agent then sees alike). Every
    sub-env terminates every step (one-step episodes): the returned observations are the reset
    ones and ``infos[k]["terminal_observation"]`` holds the terminal ones, as SB3 expects.
    ``observer(actions (K, d), rewards (K,), accuracies (K,) or None)``, if given, sees every batch
    scored (the agent's bookkeeping). ``reset`` passes SB3's pending seed (``seed()``) and options
    on to the vector env.
    """

    def __init__(self, venv: gym.vector.VectorEnv, observer: Callable[..., None] | None = None):
        _require("stable_baselines3", "'crl-prompt[rl]'")
        if not isinstance(venv.unwrapped, gym.vector.VectorEnv):
            raise TypeError(
                "PromptVecEnv wraps a gymnasium vector env: gym.make_vec(id, num_envs=K, "
                "vectorization_mode='vector_entry_point')"
            )
        search_of(venv)  # fail early on a foreign env
        self.venv, self.observer = venv, observer
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self):
        options = self._options[0] or None
        obs, _ = self.venv.reset(seed=self._seeds[0], options=options)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, np.float32)

    def step_wait(self):
        actions = self._actions  # (K, d) in the Box; the env does not clip
        obs, rewards, terminated, truncated, infos = self.venv.step(actions)  # one batched forward
        if self.observer is not None:
            self.observer(actions, rewards, infos.get("accuracy"))
        dones = np.logical_or(terminated, truncated)
        final_obs = infos.get("final_obs")
        acc = infos.get("accuracy")
        out = [
            {
                "terminal_observation": None if final_obs is None else final_obs[k],
                "TimeLimit.truncated": bool(truncated[k] and not terminated[k]),
                **({} if acc is None else {"accuracy": float(acc[k])}),
            }
            for k in range(self.num_envs)
        ]
        return obs, np.asarray(rewards, np.float32), dones, out  # obs: reset observations (same-step autoreset)

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        default = () if attr_name != "render_mode" else (None,)  # the prompt env renders nothing
        return [getattr(self.venv, attr_name, *default)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        return [getattr(self.venv, method_name)(*args, **kwargs)] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


class SB3OffPolicyAgent(SearchAgent):
    """SB3 SAC or TD3 (or sb3-contrib CrossQ / ARS) on the batched vector env; one env step = K evaluations.

    Runs the off-policy deep-RL algorithms as an outside client would (Haarnoja et al. 2018;
    Fujimoto et al. 2018; Bhatt et al. 2024; ARS: Mania et al. 2018), through :class:`PromptVecEnv`.
    What differs from their defaults, for one-step episodes (a contextual bandit with a constant
    observation):

    * ``gamma=0``: every transition is terminal, so the critic regresses the reward r(a) itself
      (a learned reward model over actions); no bootstrapping, no horizon to discount.
    * ``train_freq=1`` vector step (K evaluations) followed by ``gradient_steps`` updates
      (default K: one critic/actor update per evaluation; raise it to reuse the replay more).
    * ``buffer_size`` (default 20,000) at least the budget: the replay keeps every scored prompt
      (SB3 allocates it up front: 20,000 × d float32 actions, 82 MB at d = 1024; ``learn`` warns
      when the budget exceeds it).
    * ``learning_starts`` = 2K uniformly random actions before the first update.
    * TD3: Gaussian action noise of ``action_noise_std`` (in SB3's [-1, 1] units).
    * SAC, CrossQ: a fixed ``ent_coef=0.01``. SB3's automatic tuning starts the coefficient at 1,
      and with rewards of order 0.1–1 the policy then maximises entropy for the whole budget
      (tiny id, 256 evaluations: its deterministic action scored ~0.0, the center −0.06; with
      0.01 it scores 0.72-0.79, over twice random search's best).
    * ARS evaluates one perturbed policy at a time, so it needs ``num_envs=1`` (K = 1), and a
      whole population of 2·``n_delta`` policies per update, so the budget must be a multiple of
      it; its linear policy gets a bias (the observation is constant) and keeps ARS's own
      ``learning_rate`` and ``delta_std`` (pass them in ``algo_kwargs``); the replay settings
      do not apply.

    The env receives the algorithm's action in [-1, 1]^d as it is: the registered ids are learnable
    by an unchanged SB3 algorithm inside the nominal Box (the tiny id's σ = 2 is chosen for that). Tiny-Proj64-v0 with
    ``reward="margin"``, 256 evaluations, seeds 0-2: SAC's best 0.73-0.80 (its deterministic action
    0.72-0.79), TD3 0.52-0.72, random search 0.33-0.38. With the id's default ``reward="accuracy"``
    (coarse on its small D_RL) neither beats random search's best (SAC 0.72-0.75 vs 0.70-0.77),
    and the deterministic action scores 0.44-0.56. ``final_prompt`` is the
    deterministic action (one extra evaluation), ``best_prompt`` the best action scored. Action
    dimensions above ``MAX_SB3_ACTION_DIM`` (1024) are refused: use a ``-Proj`` id. A second
    ``learn`` continues the same networks and replay buffer (the result covers that call only);
    nothing is saved to disk, so a run is not resumable after the process ends.

    Args:
        env: a crl-prompt vector env, or an id (then ``gym.make_vec(id, num_envs, vectorization_mode=
            "vector_entry_point", **env_kwargs)``).
        algo: ``"sac"``, ``"td3"``, ``"crossq"`` or ``"ars"``.
        seed: seeds the algorithm (torch, numpy) and the env.
        num_envs: K when ``env`` is an id (default 16, ARS 1).
        gradient_steps, learning_starts, buffer_size, batch_size, learning_rate,
            action_noise_std, net_arch: see above (``net_arch``: hidden sizes of actor and critic).
        device: torch device (MLPs this small run best on CPU).
        algo_kwargs: any other argument of the SB3 class.

    SB3's ``learn`` drives the loop, so this agent is a :class:`~crlprompt.agents.base.SearchAgent`
    without ask/tell: :class:`PromptVecEnv` hands each vector step (K evaluations) to the shared
    bookkeeping and an SB3 callback sends the events. The history keeps the points where the best
    improved, and the last one.
    """

    history_every_batch = False

    def __init__(
        self,
        env: gym.vector.VectorEnv | str,
        *,
        algo: str = "sac",
        seed: int = 0,
        num_envs: int | None = None,
        gradient_steps: int | None = None,
        learning_starts: int | None = None,
        buffer_size: int = 20_000,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        action_noise_std: float = 0.2,
        net_arch: tuple[int, ...] = (64, 64),
        device: str = "cpu",
        env_kwargs: dict[str, Any] | None = None,
        **algo_kwargs: Any,
    ):
        if algo not in ALGOS:
            raise ConfigError(f"algo must be one of {ALGOS}, got {algo!r}")
        if isinstance(env, str):
            k = num_envs or (1 if algo == "ars" else 16)
            env = gym.make_vec(env, num_envs=k, vectorization_mode="vector_entry_point", **(env_kwargs or {}))
        if not isinstance(env.unwrapped, gym.vector.VectorEnv):
            raise TypeError(
                "SB3OffPolicyAgent takes a crl-prompt vector env: gym.make_vec(id, num_envs=K, "
                "vectorization_mode='vector_entry_point'), or an env id"
            )
        d = int(np.prod(env.single_action_space.shape))
        require_action_dim(d, MAX_SB3_ACTION_DIM, f"SB3 {algo.upper()}")
        k = env.num_envs
        if algo == "ars" and k != 1:
            raise ConfigError(f"ARS evaluates one policy at a time; make the vector env with num_envs=1 (got {k})")
        if not (isinstance(buffer_size, int) and buffer_size >= k):
            raise ConfigError(f"buffer_size must be an int >= num_envs={k}, got {buffer_size!r}")
        self.env, self.algo, self.buffer_size = env, algo, buffer_size
        super().__init__(env, seed)
        self.vec = PromptVecEnv(env, observer=lambda a, r, acc: self.observe(a, r, accuracies=acc))
        self.model = self._build(
            algo, k, seed=seed, gradient_steps=gradient_steps or k, learning_starts=learning_starts or 2 * k,
            buffer_size=buffer_size, batch_size=batch_size, learning_rate=learning_rate,
            action_noise_std=action_noise_std, net_arch=list(net_arch), device=device, **algo_kwargs,
        )  # fmt: skip

    def _build(self, algo, k, *, seed, gradient_steps, learning_starts, buffer_size, batch_size, learning_rate,
               action_noise_std, net_arch, device, **kw):  # fmt: skip
        if algo == "ars":
            ARS = _require("sb3_contrib", "sb3-contrib").ARS
            # The observation is constant (zeros at reset): without a bias the linear policy's action is 0.
            kw.setdefault("policy_kwargs", {"with_bias": True})
            return ARS("LinearPolicy", self.vec, seed=seed, device=device, **kw)  # ARS's own lr and delta_std
        common = dict(
            gamma=0.0, train_freq=1, gradient_steps=gradient_steps, learning_starts=learning_starts,
            buffer_size=buffer_size, batch_size=batch_size, learning_rate=learning_rate, seed=seed, device=device,
        )  # fmt: skip
        if algo in ("sac", "crossq"):
            kw.setdefault("ent_coef", 0.01)
        if algo == "crossq":
            CrossQ = _require("sb3_contrib", "sb3-contrib").CrossQ
            return CrossQ("MlpPolicy", self.vec, policy_kwargs={"net_arch": net_arch}, **common, **kw)
        sb3 = _require("stable_baselines3", "'crl-prompt[rl]'")
        if algo == "sac":
            return sb3.SAC("MlpPolicy", self.vec, policy_kwargs={"net_arch": net_arch}, **common, **kw)
        from stable_baselines3.common.noise import NormalActionNoise

        d = self.vec.action_space.shape[0]
        noise = NormalActionNoise(np.zeros(d), action_noise_std * np.ones(d))
        return sb3.TD3("MlpPolicy", self.vec, action_noise=noise, policy_kwargs={"net_arch": net_arch}, **common, **kw)

    @property
    def evals_per_update(self) -> int:
        """Evaluations per update: one vector step of K, or ARS's population of 2·n_delta policies."""
        return int(self.model.pop_size) if self.algo == "ars" else self.vec.num_envs

    @property
    def update_text(self) -> str:
        if self.algo == "ars":
            return f"2*n_delta={self.model.pop_size} (one population of policies)"
        return f"num_envs={self.vec.num_envs} (one vector step)"

    def check_budget(self, budget: Any) -> int:
        budget = super().check_budget(budget)
        if self.algo == "ars" and budget % self.model.pop_size:
            raise ConfigError(
                f"ARS scores whole populations of 2*n_delta={self.model.pop_size} policies; "
                f"pass a budget that is a multiple of {self.model.pop_size}, got {budget}"
            )
        if self.algo != "ars" and budget > self.buffer_size:
            warnings.warn(
                f"budget {budget} > buffer_size {self.buffer_size}: the replay drops the oldest prompts; "
                f"pass buffer_size={budget} to keep them all",
                stacklevel=3,
            )
        return budget

    def run_search(self, budget: int) -> None:
        """Train for ``budget`` evaluations (whole vector steps of K)."""
        from stable_baselines3.common.callbacks import BaseCallback

        agent, k = self, self.vec.num_envs

        class _Stop(BaseCallback):
            def _on_step(self) -> bool:
                if not agent.emit():
                    return False
                return agent.evals + k <= budget

        self.model.learn(total_timesteps=budget, callback=_Stop(), reset_num_timesteps=True)

    def finish(self) -> tuple[np.ndarray, float]:
        """The policy's deterministic action and its reward (one extra evaluation, not counted)."""
        final_action = self.policy_action()
        if self.best_prompt is None:  # no step beat -inf: the final action stands for the best
            self.best_action, self.best_prompt = final_action, self.scorer.prompt_for(final_action)
        return self.scorer.prompt_for(final_action), self.scorer.score_one(final_action)

    def policy_action(self) -> np.ndarray:
        """The policy's deterministic action (the env's action) for the constant observation."""
        obs = np.zeros((1, *self.vec.observation_space.shape), np.float32)
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, np.float32).reshape(-1)
