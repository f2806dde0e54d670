"""Racing's rules on hand-made reward tables: which prompts are dropped when, on how many examples,
and what the RL term makes of the ranking. The scorer is replaced by a table of per-example rewards
(prompt k on example i) so that every outcome below can be worked out by hand; the real scorer's
races are tested in tests/agents/test_racing.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from crlprompt.errors import ConfigError
from crlprompt.losses import race as race_module
from crlprompt.losses.race import check_race_args, race, race_rl_term, race_schedule


class InOrder:
    """An ``rng`` whose permutation is the identity: examples are visited 0, 1, 2, ..."""

    def permutation(self, n: int) -> np.ndarray:
        return np.arange(n)


@pytest.fixture
def table(monkeypatch):
    """``table(R)``: a search whose prompt k scores ``R[k, i]`` on example i (accuracy: 0 or 1 as
    correct counts; margin otherwise); the calls the race made are logged in ``search.calls``."""

    def make(rewards, kind: str = "accuracy"):
        r = np.asarray(rewards, dtype=np.float64)
        search = SimpleNamespace(model=None, data=list(range(r.shape[1])), reward_kind=kind, max_rows=64, calls=[])

        def score_population(model, data, prompts, *, idx, max_rows):
            ks = prompts[:, 0].round().long().numpy()  # each prompt carries its row of the table in θ[0]
            search.calls.append((tuple(ks), tuple(idx)))
            got = torch.as_tensor(r[np.ix_(ks, idx)].sum(1))
            out = SimpleNamespace(count=len(idx))
            out.reward = lambda kind_: got / len(idx)
            return out

        monkeypatch.setattr(race_module, "score_population", score_population)
        return search

    return make


def prompts_for(k: int, d: int = 3) -> torch.Tensor:
    p = torch.zeros(k, d)
    p[:, 0] = torch.arange(k, dtype=torch.float32)
    return p


def test_check_race_args_accepts_the_smallest_legal_values_and_names_each_bad_one():
    check_race_args("halving", eta=2, finalists=1, block=1, z=1e-3, min_blocks=2)
    check_race_args("paired")
    bad = [({"rule": "bandit"}, "rule must be one of"), ({"eta": 1}, "eta must be an int >= 2, got 1"),
           ({"eta": 2.0}, "eta must be an int"), ({"finalists": 0}, "finalists must be an int >= 1, got 0"),
           ({"finalists": 1.0}, "finalists must be an int"), ({"block": 0}, "got 0, 3, 2.5"),
           ({"block": 2.0}, "int block"), ({"min_blocks": 1}, "got 8, 1, 2.5"), ({"min_blocks": 3.0}, "min_blocks"),
           ({"z": 0.0}, "z > 0; got 8, 3, 0.0"), ({"z": -1.0}, "z > 0")]  # fmt: skip
    for kwargs, message in bad:
        with pytest.raises(ConfigError, match=message):
            check_race_args(**kwargs)


def test_race_schedule_other_rates_and_nothing_to_halve():
    assert race_schedule(10, 100, eta=3, finalists=2) == [(10, 12), (4, 34), (2, 100)]
    assert race_schedule(2, 10) == [(2, 10)]  # as many prompts as finalists: one round on all rows
    assert race_schedule(3, 2, eta=2, finalists=1) == [(3, 1), (2, 1), (1, 2)]  # prefixes of at least 1 row
    assert race_schedule(5, 40, eta=2, finalists=3) == [(5, 20), (3, 40)]


def test_paired_race_drops_clear_losers_after_min_blocks_and_finishes_the_winner(table):
    # p0 right everywhere, p1 wrong everywhere, p2 right on every other example
    search = table([[1] * 8, [0] * 8, [1, 0] * 4])
    res = race(search, prompts_for(3), rule="paired", block=2, min_blocks=2, finalists=1, rng=InOrder())
    # blocks (0, 1) and (2, 3) for all three; then p1 and p2 are beaten by 1 and 0.5 with no spread,
    # so both go, and the winner alone takes examples 4-7
    assert search.calls == [((0, 1, 2), (0, 1)), ((0, 2, 1), (2, 3)), ((0,), (4, 5, 6, 7))]
    assert (res.winner, res.reward) == (0, 1.0)
    assert res.examples.tolist() == [8, 4, 4] and res.example_forwards == 16
    np.testing.assert_allclose(res.means, [1.0, 0.0, 0.5])


def test_paired_race_keeps_a_rival_within_z_standard_errors(table):
    # p1 loses to p0 by 0.5 on every other block of two: per-block differences 0.5, 0, 0.5, 0
    rows = [[1] * 8, [0, 1, 1, 1, 0, 1, 1, 1]]
    wide = race(table(rows), prompts_for(2), rule="paired", block=2, min_blocks=4, z=2.5, finalists=1, rng=InOrder())
    assert wide.examples.tolist() == [8, 8] and wide.winner == 0  # never dropped: scored on every block
    search = table(rows)
    narrow = race(search, prompts_for(2), rule="paired", block=2, min_blocks=2, z=1.2, finalists=1, rng=InOrder())
    # after 2 blocks (0.5, 0: mean 0.25, standard error 0.25 with ddof 1) p1 stays; after 3 (0.5, 0, 0.5:
    # mean 0.33, standard error 0.17) it is beaten by more than 1.2 standard errors and goes
    assert narrow.examples.tolist() == [8, 6] and narrow.winner == 0
    assert search.calls[-1] == ((0,), (6, 7))


def test_paired_race_stops_racing_at_the_finalists(table):
    search = table([[1] * 6, [0] * 6, [1, 1, 0, 0, 1, 1]])
    res = race(search, prompts_for(3), rule="paired", block=2, min_blocks=2, finalists=2, rng=InOrder())
    # after two blocks p1 (0 of 4) is beaten with no spread; p0 and p2 are the finalists and take the rest
    assert search.calls[-1] == ((0, 2), (4, 5))
    assert res.examples.tolist() == [6, 4, 6] and res.winner == 0


def test_accuracy_race_drops_a_prompt_that_cannot_catch_the_leader(table):
    # halving keeps 2 of 4 after 2 examples; p3 (0 of 2) cannot reach p0's 2 with the 2 examples left
    # of the next round either way, the rule drops the hopeless at once
    search = table([[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    res = race(search, prompts_for(4), rule="halving", eta=2, finalists=1, rng=InOrder())
    assert res.winner == 0 and res.reward == 1.0
    assert res.examples[0] == 4 and res.examples[3] < 4
    # with a margin reward nothing is hopeless: the schedule alone decides who goes on
    m = table([[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], kind="margin")
    res_m = race(m, prompts_for(4), rule="halving", eta=2, finalists=1, rng=InOrder())
    assert [c[0] for c in m.calls] == [(0, 1, 2, 3), (0, 1), (0,)] and res_m.examples.tolist() == [4, 2, 1, 1]


def test_halving_ranks_ties_by_index_and_scores_each_example_once(table):
    search = table([[0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], kind="margin")
    res = race(search, prompts_for(4), rule="halving", eta=2, finalists=2, rng=InOrder())
    # round 1 (examples 0-1): p2 leads with 2, p0 and p1 tie at 1 (p0 kept: lower index), p3 0;
    # round 2 (examples 2-3): p2 and p0 go on, p3 is gone though it would have won there
    assert search.calls == [((0, 1, 2, 3), (0, 1)), ((2, 0), (2, 3))]
    assert res.winner == 2 and res.examples.tolist() == [4, 2, 4, 2]
    np.testing.assert_allclose(res.means, [0.25, 0.5, 0.5, 0.0])


def test_race_rl_term_ranks_survivors_first_and_reports_its_cost(table):
    search = table([[1] * 8, [0] * 8, [1, 0] * 4])
    theta = torch.zeros(3, requires_grad=True)
    samples = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 0.0], [2.0, 0.0, 1.0]])  # θ[0] names the table row
    rewards, loss, rec = race_rl_term(search, theta, samples, 0.5, InOrder(), rule="paired", block=2,
                                      min_blocks=2, finalists=1)  # fmt: skip
    np.testing.assert_allclose(rewards.numpy(), [1.0, 0.0, 0.5])
    assert rec == {"race_forwards": 16 / 24}
    (g,) = torch.autograd.grad(loss, theta)
    # centered ranks of (8 + 0.5, 4 + 0, 4 + 0.25): p0 first, p2 second, p1 last; descending the loss
    # moves θ (in the coordinates that do not name the row) toward the winner's sample, away from the last one's
    step = -g[1:]
    assert float(step @ samples[0, 1:]) > 0 > float(step @ samples[1, 1:])
    assert float(step @ samples[2, 1:]) == pytest.approx(0.0, abs=1e-6)  # the middle rank weighs nothing


def test_the_defaults_race_in_blocks_of_8_after_3_blocks_halving_by_2(table):
    # paired, defaults: a loser with no spread goes after min_blocks = 3 blocks of block = 8 examples
    search = table([[1] * 40, [0] * 40])
    res = race(search, prompts_for(2), rule="paired", finalists=1, rng=InOrder())
    assert res.examples.tolist() == [40, 24] and res.examples.dtype == np.int64
    # z = 2.5 by default: block differences 0.125, 0.5, 0.375 (mean 0.33, standard error 0.11: 3.0 of
    # them) drop the rival after 3 blocks; at z = 3.5 it would race a fourth
    rival = [0] + [1] * 7 + [0] * 4 + [1] * 4 + ([0] * 3 + [1] * 5) * 2
    res = race(table([[1] * 32, rival], kind="margin"), prompts_for(2), rule="paired", finalists=1, rng=InOrder())
    assert res.examples.tolist() == [32, 24]
    assert race(table([[1] * 32, rival], kind="margin"), prompts_for(2), rule="paired", finalists=1, z=3.5,
                rng=InOrder()).examples.tolist() == [32, 32]  # fmt: skip
    # halving, defaults: eta = 2, two finalists
    h = table([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0, 1, 0], [0] * 8], kind="margin")
    race(h, prompts_for(4), rng=InOrder())
    assert h.calls == [((0, 1, 2, 3), (0, 1, 2, 3)), ((0, 1), (4, 5, 6, 7))]


def test_no_rng_orders_the_examples_as_seed_0(table):
    rows = np.random.default_rng(3).integers(0, 2, (6, 16))
    a = table(rows, kind="margin")
    race(a, prompts_for(6), eta=2, finalists=1)
    b = table(rows, kind="margin")  # (each table replaces the scorer: race a first)
    race(b, prompts_for(6), eta=2, finalists=1, rng=np.random.default_rng(0))
    assert a.calls == b.calls and a.calls[0][1] != tuple(range(len(a.calls[0][1])))  # shuffled, as seed 0 does


def test_the_race_checks_its_arguments_before_scoring(table):
    search = table([[1] * 4, [0] * 4])
    for kwargs, message in (({"z": 0.0}, "z > 0"), ({"min_blocks": 1}, "min_blocks >= 2"), ({"eta": 1}, "eta"),
                            ({"block": 0}, "block >= 1"), ({"finalists": 0}, "finalists"), ({"rule": "x"}, "rule")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            race(search, prompts_for(2), rule=kwargs.pop("rule", "paired"), **kwargs)
    assert search.calls == []


def test_a_hopeless_prompt_goes_at_once_and_one_that_can_still_tie_stays(table):
    # 3 examples, 4 prompts: the schedule keeps 2 after 2 examples; p1..p3 scored 0 of 2 cannot reach
    # p0's 2 with 1 example left, so p0 alone goes on (the rule holds for accuracy only)
    rows = [[1, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]]
    acc = table(rows)
    race(acc, prompts_for(4), eta=2, finalists=2, rng=InOrder())
    assert acc.calls == [((0, 1, 2, 3), (0, 1)), ((0,), (2,))]
    margin = table(rows, kind="margin")
    race(margin, prompts_for(4), eta=2, finalists=2, rng=InOrder())
    assert margin.calls == [((0, 1, 2, 3), (0, 1)), ((0, 1), (2,))]
    # 4 examples: 0 of 2 with 2 left can still tie p0's 2, so p1 stays in the race
    tie = table([[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    res = race(tie, prompts_for(4), eta=2, finalists=2, rng=InOrder())
    assert tie.calls == [((0, 1, 2, 3), (0, 1)), ((0, 1), (2, 3))] and res.winner == 0  # tied: the lower index
    assert res.examples.tolist() == [4, 4, 2, 2]


def test_a_rival_equal_to_the_leader_is_never_dropped(table):
    same = [1, 0, 1, 1, 0, 1, 0, 0] * 3
    res = race(table([same, same]), prompts_for(2), rule="paired", block=4, min_blocks=2, finalists=1, rng=InOrder())
    assert res.examples.tolist() == [24, 24] and res.winner == 0


def test_halving_skips_empty_rounds_and_means_count_every_example(table):
    # 2 examples, 3 prompts, one finalist: the schedule repeats the 1-example prefix; nothing is scored twice
    search = table([[0.5, 1.0], [0.25, 0.0], [1.0, 0.0]], kind="margin")
    res = race(search, prompts_for(3), eta=2, finalists=1, rng=InOrder())
    assert all(len(rows) > 0 for _, rows in search.calls) and res.examples.sum() == res.example_forwards
    assert search.calls == [((0, 1, 2), (0,)), ((2,), (1,))]
    np.testing.assert_allclose(res.means, [0.5, 0.25, 0.5])  # a prompt seen on one example has that mean
    assert res.winner == 2 and res.reward == 0.5


def test_halving_at_eta_3_keeps_a_third_on_three_times_the_examples(table):
    rows = np.linspace(1, 0, 9)[:, None].repeat(9, 1)  # p0 best, ..., p8 worst, on every example
    search = table(rows, kind="margin")
    race(search, prompts_for(9), eta=3, finalists=1, rng=InOrder())
    assert [(len(p), len(r)) for p, r in search.calls] == [(9, 1), (3, 2), (1, 6)]  # prefixes 1, 3, 9
    assert [c[0] for c in search.calls][1:] == [(0, 1, 2), (0,)]


def test_ties_go_to_the_lower_index_in_a_large_population(table):
    # 40 prompts, the even ones tied at the top: each round keeps the lowest-numbered of the tied
    rows = np.tile(np.array([1.0, 0.0] * 20)[:, None], (1, 64))  # prefixes 2, 4, ..., 64
    search = table(rows, kind="margin")
    race(search, prompts_for(40), eta=2, finalists=2, rng=InOrder())
    assert [len(p) for p, _ in search.calls] == [40, 20, 10, 5, 3, 2]
    assert search.calls[2][0] == tuple(range(0, 20, 2)) and search.calls[-1][0] == (0, 2)
