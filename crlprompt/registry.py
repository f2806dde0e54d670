"""Registered environment ids (namespace ``CRLPrompt/``), with string entry points so that
registering imports neither torch nor transformers; the env module loads on ``gym.make``.

``CRLPrompt/Tiny-v0`` needs no weights (a tiny random Llama on a synthetic task). The other ids
use the offline models. Every id has a ``-Proj64`` twin with a 64-dimensional projected action
(for SB3 PPO and CMA-style methods); any id also takes ``projection_dim=...`` in ``gym.make``.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENTRY = "crlprompt.envs.soft_prompt:SoftPromptEnv"
VECTOR_ENTRY = "crlprompt.envs.vector:SoftPromptVectorEnv"

ENV_SPECS: dict[str, dict] = {
    "Tiny": {"task": "tiny", "model": "tiny-llama", "num_tokens": 4, "init": "random", "head": "planted", "sigma": 2.0},
    "TREC-MiniLM": {"task": "trec", "model": "minilm"},
    "AGNews-MiniLM": {"task": "agnews", "model": "minilm", "max_rl": 1000},
    "SST2-MiniLM": {"task": "sst2", "model": "minilm", "max_rl": 1000},
    "TREC-SmolLM2": {"task": "trec", "model": "smollm2", "reward_batch_size": 128},
}


def env_ids() -> list[str]:
    """All registered ids."""
    return [f"CRLPrompt/{name}{suffix}-v0" for name in ENV_SPECS for suffix in ("", "-Proj64")]


def register_envs() -> None:
    for name, kwargs in ENV_SPECS.items():
        for suffix, extra in (("", {}), ("-Proj64", {"projection_dim": 64})):
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
