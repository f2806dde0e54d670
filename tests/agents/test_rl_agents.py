"""Tests for the env-only agents (random search, OpenAI-ES bandit, SB3 PPO), SearchResult and the
compare runner, all on ``CRLPrompt/Tiny-v0`` (a tiny random model; the initial prompt scores
0.44 on D_RL, a near-constant classifier, so improving it takes real search)."""

from __future__ import annotations

import functools
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import crlprompt  # noqa: F401 - registers the ids
from crlprompt.agents.base import SearchResult
from crlprompt.agents.es import ESAgent
from crlprompt.agents.random_search import RandomSearch
from crlprompt.agents.sb3 import PPOPromptAgent
from crlprompt.errors import ConfigError
from crlprompt.scoring import accuracy

from helpers.agents import assert_same
from helpers import envs
from helpers.envs import TINY

make_vec = functools.partial(envs.make_vec, env_id=TINY)


@pytest.fixture(scope="module")
def tiny_setup():
    return envs.tiny_search_setup(TINY)


def make(setup, **kwargs) -> gym.Env:
    return gym.make(TINY, setup=setup, **kwargs)


def drl_acc(setup, prompt: np.ndarray) -> float:
    """Accuracy on all of D_RL."""
    return accuracy(setup.model, setup.drl, theta=torch.as_tensor(prompt))


def center_acc(setup) -> float:
    return accuracy(setup.model, setup.drl)


# ----------------------------------------------------------------------------- learning


def test_es_improves_on_the_center(tiny_setup):
    res = ESAgent(make_vec(tiny_setup, 32), seed=0).learn(960)  # 30 updates of 16 antithetic pairs
    center = center_acc(tiny_setup)
    assert center < 0.5
    assert res.evals == 960 and res.history[-1] == (960, res.best_reward)
    assert drl_acc(tiny_setup, res.best_prompt) == pytest.approx(res.best_reward)  # full D_RL: reward = accuracy
    assert drl_acc(tiny_setup, res.best_prompt) >= center + 0.2
    assert drl_acc(tiny_setup, res.final_prompt) >= center + 0.1  # the mean itself moved, not only a lucky sample
    assert res.final_reward == pytest.approx(drl_acc(tiny_setup, res.final_prompt))


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
def test_ppo_improves_on_the_center(tiny_setup):
    res = PPOPromptAgent(make(tiny_setup), seed=0).learn(768)
    center = center_acc(tiny_setup)
    assert res.evals == 768
    assert drl_acc(tiny_setup, res.best_prompt) >= center + 0.2
    assert drl_acc(tiny_setup, res.final_prompt) >= center + 0.1


def test_random_search_never_worse_than_center(tiny_setup):
    env = make_vec(tiny_setup, 16)
    res = RandomSearch(env, seed=0).learn(64)
    assert res.evals == 64 and [e for e, _ in res.history] == [16, 32, 48, 64]
    assert res.best_reward >= center_acc(tiny_setup)
    assert drl_acc(tiny_setup, res.best_prompt) == pytest.approx(res.best_reward)
    bests = [b for _, b in res.history]
    assert bests == sorted(bests)  # best-so-far never decreases
    np.testing.assert_array_equal(res.final_prompt, res.best_prompt)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("algo", ["random", "es", "ppo"])
def test_same_seed_same_result(algo, tiny_setup):
    def run(seed: int) -> SearchResult:
        if algo == "ppo":
            return PPOPromptAgent(make(tiny_setup, reward_batch_size=16), seed=seed, n_steps=32).learn(96)
        env = make_vec(tiny_setup, 8, reward_batch_size=16)  # minibatch rewards: the env's seeding matters too
        agent = RandomSearch(env, seed=seed) if algo == "random" else ESAgent(env, seed=seed)
        return agent.learn(96)

    a, b = run(0), run(0)
    assert_same(a, b)
    assert not np.array_equal(run(1).best_prompt, a.best_prompt)


def test_es_single_env_equals_vector_env(tiny_setup):
    """Stepping one env 2·pop times and one batched step of the vector env give the same run."""
    center = tiny_setup.model.prompt.theta.detach().numpy()
    single = ESAgent(make(tiny_setup), pop=4, seed=3).learn(64)
    batched = ESAgent(make_vec(tiny_setup, 8), pop=4, seed=3).learn(64)
    assert_same(single, batched)
    # Not a vacuous match: the samples scored differently (else every ES step is exactly 0) and the mean moved.
    assert single.best_reward > center_acc(tiny_setup)
    assert np.abs(single.final_prompt - center).max() > 0.1


def test_es_move_center_is_the_same_search(tiny_setup):
    center = tiny_setup.model.prompt.theta.detach().numpy()
    fixed = ESAgent(make_vec(tiny_setup, 8), seed=1).learn(64)
    # Not a vacuous match: rewards differ (else no ES step moves) and the mean moved away from the start.
    assert len({r for _, r in fixed.history}) > 1
    assert np.abs(fixed.final_prompt - center).max() > 0.1
    env = make_vec(tiny_setup, 8)
    moving = ESAgent(env, seed=1, move_center=True).learn(64)
    np.testing.assert_allclose(moving.final_prompt, fixed.final_prompt, rtol=0, atol=1e-4)
    np.testing.assert_allclose(env.unwrapped.search.center.numpy(), moving.final_prompt, rtol=0, atol=1e-6)
    assert moving.history == fixed.history


