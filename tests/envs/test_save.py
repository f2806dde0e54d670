"""``env.unwrapped.save(path, action)``: the prompt an outside optimiser found, written as the run
directory a search result's ``save`` writes, which ``crl-prompt eval`` and ``PromptClassifier.load``
score as the env does."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from crlprompt import PromptClassifier
from crlprompt.agents import RandomSearch
from crlprompt.errors import ConfigError, EnvError

from helpers.envs import TINY, TINY_PROJ


def eval_cli(path, capsys) -> dict:
    from crlprompt import cli

    capsys.readouterr()
    cli.main(["eval", "--checkpoint", str(path)])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def vec():
    return gym.make_vec(TINY_PROJ, num_envs=4, vectorization_mode="vector_entry_point")


def test_a_found_action_saved_from_the_env_scores_the_same_everywhere(vec, tmp_path, capsys):
    action = np.random.default_rng(0).uniform(-1, 1, vec.single_action_space.shape).astype(np.float32)
    center = vec.unwrapped.search.center.clone()
    run = vec.unwrapped.save(tmp_path / "found", action, meta={"algo": "pycma", "evals": 200})
    assert run == tmp_path / "found" and (vec.unwrapped.search.center == center).all()
    want = vec.unwrapped.evaluate(action, split="test")
    assert vec.unwrapped.evaluate(prompt=str(run), split="test")["accuracy"] == pytest.approx(want["accuracy"])

    res = eval_cli(run, capsys)
    assert res["accuracy"] == pytest.approx(want["accuracy"], abs=1e-7) and res["n"] == want["n"]
    test = vec.unwrapped.search.setup.rows.test
    clf = PromptClassifier.load(run, device="cpu", verbose=False)
    assert clf.evaluate(test.texts, test.labels)["accuracy"] == pytest.approx(want["accuracy"], abs=1e-7)
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == "pycma" and config["evals"] == 200 and config["env_id"] == TINY_PROJ


def test_the_env_writes_what_a_search_result_writes(vec, tmp_path):
    result = RandomSearch(vec, seed=0).learn(8)
    by_result = result.save(tmp_path / "result", vec).parent
    by_env = vec.unwrapped.save(tmp_path / "env", prompt=result.best_prompt)
    assert sorted(p.relative_to(by_env) for p in by_env.rglob("*")) == sorted(
        p.relative_to(by_result) for p in by_result.rglob("*"))
    own = {"algo", "which", "env_reward", "evals"}  # what only a search result knows
    config = {k: v for k, v in json.loads((by_result / "config.json").read_text()).items() if k not in own}
    assert json.loads((by_env / "config.json").read_text()) == config
    assert (by_env / "prompt.safetensors").is_file() and (by_env / "adapter" / "adapter_config.json").is_file()


def test_the_single_env_saves_a_theta_or_its_center(tmp_path, capsys):
    env = gym.make(TINY)
    theta = env.unwrapped.prompt_for(np.full(env.action_space.shape, 0.5, np.float32))
    run = env.unwrapped.save(tmp_path / "theta", prompt=theta)
    assert eval_cli(run, capsys)["accuracy"] == pytest.approx(env.unwrapped.evaluate(prompt=theta)["accuracy"], abs=1e-7)
    start = env.unwrapped.save(tmp_path / "center")
    assert eval_cli(start, capsys)["accuracy"] == pytest.approx(env.unwrapped.evaluate()["accuracy"], abs=1e-7)


def test_save_refuses_what_it_cannot_write(vec, tmp_path):
    a = np.zeros(vec.single_action_space.shape, np.float32)
    with pytest.raises(EnvError, match="not both"):
        vec.unwrapped.save(tmp_path / "x", a, prompt=vec.unwrapped.search.center)
    with pytest.raises(EnvError, match="shape"):
        vec.unwrapped.save(tmp_path / "x", np.zeros(3, np.float32))
    with pytest.raises(ConfigError, match="setup"):
        vec.unwrapped.save(tmp_path / "x", a, meta={"setup": {}})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="overwrite=True"):
        vec.unwrapped.save(tmp_path / "full", a)
    vec.unwrapped.save(tmp_path / "full", a, overwrite=True)
    assert not (tmp_path / "full" / "keep.txt").exists() and not (tmp_path / "x").exists()
