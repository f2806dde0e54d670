"""The compare runner on the tiny id: records (with commit, versions, machine), baseline rows
(start, HandCraft, gradient ceiling), the normalized gain, the table tool, the curve plot, resume
of an interrupted run, bad input (one error, nothing written) and the algorithm registry."""

from __future__ import annotations

import json

import pytest

from crlprompt.errors import ConfigError
from crlprompt.runners import compare
from crlprompt.runners.compare_report import load_tree, markdown_table, normalized_gains, separation
from crlprompt.runners.records import SCHEMA

TINY = "CRLPrompt/Tiny-Proj64-v0"
ENV_KW = '{"sigma": 1.0, "reward": "hinge"}'


def run(out, *extra: str, algos: str = "random,cma", seeds: str = "0,1") -> list[dict]:
    return compare.main([
        "--env-id", TINY, "--algos", algos, "--budget", "40", "--seeds", seeds, "--data-seeds", "0,1",
        "--out", str(out), "--env-kwargs", ENV_KW, "--grad-epochs", "2", "--no-progress", *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "out"
    return out, run(out)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_cover_every_run_with_provenance(done):
    out, records = done
    assert [(r["algo"], r["seed"], r["data_seed"]) for r in records] == [
        (a, s, d) for d in (0, 1) for a in ("random", "cma") for s in (0, 1)
    ]
    assert lines(out / "results.jsonl") == json.loads(json.dumps(records))
    for r in records:
        assert r["evals"] == 40 and r["budget"] == 40 and r["example_forwards"] == 40 * 64
        assert r["versions"]["commit"] and r["versions"]["torch"] and r["machine"]["cpus"] >= 1
        assert r["selected"] in ("best", "final") and 0.0 <= r["selected_test_acc"] <= 1.0
        assert r["selected_drl_acc"] == max(r["best_drl_acc"], r["final_drl_acc"])
        assert [e for e, _ in r["history"]] == [20, 40]
    assert (out / "runs" / "cma-s1-d1" / "prompt.safetensors").is_file()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baselines_per_data_seed_and_the_normalized_gain(done):
    out, records = done
    base = lines(out / "baselines.jsonl")
    rows = ("floor", "start", "gradient-ptv2", "gradient-prompt-tuning", "gradient")
    assert [(b["algo"], b["data_seed"]) for b in base] == [(a, d) for d in (0, 1) for a in rows]
    ptv2 = base[2]
    assert ptv2["steps"] == 2 * 8 and ptv2["epochs"] == 2 and ptv2["prompt"] == "deep"  # 256 rows / batch 32
    for d in (0, 1):  # the ceiling is the gradient method better on D_RL
        by = {b["algo"]: b for b in base if b["data_seed"] == d}
        better = max(("gradient-ptv2", "gradient-prompt-tuning"), key=lambda a: by[a]["selected_drl_acc"])
        if by["gradient-ptv2"]["selected_drl_acc"] != by["gradient-prompt-tuning"]["selected_drl_acc"]:
            assert by["gradient"]["method"] == better
        assert by["gradient"]["selected_test_acc"] == by[by["gradient"]["method"]]["selected_test_acc"]
        assert by["floor"]["evals"] == 0 and by["floor"]["pooling"] == "last"  # tiny-llama: a decoder
    gains = normalized_gains(records, base)
    floor = {b["data_seed"]: b["selected_test_acc"] for b in base if b["algo"] == "floor"}
    top = {b["data_seed"]: b["selected_test_acc"] for b in base if b["algo"] == "gradient"}
    for r, g in zip(records, gains):
        d = r["data_seed"]
        if top[d] - floor[d] < 0.01:  # the gradient does not beat the floor here: the normalized gain is undefined
            assert g is None
        else:
            assert g == pytest.approx((r["selected_test_acc"] - floor[d]) / (top[d] - floor[d]))
    table = (out / "table.md").read_text()
    assert "| start prompt | 2 |" in table and "| gradient ceiling (the better on D_RL) | 2 |" in table
    assert "| floor: no prompt + logistic regression | 2 |" in table
    assert "| random | 4 | 64 | 40 |" in table and "| cma | 4 | 64 | 40 |" in table


def test_table_tool_merges_every_run_under_a_directory(done, capsys):
    out, _ = done
    compare.main(["--table", str(out.parent)])
    printed = capsys.readouterr().out
    assert f"Env `{TINY}`" in printed and "| cma | 4 |" in printed
    assert (out.parent / "table.md").read_text() == printed.rstrip("\n") + "\n"


@pytest.mark.slow
def test_an_interrupted_run_resumes_its_missing_cells_only(done, tmp_path):
    src, _ = done
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text((src / "config.json").read_text())
    base = (src / "baselines.jsonl").read_text().splitlines()
    (out / "baselines.jsonl").write_text("\n".join(line for line in base if '"gradient"' not in line or '"data_seed": 1' in line) + "\n")
    first = (src / "results.jsonl").read_text().splitlines()[:3]
    (out / "results.jsonl").write_text("\n".join(first) + "\n" + first[3 - 1][:40])  # a torn last line
    records = run(out, "--no-save-prompts", seeds="0,1,2")
    got = [(r["algo"], r["seed"], r["data_seed"]) for r in records]
    assert got[:3] == [(r["algo"], r["seed"], r["data_seed"]) for r in map(json.loads, first)]
    assert sorted(got) == sorted((a, s, d) for d in (0, 1) for a in ("random", "cma") for s in (0, 1, 2))
    now = lines(out / "baselines.jsonl")  # only the missing gradient row of data seed 0 was added
    assert sorted((b["algo"], b["data_seed"]) for b in now) == sorted(
        (a, d) for d in (0, 1) for a in ("floor", "start", "gradient-ptv2", "gradient-prompt-tuning", "gradient"))
    was = [json.loads(line) for line in base if '"gradient"' in line and '"data_seed": 0' in line][0]
    assert [b for b in now if b["algo"] == "gradient" and b["data_seed"] == 0][0]["selected_test_acc"] == was["selected_test_acc"]
    assert [json.loads(line) for line in base if '"start"' in line] == [b for b in now if b["algo"] == "start"]
    # the same run again does nothing new
    assert len(run(out, "--no-save-prompts", seeds="0,1,2")) == 12


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--budget", "10"], "smaller than one update of random"),
        (["--algos", "random,simplex"], "unknown algorithm"),
        (["--algo-kwargs", '{"cma": {"popsize": 1}}'], "popsize must be an int >= 2"),
        (["--algo-kwargs", '{"cma": {"sigma0": -1}}'], "sigma0 must be finite"),
        (["--env-id", "CRLPrompt/Nope-v0"], "unknown env id"),
        (["--env-kwargs", '{"projection": "sparse"}'], "projection must be one of"),
        (["--seeds", "0,x"], "Error parsing --seeds"),  # flag syntax: tyro says which flag
    ],
)
def test_bad_input_is_one_error_and_writes_nothing(tmp_path, capsys, extra, match):
    out = tmp_path / "out"
    args = ["--env-id", TINY, "--algos", "random,cma", "--budget", "40", "--out", str(out), "--no-progress", *extra]
    with pytest.raises(SystemExit) as e:
        compare.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert match in err or match in str(e.value)
    assert not out.exists()


