"""Interruption and resume: a killed run continues to the bit-identical final prompt; damaged or
malicious state files are refused; a NaN never overwrites the last good checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from crlprompt.agents import CRLAgent, CRLConfig
from crlprompt.checkpoint import STATE_FILE, CheckpointError, load_state
from crlprompt.envs.soft_prompt import PromptSearch
from helpers.tiny import tiny_setup

CFG = CRLConfig(
    lr=1e-2, phase1_epochs=1.5, phase2_epochs=1.5, rl_interval=3, reward_batch_size=16, rl_samples=2,
    rl_estimator="antithetic",
)  # fmt: skip


def _run(ckpt=None, *, fail=None, log_dir=None):
    """Train on the tiny task; ``fail(agent)`` may raise KeyboardInterrupt to simulate a kill."""
    setup = tiny_setup()
    agent = CRLAgent(setup, CFG, seed=3, progress=False, log_dir=None if log_dir is None else str(log_dir))
    if fail is not None:
        orig = agent.batch_loss

        def batch_loss(*a, **k):
            fail(agent)
            return orig(*a, **k)

        agent.batch_loss = batch_loss
    out = agent.learn(checkpoint=ckpt, checkpoint_every=2)
    return out, setup.model.prompt.theta.detach().clone()


@pytest.fixture(scope="module")
def reference():
    return _run()


def _stop_at(step):
    def fail(agent):
        if agent.state.step == step:
            raise KeyboardInterrupt

    return fail


@pytest.mark.parametrize("stop", [3, 9, 13, 19], ids=["phase1", "phase1-late", "phase2", "phase2-late"])
def test_resume_is_bit_identical(tmp_path, reference, stop):
    ref_out, ref_theta = reference
    ckpt = tmp_path / STATE_FILE
    with pytest.raises(KeyboardInterrupt):
        _run(ckpt, fail=_stop_at(stop))
    assert ckpt.exists()
    out, theta = _run(ckpt)
    assert 0 < out["resumed_from_step"] <= stop
    assert torch.equal(theta, ref_theta)
    assert [h["drl_acc"] for h in out["history"]] == [h["drl_acc"] for h in ref_out["history"]]
    assert out["test_acc"] == ref_out["test_acc"]


def test_resume_after_a_kill_during_reward_evaluation(tmp_path, reference, monkeypatch):
    ref_out, ref_theta = reference
    ckpt = tmp_path / STATE_FILE
    calls = {"n": 0}
    orig = PromptSearch.rewards

    def rewards(self, prompts, rng):
        calls["n"] += 1
        if calls["n"] == 2:  # the second RL reward of phase 2
            raise KeyboardInterrupt
        return orig(self, prompts, rng)

    monkeypatch.setattr(PromptSearch, "rewards", rewards)
    with pytest.raises(KeyboardInterrupt):
        _run(ckpt)
    monkeypatch.setattr(PromptSearch, "rewards", orig)
    out, theta = _run(ckpt)
    assert out["resumed_from_step"] > 0
    assert torch.equal(theta, ref_theta)


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for ``log_dir``: tag -> [(step, value)] in file order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("stop", [15, 21], ids=["rl-step-after-checkpoint", "train-log-at-checkpoint"])
def test_tensorboard_steps_are_not_repeated_after_a_resume(tmp_path, stop):
    """Stop 15: the killed run logged an RL reward at step 15 (phase-2 step N = 3) after its checkpoint at 14, which the
    resumed run logs again. Stop 21: ``train/*`` was logged at step 20 just before the checkpoint
    at 20, and the resumed run (from step 21 on) does not log it again. The logs must equal an
    uninterrupted run's."""
    pytest.importorskip("tensorboard")
    _run(log_dir=tmp_path / "ref")
    ref = _scalars(tmp_path / "ref")
    ckpt, tb = tmp_path / STATE_FILE, tmp_path / "tb"
    with pytest.raises(KeyboardInterrupt):
        _run(ckpt, fail=_stop_at(stop), log_dir=tb)
    partial = _scalars(tb)
    time.sleep(1.1)  # event files sort by their creation second: the resumed run's must come after
    out, _ = _run(ckpt, log_dir=tb)
    resumed = out["resumed_from_step"]
    if stop == 15:
        assert resumed == 14 and (15, ref["rl/reward"][0][1]) in partial["rl/reward"]  # would repeat
    else:
        assert resumed == 20 and partial["train/ce"][-1][0] == 20  # logged once, before the checkpoint
    got = _scalars(tb)
    for tag, events in got.items():
        steps = [step for step, _ in events]
        assert len(steps) == len(set(steps)), f"{tag} repeats steps: {steps}"
    assert got == ref


def test_resume_refuses_another_config(tmp_path):
    ckpt = tmp_path / STATE_FILE
    with pytest.raises(KeyboardInterrupt):
        _run(ckpt, fail=_stop_at(5))
    agent = CRLAgent(tiny_setup(), CRLConfig(lr=5e-3), seed=3, progress=False)
    with pytest.raises(CheckpointError, match="another configuration"):
        agent.learn(checkpoint=ckpt)


# ----------------------------------------------------------------------------- damaged / malicious
@pytest.fixture
def state_file(tmp_path):
    ckpt = tmp_path / STATE_FILE
    with pytest.raises(KeyboardInterrupt):
        _run(ckpt, fail=_stop_at(5))
    return ckpt


def test_bit_flip_fails_the_checksum(state_file):
    data = bytearray(state_file.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's bytes
    state_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_state(state_file)


def test_torn_file_is_refused(state_file):
    data = state_file.read_bytes()
    state_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable state file"):
        load_state(state_file)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_as_checkpoint_runs_no_code(tmp_path):
    from crlprompt.models import load_model
    from crlprompt.prompts import PromptedModel, PromptLayout, SoftPrompt, load_prompt

    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(marker))
    (tmp_path / STATE_FILE).write_bytes(evil)
    (tmp_path / "prompt.safetensors").write_bytes(evil)
    with pytest.raises(CheckpointError):
        load_state(tmp_path / STATE_FILE)
    lm = load_model("tiny-bert")
    pm = PromptedModel(lm, SoftPrompt(PromptLayout.for_model(lm, "deep", 2), lm), "linear", 2)
    with pytest.raises(Exception) as e:
        load_prompt(pm, tmp_path / "prompt.safetensors")
    assert not isinstance(e.value, (KeyboardInterrupt, SystemExit))
    assert not marker.exists(), "loading a checkpoint executed code"


def test_nan_never_overwrites_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / STATE_FILE
    setup = tiny_setup()
    agent = CRLAgent(setup, CRLConfig(lr=1e-2, phase1_epochs=2, phase2_epochs=0), seed=0, progress=False)
    orig = agent.batch_loss

    def poisoned(*a, **k):
        loss, parts, rl = orig(*a, **k)
        if agent.state.step >= 6:  # after checkpoints at steps 2 and 4
            loss = loss * float("nan")
        return loss, parts, rl

    agent.batch_loss = poisoned
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        agent.learn(checkpoint=ckpt, checkpoint_every=2)
    tensors, doc = load_state(ckpt)
    assert doc["step"] in (4, 6)
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())


# ----------------------------------------------------------------------------- real processes
def _cli(out: Path, extra=()):
    return [
        sys.executable, "-m", "crlprompt.cli", "train", "--task", "tiny", "--model", "tiny-llama", "--method", "crl",
        "--num-tokens", "4", "--phase1-epochs", "3", "--phase2-epochs", "8", "--rl-interval", "3",
        "--checkpoint-every", "2", "--out", str(out), *extra,
    ]  # fmt: skip


def _theta(run_dir: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "prompt.safetensors"))["theta"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_cli_run_resumes_to_the_same_prompt(tmp_path, sig):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    ref = tmp_path / "ref"
    subprocess.run(_cli(ref), check=True, env=env, capture_output=True, timeout=300)
    out = tmp_path / "run"
    state = tmp_path / ".run.partial" / STATE_FILE
    proc = subprocess.Popen(_cli(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be interrupted (machine too fast)")
    proc.send_signal(sig)  # right after the first checkpoint: most of the run is still ahead
    proc.wait(timeout=60)
    if proc.returncode == 0 and out.exists():  # it ended between the poll and the signal (an idle, fast machine)
        pytest.skip("the run finished before the signal reached it")
    assert proc.returncode != 0
    assert not out.exists(), "an interrupted run must not leave a half-written --out"
    assert state.exists()
    done = subprocess.run(_cli(out), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.equal(_theta(out), _theta(ref))
    assert not (tmp_path / ".run.partial").exists()


# ----------------------------------------------------------------------------- a partial run of other settings
def _interrupted_cli_run(out: Path, monkeypatch, extra=()) -> Path:
    """A `crl-prompt train` on the tiny task stopped at step 3 (after its first checkpoint): the partial dir."""
    from crlprompt import cli

    orig = CRLAgent.batch_loss

    def batch_loss(self, *a, **k):
        if self.state.step == 3:
            raise KeyboardInterrupt
        return orig(self, *a, **k)

    monkeypatch.setattr(CRLAgent, "batch_loss", batch_loss)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        cli.main([*_cli(out, extra)[3:], "--no-progress"])
    monkeypatch.setattr(CRLAgent, "batch_loss", orig)
    tmp = out.parent / f".{out.name}.partial"
    assert (tmp / STATE_FILE).is_file()
    return tmp


def test_a_partial_run_of_other_settings_is_refused_not_deleted(tmp_path, monkeypatch, capsys):
    from crlprompt import cli

    out = tmp_path / "run"
    tmp = _interrupted_cli_run(out, monkeypatch)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tmp.iterdir())
    with pytest.raises(SystemExit) as e:
        cli.main([*_cli(out, ["--lr", "2e-2"])[3:], "--no-progress"])
    assert e.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "crl-prompt: error:" in x]
    assert "interrupted run with other settings" in line and "agent.lr" in line, line
    assert "--overwrite" in line and "another --out" in line, line
    assert sorted((p.name, p.stat().st_mtime_ns) for p in tmp.iterdir()) == before  # nothing touched
    # --overwrite discards it and runs the new settings to the end
    cli.main([*_cli(out, ["--lr", "2e-2", "--overwrite"])[3:], "--no-progress"])
    assert (out / "prompt.safetensors").is_file() and not tmp.exists()
    assert json.loads((out / "config.json").read_text())["agent"]["lr"] == 2e-2


@pytest.mark.parametrize("how", [[], ["--no-progress"], ["--no-progress", "--overwrite"]], ids=["same", "progress", "overwrite"])
def test_a_partial_run_resumes_when_only_how_to_run_differs(tmp_path, monkeypatch, caplog, how):
    """The same command resumes (settings left at ``auto`` compare as given, not as resolved);
    --overwrite, --no-progress and --resume are not the run's identity either."""
    from crlprompt import cli

    out = tmp_path / "run"
    _interrupted_cli_run(out, monkeypatch)
    with caplog.at_level("INFO", logger="crlprompt"):
        cli.main([*_cli(out)[3:], *how])
    assert any("resuming the interrupted run" in r.getMessage() for r in caplog.records)
    assert (out / "prompt.safetensors").is_file()


def test_no_resume_discards_a_partial_run_only_with_overwrite(tmp_path, monkeypatch, capsys, caplog):
    from crlprompt import cli

    out = tmp_path / "run"
    tmp = _interrupted_cli_run(out, monkeypatch)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tmp.iterdir())
    with pytest.raises(SystemExit) as e:
        cli.main([*_cli(out)[3:], "--no-progress", "--no-resume"])
    assert e.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "crl-prompt: error:" in x]
    assert "--no-resume would discard it" in line and "--overwrite" in line, line
    assert sorted((p.name, p.stat().st_mtime_ns) for p in tmp.iterdir()) == before  # nothing touched
    with caplog.at_level("INFO", logger="crlprompt"):
        cli.main([*_cli(out)[3:], "--no-progress", "--no-resume", "--overwrite"])
    assert not any("resuming the interrupted run" in r.getMessage() for r in caplog.records)
    assert any("--no-resume was given" in r.getMessage() for r in caplog.records)
    assert (out / "prompt.safetensors").is_file() and not tmp.exists()
