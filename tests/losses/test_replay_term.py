"""ReplayRLTerm, the replay estimator as Algorithm 1's RL term: its buffer, its weights and what its
loss's gradient is, checked against the REINFORCE gradient written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crlprompt.errors import ConfigError
from crlprompt.losses.offpolicy import MAX_BUFFER_BYTES, ReplayRLTerm

SIGMA = 0.5


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
