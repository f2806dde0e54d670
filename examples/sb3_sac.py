"""Stable-Baselines3 SAC, unchanged, on a registered projected id: the outside client's way.

No crl-prompt agent or wrapper: ``gym.make`` the id as registered and hand it to SB3. The id's
σ is chosen so that actions inside the nominal Box [-1, 1]^64 move the predictions. One-step
episodes make every transition terminal, so the discount does not matter; a small fixed entropy
coefficient keeps SAC from spending its short budget on exploration.

    python examples/sb3_sac.py            # ~1 min on one CPU core
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC

import crlprompt  # noqa: F401  (registers the CRLPrompt/... ids)


def main(steps: int = 600, seed: int = 0) -> tuple[float, float]:
    torch.set_num_threads(1)
    env = gym.make("CRLPrompt/Tiny-Proj64-v0")
    search = env.unwrapped.search
    start = float(search.rewards(search.center[None], np.random.default_rng(0))[1][0])  # accuracy on D_RL

    model = SAC("MlpPolicy", env, learning_starts=64, ent_coef=0.01, gamma=0.0, batch_size=64, seed=seed,
                device="cpu", policy_kwargs={"net_arch": [64, 64]})  # fmt: skip
    model.learn(steps)

    obs, _ = env.reset()
    action, _ = model.predict(obs, deterministic=True)
    _, _, _, _, info = env.step(action)
    print(f"SAC on CRLPrompt/Tiny-Proj64-v0: D_RL accuracy {start:.3f} at the start -> {info['accuracy']:.3f} "
          f"after {steps} steps (the policy's mean action)")  # fmt: skip
    return start, info["accuracy"]


if __name__ == "__main__":
    main()
