"""The env's search-space options on the tiny model: BBT projections (gaussian, bbt, bbt_layer,
α and σ₀), start prompts (random, tokens, handcraft, handcraft_text, text:..., checkpoint),
every reward on the same rows per step, reward_split, the verbalizer head of a decoder, and the
errors each bad setting raises (the env stays usable afterwards)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import crlprompt  # noqa: F401 - registers the ids
from crlprompt.envs.projection import activation_scales, clipped_std
from crlprompt.errors import ConfigError
from crlprompt.prompts import SoftPrompt, text_prompt_ids, text_theta
from crlprompt.scoring import REWARDS, score_population

from helpers import envs
from helpers.envs import TINY

# Tiny's deep prefix: 4 tokens x 2 layers x (K, V) x 2 kv heads x 8 = 256 coordinates.


@pytest.fixture(scope="module")
def setup():
    return envs.tiny_search_setup(TINY)


def search(setup, **kw):
    return gym.make(TINY, setup=setup, **kw).unwrapped.search


def block_std(search_, n: int = 4000) -> torch.Tensor:
    """Empirical std of δ = A a per (layer, key/value) block, a ~ N(0, I): ``(L, 2)``."""
    a = torch.randn(n, search_.action_dim, generator=torch.Generator().manual_seed(0))
    delta = search_.projector(a).view(n, *search_.model.layout.shape)  # (n, P, L, 2, H, hd)
    return delta.std(0).mean(dim=(0, 3, 4))


# ----------------------------------------------------------------------------- projections


def test_gaussian_projection_is_unit_scale_and_identity_without_d(setup):
    s = search(setup, projection_dim=16)
    assert s.action_dim == 16 and s.projection.shape == (256, 16)
    assert block_std(s).mean() == pytest.approx(1.0, rel=0.1)
    assert search(setup).projection is None and search(setup).action_dim == 256


def test_bbt_projection_lands_at_the_measured_activation_scale(setup):
    scales = activation_scales(setup)  # (L, 2): std of the tiny LM's own keys and values
    assert scales.shape == (2, 2) and (scales > 0).all()
    s = search(setup, projection="bbt", projection_dim=16)
    torch.testing.assert_close(block_std(s), scales, rtol=0.12, atol=0)
    # α and σ₀ scale A exactly: α=2, σ₀=0.5 is 4x the same seeded matrix
    s4 = search(setup, projection="bbt", projection_dim=16, alpha=2.0, sigma0=0.5)
    torch.testing.assert_close(s4.projection, 4 * s.projection)
    assert not torch.equal(search(setup, projection="bbt", projection_dim=16, projection_seed=1).projection, s.projection)


def test_bbt_without_projection_dim_scales_each_coordinate(setup):
    s = search(setup, projection="bbt", alpha=3.0)
    a = torch.randn(2, 256, generator=torch.Generator().manual_seed(1))
    per_coord = (3.0 * activation_scales(setup)).view(1, 2, 2, 1, 1).expand(4, 2, 2, 2, 8).reshape(-1)
    torch.testing.assert_close(s.projector(a), a * per_coord)


def test_bbt_layer_gives_each_layer_its_own_slice_of_the_action(setup):
    s = search(setup, projection="bbt_layer", projection_dim=8)
    assert s.action_dim == 2 * 8 and s.projection.shape == (2, 128, 8)
    a = torch.zeros(1, 16)
    a[0, 8:] = 1.0  # only layer 1's slice
    delta = s.projector(a).view(s.model.layout.shape)  # (P, L, 2, H, hd)
    assert delta[:, 0].abs().sum() == 0 and delta[:, 1].abs().sum() > 0
    torch.testing.assert_close(block_std(s), activation_scales(setup), rtol=0.15, atol=0)


def test_clipped_std_ignores_outliers():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    x[:5] = 1e4  # a few massive activations
    assert clipped_std(x) == pytest.approx(1.0, rel=0.05) and x.std() > 50


def test_perturbation_moves_the_prompt_by_sigma_times_the_projection(setup):
    env = gym.make(TINY, setup=setup, projection="bbt", projection_dim=16, sigma=0.5)
    s = env.unwrapped.search
    a = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    expected = s.center + 0.5 * (torch.as_tensor(a) @ s.projection.T)
    np.testing.assert_allclose(env.unwrapped.prompt_for(a), expected.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- starts


def _center(**kw) -> torch.Tensor:
    return gym.make(TINY, head="probe", **kw).unwrapped.search.center


def test_start_random_and_tokens_match_the_soft_prompt_inits(setup):
    for kind in ("random", "tokens"):
        want = SoftPrompt(setup.model.layout, setup.lm, seed=0, init=kind).theta.detach()
        torch.testing.assert_close(_center(start=kind), want)


def test_start_text_holds_the_lm_keys_and_values_of_the_text(setup):
    text = "the movie was great"
    center = _center(start=f"text:{text}")
    torch.testing.assert_close(center, text_theta(setup.lm, setup.model.layout, text))
    # the last three of the 4 prefix tokens are the text's last words, computed by the LM itself
    ids = text_prompt_ids(setup.lm, text, 4)
    assert ids.tolist() == setup.lm.tokenizer(text, add_special_tokens=False)["input_ids"][-4:]
    from transformers import DynamicCache

    cache = DynamicCache()
    setup.lm.body(input_ids=ids[None], attention_mask=torch.ones(1, 4, dtype=torch.long), past_key_values=cache)
    keys0 = cache.layers[0].keys[0]  # (H, P, hd) of layer 0
    torch.testing.assert_close(center.view(setup.model.layout.shape)[:, 0, 0], keys0.permute(1, 0, 2))


def test_start_handcraft_is_a_boundary_token_prefix_and_handcraft_text_holds_the_template():
    env = gym.make(TINY, head="verbalizer", start="handcraft")
    s = env.unwrapped.search
    lay, lm = s.model.layout, s.setup.lm
    assert s.model.head_kind == "verbalizer"
    torch.testing.assert_close(s.center, text_theta(lm, lay, ""))
    filler = lm.tokenizer.cls_token_id  # tiny's tokenizer has no BOS/EOS
    assert text_prompt_ids(lm, "", 4).tolist() == [filler] * 4
    words = gym.make(TINY, head="verbalizer", start="handcraft_text").unwrapped.search.center
    assert not torch.equal(words, s.center)
    env.reset(seed=0)
    _, r, *_ = env.step(np.zeros(256, np.float32))
    assert 0.0 <= r <= 1.0


def test_start_checkpoint_loads_a_saved_prompt(setup, tmp_path):
    from crlprompt.agents import RandomSearch

    env = envs.make_vec(setup, 8, TINY)
    result = RandomSearch(env, seed=0).learn(16)
    path = result.save(tmp_path / "run", env)
    center = gym.make(TINY, head="checkpoint", start="checkpoint", checkpoint=str(path)).unwrapped.search.center
    np.testing.assert_allclose(center.numpy(), result.best_prompt, rtol=1e-6)


# ----------------------------------------------------------------------------- rewards


@pytest.mark.parametrize("reward", REWARDS)
def test_every_reward_scores_all_prompts_of_a_step_on_the_same_rows(setup, reward):
    env = envs.make_vec(setup, 4, TINY, reward=reward, reward_batch_size=16)
    env.reset(seed=3)
    a = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    _, r, _, _, info = env.step(np.repeat(a, 4, 0))  # the same prompt four times: the same rows, the same reward
    assert np.all(r == r[0]) and np.all(info["accuracy"] == info["accuracy"][0])
    assert set(info) >= {"accuracy"} and 0.0 <= info["accuracy"][0] <= 1.0


def test_reward_split_train_scores_the_train_rows(setup):
    env = gym.make(TINY, setup=setup, reward="ce", reward_split="train")
    s = env.unwrapped.search
    assert len(s.data) == len(setup.train) != len(setup.drl)
    env.reset(seed=0)
    _, r, *_ = env.step(np.zeros(256, np.float32))
    want = score_population(setup.model, setup.train, s.center[None]).reward("ce")[0]
    assert r == pytest.approx(float(want), abs=1e-6)


# ----------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"projection": "orthogonal"}, "projection must be one of"),
        ({"projection": "bbt_layer"}, "needs projection_dim"),
        ({"projection": "bbt_layer", "projection_dim": 500}, r"per layer in \[1, 128\]"),
        ({"projection": "bbt_layer", "projection_dim": 4, "prompt": "shallow"}, "needs a deep prompt"),
        ({"projection": "bbt", "projection_dim": 257}, r"\[1, D=256\]"),
        ({"alpha": 0.0}, "alpha must be"),
        ({"sigma0": float("nan")}, "sigma0 must be"),
        ({"start": "handcrafted"}, "start must be one of"),
        ({"start": "text:   "}, "start must be one of"),
        ({"start": "checkpoint"}, "needs checkpoint="),
        ({"start": "tokens"}, "head='planted' chooses its own random start"),
        ({"reward_split": "test"}, "reward_split must be one of"),
        ({"reward": "f1"}, "reward must be one of"),
    ],
)
def test_bad_settings_raise_one_config_error_and_leave_the_env_usable(setup, kw, match):
    with pytest.raises(ConfigError, match=match):
        gym.make(TINY, setup=setup, **kw)
    env = gym.make(TINY, setup=setup)
    env.reset(seed=0)
    assert env.step(np.zeros(256, np.float32))[2] is True


def test_k_larger_than_a_class_has_is_a_data_error_naming_the_fix():
    from crlprompt.errors import DataError

    with pytest.raises(DataError, match="pass a smaller k"):
        gym.make(TINY, k_shot=200)


@pytest.mark.parametrize(
    "kw",
    [
        {"projection": "bbt", "projection_dim": 16, "reward": "ce"},
        {"projection": "bbt_layer", "projection_dim": 8, "reward": "softmax_diff", "reward_split": "train"},
        {"head": "verbalizer", "start": "handcraft", "projection": "bbt", "reward": "hinge"},
    ],
)
def test_env_checkers_pass_with_the_new_options(kw):
    import warnings

    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(TINY, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_close_check=True)
        sb3_check_env(env.unwrapped, warn=False)
