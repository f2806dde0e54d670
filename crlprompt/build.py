"""Assemble the pieces for one (task, model, prompt) combination: the shared entry point of the
CLI, the runners and the environments."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .batching import Encoded, encode
from .models import LoadedModel, load_model
from .prompts import HeadKind, PromptedModel, PromptKind, PromptLayout, SoftPrompt, label_token_ids
from .tasks import TaskData, TaskSpec, load_task

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """A frozen LM with a prompt and head, and the task's three tokenized splits."""

    spec: TaskSpec
    lm: LoadedModel
    model: PromptedModel
    train: Encoded
    rl: Encoded  # D_RL: reward subset, also the validation set for model selection
    test: Encoded
    source: str


def template_for(lm: LoadedModel, head: HeadKind) -> str:
    if head == "linear":
        return "none"
    return "mlm" if lm.arch == "encoder" else "lm"


def build_model(
    lm: LoadedModel, spec: TaskSpec, *, prompt: PromptKind = "deep", num_tokens: int = 20,
    head: HeadKind = "linear", prompt_dropout: float = 0.1, seed: int = 0, init: str = "auto",
) -> PromptedModel:  # fmt: skip
    """A :class:`PromptedModel` for ``spec`` on ``lm``; θ and the head are initialised from ``seed``."""
    layout = PromptLayout.for_model(lm, prompt, num_tokens)
    soft = SoftPrompt(layout, lm, seed=seed, init=init)
    label_ids = label_token_ids(lm, spec.verbalizer) if head == "verbalizer" else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PromptedModel(lm, soft, head, spec.num_labels, label_ids=label_ids, prompt_dropout=prompt_dropout)


def build(
    task: str,
    model: str | LoadedModel,
    *,
    prompt: PromptKind = "deep",
    num_tokens: int = 20,
    head: HeadKind = "linear",
    prompt_dropout: float = 0.1,
    seed: int = 0,
    data_seed: int = 0,
    data_dir: str | None = None,
    rl_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
    max_length: int = 128,
    device: str | torch.device | None = None,
    data: TaskData | None = None,
) -> Setup:
    """Load task data and model (or reuse ``model``/``data`` given as objects) and tokenize once.

    ``task="tiny"`` is the synthetic task of :mod:`crlprompt.envs.synthetic` (tiny models only).
    """
    if task == "tiny" and data is None:
        from .envs.synthetic import tiny_setup

        if head != "linear":
            raise ValueError("task 'tiny' supports head='linear' only")
        setup = tiny_setup(model=model if isinstance(model, str) else model.name, prompt=prompt,
                           num_tokens=num_tokens, seed=seed, data_seed=data_seed)  # fmt: skip
        setup.model.prompt_dropout = prompt_dropout
        if device is not None:
            setup.model.to(torch.device(device))
        return setup
    data = data or load_task(
        task, data_dir=data_dir, rl_fraction=rl_fraction, seed=data_seed, max_train=max_train, max_test=max_test
    )
    lm = model if isinstance(model, LoadedModel) else load_model(model)
    pm = build_model(lm, data.spec, prompt=prompt, num_tokens=num_tokens, head=head, prompt_dropout=prompt_dropout, seed=seed)
    if device is not None:
        pm.to(torch.device(device))
    tmpl = template_for(lm, head)
    enc = {
        name: encode(split, lm.tokenizer, spec=data.spec, template=tmpl, max_length=max_length)
        for name, split in (("train", data.train), ("rl", data.rl), ("test", data.test))
    }
    return Setup(data.spec, lm, pm, enc["train"], enc["rl"], enc["test"], data.source)


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
