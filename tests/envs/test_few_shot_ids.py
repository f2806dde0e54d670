"""The 16-shot ids: registered without projected twins, their defaults valid EnvConfigs (fast);
Gymnasium's and SB3's env checkers on each, with the real offline models (slow)."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import crlprompt
from crlprompt.envs import EnvConfig
from crlprompt.registry import ENV_SPECS

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
FEW_SHOT_IDS = [f"CRLPrompt/{t}-{m}-16Shot-v0" for t in ("SST2", "TREC", "AGNews") for m in ("SmolLM2", "MiniLM")]


def test_few_shot_ids_are_registered_with_valid_bbt_defaults():
    ids = crlprompt.env_ids()
    assert set(FEW_SHOT_IDS) <= set(ids) and all(i in gym.registry for i in FEW_SHOT_IDS)
    assert not [i for i in ids if "16Shot-Proj64" in i]  # already projected: no -Proj64 twin
    assert "CRLPrompt/TREC-MiniLM-Proj64-v0" in ids  # the full-data ids keep theirs
    for env_id in FEW_SHOT_IDS:
        kw = gym.spec(env_id).kwargs
        cfg = EnvConfig.from_kwargs(**kw)  # every default is a valid option
        assert cfg.setup.k_shot == 16 and cfg.setup.data_seed == 13 and cfg.projection == "bbt"
        assert cfg.projection_dim == 500 and cfg.reward == "ce"
        if "SmolLM2" in env_id:  # decoders: the LM's own head, from the HandCraft prompt, fitness on train
            assert cfg.head_kind == "verbalizer" and cfg.start == "handcraft" and cfg.reward_split == "train"
        else:  # MiniLM has no LM head: a probe
            assert cfg.head_kind == "probe" and cfg.reward_split == "drl"
    assert all(name in ENV_SPECS for name in ("TREC-MiniLM", "SST2-MiniLM", "TREC-SmolLM2"))  # old ids kept


@pytest.mark.slow
@pytest.mark.parametrize("env_id", FEW_SHOT_IDS)
def test_few_shot_ids_pass_the_gymnasium_and_sb3_checkers(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env
    from gymnasium.utils.env_checker import check_env

    from crlprompt.errors import DataError

    try:
        # The checkers test the API, not the fitness: 4-row minibatches keep ~30 SmolLM2 steps cheap.
        env = gym.make(env_id, data_dir=str(SHARED_DATA), reward_batch_size=4)
    except (DataError, ImportError, OSError) as e:  # an offline package or data file is missing
        pytest.skip(f"{env_id}: {e}")
    s = env.unwrapped.search
    assert s.action_dim == 500 and env.action_space.shape == (500,)
    k = {"SST2": 2, "TREC": 6, "AGNews": 4}[env_id.split("/")[1].split("-")[0]]
    assert len(s.data) == 16 * k  # 16 rows per class score every prompt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_close_check=True)  # the close check would build the model again
        sb3_check_env(env.unwrapped, warn=False)
    env.reset(seed=0)
    _, r, terminated, truncated, info = env.step(np.zeros(500, np.float32))
    assert terminated and not truncated and r <= 0.0 and 0.0 <= info["accuracy"] <= 1.0  # ce: log p(y) <= 0
