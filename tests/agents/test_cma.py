"""CMAAgent: CMA-ES through the env API on the tiny ids. It must beat random search at equal
budget, repeat itself for a seed, run separable CMA on the full prompt, and refuse bad settings.

The env kwargs are explicit (``sigma=1.0, reward="margin"``: a dense reward at the scale where a
unit action moves the prompt by one per-coordinate standard deviation), so the tests do not
depend on the ids' defaults."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

import crlprompt  # noqa: F401 - registers the ids
from crlprompt.agents import CMAAgent, RandomSearch
from crlprompt.errors import ConfigError

from helpers.agents import assert_same, margin_of
from helpers import envs
from helpers.envs import TINY, TINY_PROJ

ENV_KW = {"sigma": 1.0, "reward": "margin"}
make_vec = functools.partial(envs.make_vec, **ENV_KW)  # a call's keywords override ENV_KW


@pytest.fixture(scope="module")
def setup():
    """One built tiny setup (model + data) shared by every env of this module."""
    return envs.tiny_search_setup(TINY_PROJ, **ENV_KW)


# ----------------------------------------------------------------------------- search


@pytest.mark.parametrize("seed", [0, 1])
def test_cma_beats_random_search_at_equal_budget(setup, seed):
    env = make_vec(setup, 20)  # K = 20 = popsize: one generation is one batched forward
    agent = CMAAgent(env, seed=seed)
    assert agent.popsize == 20 and agent.diagonal is False  # d = 64 < D: full CMA
    cma = agent.learn(200)
    rnd = RandomSearch(env, seed=seed).learn(200)
    center = margin_of(setup, agent.scorer.center)
    assert cma.evals == rnd.evals == 200 and [e for e, _ in cma.history] == list(range(20, 201, 20))
    assert [r for _, r in cma.history] == sorted(r for _, r in cma.history)  # best-so-far never drops
    assert cma.best_reward == pytest.approx(margin_of(setup, cma.best_prompt), abs=1e-5)
    assert cma.final_reward == pytest.approx(margin_of(setup, cma.final_prompt), abs=1e-5)
    # Measured (seeds 0-4): CMA 0.74-0.78, random 0.25-0.36, the center -0.06.
    assert cma.best_reward - center > 1.5 * (rnd.best_reward - center), (cma.best_reward, rnd.best_reward, center)
    assert cma.final_reward > rnd.best_reward  # CMA's mean itself, not only a lucky sample


def test_same_seed_same_result_and_numpy_global_state_untouched(setup):
    env = make_vec(setup, 10)
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = CMAAgent(env, seed=0).learn(40)
    assert (np.random.get_state()[1] == state).all(), "the agent draws from its own generator only"
    np.random.seed(7)  # a different global state changes nothing: seed 0 is a seed, not 'random'
    b = CMAAgent(env, seed=0).learn(40)
    c = CMAAgent(env, seed=1).learn(40)
    assert_same(a, b)
    assert not np.array_equal(a.best_prompt, c.best_prompt)


def test_single_env_runs_the_same_search(setup):
    single = CMAAgent(gym.make(TINY_PROJ, setup=setup, **ENV_KW), popsize=4, seed=3)
    vector = CMAAgent(make_vec(setup, 4), seed=3)
    assert single.popsize == vector.popsize == 4
    a, b = single.learn(12), vector.learn(12)
    assert a.evals == b.evals == 12 and len(a.history) == 3
    # The same samples, scored one at a time or in one batched forward (equal up to float error).
    np.testing.assert_allclose([r for _, r in a.history], [r for _, r in b.history], atol=1e-4)


def test_diagonal_cma_on_the_full_prompt(setup):
    env = make_vec(setup, 10, TINY)  # no projection: the action is the whole prompt
    agent = CMAAgent(env, seed=0)
    dim = agent.scorer.action_dim
    assert dim == setup.model.prompt.theta.numel() and agent.diagonal is True  # chosen automatically
    res = agent.learn(50)
    assert agent.es.opts["CMA_diagonal"] is True  # pycma's linear-memory separable CMA
    assert res.algo == "cma-diag" and res.evals == 50 and agent.stop_reason == {}
    assert agent.mean_action.shape == (dim,) and res.final_prompt.shape == res.best_prompt.shape == (dim,)
    assert res.best_reward > margin_of(setup, agent.scorer.center)
    assert CMAAgent(env, diagonal=False).diagonal is False  # full CMA can still be asked for


def test_the_agent_is_pycma_asked_and_told_directly(setup):
    """The peer way: pycma's own ask/tell loop on the same env, with the agent's documented settings
    (start at action 0, sigma0, popsize, normals from the seed's Generator, no bounds), asks for the
    same actions and so gets the same rewards; the agent's final mean is pycma's favourite."""
    import cma

    from crlprompt.agents.base import ActionScorer

    agent = CMAAgent(make_vec(setup, 8), sigma0=0.7, seed=5)
    res = agent.learn(24)
    scorer = ActionScorer(make_vec(setup, 8))
    rng = np.random.default_rng(5)
    es = cma.CMAEvolutionStrategy(np.zeros(scorer.action_dim), 0.7, {
        "popsize": 8, "randn": lambda *shape: rng.standard_normal(shape), "seed": np.nan, "verbose": -9,
        "CMA_diagonal": False})  # fmt: skip
    best = []
    for _ in range(3):
        xs = es.ask()
        rewards = scorer(np.asarray(xs, dtype=np.float32))
        es.tell(xs, (-rewards).tolist())
        best.append(max([*best, rewards.max()]))
    assert [r for _, r in res.history] == pytest.approx(best, abs=1e-6) and len(set(best)) > 1
    np.testing.assert_allclose(agent.mean_action, es.result.xfavorite, rtol=1e-9, atol=1e-12)
    assert (agent.popsize, agent.sigma0, agent.algo, agent.evals_per_update) == (8, 0.7, "cma", 8)
    assert agent.update_text == "popsize=8 (one generation of evaluations)"


def test_a_flat_reward_does_not_stop_the_search_before_the_budget(setup):
    """Accuracy is flat over whole generations early on; pycma's default stops on flat fitness
    (tolflatfitness) would end the run there, the agent's budget decides instead."""
    env = make_vec(setup, 10, reward="accuracy")
    agent = CMAAgent(env, sigma0=1e-9, seed=0)  # every sample scores as the center
    res = agent.learn(60)
    assert res.evals == 60 and agent.stop_reason == {} and len({r for _, r in res.history}) == 1
    assert CMAAgent(make_vec(setup, 10)).popsize == 10 and CMAAgent(gym.make(TINY_PROJ, setup=setup, **ENV_KW)).popsize == 20


def test_callback_stops_early(setup):
    seen = []
    res = CMAAgent(make_vec(setup, 10), seed=0).learn(100, callback=lambda e, r: seen.append((e, r)) or False)
    assert res.evals == 10 and seen == res.history == [(10, res.best_reward)]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"popsize": 1}, "popsize must be an int >= 2"),
        ({"popsize": 0}, "popsize must be an int >= 2"),
        ({"popsize": 2.5}, "popsize must be an int"),
        ({"popsize": 15}, "multiple of the vector env's num_envs=10"),
        ({"sigma0": 0.0}, "sigma0 must be finite and > 0"),
        ({"sigma0": float("nan")}, "sigma0 must be finite and > 0"),
        ({"sigma0": "1"}, "sigma0 must be a number"),
        ({"diagonal": "yes"}, "diagonal must be True, False or None"),
        ({"seed": -1}, "seed must be an int >= 0"),
    ],
)
def test_bad_settings_raise_config_error(setup, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CMAAgent(make_vec(setup, 10), **kwargs)


@pytest.mark.parametrize("budget", [19, 0, -20, 20.0, "40", True])
def test_budget_below_one_generation_raises_and_agent_stays_usable(setup, budget):
    agent = CMAAgent(make_vec(setup, 10), popsize=20, seed=0)
    with pytest.raises(ConfigError, match="budget must be an int >= popsize=20"):
        agent.learn(budget)
    assert issubclass(ConfigError, ValueError)
    assert agent.learn(20).evals == 20
