"""StablePrompt (Kwon et al. 2024): an agent LM trained with APPO to write instructions for a frozen target.

Each update samples ``batch`` instructions from the agent LM (a LoRA adapter on it, through PEFT)
for a task-agnostic meta-prompt showing ``num_demos`` input/output pairs; the text env scores the
new ones on the target (repeats come from the cache, free); the agent takes ``epochs`` PPO steps on
the clipped surrogate with batch-normalised rewards as advantages, plus ``kl_coef`` times a KL term
toward an *anchor* policy. APPO's anchor is a copy of the adapter that moves to the current policy
only when a batch's mean reward beats the best batch so far; ``anchor="previous"`` is plain PPO's
reference, the policy before each update (the ablation).

Why not TRL: its PPO trainer wants a reward model and a value model and keeps a fixed reference
model, while APPO's reference moves by a rule and the reward is a black-box env call; the loop
below is those few lines, with the losses in :mod:`crlprompt.losses.ppo`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..losses.ppo import kl_penalty, ppo_clip_loss, token_log_probs
from .agent_lm import (
    DEFAULT_AGENT, INDUCE, agent_model, as_chat, check_positive, demonstrations, format_demos, generate_ids, instruction_of,
)  # fmt: skip
from .text import TextSearchAgent

log = logging.getLogger(__name__)

ANCHORS = ("appo", "previous")


class StablePromptAgent(TextSearchAgent):
    """APPO on a LoRA adapter of the agent LM (see the module docstring).

    Args:
        env: a text env.
        agent_model: the agent LM (loaded as a private copy: LoRA changes its modules).
        batch: instructions sampled per update (B).
        num_demos: input/output pairs in the meta-prompt (k), drawn afresh each update.
        lr, epochs, clip: Adam's step size on the adapter, PPO epochs per batch, PPO's ε.
        kl_coef: weight of the KL term toward the anchor.
        anchor: ``"appo"`` (moves to the policy when the batch mean reward improves) or ``"previous"`` (plain PPO).
        lora_r, lora_alpha: the adapter (on the attention's query and value projections).
        max_new_tokens, temperature: sampling (top-p 1: the ratio's old log-probabilities are the sampler's).
        seed: seeds the adapter's init, the demonstrations and the samples.
    """

    algo = "stableprompt"

    def __init__(self, env, *, agent_model: str = DEFAULT_AGENT, batch: int = 4, num_demos: int = 3,
                 lr: float = 1e-4, epochs: int = 2, clip: float = 0.2, kl_coef: float = 0.1, anchor: str = "appo",
                 lora_r: int = 8, lora_alpha: int = 16, max_new_tokens: int = 32, temperature: float = 1.0,
                 seed: int = 0):  # fmt: skip
        super().__init__(env, seed)
        for name, v in (("batch", batch), ("num_demos", num_demos), ("epochs", epochs), ("lora_r", lora_r),
                        ("lora_alpha", lora_alpha), ("max_new_tokens", max_new_tokens)):  # fmt: skip
            check_positive(name, v)
        for name, v in (("lr", lr), ("clip", clip), ("temperature", temperature)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
                raise ConfigError(f"{name} must be a number > 0, got {v!r}")
        if isinstance(kl_coef, bool) or not isinstance(kl_coef, (int, float)) or kl_coef < 0:
            raise ConfigError(f"kl_coef must be a number >= 0, got {kl_coef!r}")
        if anchor not in ANCHORS:
            raise ConfigError(f"anchor must be one of {ANCHORS} (appo: APPO's anchor; previous: plain PPO), "
                              f"got {anchor!r}")  # fmt: skip
        self.agent_model, self.batch, self.num_demos, self.anchor = agent_model, batch, num_demos, anchor
        self.lr, self.epochs, self.clip, self.kl_coef = float(lr), epochs, float(clip), float(kl_coef)
        self.lora_r, self.lora_alpha = lora_r, lora_alpha
        self.max_new_tokens, self.temperature = max_new_tokens, float(temperature)
        self.policy: Any = None
        """The PEFT model (agent LM + LoRA adapter) after ``start``; :meth:`save_adapter` writes its adapter."""
        self.anchor_state: dict[str, torch.Tensor] = {}
        self.anchor_reward = -np.inf
        self.anchor_moves = 0

    # ------------------------------------------------------------------ the policy
    def start(self) -> None:
        from peft import LoraConfig, get_peft_model

        self.rng = np.random.default_rng(self.seed)
        self.lm = agent_model(self.agent_model, private=True)
        config = LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                            target_modules=["q_proj", "v_proj"])  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.policy = get_peft_model(self.lm.full, config)
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=self.lr)
        self.anchor_state, self.anchor_reward, self.anchor_moves = self.adapter_state(), -np.inf, 0
        self._calls = 0

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """A copy of the adapter's trainable tensors (what the anchor holds)."""
        return {n: p.detach().clone() for n, p in self.policy.named_parameters() if p.requires_grad}

    @contextmanager
    def anchored(self):
        """The policy holds the anchor's adapter inside the block, its own after it."""
        own = self.adapter_state()
        named = dict(self.policy.named_parameters())
        with torch.no_grad():
            for n, v in self.anchor_state.items():
                named[n].copy_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, v in own.items():
                    named[n].copy_(v)

    def log_probs(self, prompt: torch.Tensor, gen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(token log-probs (B, G), mask (B, G))`` of the generated tokens after ``prompt (1, P)``; the
        mask ends each row after its first end-of-sequence token."""
        b = gen.shape[0]
        ids = torch.cat([prompt.expand(b, -1), gen], 1)  # (B, P+G)
        eos = self.lm.tokenizer.eos_token_id
        is_eos = torch.zeros_like(gen) if eos is None else (gen == eos).long()
        done = is_eos.cumsum(1) > is_eos  # (B, G): after the first EOS (padding included)
        mask = (~done).float()  # (B, G): the tokens up to and including the first EOS
        attn = torch.cat([torch.ones_like(prompt).expand(b, -1), mask.long()], 1)
        logits = self.policy(input_ids=ids, attention_mask=attn).logits[:, prompt.shape[1] - 1 : -1]  # (B, G, V)
        return token_log_probs(logits / self.temperature, gen), mask

    # ------------------------------------------------------------------ the loop
    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """B instructions from the policy: ``(prompt ids (1, P), generated ids (B, G), instructions)``."""
        demos = format_demos(demonstrations(self.scorer.search.setup, self.num_demos, self.rng))
        text = as_chat(self.lm, INDUCE.format(k=self.num_demos, demos=demos))
        device = next(self.policy.parameters()).device
        ids = self.lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
        self._calls += 1
        prompt, gen = generate_ids(self.policy, self.lm.tokenizer, ids, self.batch,
                                   seed=self.seed * 1_000_003 + self._calls, max_new_tokens=self.max_new_tokens,
                                   temperature=self.temperature, top_p=1.0)  # fmt: skip
        texts = [instruction_of(self.lm.tokenizer.decode(g, skip_special_tokens=True), self.max_chars) for g in gen]
        return prompt, gen, texts

    def propose(self, room: int) -> list[str]:  # the loop below draws its own batches
        return []

    def run_search(self, budget: int) -> None:
        self.scorer.reset(seed=self.seed)
        self.scored = {}
        self.start()
        stale = 0
        while self.evals < budget and stale < self.max_idle:
            prompt, gen, texts = self.sample_batch()
            new = self.fresh(texts)[: budget - self.evals]
            if new:
                self.score(new)
            known = [i for i, t in enumerate(texts) if t in self.scored]  # scored now or before; the rest are unusable
            stale = 0 if new else stale + 1
            if len(known) < 2:  # no advantage without two rewards
                continue
            rewards = torch.tensor([self.scored[texts[i]] for i in known])
            stats = self.update(prompt, gen[known], rewards)
            if not self.emit(stats):
                break

    def update(self, prompt: torch.Tensor, gen: torch.Tensor, rewards: torch.Tensor) -> dict[str, float]:
        """PPO epochs on one batch ``gen (B, G)`` with ``rewards (B,)``, then the anchor rule."""
        adv = (rewards - rewards.mean()) / (rewards.std() + 1e-8)  # (B,)
        with torch.no_grad():
            old, mask = self.log_probs(prompt, gen)  # the sampler's log-probabilities
            if self.anchor == "previous":  # plain PPO: the reference is the policy before this update
                self.anchor_state = self.adapter_state()
            with self.anchored():
                ref, _ = self.log_probs(prompt, gen)
        self.policy.train()
        for _ in range(self.epochs):
            logp, _ = self.log_probs(prompt, gen)
            kl = kl_penalty(logp, ref, mask)
            loss = ppo_clip_loss((logp * mask).sum(1), (old * mask).sum(1), adv, self.clip) + self.kl_coef * kl
            self.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
        self.policy.eval()
        mean = float(rewards.mean())
        moved = self.anchor == "appo" and self.move_anchor(mean)
        return {"loss": float(loss.detach()), "kl_to_anchor": float(kl.detach()), "batch_reward": mean,
                "anchor_moved": moved}

    def move_anchor(self, batch_reward: float) -> bool:
        """APPO's rule: the anchor becomes the current policy when ``batch_reward`` beats the anchor's."""
        if batch_reward <= self.anchor_reward:
            return False
        self.anchor_state, self.anchor_reward = self.adapter_state(), batch_reward
        self.anchor_moves += 1
        return True

    def save_adapter(self, path) -> None:
        """Write the agent's LoRA adapter as a standard PEFT adapter (``PeftModel.from_pretrained`` reads it)."""
        if self.policy is None:
            raise ConfigError("no adapter yet: call learn() first")
        self.policy.save_pretrained(str(path))
