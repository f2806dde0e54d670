"""ReplayRLTerm, the replay estimator as Algorithm 1's RL term: its buffer, its weights and what its
loss's gradient is, checked against the REINFORCE gradient written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crlprompt.errors import ConfigError
from crlprompt.losses.offpolicy import MAX_BUFFER_BYTES, ReplayRLTerm

SIGMA = 0.3  # not a float32: a float32 copy of it would show


def draw(theta: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    samples = theta.detach() + SIGMA * torch.randn(k, theta.numel(), generator=g)
    return samples, torch.rand(k, generator=g)


def reinforce_grad(theta, samples, rewards, b):
    """-(1/N) Σ (r_i − b)(P'_i − θ)/σ²: the gradient of the on-policy loss, from its formula."""
    t, p, r = theta.detach().double().numpy(), samples.double().numpy(), rewards.double().numpy()
    return -((r - b)[:, None] * (p - t)).mean(0) / SIGMA**2


def test_one_batch_at_the_current_prompt_is_the_on_policy_estimator():
    theta = torch.tensor([0.2, -0.1, 0.4], requires_grad=True)
    samples, rewards = draw(theta, 4, 0)
    term = ReplayRLTerm(16, 3, SIGMA)
    assert (term.mixture, term.truncate, term.truncated, term.weights_seen) == (True, None, 0, 0)
    loss, rec = term(theta, samples, rewards, baseline=0.3)
    assert loss.dtype == torch.float32 and rec == {"ess": pytest.approx(4.0), "buffer": 4, "truncated": 0}
    (g,) = torch.autograd.grad(loss, theta)
    np.testing.assert_allclose(g.numpy(), reinforce_grad(theta, samples, rewards, 0.3), rtol=1e-5, atol=1e-6)
    assert term.weights_seen == 4


def test_no_baseline_is_zero_and_a_baseline_changes_the_gradient():
    theta = torch.tensor([0.0, 1.0], requires_grad=True)
    samples, rewards = draw(theta, 3, 1)
    g_none = torch.autograd.grad(ReplayRLTerm(8, 2, SIGMA)(theta, samples, rewards, None)[0], theta)[0]
    g_zero = torch.autograd.grad(ReplayRLTerm(8, 2, SIGMA)(theta, samples, rewards, 0.0)[0], theta)[0]
    g_one = torch.autograd.grad(ReplayRLTerm(8, 2, SIGMA)(theta, samples, rewards, 1.0)[0], theta)[0]
    torch.testing.assert_close(g_none, g_zero)
    np.testing.assert_allclose(g_one.numpy(), reinforce_grad(theta, samples, rewards, 1.0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(g_one, g_zero)


def test_the_buffer_keeps_the_newest_capacity_samples():
    theta = torch.zeros(2, requires_grad=True)
    term = ReplayRLTerm(5, 2, SIGMA)
    first, r1 = draw(theta, 3, 2)
    second, r2 = draw(theta, 3, 3)
    term(theta, first, r1, None)
    loss, rec = term(theta, second, r2, None)
    assert rec["buffer"] == 5 and len(term.buffer) == 5 and term.weights_seen == 3 + 5
    kept = torch.cat([first[1:], second])  # the oldest sample went
    assert torch.equal(torch.stack([s[0] for s in term.buffer]).float(), kept)
    # all drawn at the same prompt: equal weights, the on-policy estimator over the five
    assert rec["ess"] == pytest.approx(5.0)
    (g,) = torch.autograd.grad(loss, theta)
    np.testing.assert_allclose(g.numpy(), reinforce_grad(theta, kept, torch.cat([r1[1:], r2]), 0.0),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_samples_drawn_far_from_the_prompt_weigh_nothing():
    far = torch.full((3,), 10.0)
    theta = torch.zeros(3, requires_grad=True)
    term = ReplayRLTerm(16, 3, SIGMA)
    old, r_old = draw(far, 4, 4)
    term(far.clone().requires_grad_(), old, r_old, None)
    new, r_new = draw(theta, 4, 5)
    loss, rec = term(theta, new, r_new, None)
    assert rec["buffer"] == 8 and rec["ess"] == pytest.approx(4.0, rel=1e-3)  # only the newest count
    (g,) = torch.autograd.grad(loss, theta)
    # the mixture's density halves each new sample's weight against its own policy's: the gradient of the
    # four new samples is the on-policy one (self-normalised weights of 1/4 each)
    np.testing.assert_allclose(g.numpy(), reinforce_grad(theta, new, r_new, 0.0), rtol=1e-3, atol=1e-5)


def test_capacity_and_memory_are_checked():
    ReplayRLTerm(1, 4, SIGMA)  # the smallest buffer
    for bad in (0, -1, 1.5, "4", None):
        with pytest.raises(ConfigError, match=f"rl_buffer must be an int >= 1, got {bad!r}"):
            ReplayRLTerm(bad, 4, SIGMA)
    at_limit = MAX_BUFFER_BYTES // 16  # float64 samples and behaviour means: 16 bytes per coordinate
    ReplayRLTerm(1, at_limit, SIGMA)
    with pytest.raises(ConfigError, match=r"needs 1\.0 GiB \(more than 1\); lower rl_buffer"):
        ReplayRLTerm(2, at_limit // 2 + 1, SIGMA)
    with pytest.raises(ConfigError, match="a replay buffer of 4 prompts of dimension"):
        ReplayRLTerm(4, at_limit, SIGMA)


def offpolicy_grad(theta, batches, b, *, mixture=True, truncate=None):
    """The replay gradient from its definition, in float64 NumPy: weights ρ_i = π(P'_i)/μ(P'_i) with μ
    the buffer's equal-count mixture of the batches' policies (or each sample's own), cut at
    ``truncate`` × mean ρ (√N by default) and normalised; gradient −Σ w_i (r_i − b)(P'_i − θ)/σ²."""
    t = theta.detach().double().numpy()
    p = np.concatenate([s.double().numpy() for _, s, _ in batches])
    r = np.concatenate([rw.double().numpy() for _, _, rw in batches])
    means = [m.detach().double().numpy() for m, _, _ in batches]
    own = np.concatenate([np.repeat(m[None], len(s), 0) for m, (_, s, _) in zip(means, batches)])

    def log_n(x, mu):  # the constant cancels in every ratio
        return -((x - mu) ** 2).sum(-1) / (2 * SIGMA**2)

    log_mu = (np.logaddexp.reduce(np.stack([log_n(p, m) for m in means]), 0) - np.log(len(means)) if mixture
              else log_n(p, own))  # fmt: skip
    log_rho = log_n(p, t) - log_mu
    c = np.sqrt(len(p)) if truncate is None else truncate
    log_mean = np.logaddexp.reduce(log_rho) - np.log(len(p))
    cut = log_rho > log_mean + np.log(c)
    w = np.exp(np.minimum(log_rho, log_mean + np.log(c)))
    w /= w.sum()
    return -((w * (r - b))[:, None] * (p - t)).sum(0) / SIGMA**2, int(cut.sum())


@pytest.mark.parametrize("mixture", [True, False])
def test_replayed_batches_from_other_prompts_are_weighted_as_defined(mixture):
    old = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    theta = torch.tensor([0.5, 0.1, -0.1], dtype=torch.float64, requires_grad=True)  # a float64 gradient
    first, r1 = (x.double() for x in draw(old, 3, 6))
    second, r2 = (x.double() for x in draw(theta, 3, 7))
    r1 = r1 + 1e-9 * torch.arange(3)  # rewards a float32 would round
    term = ReplayRLTerm(16, 3, SIGMA, mixture=mixture)
    term(old.clone().requires_grad_(), first, r1, None)
    loss, rec = term(theta, second, r2, 0.2)
    (g,) = torch.autograd.grad(loss, theta)
    want, _ = offpolicy_grad(theta, [(old, first, r1), (theta, second, r2)], 0.2, mixture=mixture)
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-11)
    other, _ = offpolicy_grad(theta, [(old, first, r1), (theta, second, r2)], 0.2, mixture=not mixture)
    assert np.abs(want - other).max() > 1e-3  # the two behaviour densities give different gradients here
    assert 1 < rec["ess"] < 6 and rec["buffer"] == 6


def test_truncated_weights_are_cut_at_the_given_multiple_and_counted_over_calls():
    term = ReplayRLTerm(32, 2, SIGMA, truncate=1.1, mixture=False)
    batches, total = [], 0
    for i, centre in enumerate(([1.0, 0.0], [0.5, 0.2], [0.0, 0.0])):  # the prompt moves between calls
        theta = torch.tensor(centre, requires_grad=True)
        s, r = draw(theta, 4, 10 + i)
        batches.append((theta, s, r))
        loss, rec = term(theta, s, r, None)
        want, cut = offpolicy_grad(theta, batches, 0.0, mixture=False, truncate=1.1)
        assert rec["truncated"] == cut
        total += cut
    assert total > rec["truncated"] > 0 and term.truncated == total  # summed over the calls, not the last one's
    assert term.weights_seen == 4 + 8 + 12
    (g,) = torch.autograd.grad(loss, theta)
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-5, atol=1e-7)
