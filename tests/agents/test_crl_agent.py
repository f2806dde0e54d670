"""crlprompt.agents.crl: Algorithm 1 on the tiny synthetic setup (random 2-layer LM, fitted probe
head, θ started away from the planted prompt).

The RL term is pinned exactly: for P' = θ + σa and reward r = accuracy of P' on D_RL, the
gradient of L_RL is -r (P' - θ) / σ², and one SGD step moves θ by lr · r (P' - θ) / σ².
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from crlprompt.agents.crl import CRLAgent, CRLConfig
from crlprompt.errors import ConfigError
from helpers.tiny import tiny_setup
from crlprompt.scoring import accuracy, score_population

SIGMA = 0.1


@pytest.fixture
def setup():
    """A fresh tiny setup: 256 train / 64 D_RL / 128 test, deep prompt of 4 tokens (D = 256)."""
    return tiny_setup()


def rl_config(**kw) -> CRLConfig:
    """β = 0, γ = 1, RL on every step, no clipping, no prompt dropout: the RL term alone is exact."""
    base = dict(lr=0.05, beta=0.0, gamma=1.0, rl_interval=1, grad_clip=None, prompt_dropout=0.0, sigma=SIGMA)
    return CRLConfig(**(base | kw))


def rewards_of(setup, prompts: torch.Tensor) -> torch.Tensor:
    """Accuracy of each prompt ``(K, D)`` on all of D_RL, computed independently of the env."""
    return score_population(setup.model, setup.drl, prompts).reward("accuracy")


def small_learn_config(**kw) -> CRLConfig:
    base = dict(lr=1e-2, batch_size=32, phase1_epochs=0.5, phase2_epochs=0.5, beta=0.3, gamma=0.1,
                rl_interval=2, reward_batch_size=16)  # fmt: skip
    return CRLConfig(**(base | kw))


def plain(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]


# ----------------------------------------------------------------------------- the RL term, exactly
def test_one_rl_step_moves_theta_by_the_reinforce_amount(setup):
    agent = CRLAgent(setup, rl_config(), seed=0, progress=False)
    theta = setup.model.prompt.theta
    theta0 = theta.detach().clone()
    d = theta.numel()

    loss, info = agent._rl_loss(np.random.default_rng(123))
    assert torch.equal(theta.detach(), theta0)  # computing the term does not move θ
    env = agent.env.unwrapped
    assert np.array_equal(env.center, theta0.numpy())  # the env was centered on the agent's θ

    # the same draw, by hand: a ~ N(0, I), P' = θ + σa, r = accuracy of P' on D_RL
    a = torch.from_numpy(np.random.default_rng(123).standard_normal((1, d), dtype=np.float32))
    sample = theta0 + SIGMA * a[0]
    r = float(rewards_of(setup, sample[None])[0])
    assert info["reward"] == pytest.approx(r, abs=1e-7)
    assert r == pytest.approx(accuracy(setup.model, setup.drl, theta=sample), abs=1e-7)
    assert 0.0 < r <= 1.0  # a zero reward would make the check below vacuous

    loss.backward()
    expected = -r * (sample - theta0) / SIGMA**2
    assert theta.grad.abs().min() > 0
    assert_close(theta.grad, expected, rtol=1e-4, atol=1e-5)
    assert_close(theta.grad, -r * a[0] / SIGMA, rtol=1e-4, atol=1e-4)

    # one plain SGD step by hand: θ ← θ - lr ∇ = θ + lr r (P' - θ) / σ²
    lr = agent.cfg.lr
    torch.optim.SGD([theta], lr=lr).step()
    assert_close(theta.detach() - theta0, lr * r * (sample - theta0) / SIGMA**2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("estimator", ["baseline", "antithetic", "ranks"])
def test_population_rl_term_matches_per_sample_rewards(setup, estimator):
    """K = 4 samples scored in one vector-env step: each reward belongs to its own sample."""
    from crlprompt.losses import shape_rewards

    k = 4
    agent = CRLAgent(setup, rl_config(rl_samples=k, rl_estimator=estimator), seed=0, progress=False)
    theta = setup.model.prompt.theta
    theta0 = theta.detach().clone()
    loss, info = agent._rl_loss(np.random.default_rng(5))
    loss.backward()

    rng = np.random.default_rng(5)
    if estimator == "antithetic":
        half = rng.standard_normal((k // 2, theta.numel()), dtype=np.float32)
        a = np.stack([half, -half], 1).reshape(k, -1)
    else:
        a = rng.standard_normal((k, theta.numel()), dtype=np.float32)
    samples = theta0 + SIGMA * torch.from_numpy(a)  # (K, D)
    r = rewards_of(setup, samples)  # (K,)
    assert info["reward"] == pytest.approx(float(r.mean()), abs=1e-6)
    assert info["reward_max"] == pytest.approx(float(r.max()), abs=1e-6)
    w = shape_rewards(r, estimator)
    expected = -(w[:, None] * (samples - theta0)).mean(0) / SIGMA**2
    assert_close(theta.grad, expected, rtol=1e-4, atol=1e-4)


def test_batch_loss_is_ce_plus_gamma_rl(setup):
    gamma = 0.5
    agent = CRLAgent(setup, rl_config(gamma=gamma, rl_interval=3), seed=0, progress=False)
    pm = setup.model
    pm.eval()  # no head dropout: the CE part is deterministic
    theta = pm.prompt.theta
    ids, mask, labels = setup.train.batch(np.arange(32))

    agent.state.phase2_step = 2  # the third phase-2 step (t = 3 = N): RL on
    loss, parts, rl = agent.batch_loss(ids, mask, labels, 2, np.random.default_rng(9))
    assert set(parts) == {"ce", "rl"}
    assert set(rl) == {"reward", "reward_max", "grad_norm", "seconds"} and rl["grad_norm"] > 0 and rl["seconds"] >= 0
    assert_close(loss, parts["ce"] + gamma * parts["rl"])
    loss.backward()
    total = theta.grad.clone()

    theta.grad = None
    ce, _, rl = agent.batch_loss(ids, mask, labels, 1, np.random.default_rng(9))  # phase 1: CE only
    assert rl is None
    ce.backward()
    a = torch.from_numpy(np.random.default_rng(9).standard_normal((1, theta.numel()), dtype=np.float32))[0]
    sample = theta.detach() + SIGMA * a
    r = float(rewards_of(setup, sample[None])[0])
    assert_close(total, theta.grad + gamma * (-r * (sample - theta.detach()) / SIGMA**2), rtol=1e-4, atol=1e-4)

    for done in (0, 1, 3):  # t = 1, 2, 4: not multiples of N = 3, no RL term (the first fires at t = N, not 1)
        agent.state.phase2_step = done
        _, parts, rl = agent.batch_loss(ids, mask, labels, 2, np.random.default_rng(9))
        assert set(parts) == {"ce"} and rl is None
    agent.state.phase2_step = 1
    _, parts, rl = agent.batch_loss(ids, mask, labels, 2, np.random.default_rng(9))
    assert set(parts) == {"ce"} and rl is None


def test_phase1_has_no_contrast_or_rl(setup):
    agent = CRLAgent(setup, CRLConfig(beta=0.3, gamma=1.0, rl_interval=1), seed=0, progress=False)
    ids, mask, labels = setup.train.batch(np.arange(16))
    _, parts, rl = agent.batch_loss(ids, mask, labels, 1, np.random.default_rng(0))
    assert set(parts) == {"ce"} and rl is None
    _, parts, rl = agent.batch_loss(ids, mask, labels, 2, np.random.default_rng(0))
    assert set(parts) == {"ce", "contrast", "rl"} and rl is not None
    assert torch.isfinite(parts["contrast"]) and parts["contrast"] > 0


@pytest.mark.parametrize("mode", ["paper", "supcon", "noise"])
def test_contrast_views_of_each_mode(setup, mode, monkeypatch):
    """paper/supcon: one forward over (dropout(θ), clean θ, corrupted θ) with the model's own prompt
    dropout off, so the positive row is exactly θ; noise: the earlier (θ, θ, θ + ε) under dropout."""
    pm = setup.model
    agent = CRLAgent(setup, CRLConfig(beta=0.3, gamma=0.0, contrast_mode=mode, num_negatives=2), seed=0, progress=False)
    pm.train()
    seen = {}
    features = pm.features

    def spy(ids, mask, thetas=None):
        seen.update(thetas=thetas.detach().clone(), dropout=pm.prompt_dropout)
        return features(ids, mask, thetas)

    monkeypatch.setattr(pm, "features", spy)
    ids, mask, labels = setup.train.batch(np.arange(16))
    _, parts, _ = agent.batch_loss(ids, mask, labels, 2, np.random.default_rng(0))
    theta = pm.prompt.theta.detach()
    assert seen["thetas"].shape == (4, theta.numel()) and torch.isfinite(parts["contrast"])
    assert pm.prompt_dropout == agent.cfg.prompt_dropout  # restored after the forward
    if mode == "noise":
        assert seen["dropout"] == agent.cfg.prompt_dropout and torch.equal(seen["thetas"][0], seen["thetas"][1])
    else:
        assert seen["dropout"] == 0.0 and torch.equal(seen["thetas"][1], theta)  # the clean positive
        assert not torch.equal(seen["thetas"][0], theta) and not torch.equal(seen["thetas"][2], theta)


def test_config_defaults_follow_the_papers_contrast():
    cfg = CRLConfig()
    assert (cfg.contrast_mode, cfg.negative_kind) == ("paper", "permute")
    with pytest.raises(ConfigError, match="contrast_mode"):
        CRLConfig(contrast_mode="simclr")
    with pytest.raises(ConfigError, match="negative_kind"):
        CRLConfig(negative_kind="noise")


# ----------------------------------------------------------------------------- learn()
def test_learn_is_deterministic_per_seed():
    def train(seed):
        s = tiny_setup()
        out = CRLAgent(s, small_learn_config(), seed=seed, progress=False).learn()
        return out, s.model

    out1, m1 = train(0)
    out2, m2 = train(0)
    out3, m3 = train(1)
    assert plain(out1["history"]) == plain(out2["history"])
    assert torch.equal(m1.prompt.theta, m2.prompt.theta)
    assert torch.equal(m1.head.linear.weight, m2.head.linear.weight)
    assert (out1["test_acc"], out1["drl_acc"]) == (out2["test_acc"], out2["drl_acc"])
    assert not torch.equal(m1.prompt.theta, m3.prompt.theta)
    assert plain(out1["history"]) != plain(out3["history"])


def test_learn_summary_and_callbacks(setup):
    events: list[tuple[str, dict]] = []
    cfg = small_learn_config(phase1_epochs=1.0, phase2_epochs=1.0, rl_interval=3)
    agent = CRLAgent(setup, cfg, seed=0, progress=False, callbacks=[lambda e, r: events.append((e, r))])
    theta0 = setup.model.prompt.theta.detach().clone()
    frozen = {k: v.clone() for k, v in setup.lm.full.state_dict().items()}
    out = agent.learn()
    after = setup.lm.full.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen), "learn() changed a frozen LM weight"

    steps_per_epoch = math.ceil(len(setup.train) / cfg.batch_size)  # 8
    assert out["steps"] == 2 * steps_per_epoch
    for key in ("phase1_test_acc", "test_acc", "phase1_drl_acc", "drl_acc"):
        assert 0.0 <= out[key] <= 1.0, key
    hist = out["history"]
    assert [(h["phase"], h["epoch"]) for h in hist] == [(1, 1), (2, 1)]
    # the kept prompt is the best on D_RL, and test_acc is that prompt's test accuracy
    assert out["drl_acc"] == max(h["drl_acc"] for h in hist)
    assert out["phase1_drl_acc"] == hist[0]["drl_acc"]
    assert out["test_acc"] == pytest.approx(accuracy(setup.model, setup.test), abs=1e-7)
    assert out["drl_acc"] == pytest.approx(accuracy(setup.model, setup.drl), abs=1e-7)
    assert not torch.equal(setup.model.prompt.theta, theta0)

    # β > 0 logs a contrast term and γ > 0 an RL term in phase 2 only
    assert "train_contrast" not in hist[0] and "train_rl" not in hist[0]
    assert hist[1]["train_contrast"] > 0 and math.isfinite(hist[1]["train_rl"])

    assert [r for e, r in events if e == "epoch"] == hist
    rl = [r for e, r in events if e == "rl"]
    # phase-2 steps t = N, 2N (t mod N = 0, t from 1): t = 3, 6 of 8 -> global steps 11, 14
    assert [r["step"] for r in rl] == [steps_per_epoch + t for t in (3, 6)]
    for r in rl:
        assert 0.0 <= r["reward"] <= r["reward_max"] <= 1.0
        assert math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0


def test_callbacks_also_take_search_events(setup):
    """The search agents' protocol: one-argument callbacks get SearchEvents of kind "rl" and "epoch"."""
    from crlprompt.agents import SearchEvent

    cfg = small_learn_config(phase1_epochs=1.0, phase2_epochs=1.0, rl_interval=3, rl_samples=2, rl_estimator="baseline")
    short, events = [], []
    out = CRLAgent(setup, cfg, seed=0, progress=False,
                   callbacks=[lambda kind, rec: short.append((kind, rec)), events.append]).learn()  # fmt: skip
    assert all(isinstance(e, SearchEvent) for e in events) and [e.kind for e in events] == [k for k, _ in short]
    assert [e.diagnostics for e in events] == [r for _, r in short]  # the same records
    rl = [e for e in events if e.kind == "rl"]
    assert [e.evals for e in rl] == [2, 4]  # K = 2 samples per RL step
    for e in rl:
        assert e.rewards.shape == e.accuracies.shape == (2,) and e.best_reward >= e.rewards.max()
        assert e.diagnostics["seconds"] >= 0 and e.diagnostics["reward"] == pytest.approx(e.rewards.mean())
    assert [e.best_reward for e in rl] == sorted(e.best_reward for e in rl)
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.rewards[0] for e in epochs] == [h["drl_acc"] for h in out["history"]]
    assert epochs[-1].best_reward == out["drl_acc"] and out["eval_seconds"] >= 0


