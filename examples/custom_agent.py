"""A new search agent, written outside the package: one class, one ``register_agent`` line, then
``crl-prompt compare`` runs it beside the built-in agents at the same budget.

    python examples/custom_agent.py [OUT_DIR]

``HillClimber`` is a (1+λ) evolution strategy (Rechenberg; Schwefel): each round samples K
children around the parent, one batched forward scores them all, and the best child replaces
the parent if it scores higher; the step size grows after a success and shrinks after a failure
(a one-fifth-style rule). The shared loop (:class:`crlprompt.agents.AskTellAgent`) does the rest:
budget, best prompt, history, :class:`~crlprompt.agents.SearchResult` and a
:class:`~crlprompt.agents.SearchEvent` per round to the callbacks.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np

import crlprompt  # noqa: F401 - registers the CRLPrompt/... ids
from crlprompt.agents import AskTellAgent, register_agent
from crlprompt.runners import compare

ENV_ID = "CRLPrompt/Tiny-Proj64-v0"


class HillClimber(AskTellAgent):
    """(1+λ)-ES on the env's action: λ = K children a round, step size adapted by success."""

    algo = "hill"

    def __init__(self, env, *, step: float = 1.0, seed: int = 0):
        super().__init__(env, seed)  # the base wraps the env: self.scorer (K, action_dim, prompt_for)
        if not step > 0:
            raise ValueError(f"step must be > 0, got {step!r}")
        self.step0 = float(step)

    @property
    def evals_per_update(self) -> int:
        return self.scorer.batch  # K children: one batched forward

    def start(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.parent, self.parent_reward, self.step = np.zeros(self.scorer.action_dim), -np.inf, self.step0

    def ask(self) -> np.ndarray:
        noise = self.rng.standard_normal((self.evals_per_update, self.scorer.action_dim))
        return (self.parent + self.step * noise).astype(np.float32)  # (K, d)

    def tell(self, actions: np.ndarray, rewards: np.ndarray) -> dict:
        i = int(np.argmax(rewards))
        improved = rewards[i] > self.parent_reward
        if improved:
            self.parent, self.parent_reward = actions[i].astype(np.float64), float(rewards[i])
        self.step *= 1.5 if improved else 0.9
        return {"step": self.step, "improved": bool(improved)}  # the event's diagnostics


# The one line that makes it an algorithm of `crl-prompt compare --algos hill`.
register_agent("hill", HillClimber, follows="(1+λ)-ES with step-size adaptation",
               differs="K children a round in one batched forward")  # fmt: skip


def main(out: Path) -> None:
    # The agent on its own, with a callback that reads each round's event.
    env = gym.make_vec(ENV_ID, num_envs=8, vectorization_mode="vector_entry_point", reward="hinge")
    result = HillClimber(env, seed=0).learn(
        40, callback=lambda ev: print(f"  {ev.evals:3d} evals: best {ev.best_reward:.3f}, round max "
                                      f"{ev.rewards.max():.3f}, step {ev.diagnostics['step']:.2f}"))  # fmt: skip
    env.close()
    print(f"HillClimber alone: best env reward {result.best_reward:.3f} after {result.evals} evaluations")

    # Through the compare runner, beside random search, at the same budget.
    compare.main(["--env-id", ENV_ID, "--algos", "hill,random", "--budget", "40", "--seeds", "0", "--num-envs", "8",
                  "--env-kwargs", '{"reward": "hinge"}', "--no-baselines", "--no-save-prompts", "--no-progress",
                  "--overwrite", "--out", str(out)])  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "custom-agent")
