"""PromptSearch's checks of what agents hand it (centers, actions, prompt vectors), each a one-line
EnvError naming the problem, and the counters and clipping that the envs build on."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from crlprompt.errors import ConfigError, EnvError

from helpers import envs
from helpers.envs import TINY_PROJ


@pytest.fixture(scope="module")
def search():
    env = gym.make(TINY_PROJ, setup=envs.tiny_search_setup(TINY_PROJ))
    yield env.unwrapped.search
    env.close()


def test_set_center_takes_arrays_and_tensors_and_refuses_bad_ones(search):
    start = search.center.clone()
    try:
        given = np.linspace(-1, 1, search.dim)
        search.set_center(given)
        given[:] = 0  # the search keeps its own copy
        assert search.center.dtype == torch.float32 and float(search.center[0]) == -1.0
        t = torch.ones(search.dim, requires_grad=True)
        search.set_center(t)
        assert not search.center.requires_grad and torch.equal(search.center, torch.ones(search.dim))
        with pytest.raises(EnvError, match=rf"center must have shape \({search.dim},\), got \({search.dim + 1},\)"):
            search.set_center(np.zeros(search.dim + 1))
        bad = np.zeros(search.dim)
        bad[3] = np.inf
        with pytest.raises(EnvError, match="center contains NaN or inf"):
            search.set_center(bad)
        assert torch.equal(search.center, torch.ones(search.dim))  # a refused center changes nothing
    finally:
        search.set_center(start)


def test_check_actions_names_shape_dtype_and_overflow(search):
    d = search.action_dim
    ok = search.check_actions(np.zeros(d, np.float64), None)
    assert ok.shape == (1, d) and ok.dtype == torch.float32
    assert search.check_actions(torch.zeros(3, d, dtype=torch.float64), 3).shape == (3, d)
    cases = [
        (np.zeros(d + 1), None, rf"action must have shape \({d},\), got \({d + 1},\)"),
        (np.zeros((2, d)), 3, rf"action must have shape \(3, {d}\), got \(2, {d}\)"),
        (np.zeros(d, np.int64), None, "action must be a float array, got dtype int64"),
        (np.array(["a"] * d), None, "action must be a float array, got dtype <U1"),
        (np.full(d, 1e39), None, r"action contains NaN or inf \(or overflows float32\); the env was not stepped"),
        (np.full(d, np.nan), None, "action contains NaN or inf"),
    ]
    for action, batch, message in cases:
        with pytest.raises(EnvError, match=message):
            search.check_actions(action, batch)
    with pytest.raises(EnvError, match="action must be a float array, got list"):
        search.check_actions([[0.0], [0.0, 1.0]], None)  # ragged: numpy cannot hold it as an array


def test_theta_of_an_action_a_vector_or_the_center(search):
    d = search.action_dim
    a = np.full(d, 0.1, np.float32)
    torch.testing.assert_close(search.theta_of(a, None), torch.as_tensor(search.prompt_for(a)))
    assert search.theta_of(None, None) is search.center
    v = np.arange(search.dim, dtype=np.float64)
    assert torch.equal(search.theta_of(None, v), torch.arange(search.dim, dtype=torch.float32))
    with pytest.raises(EnvError, match="pass an action or a prompt, not both"):
        search.theta_of(a, v)
    with pytest.raises(EnvError, match=rf"prompt must be a finite vector of shape \({search.dim},\), got \(3,\)"):
        search.theta_of(None, np.zeros(3))
    with pytest.raises(EnvError, match="prompt must be a finite vector"):
        search.theta_of(None, np.full(search.dim, np.nan))
    with pytest.raises(EnvError, match=r"overflows \(non-finite\); use a smaller action"):
        search.check_prompts(torch.tensor([[0.0, float("inf")]]))


def test_rewards_count_every_prompt_and_minibatches_are_clipped_to_d_rl():
    env = gym.make(TINY_PROJ, setup=envs.tiny_search_setup(TINY_PROJ), reward_batch_size=10**6)
    s = env.unwrapped.search
    try:
        assert s.reward_batch_size == len(s.data)  # larger than D_RL: all of it
        before = s.num_evals
        prompts = s.perturb(s.check_actions(np.zeros((3, s.action_dim), np.float32), 3))
        reward, acc = s.rewards(prompts, np.random.default_rng(0))
        assert s.num_evals == before + 3 and reward.shape == acc.shape == (3,)
        assert torch.equal(reward, acc)  # the tiny id's reward is accuracy: three copies of the center
        assert len(set(reward.tolist())) == 1
    finally:
        env.close()
    small = gym.make(TINY_PROJ, setup=envs.tiny_search_setup(TINY_PROJ), reward_batch_size=7)
    assert small.unwrapped.search.reward_batch_size == 7
    small.close()


def test_a_prompt_without_parameters_is_refused():
    with pytest.raises(ConfigError, match=r"the prompt has no parameters \(num_tokens=0\): there is nothing to search"):
        gym.make("CRLPrompt/Tiny-v0", num_tokens=0, prompt="shallow")  # a shallow prompt may have none
