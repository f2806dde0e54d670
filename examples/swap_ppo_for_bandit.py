"""One soft-prompt env, two RL algorithms: SB3 PPO, then an OpenAI-ES Gaussian bandit in its place.

Both agents see the env only through the Gymnasium API and get the same budget of prompt
evaluations (env steps); swapping one for the other is one line. Runs in seconds on a CPU:

    python examples/swap_ppo_for_bandit.py
"""

from __future__ import annotations

import gymnasium as gym
import torch

import crlprompt  # noqa: F401 - registers the CRLPrompt/... ids
from crlprompt.agents.es import ESAgent
from crlprompt.agents.sb3 import PPOPromptAgent
from crlprompt.scoring import accuracy

BUDGET = 768  # prompt evaluations per agent


def main() -> dict[str, float]:
    # A tiny random model on a synthetic sentiment task; actions are 64-dimensional and projected
    # into the prompt space (P' = center + sigma * A a), which keeps PPO's Gaussian well conditioned.
    env = gym.make("CRLPrompt/Tiny-Proj64-v0")
    search = env.unwrapped.search
    center = search.center.clone()

    def test_acc(prompt) -> float:
        return accuracy(search.model, search.setup.test, theta=torch.as_tensor(prompt))

    print(f"action dim {env.action_space.shape[0]}, prompt dim {search.dim}")
    print(
        f"center prompt: D_RL acc {accuracy(search.model, search.data, theta=center):.3f}, test acc {test_acc(center):.3f}"
    )
    out = {}
    for name, agent in [
        ("PPO (stable-baselines3)", PPOPromptAgent(env, seed=0)),
        ("ES bandit", ESAgent(env, pop=16, seed=0)),  # the swap: same env, another agent
    ]:
        env.reset(options={"center": center})  # both start from the same prompt
        res = agent.learn(BUDGET)
        out[name] = res.best_reward
        print(
            f"{name:24s} best D_RL acc {res.best_reward:.3f} (test {test_acc(res.best_prompt):.3f}) | "
            f"final D_RL acc {res.final_reward:.3f} | {res.evals} evals in {res.seconds:.1f}s"
        )
    return out


if __name__ == "__main__":
    main()
