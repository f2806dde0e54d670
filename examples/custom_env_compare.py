"""Register your own soft-prompt env id and compare RL algorithms on it at equal budgets.

The id below is the tiny synthetic task with other settings: a shallow prompt (P-Tuning v1:
soft input embeddings) of 8 tokens, a wider search radius and a 32-dimensional projected action.
Any ``SoftPromptEnv`` argument can go in ``kwargs`` (a real task and model too, e.g.
``{"task": "trec", "model": "minilm"}``). Runs in well under a minute on a CPU:

    python examples/custom_env_compare.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import gymnasium as gym

from crlprompt.runners.compare import CompareConfig, run_compare

ENV_ID = "MyLab/TinyShallow-Proj32-v0"


def register() -> None:
    if ENV_ID in gym.registry:
        return
    gym.register(
        id=ENV_ID,
        entry_point="crlprompt.envs.soft_prompt:SoftPromptEnv",  # strings: nothing heavy is imported yet
        vector_entry_point="crlprompt.envs.vector:SoftPromptVectorEnv",  # K prompts per batched forward
        kwargs={
            "task": "tiny",
            "model": "tiny-llama",
            "prompt": "shallow",
            "num_tokens": 8,
            "sigma": 0.5,
            "projection_dim": 32,
        },
    )


def main(out: Path) -> list[dict]:
    register()
    cfg = CompareConfig(env_id=ENV_ID, algos="random,es,ppo", budget=384, seeds="0", num_envs=16, out=out)
    records = run_compare(cfg)
    print((out / "table.md").read_text())
    print(f"results, table and learning curves in {out}")
    return records


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
