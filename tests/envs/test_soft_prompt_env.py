"""Tests for the soft-prompt environments: the Gymnasium/SB3 contracts, bad input, seeding, the
batched vector env, multi-step episodes and the action projection.

Fast tests use ``CRLPrompt/Tiny-v0`` (a tiny random model built in code); the real offline models
are behind ``@pytest.mark.slow``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import crlprompt

from helpers import envs
from helpers.envs import TINY, TINY_PROJ

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
# The observation holds the last reward, whose range depends on the reward kind, so the Box is
# unbounded; Gymnasium's checker warns about that and nothing else is expected.
UNBOUNDED_OBS_WARNING = "observation space m"


@pytest.fixture(scope="module")
def tiny_setup():
    """One tiny model and data set shared by every env of this module (``setup=`` skips rebuilding)."""
    return envs.tiny_search_setup(TINY)


def make(env_id: str = TINY, setup=None, **kwargs) -> gym.Env:
    return gym.make(env_id, setup=setup, **kwargs)


make_vec = functools.partial(envs.make_vec, env_id=TINY)


def actions(n: int, d: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal((n, d))).astype(np.float32)


# ----------------------------------------------------------------------------- API contracts


def test_import_does_not_load_torch_or_transformers():
    code = (
        "import sys, gymnasium, crlprompt\n"
        "assert 'CRLPrompt/Tiny-v0' in gymnasium.registry\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_registered_ids():
    ids = crlprompt.env_ids()
    assert TINY in ids and TINY_PROJ in ids and "CRLPrompt/TREC-MiniLM-v0" in ids
    assert all(i in gym.registry for i in ids)
    for i in ids:
        assert gym.registry[i].vector_entry_point is not None
        if i.endswith("-Proj64-v0"):
            assert gym.registry[i].kwargs["projection_dim"] == 64


@pytest.mark.parametrize("env_id", [TINY, TINY_PROJ])
def test_gymnasium_check_env(env_id, tiny_setup):
    env = make(env_id, tiny_setup)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught if UNBOUNDED_OBS_WARNING not in str(w.message)]
    assert not unexpected


@pytest.mark.parametrize("env_id", [TINY, TINY_PROJ])
def test_sb3_check_env(env_id, tiny_setup):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(env_id, tiny_setup)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env.unwrapped, warn=True)
    assert not [str(w.message) for w in caught]


def test_spaces_and_one_step_episode(tiny_setup):
    env = make(TINY, tiny_setup)
    search = env.unwrapped.search
    assert env.action_space == gym.spaces.Box(-1, 1, (search.dim,), np.float32)
    assert env.observation_space.shape == (2,)
    obs, info = env.reset(seed=0)
    assert np.array_equal(obs, np.zeros(2, np.float32)) and info == {}
    obs, reward, terminated, truncated, info = env.step(np.zeros(search.dim, np.float32))
    assert terminated is True and truncated is False
    assert isinstance(reward, float) and 0.0 <= reward <= 1.0
    assert obs.dtype == np.float32 and obs[0] == np.float32(reward) and obs[1] == 1.0
    assert set(info) == {"accuracy", "step"} and isinstance(info["accuracy"], float) and info["step"] == 1
    assert info["accuracy"] == reward  # the default reward is accuracy


def test_actions_outside_the_box_are_not_clipped(tiny_setup):
    env = make(TINY, tiny_setup)
    s = env.unwrapped.search
    a = np.full(s.dim, 3.0, np.float32)
    np.testing.assert_allclose(env.unwrapped.prompt_for(a), s.center.numpy() + s.sigma * 3.0, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda d: np.zeros(d + 1, np.float32), id="too-long"),
        pytest.param(lambda d: np.zeros((1, d), np.float32), id="batched"),
        pytest.param(lambda d: np.zeros((), np.float32), id="scalar"),
        pytest.param(lambda d: np.full(d, np.nan, np.float32), id="nan"),
        pytest.param(lambda d: np.r_[np.zeros(d - 1), np.inf].astype(np.float32), id="inf"),
        pytest.param(lambda d: np.r_[np.zeros(d - 1), -np.inf], id="neg-inf-float64"),
        pytest.param(lambda d: np.zeros(d, np.int64), id="int"),
        pytest.param(lambda d: np.zeros(d, bool), id="bool"),
    ],
)
def test_bad_action_raises_and_env_keeps_working(bad, tiny_setup):
    env = make(TINY, tiny_setup, episode_length=2)
    s = env.unwrapped.search
    env.reset(seed=0)
    center, evals = s.center.clone(), s.num_evals
    with pytest.raises(ValueError, match="action"):
        env.step(bad(s.dim))
    assert torch.equal(s.center, center) and s.num_evals == evals  # nothing happened
    _, reward, terminated, truncated, info = env.step(np.zeros(s.dim, np.float32))
    assert info["step"] == 1 and not terminated and not truncated and 0 <= reward <= 1


def test_bad_vector_actions_raise(tiny_setup):
    venv = make_vec(tiny_setup, 3)
    venv.reset(seed=0)
    d = venv.single_action_space.shape[0]
    for bad in (np.zeros((2, d), np.float32), np.zeros(d, np.float32), np.full((3, d), np.nan, np.float32),
                np.zeros((3, d), np.int32)):  # fmt: skip
        with pytest.raises(ValueError, match="action"):
            venv.step(bad)
    _, rewards, *_ = venv.step(np.zeros((3, d), np.float32))
    assert rewards.shape == (3,)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -0.1}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"projection_dim": 0}, "projection_dim"),
        ({"projection_dim": 257}, "projection_dim"),  # D = 256 for the tiny deep prompt
        ({"max_drl": 0}, "max_drl must be a positive int"),
        ({"reward_batch_size": 0}, "reward_batch_size"),
        ({"reward": "f1"}, "reward"),
        ({"head": "mlp"}, "head"),
        ({"episode_length": 0}, "episode_length"),
    ],
)
def test_bad_kwargs_raise(kwargs, match, tiny_setup):
    setup = None if "max_drl" in kwargs else tiny_setup  # max_drl applies while building the data
    with pytest.raises(ValueError, match=match):
        gym.make(TINY, setup=setup, **kwargs)


def test_bad_num_envs_raises(tiny_setup):
    with pytest.raises(ValueError, match="num_envs"):
        make_vec(tiny_setup, 0)


# ----------------------------------------------------------------------------- center and seeding


def test_reset_center_option(tiny_setup):
    env = make(TINY, tiny_setup)
    s = env.unwrapped.search
    zero = np.zeros(s.dim, np.float32)
    env.reset(seed=0)
    base = env.step(zero)[1]
    # Rewards of a = 0 over random centers: at least one differs from the base center's.
    rng = np.random.default_rng(0)
    moved = []
    for _ in range(5):
        center = rng.standard_normal(s.dim).astype(np.float32)
        env.reset(options={"center": center})
        np.testing.assert_allclose(env.unwrapped.center, center)
        np.testing.assert_allclose(env.unwrapped.prompt_for(zero), center)
        moved.append(env.step(zero)[1])
    assert any(r != base for r in moved)
    # The center set last persists over plain resets.
    env.reset()
    np.testing.assert_allclose(env.unwrapped.center, center)
    for bad in (np.zeros(s.dim + 1, np.float32), np.zeros((1, s.dim), np.float32), np.full(s.dim, np.nan, np.float32)):
        with pytest.raises(ValueError, match="center"):
            env.reset(options={"center": bad})
    np.testing.assert_allclose(env.unwrapped.center, center)  # a refused center changes nothing


def test_minibatch_rewards_are_seeded(tiny_setup):
    env = make(TINY, tiny_setup, reward_batch_size=8)
    d = env.unwrapped.search.dim
    a = actions(6, d, seed=1)

    def run(seed: int) -> list[float]:
        env.reset(seed=seed)
        out = []
        for x in a:
            out.append(env.step(x)[1])
            env.reset()
        return out

    r0 = run(0)
    assert run(0) == r0
    assert run(1) != r0
    # The minibatch varies from step to step: the same action gets different rewards.
    env.reset(seed=0)
    same = []
    for _ in range(8):
        same.append(env.step(a[0])[1])
        env.reset()
    assert len(set(same)) > 1


# ----------------------------------------------------------------------------- vector env


@pytest.mark.parametrize("reward", ["accuracy", "margin", "neg_ce"])
def test_vector_env_matches_single_env_steps(reward, tiny_setup):
    k = 5
    venv = make_vec(tiny_setup, k, reward=reward)
    env = make(TINY, tiny_setup, reward=reward)
    d = env.unwrapped.search.dim
    a = actions(k, d, seed=2)
    venv.reset(seed=0)
    _, vrewards, *_, vinfo = venv.step(a)
    single, acc = [], []
    for x in a:
        env.reset(seed=0)
        _, r, _, _, info = env.step(x)
        single.append(r)
        acc.append(info["accuracy"])
    np.testing.assert_allclose(vrewards, single, rtol=0, atol=1e-5 if reward != "accuracy" else 1e-6)
    np.testing.assert_allclose(vinfo["accuracy"], acc, rtol=0, atol=1e-6)
    # Not a vacuous match: the five prompts score differently (with all accuracies equal, any mix-up of
    # rows would pass), and reversing the actions reverses the rewards.
    assert len(set(np.round(acc, 6))) >= 3
    venv.reset(seed=0)
    _, back, *_ = venv.step(a[::-1].copy())
    np.testing.assert_allclose(back, vrewards[::-1], rtol=0, atol=1e-5 if reward != "accuracy" else 1e-6)


def test_vector_env_same_step_autoreset(tiny_setup):
    from gymnasium.vector import AutoresetMode

    k = 4
    venv = make_vec(tiny_setup, k)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.num_envs == k and venv.action_space.shape == (k, venv.single_action_space.shape[0])
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (k, 2) and not obs.any()
    for _ in range(2):  # every step ends every episode and resets it in the same step
        obs, rewards, terminated, truncated, infos = venv.step(actions(k, venv.single_action_space.shape[0]))
        assert terminated.all() and not truncated.any()
        assert not obs.any() and obs.shape == (k, 2)
        assert infos["_final_obs"].all()
        np.testing.assert_allclose(infos["final_obs"][:, 0], rewards.astype(np.float32))
        np.testing.assert_allclose(infos["final_obs"][:, 1], 1.0)
        assert rewards.dtype == np.float64 and infos["accuracy"].shape == (k,)


def test_vector_env_spaces_and_step_dtypes(tiny_setup):
    """What SB3 and Gymnasium's vector wrappers read: float32 boxes (actions in [-1, 1]), float32
    observations, float64 rewards and accuracies, boolean flags."""
    k = 3
    venv = make_vec(tiny_setup, k)
    single = venv.single_action_space
    assert single.dtype == np.float32 and (single.low == -1).all() and (single.high == 1).all()
    assert single.shape == (venv.unwrapped.search.action_dim,) and venv.action_space.shape == (k, *single.shape)
    obs_space = venv.single_observation_space
    assert obs_space.dtype == np.float32 and obs_space.shape == (2,) and venv.observation_space.shape == (k, 2)
    obs, info = venv.reset(seed=0)
    assert obs.dtype == np.float32 and info == {}
    obs, rewards, terminated, truncated, infos = venv.step(actions(k, single.shape[0]))
    assert obs.dtype == np.float32 and rewards.dtype == np.float64 and rewards.shape == (k,)
    assert terminated.dtype == bool and truncated.dtype == bool and infos["_final_obs"].dtype == bool
    assert infos["final_obs"].dtype == np.float32 and infos["final_obs"].shape == (k, 2)
    assert infos["accuracy"].dtype == np.float64 and ((0 <= infos["accuracy"]) & (infos["accuracy"] <= 1)).all()
    assert tuple(venv.reward_range) == (0.0, 1.0)  # Tiny-v0's reward is accuracy
    with pytest.raises(crlprompt.ConfigError, match="the batched vector env runs one-step episodes; got episode_length=2"):
        make_vec(tiny_setup, k, episode_length=2)


def test_vector_env_center_and_minibatch_seeding(tiny_setup):
    venv = make_vec(tiny_setup, 3, reward_batch_size=8)
    d = venv.single_action_space.shape[0]
    a = actions(3, d)
    runs = []
    for _ in range(2):
        venv.reset(seed=7)
        runs.append([venv.step(a)[1] for _ in range(3)])
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))
    center = np.random.default_rng(0).standard_normal(d).astype(np.float32)
    venv.reset(options={"center": center})
    np.testing.assert_allclose(venv.unwrapped.search.prompt_for(np.zeros(d, np.float32)), center)


# ----------------------------------------------------------------------------- episodes and projection


def test_multi_step_episode_moves_center_and_truncates(tiny_setup):
    env = make(TINY, tiny_setup, episode_length=3)
    u = env.unwrapped
    d = u.search.dim
    env.reset(seed=0)
    base = u.center.copy()
    a = actions(3, d, seed=3, scale=0.5)
    for t in range(3):
        expected = u.prompt_for(a[t])
        obs, _, terminated, truncated, info = env.step(a[t])
        np.testing.assert_allclose(u.center, expected, rtol=0, atol=1e-6)  # the center moved by the action
        assert info["step"] == t + 1 and not terminated
        assert truncated == (t == 2)
        assert obs[1] == pytest.approx((t + 1) / 3)
    np.testing.assert_allclose(u.center, base + u.search.sigma * a.sum(0), rtol=0, atol=1e-5)
    env.reset()
    np.testing.assert_array_equal(u.center, base)  # reset restores the base center


def test_projection_prompt_for(tiny_setup):
    env = make(TINY_PROJ, tiny_setup)
    s = env.unwrapped.search
    assert env.action_space.shape == (64,) and s.action_dim == 64 and s.dim == 256
    A = s.projection.cpu().numpy()
    assert A.shape == (256, 64)
    assert 0.5 < A.std() * np.sqrt(64) < 1.5  # entries N(0, 1/d)
    a = actions(1, 64, seed=4)[0]
    np.testing.assert_allclose(env.unwrapped.prompt_for(a), s.center.numpy() + s.sigma * A @ a, rtol=1e-5, atol=1e-5)
    # The projection is fixed by projection_seed.
    same = make(TINY_PROJ, tiny_setup).unwrapped.search.projection
    other = make(TINY_PROJ, tiny_setup, projection_seed=1).unwrapped.search.projection
    assert torch.equal(same, s.projection) and not torch.equal(other, s.projection)
    # projection_dim = D is the identity.
    assert make(TINY, tiny_setup, projection_dim=256).unwrapped.search.projection is None


def test_prompt_for_identity(tiny_setup):
    env = make(TINY, tiny_setup, sigma=0.7)
    s = env.unwrapped.search
    a = actions(1, s.dim, seed=5)[0]
    np.testing.assert_allclose(env.unwrapped.prompt_for(a), s.center.numpy() + 0.7 * a, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- real models (slow)

REAL_IDS = [
    "CRLPrompt/TREC-MiniLM-v0",
    "CRLPrompt/TREC-MiniLM-Proj64-v0",
    "CRLPrompt/AGNews-MiniLM-Proj64-v0",
    "CRLPrompt/SST2-MiniLM-v0",
    "CRLPrompt/TREC-SmolLM2-Proj64-v0",
]


@pytest.mark.slow
@pytest.mark.parametrize("env_id", REAL_IDS)
def test_real_model_envs(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from crlprompt.tasks import DataError

    try:
        env = gym.make(env_id, max_drl=16, max_train=300, reward_batch_size=None, data_dir=str(SHARED_DATA))
    except (DataError, ImportError, OSError) as e:  # an offline package or data file is missing
        pytest.skip(f"{env_id}: {e}")
    s = env.unwrapped.search
    assert len(s.data) == 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_close_check=True)  # the close check would build the model again
        sb3_check_env(env.unwrapped, warn=False)
    env.reset(seed=0)
    _, r0, terminated, _, info = env.step(np.zeros(s.action_dim, np.float32))
    assert terminated and 0 <= r0 <= 1 and info["accuracy"] == r0
    # The batched vector env scores the same prompts as single steps.
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", search=s)
    a = actions(3, s.action_dim, seed=0)
    venv.reset(seed=0)
    _, vr, *_ = venv.step(a)
    single = []
    for x in a:
        env.reset(seed=0)
        single.append(env.step(x)[1])
    np.testing.assert_allclose(vr, single, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reward", ["accuracy", "ce", "softmax_diff", "margin"])
def test_reward_range_follows_the_reward_kind_and_holds_the_rewards(reward, tiny_setup):
    from crlprompt.scoring import REWARD_RANGES

    env, venv = make(TINY, tiny_setup, reward=reward), make_vec(tiny_setup, 4, reward=reward)
    assert env.unwrapped.reward_range == venv.reward_range == REWARD_RANGES[reward]
    lo, hi = REWARD_RANGES[reward]
    venv.reset(seed=0)
    rewards = [venv.step(actions(4, venv.single_action_space.shape[0], seed=s))[1] for s in range(3)]
    assert np.all((np.concatenate(rewards) >= lo) & (np.concatenate(rewards) <= hi))
    assert {"accuracy": (0, 1), "ce": (-np.inf, 0), "softmax_diff": (-1, 1), "margin": (-np.inf, np.inf)}[reward] == (lo, hi)
