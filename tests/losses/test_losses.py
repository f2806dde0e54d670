"""crlprompt.losses: exact REINFORCE gradients (Eq. 5, with P' detached), the variance-reduced
estimators, InfoNCE (Eq. 3) and cross-entropy (Eq. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from crlprompt.losses import (
    ESTIMATORS,
    centered_ranks,
    cross_entropy_loss,
    estimator_loss,
    gaussian_log_prob,
    info_nce_loss,
    reinforce_loss,
    reinforce_population_loss,
    sample_actions,
    shape_rewards,
)
from crlprompt.errors import ConfigError

D = 7


def grad_of(loss_fn, mean: torch.Tensor) -> torch.Tensor:
    mean = mean.clone().requires_grad_(True)
    loss = loss_fn(mean)
    assert loss.ndim == 0
    loss.backward()
    return mean.grad


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# ----------------------------------------------------------------------------- REINFORCE, Eq. 5
def test_gaussian_log_prob_matches_torch_normal(gen):
    mean, sample = torch.randn(D, generator=gen, dtype=torch.float64), torch.randn(3, D, generator=gen, dtype=torch.float64)
    want = torch.distributions.Normal(mean, 0.3).log_prob(sample).sum(-1)
    assert_close(gaussian_log_prob(sample, mean, 0.3), want)


@pytest.mark.parametrize("reward,sigma", [(0.75, 0.1), (1.0, 1.0), (-0.4, 2.5), (0.0, 0.5)])
def test_reinforce_gradient_is_exact(reward, sigma, gen):
    mean = torch.randn(D, generator=gen, dtype=torch.float64)
    sample = mean + sigma * torch.randn(D, generator=gen, dtype=torch.float64)
    grad = grad_of(lambda m: reinforce_loss(m, sample, reward, sigma), mean)
    assert_close(grad, -reward * (sample - mean) / sigma**2, rtol=1e-12, atol=1e-12)
    # the value is -r log N(P'; P, σ²I)
    want = -reward * torch.distributions.Normal(mean, sigma).log_prob(sample).sum()
    assert_close(reinforce_loss(mean, sample, reward, sigma), want)


def test_reinforce_detaches_a_sample_built_from_the_mean(gen):
    """P' = P + σε built *without* detach: the published bug made this gradient identically 0."""
    sigma, reward = 0.2, 0.6
    mean = torch.randn(D, generator=gen, dtype=torch.float64).requires_grad_(True)
    eps = torch.randn(D, generator=gen, dtype=torch.float64)
    sample = mean + sigma * eps  # still attached to the graph of `mean`
    assert sample.requires_grad
    reinforce_loss(mean, sample, reward, sigma).backward()
    assert mean.grad.abs().min() > 0
    assert_close(mean.grad, -reward * eps / sigma, rtol=1e-12, atol=1e-12)
    # what it would have been without the detach: zero (documents why the detach matters)
    m2 = mean.detach().clone().requires_grad_(True)
    (-reward * gaussian_log_prob(m2 + sigma * eps, m2, sigma)).backward()
    assert_close(m2.grad, torch.zeros_like(m2.grad))


def test_reinforce_reward_tensor_is_a_constant(gen):
    mean = torch.randn(D, generator=gen, dtype=torch.float64)
    sample = torch.randn(D, generator=gen, dtype=torch.float64)
    reward = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    grad = grad_of(lambda m: reinforce_loss(m, sample, reward, 0.5), mean)
    assert_close(grad, -0.5 * (sample - mean) / 0.25)
    assert reward.grad is None


@pytest.mark.parametrize("sigma", [0.0, -0.1, float("nan")])
def test_sigma_must_be_positive(sigma):
    m = torch.zeros(D)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        reinforce_loss(m, m, 1.0, sigma)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        reinforce_population_loss(m, m[None], torch.ones(1), sigma)


