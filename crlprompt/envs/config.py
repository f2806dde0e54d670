"""EnvConfig: every option of the soft-prompt environment, validated in one place.

``gym.make(id, **kwargs)`` maps its keyword arguments one to one onto these fields: a name of
:class:`~crlprompt.build.SetupConfig` (``task``, ``model``, ``prompt``, ``num_tokens``, ``init``,
``seed``, ``data_seed``, ``drl_fraction``, ``max_train``, ``data_dir``...) goes into
``EnvConfig.setup``, every other name is a field of ``EnvConfig`` itself. ``head`` names the
env's frozen head (``EnvConfig.head``); the setup's head is the verbalizer when that is
``"verbalizer"``, else linear.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

from ..build import SetupConfig
from ..data.splits import RENAMED, split_name, warn_renamed
from ..errors import ConfigError

REWARD_KINDS = ("accuracy", "margin", "neg_ce")
HEADS = ("auto", "probe", "planted", "verbalizer", "random", "checkpoint")
PROJECTIONS = ("gaussian", "bbt", "bbt_layer")
STARTS = ("auto", "random", "tokens", "zero", "handcraft", "handcraft_text", "checkpoint")
REWARD_SPLITS = ("drl", "train")
#: Legacy keyword names still accepted by :meth:`EnvConfig.from_kwargs` (the ``rl`` ones with a
#: DeprecationWarning: ``rl`` now names the RL term only, the D_RL split is ``drl``).
ALIASES = {"init_seed": "seed", "rl_fraction": "drl_fraction", "max_rl": "max_drl"}


def _reward_kinds() -> tuple[str, ...]:
    try:  # the scoring layer owns the list; importing it loads torch, which an env needs anyway
        from ..scoring import REWARDS

        return tuple(REWARDS)
    except ImportError:  # pragma: no cover
        return REWARD_KINDS


@dataclass
class EnvConfig:
    """Options of :class:`~crlprompt.envs.SoftPromptEnv` and its vector form."""

    setup: SetupConfig = field(default_factory=SetupConfig)
    """Task, model, prompt kind, tokens, init, data split (see :class:`crlprompt.build.SetupConfig`)."""
    head: Literal["auto", "probe", "planted", "verbalizer", "random", "checkpoint"] = "auto"
    """Frozen classifier: probe = the no-prompt floor's logistic regression (crlprompt.floors), fitted
    once on train features at the start prompt, C chosen on D_RL; planted = a probe fitted at a hidden random prompt θ*, after which the search
    starts from another random prompt (a synthetic problem with a known good answer); verbalizer =
    the LM's own head over the label words; random = the seeded random linear head; checkpoint =
    the head saved with ``checkpoint``. auto = checkpoint if given, else verbalizer for
    ``setup.head="verbalizer"``, else probe."""
    start: str = "auto"
    """The center the search starts from: random (N(0,1) deep prefix / random token embeddings) |
    tokens (the LM's own keys/values of random vocabulary tokens) | zero (every key/value 0: the
    neutral start, whose features are close to the unprompted ones, so a probe start scores at the
    no-prompt floor) | handcraft (the HandCraft
    classifier itself: a prefix of boundary tokens, the LM's keys/values or embeddings of its BOS /
    [CLS] token, before the templated input) | handcraft_text (of the HandCraft template's words) |
    ``text:<any text>`` (of that text, left-padded with boundary tokens to num_tokens) | checkpoint
    (θ of ``checkpoint``); auto = checkpoint if given, else ``setup.init``'s prompt."""
    sigma: float = 0.1
    """σ: the evaluated prompt is center + σ·A·a."""
    projection: str = "gaussian"
    """How A is drawn (crlprompt.envs.projection): gaussian = N(0, 1/d) entries (identity without
    projection_dim) | bbt = Black-Box Tuning's N(0, (α·σ̂/(√d·σ₀))²), σ̂ measured from the real
    embeddings (shallow) or per-layer keys/values (deep) the prompt replaces (without
    projection_dim: the per-coordinate scale α·σ̂/σ₀) | bbt_layer = BBTv2: one such A per layer,
    each with its own d coordinates of the action (action dim = layers × projection_dim)."""
    projection_dim: int | None = None
    """d of the projection (per layer for bbt_layer); None = no projection (d = D)."""
    projection_seed: int = 0
    """Seed of the projection matrix."""
    alpha: float = 1.0
    """BBT's α: bbt projections give offsets of std α·σ̂ for actions of std sigma0."""
    sigma0: float = 1.0
    """BBT's σ₀: the action scale the bbt projections are calibrated for (CMA's initial step size)."""
    reward: str = "accuracy"
    """accuracy (the paper's) or a denser one (see crlprompt.scoring.REWARDS); accuracy is always in info."""
    reward_split: str = "drl"
    """Rows the reward is computed on: drl = D_RL (the paper's; ``"rl"`` is its earlier name) | train = the training rows (few-shot
    ids: BBT's fitness on the k-shot train rows, D_RL kept for selecting the prompt)."""
    reward_batch_size: int | None = None
    """Score each step on a seeded minibatch of D_RL of this size (shared by the K prompts of a vector step); None = all."""
    episode_length: int = 1
    """1 = a bandit (terminated every step); T > 1 = the center moves by each action, truncated after T steps (single env only)."""
    max_drl: int | None = None
    """Keep only the first this many rows of D_RL (cheaper rewards); None = all."""
    probe_rows: int = 2000
    """Train rows used to fit a probe / planted head."""
    checkpoint: str | None = None
    """A crl-prompt prompt file or run directory to start from (its θ is the center, its head the head)."""
    max_rows: int = 128
    """Rows per model call when scoring (K prompts × examples)."""
    device: str | None = None
    """cpu | cuda | None (= cuda when available)."""

    def __post_init__(self) -> None:
        if isinstance(self.setup, dict):
            self.setup = SetupConfig.from_dict(self.setup)
        if not isinstance(self.setup, SetupConfig):
            raise ConfigError(f"setup must be a SetupConfig, got {type(self.setup).__name__}")
        if self.head not in HEADS:
            raise ConfigError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head == "verbalizer" and self.setup.head == "auto":
            self.setup = dataclasses.replace(self.setup, head="verbalizer")
        if self.setup.head == "verbalizer" and self.head not in ("auto", "verbalizer", "checkpoint"):
            raise ConfigError(f"head={self.head!r} needs a linear setup head; the setup asks for head='verbalizer'")
        s = self.sigma
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and 0 < s <= 1e6):
            raise ConfigError(f"sigma must be a finite number in (0, 1e6], got {s!r}")
        self.sigma = float(s)
        if self.reward not in _reward_kinds():
            raise ConfigError(f"reward must be one of {_reward_kinds()}, got {self.reward!r}")
        self.reward_split = split_name(self.reward_split)
        if self.reward_split not in REWARD_SPLITS:
            raise ConfigError(f"reward_split must be one of {REWARD_SPLITS}, got {self.reward_split!r}")
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if self.projection == "bbt_layer":
            if self.setup.prompt_kind != "deep":
                raise ConfigError("projection='bbt_layer' needs a deep prompt; pass prompt='deep' or projection='bbt'")
            if self.projection_dim is None:
                raise ConfigError("projection='bbt_layer' needs projection_dim (d per layer; BBTv2 uses 500)")
        for name in ("alpha", "sigma0"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
            setattr(self, name, float(v))
        self._check_start()
        for name in ("projection_dim", "reward_batch_size", "max_drl"):
            setattr(self, name, _positive_int(name, getattr(self, name), optional=True))
        for name in ("episode_length", "probe_rows", "max_rows"):
            setattr(self, name, _positive_int(name, getattr(self, name)))
        if isinstance(self.projection_seed, bool) or not isinstance(self.projection_seed, numbers.Integral):
            raise ConfigError(f"projection_seed must be an int, got {self.projection_seed!r}")
        self.projection_seed = int(self.projection_seed)
        if self.head == "checkpoint" and not self.checkpoint:
            raise ConfigError("head='checkpoint' needs checkpoint=<prompt file or run directory>")

    def _check_start(self) -> None:
        s = self.start
        if not isinstance(s, str) or not (s in STARTS or (s.startswith("text:") and s[5:].strip())):
            raise ConfigError(f"start must be one of {STARTS} or 'text:<some text>', got {s!r}")
        if s == "checkpoint" and not self.checkpoint:
            raise ConfigError("start='checkpoint' needs checkpoint=<prompt file or run directory>")
        if self.head == "planted" and s != "auto":
            raise ConfigError(f"head='planted' chooses its own random start; drop start={s!r} or use head='probe'")

    @property
    def start_kind(self) -> str:
        """The start actually used: checkpoint, random, tokens, handcraft, handcraft_text, text, or setup (``auto``
        without a checkpoint: the prompt ``setup.init`` made)."""
        if self.start == "auto":
            return "checkpoint" if self.checkpoint else "setup"
        return "text" if self.start.startswith("text:") else self.start

    @property
    def head_kind(self) -> str:
        """The head actually used (``auto`` resolved)."""
        if self.head != "auto":
            return self.head
        if self.checkpoint:
            return "checkpoint"
        return "verbalizer" if self.setup.head == "verbalizer" else "probe"

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "EnvConfig":
        """Route ``gym.make`` keyword arguments: SetupConfig names into ``setup``, the rest here."""
        setup_names = {f.name for f in dataclasses.fields(SetupConfig)}
        own = {f.name for f in dataclasses.fields(cls)} - {"setup"}
        setup = kwargs.pop("setup", None)
        setup_kw: dict[str, Any] = {}
        env_kw: dict[str, Any] = {}
        for key, value in kwargs.items():
            name = ALIASES.get(key, key)
            if key in RENAMED:
                warn_renamed(key, name)
            if name in own:  # "head" is the env's frozen head; the setup's follows from it
                env_kw[name] = value
            elif name in setup_names:
                setup_kw[name] = value
            else:
                raise ConfigError(
                    f"unknown env option {key!r}; env options: {sorted(own)}; setup options: {sorted(setup_names)}"
                )
        if isinstance(setup, dict):
            setup = SetupConfig.from_dict(setup)
        ckpt = env_kw.get("checkpoint")
        if ckpt:  # the prompt's shape is the checkpoint's (a registered id's num_tokens would not fit it)
            from ..prompt_io import checkpoint_layout

            layout = checkpoint_layout(ckpt)
            if layout is not None:
                setup_kw["prompt"], setup_kw["num_tokens"] = layout
        base = setup if setup is not None else SetupConfig()
        return cls(setup=dataclasses.replace(base, **setup_kw), **env_kw)


def _positive_int(name: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive int{' or None' if optional else ''}, got {value!r}")
    return int(value)
