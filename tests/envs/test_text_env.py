"""The text-prompt env (crlprompt.envs.text) and its token twin (crlprompt.envs.tokens) on the tiny
random Llama; the SmolLM2 ids behind the slow marker."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import crlprompt
from crlprompt.errors import ConfigError, EnvError
from crlprompt.registry import text_env_ids

TEXT, TOKENS = "CRLPrompt/Tiny-Text-v0", "CRLPrompt/Tiny-Tokens-v0"
UNBOUNDED_OBS = "observation space m"  # the Box(2,) observation of the token twin is unbounded, as the soft env's


@pytest.fixture(scope="module")
def setup():
    """The tiny text ids' model and data, built once (passed as ``setup=`` to every env below)."""
    return gym.make(TEXT).unwrapped.search.setup


def make(setup, env_id=TEXT, **kw):
    return gym.make(env_id, setup=setup, **kw)


def reward_of(env, prompt) -> float:
    env.reset(seed=0)
    return env.step(prompt)[1]


def test_text_ids_are_registered_apart_from_the_soft_ids():
    ids = text_env_ids()
    assert {TEXT, TOKENS, "CRLPrompt/SST2-SmolLM2-Text-v0", "CRLPrompt/TREC-SmolLM2-Text-v0",
            "CRLPrompt/SST2-SmolLM2-Tokens-v0"} <= set(ids)  # fmt: skip
    assert all(i in gym.registry for i in ids) and not set(ids) & set(crlprompt.env_ids())
    kw = gym.spec("CRLPrompt/SST2-SmolLM2-Text-v0").kwargs  # the soft 16-shot id's rows and fitness
    soft = gym.spec("CRLPrompt/SST2-SmolLM2-16Shot-v0").kwargs
    assert all(kw[k] == soft[k] for k in ("task", "model", "k_shot", "data_seed", "reward", "reward_split"))


def test_prefix_scoring_is_the_lm_reading_the_instruction_then_the_input(setup):
    """The instruction's keys/values as a prefix score exactly what the concatenated text scores."""
    from crlprompt.batching import encode
    from crlprompt.scoring import score_population
    from crlprompt.tasks import Split

    env = make(setup, reward="ce")
    instruction = "the story was about a dog"
    env.reset(seed=0)
    _, reward, *_ = env.step(instruction)
    rows = setup.rows.drl
    joined = encode(Split([f"{instruction}\n{t}" for t in rows.texts], rows.labels), setup.lm.tokenizer,
                    spec=setup.spec, template="lm")  # fmt: skip
    plain = score_population(setup.model, joined, torch.zeros(1, 0)).reward("ce")
    assert reward == pytest.approx(float(plain[0]), abs=1e-5)
    assert reward != pytest.approx(env.unwrapped.evaluate("", split="drl")["loss"] * -1, abs=1e-4)


def test_different_prompts_get_different_rewards_and_info_says_what_was_scored(setup):
    env = make(setup)
    obs, info = env.reset(seed=0)
    assert obs == "" and info == {}
    rewards = []
    for prompt in ("the movie was great", "what is the number of the city", "bad"):
        obs, r, terminated, truncated, info = env.step(prompt)
        assert obs == prompt and info["prompt"] == prompt and info["reward"] == r and terminated and not truncated
        assert 0.0 <= info["accuracy"] <= 1.0 and r <= 0.0  # the tiny id's reward is ce: mean log p(y)
        rewards.append(r)
    assert len(set(rewards)) == 3


def test_cache_serves_a_repeat_without_a_model_call_or_an_evaluation(setup, monkeypatch):
    import crlprompt.envs.text as text

    env = make(setup)
    env.reset(seed=0)
    search = env.unwrapped.search
    first = env.step("a wonderful film")[1:]
    calls = []
    real = text.score_population
    monkeypatch.setattr(text, "score_population", lambda *a, **k: calls.append(1) or real(*a, **k))
    evals, hits = search.num_evals, search.cache_hits
    again = env.step("a wonderful film")[1:]
    assert again == first and calls == [] and search.num_evals == evals and search.cache_hits == hits + 1
    env.step("a dull film")
    assert calls == [1] and search.num_evals == evals + 1
    rewards, _ = search.score(["x y", "x y", "a dull film"])  # a batch: each new prompt is scored once
    assert rewards[0] == rewards[1] and search.num_evals == evals + 2 and len(calls) == 2


