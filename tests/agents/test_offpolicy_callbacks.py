"""Every off-policy / bandit agent calls ``callback(evals, best)`` after each batch, with growing
counts, and stops when it returns False."""

from __future__ import annotations

import pytest

import crlprompt  # noqa: F401 - registers the ids
from crlprompt.agents import AnchoredPolicyAgent, GPBanditAgent, OffPolicyPGAgent, RacingSearch, SB3OffPolicyAgent

from helpers import envs
from helpers.envs import TINY_PROJ

ENV_KW = {"sigma": 1.0, "reward": "margin"}
AGENTS = {
    "offpolicy-pg": (OffPolicyPGAgent, 8),
    "anchor": (AnchoredPolicyAgent, 8),
    "gp-bandit": (GPBanditAgent, 8),  # a design of 16, then rounds of 8
    "racing": (RacingSearch, 5),  # one race of 16 on 64 examples = 5 full evaluations
    "td3": (lambda env, **kw: SB3OffPolicyAgent(env, algo="td3", **kw), 8),
}


@pytest.fixture(scope="module")
def setup():
    return envs.tiny_search_setup(TINY_PROJ, **ENV_KW)


@pytest.mark.parametrize("name", list(AGENTS))
def test_callback_sees_progress_and_can_stop(setup, name):
    if name == "gp-bandit":
        pytest.importorskip("botorch")
    make, step = AGENTS[name]
    env = envs.make_vec(setup, 8, **ENV_KW)
    seen = []
    stop_at = 3 * step if name != "gp-bandit" else 32

    def callback(evals: int, best: float):
        seen.append((evals, best))
        return evals < stop_at

    res = make(env, seed=0).learn(200, callback=callback)
    assert res.evals == stop_at and seen[-1][0] == stop_at
    assert [e for e, _ in seen] == sorted(e for e, _ in seen)
    assert [b for _, b in seen] == sorted(b for _, b in seen)  # best so far never drops
