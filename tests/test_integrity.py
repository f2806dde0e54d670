"""A prompt, head or adapter whose bytes changed after it was written is refused (a SHA-256 in its
metadata or the adapter's card), not scored; so is one of ours that lost its checksum, while an
adapter saved by plain PEFT, which never had one, loads; ``crl-prompt eval`` says so in one line."""

from __future__ import annotations

import shutil

import pytest
import torch

from crlprompt.build import build_model
from crlprompt.modelcard import CARD_FILE
from crlprompt.prompt_io import (
    ADAPTER_WEIGHTS, HEAD_FILE, PROMPT_FILE, PromptFileError, load_prompt, save_peft_adapter, save_prompt,
)  # fmt: skip
from crlprompt.tasks import get_task

from helpers.cli import error_lines, run_cli
from helpers.peft import plain_peft_adapter


def _flip_last_tensor_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the tensor data sits at the end of a safetensors file, after the JSON header
    path.write_bytes(bytes(data))


@pytest.fixture
def pm(tiny_bert):
    pm = build_model(tiny_bert, get_task("tiny"), num_tokens=2, init="random", seed=3)
    return pm


def test_a_flipped_byte_in_a_prompt_file_is_refused(pm, tmp_path):
    save_prompt(pm, tmp_path / "p.safetensors")
    load_prompt(pm, tmp_path / "p.safetensors")  # intact: loads
    _flip_last_tensor_byte(tmp_path / "p.safetensors")
    before = pm.prompt.theta.detach().clone()
    with pytest.raises(PromptFileError, match="failed its checksum"):
        load_prompt(pm, tmp_path / "p.safetensors")
    assert torch.equal(pm.prompt.theta.detach(), before)  # nothing was written into the model


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "head.safetensors"])
def test_a_flipped_byte_in_an_adapter_or_its_head_is_refused(pm, tmp_path, name):
    save_peft_adapter(pm, tmp_path / "a")
    load_prompt(pm, tmp_path / "a")
    _flip_last_tensor_byte(tmp_path / "a" / name)
    with pytest.raises(PromptFileError, match="failed its checksum"):
        load_prompt(pm, tmp_path / "a")


# ----------------------------------------------------------------------------- a lost checksum
def _strip_metadata(path, *keys):
    """Rewrite a safetensors file with the same tensors and ``keys`` gone from its metadata."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata={k: v for k, v in meta.items() if k not in keys})


def test_a_prompt_file_that_lost_its_checksum_is_refused_unless_trusted(pm, tmp_path):
    path = tmp_path / "p.safetensors"
    save_prompt(pm, path)
    _strip_metadata(path, "sha256")
    with pytest.raises(PromptFileError, match="lost its checksum") as e:
        load_prompt(pm, path)
    assert str(path) in str(e.value) and "re-save it" in str(e.value) and "allow_unverified=True" in str(e.value)
    load_prompt(pm, path, allow_unverified=True)  # the caller vouches for the bytes


def test_an_adapter_keeps_its_checksum_without_its_card(pm, tmp_path):
    """The weights carry the checksum as well as the card: a lost card still refuses a flipped byte."""
    out = save_peft_adapter(pm, tmp_path / "a")
    (out / CARD_FILE).unlink()
    load_prompt(pm, out)
    _flip_last_tensor_byte(out / ADAPTER_WEIGHTS)
    with pytest.raises(PromptFileError, match="failed its checksum"):
        load_prompt(pm, out)


@pytest.mark.parametrize("card", ["missing", "unparseable"])
def test_an_adapter_of_ours_that_lost_every_checksum_is_refused(pm, tmp_path, card):
    out = save_peft_adapter(pm, tmp_path / "a")
    _strip_metadata(out / ADAPTER_WEIGHTS, "sha256")
    if card == "missing":
        (out / CARD_FILE).unlink()
    else:  # a hand-edited card whose front matter no longer parses
        (out / CARD_FILE).write_text((out / CARD_FILE).read_text().replace("crl_prompt:", "crl_prompt: [", 1))
    with pytest.raises(PromptFileError, match="lost its checksum") as e:
        load_prompt(pm, out)
    assert str(out / ADAPTER_WEIGHTS) in str(e.value)
    load_prompt(pm, out, allow_unverified=True)


def test_a_head_file_of_ours_that_lost_its_checksum_is_refused(pm, tmp_path):
    out = save_peft_adapter(pm, tmp_path / "a")
    _strip_metadata(out / HEAD_FILE, "sha256")
    with pytest.raises(PromptFileError, match="lost its checksum") as e:
        load_prompt(pm, out)
    assert str(out / HEAD_FILE) in str(e.value)


def test_a_plain_peft_adapter_has_no_checksum_and_loads(tmp_path):
    """What PEFT itself saves (and a head saved with safetensors alone) never had a checksum."""
    from crlprompt.models import load_model

    out = tmp_path / "plain"
    plain_peft_adapter(out, "tiny-llama", "PREFIX_TUNING", tokens=3)
    pm = build_model(load_model("tiny-llama"), get_task("tiny"), num_tokens=3)
    assert load_prompt(pm, out)["source"] == "peft"


# ----------------------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from crlprompt.agents.crl import CRLConfig
    from crlprompt.build import SetupConfig
    from crlprompt.runners.train import TrainConfig, run

    out = tmp_path_factory.mktemp("integrity") / "run"
    run(TrainConfig(setup=SetupConfig(task="tiny", model="tiny-bert", num_tokens=2), method="ptv2", out=out,
                    agent=CRLConfig(phase1_epochs=0.5, phase2_epochs=0)), progress=False)  # fmt: skip
    return out


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
@pytest.mark.parametrize("damage", ["flipped-byte", "lost-checksum"])
def test_crl_prompt_eval_refuses_a_damaged_prompt_file_in_one_line(run_dir, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert run_cli("eval", "--checkpoint", str(run), cwd=tmp_path).returncode == 0
    if damage == "flipped-byte":
        _flip_last_tensor_byte(run / PROMPT_FILE)
    else:
        _strip_metadata(run / PROMPT_FILE, "sha256")
    proc = run_cli("eval", "--checkpoint", str(run), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = error_lines(proc)
    assert proc.stderr.splitlines() == [line] and str(run / PROMPT_FILE) in line
    assert ("failed its checksum" if damage == "flipped-byte" else "lost its checksum") in line
