"""RLPrompt-style search (Deng et al. 2022): a policy over a few vocabulary tokens, trained on z-scored rewards.

RLPrompt trains a small policy network on a frozen LM to emit ``positions`` prompt tokens and
normalises the reward (z-scores) so that its scale does not matter. Here the policy is a softmax
table per position over the token twin's word list (:func:`crlprompt.envs.tokens.token_vocabulary`:
words that are one token of the target's tokenizer) and the update is REINFORCE on the batch's
z-scored rewards: no policy LM, the same action space as ``CRLPrompt/*-Tokens-v0``. The words are
joined into an instruction and scored by the text env, so the budget, the cache and the records are
the other text agents'.
"""

from __future__ import annotations

import numpy as np

from ..envs.tokens import token_vocabulary
from ..errors import ConfigError
from .agent_lm import check_positive
from .text import TextSearchAgent


class RLPromptAgent(TextSearchAgent):
    """A factorised categorical policy over ``positions`` words of ``vocab_size`` (fewer on a small
    tokenizer), ``batch`` samples per update, REINFORCE with step size ``lr`` on z-scored rewards."""

    algo = "rlprompt"

    def __init__(self, env, *, positions: int = 5, vocab_size: int = 256, batch: int = 8, lr: float = 1.0,
                 seed: int = 0):  # fmt: skip
        super().__init__(env, seed)
        self.positions, self.batch = check_positive("positions", positions), check_positive("batch", batch)
        self.vocab_size = check_positive("vocab_size", vocab_size)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
            raise ConfigError(f"lr must be a number > 0, got {lr!r}")
        self.lr = float(lr)
        self.words = token_vocabulary(self.scorer.search.setup.lm.tokenizer, self.vocab_size, strict=False)
        self.logits = np.zeros((self.positions, len(self.words)))
        """``(positions, V)``: the policy (uniform at the start of each run)."""

    def start(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.logits = np.zeros((self.positions, len(self.words)))

    def probs(self) -> np.ndarray:
        z = np.exp(self.logits - self.logits.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)  # (positions, V)

    def propose(self, room: int) -> list[str]:
        p = self.probs()
        idx = np.stack([self.rng.choice(len(self.words), size=self.batch, p=row) for row in p], 1)  # (batch, positions)
        self._sampled = [(row, " ".join(self.words[i] for i in row)) for row in idx]
        return [text for _, text in self._sampled]

    def tell(self, prompts: list[str], rewards: np.ndarray) -> dict:
        """REINFORCE on every sample of the batch whose reward is known (new or cached)."""
        known = [(row, self.scored[t]) for row, t in self._sampled if t in self.scored]
        r = np.array([v for _, v in known])
        z = (r - r.mean()) / (r.std() + 1e-8) if len(r) > 1 else np.zeros_like(r)
        p = self.probs()
        grad = np.zeros_like(self.logits)
        for (row, _), zi in zip(known, z):
            onehot = np.zeros_like(self.logits)
            onehot[np.arange(self.positions), row] = 1.0
            grad += zi * (onehot - p)  # ∇ log π(row) for a softmax per position
        self.logits += self.lr * grad / max(len(known), 1)
        return {"entropy": float(-(p * np.log(p + 1e-12)).sum(1).mean())}
