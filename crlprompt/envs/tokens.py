"""The token twin of the text env: RLPrompt's action space (a few discrete tokens) for array agents.

``TokenPromptEnv`` holds a :class:`~crlprompt.envs.text.TextPromptEnv`: an action
``MultiDiscrete([V] * positions)`` picks one word of a fixed vocabulary subset per position, the
words joined by spaces are the instruction, and the text env scores it (same rows, reward, cache
and counts). The observation is the soft env's ``Box(2,)`` so that Stable-Baselines3 and other
array agents run on it unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..errors import ConfigError, EnvError
from .text import TextPromptEnv

_WORD = re.compile(r"^[A-Za-z]{3,}$")


def token_vocabulary(tokenizer: Any, size: int, *, strict: bool = True) -> list[str]:
    """``size`` words, each one token of ``tokenizer`` (also after a space), in token-id order: for BPE
    vocabularies the most frequent merges first. Deterministic for a tokenizer. A tokenizer with fewer
    such words raises a :class:`ConfigError`, or with ``strict=False`` gives all it has."""
    words: list[str] = []
    seen: set[str] = set()
    for i in range(len(tokenizer)):
        word = tokenizer.decode([i]).strip()
        if not _WORD.match(word) or word.lower() in seen:
            continue
        if len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) != 1:
            continue
        seen.add(word.lower())
        words.append(word)
        if len(words) == size:
            return words
    if strict or not words:
        raise ConfigError(f"the tokenizer has only {len(words)} single-token words; ask for vocab_size <= {len(words)}")
    return words


class TokenPromptEnv(gym.Env):
    """A text env whose action is ``positions`` indices into a word list (RLPrompt's action space).

    ## Action Space
    ``MultiDiscrete([vocab_size] * positions)``; the prompt is ``" ".join(words[a])``. Other arrays
    (wrong shape, out of range, not integers) raise :class:`~crlprompt.errors.EnvError`.

    ## Observation Space
    ``Box(-inf, inf, (2,), float32)``: ``[last reward, 1]`` after a step, ``[0, 0]`` after reset.

    ## Rewards / Episode End / Info
    The text env's (``info["prompt"]`` holds the words scored); one step per episode.

    ## Arguments
    ``positions`` (default 5, RLPrompt's), ``vocab_size`` (default 256: :func:`token_vocabulary`),
    or ``words=[...]`` to give the list; every other keyword goes to :class:`TextPromptEnv`.
    """

    def __init__(self, env: TextPromptEnv | None = None, *, positions: int = 5, vocab_size: int = 256,
                 words: list[str] | None = None, **kwargs: Any):  # fmt: skip
        super().__init__()
        self.text = env if env is not None else TextPromptEnv(**kwargs)
        self.search = self.text.search
        """The text env's :class:`~crlprompt.envs.text.TextPromptSearch` (cache, counts)."""
        for name, v in (("positions", positions), ("vocab_size", vocab_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        tokenizer = self.search.setup.lm.tokenizer
        self.words = list(words) if words is not None else token_vocabulary(tokenizer, vocab_size)
        if not self.words or any(not isinstance(w, str) or not w.strip() for w in self.words):
            raise ConfigError("words must be a non-empty list of non-empty strings")
        self.positions = positions
        self.action_space = spaces.MultiDiscrete([len(self.words)] * positions)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.reward_range = self.text.reward_range

    def prompt_of(self, action: Any) -> str:
        """The instruction an action stands for."""
        a = np.asarray(action)
        if a.shape != (self.positions,) or not np.issubdtype(a.dtype, np.integer):
            raise EnvError(f"action must be an int array of shape ({self.positions},), got {a.dtype} {a.shape}")
        if (a < 0).any() or (a >= len(self.words)).any():
            raise EnvError(f"action indices must be in [0, {len(self.words)}), got {a.tolist()}")
        return " ".join(self.words[int(i)] for i in a)

    def evaluate(self, action: Any, *, split: str = "test") -> dict:
        """The text env's :meth:`~TextPromptEnv.evaluate` of an action's prompt."""
        return self.text.evaluate(self.prompt_of(action), split=split)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        _, info = self.text.reset(seed=seed, options=options)
        return np.zeros(2, np.float32), info

    def step(self, action: Any):
        _, reward, terminated, truncated, info = self.text.step(self.prompt_of(action))
        return np.array([reward, 1.0], np.float32), reward, terminated, truncated, info


