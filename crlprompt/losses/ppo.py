"""PPO's terms for a policy over token sequences (StablePrompt's agent LM), as pure functions.

* :func:`token_log_probs` — log π(token | prefix) of each generated token.
* :func:`ppo_clip_loss` — the clipped surrogate of PPO (Schulman et al. 2017), sequence level.
* :func:`kl_penalty` — the k3 estimate of KL(π ‖ π_ref) per token (Schulman 2020): non-negative,
  and exactly 0 where the policy and the reference give the sampled tokens the same log-probabilities.
  StablePrompt's APPO puts its *anchor* policy as π_ref; plain PPO's is the previous policy.
"""

from __future__ import annotations

import torch


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``(B, G)`` log-probabilities of ``tokens (B, G)`` under ``logits (B, G, V)`` (position t predicts token t)."""
    return torch.log_softmax(logits.float(), -1).gather(2, tokens.unsqueeze(2)).squeeze(2)


def ppo_clip_loss(
    logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip: float = 0.2
) -> torch.Tensor:
    """``-mean(min(ρ A, clip(ρ, 1-ε, 1+ε) A))`` with ρ = exp(logp − logp_old); all ``(B,)`` (sequence
    log-probabilities and advantages), ``logp_old`` and ``advantages`` without gradient."""
    ratio = torch.exp(logp - logp_old.detach())
    adv = advantages.detach()
    return -torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()


def kl_penalty(logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the ``mask``-ed tokens of ``exp(d) − d − 1`` with d = logp_ref − logp (``(B, G)`` each):
    the k3 estimate of KL(π ‖ π_ref) on tokens sampled from π; ≥ 0, and 0 where the two agree."""
    d = (logp_ref.detach() - logp) * mask
    return ((torch.exp(d) - d - 1) * mask).sum() / mask.sum().clamp_min(1)
