"""Factories of the off-policy and bandit agents (issue 10) for the compare runner's registry.

Each is ``factory(env_id, env_kwargs, seed, *, num_envs, **algo_kwargs) -> (agent, env)``, the
signature of :data:`crlprompt.runners.compare.ALGORITHMS`, which merges :data:`OFFPOLICY_ALGORITHMS`:

=========  ==================================================================  ==================================
name       agent                                                               follows
=========  ==================================================================  ==================================
offpolicy  :class:`~crlprompt.agents.OffPolicyPGAgent`: replay REINFORCE,       CRL-Prompt Eq. 5; Ionides 2008;
           truncated self-normalised mixture importance weights                Veach & Guibas 1995 (mixture)
gp         :class:`~crlprompt.agents.GPBanditAgent`: BoTorch GP, qLogEI,        Eriksson et al. 2019 (TuRBO-1);
           q = K points a round, TuRBO trust region (d <= 200)                 Ament et al. 2023 (qLogEI)
racing     :class:`~crlprompt.agents.RacingSearch`: K candidates raced on       Karnin et al. 2013; Jamieson &
           growing subsets of D_RL (successive halving)                        Talwalkar 2016; Maron & Moore 1994
anchor     :class:`~crlprompt.agents.AnchoredPolicyAgent`: Gaussian policy in   StablePrompt (Kwon et al. 2024)
           a KL ball around an adaptive anchor, rollback on a drop
sac, td3   :class:`~crlprompt.agents.SB3OffPolicyAgent` through the batched     Haarnoja et al. 2018; Fujimoto
           SB3 ``VecEnv`` (gamma = 0, one gradient step per evaluation)         et al. 2018
crossq     the same, sb3-contrib CrossQ                                        Bhatt et al. 2024
ars        the same, sb3-contrib ARS (one policy per step: num_envs = 1)       Mania et al. 2018
=========  ==================================================================  ==================================

``projection_dim`` (gp, sac, td3, crossq, ars) overrides the env's action dimension, as the PPO
factory's does; without it an id whose action is too wide for the agent is refused with an error
that names the ``-Proj`` ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _vector_env(env_id: str, env_kwargs: dict, num_envs: int, projection_dim: int | None = None):
    import gymnasium as gym

    kw = env_kwargs if projection_dim is None else {**env_kwargs, "projection_dim": projection_dim}
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kw)


def offpolicy(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, **kw):
    """Replay policy gradient; a round is one batched forward of K prompts."""
    from ..agents.offpolicy import OffPolicyPGAgent

    env = _vector_env(env_id, env_kwargs, num_envs)
    return OffPolicyPGAgent(env, seed=seed, **kw), env


def gp(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, projection_dim: int | None = None, **kw):
    """GP bandit with q = K points a round (the initial Sobol design is 2K)."""
    from ..agents.bandit import GPBanditAgent

    env = _vector_env(env_id, env_kwargs, num_envs, projection_dim)
    return GPBanditAgent(env, seed=seed, **kw), env


def racing(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, **kw):
    """Racing of ``k`` candidates (default 16) per round; the vector env only lends its search."""
    from ..agents.racing import RacingSearch

    env = _vector_env(env_id, env_kwargs, 1)
    return RacingSearch(env, seed=seed, **kw), env


def anchor(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, **kw):
    """StablePrompt's anchored Gaussian policy; a round is the mean and K − 1 samples."""
    from ..agents.anchor import AnchoredPolicyAgent

    env = _vector_env(env_id, env_kwargs, num_envs)
    return AnchoredPolicyAgent(env, seed=seed, **kw), env


def _sb3(algo: str) -> Callable[..., tuple[Any, Any]]:
    def factory(env_id: str, env_kwargs: dict, seed: int, *, num_envs: int, projection_dim: int | None = None, **kw):
        from ..agents.sb3_offpolicy import SB3OffPolicyAgent

        env = _vector_env(env_id, env_kwargs, 1 if algo == "ars" else num_envs, projection_dim)
        return SB3OffPolicyAgent(env, algo=algo, seed=seed, **kw), env

    factory.__name__ = factory.__qualname__ = algo
    note = " (ARS: num_envs = 1)" if algo == "ars" else ""
    factory.__doc__ = f"SB3 {algo.upper()} through the batched VecEnv adapter{note}."
    return factory


OFFPOLICY_ALGORITHMS: dict[str, Callable[..., tuple[Any, Any]]] = {
    "offpolicy": offpolicy,
    "gp": gp,
    "racing": racing,
    "anchor": anchor,
    **{name: _sb3(name) for name in ("sac", "td3", "crossq", "ars")},
}
