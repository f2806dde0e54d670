"""Racing: best-of-K selection on growing subsets of D_RL (successive halving, or paired racing),
and RacingSearch, random search whose candidates are raced. Racing reads the env's D_RL directly
(``search_of(env).data``); its cost is counted in example-forwards."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import crlprompt  # noqa: F401 - registers the ids
from crlprompt.agents import RacingSearch, RandomSearch, race
from crlprompt.agents.base import search_of
from crlprompt.agents.racing import race_schedule
from crlprompt.errors import ConfigError
from crlprompt.scoring import score_population

from helpers import envs
from helpers.envs import TINY_PROJ

ENV_KW = {"sigma": 1.0, "reward": "margin"}
make_vec = functools.partial(envs.make_vec, **ENV_KW)  # a call's keywords override ENV_KW


@pytest.fixture(scope="module")
def setup():
    return envs.tiny_search_setup(TINY_PROJ, **ENV_KW)


def candidates(search, rng: np.random.Generator, k: int = 16) -> torch.Tensor:
    actions = rng.standard_normal((k, search.action_dim)).astype(np.float32)
    return torch.from_numpy(np.stack([search.prompt_for(a) for a in actions]))  # (k, D)


def test_schedule_costs_under_a_third():
    sched = race_schedule(16, 64, eta=2, finalists=2)
    assert sched == [(16, 8), (8, 16), (4, 32), (2, 64)]
    cost = sum(alive * (size - prev) for (alive, size), prev in zip(sched, [0, 8, 16, 32]))
    assert cost == 320 and cost <= 16 * 64 / 3
    assert race_schedule(4, 10, eta=2, finalists=1) == [(4, 3), (2, 5), (1, 10)]


@pytest.mark.parametrize("reward", ["margin", "accuracy"])
def test_race_winner_is_exact_and_near_the_best(setup, reward):
    search = search_of(make_vec(setup, 1, reward=reward))
    n = len(search.data)
    rng = np.random.default_rng(0)
    regret_race, regret_pick, agree = [], [], 0
    for _ in range(20):
        prompts = candidates(search, rng)
        full = score_population(search.model, search.data, prompts).reward(reward).numpy()  # (16,)
        res = race(search, prompts, rng=rng)
        assert res.reward == pytest.approx(float(full[res.winner]), abs=1e-5)  # the winner is scored on all of D_RL
        assert res.examples[res.winner] == n and res.example_forwards == res.examples.sum() <= 320
        finalists = np.flatnonzero(res.examples == n)
        assert full[res.winner] == pytest.approx(full[finalists].max(), abs=1e-6)  # best of the finalists
        regret_race.append(full.max() - full[res.winner])
        regret_pick.append(full.max() - full.mean())  # the expected regret of a blind pick
        agree += int(full[res.winner] == full.max())
    # Measured (seed 0, 20 races of 16 on 64 examples, 31% of the forwards): mean regret 0.14
    # (margin) / 0.024 (accuracy) against 0.32 / 0.16 for a blind pick; 9 and 14 of 20 agree.
    assert np.mean(regret_race) < 0.5 * np.mean(regret_pick)
    assert agree >= 6


@pytest.mark.slow
def test_paired_racing_agrees_with_full_scoring(setup):
    search = search_of(make_vec(setup, 1))
    rng = np.random.default_rng(1)
    agree, forwards = 0, 0
    for _ in range(20):
        prompts = candidates(search, rng)
        full = score_population(search.model, search.data, prompts).reward("margin").numpy()
        res = race(search, prompts, rule="paired", finalists=1, rng=rng)
        agree += int(full[res.winner] == full.max())
        forwards += res.example_forwards
    # Measured: 19 of 20 at 88% of the forwards (on 64 examples random candidates are close).
    assert agree >= 18 and forwards < 20 * 16 * 64


@pytest.mark.slow
def test_racing_search_beats_random_search_at_equal_budget(setup):
    env = make_vec(setup)
    n = len(search_of(env).data)
    for seed in (0, 1):
        agent = RacingSearch(env, around_best=True, seed=seed)
        res = agent.learn(256)
        rnd = RandomSearch(env, seed=seed).learn(256)
        assert agent.example_forwards <= 256 * n and res.evals <= 256
        assert len(agent.races) == 256 * n // 320  # 51 races of 16: 816 candidates for 256 evaluations
        # Measured (seeds 0-3): 1.11-1.33 around the best; random search 0.28-0.36. Racing random
        # search's own proposals (around_best=False, ~3x as many) gives 0.35-0.38: better on
        # seeds 0-2, worse on seed 3 (0.349 vs 0.356), so it is not asserted.
        assert res.best_reward > rnd.best_reward + 0.3


def test_same_seed_same_result(setup):
    env = make_vec(setup, 4)
    a = RacingSearch(env, seed=0).learn(32)
    b = RacingSearch(env, seed=0).learn(32)
    np.testing.assert_array_equal(a.best_prompt, b.best_prompt)
    assert (a.best_reward, a.history, a.evals) == (b.best_reward, b.history, b.evals)
    assert not np.array_equal(RacingSearch(env, seed=1).learn(32).best_prompt, a.best_prompt)


def test_bad_input(setup):
    env = make_vec(setup, 4)
    search = search_of(env)
    with pytest.raises(ConfigError, match="rule"):
        RacingSearch(env, rule="bandit")
    with pytest.raises(ConfigError, match="eta"):
        RacingSearch(env, eta=1)
    with pytest.raises(ConfigError, match="k must"):
        RacingSearch(env, k=1)
    with pytest.raises(ConfigError, match="finalists"):
        RacingSearch(env, k=4, finalists=5)
    with pytest.raises(ConfigError, match="block"):
        race(search, candidates(search, np.random.default_rng(0), 4), rule="paired", block=0)
    with pytest.raises(ConfigError, match="budget"):
        RacingSearch(env).learn(4)  # one race of 16 costs 5 full evaluations
