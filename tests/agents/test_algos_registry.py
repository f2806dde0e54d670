"""The agent registry (crlprompt.agents.registry) that ``crl-prompt compare`` reads: the off-policy
and bandit agents run through ``crl-prompt compare`` at a small budget with records like the
others', the preflight knows each smallest update, an action too wide for the GP is refused before
anything is written, with the -Proj ids named; --algos, the help and the README's table come from
the registry, and register_agent adds a name."""

from __future__ import annotations

import json

import pytest

from crlprompt.agents import registry
from crlprompt.errors import ConfigError
from crlprompt.runners import compare

pytest.importorskip("stable_baselines3")
pytest.importorskip("botorch")

TINY_PROJ = "CRLPrompt/Tiny-Proj64-v0"
#: the off-policy and bandit agents: those the registry lists after the first five
NAMES = tuple(registry.names()[5:])


def test_every_agent_is_registered_once_with_a_class_and_a_table_row():
    assert registry.names()[:5] == ["random", "es", "cma", "cma-diag", "ppo"]
    assert NAMES == ("offpolicy", "gp", "racing", "anchor", "sac", "td3", "crossq", "ars")
    from crlprompt.agents.base import SearchAgent

    for name, spec in registry.REGISTRY.items():
        assert spec.name == name and issubclass(spec.agent_class, SearchAgent), name
        assert f"`{name}`" in registry.markdown_table() and name in registry.help_text()


def test_algos_help_and_readme_table_come_from_the_registry(capsys):
    from pathlib import Path

    with pytest.raises(SystemExit):
        compare.main(["--help"])
    help_text = capsys.readouterr().out
    assert all(f"  {n} " in help_text for n in registry.names())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- generated: algorithms -->\n")[1].split("<!-- end: algorithms -->")[0]
    assert block == compare.algorithms_table()
    with pytest.raises(ConfigError, match="unknown algorithm.*choose from random, es"):
        compare.CompareConfig(algos="random,nosuch")


def test_register_agent_adds_one_name_and_refuses_clashes(monkeypatch):
    from crlprompt.agents import RandomSearch, register_agent

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))  # leave the real one as it was
    spec = register_agent("wide-random", RandomSearch, differs="scale 3", scale=3.0)
    assert registry.names()[-1] == "wide-random" and spec.options == {"scale": 3.0}
    assert "scale" not in spec.arguments() and "batch" in spec.arguments()
    assert compare.CompareConfig(algos="wide-random").algo_list == ["wide-random"]
    with pytest.raises(ConfigError, match="already registered"):
        register_agent("random", RandomSearch)
    with pytest.raises(ConfigError, match="without commas"):
        register_agent("a,b", RandomSearch)
    with pytest.raises(ConfigError, match=r"takes no argument\(s\) \['scale'\]"):
        spec.check_kwargs({"scale": 1.0})


@pytest.mark.slow
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
        assert r["best_env_reward"] > r["center_drl_acc"] - 10  # a finite margin, measured on the env
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
