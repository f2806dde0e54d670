"""Fingerprint every search algorithm's run on the Tiny id, to show a refactor changes no number.

    python scripts/check_invariant.py                 # one line per (algorithm, seed)
    python scripts/check_invariant.py --algos cma,es  # a subset

Each run goes through the compare runner's factory (the registry), on
``CRLPrompt/Tiny-Proj64-v0`` with ``{"sigma": 1.0, "reward": "hinge"}``, a budget of 40
evaluations, K = 8 prompts per batched forward and seeds 0 and 1, around one shared model. A line
holds the SHA-256 of the best prompt's bytes with the best reward, the same of the final prompt,
the evaluations spent and a digest of the history: two checkouts print the same lines exactly
when every θ, reward and curve is bit-identical. Algorithms whose optional dependency is missing
are listed as skipped. ARS runs with ``n_delta=4`` (a population of 8 policies) so that 40 is a
whole number of its updates. ``VARIANTS`` adds rows with options whose code paths the defaults do
not take (anchors, trust regions, a moving center, paired races...).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

ENV_ID = "CRLPrompt/Tiny-Proj64-v0"
ENV_KWARGS = {"sigma": 1.0, "reward": "hinge"}
BUDGET, NUM_ENVS, SEEDS = 40, 8, (0, 1)
ALGO_KWARGS = {"ars": {"n_delta": 4}}
#: options whose code paths the defaults do not take, run as extra rows ``name{options}``
VARIANTS = {
    "random": [{"scale": 0.5, "include_center": False}],
    "es": [{"anchor_kl": 0.5}, {"move_center": True}],
    "cma": [{"popsize": 16, "sigma0": 0.5}],
    "ppo": [{"anchor_kl": 0.1, "n_steps": 8, "batch_size": 8}],
    "offpolicy": [{"max_kl": 0.1, "mixture": False}],
    "gp": [{"acquisition": "qucb", "trust_region": False}],
    "racing": [{"around_best": True}, {"rule": "paired"}],
    "anchor": [{"rollback_tol": 0.5, "max_kl": 0.5}],
    "td3": [{"gradient_steps": 2, "learning_starts": 8}],
}
#: the optional modules each algorithm needs
NEEDS = {"cma": "cma", "cma-diag": "cma", "ppo": "stable_baselines3", "sac": "stable_baselines3",
         "td3": "stable_baselines3", "crossq": "sb3_contrib", "ars": "sb3_contrib", "gp": "botorch"}  # fmt: skip


def factories() -> dict:
    """name -> factory(env_id, env_kwargs, seed, *, num_envs, **kw) -> (agent, env), from the registry."""
    try:
        from crlprompt.agents.registry import REGISTRY  # the one registry
    except ImportError:  # before the registry existed: the compare runner's table
        from crlprompt.runners.compare import ALGORITHMS

        return dict(ALGORITHMS)
    # the soft-prompt agents: the text ones (space "text", once they existed) run on the *-Text-v0 ids only
    return {name: spec.make for name, spec in REGISTRY.items() if getattr(spec, "space", "soft") == "soft"}


def digest(array) -> str:
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def fingerprint(result) -> str:
    best = hashlib.sha256(digest(result.best_prompt).encode() + repr(float(result.best_reward)).encode()).hexdigest()
    final = hashlib.sha256(digest(result.final_prompt).encode() + repr(float(result.final_reward)).encode()).hexdigest()
    history = hashlib.sha256(repr([(int(e), float(r)) for e, r in result.history]).encode()).hexdigest()
    return (f"best {best[:16]} ({float(result.best_reward)!r})  final {final[:16]} ({float(result.final_reward)!r})  "
            f"evals {result.evals}  history {history[:12]}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import gymnasium as gym
    import torch

    import crlprompt  # noqa: F401  (registers the ids)

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", default="", help="comma-separated subset (default: every registered algorithm)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    table = factories()
    names = [a for a in args.algos.split(",") if a] or list(table)
    setup = gym.make(ENV_ID, **ENV_KWARGS).unwrapped.search.setup  # one model and data for every run
    print(f"{ENV_ID} {ENV_KWARGS} budget {BUDGET} num_envs {NUM_ENVS} seeds {SEEDS}")
    for name in names:
        module = NEEDS.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            print(f"{name:10s} skipped: {module} is not installed")
            continue
        for options in [{}, *VARIANTS.get(name, [])]:
            label = name + (json.dumps(options, sort_keys=True) if options else "")
            for seed in SEEDS:
                agent, env = table[name](ENV_ID, {**ENV_KWARGS, "setup": setup}, seed, num_envs=NUM_ENVS,
                                         **{**ALGO_KWARGS.get(name, {}), **options})  # fmt: skip
                result = agent.learn(BUDGET)
                env.close()
                print(f"{label:10s} seed {seed}  {fingerprint(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
