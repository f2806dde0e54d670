"""The reproduction runner's k-shot grid (crlprompt.runners.crl) and the table tool
(crlprompt.runners.tables): records, resume, legacy names, paired differences with CIs."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from crlprompt.agents.crl import CRLConfig
from crlprompt.errors import ConfigError
from crlprompt.runners import crl, tables
from crlprompt.runners.common import mean_std
from crlprompt.runners.crl import Cell, ReproduceConfig, grid, record_cell, reproduce
from crlprompt.runners.records import SCHEMA, migrate, migrate_file


def tiny_kshot(out, **kw) -> ReproduceConfig:
    base = dict(tasks=("tiny",), models=("tiny-bert",), methods=("ptv2", "crl"), seeds=(0,), k_shots=(8,),
                data_seeds=(13, 21), out=out, progress=False,
                agent=CRLConfig(phase1_epochs=1, phase2_epochs=1, lr=1e-2, rl_interval=1))  # fmt: skip
    return ReproduceConfig(**(base | kw))


def test_grid_cells_and_names(tmp_path):
    cfg = tiny_kshot(tmp_path, seeds=(0, 1), tag="g2e-3")
    cells = grid(cfg)
    assert len(cells) == 2 * 2 * 2 and len(set(cells)) == 8
    assert cells[0] == Cell("tiny", "tiny-bert", "ptv2", 0, 13, 8, "g2e-3")
    assert cells[0].name == "tiny-tiny-bert-ptv2-s0-k8-d13-g2e-3"
    assert Cell("trec", "org/m", "crl", 2).name == "trec-org_m-crl-s2"  # a full-data cell keeps the old name
    legacy = {"task": "trec", "model": "minilm", "method": "ptv2", "seed": 1}
    assert record_cell(legacy) == Cell("trec", "minilm", "ptv2", 1, 0, None, "")


def test_kshot_grid_records_carry_provenance_and_resume(tmp_path, monkeypatch):
    results = tmp_path / "k.jsonl"
    first = reproduce(tiny_kshot(tmp_path / "out", results=results))
    recs = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(first) == len(recs) == 4
    assert {(r["method"], r["data_seed"], r["k_shot"]) for r in recs} == {
        (m, d, 8) for m in ("ptv2", "crl") for d in (13, 21)}
    for r in recs:
        assert r["versions"]["commit"] and r["versions"]["torch"] and r["machine"]["device"] == "cpu"
        assert r["schema"] == SCHEMA and r["kind"] == "train" and r["machine"]["torch_threads"] >= 1
        assert r["config"]["setup"]["k_shot"] == 8 and r["config"]["setup"]["data_seed"] == r["data_seed"]
        assert r["n_train"] == r["n_drl"] == 16  # 8 per class, 2 classes
        assert r["config"]["agent"]["beta"] == (0.3 if r["method"] == "crl" else 0.0)
    assert (tmp_path / "out" / "kshot.md").read_text().count("| tiny | tiny-bert | 8 |") == 1

    monkeypatch.setattr(crl, "run", lambda *a, **k: pytest.fail("a recorded run was redone"))
    again = reproduce(tiny_kshot(tmp_path / "out", results=results))
    assert len(again) == 4 and results.read_text().count("\n") == 4


def test_a_results_file_from_before_the_schema_is_refused_until_migrated(tmp_path, monkeypatch):
    results = tmp_path / "old.jsonl"
    old = {"task": "tiny", "model": "tiny-bert", "method": "ptv2", "seed": 0, "test_acc": 0.5, "k_shot": 8,
           "data_seed": 13, "config": {"agent": {"beta": 0.0}}}  # fmt: skip
    results.write_text(json.dumps(old) + "\n")
    monkeypatch.setattr(crl, "run", lambda *a, **k: pytest.fail("nothing runs before the results file is read"))
    with pytest.raises(ConfigError, match="migrate_records.py"):
        reproduce(tiny_kshot(tmp_path / "out", results=results))
    migrate_file(results)
    assert crl.read_records(results)[0]["migrated_from"]["file"] == "old.jsonl"


def test_phase2_lr_protocol_keeps_the_best_on_d_rl(tmp_path):
    """--phase2-lrs: one run per phase-2 lr, the record of the best D_RL accuracy, every point kept."""
    agent = CRLConfig(phase1_epochs=0.5, phase2_epochs=1, lr=1e-2, rl_interval=1, head_init="keep")  # a random head: the rates differ
    cfg = tiny_kshot(tmp_path / "out", methods=("crl",), k_shots=(), data_seeds=(0,), tag="paper-lr",
                     phase2_lrs=(1e-3, 1e-1), agent=agent)  # fmt: skip
    (rec,) = reproduce(cfg)
    grid = rec["phase2_lr_grid"]
    assert [p["phase2_lr"] for p in grid] == [1e-3, 1e-1]
    assert grid[0]["phase1_drl_acc"] == grid[1]["phase1_drl_acc"]  # phase 1 is the same run
    assert grid[1]["drl_acc"] > grid[0]["drl_acc"]  # here the second rate wins on D_RL ...
    assert rec["config"]["agent"]["phase2_lr"] == 1e-1 and rec["test_acc"] == grid[1]["test_acc"]  # ... and is kept
    assert rec["tag"] == "paper-lr" and (tmp_path / "out" / "runs" / "tiny-tiny-bert-crl-s0-paper-lr-lr2_0.1").is_dir()
    with pytest.raises(ConfigError, match="--tag"):
        tiny_kshot(tmp_path, phase2_lrs=(1e-3,))
    with pytest.raises(ConfigError, match="> 0"):
        tiny_kshot(tmp_path, phase2_lrs=(0.0,), tag="x")


def test_a_protocol_tag_is_paired_within_itself():
    """Runs tagged like their Prompt v2 partners pair with them, not with untagged runs."""
    recs = [_rec("ptv2", 0.9, d) for d in (13, 21, 42)] + [_rec("ptv2", 0.5, d, tag="paper-lr") for d in (13, 21, 42)]
    recs += [_rec("crl", 0.6, d, tag="paper-lr", phase2_lr_grid=[{}]) for d in (13, 21, 42)]
    for r in recs:
        r["config"]["agent"].update(lr=1e-3, phase2_lr=2e-3)
    recs = [tables.normalize(r) for r in recs]
    text = tables.paired_table(recs, tag="paper-lr")
    assert "+0.100" in text and "CRL-Prompt better" in text  # 0.6 - 0.5, not 0.6 - 0.9
    report = "\n".join(tables.few_shot_sections(recs))
    assert "protocol `paper-lr`" in report and "phase-2 lr chosen on D_RL (runs): 0.002: 3" in report
    assert "sweep" not in report


def _rec(method, acc, data_seed=13, seed=0, k=16, tag="", **extra):
    return {"task": "trec", "model": "minilm", "method": method, "seed": seed, "data_seed": data_seed, "k_shot": k,
            "tag": tag, "test_acc": acc, "config": {"setup": {}, "agent": {"beta": 0.3 if "crl" == method else 0.0}},
            **extra}  # fmt: skip


def _write(path, recs) -> None:
    """Records as today's writers leave them (schema stamped; versions and machine are not read here)."""
    path.write_text("".join(json.dumps({"schema": SCHEMA, "kind": "train", **r}) + "\n" for r in recs))


