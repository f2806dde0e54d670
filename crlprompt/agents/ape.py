"""APE (Zhou et al. 2023, "Large Language Models Are Human-Level Prompt Engineers"), iterative.

An agent LM reads input/output pairs of the task and writes instructions (instruction
induction); each is scored by the frozen target through the text env; the best few are kept and
the agent LM writes variations of them ("Generate a variation of the following instruction while
keeping the semantic meaning"), round after round, until the budget of target evaluations is spent.
"""

from __future__ import annotations

from collections.abc import Sequence

from .agent_lm import DEFAULT_AGENT, VARIATION, AgentLMSearch, check_positive


class APEAgent(AgentLMSearch):
    """APE: induce ``candidates`` instructions, then ``variations`` resamples around each of the ``keep``
    best so far per round (other arguments: :class:`~crlprompt.agents.agent_lm.AgentLMSearch`)."""

    algo = "ape"

    def __init__(self, env, *, keep: int = 3, variations: int = 2,
                 agent_model: str = DEFAULT_AGENT, num_demos: int = 5, candidates: int = 8,
                 temperature: float = 1.0, top_p: float = 0.95, max_new_tokens: int = 48,
                 init_prompts: Sequence[str] = (), seed: int = 0):  # fmt: skip
        super().__init__(env, agent_model=agent_model, num_demos=num_demos, candidates=candidates,
                         temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                         init_prompts=init_prompts, seed=seed)  # fmt: skip
        self.keep, self.variations = check_positive("keep", keep), check_positive("variations", variations)

    def propose_next(self, room: int) -> list[str]:
        out: list[str] = []
        for prompt, _ in self.ranked()[: self.keep]:
            if len(out) >= room:
                break
            out += self.write(VARIATION.format(instruction=prompt), min(self.variations, room - len(out)))
        return out
