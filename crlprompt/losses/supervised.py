"""Supervised losses: cross-entropy (Eq. 2) and InfoNCE (Eq. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_CE (Eq. 2): mean negative log-likelihood of the true class.

    Args:
        logits: ``(B, C)`` class logits f(P, x).
        labels: ``(B,)`` int64 class ids in ``[0, C)``.

    Returns:
        scalar loss.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, C) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.cross_entropy(logits.float(), labels)


def info_nce_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    tau: float = 0.1,
    in_batch: bool = True,
) -> torch.Tensor:
    """L_contrast (Eq. 3): InfoNCE over cosine similarities with temperature ``tau``.

    What the CRL agent feeds it, for a batch of inputs x_1..x_B and the prompt P:

    * ``anchor`` h_i = pooled feature of x_i under the prompt with dropout mask 1, ``(B, H)``;
    * ``positive`` h+_i = pooled feature of the same x_i under the same prompt with an
      independent dropout mask 2, ``(B, H)`` (the SimCSE positive: same input, same prompt);
    * ``negatives`` h-_{i,j} = pooled features of the same x_i under k *noised* prompts
      P + ε_j, ε_j ~ N(0, σ_neg² I), ``(k, B, H)``; with ``in_batch=True`` the positives of the
      other inputs, h+_m (m ≠ i), are negatives too.

    loss = mean_i  -log( exp(s(h_i, h+_i)/τ) / Σ_{c ∈ {h+_i} ∪ negatives_i} exp(s(h_i, c)/τ) ),
    where s is cosine similarity.

    Returns:
        scalar loss.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    a = F.normalize(anchor.float(), dim=-1)  # (B, H)
    p = F.normalize(positive.float(), dim=-1)  # (B, H)
    b = a.shape[0]
    if in_batch:
        cand = a @ p.T  # (B, B); diagonal = positives
        target = torch.arange(b, device=a.device)
    else:
        cand = (a * p).sum(-1, keepdim=True)  # (B, 1)
        target = torch.zeros(b, dtype=torch.long, device=a.device)
    if negatives is not None and negatives.numel():
        n = F.normalize(negatives.float(), dim=-1)  # (k, B, H)
        neg = torch.einsum("bh,kbh->bk", a, n)  # (B, k)
        cand = torch.cat([cand, neg], dim=1)
    return F.cross_entropy(cand / tau, target)
