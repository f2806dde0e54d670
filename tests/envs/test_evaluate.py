"""``env.unwrapped.evaluate``: a found prompt scored on any split in one call (an action, a θ, a saved prompt)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import crlprompt  # noqa: F401  (registers the ids)
from crlprompt.errors import EnvError
from crlprompt.scoring import accuracy


def test_evaluate_scores_an_action_a_theta_and_a_saved_prompt(tmp_path):
    env = gym.make("CRLPrompt/Tiny-Proj64-v0")
    s = env.unwrapped.search
    a = np.random.default_rng(0).uniform(-1, 1, env.action_space.shape).astype(np.float32)
    theta = env.unwrapped.prompt_for(a)
    by_action = env.unwrapped.evaluate(a, split="test")
    want = accuracy(s.model, s.setup.test, theta=torch.as_tensor(theta))
    assert by_action["accuracy"] == pytest.approx(want) and by_action["n"] == len(s.setup.test)
    assert env.unwrapped.evaluate(prompt=theta, split="test") == by_action
    start = env.unwrapped.evaluate(split="drl")  # the center
    assert start["accuracy"] == pytest.approx(accuracy(s.model, s.setup.drl, theta=s.center)) and start["loss"] > 0
    from crlprompt.prompt_io import save_prompt

    with torch.no_grad():
        s.model.prompt.theta.copy_(torch.as_tensor(theta))
    save_prompt(s.model, tmp_path / "p.safetensors")
    assert env.unwrapped.evaluate(prompt=str(tmp_path / "p.safetensors"), split="test")["accuracy"] == pytest.approx(want)
    vec = gym.make_vec("CRLPrompt/Tiny-Proj64-v0", num_envs=4, vectorization_mode="vector_entry_point")
    assert vec.unwrapped.evaluate(a, split="test")["accuracy"] == pytest.approx(want)


def test_evaluate_on_a_seeded_sample_of_rows():
    """``sample=k`` scores k rows of the split, the same k for the same seed, so two prompts are paired."""
    env = gym.make("CRLPrompt/Tiny-Proj64-v0")
    s = env.unwrapped.search
    a = np.random.default_rng(1).uniform(-1, 1, env.action_space.shape).astype(np.float32)
    k = len(s.setup.test) // 3
    one = env.unwrapped.evaluate(a, split="test", sample=k)
    assert one["n"] == k and env.unwrapped.evaluate(a, split="test", sample=k) == one
    rows = np.sort(np.random.default_rng(0).choice(len(s.setup.test), size=k, replace=False))
    want = accuracy(s.model, s.setup.test.subset(rows), theta=torch.as_tensor(env.unwrapped.prompt_for(a)))
    assert one["accuracy"] == pytest.approx(want)
    losses = {env.unwrapped.evaluate(a, split="test", sample=k, sample_seed=z)["loss"] for z in range(4)}
    assert len(losses) > 1  # other seeds draw other rows
    assert env.unwrapped.evaluate(a, split="test", sample=10**6) == env.unwrapped.evaluate(a, split="test")


@pytest.mark.parametrize(("kw", "match"), [({"split": "dev"}, "split must be one of"),
                                           ({"sample": 0}, "sample must be an int"),
                                           ({"prompt": np.zeros(3)}, "shape"),
                                           ({"prompt": np.full(1, np.nan)}, "finite")])  # fmt: skip
def test_evaluate_refuses_bad_input(kw, match):
    env = gym.make("CRLPrompt/Tiny-Proj64-v0")
    with pytest.raises(EnvError, match=match):
        env.unwrapped.evaluate(**kw)


def test_unknown_reset_options_are_refused():
    env = gym.make("CRLPrompt/Tiny-Proj64-v0")
    with pytest.raises(EnvError, match="unknown reset option.*centre"):
        env.reset(seed=0, options={"centre": np.zeros(3)})
    env.reset(seed=0, options={"center": env.unwrapped.search.center.numpy()})  # the known one still works


@pytest.mark.parametrize("kind", ["prompt-file", "adapter", "plain-peft-adapter"])
def test_a_checkpoint_brings_its_own_prompt_shape(tmp_path, kind):
    """The registered id asks for 4 deep tokens; a checkpoint of another shape (a prompt file, or a PEFT
    adapter directory, ours or saved by PEFT itself) builds the env with its own."""
    from crlprompt.build import SetupConfig, build
    from crlprompt.prompt_io import save_peft_adapter, save_prompt

    from helpers.peft import plain_peft_adapter

    setup = build(SetupConfig(task="tiny", model="tiny-llama", num_tokens=3, prompt="shallow"))
    if kind == "prompt-file":
        path = tmp_path / "p.safetensors"
        save_prompt(setup.model, path)
        theta = setup.model.prompt.theta.detach()
    elif kind == "adapter":
        path = save_peft_adapter(setup.model, tmp_path / "adapter", spec=setup.spec, setup=setup.config)
        theta = setup.model.prompt.theta.detach()
    else:
        path = tmp_path / "plain"
        peft = plain_peft_adapter(path, "tiny-llama", "PROMPT_TUNING", tokens=3)[0]
        theta = peft.prompt_encoder["default"].embedding.weight.detach().reshape(-1)
    env = gym.make("CRLPrompt/Tiny-v0", checkpoint=str(path), head="checkpoint")
    layout = env.unwrapped.search.model.layout
    assert layout.num_tokens == 3 and layout.kind == "shallow"
    assert torch.equal(env.unwrapped.search.center.cpu(), theta)
