"""Off-policy REINFORCE for an isotropic Gaussian policy: truncated, self-normalised importance weights.

The target policy is π = N(m, s² I) over d-dimensional actions. A replay buffer holds N past
samples ``a_i`` drawn from *behaviour* policies μ_i = N(m_i, s_i² I) (the policy as it was when
``a_i`` was scored) with rewards ``r_i``. The importance ratio of sample i is

    ρ_i = π(a_i) / μ_i(a_i),     log ρ_i = log N(a_i; m, s²I) − log N(a_i; m_i, s_i²I)

computed in log space (in d = 64 a ratio of e^300 is ordinary). Following Ionides (2008,
"Truncated importance sampling"), ratios above ``truncate × mean(ρ)`` are cut to that value
(``truncate = √N`` by default), and the truncated ratios are self-normalised to sum to one:
w_i = ρ̃_i / Σ_j ρ̃_j. The surrogate loss is

    L(m) = − Σ_i w_i (r_i − b) log π(a_i | m)

with w and b constants, so ∇_m L = − Σ_i w_i (r_i − b)(a_i − m)/s². When every behaviour policy
equals π, all w_i = 1/N and this is exactly the on-policy REINFORCE gradient with baseline b,
``-(1/N) Σ_i (r_i − b)(a_i − m)/s²`` (:func:`crlprompt.losses.reinforce_population_loss` with
``estimator="baseline"``). The default baseline is the weighted mean reward Σ_i w_i r_i.

By default (``mixture=True``) μ_i is not the policy that drew a_i but the buffer's mixture of
all its behaviour policies (the balance heuristic of multiple importance sampling): in d = 64,
ratios against each sample's own policy leave an effective sample size near 1 after a few
updates; against the mixture, about 20 of 256 on the tiny id. Both reduce to π (all w_i = 1/N,
up to rounding) when every behaviour policy equals π.
"""

from __future__ import annotations

import math
from collections import deque

import torch

from ..errors import ConfigError

#: A replay buffer may hold at most this many bytes of actions and behaviour means (float64).
MAX_BUFFER_BYTES = 1 << 30


