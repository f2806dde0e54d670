"""Scoring prompts on a tokenized split: K prompts, one batched forward per chunk of examples."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .batching import Encoded, eval_batches
from .prompts import PromptedModel

HINGE_MARGIN = 2.0
"""The margin of the ``"hinge"`` reward: Black-Box Tuning's (its metrics use ``margin = 2`` on the
verbalizer logits)."""

REWARDS = ("accuracy", "ce", "hinge", "margin", "softmax_diff", "neg_ce")
"""Reward names, each a per-prompt mean over the scored rows, higher is better:

* ``accuracy``: fraction of rows whose argmax logit is the label (the paper's reward).
* ``ce``: mean log p(y), i.e. minus the cross-entropy (BBT's CE fitness, negated).
* ``hinge``: minus BBT's multi-class hinge loss, ``−Σ_{y'≠y} max(0, HINGE_MARGIN − (z_y − z_y'))``:
  0 once the true logit leads every other class by :data:`HINGE_MARGIN`.
* ``margin``: mean ``z_y − max_{y'≠y} z_y'`` (unbounded; positive where the row is right).
* ``softmax_diff``: StablePrompt's ``p(y) − max_{y'≠y} p(y')``, in [−1, 1].
* ``neg_ce``: the older name of ``ce`` (same values).
"""

#: (low, high) of each reward: the env's ``reward_range`` (Gymnasium 1.x dropped the attribute from
#: ``Env``; the envs keep it for the wrappers and readers that still look for it)
REWARD_RANGES = {
    "accuracy": (0.0, 1.0),
    "ce": (-float("inf"), 0.0),
    "neg_ce": (-float("inf"), 0.0),
    "hinge": (-float("inf"), 0.0),
    "margin": (-float("inf"), float("inf")),
    "softmax_diff": (-1.0, 1.0),
}

_REWARD_FIELD = {  # reward name -> (PopulationScores field, sign)
    "accuracy": ("correct", 1.0),
    "ce": ("ce", -1.0),
    "neg_ce": ("ce", -1.0),
    "hinge": ("hinge", -1.0),
    "margin": ("margin", 1.0),
    "softmax_diff": ("softmax_diff", 1.0),
}


def example_scores(
    logits: torch.Tensor, labels: torch.Tensor, *, hinge_margin: float = HINGE_MARGIN
) -> dict[str, torch.Tensor]:
    """Per-example scores of K prompts on b labelled rows, all from one logits tensor.

    Args:
        logits: ``(K, b, C)`` class logits, prompt k on row i.
        labels: ``(b,)`` true classes.

    Returns:
        ``{"correct", "margin", "ce", "hinge", "softmax_diff"}``, each ``(K, b)`` float:
        argmax = label (0/1), ``z_y − max_{y'≠y} z_y'``, ``−log p(y)``,
        ``Σ_{y'≠y} max(0, hinge_margin − z_y + z_y')`` and ``p(y) − max_{y'≠y} p(y')``.
        Losses (``ce``, ``hinge``) are positive; :meth:`PopulationScores.reward` negates them.
    """
    k = logits.shape[0]
    index = labels.view(1, -1, 1).expand(k, -1, 1)  # (K, b, 1)
    true = logits.gather(2, index).squeeze(2)  # (K, b)
    other = logits.scatter(2, index, float("-inf")).amax(2)  # (K, b) best wrong logit
    logp = torch.log_softmax(logits, 2)  # (K, b, C)
    prob = logp.exp()
    hinge = (hinge_margin - true.unsqueeze(2) + logits).clamp_min(0).scatter(2, index, 0.0).sum(2)  # (K, b)
    p_other = prob.scatter(2, index, 0.0).amax(2)  # (K, b); 0 when there is no other class
    return {
        "correct": (logits.argmax(2) == labels).to(logits.dtype),
        "margin": true - other,
        "ce": -logp.gather(2, index).squeeze(2),
        "hinge": hinge,
        "softmax_diff": prob.gather(2, index).squeeze(2) - p_other,
    }


@dataclass
class PopulationScores:
    """Per-prompt sums over the scored examples (sums, so shards can be all-reduced).

    Every prompt of a population is scored on the same rows (common random numbers), so
    comparing their rewards compares prompts, not samples of data.
    """

    correct: torch.Tensor  # (K,) number of correct predictions
    margin: torch.Tensor  # (K,) sum of (true logit - best other logit)
    ce: torch.Tensor  # (K,) sum of -log p(true class)
    hinge: torch.Tensor  # (K,) sum of BBT's hinge loss (margin HINGE_MARGIN)
    softmax_diff: torch.Tensor  # (K,) sum of p(true) - best other p
    count: int

    FIELDS: ClassVar[tuple[str, ...]] = ("correct", "margin", "ce", "hinge", "softmax_diff")

    def reward(self, kind: str) -> torch.Tensor:
        """Mean reward per prompt ``(K,)``, higher is better; ``kind`` is one of :data:`REWARDS`."""
        if kind not in _REWARD_FIELD:
            raise ValueError(f"unknown reward {kind!r}; choose one of {REWARDS}")
        name, sign = _REWARD_FIELD[kind]
        return sign * getattr(self, name) / self.count


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def score_population(
    pm: PromptedModel,
    data: Encoded,
    thetas: torch.Tensor,
    *,
    idx: np.ndarray | None = None,
    max_rows: int = 128,
) -> PopulationScores:
    """Score K prompts ``thetas (K, D)`` on ``data`` (or its rows ``idx``), K·b rows per forward.

    Examples are visited in length order so each chunk pads little; every chunk is one model
    call in which row k·b+i pairs prompt k with example i.
    """
    from .distributed import all_reduce_sum_, is_distributed, rank, world_size

    was_training = pm.training
    pm.eval()
    device = pm.device
    thetas = thetas.to(device)
    k = thetas.shape[0]
    if is_distributed():  # each rank scores rows rank::world; the sums are all-reduced below
        idx = (np.arange(len(data)) if idx is None else np.asarray(idx))[rank() :: world_size()]
    sub = data if idx is None else data.subset(idx)
    per_chunk = max(1, max_rows // k)
    sums = {name: torch.zeros(k, device=device) for name in PopulationScores.FIELDS}  # each (K,)
    try:
        for chunk in (eval_batches(sub.lengths, per_chunk) if len(sub) else ()):
            ids, mask, labels = sub.batch(chunk, device)
            with autocast(device):
                logits = pm(ids, mask, thetas)  # (K, b, C)
            for name, per_row in example_scores(logits.float(), labels).items():
                sums[name] += per_row.sum(1)
    finally:
        pm.train(was_training)
    count = len(sub)
    if is_distributed():
        packed = torch.cat([*sums.values(), torch.tensor([float(count)], device=device)])
        all_reduce_sum_(packed)
        sums = {name: packed[i * k : (i + 1) * k] for i, name in enumerate(sums)}
        count = int(packed[-1])
    return PopulationScores(**{name: v.cpu() for name, v in sums.items()}, count=count)


def accuracy(pm: PromptedModel, data: Encoded, *, batch_size: int = 64, theta: torch.Tensor | None = None) -> float:
    """Accuracy of one prompt (default: the model's own θ) on ``data``."""
    theta = pm.prompt.theta.detach() if theta is None else theta
    scores = score_population(pm, data, theta.reshape(1, -1), max_rows=batch_size)
    return float(scores.reward("accuracy")[0])


@torch.inference_mode()
def pooled_features(pm: PromptedModel, data: Encoded, *, batch_size: int = 128) -> torch.Tensor:
    """Features ``(n, hidden)`` of every example under the model's own prompt, in data order."""
    was_training = pm.training
    pm.eval()
    out = torch.empty(len(data), pm.lm.hidden_size)
    try:
        for chunk in eval_batches(data.lengths, batch_size):
            ids, mask, _ = data.batch(chunk, pm.device)
            with autocast(pm.device):
                out[torch.as_tensor(chunk)] = pm.features(ids, mask)[0].float().cpu()
    finally:
        pm.train(was_training)
    return out


def fit_probe(pm: PromptedModel, data: Encoded, *, ridge: float = 1e-2, batch_size: int = 128) -> float:
    """Fit the linear head in closed form (ridge regression on one-hot targets) and return its
    training accuracy; a cheap, deterministic head for environments whose LM has no LM head."""
    if pm.head_kind != "linear":
        raise ValueError("fit_probe needs head='linear'")
    x = pooled_features(pm, data, batch_size=batch_size).double()  # (n, H)
    y = F.one_hot(data.labels, pm.head.linear.out_features).double()  # (n, C)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    w = torch.linalg.solve(xs.T @ xs + ridge * len(xs) * torch.eye(xs.shape[1], dtype=xs.dtype), xs.T @ (y - y.mean(0)))
    weight = (w / sd.unsqueeze(1)).T  # (C, H)
    bias = y.mean(0) - weight @ mu
    with torch.no_grad():
        pm.head.linear.weight.copy_(weight.float())
        pm.head.linear.bias.copy_(bias.float())
    pred = (x.float() @ pm.head.linear.weight.T.cpu() + pm.head.linear.bias.cpu()).argmax(1)
    return float((pred == data.labels).float().mean())
