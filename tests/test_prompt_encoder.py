"""crlprompt.prompt_encoder: P-Tuning v1 (a shallow prompt produced by an MLP/LSTM prompt encoder),
checked against PEFT's PromptEncoder (PromptEncoderConfig, P_TUNING) layer for layer and end to end."""

from __future__ import annotations

import copy

import pytest
import torch

from crlprompt.build import SetupConfig, build
from crlprompt.errors import ConfigError
from crlprompt.models import load_model
from crlprompt.prompt_encoder import EncodedPrompt, copy_into_peft, peft_prompt_encoder_config
from crlprompt.prompts import PromptedModel, PromptLayout, load_prompt, save_prompt

ENCODERS = ("mlp", "lstm")
MODELS = ("tiny-bert", "tiny-llama")


def encoded(lm, kind, tokens=3, seed=1) -> PromptedModel:
    layout = PromptLayout.for_model(lm, "shallow", tokens)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PromptedModel(lm, EncodedPrompt(layout, lm, encoder=kind, seed=seed), "linear", 2).eval()


def peft_model(lm, pm):
    from peft import get_peft_model

    base = copy.deepcopy(lm.body if lm.arch == "encoder" else lm.full)
    model = get_peft_model(base, peft_prompt_encoder_config(lm, pm.prompt))
    copy_into_peft(pm.prompt, model.prompt_encoder["default"])
    return model.eval()


@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("name", MODELS)
def test_prompt_matches_peft_prompt_encoder(name, kind):
    lm = load_model(name)
    pm = encoded(lm, kind)
    with torch.no_grad():  # not just the init
        for p in pm.prompt.parameters():
            p.add_(0.3 * torch.randn_like(p))
    peft = peft_model(lm, pm)
    enc = peft.prompt_encoder["default"]
    assert type(enc).__name__ == "PromptEncoder" and peft.peft_config["default"].peft_type.value == "P_TUNING"
    assert {k: v.shape for k, v in enc.state_dict().items()} == {k: v.shape for k, v in pm.prompt.state_dict().items()}
    with torch.no_grad():
        ref = peft.get_prompt(batch_size=1)[0]  # (tokens, hidden)
    assert ref.shape == pm.layout.shape
    torch.testing.assert_close(pm.prompt.theta.detach().view(pm.layout.shape), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("name", MODELS)
def test_forward_matches_peft_p_tuning_model(name, kind, make_batch):
    from test_prompts import reference_features

    lm = load_model(name)
    pm = encoded(lm, kind)
    ids, mask, _ = make_batch(lm)
    ours = pm.features(ids, mask)[0]
    ref = reference_features(lm, peft_model(lm, pm), ids, mask, pm.layout)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ENCODERS)
def test_training_moves_the_encoder_not_a_free_theta(kind, make_batch):
    lm = load_model("tiny-bert")
    pm = encoded(lm, kind).train()
    names = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert "prompt.embedding.weight" in names and any(n.startswith("prompt.mlp_head") for n in names)
    assert not any(n.startswith("body.") for n in names)
    before = {n: p.detach().clone() for n, p in pm.named_parameters()}
    theta0 = pm.prompt.theta.detach().clone()
    opt = torch.optim.SGD(pm.trainable_parameters(), lr=0.5)
    ids, mask, labels = make_batch(lm)
    torch.nn.functional.cross_entropy(pm(ids, mask)[0], labels).backward()
    opt.step()
    after = dict(pm.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in names), "a prompt-encoder parameter did not move"
    assert all(torch.equal(before[n], after[n]) for n in before if n not in names), "a frozen weight moved"
    assert not torch.equal(pm.prompt.theta.detach(), theta0)  # θ follows the encoder


def test_theta_is_one_node_per_step_and_recomputed_after_an_update():
    lm = load_model("tiny-bert")
    prompt = encoded(lm, "mlp").prompt
    a, b = prompt.theta, prompt.theta
    assert a is b and a.requires_grad  # CE, contrast and RL terms share one θ node
    with torch.no_grad():
        prompt.embedding.weight.add_(1.0)  # an in-place update (what an optimizer step does)
    c = prompt.theta
    assert c is not a and not torch.equal(c.detach(), a.detach())
    with torch.no_grad():
        assert not prompt.theta.requires_grad


def test_setup_builds_ptv1_and_a_saved_prompt_reloads_as_a_plain_shallow_prompt(tiny_bert, tmp_path):
    from crlprompt.runners.config import TrainConfig, setup_from_run_config
    from crlprompt.runners.common import jsonable

    tc = TrainConfig(setup=SetupConfig(task="tiny", model="tiny-bert", num_tokens=3), method="ptv1")
    cfg = tc.resolved_setup()
    assert (cfg.prompt, cfg.prompt_encoder) == ("shallow", "mlp")
    s = build(cfg, lm=tiny_bert)
    assert isinstance(s.model.prompt, EncodedPrompt)
    trainable, _ = s.model.parameter_counts()
    assert trainable > s.model.layout.dim  # the encoder's weights are trained, θ is their output
    save_prompt(s.model, tmp_path / "p.safetensors")
    again = setup_from_run_config({"setup": jsonable(cfg)})
    assert again.prompt_encoder == "none" and again.prompt == "shallow"
    plain = build(again, lm=tiny_bert)
    load_prompt(plain.model, tmp_path / "p.safetensors")
    torch.testing.assert_close(plain.model.prompt.theta, s.model.prompt.theta.detach())
    assert TrainConfig(setup=SetupConfig(task="tiny"), method="prompt-tuning").resolved_setup().prompt_encoder == "none"


def test_bad_configs():
    lm = load_model("tiny-bert")
    with pytest.raises(ConfigError, match="shallow"):
        EncodedPrompt(PromptLayout.for_model(lm, "deep", 3), lm)
    with pytest.raises(ConfigError, match="must be one of"):
        EncodedPrompt(PromptLayout.for_model(lm, "shallow", 3), lm, encoder="gru")
    with pytest.raises(ConfigError, match="prompt='shallow'"):
        SetupConfig(prompt="deep", prompt_encoder="mlp")
    with pytest.raises(ConfigError, match="prompt_encoder"):
        SetupConfig(prompt_encoder="transformer")
