"""What the text-prompt agents share: scoring instructions through a text env, the search loop, the result.

A text agent proposes instruction strings; :class:`TextScorer` steps the text env once per
string (a one-step episode each) and counts the target-model evaluations that cost (a string
already scored is served from the env's cache and costs none). :class:`TextSearchAgent` is the
loop on :class:`~crlprompt.agents.base.SearchAgent`'s bookkeeping (budget, best, history, events)::

    while evaluations < budget:
        prompts = propose(room)           # new strings, at most what the budget has room for
        rewards = the env's rewards       # one target-model evaluation per new string
        best, history <- prompts, rewards
        tell(prompts, rewards); callbacks

The budget counts target-model evaluations, as for the soft-prompt agents; the agent LM's time is
not in it (:class:`TextSearchResult` reports both clocks).
"""

from __future__ import annotations

import dataclasses
import logging
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from ..envs.text import TextPromptEnv
from ..errors import ConfigError, EnvError
from .base import Callback, SearchAgent, SearchResult

log = logging.getLogger(__name__)


def text_env_of(env: Any) -> TextPromptEnv:
    """The :class:`TextPromptEnv` behind a (wrapped) env, or a :class:`ConfigError` saying which ids have one."""
    u = getattr(env, "unwrapped", None)
    if not isinstance(u, TextPromptEnv):
        raise ConfigError(f"text-prompt agents run on the text ids (CRLPrompt/*-Text-v0), got {type(u).__name__}; "
                          "see crlprompt.registry.text_env_ids()")  # fmt: skip
    return u


class TextScorer:
    """Scores instructions ``[str] -> (n,)`` rewards through a text env; ``spent`` is what the last
    call cost in target-model evaluations (repeats are cached by the env and cost nothing)."""

    vector, batch, action_dim = False, 1, 1

    def __init__(self, env: gym.Env):
        self.env = env
        self.text_env = text_env_of(env)
        self.search = self.text_env.search
        self.accuracies: np.ndarray | None = None
        self.spent = 0

    def reset(self, seed: int | None = None, center: Any = None) -> None:
        self.env.reset(seed=seed)

    def __call__(self, prompts: list[str]) -> np.ndarray:
        before = self.search.num_evals
        out, acc = np.empty(len(prompts)), np.empty(len(prompts))
        for i, p in enumerate(prompts):
            self.env.reset()
            _, out[i], _, _, info = self.env.step(p)
            acc[i] = info["accuracy"]
        self.accuracies, self.spent = acc, self.search.num_evals - before
        return out

    def valid(self, prompt: str) -> bool:
        """Whether the env can score ``prompt`` (charset, length, the model's positions)."""
        try:
            self.search.prompt_ids(self.search.check_prompt(prompt))
        except EnvError:
            return False
        return True

    def null_action(self) -> str:
        return ""

    def keep(self, action: Any) -> str:
        return str(action)

    def prompt_for(self, action: str) -> str:
        return action

    def score_one(self, action: str) -> float:
        return float(self([action])[0])


@dataclasses.dataclass
class TextSearchResult(SearchResult):
    """A :class:`SearchResult` whose prompts are instruction strings (``""``: none, the bare template)."""

    agent_seconds: float = 0.0
    """Time outside the target model (the agent LM generating, the agent's updates)."""
    target_seconds: float = 0.0
    """Time in the target model (scoring the instructions)."""

    def save(self, path: str | Path, env: Any, *, which: str = "best", meta: dict | None = None) -> Path:
        """Write ``path/prompt.json``: the instruction, its reward, the setup and the text env's options."""
        from ..rundir import write_json

        if which not in ("best", "final"):
            raise ConfigError(f"which must be 'best' or 'final', got {which!r}")
        u = text_env_of(env)
        spec = getattr(u, "spec", None)
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        options = {k: v for k, v in dataclasses.asdict(u.config).items() if k != "setup"}
        doc = {"prompt": self.best_prompt if which == "best" else self.final_prompt, "which": which, "algo": self.algo,
               "reward": self.best_reward if which == "best" else self.final_reward, "evals": self.evals,
               "env_id": spec.id if spec is not None else None, "setup": dataclasses.asdict(u.search.setup.config),
               "text_env": options, **(meta or {})}  # fmt: skip
        write_json(out / "prompt.json", doc)
        return out / "prompt.json"


