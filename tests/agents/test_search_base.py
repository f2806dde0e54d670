"""The shared search loop (crlprompt.agents.base): every agent reports a SearchEvent per batch with its
rewards, accuracies and own diagnostics; the short callback form still works; several callbacks
and early stops; an AskTellAgent is only its ask and tell; evals_per_update is required."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

import crlprompt  # noqa: F401 - registers the ids
from crlprompt.agents import (
    AnchoredPolicyAgent,
    AskTellAgent,
    CMAAgent,
    ESAgent,
    OffPolicyPGAgent,
    PPOPromptAgent,
    RacingSearch,
    RandomSearch,
    SB3OffPolicyAgent,
    SearchAgent,
    SearchEvent,
)
from crlprompt.agents.base import takes_two_arguments
from crlprompt.errors import ConfigError

from helpers import envs
from helpers.envs import TINY_PROJ

ENV_KW = {"sigma": 1.0, "reward": "margin"}
make_vec = functools.partial(envs.make_vec, **ENV_KW)  # a call's keywords override ENV_KW

#: name -> (make(env), batch size of an event, a diagnostics key it reports)
AGENTS = {
    "random": (lambda env: RandomSearch(env), 8, None),
    "es": (lambda env: ESAgent(env, anchor_kl=1.0), 8, "kl_to_anchor"),
    "cma": (lambda env: CMAAgent(env), 8, "sigma"),
    "offpolicy": (lambda env: OffPolicyPGAgent(env), 8, "ess"),
    "anchor": (lambda env: AnchoredPolicyAgent(env), 8, "kl_to_anchor"),
    "racing": (lambda env: RacingSearch(env, k=4), 4, "winner_reward"),
    "td3": (lambda env: SB3OffPolicyAgent(env, algo="td3"), 8, None),
}


@pytest.fixture(scope="module")
def setup():
    return envs.tiny_search_setup(TINY_PROJ, **ENV_KW)


@pytest.mark.parametrize("name", list(AGENTS))
def test_events_carry_the_batch_and_the_agents_diagnostics(setup, name):
    if name in ("cma", "td3"):
        pytest.importorskip({"cma": "cma", "td3": "stable_baselines3"}[name])
    make, n, key = AGENTS[name]
    events, short = [], []
    res = make(make_vec(setup, 8)).learn(32, callback=lambda e, b: short.append((e, b)), callbacks=[events.append])
    assert events and all(isinstance(e, SearchEvent) and e.kind == "batch" for e in events)
    assert [(e.evals, e.best_reward) for e in events] == short  # the short form sees the same
    assert events[-1].evals == res.evals and events[-1].best_reward == res.best_reward
    np.testing.assert_array_equal(events[-1].best_prompt, res.best_prompt)
    for e in events:
        assert e.rewards.shape == (n,)
        if name != "racing":  # a race's rewards are means on subsets of D_RL, without env accuracies
            assert e.best_reward >= e.rewards.max()
            assert e.accuracies.shape == (n,) and ((0 <= e.accuracies) & (e.accuracies <= 1)).all()
        if key is not None:
            assert key in e.diagnostics, e.diagnostics


def test_ppo_events_are_single_steps(setup):
    pytest.importorskip("stable_baselines3")
    env = gym.make(TINY_PROJ, setup=setup, **ENV_KW)
    events = []
    res = PPOPromptAgent(env, n_steps=8, batch_size=8).learn(16, callback=events.append)
    assert [e.evals for e in events] == list(range(1, 17)) and res.history[-1] == (16, res.best_reward)
    assert all(e.rewards.shape == e.accuracies.shape == (1,) for e in events)


def test_any_callback_stops_the_run_after_every_one_saw_the_event(setup):
    seen = []
    res = RandomSearch(make_vec(setup, 8)).learn(
        40, callbacks=[lambda ev: seen.append(("a", ev.evals)), lambda ev: ev.evals < 16, lambda ev: seen.append("c")]
    )
    assert res.evals == 16 and seen == [("a", 8), "c", ("a", 16), "c"]


def test_short_form_is_two_required_positional_arguments():
    assert takes_two_arguments(lambda e, b: None)
    assert not takes_two_arguments(lambda ev: None) and not takes_two_arguments(lambda ev, extra=1: None)
    assert not takes_two_arguments([].append)  # a builtin: the event
    with pytest.raises(ConfigError, match="callable"):
        RandomSearch(make_vec(envs.tiny_search_setup(TINY_PROJ), 8)).learn(8, callback="print")


class Climber(AskTellAgent):
    """Moves to the best action of each batch; stops when told to."""

    algo = "climber"

    def __init__(self, env, *, stop_after: int = 99, seed: int = 0):
        super().__init__(env, seed)
        self.stop_after = stop_after

    @property
    def evals_per_update(self) -> int:
        return self.scorer.batch

    def start(self) -> None:
        self.rng, self.x, self.rounds = np.random.default_rng(self.seed), np.zeros(self.scorer.action_dim), 0

    def ask(self) -> np.ndarray:
        return (self.x + self.rng.standard_normal((self.scorer.batch, self.scorer.action_dim))).astype(np.float32)

    def tell(self, actions, rewards) -> dict:
        self.x, self.rounds = actions[int(np.argmax(rewards))], self.rounds + 1
        return {"rounds": self.rounds}

    def done(self) -> bool:
        return self.rounds >= self.stop_after


def test_an_ask_tell_agent_is_its_ask_and_tell(setup):
    env = make_vec(setup, 8)
    a, b = Climber(env).learn(40), Climber(env).learn(40)
    assert a.evals == 40 and [e for e, _ in a.history] == [8, 16, 24, 32, 40] and a.algo == "climber"
    assert (a.best_reward, a.history) == (b.best_reward, b.history)  # seeded: the same run twice
    np.testing.assert_array_equal(a.final_prompt, a.best_prompt)  # the default final prompt is the best one
    assert Climber(env, stop_after=2).learn(40).evals == 16  # done() ends the search
    with pytest.raises(ConfigError, match="budget must be an int >= 8"):
        Climber(env).learn(7)
    with pytest.raises(ConfigError, match="budget"):
        Climber(env).learn(True)


def test_evals_per_update_is_required(setup):
    class NoSize(AskTellAgent):
        def ask(self):
            return np.zeros((1, 64), np.float32)

        def tell(self, actions, rewards):
            return None

    with pytest.raises(TypeError, match="evals_per_update"):
        NoSize(make_vec(setup, 8))
    assert issubclass(AskTellAgent, SearchAgent) and issubclass(SB3OffPolicyAgent, SearchAgent)
    assert not issubclass(SB3OffPolicyAgent, AskTellAgent) and not issubclass(PPOPromptAgent, AskTellAgent)


def test_a_state_is_resumed_only_by_its_own_kind_of_search(setup):
    env = make_vec(setup, 8)
    agent = RandomSearch(env, seed=0)
    agent.learn(16)
    state = agent.state_dict()
    assert state["agent"]["evals"] == 16 and "scorer" not in state["agent"]
    res = RandomSearch(make_vec(setup, 8), seed=0).learn(32, state=state)
    assert [e for e, _ in res.history] == [8, 16, 24, 32] and res.evals == 32  # went on from 16: 2 batches more
    with pytest.raises(ConfigError, match="'random' search with action dim"):
        ESAgent(make_vec(setup, 8)).learn(32, state=state)
    with pytest.raises(ConfigError, match="snapshot from AskTellAgent.state_dict"):
        RandomSearch(make_vec(setup, 8)).learn(32, state={"evals": 16})
    pytest.importorskip("stable_baselines3")
    with pytest.raises(ConfigError, match="cannot resume a search from a state"):
        SB3OffPolicyAgent(make_vec(setup, 8), algo="td3").learn(32, state=state)