def test_beta_gamma_zero_is_plain_prompt_tuning(setup):
    agent = CRLAgent(setup, small_learn_config(beta=0.0, gamma=0.0), seed=0, progress=False)
    events = []
    agent.callbacks.append(lambda e, r: events.append(e))
    out = agent.learn()
    assert agent.env is None  # no environment was ever needed
    assert "rl" not in events
    assert set(out["history"][-1]) >= {"train_ce"}
    assert not {"train_contrast", "train_rl"} & set(out["history"][-1])


def test_phase1_only_reports_phase1_as_final(setup):
    out = CRLAgent(setup, small_learn_config(phase2_epochs=0.0), seed=0, progress=False).learn()
    assert [h["phase"] for h in out["history"]] == [1]
    assert out["phase1_test_acc"] == out["test_acc"] and out["phase1_drl_acc"] == out["drl_acc"]


def test_phase2_lr_changes_phase_2_only():
    """The paper's protocol: phase 1 at lr, phase 2 at phase2_lr (None = lr)."""
    def history(**kw):
        return plain(CRLAgent(tiny_setup(), small_learn_config(**kw), seed=0, progress=False).learn()["history"])

    same, default, other = history(phase2_lr=1e-2), history(), history(phase2_lr=1e-1)
    assert same == default  # phase2_lr equal to lr is the default
    p1 = [h for h in default if h["phase"] == 1]
    assert p1 == [h for h in other if h["phase"] == 1]  # phase 1 does not see phase2_lr
    assert [h for h in default if h["phase"] == 2] != [h for h in other if h["phase"] == 2]