def test_legacy_records_are_read_in_todays_names():
    """Migration wrote today's names into the old records (crlprompt.runners.records); the tables read them."""
    old = {"task": "trec", "model": "minilm", "method": "ptv1", "seed": 0, "test_acc": 0.9,
           "config": {"agent": {"beta": 0.0}}}  # fmt: skip

    def read(rec):
        return tables.normalize(migrate(rec, "paper_grid_h100.jsonl"))

    assert read(old)["method"] == "prompt-tuning"
    assert read(dict(old, method="handcraft"))["method"] == "handcraft-cloze"
    old_crl = read(dict(old, method="crl", config={"agent": {"beta": 0.3}}))
    assert old_crl["method"] == "crl" and old_crl["contrast_mode"] == "noise"
    assert (old_crl["k_shot"], old_crl["data_seed"], old_crl["tag"]) == (None, 0, "")
    new = read(_rec("ptv1", 0.8))
    assert new["method"] == "ptv1"  # a record that stores its setup is today's P-Tuning v1


def test_t_ci_matches_the_formula():
    d = [0.01, -0.02, 0.03, 0.00, 0.02]
    m, lo, hi = tables.t_ci(d)
    half = 2.7764451051977987 * np.std(d, ddof=1) / math.sqrt(5)  # t_{0.975, 4}
    assert m == pytest.approx(np.mean(d)) and (lo, hi) == pytest.approx((m - half, m + half))
    assert math.isnan(tables.t_ci([0.1])[1])