def isotropic_log_prob(actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """log N(a; m, s² I) for each row.

    Args:
        actions: ``(N, d)``.
        mean: ``(d,)`` or ``(N, d)``.
        std: a float or ``(N,)`` per-row standard deviations (> 0).

    Returns:
        ``(N,)``.
    """
    d = actions.shape[-1]
    std = torch.as_tensor(std, dtype=actions.dtype, device=actions.device)
    sq = ((actions - mean) ** 2).sum(-1)
    return -sq / (2 * std**2) - d * (torch.log(std) + 0.5 * math.log(2 * math.pi))


def behaviour_log_prob(
    actions: torch.Tensor, behaviour_mean: torch.Tensor, behaviour_std: torch.Tensor, *, mixture: bool = True
) -> torch.Tensor:
    """log μ(a_i) for each replayed action: ``(N, d), (N, d), (N,) -> (N,)``.

    ``mixture=False``: μ_i, the policy that drew a_i. ``mixture=True``: the buffer's mixture
    (1/N) Σ_j μ_j, the "balance heuristic" of multiple importance sampling (Veach & Guibas 1995;
    Owen & Zhou 2000): an old sample that lies where the policy has since moved is divided by the
    newer policies' density there too, so its weight does not explode. Costs O(N·B·d) for the B
    distinct policies in the buffer.
    """
    if not mixture:
        return isotropic_log_prob(actions, behaviour_mean, behaviour_std)
    n = actions.shape[0]
    # The buffer holds few distinct policies (one per round): B rows (mean, std) with their counts.
    rows = torch.cat([behaviour_mean, behaviour_std.unsqueeze(1)], 1)  # (N, d + 1)
    policies, counts = torch.unique(rows, dim=0, return_counts=True)
    log_p = torch.stack([isotropic_log_prob(actions, p[:-1], p[-1]) for p in policies], 1)  # (N, B)
    log_p = log_p + torch.log(counts.to(log_p.dtype))
    return torch.logsumexp(log_p, 1) - math.log(n)


def importance_weights(log_ratio: torch.Tensor, truncate: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-normalised importance weights with Ionides' truncation, overflow-free.

    Args:
        log_ratio: ``(N,)`` log π(a_i) − log μ_i(a_i).
        truncate: ratios above ``truncate × mean(ρ)`` are cut to it; None = √N (Ionides 2008),
            ``float("inf")`` = no truncation. Must be >= 1 (1 makes all weights equal).

    Returns:
        ``(w (N,), truncated (N,) bool)``: weights that sum to 1, and which ratios were cut.
    """
    n = log_ratio.numel()
    if n == 0:
        raise ConfigError("importance_weights needs at least one sample")
    if not torch.isfinite(log_ratio).all():
        raise ConfigError("log importance ratios must be finite (a behaviour std of 0 or a NaN action?)")
    c = math.sqrt(n) if truncate is None else float(truncate)
    if not c >= 1:
        raise ConfigError(f"truncate must be >= 1 (a multiple of the mean ratio) or None, got {truncate!r}")
    lr = log_ratio.detach()
    log_mean = torch.logsumexp(lr, 0) - math.log(n)  # log mean(ρ)
    cut = lr > log_mean + math.log(c)
    log_w = torch.minimum(lr, log_mean + math.log(c)) if math.isfinite(c) else lr
    return torch.softmax(log_w, 0), cut


def importance_weighted_pg_loss(
    mean: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    behaviour_mean: torch.Tensor,
    behaviour_std: torch.Tensor,
    std: float,
    *,
    baseline: float | None = None,
    truncate: float | None = None,
    mixture: bool = True,
) -> torch.Tensor:
    """Off-policy REINFORCE surrogate ``−Σ_i w_i (r_i − b) log π(a_i | mean)`` (see the module doc).

    Args:
        mean: ``(d,)`` the target policy's mean m (requires grad).
        actions: ``(N, d)`` replayed actions a_i (constants).
        rewards: ``(N,)`` their rewards r_i (constants; shape them before, e.g. by ranks).
        behaviour_mean: ``(N, d)`` the mean m_i of the policy that drew a_i.
        behaviour_std: ``(N,)`` its standard deviation s_i (> 0).
        std: s > 0, the target policy's standard deviation.
        baseline: b; None = the weighted mean reward Σ w_i r_i.
        truncate: see :func:`importance_weights`.
        mixture: divide by the buffer's mixture density rather than each sample's own
            behaviour policy (see :func:`behaviour_log_prob`).

    Returns:
        scalar whose gradient w.r.t. ``mean`` is ``−Σ_i w_i (r_i − b)(a_i − m)/s²``.
    """
    if not std > 0:
        raise ConfigError(f"std must be > 0, got {std}")
    n, d = actions.shape
    if rewards.shape != (n,) or behaviour_mean.shape != (n, d) or behaviour_std.shape != (n,) or mean.shape != (d,):
        raise ConfigError(
            f"shapes must be mean (d,), actions (N, d), rewards (N,), behaviour_mean (N, d), behaviour_std (N,); "
            f"got {tuple(mean.shape)}, {tuple(actions.shape)}, {tuple(rewards.shape)}, "
            f"{tuple(behaviour_mean.shape)}, {tuple(behaviour_std.shape)}"
        )
    if not (behaviour_std > 0).all():
        raise ConfigError("behaviour_std must be > 0")
    a = actions.detach().to(mean.dtype)
    r = rewards.detach().to(mean.dtype)
    log_pi = isotropic_log_prob(a, mean, std)  # (N,) differentiable in mean
    log_mu = behaviour_log_prob(
        a, behaviour_mean.detach().to(mean.dtype), behaviour_std.detach().to(mean.dtype), mixture=mixture
    )
    w, _ = importance_weights(log_pi.detach() - log_mu, truncate)
    b = (w * r).sum() if baseline is None else torch.as_tensor(baseline, dtype=mean.dtype)
    return -(w * (r - b) * log_pi).sum()


class ReplayRLTerm:
    """The replay estimator as the RL term of Algorithm 1 (``CRLConfig(rl_estimator="replay")``).

    Each RL step adds its K fresh samples P'_k = θ + σ a_k, their rewards and θ (the behaviour
    mean) to a buffer of at most ``capacity`` samples (oldest dropped first; refused above
    ``MAX_BUFFER_BYTES``) and returns the importance-weighted REINFORCE loss over the whole buffer,
    :func:`~crlprompt.losses.offpolicy.importance_weighted_pg_loss` in float64 (Ionides-truncated,
    self-normalised, against the buffer's mixture of behaviour policies), with the baseline b the
    running mean of earlier rewards (0 before the first). When every sample in the buffer was drawn
    at the current θ the weights are all 1/N and it is the on-policy estimator
    ``-(1/N) Σ_i (r_i − b) log π(P'_i | θ)``; with one sample and b = 0 it is Eq. 5 exactly.

    What to expect: in the full prompt space (D ~ 10⁴–10⁵) the prompt moves between RL steps by
    many σ, so earlier samples get weights near 0 and the term falls back to the on-policy one on
    the newest samples; the record's ``ess`` (effective sample size 1/Σw²) says how many count.
    The buffer is not checkpointed: a resumed run starts with an empty one.
    """

    def __init__(self, capacity: int, dim: int, sigma: float, *, truncate: float | None = None, mixture: bool = True):
        if not (isinstance(capacity, int) and capacity >= 1):
            raise ConfigError(f"rl_buffer must be an int >= 1, got {capacity!r}")
        nbytes = 2 * 8 * capacity * dim  # float64 samples and behaviour means, stacked for the loss
        if nbytes > MAX_BUFFER_BYTES:
            raise ConfigError(
                f"a replay buffer of {capacity} prompts of dimension {dim} needs {nbytes / 2**30:.1f} GiB "
                f"(more than {MAX_BUFFER_BYTES / 2**30:.0f}); lower rl_buffer"
            )
        self.capacity, self.sigma, self.truncate, self.mixture = capacity, float(sigma), truncate, mixture
        self.buffer: deque[tuple[torch.Tensor, float, torch.Tensor]] = deque(maxlen=capacity)
        self.truncated = 0
        """Importance weights cut by truncation so far."""
        self.weights_seen = 0

    def __call__(
        self, theta: torch.Tensor, samples: torch.Tensor, rewards: torch.Tensor, baseline: float | None
    ) -> tuple[torch.Tensor, dict]:
        """Add ``samples (K, D)`` drawn at ``theta (D,)`` with ``rewards (K,)``; return (loss, record)."""
        mean = theta.detach().double().cpu().clone()  # one behaviour mean shared by the K samples
        for p, r in zip(samples.detach().double().cpu(), rewards.detach().double().cpu()):
            self.buffer.append((p, float(r), mean))
        a = torch.stack([s[0] for s in self.buffer]).to(theta.device)  # (N, D)
        r = torch.tensor([s[1] for s in self.buffer], dtype=torch.float64, device=theta.device)  # (N,)
        mu = torch.stack([s[2] for s in self.buffer]).to(theta.device)  # (N, D)
        mu_std = torch.full((len(r),), self.sigma, dtype=torch.float64, device=theta.device)
        m = theta.double()  # differentiable; float64 keeps log-densities of ~10⁵ apart exact enough
        with torch.no_grad():
            log_mu = behaviour_log_prob(a, mu, mu_std, mixture=self.mixture)
            w, cut = importance_weights(isotropic_log_prob(a, m.detach(), self.sigma) - log_mu, self.truncate)
        self.truncated += int(cut.sum())
        self.weights_seen += len(w)
        b = 0.0 if baseline is None else float(baseline)
        loss = importance_weighted_pg_loss(
            m, a, r, mu, mu_std, self.sigma, baseline=b, truncate=self.truncate, mixture=self.mixture
        )
        return loss.to(theta.dtype), {"ess": float(1.0 / (w**2).sum()), "buffer": len(r), "truncated": int(cut.sum())}


__all__ = [
    "MAX_BUFFER_BYTES",
    "ReplayRLTerm",
    "behaviour_log_prob",
    "importance_weighted_pg_loss",
    "importance_weights",
    "isotropic_log_prob",
]
