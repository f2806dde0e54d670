"""crlprompt.checkpoint: the training-state layout on its own, on a small torch module (no LM).

A :class:`TrainState` with the model's trainable parameters, the optimizer and every RNG goes
into one file and comes back exactly; damaged files, another run's files and NaN parameters are
refused. (The whole-run resume is tested in ``runners/test_resume.py``.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crlprompt.checkpoint import STATE_FILE, TrainState, load_state, load_train_state, save_train_state
from crlprompt.errors import CheckpointError

CONFIG = {"lr": 0.01, "betas": (0.9, 0.999), "rl_estimator": "antithetic"}  # a tuple: JSON makes it a list
SEED = 3


def make_model(seed: int = 0) -> torch.nn.Module:
    """A linear head (trainable) on a frozen embedding."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    return model


def trained(model: torch.nn.Module) -> torch.optim.Optimizer:
    """Three AdamW steps, so the optimizer holds moments and a step count."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.tensor([0, 3])).square().sum().backward()
        opt.step()
    return opt


def full_state(model: torch.nn.Module) -> TrainState:
    """A state with every field away from its default."""
    snap = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    return TrainState(
        step=17, phase2_step=5, phase_idx=1, phase_step=5, epoch=1, batch_pos=2,
        batches=[np.array([4, 0, 7]), np.array([1, 2]), np.array([3, 6, 5])],
        loss_sums={"ce": torch.tensor(1.25), "rl": 0.5}, best={k: v + 1 for k, v in snap.items()}, best_acc=0.75,
        phase1_best={k: v - 1 for k, v in snap.items()}, phase1_best_acc=0.5, reward_mean=0.625,
        history=[{"phase": 1, "epoch": 1, "step": 8, "drl_acc": 0.5}], elapsed=12.5,
    )  # fmt: skip


@pytest.fixture
def saved(tmp_path):
    """A state file, with the objects it was written from (RNGs advanced past their seeds)."""
    model = make_model()
    opt = trained(model)
    rng, env_rng = np.random.default_rng(SEED), np.random.default_rng(99)
    rng.standard_normal(7), env_rng.integers(10, size=3)
    state = full_state(model)
    path = tmp_path / STATE_FILE
    save_train_state(path, state, model, opt, rng=rng, env_rng=env_rng, config=CONFIG, seed=SEED)
    return path, state, model, opt, rng, env_rng


def load_fresh(path, *, config=CONFIG, seed=SEED, env_rng=None, model=None):
    model = model if model is not None else make_model(seed=1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    rng, env = np.random.default_rng(0), env_rng or np.random.default_rng(0)
    state = load_train_state(path, model, opt, rng=rng, env_rng=lambda: env, config=config, seed=seed)
    return state, model, opt, rng, env


def assert_same_state(a: TrainState, b: TrainState) -> None:
    plain = ("step", "phase2_step", "phase_idx", "phase_step", "epoch", "batch_pos", "best_acc", "phase1_best_acc",
             "reward_mean", "history", "elapsed")  # fmt: skip
    assert {k: getattr(a, k) for k in plain} == {k: getattr(b, k) for k in plain}
    assert [x.tolist() for x in a.batches] == [x.tolist() for x in b.batches]
    assert {k: float(v) for k, v in a.loss_sums.items()} == {k: float(v) for k, v in b.loss_sums.items()}
    for snap_a, snap_b in ((a.best, b.best), (a.phase1_best, b.phase1_best)):
        assert snap_a.keys() == snap_b.keys()
        assert all(torch.equal(snap_a[k], snap_b[k]) for k in snap_a)


# ----------------------------------------------------------------------------- round trip
def test_round_trip_restores_state_parameters_optimizer_and_rngs(saved):
    path, state, model, opt, rng, env_rng = saved
    torch.manual_seed(SEED)
    torch.rand(3)  # the torch generator state the file holds (saved after this point in a real run)
    save_train_state(path, state, model, opt, rng=rng, env_rng=env_rng, config=CONFIG, seed=SEED)
    want_torch = torch.rand(4)
    frozen_before = make_model(seed=1)[0].weight.detach().clone()

    torch.manual_seed(1234)
    got, model2, opt2, rng2, env2 = load_fresh(path)
    assert_same_state(got, state)
    for (k, p), (k2, p2) in zip(model.named_parameters(), model2.named_parameters()):
        if p.requires_grad:
            assert torch.equal(p, p2), k
    assert torch.equal(model2[0].weight, frozen_before)  # frozen parameters are not in the file
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert json.loads(json.dumps(s1["param_groups"])) == s2["param_groups"]  # betas come back as a list
    for i, st1 in s1["state"].items():
        assert st1.keys() == s2["state"][i].keys()
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][i][k])) for k, v in st1.items())
    assert torch.equal(torch.rand(4), want_torch)
    assert np.array_equal(rng2.standard_normal(5), rng.standard_normal(5))
    assert np.array_equal(env2.integers(1000, size=5), env_rng.integers(1000, size=5))


def test_layout_is_the_documented_one(saved):
    """Tensor names and document keys: files written before the TrainState refactor still load."""
    path = saved[0]
    tensors, doc = load_state(path)
    prefixes = {k.split(".", 1)[0] for k in tensors}
    assert prefixes == {"param", "opt", "best", "p1best", "rng", "batches"}
    assert {"param.1.weight", "param.1.bias", "best.1.weight", "p1best.1.bias", "rng.torch", "batches.flat",
            "batches.sizes", "opt.0.exp_avg", "opt.1.exp_avg_sq"} <= set(tensors)  # fmt: skip
    assert not any(k.startswith("param.0") for k in tensors)  # the frozen embedding
    assert tensors["batches.sizes"].tolist() == [3, 2, 3]
    assert set(doc) == {"config", "seed", "step", "phase2_step", "progress", "history", "best_acc", "best_loss", "phase1_best_acc",
                        "reward_mean", "rng_numpy", "rng_env", "optimizer", "elapsed"}  # fmt: skip
    assert doc["progress"] == {"phase_idx": 1, "done": 5, "epoch": 1, "pos": 2, "sums": {"ce": 1.25, "rl": 0.5}}


def test_defaults_round_trip_and_a_missing_env_is_not_built(tmp_path):
    model = make_model()
    opt = trained(model)
    path = tmp_path / STATE_FILE
    save_train_state(path, TrainState(), model, opt, rng=np.random.default_rng(0), env_rng=None, config=CONFIG, seed=SEED)

    def build_env():
        raise AssertionError("the saved run had no env: none must be built on load")

    got = load_train_state(path, make_model(), torch.optim.AdamW(model[1].parameters()), rng=np.random.default_rng(0),
                           env_rng=build_env, config=CONFIG, seed=SEED)  # fmt: skip
    assert got == TrainState()


# ----------------------------------------------------------------------------- refusals
def test_a_flipped_bit_fails_the_checksum(saved):
    path = saved[0]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_fresh(path)


@pytest.mark.parametrize("change", [{"config": {**CONFIG, "lr": 0.02}}, {"seed": SEED + 1}], ids=["config", "seed"])
def test_another_runs_state_is_refused(saved, change):
    with pytest.raises(CheckpointError, match="another configuration or seed"):
        load_fresh(saved[0], **change)


def test_a_state_for_another_model_is_refused(saved):
    other = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 3))  # 3 outputs, not 2
    other[0].requires_grad_(False)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_fresh(saved[0], model=other)


def test_nan_parameters_never_overwrite_the_last_good_state(saved):
    path, state, model, opt, rng, env_rng = saved
    before = path.read_bytes()
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss/parameters.*step 17.*is kept"):
        save_train_state(path, state, model, opt, rng=rng, env_rng=env_rng, config=CONFIG, seed=SEED)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [STATE_FILE]  # no temporary file left