def test_other_settings_in_the_same_out_are_refused_until_overwrite(done, tmp_path):
    src, _ = done
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text((src / "config.json").read_text())
    before = (out / "config.json").read_text()
    with pytest.raises(ConfigError, match="budget differ"):
        compare.run_compare(compare.CompareConfig(env_id=TINY, budget=60, out=out, env_kwargs=ENV_KW, grad_epochs=2,
                                                  progress=False))  # fmt: skip
    assert (out / "config.json").read_text() == before


def test_the_registry_takes_a_new_algorithm_in_one_line(tmp_path, monkeypatch):
    from crlprompt.agents import RandomSearch, register_agent, registry

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))  # leave the real one as it was
    register_agent("wide", RandomSearch, scale=3.0)
    records = compare.main(["--env-id", TINY, "--algos", "wide", "--budget", "20", "--out", str(tmp_path / "o"),
                            "--no-baselines", "--no-progress", "--no-save-prompts"])  # fmt: skip
    assert [r["algo"] for r in records] == ["wide"] and records[0]["evals"] == 20
    assert not (tmp_path / "o" / "baselines.jsonl").exists()


def test_a_verbalizer_head_adds_the_handcraft_row(tmp_path):
    compare.main(["--env-id", "CRLPrompt/Tiny-v0", "--algos", "random", "--budget", "20", "--out", str(tmp_path / "o"),
                  "--env-kwargs", '{"head": "verbalizer", "start": "handcraft", "reward": "ce"}', "--grad-epochs", "1",
                  "--no-progress", "--no-save-prompts"])  # fmt: skip
    base = lines(tmp_path / "o" / "baselines.jsonl")
    assert [b["algo"] for b in base] == ["handcraft", "icl", "start", "gradient-ptv2", "gradient-prompt-tuning", "gradient"]
    assert all(0.0 <= b["selected_test_acc"] <= 1.0 for b in base)
    assert base[1]["demos"] >= 2  # at least one demonstration of each class
    text = (tmp_path / "o" / "table.md").read_text()
    assert "| floor: HandCraft (no prompt, zero-shot) | 1 |" in text and "| floor: in-context demonstrations | 1 |" in text


