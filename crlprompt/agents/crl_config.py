"""CRLConfig: the hyperparameters of Algorithm 1 (:class:`~crlprompt.agents.crl.CRLAgent`), validated."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..prompts import PROMPT_DROPOUT
from ..losses import ESTIMATORS
from ..losses.supervised import CONTRAST_MODES, NEGATIVE_KINDS

__all__ = ["CRLConfig", "HEAD_INITS", "HEAD_C"]

HEAD_INITS = ("probe", "keep")
#: C of a tuning run's start head (CRLConfig.head_c): weak enough that the train rows keep a loss.
HEAD_C = 0.1


@dataclass
class CRLConfig:
    """Hyperparameters of Algorithm 1. Defaults are the paper's where it gives one."""

    lr: float = 1e-3
    """Learning rate of the prompt (and linear head); paper: 1e-3."""
    phase2_lr: float | None = None
    """Learning rate in phase 2 (None = lr). The paper picks it on D_RL from {1e-3, 2e-3, 5e-4, 1e-4}
    (``crl-prompt reproduce --phase2-lrs``)."""
    batch_size: int = 32
    """Examples per optimizer step; paper: 32."""
    phase1_epochs: float = 3.0
    """Epochs of cross-entropy only (Algorithm 1, phase 1 = Prompt v2 when the prompt is deep)."""
    phase2_epochs: float = 2.0
    """Epochs of CE + β·contrast + γ·RL (phase 2). 0 skips phase 2."""
    beta: float = 0.3
    """Weight β of the InfoNCE term; paper: 0.3. 0 turns the contrastive term off."""
    gamma: float = 2e-5
    """Weight γ of the REINFORCE term; paper: 2e-5. 0 turns RL off."""
    rl_interval: int = 100
    """N: the RL term is added at phase-2 optimizer steps t = N, 2N, ... (t mod N = 0, t from 1); paper: 100."""
    sigma: float = 0.1
    """σ of the Gaussian policy N(θ, σ²I) (the paper leaves it open)."""
    rl_samples: int = 1
    """Perturbed prompts per RL update (1 = the paper's single sample); scored in one batched pass."""
    rl_estimator: str = "single"
    """single (faithful Eq. 5) | baseline | antithetic | ranks | replay (ReplayRLTerm) | race (race_rl_term)."""
    rl_buffer: int = 16
    """rl_estimator='replay': samples kept for replay (newest first; at most 1 GiB; not checkpointed)."""
    reward_batch_size: int | None = None
    """Score rewards on a seeded minibatch of D_RL of this size (None = all of D_RL, as in the paper)."""
    tau: float = 0.1
    """InfoNCE temperature τ; paper: 0.1."""
    contrast_mode: str = "paper"
    """paper: positive = the clean prompt (no dropout), negatives = corrupted prompts (negative_kind) and in-batch
    examples of other classes (never the same class); supcon: the same, with same-class examples as further
    positives; noise: the earlier form (two dropout views, Gaussian-noise negatives, every in-batch example a negative)."""
    num_negatives: int = 1
    """k corrupted-prompt negatives per example (in-batch negatives are added too)."""
    negative_kind: str = "permute"
    """paper/supcon negatives: permute (the prompt's tokens re-paired by a derangement) | dropout (at negative_dropout)."""
    negative_dropout: float = 0.5
    """Dropout rate of a negative_kind='dropout' negative (heavier than prompt_dropout, the anchor's)."""
    negative_noise: float = 0.5
    """contrast_mode='noise' only: std of the Gaussian noise that makes a negative prompt θ + ε."""
    prompt_dropout: float = PROMPT_DROPOUT
    """Dropout on the prompt vector in training; paper: 10%."""
    head_dropout: float = 0.1
    """Dropout before the linear head in training."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm (None = off)."""
    eval_batch_size: int = 64
    """Batch size for scoring D_RL / test."""
    head_init: str = "probe"
    """How a linear head starts: probe = the no-prompt floor's logistic regression fitted on the train
    rows at the start prompt (C chosen on D_RL; crlprompt.floors), so training starts at the floor |
    keep = as built (seeded random) or loaded. A verbalizer head has nothing to fit."""
    head_c: float | None = HEAD_C
    """head_init='probe': the regularisation C of the start head's logistic regression (scikit-learn's C,
    on features scaled to unit mean norm). 0.1 starts the head in the floor's direction without fitting
    the train rows exactly, so the cross-entropy still has a gradient for the prompt. None = the floor's
    own C, chosen on D_RL: on 16-shot rows it is often large, fits every train row (train loss near 0)
    and leaves the prompt almost nothing to learn (docs/results/few-shot.md measures both)."""

    def __post_init__(self):
        for f in ("lr", "tau", "sigma", "beta", "gamma", "phase1_epochs", "phase2_epochs", "negative_noise",
                  "prompt_dropout", "head_dropout", "weight_decay"):  # fmt: skip
            if not math.isfinite(getattr(self, f)):
                raise ConfigError(f"{f} must be finite, got {getattr(self, f)!r}")
        if self.phase2_lr is not None and not (math.isfinite(self.phase2_lr) and self.phase2_lr > 0):
            raise ConfigError(f"phase2_lr must be a finite number > 0 or None, got {self.phase2_lr!r}")
        if self.sigma > 1e6:
            raise ConfigError(f"sigma must be <= 1e6 (σ² enters the RL gradient), got {self.sigma}")
        for name in ("lr", "batch_size", "tau", "sigma", "eval_batch_size", "rl_interval", "rl_samples", "rl_buffer"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("beta", "gamma", "phase1_epochs", "phase2_epochs", "num_negatives", "negative_noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.prompt_dropout < 1:
            raise ConfigError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}")
        if self.head_c is not None and not (math.isfinite(self.head_c) and self.head_c > 0):
            raise ConfigError(f"head_c must be a finite number > 0 or None (the floor's C, chosen on D_RL), "
                              f"got {self.head_c!r}")
        if self.head_init not in HEAD_INITS:
            raise ConfigError(f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if self.contrast_mode not in CONTRAST_MODES:
            raise ConfigError(f"contrast_mode must be one of {CONTRAST_MODES}, got {self.contrast_mode!r}")
        if self.negative_kind not in NEGATIVE_KINDS:
            raise ConfigError(f"negative_kind must be one of {NEGATIVE_KINDS}, got {self.negative_kind!r}")
        if not 0 <= self.negative_dropout < 1:
            raise ConfigError(f"negative_dropout must be in [0, 1), got {self.negative_dropout}")
        if self.rl_estimator not in ESTIMATORS + ("replay", "race"):
            raise ConfigError(f"rl_estimator must be one of {ESTIMATORS} or replay | race, got {self.rl_estimator!r}")
        if self.rl_estimator == "antithetic" and self.rl_samples % 2:
            raise ConfigError("rl_estimator='antithetic' needs an even rl_samples (pairs ε, -ε)")
        if self.rl_estimator in ("ranks", "race") and self.rl_samples < 2:
            raise ConfigError(f"rl_estimator={self.rl_estimator!r} needs rl_samples >= 2 (one sample has rank 0)")
        if self.reward_batch_size is not None and self.reward_batch_size <= 0:
            raise ConfigError(f"reward_batch_size must be > 0 or None, got {self.reward_batch_size}")
