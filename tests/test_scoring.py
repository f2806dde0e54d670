"""crlprompt.scoring: the dense fitness options (CE, BBT's hinge, margin, StablePrompt's softmax
difference) on hand-built logits, and that ``score_population`` scores every prompt on the same
rows with each of them."""

from __future__ import annotations

import math

import pytest
import torch

from crlprompt.scoring import HINGE_MARGIN, REWARDS, PopulationScores, example_scores, score_population

# K = 2 prompts on b = 2 rows of a 3-class task. Logits are log-probabilities, so the softmax is
# exact: prompt 0 is right on row 0 (p = .5, .25, .25) and wrong on row 1 (p = .1, .6, .3);
# prompt 1 is right on both rows.
LN = math.log
LOGITS = torch.tensor(
    [
        [[LN(0.5), LN(0.25), LN(0.25)], [LN(0.1), LN(0.6), LN(0.3)]],
        [[LN(0.8), LN(0.1), LN(0.1)], [LN(0.2), LN(0.2), LN(0.6)]],
    ],
    dtype=torch.float64,
)
LABELS = torch.tensor([0, 2])


def hinge(true: float, others: list[float]) -> float:
    return sum(max(0.0, HINGE_MARGIN - LN(true) + LN(o)) for o in others)


# Per-row values worked out by hand from the probabilities above: [prompt][row].
EXPECTED = {
    "correct": [[1, 0], [1, 1]],
    "margin": [[LN(0.5 / 0.25), LN(0.3 / 0.6)], [LN(0.8 / 0.1), LN(0.6 / 0.2)]],
    "ce": [[-LN(0.5), -LN(0.3)], [-LN(0.8), -LN(0.6)]],
    "hinge": [[hinge(0.5, [0.25, 0.25]), hinge(0.3, [0.1, 0.6])], [hinge(0.8, [0.1, 0.1]), hinge(0.6, [0.2, 0.2])]],
    "softmax_diff": [[0.5 - 0.25, 0.3 - 0.6], [0.8 - 0.1, 0.6 - 0.2]],
}


def test_hinge_is_bbt_margin_2():
    assert HINGE_MARGIN == 2.0
    # prompt 0, row 1: true logit ln .3 trails ln .6 by ln 2 and leads ln .1 by ln 3.
    assert EXPECTED["hinge"][0][1] == pytest.approx((2 + LN(2)) + (2 - LN(3)))
    # prompt 1, row 0: leads both others by ln 8 > 2, so no hinge loss at all.
    assert EXPECTED["hinge"][1][0] == 0.0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_scores_exact(name):
    got = example_scores(LOGITS, LABELS)
    assert set(got) == set(EXPECTED) == set(PopulationScores.FIELDS)
    assert got[name].shape == (2, 2)
    torch.testing.assert_close(got[name], torch.tensor(EXPECTED[name], dtype=torch.float64), rtol=0, atol=1e-12)


def scores_of(logits: torch.Tensor, labels: torch.Tensor) -> PopulationScores:
    sums = {name: v.sum(1) for name, v in example_scores(logits, labels).items()}
    return PopulationScores(**sums, count=labels.numel())


@pytest.mark.parametrize(
    ("kind", "want"),
    [
        ("accuracy", [0.5, 1.0]),
        ("margin", [(LN(2) + LN(0.5)) / 2, (LN(8) + LN(3)) / 2]),
        ("ce", [(LN(0.5) + LN(0.3)) / 2, (LN(0.8) + LN(0.6)) / 2]),
        ("neg_ce", [(LN(0.5) + LN(0.3)) / 2, (LN(0.8) + LN(0.6)) / 2]),
        ("hinge", [-(2 * (2 - LN(2)) + (2 + LN(2)) + (2 - LN(3))) / 2, -(0.0 + 2 * (2 - LN(3))) / 2]),
        ("softmax_diff", [(0.25 - 0.3) / 2, (0.7 + 0.4) / 2]),
    ],
)
def test_rewards_are_means_with_higher_better(kind, want):
    r = scores_of(LOGITS, LABELS).reward(kind)
    torch.testing.assert_close(r, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-12)
    assert r[1] > r[0], "prompt 1 is right on both rows: every reward must rank it first"


def test_bounds_and_perfect_prompt():
    confident = torch.tensor([[[20.0, 0.0, 0.0], [0.0, 0.0, 20.0]]])  # (1, 2, 3), right by 20 logits
    s = scores_of(confident, LABELS)
    assert s.reward("accuracy").item() == 1.0
    assert s.reward("hinge").item() == 0.0  # past the margin: BBT's loss is exactly 0
    assert s.reward("softmax_diff").item() == pytest.approx(1.0, abs=1e-8)
    assert s.reward("ce").item() == pytest.approx(0.0, abs=1e-8)
    wrong = scores_of(confident, torch.tensor([1, 0]))
    assert wrong.reward("softmax_diff").item() == pytest.approx(-1.0, abs=1e-8)
    assert wrong.reward("hinge").item() == pytest.approx(-(22.0 + 2.0))  # per row: 2+20 (the winner) + 2 (the tie)


def test_binary_softmax_diff_and_hinge():
    logits = torch.tensor([[[1.0, 3.0]]])  # one prompt, one row, label 0
    s = scores_of(logits, torch.tensor([0]))
    p0 = 1 / (1 + math.exp(2))
    assert s.reward("softmax_diff").item() == pytest.approx(p0 - (1 - p0))
    assert s.reward("hinge").item() == pytest.approx(-(2.0 + 2.0))
    assert s.reward("margin").item() == pytest.approx(-2.0)


def test_unknown_reward_names_the_choices():
    with pytest.raises(ValueError, match="softmax_diff"):
        scores_of(LOGITS, LABELS).reward("mse")
    assert set(REWARDS) == {"accuracy", "ce", "hinge", "margin", "softmax_diff", "neg_ce"}


def test_score_population_matches_logits_on_the_same_rows(tiny_llama, make_encoded):
    """Chunked population scoring gives, for every reward, the mean of example_scores over all rows."""
    from crlprompt.prompts import PromptedModel, PromptLayout, SoftPrompt

    torch.manual_seed(0)
    pm = PromptedModel(tiny_llama, SoftPrompt(PromptLayout.for_model(tiny_llama, "deep", 2), tiny_llama), "linear", 2)
    pm.eval()
    data = make_encoded(tiny_llama)
    theta = pm.prompt.theta.detach()
    thetas = theta + 0.5 * torch.randn(3, theta.numel(), generator=torch.Generator().manual_seed(1))  # (K=3, D)
    scores = score_population(pm, data, thetas, max_rows=6)  # 2 rows per chunk: 3 chunks
    assert scores.count == len(data) == 6
    with torch.inference_mode():
        ids, mask, labels = data.batch(list(range(len(data))))
        logits = pm(ids, mask, thetas).float()  # (3, 6, 2)
    ref = scores_of(logits, labels)
    for kind in REWARDS:
        torch.testing.assert_close(scores.reward(kind), ref.reward(kind), rtol=0, atol=1e-5)
    assert len(set(scores.reward("ce").tolist())) == 3, "three different prompts, three different rewards"