def test_markdown_table_of_synthetic_records():
    base = [{"env_id": "E", "algo": a, "seed": 0, "data_seed": 13, "selected_drl_acc": acc, "selected_test_acc": acc,
             "seconds": 1.0, "evals": 1} for a, acc in (("floor", 0.6), ("start", 0.5), ("gradient", 0.9))]  # fmt: skip
    runs = [{"env_id": "E", "algo": "cma", "seed": s, "data_seed": 13, "budget": 100, "evals": 100, "action_dim": 500,
             "selected_drl_acc": 0.8, "selected_test_acc": acc, "seconds": 2.0, "evals_per_s": 50.0,
             "example_forwards": 3200} for s, acc in ((0, 0.7), (1, 0.9))]  # fmt: skip
    assert normalized_gains(runs, base) == pytest.approx([1 / 3, 1.0])  # (0.7 - 0.6) / (0.9 - 0.6), (0.9 - 0.6) / 0.3
    table = markdown_table(runs, base)
    assert ("| cma | 2 | 500 | 100 | 3200 ± 0 | 0.800 ± 0.000 | 0.800 ± 0.141 | +30.0 ± 14.1 | +20.0 ± 14.1 "
            "| +0.0 ± 14.1 | 0.67 ± 0.47 |") in table  # fmt: skip
    under = markdown_table([_run("cma", 0, 13, 0.55)], base)
    assert "| -5.0 **under the floor** |" in under


def _run(algo, seed, data_seed, test, rl=0.5, budget=100):
    return {"env_id": "E", "algo": algo, "seed": seed, "data_seed": data_seed, "budget": budget, "evals": budget,
            "action_dim": 500, "selected_drl_acc": rl, "selected_test_acc": test, "seconds": 1.0, "evals_per_s": 1.0,
            "example_forwards": 32}  # fmt: skip


def test_separation_says_whether_the_winner_beats_the_runner_up():
    runs = []
    for d in (13, 21, 42, 87, 100):
        base = 0.5 + 0.02 * (d % 7)  # data seeds differ far more than the algorithms do
        runs += [_run("cma", 0, d, base + 0.05), _run("es", 0, d, base + 0.01 * (d % 2)), _run("random", 0, d, base)]
        runs += [_run("cma", 0, d, base + (0.01 if d % 2 else -0.01), budget=8), _run("es", 0, d, base, budget=8)]
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in separation(runs).splitlines()
            if line.startswith("| ")}  # fmt: skip
    assert "| cma | es | 5 |" in rows[("100", "test")] and rows[("100", "test")].rstrip().endswith("| beyond the seed spread |")
    assert rows[("8", "test")].rstrip().endswith("| not beyond the seed spread |")


def test_load_tree_keeps_one_baseline_row_per_data_seed(tmp_path):
    """Two budgets on one env each write the start row of a data seed; the table counts it once; a
    record of no schema is refused."""
    for budget in (240, 1000):
        out = tmp_path / f"b{budget}"
        out.mkdir()
        row = {"schema": SCHEMA, "kind": "baseline", "env_id": "E", "algo": "start", "seed": 0, "data_seed": 13,
               "selected_test_acc": 0.5}  # fmt: skip
        (out / "baselines.jsonl").write_text(json.dumps(row) + "\n")
        run = {"schema": SCHEMA, "kind": "search", **_run("cma", 0, 13, 0.6, budget=budget)}
        (out / "results.jsonl").write_text(json.dumps(run) + "\n")
    runs, base = load_tree(tmp_path)
    assert len(runs) == 2 and len(base) == 1
    (tmp_path / "b240" / "results.jsonl").write_text(json.dumps(_run("cma", 0, 13, 0.6)) + "\n")
    with pytest.raises(ConfigError, match="migrate_records"):
        load_tree(tmp_path)


def test_no_normalized_gain_where_the_gradient_ceiling_learnt_nothing():
    base = [{"env_id": "E", "algo": a, "seed": 0, "data_seed": d, "selected_drl_acc": acc, "selected_test_acc": acc,
             "seconds": 1.0, "evals": 1} for d, a, acc in ((13, "floor", 0.318), (13, "gradient", 0.316),
                                                          (21, "floor", 0.30), (21, "gradient", 0.40))]  # fmt: skip
    runs = [_run("cma", 0, 13, 0.51), _run("cma", 0, 21, 0.35)]
    assert normalized_gains(runs, base) == [None, pytest.approx(0.5)]  # not (0.51 - 0.318) / -0.002
    assert "gradient gains ≥ 1 point over the floor (21)" in markdown_table(runs, base)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_unreadable_config_in_out_is_one_config_error(tmp_path, text, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(text)
    with pytest.raises(SystemExit) as e:
        run(out, algos="random", seeds="0")
    assert e.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert str(out / "config.json") in line and "--overwrite" in line and "--out" in line
    assert (out / "config.json").read_text() == text and not (out / "results.jsonl").exists()
