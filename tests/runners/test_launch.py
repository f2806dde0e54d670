"""The grid launcher: local and on a local two-CPU Ray instance, records gathered in the driver."""

from __future__ import annotations

import pytest

from crlprompt.errors import ConfigError
from crlprompt.runners.launch import run_cells


def square(cell: int) -> dict:
    import os

    return {"cell": cell, "value": cell * cell, "pid": os.getpid(), "threads": os.environ.get("OMP_NUM_THREADS")}


def test_local_runs_every_cell_in_order():
    got = []
    assert run_cells([1, 2, 3], square, lambda c, r: got.append((c, r["value"]))) == 3
    assert got == [(1, 1), (2, 4), (3, 9)]


def test_bad_launcher_and_cpus():
    with pytest.raises(ConfigError, match="launcher"):
        run_cells([1], square, lambda c, r: None, launcher="slurm")
    with pytest.raises(ConfigError, match="cpus_per_cell"):
        run_cells([1], square, lambda c, r: None, cpus_per_cell=0)


@pytest.mark.slow
def test_ray_runs_cells_in_workers_and_gathers_records():
    ray = pytest.importorskip("ray")
    import os

    from pathlib import Path

    here = str(Path(__file__).resolve().parents[1])  # tests/: workers import runners.test_launch to run square()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": here}})
    try:
        got = {}
        run_cells(range(4), square, lambda c, r: got.__setitem__(c, r), launcher="ray")
    finally:
        ray.shutdown()
    assert {c: r["value"] for c, r in got.items()} == {0: 0, 1: 1, 2: 4, 3: 9}
    assert all(r["pid"] != os.getpid() for r in got.values())  # ran in Ray workers
    assert {r["threads"] for r in got.values()} == {"1"}  # one torch thread per 1-CPU cell


@pytest.mark.slow
def test_reproduce_on_ray_gathers_the_same_records_and_skips_finished(tmp_path):
    """`crl-prompt reproduce --launcher ray` on a local two-CPU Ray instance: every run's record
    lands in results.jsonl once; a rerun finds nothing to do."""
    pytest.importorskip("ray")
    from crlprompt.runners import crl

    argv = ["--tasks", "tiny", "--models", "tiny-llama", "--methods", "ptv2", "--seeds", "0", "1",
            "--phase1-epochs", "0.25", "--phase2-epochs", "0", "--out", str(tmp_path),
            "--no-progress", "--launcher", "ray"]  # fmt: skip
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        first = crl.main(argv)
        again = crl.main(argv)
    finally:
        ray.shutdown()
    recs = crl.load_results(tmp_path / "results.jsonl")
    assert sorted(r["seed"] for r in recs) == [0, 1] and len(first) == len(again) == 2
    assert all(0 <= r["test_acc"] <= 1 for r in recs)


@pytest.mark.slow
def test_compare_on_ray_matches_local_records(tmp_path):
    """`crl-prompt compare --launcher ray`: each run is a Ray task building its own env; the
    records equal the local launcher's (same seeds, same rewards) and a rerun skips them."""
    pytest.importorskip("ray")
    import ray

    from crlprompt.runners.compare import CompareConfig, run_compare

    common = dict(env_id="CRLPrompt/Tiny-Proj64-v0", algos="random,es", budget=40, seeds="0,1", num_envs=20,
                  baselines=False, save_prompts=False, progress=False)  # fmt: skip
    local = run_compare(CompareConfig(out=tmp_path / "local", **common))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_compare(CompareConfig(out=tmp_path / "ray", launcher="ray", **common))
        again = run_compare(CompareConfig(out=tmp_path / "ray", launcher="ray", **common))
    finally:
        ray.shutdown()

    def key(rs):
        return sorted((r["algo"], r["seed"], round(r["best_env_reward"], 6), round(r["selected_test_acc"], 6)) for r in rs)

    assert key(remote) == key(local) and len(again) == 4
    assert len((tmp_path / "ray" / "results.jsonl").read_text().splitlines()) == 4  # nothing run twice