def test_evaluate_scores_any_split_without_counting(setup):
    from crlprompt.floors import handcraft_floor

    env = make(setup)
    search = env.unwrapped.search
    before = search.num_evals
    out = env.unwrapped.evaluate("the movie was fun", split="test")
    assert set(out) == {"accuracy", "loss", "n", "split", "prompt"} and out["n"] == len(setup.test)
    assert 0 <= out["accuracy"] <= 1 and out["loss"] > 0
    assert env.unwrapped.evaluate("the movie was fun", split="train")["n"] == len(setup.train)
    hand = handcraft_floor(setup)  # "" is the template alone: the HandCraft floor
    assert env.unwrapped.evaluate("", split="drl")["accuracy"] == pytest.approx(hand["drl_acc"])
    assert env.unwrapped.evaluate("", split="test")["accuracy"] == pytest.approx(hand["test_acc"])
    assert search.num_evals == before
    with pytest.raises(EnvError, match="split"):
        env.unwrapped.evaluate("x", split="dev")


@pytest.mark.parametrize("bad, match", [(3, "must be a str"), ("", "empty"), ("  \n", "empty"), ("a" * 129, "max_chars"),
                                        ("caf\u00e9", "charset"), (["a"], "must be a str")])  # fmt: skip
def test_bad_prompts_raise_env_error_and_leave_the_env_usable(setup, bad, match):
    env = make(setup)
    env.reset(seed=0)
    evals = env.unwrapped.search.num_evals
    with pytest.raises(EnvError, match=match):
        env.step(bad)
    assert env.unwrapped.search.num_evals == evals
    assert np.isfinite(env.step("fine")[1])


def test_clean_prompt_maps_free_text_onto_the_charset(setup):
    from crlprompt.envs.text import CHARSET, clean_prompt

    out = clean_prompt("  \u201cCaf\u00e9\u201d   reviews \u2014 rate them\u2026  \n", max_chars=30)
    assert out == '"Cafe" reviews - rate them...' and set(out) <= set(CHARSET)
    assert make(setup).action_space.contains(out)


def test_reward_kinds_and_config_errors(setup):
    from crlprompt.envs.text import TEXT_REWARD_RANGES

    env = make(setup, reward="stableprompt")
    parts = {k: reward_of(make(setup, reward=k), "good") for k in ("accuracy", "softmax_diff")}
    env.reset(seed=0)
    _, r, _, _, info = env.step("good")
    assert r == pytest.approx(parts["accuracy"] + parts["softmax_diff"]) and info["accuracy"] == parts["accuracy"]
    assert env.unwrapped.reward_range == TEXT_REWARD_RANGES["stableprompt"] == (-1.0, 2.0)
    for kw, match in (({"reward": "bleu"}, "reward"), ({"head": "linear"}, "verbalizer"),
                      ({"sigma": 1.0}, "unknown text env option"), ({"max_chars": 0}, "max_chars")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            gym.make(TEXT, **kw)


def test_gymnasium_checker_passes_on_the_text_env(setup):
    from gymnasium.utils.env_checker import check_env

    env = make(setup)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert not [str(w.message) for w in caught]


def test_token_twin_passes_gymnasium_and_sb3_checkers_and_scores_its_words(setup):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(setup, TOKENS).unwrapped
    assert env.action_space == gym.spaces.MultiDiscrete([32] * 5) and len(set(env.words)) == 32
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
        sb3_check_env(env, warn=True)
    assert not [str(w.message) for w in caught if UNBOUNDED_OBS not in str(w.message)]
    env.reset(seed=0)
    action = np.array([0, 1, 2, 3, 4])
    obs, r, terminated, _, info = env.step(action)
    assert info["prompt"] == " ".join(env.words[:5]) and obs[0] == np.float32(r) and terminated
    assert r == env.text.step(info["prompt"])[1]  # the same prompt through the text env: the cached reward
    assert env.evaluate(action, split="drl") == env.text.evaluate(info["prompt"], split="drl")
    for bad in (np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3, 32]), np.zeros(5, np.float32)):
        with pytest.raises(EnvError):
            env.step(bad)


def test_sb3_ppo_runs_unchanged_on_the_token_twin(setup):
    from stable_baselines3 import PPO

    env = make(setup, TOKENS).unwrapped
    search = env.search
    evals, hits = search.num_evals, search.cache_hits
    PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu").learn(32)
    assert (search.num_evals - evals) + (search.cache_hits - hits) == 32  # every step scored once or cached


@pytest.mark.slow
def test_smollm2_sst2_text_env_scores_an_instruction(shared_data_dir):
    env = gym.make("CRLPrompt/SST2-SmolLM2-Text-v0", data_dir=str(shared_data_dir), max_test=16)
    search = env.unwrapped.search
    assert len(search.data) == 32  # the 16-shot train rows (16 per class), as the soft 16-shot id
    env.reset(seed=0)
    _, r1, *_ = env.step("Classify the sentiment of the movie review.")
    _, r2, _, _, info = env.step("Answer with one word.")
    assert r1 != r2 and r1 <= 0 and 0 <= info["accuracy"] <= 1 and search.num_evals == 2
    out = env.unwrapped.evaluate("Classify the sentiment of the movie review.", split="test")
    assert out["n"] == 16 and 0 <= out["accuracy"] <= 1
