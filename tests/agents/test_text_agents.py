"""The text-prompt agents (handcraft, APE, LCP) on the tiny text id, with the tiny random Llama as the
agent LM; SmolLM2 as agent and target behind the slow marker."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import crlprompt  # noqa: F401  (registers the ids)
from crlprompt.agents.registry import get_spec
from crlprompt.errors import ConfigError

TEXT = "CRLPrompt/Tiny-Text-v0"
TINY_AGENT = {"agent_model": "tiny-llama", "max_new_tokens": 6}


@pytest.fixture(scope="module")
def setup():
    """The tiny text id's model and data, built once (every env below gets it as ``setup=``)."""
    return gym.make(TEXT).unwrapped.search.setup


def build(name, setup, seed=0, **kw):
    kw = kw if name == "handcraft" else {**TINY_AGENT, **kw}
    return get_spec(name).build(TEXT, {"setup": setup}, seed, num_envs=1, **kw)


@pytest.mark.parametrize("name", ["ape", "lcp"])
@pytest.mark.parametrize("budget", [1, 7, 13])
def test_budget_counts_target_evaluations_and_is_never_exceeded(setup, name, budget):
    agent, env = build(name, setup, candidates=4)
    search = env.unwrapped.search
    before = search.num_evals
    result = agent.learn(budget)
    assert result.evals == search.num_evals - before <= budget and result.evals >= 1
    assert len(agent.scored) == result.evals  # every scored instruction cost one evaluation
    assert result.best_reward == max(agent.scored.values()) == agent.scored[result.best_prompt]
    assert env.action_space.contains(result.best_prompt)
    evals = [e for e, _ in result.history]
    best = [r for _, r in result.history]
    assert evals == sorted(evals) and evals[-1] == result.evals and best == sorted(best)
    assert result.target_seconds > 0 and result.agent_seconds >= 0


@pytest.mark.parametrize("name", ["ape", "lcp"])
def test_same_seed_same_search_other_seed_other_instructions(setup, name):
    runs = [build(name, setup, seed=s)[0] for s in (0, 0, 1)]
    results = [a.learn(10) for a in runs]
    assert results[0].best_prompt == results[1].best_prompt and results[0].history == results[1].history
    assert list(runs[0].scored) == list(runs[1].scored) != list(runs[2].scored)


def test_handcraft_scores_the_bare_template_once(setup):
    from crlprompt.floors import handcraft_floor

    agent, env = build("handcraft", setup)
    result = agent.learn(5)
    assert result.evals == 1 and result.best_prompt == "" and result.history == [(1, result.best_reward)]
    assert env.unwrapped.evaluate("", split="drl")["accuracy"] == pytest.approx(handcraft_floor(setup)["drl_acc"])


def test_ape_resamples_variations_of_its_best_instructions(setup):
    agent, _ = build("ape", setup, candidates=4, keep=2, variations=1)
    asked = []
    write = agent.write
    agent.write = lambda meta, n: asked.append(meta) or write(meta, n)
    agent.learn(12)
    assert "input-output pairs" in asked[0] and len(asked) > 1
    later = asked[1:3]  # the first round after induction: variations of the two best so far
    firsts = [p for p, _ in sorted(agent.scored.items(), key=lambda kv: -kv[1])]
    assert all("Generate a variation of the following instruction" in m for m in later)
    assert any(p in later[0] for p in firsts)


def test_lcp_shows_good_and_bad_instructions_with_their_scores(setup):
    agent, _ = build("lcp", setup, candidates=4, per_round=2, top=2, bottom=1)
    agent.learn(4)  # the induction round alone
    ranked = agent.ranked()
    meta = agent.contrast()
    good, bad = meta.split("Good instructions:")[1].split("Bad instructions:")
    assert f"score {ranked[0][1]:.3f}: {ranked[0][0]}" in good and f"score {ranked[1][1]:.3f}" in good
    assert f"score {ranked[-1][1]:.3f}: {ranked[-1][0]}" in bad and ranked[0][0] not in bad
    assert "Input:" in meta and "Output:" in meta


@pytest.mark.parametrize("name", ["ape", "lcp"])
def test_init_prompts_are_scored_first(setup, name):
    """LCP's adaptation use: start from instructions found for another target."""
    start = ["the movie was great", "what is the number"]
    agent, _ = build(name, setup, init_prompts=start)
    agent.learn(6)
    assert list(agent.scored)[:2] == start


def test_a_callback_stops_the_search_and_a_result_saves_its_instruction(setup, tmp_path):
    agent, env = build("ape", setup, candidates=3)
    result = agent.learn(30, callback=lambda evals, best: evals < 3)
    assert result.evals == 3
    path = result.save(tmp_path / "run", env, meta={"seed": 0})
    doc = json.loads(path.read_text())
    assert doc["prompt"] == result.best_prompt and doc["reward"] == result.best_reward and doc["seed"] == 0
    assert doc["setup"]["task"] == "tiny" and doc["text_env"]["reward"] == "ce"


