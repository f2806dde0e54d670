"""Adapters as a plain-PEFT user writes them (``get_peft_model`` + ``save_pretrained``, a linear head
saved beside it): what crl-prompt must read without any record of its own."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from crlprompt.models import load_model
from crlprompt.prompt_io import HEAD_FILE


def peft_base(lm):
    """What a PEFT user wraps: the bare encoder (FEATURE_EXTRACTION) or the causal LM."""
    return lm.body if lm.arch == "encoder" else lm.full


def plain_peft_adapter(out: Path, name: str, peft_type: str, *, tokens: int = 3, head: bool = True, seed: int = 0):
    """Train nothing, but write exactly what a plain-PEFT user saves: ``save_pretrained`` of a
    prompt-learning model with random weights, and an ``nn.Linear`` head as head.safetensors.
    Returns (PEFT model in eval mode, the head, the LoadedModel it wraps)."""
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model

    lm = load_model(name)
    task = TaskType.FEATURE_EXTRACTION if lm.arch == "encoder" else TaskType.CAUSAL_LM
    config = {
        "PREFIX_TUNING": lambda: PrefixTuningConfig(task_type=task, num_virtual_tokens=tokens),
        "PROMPT_TUNING": lambda: PromptTuningConfig(task_type=task, num_virtual_tokens=tokens),
        "P_TUNING": lambda: PromptEncoderConfig(task_type=task, num_virtual_tokens=tokens, encoder_hidden_size=16),
    }[peft_type]()
    model = get_peft_model(peft_base(lm), config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.normal_()
    model.save_pretrained(str(out))
    linear = torch.nn.Linear(lm.hidden_size, 2)
    if head:
        save_file({"weight": linear.weight.detach(), "bias": linear.bias.detach()}, str(out / HEAD_FILE))
    return model.eval(), linear, lm
