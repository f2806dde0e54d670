"""Data parallelism with torchrun (gloo, 2 CPU processes): same prompt as 1 process on the same
global batch; sharded reward evaluation equals the unsharded one; and, in one process, the rule
that splits a global batch into rank shards (:func:`crlprompt.distributed.shard_batch`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _train_args(out: Path) -> list[str]:
    # β = 0: InfoNCE's in-batch negatives are per shard, so only CE + RL are exactly data-parallel.
    return [
        "train", "--task", "tiny", "--model", "tiny-llama", "--method", "crl", "--num-tokens", "4",
        "--lr", "1e-2", "--phase1-epochs", "2", "--phase2-epochs", "2", "--rl-interval", "3", "--beta", "0",
        "--prompt-dropout", "0", "--head-dropout", "0", "--rl-samples", "2", "--rl-estimator", "antithetic",
        "--reward-batch-size", "40", "--checkpoint-every", "0", "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    from safetensors.torch import load_file

    one, two = tmp_path / "one", tmp_path / "two"
    r1 = subprocess.run([sys.executable, "-m", "crlprompt.cli", *_train_args(one)], env=ENV, capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run([*TORCHRUN, "-m", "crlprompt.cli", *_train_args(two)], env=ENV, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    a, b = load_file(str(one / "prompt.safetensors")), load_file(str(two / "prompt.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    rec1 = json.loads((one / "metrics.jsonl").read_text().splitlines()[-1])
    rec2 = json.loads((two / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec1["test_acc"] == rec2["test_acc"]
    assert [json.loads(x)["drl_acc"] for x in (one / "metrics.jsonl").read_text().splitlines()[:-1]] == [
        json.loads(x)["drl_acc"] for x in (two / "metrics.jsonl").read_text().splitlines()[:-1]
    ]
    assert not (tmp_path / ".two.partial").exists(), "rank 0 alone writes; nothing left behind"


@pytest.mark.slow
def test_sharded_reward_equals_unsharded(tmp_path):
    from helpers.tiny import tiny_setup
    from crlprompt.scoring import score_population

    out = tmp_path / "scores.json"
    r = subprocess.run([*TORCHRUN, str(HERE / "helpers" / "sharded_score.py"), str(out)], env=ENV,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(out.read_text())
    setup = tiny_setup()
    theta = setup.model.prompt.theta.detach()
    thetas = theta + 0.3 * torch.randn(4, theta.numel(), generator=torch.Generator().manual_seed(0))
    ref = score_population(setup.model, setup.drl, thetas, max_rows=32)
    assert got["world"] == 2 and got["count"] == ref.count == len(setup.drl)
    assert got["accuracy"] == pytest.approx(ref.reward("accuracy").tolist(), abs=1e-7)
    assert got["margin"] == pytest.approx(ref.reward("margin").tolist(), abs=1e-5)


# ----------------------------------------------------------------------------- sharding, in one process
@pytest.mark.parametrize("n,world", [(8, 2), (7, 2), (5, 3), (32, 4)])
def test_shards_partition_the_batch_with_weights_summing_to_one(n, world):
    from crlprompt.distributed import shard_batch

    idx = np.random.default_rng(n).permutation(100)[:n]
    shards = [shard_batch(idx, r, world) for r in range(world)]
    for r, (shard, weight) in enumerate(shards):
        np.testing.assert_array_equal(shard, idx[r::world])
        assert weight == len(shard) / n
    assert sorted(np.concatenate([s for s, _ in shards]).tolist()) == sorted(idx.tolist())
    assert sum(w for _, w in shards) == pytest.approx(1.0, abs=1e-12)


def test_a_tail_batch_smaller_than_the_world_gives_empty_ranks_one_row_of_weight_zero():
    from crlprompt.distributed import shard_batch

    idx = np.array([11, 4])
    got = [shard_batch(idx, r, 4) for r in range(4)]
    assert [(s.tolist(), w) for s, w in got] == [([11], 0.5), ([4], 0.5), ([11], 0.0), ([11], 0.0)]


def test_one_process_takes_the_whole_batch():
    from crlprompt.distributed import shard_batch

    idx = np.arange(5)
    shard, weight = shard_batch(idx)  # no process group: rank 0 of 1
    assert shard is idx and weight == 1.0
    assert shard_batch(idx, 0, 1)[0] is idx