class TextSearchAgent(SearchAgent):
    """A search over instruction strings on a text env (see the module docstring for the loop).

    A subclass sets ``algo`` and writes :meth:`propose` (and, to learn from the scores, :meth:`tell`).
    ``self.scored`` maps every instruction scored in this run to its reward. The loop ends when the
    budget is spent, a callback returns False, or :meth:`propose` gives nothing new ``max_idle``
    times in a row.
    """

    max_idle: ClassVar[int] = 3

    def __init__(self, env: gym.Env, seed: int = 0):
        super().__init__(env, seed)
        self.scored: dict[str, float] = {}
        self.max_chars = self.scorer.search.max_chars

    def make_scorer(self, env: Any) -> TextScorer:
        return TextScorer(env)

    @property
    def evals_per_update(self) -> int:
        return 1

    @property
    def update_text(self) -> str:
        return "1 (one new instruction)"

    def start(self) -> None:
        """Set up the run (random streams, the agent LM) at the start of ``learn``."""

    @abstractmethod
    def propose(self, room: int) -> list[str]:
        """Candidate instructions; ``room`` new ones fit in the budget (the loop keeps the first ``room``
        that are new and valid)."""

    def tell(self, prompts: list[str], rewards: np.ndarray) -> dict[str, Any] | None:
        """Learn from the scored ``prompts``; default: nothing (``self.scored`` already holds them)."""
        return None

    def fresh(self, prompts: list[str]) -> list[str]:
        """``prompts`` without repeats, ones already scored in this run and ones the env would refuse."""
        seen = set(self.scored)
        out = []
        for p in prompts:
            if p and p not in seen and self.scorer.valid(p):
                seen.add(p)
                out.append(p)
        return out

    def ranked(self) -> list[tuple[str, float]]:
        """Every instruction scored in this run with its reward, best first."""
        return sorted(self.scored.items(), key=lambda kv: -kv[1])

    def score(self, prompts: list[str]) -> np.ndarray:
        """Score ``prompts`` through the env and record them (best, history, ``scored``)."""
        rewards = self.scorer(prompts)
        self.observe(prompts, rewards, accuracies=self.scorer.accuracies, spent=self.scorer.spent)
        self.scored.update(zip(prompts, map(float, rewards)))
        return rewards

    def run_search(self, budget: int) -> None:
        self.scorer.reset(seed=self.seed)
        self.scored = {}
        self.start()
        idle = 0
        while self.evals < budget:
            room = budget - self.evals
            prompts = self.fresh(self.propose(room))[:room]
            if not prompts:
                idle += 1
                if idle >= self.max_idle:
                    log.info("%s proposed nothing new %d times in a row: stopping at %d evaluations", self.algo, idle,
                             self.evals)  # fmt: skip
                    break
                continue
            idle = 0
            rewards = self.score(prompts)
            if not self.emit(self.tell(prompts, rewards)):
                break

    def finish(self) -> tuple[str, float]:
        return self._best_prompt(), self.best_reward

    def learn(self, budget: int, callback: Callback | None = None, callbacks=()) -> TextSearchResult:
        """Spend at most ``budget`` target-model evaluations; the best instruction and the clocks."""
        target0 = self.scorer.search.target_seconds
        result = super().learn(budget, callback, callbacks)
        target = self.scorer.search.target_seconds - target0
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(SearchResult)}
        return TextSearchResult(**fields, agent_seconds=max(result.seconds - target, 0.0), target_seconds=target)


class HandCraftAgent(TextSearchAgent):
    """The paper's HandCraft prompt as a row of a text comparison: no instruction, the task's template and
    the LM's label words alone (zero-shot). One evaluation."""

    algo = "handcraft"

    def propose(self, room: int) -> list[str]:
        return []

    def run_search(self, budget: int) -> None:
        self.scorer.reset(seed=self.seed)
        before = self.scorer.search.num_evals
        rewards, acc = self.scorer.search.score([""], allow_empty=True)
        self.observe([""], rewards, accuracies=acc, spent=self.scorer.search.num_evals - before)
        self.scored = {"": float(rewards[0])}
        self.emit()
