"""The supervised losses' exact values with corrupted-prompt negatives, their defaults and their
one-line errors (worked out by hand on orthogonal unit features, τ = 1 unless said)."""

from __future__ import annotations

import math

import pytest
import torch

from crlprompt.losses.supervised import contrastive_loss, contrastive_prompts, info_nce_loss

E = torch.eye(2)  # two unit features, orthogonal
NEG = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # (k = 1, B = 2, H): orthogonal to each anchor
L3 = math.log(math.e + 2)  # log(e^1 + e^0 + e^0): the positive, one other example, one negative


@pytest.mark.parametrize(
    ("labels", "supervised", "want"),
    [
        ([0, 1], False, L3 - 1),  # the other example is of another class: a negative
        ([0, 0], False, math.log(math.e + 1) - 1),  # of the same class: left out of the denominator
        ([0, 0], True, L3 - 0.5),  # SupCon: a second positive (similarity 0), averaged with the first
        (None, False, L3 - 1),  # no labels: every other example is a negative
    ],
)
def test_contrastive_loss_exact_with_a_corrupted_prompt_negative(labels, supervised, want):
    y = None if labels is None else torch.tensor(labels)
    got = contrastive_loss(E, E, NEG, y, tau=1.0, supervised=supervised, reduction="none")
    torch.testing.assert_close(got, torch.full((2,), want))
    assert contrastive_loss(E, E, NEG, y, tau=1.0, supervised=supervised).item() == pytest.approx(want)


def test_contrastive_loss_defaults_and_empty_negatives():
    x = torch.tensor([[1.0, 0.2], [0.1, 1.0], [0.5, 0.5]])
    y = torch.tensor([0, 1, 1])
    default = contrastive_loss(x, x.flip(1), None, y)
    assert default.item() == pytest.approx(contrastive_loss(x, x.flip(1), None, y, tau=0.1).item())  # τ = 0.1
    assert default.item() != pytest.approx(contrastive_loss(x, x.flip(1), None, y, tau=0.2).item())
    assert default.item() == pytest.approx(contrastive_loss(x, x.flip(1), None, y, reduction="none").mean().item())
    empty = torch.zeros(0, 3, 2)
    assert contrastive_loss(x, x.flip(1), empty, y).item() == pytest.approx(default.item())
    assert not contrastive_loss(x, x.flip(1), None, y, supervised=True).item() == pytest.approx(default.item())


def test_info_nce_defaults_are_tau_0_1_in_batch():
    x = torch.tensor([[1.0, 0.2], [0.1, 1.0], [0.5, 0.4]])
    neg = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, -1.0]]])
    default = info_nce_loss(x, x.flip(1), neg)
    assert default.item() == pytest.approx(info_nce_loss(x, x.flip(1), neg, tau=0.1, in_batch=True).item())
    assert default.item() != pytest.approx(info_nce_loss(x, x.flip(1), neg, tau=0.1, in_batch=False).item())
    assert default.item() != pytest.approx(info_nce_loss(x, x.flip(1), neg, tau=0.2).item())
    # in-batch with orthogonal features, τ = 1: log(e + 1 + 1) - 1 with one negative each, as above
    assert info_nce_loss(E, E, NEG, tau=1.0).item() == pytest.approx(L3 - 1)
    assert info_nce_loss(E, E, torch.zeros(0, 2, 2), tau=1.0).item() == pytest.approx(math.log(math.e + 1) - 1)


def test_the_losses_name_what_is_wrong():
    x = torch.randn(3, 4)
    cases = [
        (lambda: contrastive_loss(x, x, tau=0.0), r"tau must be > 0, got 0\.0"),
        (lambda: contrastive_loss(x, x[:2]), r"expected anchor and positive \(B, H\), got \(3, 4\) and \(2, 4\)"),
        (lambda: contrastive_loss(x[0], x[0]), r"expected anchor and positive \(B, H\), got \(4,\) and \(4,\)"),
        (lambda: contrastive_loss(x, x, None, torch.tensor([0, 1])), r"expected labels \(B,\), got \(2,\)"),
        (lambda: contrastive_loss(x, x, torch.randn(3, 4)), r"expected negatives \(k, B, H\), got \(3, 4\)"),
        (lambda: contrastive_loss(x, x, torch.randn(1, 2, 4)), r"expected negatives \(k, B, H\), got \(1, 2, 4\)"),
        (lambda: contrastive_loss(x, x, reduction="sum"), r"reduction must be 'mean' or 'none', got 'sum'"),
        (lambda: info_nce_loss(x, x, tau=-1.0), r"tau must be > 0, got -1\.0"),
        (lambda: contrastive_prompts(torch.randn(8), (2, 4), dropout=0.1, negative="noise"),
         r"negative must be one of \('permute', 'dropout'\), got 'noise'"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_contrastive_prompts_defaults_one_permuted_negative():
    torch.manual_seed(0)
    theta = torch.arange(8.0)
    rows = contrastive_prompts(theta, (4, 2), dropout=0.0)
    assert rows.shape == (3, 8)  # anchor, clean positive, one negative
    assert torch.equal(rows[0], theta) and torch.equal(rows[1], theta)  # no dropout asked: the anchor is θ
    neg = rows[2].view(4, 2)
    assert sorted(map(tuple, neg.tolist())) == sorted(map(tuple, theta.view(4, 2).tolist()))  # permuted tokens
    assert not (neg == theta.view(4, 2)).all(1).any()
    # two tokens: the one derangement swaps them
    assert torch.equal(contrastive_prompts(torch.arange(4.0), (2, 2), dropout=0.0)[2], torch.tensor([2.0, 3.0, 0.0, 1.0]))
    # a heavier dropout by default for the dropout negatives (0.5)
    torch.manual_seed(1)
    drop = contrastive_prompts(torch.ones(4000), (40, 100), dropout=0.0, negative="dropout", num_negatives=2)
    assert drop.shape == (4, 4000) and all(0.45 < float((r == 0).float().mean()) < 0.55 for r in drop[2:])
    assert set(drop[2].unique().tolist()) == {0.0, 2.0}  # kept entries scaled by 1 / (1 - 0.5)