@pytest.mark.parametrize("head_c", [0.1, None])
def test_the_start_head_is_the_probe_at_head_c(head_c):
    """head_c fixes the start head's C; None takes the floor's, chosen on D_RL from PROBE_CS."""
    from crlprompt.floors import PROBE_CS, fit_probe_head

    ref = tiny_setup()
    fit = fit_probe_head(ref.model, ref.train, ref.drl, cs=PROBE_CS if head_c is None else (head_c,))
    setup = tiny_setup()
    CRLAgent(setup, small_learn_config(head_c=head_c, phase1_epochs=0, phase2_epochs=0), seed=0, progress=False).learn()
    assert_close(setup.model.head.linear.weight, ref.model.head.linear.weight)
    assert_close(setup.model.head.linear.bias, ref.model.head.linear.bias)
    if head_c is None:
        assert fit.c != 0.1  # the floor's choice differs on this data, so the two cases test different heads
        assert float(setup.model.head.linear.weight.norm()) > float(fit_probe_head(
            tiny_setup().model, ref.train, ref.drl, cs=(0.1,)).weight.norm())  # a weaker C: a smaller head


def test_non_finite_loss_stops_with_a_clear_error(setup):
    with torch.no_grad():
        setup.model.head.linear.weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        CRLAgent(setup, small_learn_config(head_init="keep"), seed=0, progress=False).learn()


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kw,match",
    [
        ({"beta": -0.1}, "beta must be >= 0"),
        ({"gamma": -1e-5}, "gamma must be >= 0"),
        ({"sigma": 0.0}, "sigma must be > 0"),
        ({"sigma": -1.0}, "sigma must be > 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"rl_interval": 0}, "rl_interval must be > 0"),
        ({"tau": 0.0}, "tau must be > 0"),
        ({"prompt_dropout": 1.0}, "prompt_dropout"),
        ({"rl_estimator": "antithetic", "rl_samples": 3}, "antithetic.*even"),
        ({"rl_estimator": "ppo"}, "rl_estimator must be one of"),
        ({"phase2_lr": 0.0}, "phase2_lr must be"),
        ({"phase2_lr": float("nan")}, "phase2_lr must be"),
        ({"head_c": 0.0}, "head_c must be"),
        ({"head_c": float("inf")}, "head_c must be"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        CRLConfig(**kw)


@pytest.mark.parametrize("estimator", ["baseline", "ranks"])
def test_single_sample_estimators_never_give_a_zero_rl_gradient(estimator):
    try:
        cfg = rl_config(rl_estimator=estimator, rl_samples=1)
    except ValueError:
        return  # refusing the combination is a fix too
    s = tiny_setup()
    loss, info = CRLAgent(s, cfg, seed=0, progress=False)._rl_loss(np.random.default_rng(0))
    assert info["reward"] > 0
    loss.backward()
    assert s.model.prompt.theta.grad.abs().max() > 0


@pytest.mark.parametrize("size", [0, -8])
def test_config_rejects_bad_reward_batch_size(size):
    with pytest.raises(ConfigError, match="reward_batch_size"):
        CRLConfig(reward_batch_size=size)


def test_config_defaults_are_the_papers():
    cfg = CRLConfig()
    assert (cfg.lr, cfg.batch_size, cfg.beta, cfg.gamma, cfg.rl_interval, cfg.tau, cfg.prompt_dropout) == (
        1e-3, 32, 0.3, 2e-5, 100, 0.1, 0.1,
    )  # fmt: skip
    assert cfg.rl_estimator == "single" and cfg.rl_samples == 1 and cfg.reward_batch_size is None
    assert dataclasses.replace(cfg, rl_estimator="antithetic", rl_samples=4).rl_samples == 4


# ----------------------------------------------------------------------------- off-policy RL terms
def test_replay_rl_term_is_the_on_policy_one_when_behaviour_is_target(setup):
    """Two RL steps at the same θ: every buffered sample was drawn by the target policy, so the
    importance weights are all 1/N and the term is -(1/N) Σ (r_i − b) log π(P'_i) over the buffer
    (b = 0 at the first step: Eq. 5 averaged; then the running mean). Once θ has moved by many σ,
    the earlier samples lose their weight: the effective sample size drops to the newest K."""
    k, sigma = 4, 1.0  # σ = 0.1 gives every sample the same accuracy here: (r − b) would be 0
    cfg = rl_config(rl_samples=k, rl_estimator="replay", rl_buffer=16, sigma=sigma)
    agent = CRLAgent(setup, cfg, seed=0, progress=False)
    theta = setup.model.prompt.theta
    theta0 = theta.detach().clone()
    d = theta.numel()
    draws = np.random.default_rng(5)
    samples, rewards, baselines = [], [], []
    for step in range(2):
        baselines.append(0.0 if agent.state.reward_mean is None else agent.state.reward_mean)
        theta.grad = None
        loss, info = agent._rl_loss(draws)
        loss.backward()
        a = np.random.default_rng(5).standard_normal((2 * k, d), dtype=np.float32)[step * k : (step + 1) * k]
        new = theta0 + sigma * torch.from_numpy(a)  # (K, D), drawn at θ0
        samples.append(new)
        rewards.append(rewards_of(setup, new))
        assert info["buffer"] == (step + 1) * k and info["ess"] == pytest.approx((step + 1) * k, rel=1e-6)
        assert info["truncated"] == 0
        p, r = torch.cat(samples), torch.cat(rewards)  # (N, D), (N,)
        assert len(set(r.tolist())) > 1  # rewards that differ: a zero gradient would pass vacuously
        expected = -((r - baselines[-1])[:, None] * (p - theta0)).mean(0) / sigma**2
        assert theta.grad.abs().max() > 0
        assert_close(theta.grad, expected, rtol=1e-4, atol=1e-4)
    assert baselines[1] == pytest.approx(float(rewards[0].mean()))  # a baseline that could have been 0
    with torch.no_grad():
        theta.add_(2.0)  # θ moves by 2·√D = 32 ≫ σ = 1: the earlier 8 samples become improbable
    _, info = agent._rl_loss(draws)
    assert info["buffer"] == 3 * k and info["ess"] < k + 0.5


def test_race_rl_term_ranks_by_the_race_at_a_fraction_of_the_forwards(setup):
    import copy

    from crlprompt.agents.racing import race
    from crlprompt.losses import centered_ranks

    k, sigma = 8, 1.0
    agent = CRLAgent(setup, rl_config(rl_samples=k, rl_estimator="race", sigma=sigma), seed=0, progress=False)
    theta = setup.model.prompt.theta
    theta0 = theta.detach().clone()
    rng = np.random.default_rng(3)
    twin = copy.deepcopy(rng)
    loss, info = agent._rl_loss(rng)
    loss.backward()
    assert 0 < info["race_forwards"] <= 0.5  # halving 8 -> 4 -> 2 on 16, 32, 64 rows: at most 256 of 512
    a = twin.standard_normal((k, theta.numel()), dtype=np.float32)
    samples = theta0 + sigma * torch.from_numpy(a)
    res = race(agent.env.unwrapped.search, samples, rng=twin)
    full = rewards_of(setup, samples)
    assert float(full[res.winner]) == pytest.approx(res.reward, abs=1e-6)  # the winner's reward is exact
    w = centered_ranks(torch.as_tensor(res.examples + 0.5 * res.means, dtype=torch.float32))
    assert int(w.argmax()) == res.winner and len(set(w.tolist())) > 2
    expected = -(w[:, None] * (samples - theta0)).mean(0) / sigma**2
    assert_close(theta.grad, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("estimator", ["replay", "race"])
def test_offpolicy_rl_terms_learn_deterministically(estimator):
    def train(seed):
        s = tiny_setup()
        events = []
        cfg = small_learn_config(rl_estimator=estimator, rl_samples=4)
        out = CRLAgent(s, cfg, seed=seed, progress=False, callbacks=[lambda e, r: events.append((e, r))]).learn()
        return out, s.model, [r for e, r in events if e == "rl"]

    (out1, m1, rl1), (out2, m2, _), (_, m3, _) = train(0), train(0), train(1)
    assert len(rl1) >= 2 and all(math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 for r in rl1)
    assert {"replay": "ess", "race": "race_forwards"}[estimator] in rl1[0]
    assert plain(out1["history"]) == plain(out2["history"]) and torch.equal(m1.prompt.theta, m2.prompt.theta)
    assert not torch.equal(m1.prompt.theta, m3.prompt.theta)


@pytest.mark.parametrize(
    "kw,match",
    [({"rl_estimator": "race", "rl_samples": 1}, "rl_samples >= 2"), ({"rl_buffer": 0}, "rl_buffer must be > 0")],
)
def test_offpolicy_rl_term_config_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        CRLConfig(**kw)