# ----------------------------------------------------------------------------- estimators
def test_population_single_k1_equals_reinforce_loss(gen):
    mean = torch.randn(D, generator=gen, dtype=torch.float64)
    sample = mean + 0.3 * torch.randn(D, generator=gen, dtype=torch.float64)
    r = torch.tensor([0.75])  # exact in float32 (shape_rewards computes weights in float32)
    pop = reinforce_population_loss(mean, sample[None], r, 0.3, "single")
    assert_close(pop, reinforce_loss(mean, sample, 0.75, 0.3))
    g_pop = grad_of(lambda m: reinforce_population_loss(m, sample[None], r, 0.3, "single"), mean)
    g_one = grad_of(lambda m: reinforce_loss(m, sample, 0.75, 0.3), mean)
    assert_close(g_pop, g_one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_population_gradient_formula(estimator, gen):
    """∇ = -(1/K) Σ_k w_k (P'_k - P) / σ² with w = shape_rewards(r)."""
    k, sigma = 6, 0.4
    mean = torch.randn(D, generator=gen, dtype=torch.float64)
    eps = torch.randn(k, D, generator=gen, dtype=torch.float64)
    if estimator == "antithetic":
        eps[1::2] = -eps[0::2]
    samples = mean + sigma * eps
    rewards = torch.rand(k, generator=gen)
    w = shape_rewards(rewards, estimator).double()
    grad = grad_of(lambda m: reinforce_population_loss(m, samples, rewards, sigma, estimator), mean)
    assert_close(grad, -(w[:, None] * (samples - mean)).mean(0) / sigma**2, rtol=1e-6, atol=1e-9)


def test_baseline_weights_sum_to_zero(gen):
    r = torch.rand(9, generator=gen)
    w = shape_rewards(r, "baseline")
    assert_close(w.sum(), torch.tensor(0.0), atol=1e-6, rtol=0)
    assert_close(w, r - r.mean())
    assert_close(shape_rewards(r, "baseline", baseline=0.25), r - 0.25)
    # a constant reward carries no signal: zero gradient with a mean baseline
    mean = torch.zeros(D, dtype=torch.float64)
    samples = torch.randn(4, D, generator=gen, dtype=torch.float64)
    g = grad_of(lambda m: reinforce_population_loss(m, samples, torch.full((4,), 0.7), 1.0, "baseline"), mean)
    assert_close(g, torch.zeros(D, dtype=torch.float64))


def test_antithetic_needs_even_k_and_pairs_weights():
    with pytest.raises(ValueError, match="even number"):
        shape_rewards(torch.rand(3), "antithetic")
    with pytest.raises(ValueError, match="even number"):
        reinforce_population_loss(torch.zeros(D), torch.zeros(3, D), torch.rand(3), 1.0, "antithetic")
    w = shape_rewards(torch.tensor([1.0, 0.2, 0.5, 0.9]), "antithetic")
    assert_close(w, torch.tensor([0.4, -0.4, -0.2, 0.2]))


def test_unknown_estimator_rejected():
    with pytest.raises(ValueError, match="unknown estimator 'nope'"):
        shape_rewards(torch.rand(2), "nope")


def test_centered_ranks(gen):
    x = torch.randn(11, generator=gen)
    r = centered_ranks(x)
    assert r.shape == x.shape
    assert r.min() == -0.5 and r.max() == 0.5
    assert ((r >= -0.5) & (r <= 0.5)).all()
    assert torch.equal(r.argsort(), x.argsort())  # order-preserving
    assert_close(r.sum(), torch.tensor(0.0), atol=1e-6, rtol=0)
    # scale-free: any increasing transform gives the same ranks
    assert torch.equal(centered_ranks(torch.exp(3 * x) + 5), r)
    assert torch.equal(centered_ranks(torch.tensor([4.0])), torch.zeros(1))
    assert_close(centered_ranks(torch.tensor([3.0, 1.0, 2.0])), torch.tensor([0.5, -0.5, 0.0]))
    assert torch.equal(shape_rewards(x, "ranks"), r)


def test_shape_rewards_keeps_float64():
    r = torch.tensor([0.1, 0.7, 0.3, 0.3], dtype=torch.float64)
    for estimator in ESTIMATORS:
        assert shape_rewards(r, estimator).dtype == (torch.float32 if estimator == "ranks" else torch.float64)
    assert shape_rewards(r.float(), "baseline").dtype == torch.float32
    assert_close(shape_rewards(r, "antithetic"), torch.tensor([-0.3, 0.3, 0.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- sampling and the estimator switch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sample_actions_draws_standard_normals_and_antithetic_pairs(dtype):
    k, d = 6, 5
    a = sample_actions(np.random.default_rng(4), k, d, "single", dtype=dtype)
    assert a.shape == (k, d) and a.dtype == dtype
    np.testing.assert_array_equal(a, np.random.default_rng(4).standard_normal((k, d), dtype=dtype))
    b = sample_actions(np.random.default_rng(4), k, d, "antithetic", dtype=dtype)
    assert b.shape == (k, d) and b.dtype == dtype
    np.testing.assert_array_equal(b[0::2], a[: k // 2])  # ε_j: the first K/2 draws of the same generator
    np.testing.assert_array_equal(b[1::2], -a[: k // 2])  # followed each by -ε_j
    with pytest.raises(ConfigError, match="even number"):
        sample_actions(np.random.default_rng(4), 3, d, "antithetic")


def test_estimator_loss_single_sample_is_eq5(gen):
    mean = torch.randn(D, generator=gen)
    sample = mean + 0.3 * torch.randn(1, D, generator=gen)
    r = torch.tensor([0.75])
    assert_close(estimator_loss(mean, sample, r, 0.3, "single"), reinforce_loss(mean, sample[0], 0.75, 0.3))


def test_estimator_loss_single_sample_baseline_is_the_running_mean(gen):
    """K = 1: the batch mean would cancel the one reward; the running baseline (0 at first) is used."""
    mean = torch.randn(D, generator=gen, dtype=torch.float64)
    sample = mean + 0.3 * torch.randn(1, D, generator=gen, dtype=torch.float64)
    r = torch.tensor([0.75])
    g_first = grad_of(lambda m: estimator_loss(m, sample, r, 0.3, "baseline", None), mean)
    assert_close(g_first, grad_of(lambda m: reinforce_loss(m, sample[0], 0.75, 0.3), mean))
    g_later = grad_of(lambda m: estimator_loss(m, sample, r, 0.3, "baseline", 0.5), mean)
    assert_close(g_later, -0.25 * (sample[0] - mean) / 0.3**2)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimator_loss_with_k_samples_is_the_population_loss(estimator, gen):
    mean = torch.randn(D, generator=gen)
    samples = mean + 0.4 * torch.randn(4, D, generator=gen)
    r = torch.rand(4, generator=gen)
    want = reinforce_population_loss(mean, samples, r, 0.4, estimator)
    assert torch.equal(estimator_loss(mean, samples, r, 0.4, estimator, running_baseline=0.9), want)


# ----------------------------------------------------------------------------- InfoNCE, Eq. 3
def orthonormal(b: int, h: int, offset: int = 0) -> torch.Tensor:
    return torch.eye(h)[offset : offset + b]


def test_info_nce_low_for_matching_positives_and_orthogonal_negatives():
    b, k, h, tau = 4, 2, 16, 0.1
    anchor = orthonormal(b, h)
    negatives = torch.stack([orthonormal(b, h, 4), orthonormal(b, h, 8)])  # (k, B, H), ⟂ every anchor
    loss = info_nce_loss(anchor, anchor.clone(), negatives, tau=tau)
    # candidates: the positive at cos 1, B-1 in-batch + k noised negatives at cos 0
    want = math.log(1 + (b - 1 + k) * math.exp(-1 / tau))
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(want, rel=0, abs=1e-6)  # float32
    assert loss.item() < 1e-3

    # worse cases score higher: negatives that look like the anchor, or random positives
    assert info_nce_loss(anchor, anchor, torch.stack([anchor, anchor]), tau=tau) > loss + 1
    rnd = torch.randn(b, h, generator=torch.Generator().manual_seed(1))
    assert info_nce_loss(anchor, rnd, negatives, tau=tau) > loss + 1


def test_info_nce_exact_value_without_in_batch_negatives():
    tau = 0.5
    anchor = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # cos = 1/√2 and 1
    negatives = torch.tensor([[[-1.0, 0.0], [1.0, 0.0]]])  # (k=1, B=2, H): cos = -1 and 0
    logits = torch.tensor([[2**-0.5, -1.0], [1.0, 0.0]]) / tau
    want = F.cross_entropy(logits, torch.zeros(2, dtype=torch.long))
    assert_close(info_nce_loss(anchor, positive, negatives, tau=tau, in_batch=False), want)
    # cosine similarity: rescaling the features changes nothing
    assert_close(info_nce_loss(3 * anchor, 0.1 * positive, 7 * negatives, tau=tau, in_batch=False), want)


def test_info_nce_shapes_and_gradients(gen):
    b, k, h = 5, 3, 8
    anchor = torch.randn(b, h, generator=gen, requires_grad=True)
    positive = torch.randn(b, h, generator=gen, requires_grad=True)
    negatives = torch.randn(k, b, h, generator=gen, requires_grad=True)
    loss = info_nce_loss(anchor, positive, negatives)
    loss.backward()
    assert loss.shape == () and torch.isfinite(loss)
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (anchor, positive, negatives))
    # no explicit negatives: in-batch only; no negatives at all: a single candidate, loss 0
    assert torch.isfinite(info_nce_loss(anchor, positive))
    assert info_nce_loss(anchor, positive, None, in_batch=False).item() == pytest.approx(0.0, abs=1e-6)
    doc = info_nce_loss.__doc__
    assert "(B, H)" in doc and "(k, B, H)" in doc


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_info_nce_tau_must_be_positive(tau):
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="tau must be > 0"):
        info_nce_loss(x, x, tau=tau)


# ----------------------------------------------------------------------------- cross-entropy, Eq. 2
def test_cross_entropy_matches_torch(gen):
    logits = torch.randn(6, 4, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 3, 1, 1, 2, 0])
    loss = cross_entropy_loss(logits, labels)
    assert_close(loss, F.cross_entropy(logits, labels))
    assert loss.dtype == torch.float32
    assert_close(cross_entropy_loss(logits.to(torch.bfloat16), labels), F.cross_entropy(logits.to(torch.bfloat16).float(), labels))
    loss.backward()
    assert logits.grad is not None


@pytest.mark.parametrize(
    "logits_shape,labels_shape", [((6, 4), (5,)), ((6, 4), (6, 1)), ((2, 6, 4), (6,)), ((6,), (6,))]
)
def test_cross_entropy_rejects_mismatched_shapes(logits_shape, labels_shape):
    with pytest.raises(ValueError, match=r"expected logits \(B, C\) and labels \(B,\)"):
        cross_entropy_loss(torch.zeros(logits_shape), torch.zeros(labels_shape, dtype=torch.long))


# ----------------------------------------------------------------------------- contrastive term as the paper reads
from crlprompt.losses.supervised import contrastive_loss, contrastive_prompts  # noqa: E402


def _per_example(anchor, positive, negatives, labels, **kw):
    return contrastive_loss(anchor, positive, negatives, labels, reduction="none", **kw)


def test_contrastive_same_class_examples_are_never_negatives(gen):
    b, h = 6, 5
    anchor, positive = torch.randn(b, h, generator=gen), torch.randn(b, h, generator=gen)
    negatives = torch.randn(2, b, h, generator=gen)
    labels = torch.tensor([0, 0, 1, 1, 2, 0])
    base = _per_example(anchor, positive, negatives, labels)
    moved = positive.clone()
    moved[1] = anchor[0] * 5  # x_1 (class 0) made maximally similar to anchor 0
    again = _per_example(anchor, moved, negatives, labels)
    assert_close(again[0], base[0])  # not a negative of anchor 0: its loss does not change
    moved = positive.clone()
    moved[2] = anchor[0] * 5  # x_2 (class 1) is a negative of anchor 0: its loss rises
    assert _per_example(anchor, moved, negatives, labels)[0] > base[0] + 0.5
    # without labels (the SimCSE form) the same-class example is a negative too
    moved = positive.clone()
    moved[1] = anchor[0] * 5
    assert _per_example(anchor, moved, negatives, None)[0] > _per_example(anchor, positive, negatives, None)[0] + 0.5


def test_contrastive_exact_value_with_a_same_class_example_left_out():
    tau = 0.5
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    positive = torch.tensor([[1.0, 0.2], [0.3, 1.0], [-1.0, 1.0]])
    negatives = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, -1.0]]])  # (k=1, B, H)
    labels = torch.tensor([0, 0, 1])
    s = lambda u, v: F.cosine_similarity(u, v, dim=0) / tau  # noqa: E731
    # anchor 0: candidates = its positive, example 2 (other class), its negative; example 1 left out
    cand = torch.stack([s(anchor[0], positive[0]), s(anchor[0], positive[2]), s(anchor[0], negatives[0, 0])])
    want0 = -(cand[0] - torch.logsumexp(cand, 0))
    got = _per_example(anchor, positive, negatives, labels, tau=tau)
    assert_close(got[0], want0)
    # supervised: example 1 is a second positive of anchor 0, and every candidate is in the denominator
    cand = torch.stack([s(anchor[0], positive[0]), s(anchor[0], positive[1]), s(anchor[0], positive[2]),
                        s(anchor[0], negatives[0, 0])])
    want_sup = -((cand[0] + cand[1]) / 2 - torch.logsumexp(cand, 0))
    assert_close(_per_example(anchor, positive, negatives, labels, tau=tau, supervised=True)[0], want_sup)
    assert_close(contrastive_loss(anchor, positive, negatives, labels, tau=tau),
                 _per_example(anchor, positive, negatives, labels, tau=tau).mean())


def test_contrastive_supervised_pulls_same_class_together(gen):
    b, h = 4, 8
    labels = torch.tensor([0, 0, 1, 1])
    anchor = torch.randn(b, h, generator=gen)
    positive = anchor.clone()
    positive[1] = -anchor[0]  # a same-class example pointing away from anchor 0
    close = positive.clone()
    close[1] = anchor[0]
    loss = lambda p: _per_example(anchor, p, None, labels, supervised=True)[0]  # noqa: E731
    assert loss(close) < loss(positive) - 1  # SupCon rewards a same-class cluster
    plain = lambda p: _per_example(anchor, p, None, labels)[0]  # noqa: E731
    assert_close(plain(close), plain(positive))  # the paper form leaves same-class examples alone


def test_contrastive_validates():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="tau"):
        contrastive_loss(x, x, tau=0)
    with pytest.raises(ValueError, match="supervised=True needs labels"):
        contrastive_loss(x, x, supervised=True)
    with pytest.raises(ValueError, match="negatives"):
        contrastive_loss(x, x, torch.randn(3, 4))


