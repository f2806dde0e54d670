"""The D_RL split is ``drl``; ``rl`` names the RL term only. The earlier names of the split and its
fields (``rl``, ``rl_fraction``, ``max_rl``) still work, each with a DeprecationWarning, and what was
stored under them (run directories, configs) reads as it was."""

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest

import crlprompt  # noqa: F401  (registers the ids)
from crlprompt import PromptClassifier
from crlprompt.build import SetupConfig, build
from crlprompt.data.splits import Split, split_drl, split_name, split_rl
from crlprompt.envs import EnvConfig
from crlprompt.tasks import load_task

TEXTS = [f"good movie {i}" for i in range(20)] + [f"bad film {i}" for i in range(20)]
LABELS = [1] * 20 + [0] * 20


def test_split_name_maps_the_old_name_and_warns():
    with pytest.warns(DeprecationWarning, match="'rl' is now called 'drl'"):
        assert split_name("rl") == "drl"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [split_name(s) for s in ("drl", "test", "train", "nope")] == ["drl", "test", "train", "nope"]


def test_setup_and_task_data_rl_attributes_forward_to_drl():
    setup = build(SetupConfig(task="tiny", model="tiny-bert", num_tokens=2))
    with pytest.warns(DeprecationWarning, match="drl"):
        assert setup.rl is setup.drl
    first = setup.drl.subset(np.arange(3))
    with pytest.warns(DeprecationWarning):
        setup.rl = first  # the setter writes the new field
    assert setup.drl is first
    data = load_task("tiny")
    with pytest.warns(DeprecationWarning):
        assert data.rl is data.drl


def test_old_fraction_keyword_gives_the_same_split():
    rows = Split([f"t{i}" for i in range(30)], [i % 3 for i in range(30)])
    with pytest.warns(DeprecationWarning):
        old = split_rl(rows, 0.2, 5)
    new = split_drl(rows, 0.2, 5)
    assert [s.texts for s in old] == [s.texts for s in new] and len(new[1]) == 6
    with pytest.warns(DeprecationWarning, match="drl_fraction"):
        d = load_task("trec", source="staicc", rl_fraction=0.2, seed=3)
    assert d.drl.texts == load_task("trec", source="staicc", drl_fraction=0.2, seed=3).drl.texts
    assert load_task("trec", source="staicc", seed=3).drl.texts != d.drl.texts  # the keyword was used


def test_a_stored_setup_with_rl_fraction_reads_as_drl_fraction():
    assert SetupConfig.from_dict({"task": "tiny", "rl_fraction": 0.25}).drl_fraction == 0.25
    assert SetupConfig.from_stored({"task": "tiny", "rl_fraction": 0.25}).drl_fraction == 0.25
    with pytest.raises(Exception, match="drl_fraction must be a number in"):
        SetupConfig(task="tiny", drl_fraction=1.5)


def test_env_keywords_and_split_names_of_before_still_work(tmp_path):
    with pytest.warns(DeprecationWarning):
        cfg = EnvConfig.from_kwargs(task="tiny", model="tiny-llama", rl_fraction=0.3, max_rl=7, reward_split="rl")
    assert (cfg.setup.drl_fraction, cfg.max_drl, cfg.reward_split) == (0.3, 7, "drl")
    env = gym.make("CRLPrompt/Tiny-v0", max_drl=10)
    try:
        assert len(env.unwrapped.search.data) == 10  # max_drl cut the reward rows
        new = env.unwrapped.evaluate(split="drl")
        with pytest.warns(DeprecationWarning):
            old = env.unwrapped.evaluate(split="rl")
        assert old == new and new["split"] == "drl" and new["n"] == 10
    finally:
        env.close()


def test_a_run_directory_saved_with_an_rl_split_loads_its_rows(tmp_path):
    clf = PromptClassifier(["negative", "positive"], model="tiny-bert", method="probe", progress=False, verbose=False)
    clf.fit(TEXTS, LABELS).save(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert set(config["data"]) == {"train", "drl"}
    config["data"]["rl"] = config["data"].pop("drl")  # as a run saved before the rename
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    back = PromptClassifier.load(tmp_path / "run")
    assert back.splits["drl"].texts == clf.splits["drl"].texts and len(back.splits["drl"]) > 0