def test_text_agents_refuse_soft_ids_and_bad_options(setup):
    with pytest.raises(ConfigError, match="Text-v0"):
        get_spec("ape").build("CRLPrompt/Tiny-v0", {}, 0, num_envs=1, **TINY_AGENT)
    for kw, match in (({"candidates": 0}, "candidates"), ({"temperature": 0.0}, "temperature"),
                      ({"init_prompts": "one string"}, "init_prompts"), ({"sigma": 1.0}, "takes no argument")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            build("ape", setup, **kw)
    agent, _ = build("ape", setup, agent_model="tiny-bert")
    with pytest.raises(ConfigError, match="causal LM"):
        agent.learn(2)


def test_agent_lm_helpers(setup):
    from crlprompt.agents.agent_lm import agent_model, demonstrations, instruction_of

    assert instruction_of('Instruction: "Rate the review \u2014 positive or negative."\nMore text', 256) == (
        "Rate the review - positive or negative.")  # fmt: skip
    assert instruction_of("one two three four", 9) == "one two" and instruction_of("\n \n", 10) == ""
    demos = demonstrations(setup, 4, np.random.default_rng(0))
    assert len(demos) == 4 and {y for _, y in demos} == set(setup.spec.verbalizer)  # classes interleaved
    assert agent_model("tiny-llama", setup.lm) is setup.lm  # the target's model, shared
    assert agent_model("tiny-llama", setup.lm, private=True) is not setup.lm


def test_compare_runs_text_agents_and_writes_the_soft_benchmark_records(setup, tmp_path):
    from crlprompt.runners.compare import CompareConfig, run_compare
    from crlprompt.runners.records import read_records

    kw = json.dumps({"ape": TINY_AGENT, "lcp": TINY_AGENT})
    cfg = CompareConfig(env_id=TEXT, algos=("handcraft", "ape", "lcp"), budget=6, seeds=(0,), out=tmp_path / "cmp",
                        algo_kwargs=kw, progress=False)  # fmt: skip
    runs = run_compare(cfg)
    assert sorted(r["algo"] for r in runs) == ["ape", "handcraft", "lcp"]
    for r in runs:
        assert r["evals"] <= 6 and r["action_dim"] == "text" and isinstance(r["best_prompt"], str)
        assert 0 <= r["selected_test_acc"] <= 1 and r["target_seconds"] > 0
    base = read_records(tmp_path / "cmp" / "baselines.jsonl", "baseline")
    assert [b["algo"] for b in base] == ["handcraft", "icl"]
    hand = next(r for r in runs if r["algo"] == "handcraft")
    assert hand["selected_test_acc"] == pytest.approx(base[0]["selected_test_acc"])  # the same measurement
    table = (tmp_path / "cmp" / "table.md").read_text()
    assert "| ape | 1 | text |" in table and "floor: HandCraft" in table
    assert run_compare(cfg) == runs  # a rerun resumes: nothing left to do
    bad = CompareConfig(env_id=TEXT, algos=("cma",), budget=6, out=tmp_path / "bad", progress=False)
    with pytest.raises(ConfigError, match="text-prompt agents: handcraft"):
        run_compare(bad)


def test_ppo_terms_kl_is_zero_only_where_policy_and_anchor_agree():
    import torch

    from crlprompt.losses.ppo import kl_penalty, ppo_clip_loss

    logp, mask = torch.tensor([[-1.0, -2.0, -0.5]]), torch.tensor([[1.0, 1.0, 0.0]])
    assert float(kl_penalty(logp, logp, mask)) == 0.0
    assert float(kl_penalty(logp, logp + torch.tensor([[0.0, 0.3, 5.0]]), mask)) > 0  # the masked token is ignored
    assert float(kl_penalty(logp, logp + torch.tensor([[0.0, 0.0, 5.0]]), mask)) == 0.0
    new = torch.tensor([0.0, 0.0], requires_grad=True)  # ratio e^1 > 1 + clip for a positive advantage: no gradient
    ppo_clip_loss(new, torch.tensor([-1.0, 0.0]), torch.tensor([1.0, -1.0]), 0.2).backward()
    assert new.grad[0] == 0 and new.grad[1] != 0


SP_KW = {"agent_model": "tiny-llama", "max_new_tokens": 8, "batch": 4, "lr": 1e-2}


@pytest.mark.parametrize("name", ["stableprompt", "stableprompt-ppo"])
def test_stableprompt_trains_its_adapter_within_the_budget_and_leaves_the_target_alone(setup, name):
    import torch

    agent, env = get_spec(name).build(TEXT, {"setup": setup}, 0, num_envs=1, **SP_KW)
    target = {n: p.clone() for n, p in setup.lm.full.named_parameters()}
    events = []
    result = agent.learn(14, callback=events.append)
    assert result.evals <= 14 and result.evals == len(agent.scored)
    lora_b = {n: p for n, p in agent.policy.named_parameters() if "lora_B" in n}
    assert lora_b and any(float(p.detach().abs().sum()) > 0 for p in lora_b.values())  # B starts at 0: it was trained
    base = [p for n, p in agent.policy.named_parameters() if "lora_" not in n]
    assert not any(p.requires_grad for p in base)
    assert all(torch.equal(p, target[n]) for n, p in setup.lm.full.named_parameters())
    moved = [e.diagnostics["anchor_moved"] for e in events]
    assert moved and (any(moved) if name == "stableprompt" else not any(moved))
    assert agent.anchor == ("appo" if name == "stableprompt" else "previous")


def test_appo_anchor_moves_only_on_improvement_and_kl_is_zero_at_the_anchor(setup):
    import torch

    from crlprompt.losses.ppo import kl_penalty

    agent, _ = get_spec("stableprompt").build(TEXT, {"setup": setup}, 0, num_envs=1, **SP_KW)
    agent.start()
    prompt, gen, texts = agent.sample_batch()
    assert len(texts) == 4 and gen.shape[0] == 4
    with torch.no_grad():
        logp, mask = agent.log_probs(prompt, gen)
        with agent.anchored():
            ref, _ = agent.log_probs(prompt, gen)
    assert float(kl_penalty(logp, ref, mask)) == 0.0  # policy == anchor at the start (LoRA B = 0)
    assert agent.move_anchor(-0.5) and agent.anchor_moves == 1
    with torch.no_grad():
        next(p for n, p in agent.policy.named_parameters() if "lora_B" in n).add_(0.5)
    kept = {n: v.clone() for n, v in agent.anchor_state.items()}
    assert not agent.move_anchor(-0.6) and not agent.move_anchor(-0.5)  # no improvement: the anchor stays
    assert all(torch.equal(kept[n], v) for n, v in agent.anchor_state.items())
    with torch.no_grad():
        logp, mask = agent.log_probs(prompt, gen)
        with agent.anchored():
            ref, _ = agent.log_probs(prompt, gen)
    assert float(kl_penalty(logp, ref, mask)) > 0
    assert agent.move_anchor(-0.4)  # an improvement: the anchor is the policy now
    assert all(torch.equal(v, dict(agent.policy.named_parameters())[n]) for n, v in agent.anchor_state.items())


def test_stableprompt_adapter_saves_as_a_peft_adapter(setup, tmp_path):
    import torch
    from peft import PeftModel

    from crlprompt.models import load_model

    agent, _ = get_spec("stableprompt").build(TEXT, {"setup": setup}, 0, num_envs=1, **SP_KW)
    agent.learn(8)
    agent.save_adapter(tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(load_model("tiny-llama").full, str(tmp_path / "adapter"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, agent.policy(input_ids=ids).logits, atol=1e-6)


def test_rlprompt_samples_twin_words_and_moves_toward_the_better_sample(setup):
    agent, env = get_spec("rlprompt").build(TEXT, {"setup": setup}, 0, num_envs=1, batch=4, positions=3)
    assert len(agent.words) == 57  # vocab_size 256 asked: all the tiny tokenizer has
    result = agent.learn(9)
    assert result.evals <= 9 and all(len(p.split()) == 3 and set(p.split()) <= set(agent.words) for p in agent.scored)
    agent.start()  # a uniform policy; one update on two known samples
    agent._sampled = [(np.array([0, 1, 2]), "good"), (np.array([3, 4, 5]), "bad")]
    agent.scored = {"good": 1.0, "bad": 0.0}
    agent.tell([], np.array([]))
    p = agent.probs()
    assert p[0, 0] > p[0, 1] == p[0, 2] > p[0, 3] and np.allclose(p.sum(1), 1)


@pytest.mark.slow
def test_ape_with_smollm2_writes_english_instructions_for_sst2(shared_data_dir):
    env = gym.make("CRLPrompt/SST2-SmolLM2-Text-v0", data_dir=str(shared_data_dir), max_test=16)
    agent = get_spec("ape").agent_class(env, seed=0, candidates=3, max_new_tokens=24)
    result = agent.learn(3)
    assert 1 <= result.evals <= 3 and sum(c.isalpha() for c in result.best_prompt) >= 10
    assert agent.lm is env.unwrapped.search.setup.lm  # SmolLM2 is agent and target: loaded once