def test_paired_table_pairs_by_seeds_and_gives_a_verdict():
    recs = []
    for i, d in enumerate((13, 21, 42, 87, 100)):
        for s in (0, 1):
            base = 0.5 + 0.01 * i + 0.001 * s  # the seeds differ by far more than the paired differences
            recs += [_rec("ptv2", base, d, s), _rec("crl", base + 0.05 + 0.002 * (i - s), d, s),
                     _rec("crl-rl", base + (0.01 if (i + s) % 2 else -0.01), d, s)]
    recs.append(_rec("crl", 0.99, data_seed=999))  # no Prompt v2 partner: left out of the pairs
    text = tables.paired_table([tables.normalize(r) for r in recs], methods=("crl", "crl-rl"))
    rows = {line.split("|")[4].strip(): line for line in text.splitlines()[2:]}
    diffs = [0.05 + 0.002 * (i - s) for i in range(5) for s in (0, 1)]
    m, lo, hi = tables.t_ci(diffs)
    base = [0.5 + 0.01 * i + 0.001 * s for i in range(5) for s in (0, 1)]
    assert f"| 10 | {mean_std(base)} |" in rows["CRL-Prompt"] and f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" in rows["CRL-Prompt"]
    assert "10/0/0" in rows["CRL-Prompt"] and rows["CRL-Prompt"].rstrip().endswith("| CRL-Prompt better |")
    assert "| 10/0/0 | – |" in rows["CRL-Prompt"]  # records without phase-1 accuracies: nothing to count
    assert rows["+ RL"].rstrip().endswith("| no difference detected |") and "5/0/5" in rows["+ RL"]
    worse = [tables.normalize(_rec("ptv2", 0.6, d)) for d in (1, 2, 3)]
    worse += [tables.normalize(_rec("crl", 0.5 - 0.01 * d, d)) for d in (1, 2, 3)]
    assert tables.paired_table(worse).splitlines()[2].rstrip().endswith("| Prompt v2 better |")


def test_paired_table_counts_runs_that_kept_their_phase1_prompt():
    recs = []
    for d in (13, 21, 42):
        recs.append(_rec("ptv2", 0.5, d, phase1_drl_acc=0.6, drl_acc=0.6, phase1_test_acc=0.5))
        kept = d != 42  # phase 2 beat phase 1 on D_RL only for data seed 42
        recs.append(_rec("crl", 0.5 if kept else 0.52, d, phase1_drl_acc=0.6, drl_acc=0.6 if kept else 0.65,
                         phase1_test_acc=0.5))  # fmt: skip
    row = tables.paired_table([tables.normalize(r) for r in recs], methods=("crl",)).splitlines()[2]
    assert "| 1/2/0 | 2/3 |" in row


