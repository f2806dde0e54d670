"""StablePrompt's adaptive anchor as a stabiliser option of ESAgent and PPOPromptAgent (``anchor_kl``):
off by default; with it, the mean / actor stays within the KL bound of the anchor, the anchor moves
only on improvement, noisy rewards trigger rollbacks, the result is the anchor, same seed same
result; bad settings are refused."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

import crlprompt  # noqa: F401 - registers the ids
from crlprompt.agents import ESAgent, PPOPromptAgent, RandomSearch
from crlprompt.agents.anchor import AnchorRule, project_to_ball
from crlprompt.errors import ConfigError

from helpers.agents import margin_of
from helpers import envs
from helpers.envs import TINY_PROJ

ENV_KW = {"sigma": 2.0, "reward": "margin"}
make_vec = functools.partial(envs.make_vec, **ENV_KW)  # a call's keywords override ENV_KW


@pytest.fixture(scope="module")
def setup():
    return envs.tiny_search_setup(TINY_PROJ, **ENV_KW)


def test_anchor_rule_verdicts():
    rule = AnchorRule(rollback_tol=0.1)
    assert rule.observe(0.5, 1) == "measure" and rule.reward == 0.5
    assert rule.observe(0.45, 2) == "hold"  # within the tolerance
    assert rule.observe(0.7, 3) == "move" and rule.reward == 0.7 and rule.moves == [(3, 0.5, 0.7)]
    assert rule.observe(0.55, 4) == "rollback" and rule.rollbacks == 1
    assert rule.observe(0.6, 5) == "measure" and rule.reward == pytest.approx(0.65)  # mean of 0.7 and 0.6
    np.testing.assert_allclose(project_to_ball(np.array([3.0, 4.0]), np.zeros(2), 1.0), [0.6, 0.8])
    np.testing.assert_array_equal(project_to_ball(np.array([0.3, 0.4]), np.zeros(2), 1.0), [0.3, 0.4])
    with pytest.raises(ConfigError, match="rollback_tol"):
        AnchorRule(-1.0)


# ----------------------------------------------------------------------------- ES


@pytest.mark.slow
def test_es_anchor_is_off_by_default_and_beats_random(setup):
    env = make_vec(setup)
    plain = ESAgent(env, seed=0)
    plain.learn(64)
    assert plain.anchor is None and plain.anchor_action is None
    agent = ESAgent(env, anchor_kl=2.0, seed=0)
    res = agent.learn(256)
    rnd = RandomSearch(env, seed=0).learn(256)
    # Measured (seeds 0-2): best 0.48-0.58 (plain ES 0.55-0.59), random search 0.33-0.38.
    assert res.best_reward > rnd.best_reward + 0.1
    np.testing.assert_allclose(res.final_prompt, agent.scorer.prompt_for(agent.anchor_action), atol=1e-6)
    assert res.final_reward == pytest.approx(margin_of(setup, res.final_prompt), abs=1e-5)  # the anchor's reward
    assert len(agent.anchor.moves) >= 3 and all(after > before for _, before, after in agent.anchor.moves)


def test_es_trust_region_is_measured_to_the_anchor(setup):
    env = make_vec(setup, 8)
    agent = ESAgent(env, lr=3.0, anchor_kl=0.5, seed=0)  # steps far past the region
    agent.learn(64)
    gap = float(np.linalg.norm(agent.mean_action - agent.anchor_action))
    assert gap == pytest.approx(np.sqrt(2 * 0.5), rel=1e-4)  # noise_std = 1: on the boundary
    free = ESAgent(env, lr=3.0, anchor_kl=1e6, seed=0)
    free.learn(64)
    assert float(np.linalg.norm(free.mean_action - free.anchor_action)) > 2 * gap


def test_es_rolls_back_on_noisy_rewards(setup):
    env = make_vec(setup, 8, reward="accuracy", reward_batch_size=16)
    agent = ESAgent(env, anchor_kl=2.0, lr=0.3, seed=0)
    agent.learn(128)
    assert agent.anchor.rollbacks > 0
    strict = ESAgent(env, anchor_kl=2.0, lr=0.3, rollback_tol=1.0, seed=0)  # a drop of more than 1 never happens
    strict.learn(128)
    assert strict.anchor.rollbacks == 0


def test_es_anchor_same_seed_same_result_and_bad_input(setup):
    env = make_vec(setup, 8, reward_batch_size=16)
    a = ESAgent(env, anchor_kl=1.0, seed=0).learn(64)
    b = ESAgent(env, anchor_kl=1.0, seed=0).learn(64)
    np.testing.assert_array_equal(a.final_prompt, b.final_prompt)
    assert (a.best_reward, a.final_reward, a.history) == (b.best_reward, b.final_reward, b.history)
    with pytest.raises(ConfigError, match="anchor_kl"):
        ESAgent(env, anchor_kl=0.0)
    with pytest.raises(ConfigError, match="move_center"):
        ESAgent(env, anchor_kl=1.0, move_center=True)
    with pytest.raises(ConfigError, match="rollback_tol"):
        ESAgent(env, anchor_kl=1.0, rollback_tol=-1)


# ----------------------------------------------------------------------------- PPO


@pytest.mark.slow
def test_ppo_anchor_bounds_the_kl_and_ends_at_the_anchor(setup):
    pytest.importorskip("stable_baselines3")
    env = gym.make(TINY_PROJ, setup=setup, **ENV_KW)
    agent = PPOPromptAgent(env, anchor_kl=0.05, seed=0)
    res = agent.learn(320)  # 5 rollouts of 64
    anchor = agent.anchor
    assert anchor.projections > 0 and max(anchor.kls) <= 0.05 + 1e-6  # the bound binds, and holds
    assert len(anchor.rule.moves) >= 1 and all(after > before for _, before, after in anchor.rule.moves)
    assert anchor.kl() == pytest.approx(0.0, abs=1e-9)  # learn ended with the policy at its anchor
    assert res.final_reward == pytest.approx(margin_of(setup, res.final_prompt), abs=1e-5)
    loose = PPOPromptAgent(env, anchor_kl=1e6, seed=0)
    loose.learn(320)
    assert loose.anchor.projections == 0 and max(loose.anchor.kls) > 0.05
    plain = PPOPromptAgent(env, seed=0)
    plain.learn(64)
    assert plain.anchor is None


@pytest.mark.slow
def test_ppo_anchor_rolls_back_and_repeats(setup):
    pytest.importorskip("stable_baselines3")
    env = gym.make(TINY_PROJ, setup=setup, sigma=2.0, reward="accuracy", reward_batch_size=16)
    a = PPOPromptAgent(env, anchor_kl=0.5, seed=1)
    ra = a.learn(512)
    assert a.anchor.rule.rollbacks > 0  # measured: 3 of 8 rollouts
    b = PPOPromptAgent(env, anchor_kl=0.5, seed=1)
    rb = b.learn(512)
    np.testing.assert_array_equal(ra.final_prompt, rb.final_prompt)
    assert (ra.best_reward, ra.history) == (rb.best_reward, rb.history)
    with pytest.raises(ConfigError, match="anchor_kl"):
        PPOPromptAgent(env, anchor_kl=float("inf"))
