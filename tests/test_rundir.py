"""The one writer of run directories: train, PromptClassifier.save and a search result write the same
layout, which crl-prompt eval, PromptClassifier.load and PEFT read, and never leave half a directory."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import crlprompt  # noqa: F401
from crlprompt.agents import RandomSearch
from crlprompt.rundir import partial_dir, write_run_dir
from crlprompt.runners.train import evaluate_checkpoint


def test_a_search_result_is_a_run_directory_that_eval_and_peft_read(tmp_path):
    vec = gym.make_vec("CRLPrompt/Tiny-Proj64-v0", num_envs=4, vectorization_mode="vector_entry_point")
    result = RandomSearch(vec, seed=0).learn(8)
    path = result.save(tmp_path / "found", vec)
    run = path.parent
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "adapter" / "head.safetensors").is_file()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == "ptv2" and cfg["algo"] == "random" and cfg["setup"]["pooling"] == "last"
    want = vec.unwrapped.evaluate(prompt=result.best_prompt, split="test")["accuracy"]
    assert evaluate_checkpoint(run, "test")["accuracy"] == pytest.approx(want)
    assert evaluate_checkpoint(run / "adapter", "test")["accuracy"] == pytest.approx(want)  # the PEFT adapter
    assert not partial_dir(run).exists()


def test_a_failing_write_leaves_nothing(tmp_path):
    from crlprompt.build import SetupConfig, build

    pm = build(SetupConfig(task="tiny", model="tiny-bert", num_tokens=2)).model

    def boom(tmp):
        (tmp / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_run_dir(tmp_path / "run", {"setup": {}}, pm, extra=boom)
    assert not (tmp_path / "run").exists() and not partial_dir(tmp_path / "run").exists()
    assert np.isfinite(pm.prompt.theta.detach().numpy()).all()
