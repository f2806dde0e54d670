"""The synthetic tiny problem the tests train and search on: the ``tiny`` task on a tiny random
Llama, with a linear head planted at a hidden prompt θ* and the prompt started elsewhere (what
``CRLPrompt/Tiny-v0`` builds), so a better prompt has to be found."""

from __future__ import annotations

from crlprompt.build import Setup, SetupConfig, build
from crlprompt.envs import plant_head


def tiny_setup(*, model: str = "tiny-llama", prompt: str = "deep", num_tokens: int = 4, seed: int = 0,
               data_seed: int = 0) -> Setup:  # fmt: skip
    setup = build(SetupConfig(task="tiny", model=model, prompt=prompt, num_tokens=num_tokens, init="random",
                              seed=seed, data_seed=data_seed))  # fmt: skip
    plant_head(setup)
    return setup