def test_sweep_table_reports_the_variant_settings_and_spread():
    recs = [tables.normalize(_rec("ptv2", 0.5 + 0.02 * i, d)) for i, d in enumerate((13, 21, 42))]
    for i, d in enumerate((13, 21, 42)):
        r = _rec("crl-rl", 0.4 + 0.02 * i + 0.001 * i, d, tag="g2e-1-N10-single")
        r["config"]["agent"] = {"beta": 0.0, "gamma": 0.2, "rl_interval": 10, "rl_estimator": "single", "rl_samples": 1}
        recs.append(tables.normalize(r))
    text = tables.sweep_table(recs)
    row = text.splitlines()[2]
    assert "g2e-1-N10-single" in row and "| 0.2 | 10 | single (1) |" in row
    assert "| 3 |" in row and "-0.099 [" in row and "| 0.020 |" in row and "Prompt v2 better" in row


def test_report_pairs_a_full_data_sweep_point_with_untagged_prompt_v2(tmp_path):
    base = _rec("ptv2", 0.90)
    point = _rec("crl-rl", 0.87, tag="g2e-1-N10-single")
    point["config"]["agent"] = {"beta": 0.0, "gamma": 0.2, "rl_interval": 10, "rl_estimator": "single", "rl_samples": 1}
    for r in (base, point):
        r["k_shot"] = None
    _write(tmp_path / "trec-full.jsonl", (base, point))
    text = tables.report([tmp_path])
    assert "## Full data: sweep (tagged variants)" in text
    row = next(line for line in text.splitlines() if "g2e-1-N10-single" in line)
    assert "| full |" in row and "| 1 | -0.030 | – | n = 1: no interval |" in row
    assert "| Prompt v2 | 0.900 |" in text.split("## Full data: sweep")[0]  # Table 1 holds the untagged run


def test_report_never_prints_two_decoder_inits_side_by_side(tmp_path):
    def legacy(method, acc, seed):
        return {"task": "trec", "model": "smollm2", "method": method, "seed": seed, "test_acc": acc,
                "config": {"agent": {"beta": 0.3 if method == "crl" else 0.0}}}  # fmt: skip

    (tmp_path / "paper_grid_h100.jsonl").write_text(
        "".join(json.dumps(legacy(m, a, s)) + "\n" for m, a in (("ptv2", 0.35), ("crl", 0.42)) for s in (0, 1)))
    (tmp_path / "smollm2_ptv2_token_init_h100.jsonl").write_text(
        "".join(json.dumps(legacy("ptv2", 0.96, s)) + "\n" for s in (0, 1)))
    for f in tmp_path.glob("*.jsonl"):  # the file names mean something to the migration only
        migrate_file(f)
    recs = tables.collect([tmp_path])
    assert sorted((r["init"], r["current"]) for r in recs if r["method"] == "ptv2") == [
        ("random", False), ("random", False), ("tokens", True), ("tokens", True)]
    text = tables.report([tmp_path])
    current, superseded = text.split("## Superseded")
    assert "| Prompt v2 | 0.960 ± 0.000 |" in current and "| CRL-Prompt |" not in current
    assert "| Prompt v2 | 0.350 ± 0.000 |" in superseded and "| CRL-Prompt | 0.420 ± 0.000 |" in superseded
    assert "first RL update at phase-2 step 1" in superseded