def test_es_update_is_openai_es_with_adam(tiny_setup):
    """Three updates against OpenAI-ES written out in NumPy: g = Σ_j (w_j⁺ − w_j⁻) ε_j / (2·pop·noise_std)
    with centered ranks w, ascended by Adam (bias-corrected moments)."""
    from crlprompt.agents.base import ActionScorer
    from crlprompt.losses import centered_ranks

    pop, noise_std, lr, seed, updates = 4, 1.0, 0.1, 2, 3
    agent = ESAgent(make_vec(tiny_setup, 8), pop=pop, noise_std=noise_std, lr=lr, seed=seed)
    agent.learn(updates * 2 * pop)

    scorer = ActionScorer(make_vec(tiny_setup, 8))  # full D_RL: a reward depends on the action only
    rng, d = np.random.default_rng(seed), scorer.action_dim
    m, mom, var, (b1, b2) = np.zeros(d), np.zeros(d), np.zeros(d), (0.9, 0.999)
    for t in range(1, updates + 1):
        eps = rng.standard_normal((pop, d))
        actions = (m + noise_std * np.stack([eps, -eps], 1).reshape(2 * pop, d)).astype(np.float32)
        w = centered_ranks(torch.from_numpy(scorer(actions))).numpy().astype(np.float64).reshape(pop, 2)
        g = ((w[:, 0] - w[:, 1]) @ eps) / (2 * pop * noise_std)
        mom, var = b1 * mom + (1 - b1) * g, b2 * var + (1 - b2) * g**2
        m = m + lr * (mom / (1 - b1**t)) / (np.sqrt(var / (1 - b2**t)) + 1e-8)
    assert np.abs(m).max() > lr / 2  # the rewards differed: the mean moved
    np.testing.assert_allclose(agent.mean_action, m, rtol=1e-9, atol=1e-12)


def test_random_search_draws_scaled_normals_around_the_center(tiny_setup):
    """Each round is ``scale · N(0, I)`` from the seed's generator, the center first; written out in NumPy."""
    from crlprompt.agents.base import ActionScorer

    venv = make_vec(tiny_setup, 8, reward="margin")  # a continuous reward: every action its own
    agent = RandomSearch(venv, batch=16, scale=0.5, seed=3)
    assert (agent.batch, agent.evals_per_update, agent.update_text) == (16, 16, "batch=16 (one batch)")
    events = []
    res = agent.learn(32, callback=events.append)
    scorer = ActionScorer(make_vec(tiny_setup, 8, reward="margin"))  # full D_RL: the action alone decides
    rng, d = np.random.default_rng(3), scorer.action_dim
    drawn = []
    for r in range(2):
        a = (0.5 * rng.standard_normal((16, d))).astype(np.float32)
        if r == 0:
            a[0] = 0.0  # the center, first
        drawn.append(a)
        np.testing.assert_array_equal(events[r].rewards, scorer(a))
    assert [e.evals for e in events] == [16, 32] and res.evals == 32
    every = np.concatenate(drawn)
    best = int(np.argmax(np.concatenate([scorer(a) for a in drawn])))
    np.testing.assert_allclose(res.best_prompt, scorer.prompt_for(every[best]), rtol=0, atol=1e-6)
    # a single env: 32 per round by default; without the center the first action is a draw
    single = RandomSearch(make(tiny_setup, reward="margin"), include_center=False, seed=3)
    assert single.batch == 32 and RandomSearch(venv).batch == 8
    first = []
    single.learn(32, callback=lambda ev: first.append(ev.rewards))
    a0 = np.random.default_rng(3).standard_normal((32, d)).astype(np.float32)  # scale 1, no center
    want = np.concatenate([scorer(a0[i : i + 8]) for i in range(0, 32, 8)])
    np.testing.assert_allclose(first[0], want, rtol=0, atol=1e-5)  # one env at a time vs batched: float noise
    assert len(set(first[0].tolist())) > 1  # the draws differ
    with pytest.raises(ConfigError, match="scale must be > 0, got 0"):
        RandomSearch(venv, scale=0)
    with pytest.raises(ConfigError, match="batch must be a positive multiple of the vector env's num_envs=8, got 12"):
        RandomSearch(venv, batch=12)


# ----------------------------------------------------------------------------- arguments and callbacks


def test_budget_and_argument_errors(tiny_setup):
    venv = make_vec(tiny_setup, 8)
    with pytest.raises(ValueError, match="budget"):
        ESAgent(venv, pop=4).learn(7)
    with pytest.raises(ConfigError, match="multiple"):
        ESAgent(venv, pop=3)
    with pytest.raises(ConfigError, match="noise_std"):
        ESAgent(venv, noise_std=0)
    with pytest.raises(ConfigError, match="lr must be > 0"):
        ESAgent(venv, lr=0.0)
    with pytest.raises(ValueError, match="batch"):
        RandomSearch(venv, batch=12)
    with pytest.raises(ValueError, match="budget"):
        RandomSearch(venv).learn(4)
    with pytest.raises(TypeError, match="single env"):
        PPOPromptAgent(venv)
    with pytest.raises(ValueError, match="budget"):
        PPOPromptAgent(make(tiny_setup)).learn(0)


