"""LCP ("Learning from Contrastive Prompts", 2024): an agent LM improves instructions by contrast.

The first round induces candidates from input/output pairs (as APE does). Every later round shows
the agent LM the ``top`` best and the ``bottom`` worst instructions scored so far, each with its
reward, beside fresh input/output pairs, and asks for a new instruction that should beat the
good ones; the target scores the new ones and they join the pool. ``init_prompts`` starts the
pool from instructions found for another target (LCP's adaptation use).
"""

from __future__ import annotations

from collections.abc import Sequence

from .agent_lm import DEFAULT_AGENT, CONTRAST, AgentLMSearch, check_positive


class LCPAgent(AgentLMSearch):
    """LCP: ``per_round`` new instructions per round from a contrastive meta-prompt of the ``top`` best and
    ``bottom`` worst so far (other arguments: :class:`~crlprompt.agents.agent_lm.AgentLMSearch`)."""

    algo = "lcp"

    def __init__(self, env, *, per_round: int = 4, top: int = 3, bottom: int = 3,
                 agent_model: str = DEFAULT_AGENT, num_demos: int = 5, candidates: int = 8,
                 temperature: float = 1.0, top_p: float = 0.95, max_new_tokens: int = 48,
                 init_prompts: Sequence[str] = (), seed: int = 0):  # fmt: skip
        super().__init__(env, agent_model=agent_model, num_demos=num_demos, candidates=candidates,
                         temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                         init_prompts=init_prompts, seed=seed)  # fmt: skip
        self.per_round = check_positive("per_round", per_round)
        self.top, self.bottom = check_positive("top", top), check_positive("bottom", bottom)

    def contrast(self) -> str:
        """The meta-prompt of the next round."""
        ranked = self.ranked()
        good, rest = ranked[: self.top], ranked[self.top :]
        bad = rest[-self.bottom :]

        def lines(items):
            return "\n".join(f"- score {r:.3f}: {p}" for p, r in items) or "- (none yet)"

        return CONTRAST.format(demos=self.demos(), good=lines(good), bad=lines(bad))

    def propose_next(self, room: int) -> list[str]:
        return self.write(self.contrast(), min(self.per_round, room))
