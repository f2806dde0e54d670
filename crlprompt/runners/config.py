"""What a training run is: the table of methods, and the configs of ``train`` and ``eval``.

A method is a row of :data:`METHODS` (prompt kind, head, whether the contrastive and RL terms
are on, whether it trains); the ablations are rows of the same table, not forks of the code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..agents.crl import CRLConfig
from ..build import SetupConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class Method:
    """One row of the method table."""

    title: str
    """Name in the paper's tables."""
    prompt: Literal["deep", "shallow"]
    """Deep prefix (P-Tuning v2) or shallow prompt."""
    head: Literal["linear", "verbalizer"]
    """Trained linear head, or the frozen LM's verbalizer (zero-shot)."""
    contrast: bool = False
    """Keep the agent's β (InfoNCE term) in phase 2; False sets β = 0."""
    rl: bool = False
    """Keep the agent's γ (REINFORCE term) in phase 2; False sets γ = 0."""
    trains: bool = True
    """False: evaluate the initial model only (HandCraft; the probe, whose linear head is fitted in closed form)."""
    encoder: Literal["none", "mlp", "lstm"] = "none"
    """P-Tuning v1: the shallow prompt is a prompt encoder's output (PEFT PromptEncoder, MLP or LSTM)."""
    template: str = "auto"
    """HandCraft prompt (verbalizer head): auto = the paper's Appendix B.1 prompt where it gives one."""

    def agent_config(self, agent: CRLConfig) -> CRLConfig:
        """``agent`` with this method's switches applied."""
        return dataclasses.replace(agent, beta=agent.beta if self.contrast else 0.0, gamma=agent.gamma if self.rl else 0.0)


METHODS: dict[str, Method] = {
    # the no-prompt floor: frozen features + a logistic regression (crlprompt.floors), no prompt at all
    "probe": Method("No prompt + LR (floor)", "shallow", "linear", trains=False),
    "handcraft": Method("HandCraft", "shallow", "verbalizer", trains=False),  # template auto: the paper's
    "handcraft-cloze": Method("HandCraft (cloze)", "shallow", "verbalizer", trains=False, template="cloze"),
    "ptv1": Method("Prompt v1", "shallow", "linear", encoder="mlp"),
    "ptv1-lstm": Method("Prompt v1 (LSTM)", "shallow", "linear", encoder="lstm"),
    "prompt-tuning": Method("Prompt tuning", "shallow", "linear"),
    "ptv2": Method("Prompt v2", "deep", "linear"),
    "crl": Method("CRL-Prompt", "deep", "linear", contrast=True, rl=True),
    "crl-contrast": Method("+ contrastive", "deep", "linear", contrast=True),
    "crl-rl": Method("+ RL", "deep", "linear", rl=True),
}
MethodName = Literal["probe", "handcraft", "handcraft-cloze", "ptv1", "ptv1-lstm", "prompt-tuning", "ptv2", "crl",
                     "crl-contrast", "crl-rl"]  # fmt: skip


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {tuple(METHODS)}")
    return METHODS[name]


