"""REINFORCE for a Gaussian policy over prompts, and its variance-reduced variants.

The policy is π(·|P) = N(P, σ² I) over flat prompt vectors. For a sample P' and reward r,

    L_RL = -r · log π(P'|P),        ∇_P L_RL = -r · (P' - P) / σ²        (Eq. 5)

P' must enter as a **constant** (detached). If P' is built as ``P + σ ε`` without detaching,
log π(P'|P) = -‖σε‖²/(2σ²) + const no longer depends on P and the gradient is identically
zero — the bug in a published implementation of this paper. :func:`reinforce_loss` detaches
``sample`` itself, so callers cannot reintroduce it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError

ESTIMATORS = ("single", "baseline", "antithetic", "ranks")


def gaussian_log_prob(sample: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(sample; mean, σ² I) summed over the last dim: ``(..., D) -> (...)``."""
    d = mean.shape[-1]
    return -((sample - mean) ** 2).sum(-1) / (2 * sigma**2) - d * (math.log(sigma) + 0.5 * math.log(2 * math.pi))


def _check_sigma(sigma: float) -> None:
    if not sigma > 0:
        raise ConfigError(f"sigma must be > 0, got {sigma}")


def reinforce_loss(mean: torch.Tensor, sample: torch.Tensor, reward: float | torch.Tensor, sigma: float) -> torch.Tensor:
    """L_RL = -r · log π(P'|P) for one sample (Eq. 5, the faithful single-sample form).

    Args:
        mean: ``(D,)`` the prompt P (requires grad).
        sample: ``(D,)`` the perturbed prompt P' ~ N(P, σ²I); detached here.
        reward: scalar r (e.g. accuracy of P' on D_RL); treated as a constant.
        sigma: σ > 0.

    Returns:
        scalar whose gradient w.r.t. ``mean`` is ``-r (P' - P) / σ²``.
    """
    _check_sigma(sigma)
    r = torch.as_tensor(reward, dtype=mean.dtype, device=mean.device).detach()
    return -r * gaussian_log_prob(sample.detach(), mean, sigma)


def centered_ranks(x: torch.Tensor) -> torch.Tensor:
    """OpenAI-ES fitness shaping: ranks mapped linearly to [-0.5, 0.5].

    Tied values share their average rank, so equal rewards (common with accuracy on a small
    D_RL) get equal weights instead of an arbitrary order.
    """
    n = x.numel()
    if n == 1:
        return torch.zeros_like(x, dtype=torch.float32)
    flat = x.reshape(-1).float()
    # rank = (number of smaller values) + (number of equal values - 1) / 2
    less = (flat.unsqueeze(0) < flat.unsqueeze(1)).sum(1).float()
    equal = (flat.unsqueeze(0) == flat.unsqueeze(1)).sum(1).float()
    ranks = less + (equal - 1) / 2
    return (ranks / (n - 1) - 0.5).reshape(x.shape)


def shape_rewards(rewards: torch.Tensor, estimator: str, baseline: float | None = None) -> torch.Tensor:
    """Turn K raw rewards ``(K,)`` into the weights that multiply ∇ log π for each sample.

    Weights are float32, or float64 when the rewards are.

    * ``single``: the rewards as they are (faithful Eq. 5; K = 1 in the paper).
    * ``baseline``: r_k − b, with b the given running baseline or else the mean of the K rewards.
    * ``antithetic``: samples come in pairs (ε, −ε); weight (r⁺ − r⁻)/2 on ε, its negative on −ε.
    * ``ranks``: centered ranks (scale-free; OpenAI-ES).
    """
    rewards = rewards if rewards.dtype == torch.float64 else rewards.float()
    if estimator == "single":
        return rewards
    if estimator == "baseline":
        b = rewards.mean() if baseline is None else torch.as_tensor(baseline, dtype=rewards.dtype)
        return rewards - b
    if estimator == "antithetic":
        if rewards.numel() % 2:
            raise ConfigError("estimator='antithetic' needs an even number of samples (pairs ε, -ε)")
        pairs = rewards.view(-1, 2)
        half = (pairs[:, 0] - pairs[:, 1]) / 2
        return torch.stack([half, -half], dim=1).reshape(-1)
    if estimator == "ranks":
        return centered_ranks(rewards)
    raise ConfigError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")


def reinforce_population_loss(
    mean: torch.Tensor,
    samples: torch.Tensor,
    rewards: torch.Tensor,
    sigma: float,
    estimator: str = "baseline",
    baseline: float | None = None,
) -> torch.Tensor:
    """Mean over K samples of ``-w_k · log π(P'_k|P)`` with w from :func:`shape_rewards`.

    Args:
        mean: ``(D,)`` prompt P; samples: ``(K, D)`` detached P'_k; rewards: ``(K,)``.

    Returns:
        scalar; gradient ``-(1/K) Σ_k w_k (P'_k - P) / σ²``.
    """
    _check_sigma(sigma)
    w = shape_rewards(rewards.detach().to(mean.device), estimator, baseline).to(mean.dtype)
    return -(w * gaussian_log_prob(samples.detach(), mean.unsqueeze(0), sigma)).mean()


def sample_actions(rng: np.random.Generator, k: int, d: int, estimator: str, dtype=np.float32) -> np.ndarray:
    """K standard-normal actions ``(K, D)`` from ``rng``; for ``antithetic``, K/2 draws in pairs (ε, −ε).

    Rows 2j and 2j+1 of an antithetic draw are ε_j and −ε_j, the layout :func:`shape_rewards` expects.
    """
    if estimator == "antithetic":
        if k % 2:
            raise ConfigError(f"estimator='antithetic' needs an even number of samples (pairs ε, -ε), got {k}")
        half = rng.standard_normal((k // 2, d), dtype=dtype)  # (K/2, D)
        return np.stack([half, -half], 1).reshape(k, d)
    return rng.standard_normal((k, d), dtype=dtype)


def estimator_loss(
    mean: torch.Tensor,
    samples: torch.Tensor,
    rewards: torch.Tensor,
    sigma: float,
    estimator: str,
    running_baseline: float | None = None,
) -> torch.Tensor:
    """The REINFORCE term of one update with K samples, for any of :data:`ESTIMATORS`.

    Args:
        mean: ``(D,)`` prompt P; samples: ``(K, D)`` P'_k (detached here); rewards: ``(K,)``.
        estimator: ``single`` with K = 1 is Eq. 5 exactly (:func:`reinforce_loss`). ``baseline``
            with K = 1 subtracts ``running_baseline`` (a running mean of earlier rewards, 0 before
            the first), since the mean of a single reward would cancel it exactly; with K > 1 it
            subtracts the batch mean. Otherwise :func:`reinforce_population_loss`.

    Returns:
        scalar.
    """
    if len(samples) == 1 and estimator == "single":
        return reinforce_loss(mean, samples[0], rewards[0], sigma)
    if len(samples) == 1 and estimator == "baseline":
        baseline = 0.0 if running_baseline is None else running_baseline
        return reinforce_population_loss(mean, samples, rewards, sigma, "baseline", baseline)
    return reinforce_population_loss(mean, samples, rewards, sigma, estimator)
