"""A prompt, head or adapter whose bytes changed after it was written is refused (a SHA-256 in its
metadata or the adapter's card), not scored."""

from __future__ import annotations

import pytest
import torch

from crlprompt.build import build_model
from crlprompt.prompt_io import PromptFileError, load_prompt, save_peft_adapter, save_prompt
from crlprompt.tasks import get_task


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