@dataclass
class TrainConfig:
    """One run: a method on a task and model, with one seed."""

    setup: SetupConfig = field(default_factory=SetupConfig)
    """Task, model, prompt, data split (flags --task, --model, --seed, --data-seed, --num-tokens...)."""
    method: MethodName = "ptv2"
    """probe (the no-prompt floor: frozen features + logistic regression, C chosen on D_RL) |
    handcraft (the paper's Appendix B.1 prompt + label words, zero-shot) | handcraft-cloze (the earlier cloze
    prompts) | ptv1 (P-Tuning v1: shallow prompt from an MLP prompt encoder, CE) | ptv1-lstm (LSTM encoder) |
    prompt-tuning (shallow prompt trained directly, CE) | ptv2 (deep prefix, CE) | crl (Algorithm 1) |
    crl-contrast (β only) | crl-rl (γ only)."""
    out: Path = Path("runs/train")
    """Run directory to create (refused if it exists and is not empty, unless --overwrite)."""
    overwrite: bool = False
    """Replace an existing --out."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    save_adapter: bool = True
    """Also write the prompt as a PEFT adapter directory."""
    checkpoint_every: int = 100
    """Write a resumable training state every this many optimizer steps (and at every epoch end)."""
    resume: bool = True
    """Resume an interrupted run of the same configuration from its last checkpoint."""
    progress: bool = True
    """Show a progress bar (--no-progress: log lines only, e.g. in batch jobs). Not part of the run's identity."""
    agent: CRLConfig = field(default_factory=CRLConfig)
    """Hyperparameters of the agent (CRLConfig)."""

    def __post_init__(self) -> None:
        get_method(self.method)
        if isinstance(self.out, str):
            self.out = Path(self.out)
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be an int >= 0, got {self.checkpoint_every!r}")

    @property
    def method_spec(self) -> Method:
        return METHODS[self.method]

    @property
    def seed(self) -> int:
        return self.setup.seed

    def resolved_setup(self) -> SetupConfig:
        """The setup with the method's prompt kind and head filled in where they are ``auto``."""
        m = self.method_spec
        s = self.setup
        return dataclasses.replace(
            s,
            prompt=m.prompt if s.prompt == "auto" else s.prompt,
            head=m.head if s.head == "auto" else s.head,
            num_tokens=0 if not m.trains else s.num_tokens,
            prompt_encoder=m.encoder if s.prompt_encoder == "auto" else s.prompt_encoder,
            template=m.template if s.template == "auto" else s.template,
        ).resolved()

    def agent_config(self) -> CRLConfig:
        """The agent config with the method's switches applied (β, γ off for the baselines)."""
        return self.method_spec.agent_config(self.agent)


@dataclass
class EvalConfig:
    """Re-evaluate a saved run."""

    checkpoint: Path
    """A run directory (config.json + prompt.safetensors, from `crl-prompt train` or PromptClassifier.save) or a
    PEFT adapter directory (crl-prompt's, or a prefix / prompt adapter trained with plain PEFT)."""
    split: Literal["test", "drl", "train", "rl"] = "test"
    """Which split to score: test | drl (D_RL) | train; rl is drl's earlier name (deprecated)."""
    device: str = "auto"
    """auto | cpu | cuda."""
    data_dir: str | None = None
    """Override the run's data directory."""
    task: str | None = None
    """The task, where the checkpoint does not record it (an adapter trained with plain PEFT)."""
    model: str | None = None
    """The base model, where the checkpoint does not name it (a named model, an HF id or a local directory)."""
    head: Literal["linear", "verbalizer"] | None = None
    """The head: linear (from the adapter's head.safetensors) or the LM's verbalizer; None = what the checkpoint has."""


def setup_from_run_config(saved: dict[str, Any]) -> SetupConfig:
    """The :class:`SetupConfig` stored in a run directory's ``config.json``.

    Run directories written before SetupConfig existed hold flat keys (task, model, method,
    num_tokens, head, seed, ...); they are mapped onto it, resolved by their method.
    """
    if isinstance(saved.get("setup"), dict):
        # A P-Tuning v1 encoder is a training-time reparameterisation: the saved θ is its output, a
        # plain shallow prompt (PEFT's inference mode keeps only that, too).
        return dataclasses.replace(SetupConfig.from_stored(saved["setup"]), prompt_encoder="none")
    names = {f.name for f in dataclasses.fields(SetupConfig)}
    flat = {k: v for k, v in saved.items() if k in names}
    method = saved.get("method", "ptv2")
    if method not in METHODS or "task" not in flat or "model" not in flat:
        raise ConfigError("config.json holds neither a 'setup' record nor a known legacy layout (task, model, method)")
    flat["head"] = flat.get("head", "auto") if flat.get("head") in ("linear", "verbalizer") else "auto"
    flat["pooling"] = "legacy"  # these runs predate the option: encoders' linear heads read [CLS]
    return TrainConfig(setup=SetupConfig(**flat), method=method).resolved_setup()
