"""TextPromptEnv: a readable text prompt (an instruction) for a frozen LM, scored like the soft prompts.

The env shares the soft few-shot ids' target setup: the same :class:`~crlprompt.build.SetupConfig`
(task, model, LM-BFF k-shot rows, data seed), the task's HandCraft template and the LM's own
verbalizer (label-word logits at the last position), and the same reward functions
(:data:`crlprompt.scoring.REWARDS` plus StablePrompt's composite). An action is a string; it is
put before every templated input as an instruction line::

    <instruction>\\n<template around the input>      e.g.  Decide if the review is positive.\\nReview: ...

The instruction is run through the LM once, and its keys and values are a deep prefix in front of
every row (:func:`crlprompt.prompts.text_theta`): exactly the LM reading the instruction and then
the input, at the cost of the input alone. Scored prompts are cached by their token ids, so a
repeated string costs no model call and counts no evaluation.
"""

from __future__ import annotations

import dataclasses
import logging
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ..build import Setup, SetupConfig, build, build_model, resolve_device
from ..data.splits import split_name, warn_renamed
from ..errors import ConfigError, EnvError
from ..prompts import PromptedModel
from ..prompts import _kv_theta as kv_theta  # the LM's own keys/values of given token ids
from ..scoring import REWARD_RANGES, REWARDS, PopulationScores, score_population

log = logging.getLogger(__name__)

#: Characters an instruction may hold: printable ASCII (letters, digits, punctuation, space, tab,
#: newline). Agents map generated text onto it with :func:`clean_prompt`.
CHARSET = string.ascii_letters + string.digits + string.punctuation + " \t\n"
#: StablePrompt's reward (Kwon et al. 2024): accuracy plus the softmax difference p(y) − max_{y'≠y} p(y').
COMPOSITE = "stableprompt"
TEXT_REWARDS = (*REWARDS, COMPOSITE)
TEXT_REWARD_RANGES = {**REWARD_RANGES, COMPOSITE: (-1.0, 2.0)}
SPLITS = ("test", "drl", "train")


def reward_of(scores: PopulationScores, kind: str) -> torch.Tensor:
    """``(K,)`` reward ``kind`` of :data:`TEXT_REWARDS` (the composite adds two of scoring's rewards)."""
    if kind == COMPOSITE:
        return scores.reward("accuracy") + scores.reward("softmax_diff")
    return scores.reward(kind)


def clean_prompt(text: str, max_chars: int = 256) -> str:
    """``text`` mapped onto :data:`CHARSET` (typographic quotes and dashes to ASCII, other characters
    dropped, runs of spaces squeezed), stripped and cut to ``max_chars``: what an agent LM's output
    becomes before it is an action."""
    import unicodedata

    table = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                           "\u2026": "...", "\u00a0": " "})  # fmt: skip
    text = unicodedata.normalize("NFKD", text.translate(table))
    text = "".join(c for c in text if c in CHARSET)
    text = "\n".join(" ".join(line.split()) for line in text.splitlines())
    return text.strip()[:max_chars].strip()


