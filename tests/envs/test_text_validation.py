"""The text env's and its token twin's refusals, each one line naming the value and the fix, and
what a refused call leaves behind (nothing: no evaluation counted, the env still usable)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import crlprompt  # noqa: F401  (registers the ids)
from crlprompt.build import SetupConfig
from crlprompt.envs.text import TextEnvConfig
from crlprompt.errors import ConfigError, EnvError

TEXT, TOKENS = "CRLPrompt/Tiny-Text-v0", "CRLPrompt/Tiny-Tokens-v0"


@pytest.fixture(scope="module")
def setup():
    return gym.make(TEXT).unwrapped.search.setup


def test_text_env_config_names_each_bad_value():
    base = SetupConfig(task="tiny", model="tiny-llama")
    cases = [
        ({"reward_split": "test"}, "reward_split must be 'drl' or 'train', got 'test'"),
        ({"max_rows": 0}, "max_rows must be an int >= 1, got 0"),
        ({"max_chars": True}, "max_chars must be an int >= 1, got True"),
        ({"separator": 3}, "separator must be a string, got 3"),
        ({"reward": "bleu"}, r"reward must be one of \("),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            TextEnvConfig(setup=base, **kwargs)
    with pytest.raises(ConfigError, match="setup must be a SetupConfig, got str"):
        TextEnvConfig(setup="tiny")
    with pytest.raises(ConfigError, match="scored by the LM's own verbalizer; drop head='linear'"):
        TextEnvConfig(setup=SetupConfig(task="tiny", model="tiny-llama", head="linear"))
    cfg = TextEnvConfig(setup={"task": "tiny", "model": "tiny-llama"})  # a stored dict is read back
    assert cfg.setup.head == "verbalizer" and cfg.setup.num_tokens == 0 and cfg.reward_split == "drl"
    with pytest.raises(ConfigError, match=r"unknown text env option\(s\) \['sigma'\]; env options: \["):
        TextEnvConfig.from_kwargs(task="tiny", model="tiny-llama", sigma=1.0)


def test_prompt_refusals_name_the_problem_and_count_nothing(setup):
    env = gym.make(TEXT, setup=setup, max_chars=12)
    search = env.unwrapped.search
    env.reset(seed=0)
    before = search.num_evals
    cases = [
        (7, "a text prompt must be a str, got int"),
        (" \t", r"the prompt is empty \(or whitespace only\); give an instruction of at least one word"),
        ("a" * 13, "the prompt has 13 characters, more than max_chars=12; shorten it"),
        ("na\u00efve", r"outside the action space's charset \['\u00ef'\]; map it with crlprompt.envs.text.clean_prompt\(\)"),
    ]
    for prompt, message in cases:
        with pytest.raises(EnvError, match=message):
            env.step(prompt)
    assert search.num_evals == before
    with pytest.raises(EnvError, match=r"a text env takes no reset options, got \['center'\]"):
        env.reset(options={"center": 0})
    assert np.isfinite(env.step("rate it")[1]) and search.num_evals == before + 1
    assert env.step("rate it")[1] == env.step("rate it")[1] and search.num_evals == before + 1  # cached
    with pytest.raises(EnvError, match=r"split must be one of \('test', 'drl', 'train'\), got 'dev'"):
        env.unwrapped.evaluate("rate it", split="dev")


def test_token_twin_refusals(setup):
    env = gym.make(TOKENS, setup=setup).unwrapped
    n, k = env.positions, len(env.words)
    assert env.prompt_of(np.arange(n)) == " ".join(env.words[:n])
    with pytest.raises(EnvError, match=rf"action must be an int array of shape \({n},\), got float32 \({n},\)"):
        env.prompt_of(np.zeros(n, np.float32))
    with pytest.raises(EnvError, match=rf"action must be an int array of shape \({n},\), got int64 \({n + 1},\)"):
        env.prompt_of(np.zeros(n + 1, np.int64))
    with pytest.raises(EnvError, match=rf"action indices must be in \[0, {k}\), got \[-1, "):
        env.prompt_of(np.array([-1] + [0] * (n - 1)))
    with pytest.raises(EnvError, match=rf"action indices must be in \[0, {k}\)"):
        env.prompt_of(np.array([k] + [0] * (n - 1)))
    for kwargs, message in (({"positions": 0}, "positions must be an int >= 1, got 0"),
                            ({"vocab_size": 2.0}, "vocab_size must be an int >= 1, got 2.0"),
                            ({"words": []}, "words must be a non-empty list of non-empty strings"),
                            ({"words": ["ok", " "]}, "words must be a non-empty list")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            gym.make(TOKENS, setup=setup, **kwargs)
    small = gym.make(TOKENS, setup=setup, words=["good", "bad"], positions=2).unwrapped
    assert small.action_space == gym.spaces.MultiDiscrete([2, 2]) and small.prompt_of(np.array([1, 0])) == "bad good"
    with pytest.raises(ConfigError, match=r"the tokenizer has only \d+ single-token words; ask for vocab_size <= \d+"):
        gym.make(TOKENS, setup=setup, vocab_size=10**7)
