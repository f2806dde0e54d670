"""A plain outside optimiser on a registered id, ask/tell, then the found prompt scored on test.

pycma (the ``search`` extra) drives the batched vector env: each generation is one ``step`` of 20
prompts in one forward. The found action is scored on the test split with ``env.unwrapped.evaluate``
beside the start (the env's center), in one call each. MiniLM, offline; about a minute on one CPU core.

    python examples/outside_optimizer.py [ENV_ID] [EVALUATIONS]
"""

import sys

import cma
import gymnasium as gym
import numpy as np

import crlprompt  # noqa: F401  (registers the ids)

env_id = sys.argv[1] if len(sys.argv) > 1 else "CRLPrompt/TREC-MiniLM-16Shot-v0"
budget = int(sys.argv[2]) if len(sys.argv) > 2 else 200

vec = gym.make_vec(env_id, num_envs=20, vectorization_mode="vector_entry_point")
vec.reset(seed=0)
es = cma.CMAEvolutionStrategy(np.zeros(vec.single_action_space.shape[0]), 0.5, {"popsize": 20, "seed": 1, "verbose": -9})
for _ in range(budget // 20):  # one generation = one batched forward of 20 prompts
    xs = es.ask()
    _, rewards, *_ = vec.step(np.asarray(xs, np.float32))
    es.tell(xs, list(-rewards.astype(float)))  # cma minimises; told the solutions it asked
best = np.asarray(es.result.xbest, np.float32)
found, start = vec.unwrapped.evaluate(best, split="test"), vec.unwrapped.evaluate(split="test")
print(f"{env_id}, {budget} evaluations: test accuracy {start['accuracy']:.4f} at the start -> "
      f"{found['accuracy']:.4f} for the found prompt (loss {start['loss']:.4f} -> {found['loss']:.4f})")
