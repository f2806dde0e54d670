"""AnchoredPolicyAgent (StablePrompt's APPO anchor on the Gaussian policy): beats random search at
equal budget, keeps the mean inside the trust region around the anchor, moves the anchor only on
improvement, rolls back on a drop, repeats itself for a seed, refuses bad settings."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import crlprompt  # noqa: F401 - registers the ids
from crlprompt.agents import AnchoredPolicyAgent, RandomSearch
from crlprompt.errors import ConfigError

from helpers.agents import margin_of
from helpers import envs
from helpers.envs import TINY_PROJ

ENV_KW = {"sigma": 1.0, "reward": "margin"}
make_vec = functools.partial(envs.make_vec, **ENV_KW)  # a call's keywords override ENV_KW


@pytest.fixture(scope="module")
def setup():
    return envs.tiny_search_setup(TINY_PROJ, **ENV_KW)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_beats_random_search_at_equal_budget(setup, seed):
    env = make_vec(setup)
    agent = AnchoredPolicyAgent(env, seed=seed)
    res = agent.learn(256)
    rnd = RandomSearch(env, seed=seed).learn(256)
    assert res.evals == rnd.evals == 256
    # Measured (seeds 0-3): best 0.53-0.59, anchor 0.48-0.54; random search 0.28-0.36.
    assert res.best_reward > rnd.best_reward + 0.15
    assert res.final_reward == pytest.approx(margin_of(setup, res.final_prompt), abs=1e-5)  # the anchor's reward
    assert res.final_reward > rnd.best_reward
    assert agent.anchor_moves >= 5


def test_trust_region_is_measured_to_the_anchor(setup):
    env = make_vec(setup, 8)
    max_kl, noise = 0.5, 1.0
    agent = AnchoredPolicyAgent(env, lr=3.0, max_kl=max_kl, noise_std=noise, seed=0)  # steps far past the region
    agent.learn(64)
    gap = float(np.linalg.norm(agent.mean_action - agent.anchor_action))
    assert gap == pytest.approx(noise * np.sqrt(2 * max_kl), rel=1e-4)  # on the boundary: the projection bound it
    free = AnchoredPolicyAgent(env, lr=3.0, max_kl=1e6, noise_std=noise, seed=0)
    free.learn(64)
    assert float(np.linalg.norm(free.mean_action - free.anchor_action)) > 2 * gap


def test_rolls_back_on_a_drop_and_moves_only_on_improvement(setup):
    """With 16-example minibatch accuracy, the mean's reward is noisy: drops below the anchor
    happen and roll the mean back; every anchor move was an improvement of the measured reward."""
    env = make_vec(setup, 8, reward="accuracy", reward_batch_size=16)
    agent = AnchoredPolicyAgent(env, lr=0.3, seed=0)
    agent.learn(128)
    assert agent.rollbacks > 0 and agent.anchor_moves > 0
    assert agent.anchor_moves + agent.rollbacks <= 128 // 8
    assert len(agent.moves) == agent.anchor_moves and all(after > before for _, before, after in agent.moves)
    strict = AnchoredPolicyAgent(env, lr=0.3, rollback_tol=1.0, seed=0)  # a drop of more than 1 never happens
    strict.learn(128)
    assert strict.rollbacks == 0


def test_same_seed_same_result(setup):
    env = make_vec(setup, 8, reward_batch_size=16)
    a = AnchoredPolicyAgent(env, seed=0).learn(64)
    b = AnchoredPolicyAgent(env, seed=0).learn(64)
    np.testing.assert_array_equal(a.best_prompt, b.best_prompt)
    np.testing.assert_array_equal(a.final_prompt, b.final_prompt)
    assert (a.best_reward, a.final_reward, a.history) == (b.best_reward, b.final_reward, b.history)
    assert not np.array_equal(AnchoredPolicyAgent(env, seed=1).learn(64).best_prompt, a.best_prompt)


def test_bad_input(setup):
    env = make_vec(setup, 8)
    with pytest.raises(ConfigError, match="batch"):
        AnchoredPolicyAgent(env, batch=12)
    with pytest.raises(ConfigError, match="max_kl"):
        AnchoredPolicyAgent(env, max_kl=0.0)
    with pytest.raises(ConfigError, match="rollback_tol"):
        AnchoredPolicyAgent(env, rollback_tol=-0.1)
    with pytest.raises(ConfigError, match="lr"):
        AnchoredPolicyAgent(env, lr=float("nan"))
    with pytest.raises(ValueError, match="budget"):
        AnchoredPolicyAgent(env).learn(4)