def test_ppo_warns_on_wide_unprojected_action(tiny_setup, monkeypatch):
    from crlprompt.agents import sb3

    monkeypatch.setattr(sb3, "MAX_PPO_ACTION_DIM", 100)  # the tiny env's D is 256
    with pytest.warns(UserWarning, match="projected env"):
        sb3.PPOPromptAgent(make(tiny_setup))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3.PPOPromptAgent(make(tiny_setup, projection_dim=64))


@pytest.mark.parametrize("algo", ["random", "es", "ppo"])
def test_callback_sees_progress_and_can_stop(algo, tiny_setup):
    seen = []

    def callback(evals: int, best: float):
        seen.append((evals, best))
        return evals < 32

    if algo == "ppo":
        res = PPOPromptAgent(make(tiny_setup), n_steps=16, batch_size=16).learn(200, callback=callback)
    else:
        env = make_vec(tiny_setup, 8)
        res = (RandomSearch(env) if algo == "random" else ESAgent(env)).learn(200, callback=callback)
    assert res.evals == 32 and seen[-1][0] == 32
    assert [e for e, _ in seen] == sorted(e for e, _ in seen)


# ----------------------------------------------------------------------------- SearchResult.save


def test_save_writes_a_loadable_checkpoint(tiny_setup, tmp_path):
    from crlprompt.prompts import load_prompt

    env = make_vec(tiny_setup, 8)
    res = ESAgent(env, seed=0).learn(32)
    pm = tiny_setup.model
    before = pm.prompt.theta.detach().clone()
    path = res.save(tmp_path / "run", env)
    assert path == tmp_path / "run" / "prompt.safetensors" and path.is_file()
    assert torch.equal(pm.prompt.theta, before)  # saving does not change the env's model
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    setup = cfg["setup"]
    assert setup["task"] == "tiny" and setup["model"] == "tiny-llama" and cfg["method"] == "ptv2" and cfg["algo"] == "es"
    assert setup["num_tokens"] == 4 and setup["head"] == "linear"
    meta = load_prompt(pm, path)
    try:
        np.testing.assert_array_equal(pm.prompt.theta.detach().numpy(), res.best_prompt)
        assert json.loads(meta["algo"]) == "es" and json.loads(meta["evals"]) == 32
    finally:
        with torch.no_grad():
            pm.prompt.theta.copy_(before)
    res.save(tmp_path / "final", env, which="final")
    load_prompt(pm, tmp_path / "final" / "prompt.safetensors")
    try:
        np.testing.assert_array_equal(pm.prompt.theta.detach().numpy(), res.final_prompt)
    finally:
        with torch.no_grad():
            pm.prompt.theta.copy_(before)
    with pytest.raises(ValueError, match="which"):
        res.save(tmp_path / "x", env, which="mean")


# ----------------------------------------------------------------------------- compare runner


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
def test_compare_runner_writes_results(tmp_path):
    from crlprompt.runners import compare

    out = tmp_path / "cmp"
    records = compare.main([
        "--env-id", TINY, "--algos", "random,es,ppo", "--budget", "64", "--seeds", "0,1",
        "--num-envs", "8", "--out", str(out), "--env-kwargs", '{"sigma": 0.5}', "--algo-kwargs",
        '{"ppo": {"n_steps": 16, "batch_size": 16}}', "--progress", "False",
    ])  # fmt: skip
    assert [(r["algo"], r["seed"]) for r in records] == [(a, s) for a in ("random", "es", "ppo") for s in (0, 1)]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(records))
    for r in records:
        assert r["evals"] == 64 and r["env_kwargs"] == {"sigma": 0.5}
        for k in ("center_drl_acc", "best_drl_acc", "final_drl_acc", "best_test_acc", "final_test_acc"):
            assert 0.0 <= r[k] <= 1.0
        assert (out / "runs" / f"{r['algo']}-s{r['seed']}" / "prompt.safetensors").is_file()
    assert records[0]["best_drl_acc"] >= records[0]["center_drl_acc"]  # random search includes the center
    table = (out / "table.md").read_text()
    assert "| algo |" in table and all(f"| {a} | 2 | 256 | 64 |" in table for a in ("random", "es", "ppo"))
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "config.json").read_text())["budget"] == 64


def test_compare_rejects_bad_arguments(tmp_path):
    from crlprompt.runners import compare

    with pytest.raises(ValueError, match="unknown algorithm"):
        compare.CompareConfig(algos="random,bogus")
    with pytest.raises(ValueError, match="JSON"):
        compare.CompareConfig(env_kwargs="{sigma: 1}")
    with pytest.raises(ValueError, match="seeds"):
        compare.CompareConfig(seeds="0,a")
    with pytest.raises(ValueError, match="algo-kwargs"):
        compare.CompareConfig(algo_kwargs='{"bogus": {}}')
