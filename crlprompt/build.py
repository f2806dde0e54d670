"""Assemble one (task, model, prompt) combination from a :class:`SetupConfig`: the shared entry
point of the CLI, the runners and the environments.

``SetupConfig`` is what a run or an env needs to rebuild its model and data; train configs and
env configs embed it, run directories store it as is, and ``crl-prompt eval`` reads it back.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .batching import Encoded, encode
from .data.splits import deprecated_alias
from .errors import ConfigError, DataError
from .models import LoadedModel, load_model
from .prompts import (
    INITS, LABEL_TOKENS, POOLINGS, PROMPT_DROPOUT, HeadKind, PromptedModel, PromptKind, PromptLayout, SoftPrompt, auto_init, label_token_ids,
    resolve_pooling,
)
from .tasks import TaskData, TaskSpec, get_task, load_task

log = logging.getLogger(__name__)


@dataclass
class SetupConfig:
    """Task, model, prompt and data split: everything needed to rebuild a model and its data."""

    task: str = "trec"
    """trec | agnews | sst2 | empathetic_dialogues | tiny (synthetic, in-code data, for tiny models)."""
    model: str = "minilm"
    """minilm | smollm2 | tiny-bert | tiny-llama | an HF id | a local model directory."""
    prompt: Literal["auto", "deep", "shallow"] = "auto"
    """deep prefix (P-Tuning v2) or shallow prompt (input embeddings); auto = deep, or what the method says."""
    num_tokens: int = 20
    """Virtual tokens; paper: 20."""
    head: Literal["auto", "linear", "verbalizer"] = "auto"
    """Classifier: a linear head or the LM's verbalizer; auto = linear, or what the method says."""
    init: Literal["auto", "random", "tokens", "zero"] = "auto"
    """Prompt init: N(0,1) / random token embeddings, the LM's keys/values of random tokens, zeros (the
    neutral start: a deep zero prefix leaves the unprompted features almost unchanged); auto = tokens
    for decoders' deep prefixes, zero for encoders' deep prefixes, random for shallow prompts."""
    pooling: Literal["auto", "cls", "mean", "mask", "last", "legacy"] = "auto"
    """Where the linear head reads its feature: cls (first input token) | mean (mean of the input
    tokens, prompt positions excluded) | mask ([MASK]) | last (last non-pad token); auto = how the
    model was trained (the checkpoint's sentence-transformers pooling config: mean for MiniLM; else
    cls for encoders, last for decoders; a verbalizer reads mask / last); legacy = the rule of runs
    saved before this option (cls for encoders' linear heads). Run directories store it resolved."""
    label_tokens: Literal["mean", "first"] = "mean"
    """How a verbalizer word of several tokens is scored: mean of its sub-tokens' logits at the answer
    position, or its first sub-token alone (the rule of runs saved before this option, which let
    SmolLM2's " Ab" of "Abbreviation" take every TREC row). One-token words score the same either way."""
    seed: int = 0
    """Seeds the prompt and head init (a training run also seeds dropout, batch order and RL samples with it)."""
    data_seed: int = 0
    """Seed of the D_RL split and of any subsampling (kept fixed across seeds so runs share D_RL and test)."""
    data_dir: str | None = None
    """Directory with task files (SST-2 needs sst2/dev.tsv from GLUE); also $CRLPROMPT_DATA_DIR."""
    drl_fraction: float = 0.1
    """|D_RL| / |train|; paper: 10% (``rl_fraction`` before it was renamed; stored configs still read)."""
    max_train: int | None = None
    """Cap the training pool (seeded subsample; D_RL is taken from it)."""
    max_test: int | None = None
    """Cap the test split (seeded subsample)."""
    max_length: int = 128
    """Token cap per input."""
    k_shot: int | None = None
    """Few-shot (LM-BFF): train on k rows per class, D_RL = k other rows per class, full test; data_seed
    draws them (LM-BFF seeds: 13 21 42 87 100). None = full data with a drl_fraction holdout."""
    template: str = "auto"
    """HandCraft prompt of the verbalizer head: paper (Appendix B.1, verbatim) | cloze (this project's
    earlier cloze prompts) | auto = the task's default (paper where the paper gives one)."""
    prompt_encoder: Literal["auto", "none", "mlp", "lstm"] = "auto"
    """P-Tuning v1: the shallow prompt is the output of a PEFT-style prompt encoder (mlp | lstm) over
    trainable embeddings; none = the prompt is trained directly; auto = none, or what the method says."""

    def __post_init__(self) -> None:
        for name in ("task", "model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty name, got {getattr(self, name)!r}")
        _check_choice("prompt", self.prompt, ("auto", "deep", "shallow"))
        _check_choice("head", self.head, ("auto", "linear", "verbalizer"))
        _check_choice("init", self.init, INITS)
        _check_choice("pooling", self.pooling, ("auto", *POOLINGS, "legacy"))
        _check_choice("label_tokens", self.label_tokens, LABEL_TOKENS)
        _check_choice("prompt_encoder", self.prompt_encoder, ("auto", "none", "mlp", "lstm"))
        if self.prompt_encoder in ("mlp", "lstm") and self.prompt == "deep":
            raise ConfigError(f"prompt_encoder={self.prompt_encoder!r} reparameterises a shallow prompt (P-Tuning v1); "
                              "use prompt='shallow' (or 'auto')")  # fmt: skip
        if not isinstance(self.template, str) or not self.template:
            raise ConfigError(f"template must be a non-empty name, got {self.template!r}")
        known = _task_templates(self.task)
        if known is not None and self.template != "auto" and self.template not in known:
            raise ConfigError(f"task {self.task} has no template {self.template!r}; choose one of {('auto', *known)}")
        for name, low in (("num_tokens", 0), ("seed", 0), ("data_seed", 0), ("max_length", 1)):
            setattr(self, name, _check_int(name, getattr(self, name), low))
        for name in ("max_train", "max_test", "k_shot"):
            if getattr(self, name) is not None:
                setattr(self, name, _check_int(name, getattr(self, name), 1))
        rf = self.drl_fraction
        if isinstance(rf, bool) or not isinstance(rf, (int, float)) or not math.isfinite(rf) or not 0 < rf < 1:
            raise ConfigError(f"drl_fraction must be a number in (0, 1), got {rf!r}")

    @property
    def prompt_kind(self) -> PromptKind:
        if self.prompt == "auto":  # a prompt encoder (P-Tuning v1) makes a shallow prompt
            return "shallow" if self.prompt_encoder in ("mlp", "lstm") else "deep"
        return self.prompt

    @property
    def head_kind(self) -> HeadKind:
        return "linear" if self.head == "auto" else self.head

    @property
    def encoder_kind(self) -> str:
        return "none" if self.prompt_encoder == "auto" else self.prompt_encoder

    def resolved(self) -> "SetupConfig":
        """The same setup with ``auto`` prompt, head, encoder and template made explicit (what a run directory stores)."""
        known = _task_templates(self.task)
        template = known[0] if self.template == "auto" and known else self.template  # the task's default
        return dataclasses.replace(self, prompt=self.prompt_kind, head=self.head_kind, prompt_encoder=self.encoder_kind,
                                   template=template)  # fmt: skip

    @classmethod
    def from_stored(cls, d: dict[str, Any]) -> "SetupConfig":
        """Rebuild a setup a run directory or adapter stored; one saved before ``pooling`` or
        ``label_tokens`` existed keeps what it was trained with (``legacy`` pooling, ``first`` sub-token)."""
        return cls.from_dict({"pooling": "legacy", "label_tokens": "first", **d})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SetupConfig":
        """Rebuild from a stored dict; unknown keys are refused with their names. A dict stored before
        ``rl_fraction`` became ``drl_fraction`` reads as it was."""
        if "rl_fraction" in d and "drl_fraction" not in d:
            d = {("drl_fraction" if k == "rl_fraction" else k): v for k, v in d.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown setup fields {unknown}; known: {sorted(names)}")
        return cls(**d)


def _task_templates(task: str) -> tuple[str, ...] | None:
    """The template names of a known task (None for an unknown one: load_task reports it)."""
    try:
        return tuple(get_task(task).templates)
    except DataError:
        return None


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


@dataclass
class Setup:
    """A frozen LM with a prompt and head, and the task's three tokenized splits."""

    config: SetupConfig
    spec: TaskSpec
    lm: LoadedModel
    model: PromptedModel
    train: Encoded
    drl: Encoded  # D_RL: reward subset, also the validation set for model selection
    test: Encoded
    source: str
    rows: TaskData | None = None
    """The splits as text (in-context demonstrations need them); None where a caller built the Setup by hand."""

    rl = deprecated_alias("drl")


def template_for(lm: LoadedModel, head: HeadKind) -> str:
    if head == "linear":
        return "none"
    return "mlm" if lm.arch == "encoder" else "lm"


def build_model(
    lm: LoadedModel, spec: TaskSpec, *, prompt: PromptKind = "deep", num_tokens: int = 20,
    head: HeadKind = "linear", prompt_dropout: float = PROMPT_DROPOUT, seed: int = 0, init: str = "auto",
    prompt_encoder: str = "none", pooling: str = "auto", label_tokens: str = "mean",
) -> PromptedModel:  # fmt: skip
    """A :class:`PromptedModel` for ``spec`` on ``lm``; θ and the head are initialised from ``seed``."""
    layout = PromptLayout.for_model(lm, prompt, num_tokens)
    if prompt_encoder in ("mlp", "lstm"):
        from .prompt_encoder import EncodedPrompt

        soft = EncodedPrompt(layout, lm, encoder=prompt_encoder, seed=seed)
    else:
        soft = SoftPrompt(layout, lm, seed=seed, init=init)
    label_ids = label_token_ids(lm, spec.verbalizer, label_tokens=label_tokens) if head == "verbalizer" else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PromptedModel(lm, soft, head, spec.num_labels, label_ids=label_ids, prompt_dropout=prompt_dropout,
                             pooling=pooling)  # fmt: skip


def build(
    config: SetupConfig,
    *,
    device: str | torch.device | None = None,
    lm: LoadedModel | None = None,
    data: TaskData | None = None,
    prompt_dropout: float = PROMPT_DROPOUT,
    require_test: bool = True,
) -> Setup:
    """Load the task's data and the model (or reuse ``lm`` / ``data``) and tokenize every split once.

    ``require_test=False`` (the environments) accepts a missing test file with an empty test split.
    """
    if not isinstance(config, SetupConfig):
        raise ConfigError(f"build() takes a SetupConfig, got {type(config).__name__}")
    cfg = config.resolved()
    data = data or load_task(
        cfg.task, data_dir=cfg.data_dir, drl_fraction=cfg.drl_fraction, seed=cfg.data_seed,
        max_train=cfg.max_train, max_test=cfg.max_test, k_shot=cfg.k_shot,
        require_test=require_test,
    )  # fmt: skip
    lm = lm or load_model(cfg.model)
    # what auto means on this model, made explicit: run directories store this config
    cfg = dataclasses.replace(cfg, pooling=resolve_pooling(cfg.pooling, lm, cfg.head_kind),
                              init=auto_init(cfg.prompt_kind, lm.arch) if cfg.init == "auto" else cfg.init)  # fmt: skip
    spec = data.spec.with_template(cfg.template)
    pm = build_model(lm, spec, prompt=cfg.prompt_kind, num_tokens=cfg.num_tokens, head=cfg.head_kind,
                     prompt_dropout=prompt_dropout, seed=cfg.seed, init=cfg.init, prompt_encoder=cfg.encoder_kind,
                     pooling=cfg.pooling, label_tokens=cfg.label_tokens)  # fmt: skip
    if device is not None:
        pm.to(torch.device(device))
    tmpl = template_for(lm, cfg.head_kind)
    enc = {
        name: encode(split, lm.tokenizer, spec=spec, template=tmpl, max_length=cfg.max_length)
        for name, split in (("train", data.train), ("drl", data.drl), ("test", data.test))
    }
    return Setup(cfg, spec, lm, pm, enc["train"], enc["drl"], enc["test"], data.source, data)


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
