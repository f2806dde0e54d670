"""Scoring prompts on a tokenized split: K prompts, one batched forward per chunk of examples."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .batching import Encoded, eval_batches
from .prompts import PromptedModel

REWARDS = ("accuracy", "margin", "neg_ce")


@dataclass
class PopulationScores:
    """Per-prompt sums over the scored examples (sums, so shards can be all-reduced)."""

    correct: torch.Tensor  # (K,) number of correct predictions
    margin: torch.Tensor  # (K,) sum of (true logit - best other logit)
    neg_ce: torch.Tensor  # (K,) sum of log p(true class)
    count: int

    def reward(self, kind: str) -> torch.Tensor:
        """Mean reward per prompt ``(K,)``: accuracy (default), mean logit margin or mean -CE."""
        if kind == "accuracy":
            return self.correct / self.count
        if kind == "margin":
            return self.margin / self.count
        if kind == "neg_ce":
            return self.neg_ce / self.count
        raise ValueError(f"unknown reward {kind!r}; choose one of {REWARDS}")


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
    correct = torch.zeros(k, device=device)
    margin = torch.zeros(k, device=device)
    logp = torch.zeros(k, device=device)
    try:
        for chunk in (eval_batches(sub.lengths, per_chunk) if len(sub) else ()):
            ids, mask, labels = sub.batch(chunk, device)
            with autocast(device):
                logits = pm(ids, mask, thetas)  # (K, b, C)
            logits = logits.float()
            true = logits.gather(2, labels.view(1, -1, 1).expand(k, -1, 1)).squeeze(2)  # (K, b)
            correct += (logits.argmax(2) == labels).sum(1)
            other = logits.scatter(2, labels.view(1, -1, 1).expand(k, -1, 1), float("-inf")).amax(2)
            margin += (true - other).sum(1)
            logp += (true - torch.logsumexp(logits, 2)).sum(1)
    finally:
        pm.train(was_training)
    count = len(sub)
    if is_distributed():
        packed = torch.cat([correct, margin, logp, torch.tensor([float(count)], device=device)])
        all_reduce_sum_(packed)
        correct, margin, logp, count = packed[:k], packed[k : 2 * k], packed[2 * k : 3 * k], int(packed[-1])
    return PopulationScores(correct.cpu(), margin.cpu(), logp.cpu(), count)


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
