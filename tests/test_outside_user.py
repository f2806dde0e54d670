"""The outside user's first hour (issue: Gymnasium, SB3 and the CLI used directly, as registered).

Each test reproduces a failure a new user hit: an async vector env that hung, registered ids whose
in-box actions all scored the same, SB3's make_vec_env building each env twice, an SST-2 env that
demanded a test file it never uses, CLI flags that contradicted their own messages.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import crlprompt
from crlprompt import cli

TINY, TINY_PROJ = "CRLPrompt/Tiny-v0", "CRLPrompt/Tiny-Proj64-v0"


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
def test_async_vector_env_steps_under_fork_without_hanging():
    """gym.make_vec(..., "async") forks workers after the parent built an env (torch's thread pool
    up); the env module's at-fork hook gives each worker one thread. Bounded: a hang fails, not blocks."""
    code = (
        "import gymnasium as gym, numpy as np, crlprompt\n"
        "v = gym.make_vec('CRLPrompt/Tiny-Proj64-v0', 2, vectorization_mode='async')\n"
        "v.reset(seed=0)\n"
        "_, r, term, trunc, _ = v.step(np.zeros((2, 64), np.float32))\n"
        "assert r.shape == (2,) and term.all(), (r, term)\n"
        "v.close()\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}  # 2 threads: the pool exists
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


@pytest.mark.parametrize("env_id", [TINY, TINY_PROJ])
def test_registered_tiny_ids_move_accuracy_inside_the_box(env_id):
    """As registered (no kwargs), uniformly sampled in-box actions must not all score the same."""
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    rewards = {env.step(env.action_space.sample())[1] for _ in range(40)}
    assert len(rewards) >= 3, rewards


@pytest.mark.slow  # SB3 PPO for 1,500 steps
def test_unchanged_sb3_ppo_learns_on_the_projected_tiny_id():
    """SB3 PPO with its own defaults (short rollouts only) improves D_RL accuracy inside the Box."""
    from stable_baselines3 import PPO

    env = gym.make(TINY_PROJ)
    search = env.unwrapped.search
    start = float(search.rewards(search.center[None], np.random.default_rng(0))[1][0])
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0, device="cpu")
    model.learn(1500)
    obs, _ = env.reset()
    action, _ = model.predict(obs, deterministic=True)
    _, _, _, _, info = env.step(action)
    assert info["accuracy"] > start + 0.05, (start, info["accuracy"])


def test_default_make_vec_is_the_batched_same_step_env():
    """gym.make_vec(id, n) gives the batched env: every step is a scored step (no zero-reward
    NEXT_STEP resets, which Gymnasium's sync/async wrappers would interleave by default)."""
    vec = gym.make_vec(TINY, 4)
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    vec.reset(seed=0)
    rng = np.random.default_rng(0)
    steps = [vec.step(rng.uniform(-1, 1, (4, vec.single_action_space.shape[0])).astype(np.float32))[1] for _ in range(3)]
    assert all((r > 0).all() for r in steps)  # accuracy of a 2-class problem is never 0 here


def test_sb3_make_vec_env_builds_each_env_once(monkeypatch):
    from stable_baselines3.common.env_util import make_vec_env

    from crlprompt.envs import search as search_module

    calls = []
    original = search_module.make_search
    monkeypatch.setattr(search_module, "make_search", lambda *a, **k: calls.append(1) or original(*a, **k))
    vec = make_vec_env(TINY_PROJ, n_envs=2)
    assert len(calls) == 2
    assert vec.reset().shape == (2, 2)


def test_ansi_render_reports_the_step_its_reward_accuracy_and_the_center():
    """The ansi line carries this episode's numbers, not just its labels: the step count, the last
    step's reward and accuracy (a reward kind that differs from accuracy) and the moved center's norm."""
    env = gym.make(TINY, render_mode="ansi", episode_length=2, reward="margin")
    theta = np.full(env.unwrapped.center.shape, 0.5, np.float32)  # |θ| = 0.5 sqrt(D)
    env.reset(seed=0, options={"center": theta})
    assert env.render() == f"step 0/2: no step yet; |center| {0.5 * np.sqrt(theta.size):.3f}"
    action = np.linspace(-1, 1, env.action_space.shape[0], dtype=np.float32)
    moved = env.unwrapped.prompt_for(action)  # the prompt this step scores: the next center (2-step episodes)
    _, reward, _, _, info = env.step(action)
    assert reward != info["accuracy"]
    assert env.render() == (f"step 1/2: reward {reward:.4f} accuracy {info['accuracy']:.4f}; "
                            f"|center| {np.linalg.norm(moved):.3f}")  # fmt: skip


def test_sst2_env_needs_no_test_file(monkeypatch, needs_staicc):
    monkeypatch.delenv("CRLPROMPT_DATA_DIR", raising=False)
    with pytest.raises(crlprompt.DataError, match="dev.tsv"):
        crlprompt.load_task("sst2", max_train=200)
    env = gym.make("CRLPrompt/SST2-MiniLM-Proj64-v0", model="tiny-bert", max_train=200, num_tokens=2)
    env.reset(seed=0)
    assert 0 <= env.step(env.action_space.sample())[1] <= 1


# ----------------------------------------------------------------------------- CLI


def test_bool_flags_parse_both_ways():
    from crlprompt.runners.common import parse_config
    from crlprompt.runners.config import TrainConfig

    assert parse_config(TrainConfig, ["--overwrite"]).overwrite is True
    assert parse_config(TrainConfig, ["--overwrite", "True"]).overwrite is True
    assert parse_config(TrainConfig, ["--no-resume"]).resume is False
    assert parse_config(TrainConfig, ["--resume=False"]).resume is False
    assert parse_config(TrainConfig, ["--task", "True"]).setup.task == "True"  # not a bool field


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["trian"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err


def test_usage_names_the_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "usage: crl-prompt train" in capsys.readouterr().out


def test_threads_option(monkeypatch):
    import torch

    from crlprompt.runners.common import default_threads, set_threads

    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert set_threads(None) == default_threads() >= 1
        with pytest.raises(SystemExit) as e:
            cli.main(["--threads", "0", "train"])
        assert e.value.code == 2
    finally:
        torch.set_num_threads(before)


def test_valid_task_list_names_tiny():
    with pytest.raises(crlprompt.DataError, match="tiny"):
        crlprompt.load_task("no-such-task")


def test_an_internal_bug_keeps_its_traceback(monkeypatch):
    """Only CRLPromptError becomes 'crl-prompt: error' + exit 2; a plain bug propagates."""
    from crlprompt.runners import train

    def boom(cfg, progress=True):
        raise KeyError("internal")

    monkeypatch.setattr(train, "run", boom)
    with pytest.raises(KeyError):
        cli.main(["train", "--task", "tiny", "--model", "tiny-llama"])