def _git(*args) -> str | None:
    """``git args`` in this checkout (stdout), or None where the tests do not run from a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def test_git_commit_is_the_checkouts_head():
    """``git_commit()`` is HEAD's full hash, and the commit the process started from is HEAD or one of
    its ancestors (other commits may land while the suite runs)."""
    from crlprompt.runners import common

    head = _git("rev-parse", "HEAD")
    if head is None:
        pytest.skip("the tests do not run from a git checkout")
    for _ in range(3):  # a commit landing between the two reads: read again
        ours, after = common.git_commit(), _git("rev-parse", "HEAD")
        if head == after:
            break
        head = after
    assert re.fullmatch(r"[0-9a-f]{40}", head) and ours == head
    assert re.fullmatch(r"[0-9a-f]{40}", common.START_COMMIT or "")
    assert _git("merge-base", "--is-ancestor", common.START_COMMIT, head) is not None


def test_records_name_the_commit_the_process_started_from(monkeypatch):
    """A grid that outlives a commit keeps naming the code it loaded; the newer HEAD is noted beside it."""
    from crlprompt.runners import common

    started, later = "a" * 40, "f" * 40
    monkeypatch.setattr(common, "START_COMMIT", started)
    monkeypatch.setattr(common, "git_commit", lambda: started)  # HEAD has not moved
    v = common.versions()
    assert v["commit"] == started and "commit_now" not in v
    monkeypatch.setattr(common, "git_commit", lambda: later)  # HEAD moved while the process ran
    v = common.versions()
    assert v["commit"] == started and v["commit_now"] == later


def test_provenance_says_which_crl_runs_predate_the_schedule_fix():
    old = {"task": "trec", "model": "minilm", "method": "crl", "seed": 0, "test_acc": 0.9,
           "config": {"agent": {"beta": 0.3}}}  # fmt: skip
    new = _rec("crl", 0.95, k=None)
    new["model"], new["config"]["agent"]["contrast_mode"] = "smollm2", "paper"
    assert "step N" in tables.provenance([tables.normalize(new)])
    old = migrate(old, "paper_grid_h100.jsonl")  # it stores no setup: its first RL update came at step 1
    assert old["config"]["agent"]["rl_first_step"] == 1
    assert "step 1 (the earlier schedule)" in tables.provenance([tables.normalize(old)])
    mixed = tables.provenance([tables.normalize(old), tables.normalize(new)])
    assert "for the 1 runs of the earlier schedule" in mixed and "step N for the 1 newer ones (trec/smollm2)" in mixed


# ----------------------------------------------------------------------------- reruns into one --out
def one_cell(out, **kw) -> ReproduceConfig:
    return tiny_kshot(out, **{"methods": ("ptv2",), "data_seeds": (13,), **kw})


def faster(**kw) -> CRLConfig:
    return CRLConfig(**{"phase1_epochs": 1, "phase2_epochs": 1, "lr": 1e-2, "rl_interval": 1, **kw})


def test_the_grid_settings_are_kept_and_a_rerun_with_others_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "out"
    reproduce(one_cell(out))
    (grid_cfg,) = json.loads((out / "config.json").read_text())["grids"]
    assert grid_cfg["agent"]["lr"] == 1e-2 and grid_cfg["tasks"] == ["tiny"] and grid_cfg["k_shots"] == [8]
    assert not {"progress", "launcher", "ray_address", "cpus_per_run", "overwrite"} & set(grid_cfg)

    monkeypatch.setattr(crl, "run", lambda *a, **k: pytest.fail("a refused rerun ran"))
    results = (out / "results.jsonl").read_text()
    with pytest.raises(ConfigError, match=r"task tiny k=8 made with other settings \(agent.lr: 0.01 -> 0.001\)") as e:
        reproduce(one_cell(out, agent=faster(lr=1e-3)))
    assert "--overwrite" in str(e.value) and "another --out" in str(e.value)
    with pytest.raises(ConfigError, match=r"max_train: None -> 40"):
        reproduce(one_cell(out, max_train={"tiny": 40}))
    assert (out / "results.jsonl").read_text() == results
    assert json.loads((out / "config.json").read_text())["grids"] == [grid_cfg]
    reproduce(one_cell(out, progress=True, max_train={"trec": 40}))  # how it runs, another task's cap: the same grid


def test_a_grid_may_grow_and_other_tags_keep_their_own_settings(tmp_path):
    out = tmp_path / "out"
    reproduce(one_cell(out))
    reproduce(one_cell(out, seeds=(0, 1)))  # one more seed, the same settings: resumed and extended
    reproduce(one_cell(out, tag="slow", agent=faster(lr=1e-3)))  # a variant beside it, as sweeps do
    recs = crl.read_records(out / "results.jsonl")
    assert sorted((r["seed"], r["tag"], r["config"]["agent"]["lr"]) for r in recs) == [
        (0, "", 1e-2), (0, "slow", 1e-3), (1, "", 1e-2)]
    with pytest.raises(ConfigError, match="tag 'slow'"):
        reproduce(one_cell(out, tag="slow"))


def test_overwrite_starts_this_grid_afresh_and_keeps_the_others(tmp_path):
    out = tmp_path / "out"
    reproduce(one_cell(out))
    reproduce(one_cell(out, tag="slow", agent=faster(lr=1e-3)))
    name = "tiny-tiny-bert-ptv2-s0-k8-d13"
    old = (out / "runs" / name / "prompt.safetensors").read_bytes()
    reproduce(one_cell(out, agent=faster(lr=5e-3), overwrite=True))
    recs = crl.read_records(out / "results.jsonl")
    assert sorted((r["tag"], r["config"]["agent"]["lr"]) for r in recs) == [("", 5e-3), ("slow", 1e-3)]
    assert (out / "runs" / name / "prompt.safetensors").read_bytes() != old  # rerun, not skipped
    grids = json.loads((out / "config.json").read_text())["grids"]
    assert sorted((g["tag"], g["agent"]["lr"]) for g in grids) == [("", 5e-3), ("slow", 1e-3)]


def test_an_out_written_before_config_json_resumes_and_gains_one(tmp_path, monkeypatch):
    out = tmp_path / "out"
    reproduce(one_cell(out))
    (out / "config.json").unlink()  # a results directory from before the settings were kept
    monkeypatch.setattr(crl, "run", lambda *a, **k: pytest.fail("a recorded run was redone"))
    assert len(reproduce(one_cell(out))) == 1
    assert json.loads((out / "config.json").read_text())["grids"][0]["agent"]["lr"] == 1e-2


def test_an_unreadable_grid_config_is_one_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{torn")
    with pytest.raises(ConfigError, match="config.json is unreadable"):
        reproduce(one_cell(out))


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
def test_the_cli_refuses_a_rerun_with_other_settings_in_one_line(tmp_path):
    from helpers.cli import run_cli

    args = ("reproduce", "--tasks", "tiny", "--models", "tiny-bert", "--methods", "ptv2", "--seeds", "0",
            "--k-shots", "8", "--data-seeds", "13", "--phase1-epochs", "1", "--phase2-epochs", "0", "--lr", "1e-2",
            "--no-progress", "--out", "grid")  # fmt: skip
    first = run_cli(*args, cwd=tmp_path, timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    proc = run_cli(*args[:-2], "--lr", "3e-2", "--out", "grid", cwd=tmp_path, timeout=240)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "error:" in x]
    assert line.startswith("crl-prompt reproduce: error: grid holds runs of task tiny k=8")
    assert "agent.lr: 0.01 -> 0.03" in line and "--overwrite" in line and "another --out" in line
    again = run_cli(*args[:-2], "--lr", "3e-2", "--overwrite", "--out", "grid", cwd=tmp_path, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]


def test_a_results_file_in_a_missing_directory_is_made_and_a_directory_is_refused(tmp_path, caplog):
    results = tmp_path / "new" / "deeper" / "k.jsonl"
    with caplog.at_level("INFO", logger="crlprompt"):
        recs = reproduce(tiny_kshot(tmp_path / "out", methods=("ptv2",), data_seeds=(13,), results=results))
    assert len(recs) == 1 and results.read_text().count("\n") == 1
    assert "[1/1] tiny-tiny-bert-ptv2-s0-k8-d13" in caplog.text  # counted within this run, not the whole file
    with caplog.at_level("INFO", logger="crlprompt"):
        reproduce(tiny_kshot(tmp_path / "out2", methods=("ptv2",), data_seeds=(21,), results=results))
    assert "[1/1] tiny-tiny-bert-ptv2-s0-k8-d21" in caplog.text and results.read_text().count("\n") == 2
    with pytest.raises(ConfigError, match="is a directory"):
        tiny_kshot(tmp_path / "out3", results=tmp_path / "new")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        tiny_kshot(tmp_path / "out4", results=tmp_path / "file" / "k.jsonl")