@dataclass
class TextEnvConfig:
    """Options of :class:`TextPromptEnv` (``gym.make`` keywords map onto them as for the soft env)."""

    setup: SetupConfig = field(default_factory=lambda: SetupConfig(task="sst2", model="smollm2"))
    """Task, model, data split (:class:`crlprompt.build.SetupConfig`); the head is always the verbalizer."""
    reward: str = "accuracy"
    """One of :data:`TEXT_REWARDS`: accuracy, ce (mean log p(y)), hinge, margin, softmax_diff, or
    stableprompt (accuracy + softmax_diff, StablePrompt's); accuracy is always in info."""
    reward_split: str = "drl"
    """Rows the reward is computed on: drl = D_RL (``"rl"``: its earlier name) | train = the training rows (the 16-shot ids)."""
    max_chars: int = 256
    """Longest instruction (the Text space's ``max_length``)."""
    separator: str = "\n"
    """What joins the instruction and the templated input."""
    max_rows: int = 128
    """Rows per model call when scoring."""
    device: str | None = None
    """cpu | cuda | None (= cuda when available)."""

    def __post_init__(self) -> None:
        if isinstance(self.setup, dict):
            self.setup = SetupConfig.from_dict(self.setup)
        if not isinstance(self.setup, SetupConfig):
            raise ConfigError(f"setup must be a SetupConfig, got {type(self.setup).__name__}")
        if self.setup.head == "linear":
            raise ConfigError("a text prompt is scored by the LM's own verbalizer; drop head='linear'")
        # no soft prompt: the setup's model is the bare template + verbalizer (the HandCraft scorer)
        self.setup = dataclasses.replace(self.setup, head="verbalizer", prompt="shallow", num_tokens=0,
                                         prompt_encoder="none")  # fmt: skip
        if self.reward not in TEXT_REWARDS:
            raise ConfigError(f"reward must be one of {TEXT_REWARDS}, got {self.reward!r}")
        self.reward_split = split_name(self.reward_split)
        if self.reward_split not in ("drl", "train"):
            raise ConfigError(f"reward_split must be 'drl' or 'train', got {self.reward_split!r}")
        for name in ("max_chars", "max_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(self.separator, str):
            raise ConfigError(f"separator must be a string, got {self.separator!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "TextEnvConfig":
        """Route ``gym.make`` keywords: :class:`SetupConfig` names into ``setup``, the rest here."""
        setup_names = {f.name for f in dataclasses.fields(SetupConfig)}
        own = {f.name for f in dataclasses.fields(cls)} - {"setup"}
        base = kwargs.pop("setup", None)
        if "rl_fraction" in kwargs:  # the D_RL fraction's earlier name
            warn_renamed("rl_fraction", "drl_fraction")
            kwargs["drl_fraction"] = kwargs.pop("rl_fraction")
        unknown = sorted(set(kwargs) - own - setup_names)
        if unknown:
            raise ConfigError(f"unknown text env option(s) {unknown}; env options: {sorted(own)}; "
                              f"setup options: {sorted(setup_names)}")  # fmt: skip
        base = SetupConfig.from_dict(base) if isinstance(base, dict) else base or SetupConfig(task="sst2", model="smollm2")
        setup = dataclasses.replace(base, **{k: v for k, v in kwargs.items() if k in setup_names})
        return cls(setup=setup, **{k: v for k, v in kwargs.items() if k in own})


class TextPromptSearch:
    """The frozen target of a text env: scores instructions on the reward rows, caches them, counts them.

    ``num_evals`` counts prompts scored on the reward rows (a cache hit counts nothing),
    ``cache_hits`` the repeats, ``target_seconds`` the time spent in the target model.
    """

    def __init__(self, setup: Setup, config: TextEnvConfig):
        if setup.model.head_kind != "verbalizer":
            raise ConfigError("a text env needs a setup whose head is the verbalizer (head='verbalizer')")
        if setup.lm.arch != "decoder":
            raise ConfigError(f"a text env's target answers with its next token: pass a causal LM (smollm2, tiny-llama, "
                              f"an HF decoder), not the encoder {setup.lm.name!r}")  # fmt: skip
        self.setup, self.config = setup, config
        self.model = setup.model  # no prompt: the template and the verbalizer (HandCraft)
        self.data = setup.drl if config.reward_split == "drl" else setup.train
        if len(self.data) == 0:
            raise ConfigError(f"the reward rows (reward_split={config.reward_split!r}) are empty")
        self.reward_kind = config.reward
        self.reward_batch_size = None  # every prompt is scored on all reward rows
        self.max_chars = config.max_chars
        self.num_evals = 0
        self.cache_hits = 0
        self.target_seconds = 0.0
        self._cache: dict[tuple, tuple[float, float, float]] = {}  # (split, ids) -> (reward, accuracy, loss)
        self._models: dict[int, PromptedModel] = {0: self.model}
        self._sep = self._ids(config.separator) if config.separator else []
        limit = getattr(setup.lm.config, "max_position_embeddings", None)
        longest = max(int(d.lengths.max()) for d in (setup.train, setup.drl, setup.test) if len(d))
        self._max_tokens = None if not limit else limit - longest

    @property
    def spec(self):
        return self.setup.spec

    def _ids(self, text: str) -> list[int]:
        return list(self.setup.lm.tokenizer(text, add_special_tokens=False)["input_ids"])

    def check_prompt(self, prompt: Any, *, allow_empty: bool = False) -> str:
        """``prompt`` if it is a string the env can score, else an :class:`EnvError` naming the fix."""
        if not isinstance(prompt, str):
            raise EnvError(f"a text prompt must be a str, got {type(prompt).__name__}")
        if not prompt.strip() and not (allow_empty and prompt == ""):
            raise EnvError("the prompt is empty (or whitespace only); give an instruction of at least one word")
        if len(prompt) > self.max_chars:
            raise EnvError(f"the prompt has {len(prompt)} characters, more than max_chars={self.max_chars}; shorten it")
        bad = sorted(set(prompt) - set(CHARSET))
        if bad:
            raise EnvError(f"the prompt holds characters outside the action space's charset {bad[:10]}; map it with "
                           "crlprompt.envs.text.clean_prompt()")  # fmt: skip
        return prompt

    def prompt_ids(self, prompt: str) -> tuple[int, ...]:
        """The prefix tokens of ``prompt``: its tokens and the separator's ("" = no prefix, HandCraft)."""
        ids = tuple(self._ids(prompt) + self._sep) if prompt else ()
        if self._max_tokens is not None and len(ids) > self._max_tokens:
            raise EnvError(f"the prompt is {len(ids)} tokens; with the longest input it would pass the model's "
                           f"{self.setup.lm.config.max_position_embeddings} positions: shorten it")  # fmt: skip
        return ids

    def _model(self, n: int) -> PromptedModel:
        """A prefix model of ``n`` tokens on the shared frozen LM (one per length, kept)."""
        if n not in self._models:
            pm = build_model(self.setup.lm, self.spec, prompt="deep", num_tokens=n, head="verbalizer", init="zero",
                             seed=self.setup.config.seed, label_tokens=self.setup.config.label_tokens)  # fmt: skip
            self._models[n] = pm.to(self.model.device).eval()
        return self._models[n]

    def _theta(self, ids: tuple[int, ...]) -> torch.Tensor:
        """θ ``(D_n,)``: the frozen LM's keys and values of the prefix tokens, in the deep-prefix layout."""
        if not ids:
            return torch.zeros(0)
        device = self.setup.lm.input_embeddings().weight.device
        return kv_theta(self.setup.lm, torch.tensor(ids, dtype=torch.long, device=device))

    def _score(self, keys: list[tuple[int, ...]], data, split: str) -> None:
        """Score the uncached prefixes ``keys`` on ``data``, one batched call per prefix length."""
        t0 = time.perf_counter()
        by_len: dict[int, list[tuple[int, ...]]] = {}
        for k in keys:
            by_len.setdefault(len(k), []).append(k)
        for n, group in by_len.items():
            pm = self._model(n)
            thetas = torch.stack([self._theta(k) for k in group]).to(pm.device)  # (K, D_n)
            scores = score_population(pm, data, thetas, max_rows=self.config.max_rows)
            reward = reward_of(scores, self.reward_kind)
            acc, loss = scores.reward("accuracy"), -scores.reward("ce")
            for i, k in enumerate(group):
                self._cache[(split, k)] = (float(reward[i]), float(acc[i]), float(loss[i]))
        self.target_seconds += time.perf_counter() - t0

    def score(self, prompts: Sequence[str], *, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(rewards (K,), accuracies (K,))`` of ``prompts`` on the reward rows; new prompts are scored
        (one evaluation each), repeats come from the cache. Every prompt is checked before any is scored."""
        keys = [self.prompt_ids(self.check_prompt(p, allow_empty=allow_empty)) for p in prompts]
        return self.score_ids(keys)

    def score_ids(self, keys: Sequence[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` for prefixes given as token ids (the separator included)."""
        keys = [tuple(int(i) for i in k) for k in keys]
        new = list(dict.fromkeys(k for k in keys if ("reward", k) not in self._cache))
        if new:
            self._score(new, self.data, "reward")
        self.num_evals += len(new)
        self.cache_hits += len(keys) - len(new)
        out = [self._cache[("reward", k)] for k in keys]
        if not all(np.isfinite(r) for r, _, _ in out):
            raise EnvError("the prompt gives non-finite logits")
        return np.array([r for r, _, _ in out]), np.array([a for _, a, _ in out])

    def evaluate(self, prompt: str = "", *, split: str = "test") -> dict:
        """Score one instruction on a whole split: ``{"accuracy", "loss", "n", "split", "prompt"}`` (loss =
        mean CE); ``""`` scores the template alone (HandCraft). Counts no evaluation."""
        split = split_name(split)
        if split not in SPLITS:
            raise EnvError(f"split must be one of {SPLITS}, got {split!r}")
        data = {"test": self.setup.test, "drl": self.setup.drl, "train": self.setup.train}[split]
        if len(data) == 0:
            raise EnvError(f"the {split} split is empty (SST-2's test rows need data_dir=<dir with sst2/dev.tsv>)")
        key = self.prompt_ids(self.check_prompt(prompt, allow_empty=True))
        if (split, key) not in self._cache:
            self._score([key], data, split)
        _, acc, loss = self._cache[(split, key)]
        return {"accuracy": acc, "loss": loss, "n": len(data), "split": split, "prompt": prompt}


def make_text_search(config: TextEnvConfig, *, lm=None, require_test: bool = False) -> TextPromptSearch:
    """Build the model and data of ``config`` (``lm`` reuses a loaded model) and its :class:`TextPromptSearch`."""
    setup = build(config.setup, device=resolve_device(config.device), lm=lm, require_test=require_test)
    setup.model.eval()
    return TextPromptSearch(setup, config)


def resolve_text_search(search: TextPromptSearch | None, kwargs: dict[str, Any]) -> TextPromptSearch:
    """The search an env constructor was given: a built ``search``, ``setup=<a built Setup>`` (its model
    and data reused), or keyword options (``gym.make``)."""
    if search is not None:
        return search
    built = kwargs.pop("setup", None)
    if isinstance(built, Setup):
        if built.model.head_kind != "verbalizer" or built.model.layout.num_tokens:
            raise ConfigError("setup= must be a text env's setup (verbalizer head, no soft prompt): build it with "
                              "crlprompt.envs.text.make_text_search")  # fmt: skip
        return TextPromptSearch(built, TextEnvConfig.from_kwargs(setup=built.config, **kwargs))
    if built is not None:
        kwargs["setup"] = built
    return make_text_search(TextEnvConfig.from_kwargs(**kwargs))


class TextPromptEnv(gym.Env):
    """Search a text instruction for a frozen LM; the reward scores it on the reward rows.

    ## Description
    The frozen target LM answers the task with its HandCraft template and its own verbalizer (the
    label words' logits at the last position), as the soft ``*-SmolLM2-16Shot`` ids do. An action
    is an instruction put before each templated input; the reward is how well the LM then
    classifies the reward rows. The task is a bandit: one step per episode.

    ## Action Space
    ``Text(max_length=max_chars, min_length=1, charset=CHARSET)``: printable ASCII. A non-string,
    an empty or whitespace-only string, one longer than ``max_chars`` or with other characters
    raises :class:`crlprompt.errors.EnvError` and leaves the env unchanged
    (:func:`clean_prompt` maps free text onto the charset).

    ## Observation Space
    ``Text(max_length=max_chars, min_length=0)``: the prompt last scored (``""`` after reset).

    ## Rewards
    ``reward``: ``"accuracy"``, ``"ce"`` (mean log p(y), ≤ 0), ``"hinge"``, ``"margin"``,
    ``"softmax_diff"`` or ``"stableprompt"`` (accuracy + softmax_diff, StablePrompt's). The same
    prompt always gets the same reward (all reward rows, no minibatch); a repeat is served from a
    cache: no model call, no evaluation counted (``env.unwrapped.search.num_evals``). The
    registered ids (``crlprompt.registry.TEXT_SPECS``) all use ``"ce"``, so their rewards are ≤ 0:

    * ``CRLPrompt/Tiny-Text-v0``: ce on D_RL (``reward_split="drl"``);
    * ``CRLPrompt/{SST2,TREC,AGNews}-SmolLM2-Text-v0``: ce on the 16-shot train rows
      (``reward_split="train"``; D_RL is kept for selecting the prompt), as the soft
      ``*-SmolLM2-16Shot`` ids;
    * the ``-Tokens-v0`` twins (:class:`~crlprompt.envs.tokens.TokenPromptEnv`): their text id's reward.

    Built without an id, the env defaults to ``"accuracy"`` on D_RL. ``info["accuracy"]`` is always the accuracy.

    ## Starting State / Episode End
    Nothing to start from (the instruction is the whole action); every step ends with
    ``terminated=True, truncated=False``.

    ## Arguments
    :class:`TextEnvConfig` fields and :class:`~crlprompt.build.SetupConfig` names as keywords;
    ``setup=<a built Setup>`` (from :func:`make_text_search`) reuses a model and data;
    ``search=`` a whole :class:`TextPromptSearch`.

    ## Info
    ``{"prompt": str, "reward": float, "accuracy": float, "step": int}``.
    ``env.unwrapped.evaluate(prompt, split="test"|"drl"|"train")`` scores any instruction on a split.

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, *, search: TextPromptSearch | None = None, render_mode: str | None = None, **kwargs: Any):
        super().__init__()
        self.render_mode = render_mode if render_mode in self.metadata["render_modes"] else None
        self.search = resolve_text_search(search, kwargs)
        self.config = self.search.config
        n = self.config.max_chars
        self.action_space = spaces.Text(max_length=n, min_length=1, charset=CHARSET)
        self.observation_space = spaces.Text(max_length=n, min_length=0, charset=CHARSET)
        self.reward_range = TEXT_REWARD_RANGES[self.config.reward]
        self._last: dict | None = None

    def evaluate(self, prompt: str = "", *, split: str = "test") -> dict:
        """Accuracy and loss of ``prompt`` on a whole split; see :meth:`TextPromptSearch.evaluate`."""
        return self.search.evaluate(prompt, split=split)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise EnvError(f"a text env takes no reset options, got {sorted(options)}")
        self._last = None
        return "", {}

    def step(self, action: Any):
        reward, acc = self.search.score([action])
        info = {"prompt": action, "reward": float(reward[0]), "accuracy": float(acc[0]), "step": 1}
        self._last = info
        return action, info["reward"], True, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._last is None:
            return "no prompt scored yet"
        return f"reward {self._last['reward']:.4f} accuracy {self._last['accuracy']:.4f}: {self._last['prompt']!r}"
