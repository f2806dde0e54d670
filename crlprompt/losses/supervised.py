"""Supervised losses: cross-entropy (Eq. 2), InfoNCE (Eq. 3) in its SimCSE-noise form and as the paper reads it."""

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


CONTRAST_MODES = ("paper", "supcon", "noise")
NEGATIVE_KINDS = ("permute", "dropout")


def contrastive_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    *,
    tau: float = 0.1,
    supervised: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """L_contrast (Eq. 3) as the paper's text reads it: a clean positive, corrupted-prompt negatives,
    and no example of the anchor's own class among the negatives.

    For a batch x_1..x_B with labels y and the prompt P:

    * ``anchor`` h_i, ``(B, H)``: pooled feature of x_i under the training view of P (prompt
      dropout on: the view the CE term uses);
    * ``positive`` h+_i, ``(B, H)``: pooled feature of x_i under the clean P (no dropout): the
      paper's "original or clean version";
    * ``negatives`` h-_{i,j}, ``(k, B, H)``: pooled features of x_i under k corrupted prompts
      (P with its tokens permuted, or under heavy dropout: :func:`contrastive_prompts`);
    * in-batch: the clean features h+_m of the other examples m ≠ i are negatives **only when
      y_m ≠ y_i** (with ``labels=None`` every m ≠ i is one, SimCSE-style). A same-class h+_m is
      left out of the denominator, or, with ``supervised=True``, counted as a further positive
      (SupCon, Khosla et al. 2020: the loss averages -log p over all positives of i).

    loss_i = -1/|P_i| Σ_{p ∈ P_i} log( exp(s(h_i, p)/τ) / Σ_{c ∈ P_i ∪ N_i} exp(s(h_i, c)/τ) ),
    s = cosine similarity, P_i = {h+_i} (plus same-class h+_m when supervised), N_i = the
    negatives above.

    Returns:
        the mean of loss_i (``reduction="mean"``), or the ``(B,)`` vector (``"none"``).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if anchor.ndim != 2 or positive.shape != anchor.shape:
        raise ValueError(f"expected anchor and positive (B, H), got {tuple(anchor.shape)} and {tuple(positive.shape)}")
    if labels is not None and labels.shape != anchor.shape[:1]:
        raise ValueError(f"expected labels (B,), got {tuple(labels.shape)}")
    if supervised and labels is None:
        raise ValueError("supervised=True needs labels")
    a = F.normalize(anchor.float(), dim=-1)  # (B, H)
    p = F.normalize(positive.float(), dim=-1)  # (B, H)
    b = a.shape[0]
    logits = a @ p.T / tau  # (B, B): [i, m] = s(h_i, h+_m) / τ
    eye = torch.eye(b, dtype=torch.bool, device=a.device)
    same = eye if labels is None else labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B) same class (incl. i)
    pos = same if supervised else eye  # (B, B) positives of each anchor
    keep = pos | ~same  # positives and other-class examples; same-class non-positives are dropped
    if negatives is not None and negatives.numel():
        if negatives.ndim != 3 or negatives.shape[1:] != anchor.shape:
            raise ValueError(f"expected negatives (k, B, H), got {tuple(negatives.shape)}")
        n = F.normalize(negatives.float(), dim=-1)  # (k, B, H)
        neg = torch.einsum("bh,kbh->bk", a, n) / tau  # (B, k)
        logits = torch.cat([logits, neg], dim=1)  # (B, B + k)
        k = neg.shape[1]
        pos = torch.cat([pos, pos.new_zeros(b, k)], dim=1)
        keep = torch.cat([keep, keep.new_ones(b, k)], dim=1)
    log_prob = logits - torch.logsumexp(logits.masked_fill(~keep, float("-inf")), dim=1, keepdim=True)
    loss = -(log_prob * pos).sum(1) / pos.sum(1)  # (B,)
    if reduction == "none":
        return loss
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return loss.mean()


def contrastive_prompts(
    theta: torch.Tensor,
    shape: tuple[int, ...],
    *,
    dropout: float,
    num_negatives: int = 1,
    negative: str = "permute",
    negative_dropout: float = 0.5,
) -> torch.Tensor:
    """The prompts of one contrastive step, ``(2 + k, D)`` rows for one population forward:

    * row 0: dropout(θ, ``dropout``), the training view (anchor h and the CE term);
    * row 1: θ itself, the clean view (positive h+): no dropout, no noise;
    * rows 2..: k corrupted prompts (negatives h-), each either

      - ``"permute"``: θ with its virtual tokens re-paired by a random derangement. A shallow
        prompt ``(tokens, hidden)`` changes the order of its tokens. A deep prefix
        ``(tokens, layers, 2, kv_heads, head_dim)`` keeps each key and takes another token's
        value: permuting whole (key, value) tokens would change nothing, since attention over
        the prefix does not depend on its order;
      - ``"dropout"``: dropout(θ, ``negative_dropout``) (heavier than the anchor's, or the
        negative would be another sample of the anchor's own view).

    ``theta`` is ``(D,)`` with ``D = prod(shape)``; gradients flow into every row. Randomness
    comes from torch's global generator.
    """
    if negative not in NEGATIVE_KINDS:
        raise ValueError(f"negative must be one of {NEGATIVE_KINDS}, got {negative!r}")
    view = theta.view(*shape)
    tokens = shape[0]
    negs = []
    for _ in range(num_negatives):
        if negative == "dropout":
            negs.append(F.dropout(theta, negative_dropout, training=True))
            continue
        if tokens < 2:
            raise ValueError("negative='permute' needs a prompt of >= 2 virtual tokens (or use 'dropout')")
        order = torch.randperm(tokens, device=theta.device)
        shift = torch.empty_like(order)
        shift[order] = order.roll(-1)  # a random cyclic derangement: no token keeps its place
        if len(shape) == 5:  # deep: (tokens, layers, 2 = key/value, kv_heads, head_dim)
            negs.append(torch.stack([view[:, :, 0], view[shift][:, :, 1]], dim=2).reshape(-1))
        else:
            negs.append(view[shift].reshape(-1))
    rows = [F.dropout(theta, dropout, training=True), theta, *negs]
    return torch.stack(rows)
