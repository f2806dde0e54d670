"""The off-policy and bandit agents in the compare runner's registry (crlprompt.runners.algos):
every one runs through ``crl-prompt compare`` at a small budget with records like the others', its
preflight knows its smallest update, and an action too wide for the GP is refused before anything
is written, with the -Proj ids named."""

from __future__ import annotations

import json

import pytest

from crlprompt.errors import ConfigError
from crlprompt.runners import compare
from crlprompt.runners.algos import OFFPOLICY_ALGORITHMS

pytest.importorskip("stable_baselines3")
pytest.importorskip("botorch")

TINY_PROJ = "CRLPrompt/Tiny-Proj64-v0"
NAMES = ("offpolicy", "gp", "racing", "anchor", "sac", "td3", "crossq", "ars")


def test_every_offpolicy_agent_is_registered():
    assert tuple(OFFPOLICY_ALGORITHMS) == NAMES
    assert all(compare.ALGORITHMS[n] is OFFPOLICY_ALGORITHMS[n] for n in NAMES)
    assert {"random", "es", "cma", "cma-diag", "ppo"} < set(compare.ALGORITHMS)  # the others are still there


def test_each_runs_through_compare(tmp_path):
    pytest.importorskip("sb3_contrib")
    out = tmp_path / "cmp"
    records = compare.main([
        "--env-id", TINY_PROJ, "--algos", ",".join(NAMES), "--budget", "32", "--seeds", "0", "--num-envs", "8",
        "--out", str(out), "--env-kwargs", '{"reward": "margin"}', "--no-baselines", "--no-save-prompts",
        "--no-progress",
    ])  # fmt: skip
    assert [r["algo"] for r in records] == list(NAMES)
    for r in records:
        assert 0 < r["evals"] <= 32, r["algo"]
        assert 0.0 <= r["selected_test_acc"] <= 1.0 and r["history"], r["algo"]
        assert r["best_env_reward"] > r["center_rl_acc"] - 10  # a finite margin, measured on the env
    assert [json.loads(x)["algo"] for x in (out / "results.jsonl").read_text().splitlines()] == list(NAMES)


def test_preflight_knows_each_smallest_update(tmp_path):
    """A budget below one update fails before anything is written (GP: its 2K-point design;
    racing: one race of 16 on 64 rows, 320 example-forwards = 5 evaluations)."""
    for algo, need in (("gp", 16), ("racing", 5)):
        out = tmp_path / algo
        with pytest.raises(SystemExit) as e:
            compare.main(["--env-id", TINY_PROJ, "--algos", algo, "--budget", str(need - 1), "--num-envs", "8",
                          "--out", str(out), "--no-baselines", "--no-progress"])  # fmt: skip
        assert e.value.code == 2 and not out.exists()


def test_gp_on_a_wide_action_names_the_projected_ids(tmp_path):
    out = tmp_path / "wide"
    cfg = compare.CompareConfig(env_id="CRLPrompt/Tiny-v0", algos="gp", budget=32, num_envs=8, out=out,
                                baselines=False, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="Tiny-Proj64-v0"):  # D = 256 > 200
        compare.run_compare(cfg)
    assert not out.exists()