@pytest.mark.parametrize("shape", [(4, 3, 2, 2, 5), (4, 6)])
def test_contrastive_prompts_clean_positive_and_corrupted_negatives(shape):
    torch.manual_seed(0)
    d = math.prod(shape)
    theta = torch.randn(d, requires_grad=True)
    rows = contrastive_prompts(theta, shape, dropout=0.1, num_negatives=3)
    assert rows.shape == (5, d)
    assert torch.equal(rows[1], theta.detach())  # the positive is the clean prompt
    assert not torch.equal(rows[0], theta.detach()) and ((rows[0] == 0) | torch.isclose(rows[0], theta / 0.9)).all()
    view = theta.detach().view(*shape)
    for neg in rows[2:]:
        nv = neg.view(*shape)
        if len(shape) == 5:  # deep: keys stay, every token's value comes from another token
            assert torch.equal(nv[:, :, 0], view[:, :, 0])
            for t in range(shape[0]):
                src = [u for u in range(shape[0]) if torch.equal(nv[t, :, 1], view[u, :, 1])]
                assert src and t not in src
        else:  # shallow: the same tokens in another order, none in its place
            assert sorted(map(tuple, nv.tolist())) == sorted(map(tuple, view.tolist()))
            assert not (nv == view).all(1).any()
    rows.sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0
    big = torch.randn(40, 50)
    drop = contrastive_prompts(big.reshape(-1), (40, 50), dropout=0.1, negative="dropout", negative_dropout=0.5)
    assert 0.4 < (drop[2] == 0).float().mean() < 0.6 and 0.05 < (drop[0] == 0).float().mean() < 0.15
    with pytest.raises(ValueError, match=">= 2 virtual tokens"):
        contrastive_prompts(torch.randn(6), (1, 6), dropout=0.1)


def test_permuting_whole_prefix_tokens_changes_nothing_which_is_why_values_are_re_paired(make_batch):
    """Attention over a deep prefix is order-free: a token permutation of (key, value) pairs gives
    the same features, so it cannot be a negative; re-pairing keys with other values does change them."""
    from crlprompt.models import load_model
    from crlprompt.prompts import PromptedModel, PromptLayout, SoftPrompt

    lm = load_model("tiny-bert")
    layout = PromptLayout.for_model(lm, "deep", 4)
    pm = PromptedModel(lm, SoftPrompt(layout, lm, seed=3, init="random"), "linear", 2).eval()
    ids, mask, _ = make_batch(lm)
    theta = pm.prompt.theta.detach()
    whole = theta.view(*layout.shape)[torch.tensor([2, 0, 3, 1])].reshape(1, -1)
    torch.manual_seed(1)
    repaired = contrastive_prompts(theta, layout.shape, dropout=0.0)[2:]
    with torch.no_grad():
        f, fw, fr = (pm.features(ids, mask, t) for t in (theta[None], whole, repaired))
    assert_close(fw, f, rtol=1e-5, atol=1e-5)
    assert (fr - f).abs().max() > 1e-3
