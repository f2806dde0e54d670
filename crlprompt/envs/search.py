"""PromptSearch: what one env step computes, shared by the single and the vector env.

``make_search(EnvConfig)`` builds the frozen scorer (LM + head), the reward data D_RL, the
action projection A, σ and the center; ``PromptSearch.perturb(actions (K, d)) -> (K, D)``
prompts; ``PromptSearch.rewards(prompts) -> (K,)`` rewards and accuracies;
``PromptSearch.save(path, action)`` the run directory of one prompt.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..build import Setup, build, build_model, resolve_device
from ..data.splits import split_name
from ..errors import ConfigError, EnvError
from ..floors import fit_probe_head
from ..models import LoadedModel
from ..prompts import SoftPrompt, load_prompt, text_theta
from ..rundir import write_run_dir
from ..scoring import fit_probe, score_population
from .config import EnvConfig
from .projection import Projection, activation_scales

log = logging.getLogger(__name__)


#: the keys ``reset(options=...)`` understands
RESET_OPTIONS = ("center",)


def check_reset_options(options: Any) -> None:
    """Refuse reset options this env does not know (a misspelt ``"centre"`` would otherwise be ignored)."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise EnvError(f"reset options must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise EnvError(f"unknown reset option(s) {unknown}; this env understands {list(RESET_OPTIONS)}")


class PromptSearch:
    """The frozen scorer and the search space of one env (see :class:`EnvConfig` for the options)."""

    def __init__(self, setup: Setup, config: EnvConfig | None = None):
        cfg = config or EnvConfig(setup=setup.config)
        self.config = cfg
        self.setup = setup
        self.model = setup.model
        self.data = setup.drl if cfg.reward_split == "drl" else setup.train
        if len(self.data) == 0:
            what = "D_RL" if cfg.reward_split == "drl" else "the train split"
            raise ConfigError(f"{what} (reward_split={cfg.reward_split!r}) is empty: raise drl_fraction or give more data")
        dim = self.model.layout.dim
        if dim == 0:
            raise ConfigError("the prompt has no parameters (num_tokens=0): there is nothing to search")
        self.sigma = cfg.sigma
        self.reward_kind = cfg.reward
        rbs = cfg.reward_batch_size
        self.reward_batch_size = None if rbs is None else min(rbs, len(self.data))
        self.max_rows = cfg.max_rows
        self.dim = dim
        scales = None
        if cfg.projection in ("bbt", "bbt_layer"):
            scales = activation_scales(setup)
            log.info("bbt projection: activation std σ̂ %s", _describe(scales))
        self.projector = Projection(
            cfg.projection, self.model.layout, cfg.projection_dim, scales=scales, alpha=cfg.alpha,
            sigma0=cfg.sigma0, seed=cfg.projection_seed, device=self.model.device,
        )  # fmt: skip
        self.projection = self.projector.matrix
        """A ``(D, d)``, the per-layer ``(L, D_l, d)`` of bbt_layer, or None (identity or bbt's diagonal scaling)."""
        self.action_dim = self.projector.action_dim
        self.center = self.model.prompt.theta.detach().clone()
        self.num_evals = 0

    def set_center(self, center: Any) -> None:
        c = torch.as_tensor(np.asarray(center) if not torch.is_tensor(center) else center.detach(), dtype=torch.float32)
        if c.shape != (self.dim,):
            raise EnvError(f"center must have shape ({self.dim},), got {tuple(c.shape)}")
        if not torch.isfinite(c).all():
            raise EnvError("center contains NaN or inf")
        self.center = c.to(self.model.device).clone()

    def check_actions(self, actions: Any, batch: int | None) -> torch.Tensor:
        try:
            if torch.is_tensor(actions):
                actions = actions.detach().cpu().float().numpy()
            a = np.asarray(actions)
        except Exception as e:  # objects numpy cannot hold as an array
            raise EnvError(f"action must be a float array, got {type(actions).__name__} ({e})") from None
        want = (self.action_dim,) if batch is None else (batch, self.action_dim)
        if a.shape != want:
            raise EnvError(f"action must have shape {want}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise EnvError(f"action must be a float array, got dtype {a.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            a32 = a.astype(np.float32)  # the check runs on what is evaluated: 1e39 overflows here
        if not np.isfinite(a32).all():
            raise EnvError("action contains NaN or inf (or overflows float32); the env was not stepped")
        return torch.as_tensor(a32).reshape(-1, self.action_dim).to(self.model.device)

    @staticmethod
    def check_prompts(prompts: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(prompts).all():
            raise EnvError("the perturbed prompt center + sigma*A*a overflows (non-finite); use a smaller action")
        return prompts

    def perturb(self, actions: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
        """P' = center + σ A a for each row of ``actions (K, d)``: ``(K, D)``."""
        center = self.center if center is None else center
        return center.unsqueeze(0) + self.sigma * self.projector(actions)

    def prompt_for(self, action: Any) -> np.ndarray:
        """The prompt vector an action evaluates (float32 ``(D,)``), for agents and export."""
        a = self.check_actions(action, None)
        return self.perturb(a)[0].cpu().numpy()

    def evaluate(self, action: Any = None, *, prompt: Any = None, split: str = "test", sample: int | None = None,
                 sample_seed: int = 0) -> dict:  # fmt: skip
        """Score one prompt on a split: ``{"accuracy", "loss", "n", "split"}`` (loss = mean CE).

        The prompt is ``center + σ A action`` for an ``action``, else ``prompt``: a θ vector ``(D,)``
        or a saved prompt (a prompt file, run directory or PEFT adapter, scored with its own head),
        else the current center. ``split``: test | drl (D_RL; ``"rl"`` is its earlier name) | train. ``sample``: score a seeded
        random subset of that many rows instead of the whole split (the same rows for the same
        ``sample_seed``, so two prompts scored with it are paired; ``n`` reports it), for splits a
        decoder takes long to score (AG News test: 7,600 rows). Counts no evaluation."""
        splits = {"test": self.setup.test, "drl": self.setup.drl, "train": self.setup.train}
        split = split_name(split)
        if split not in splits:
            raise EnvError(f"split must be one of {tuple(splits)}, got {split!r}")
        data = splits[split]
        if len(data) == 0:
            raise EnvError(f"the {split} split is empty (SST-2's test rows need data_dir=<dir with sst2/dev.tsv>)")
        if sample is not None:
            if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
                raise EnvError(f"sample must be an int >= 1 (rows to score), got {sample!r}")
            if sample < len(data):
                rows = np.random.default_rng(sample_seed).choice(len(data), size=sample, replace=False)
                data = data.subset(np.sort(rows))
        if action is not None and prompt is not None:
            raise EnvError("pass an action or a prompt, not both")
        model = self.model
        if isinstance(prompt, (str, os.PathLike)):
            c = self.setup.config
            model = build_model(self.setup.lm, self.setup.spec, prompt=c.prompt_kind, num_tokens=c.num_tokens,
                                head=c.head_kind, pooling=c.pooling, label_tokens=c.label_tokens).to(self.model.device)  # fmt: skip
            load_prompt(model, prompt)
            theta = model.prompt.theta.detach()
        else:
            theta = self.theta_of(action, prompt)
        scores = score_population(model, data, theta.to(model.device).reshape(1, -1), max_rows=self.max_rows)
        return {"accuracy": float(scores.reward("accuracy")[0]), "loss": float(-scores.reward("ce")[0]),
                "n": len(data), "split": split}  # fmt: skip

    def theta_of(self, action: Any = None, prompt: Any = None) -> torch.Tensor:
        """θ ``(D,)``: ``center + σ A action`` for an ``action``, else the vector ``prompt``, else the center."""
        if action is not None and prompt is not None:
            raise EnvError("pass an action or a prompt, not both")
        if action is not None:
            return self.check_prompts(self.perturb(self.check_actions(action, None)))[0]
        if prompt is None:
            return self.center
        theta = torch.as_tensor(np.asarray(prompt) if not torch.is_tensor(prompt) else prompt.detach(),
                                dtype=torch.float32).reshape(-1)  # fmt: skip
        if theta.shape != (self.dim,) or not torch.isfinite(theta).all():
            raise EnvError(f"prompt must be a finite vector of shape ({self.dim},), got {tuple(theta.shape)}")
        return theta

    def run_config(self, env_id: str | None = None) -> dict:
        """What ``crl-prompt eval`` needs to rebuild this search's model and data, as a run directory's
        ``config.json`` holds it: the :class:`~crlprompt.build.SetupConfig` as stored and the search options."""
        return {
            "env_id": env_id,
            "setup": dataclasses.asdict(self.setup.config),
            # the method whose prompt this is (θ searched, not trained, but of the same kind): a deep prefix is
            # Prompt v2's, a shallow prompt plain prompt tuning's ("ptv1" names the prompt-encoder method)
            "method": "ptv2" if self.model.layout.kind == "deep" else "prompt-tuning",
            "sigma": self.sigma,
            "projection_dim": self.action_dim if self.projection is not None else None,
        }

    def save(self, path: str | Path, action: Any = None, *, prompt: Any = None, env_id: str | None = None,
             meta: dict | None = None, overwrite: bool = False) -> Path:  # fmt: skip
        """Write the run directory of one prompt, the layout a search result's ``save(path, env)`` writes
        (``crl-prompt eval --checkpoint path``, ``PromptClassifier.load(path)`` and PEFT read it).

        The prompt is that of ``action`` (``center + σ A action``), else the vector ``prompt`` θ, else the
        center, with the env's frozen head. ``meta``: JSON values kept in ``config.json`` and the prompt
        file (an optimiser's name, its budget...). A non-empty ``path`` is refused unless ``overwrite``.
        The env's model keeps its own θ: the prompt is copied in only while it is written. Returns ``path``."""
        out = Path(path)
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
            raise ConfigError(f"{out} exists and is not empty; choose another path or pass overwrite=True")
        if isinstance(prompt, (str, os.PathLike)):
            raise EnvError(f"prompt={prompt!r} is saved already; pass an action or a θ vector to save")
        config = self.run_config(env_id)
        clash = sorted(set(meta or {}) & set(config))
        if clash:
            raise ConfigError(f"meta keys {clash} would replace the run's own config entries; rename them")
        config.update(meta or {})
        return self.write_run(out, self.theta_of(action, prompt), config, meta)

    def write_run(self, path: str | Path, theta: torch.Tensor, config: dict, meta: dict | None = None) -> Path:
        """Write θ ``(D,)`` with the frozen head as the run directory ``path`` (``config.json`` = ``config``,
        ``meta`` in the prompt file); the model keeps its own θ, the prompt is copied in only while written."""
        pm = self.model
        old = pm.prompt.theta.detach().clone()
        try:
            with torch.no_grad():
                pm.prompt.theta.copy_(torch.as_tensor(theta).to(old))
            return write_run_dir(path, config, pm, meta=meta, spec=self.setup.spec, setup=self.setup.config,
                                 record={"method": config["method"]})  # fmt: skip
        finally:
            with torch.no_grad():
                pm.prompt.theta.copy_(old)

    def rewards(self, prompts: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward, accuracy), each ``(K,)``, on all of D_RL or a minibatch drawn from ``rng``."""
        idx = None
        if self.reward_batch_size is not None and self.reward_batch_size < len(self.data):
            idx = np.sort(rng.choice(len(self.data), self.reward_batch_size, replace=False))
        scores = score_population(self.model, self.data, prompts, idx=idx, max_rows=self.max_rows)
        self.num_evals += prompts.shape[0]
        reward = scores.reward(self.reward_kind)
        if not torch.isfinite(reward).all():  # e.g. |P'| ~ 1e37: the frozen LM's logits are NaN
            raise EnvError("the perturbed prompt gives non-finite logits (its values are too large); use a smaller action")
        return reward, scores.reward("accuracy")


class PromptAccess:
    """What the single and the vector env share beside the Gymnasium API: score or save one prompt
    (one action ``(d,)``, a θ, a saved prompt, or the center) through their :class:`PromptSearch`."""

    search: PromptSearch

    def evaluate(self, action: Any = None, *, prompt: Any = None, split: str = "test", sample: int | None = None,
                 sample_seed: int = 0) -> dict:  # fmt: skip
        """Accuracy and loss of the prompt of ``action`` (or a θ / saved ``prompt``, else the center) on
        a split (or a seeded ``sample`` of its rows): ``{"accuracy", "loss", "n", "split"}``; see
        :meth:`PromptSearch.evaluate`."""
        return self.search.evaluate(action, prompt=prompt, split=split, sample=sample, sample_seed=sample_seed)

    def save(self, path: str | os.PathLike, action: Any = None, *, prompt: Any = None, meta: dict | None = None,
             overwrite: bool = False) -> Path:  # fmt: skip
        """Write the run directory of the prompt of ``action`` (or a θ ``prompt``, else the center) found by
        any optimiser: what a search result's ``save(path, env)`` writes, read by ``crl-prompt eval
        --checkpoint path`` and ``PromptClassifier.load(path)``; returns ``path``. See :meth:`PromptSearch.save`."""
        spec = getattr(self, "spec", None)
        return self.search.save(path, action, prompt=prompt, env_id=spec.id if spec is not None else None,
                                meta=meta, overwrite=overwrite)  # fmt: skip


def plant_head(setup: Setup, *, ridge: float = 0.1, rows: int = 2000) -> float:
    """Fit the linear head at the current (hidden) prompt θ*, then move θ to a fresh random prompt.

    The search then starts away from a prompt that is known to work: a learnable synthetic
    problem even for random tiny models, whose features collapse under most prompts. θ* is
    initialised from ``setup.config.seed``, the start from ``seed + 1``. Returns the probe's
    training accuracy at θ*.
    """
    pm, cfg = setup.model, setup.config
    acc = fit_probe(pm, setup.train.subset(np.arange(min(rows, len(setup.train)))), ridge=ridge)
    fresh = SoftPrompt(pm.layout, setup.lm, seed=cfg.seed + 1, init=cfg.init)
    with torch.no_grad():
        pm.prompt.theta.copy_(fresh.theta.to(pm.prompt.theta.device))
    return acc


def handcraft_text(setup: Setup) -> str:
    """The task's HandCraft prompt as plain text (its template without the input and the label)."""
    return " ".join(setup.spec.render("", "", lm=setup.lm.arch == "decoder").split())


def start_text(setup: Setup, config: EnvConfig) -> str:
    """The text a text-based start holds: none (boundary tokens) for ``handcraft``, the template's
    words for ``handcraft_text``, the given text for ``text:...``."""
    kind = config.start_kind
    if kind == "handcraft":
        return ""
    return handcraft_text(setup) if kind == "handcraft_text" else config.start[len("text:") :]


def apply_start(setup: Setup, config: EnvConfig) -> str:
    """Put the start prompt of ``config.start`` into ``setup.model`` (θ only); returns what it is."""
    kind, pm = config.start_kind, setup.model
    if kind in ("setup", "checkpoint"):
        return kind  # the setup's own init; a checkpoint is loaded with its head by make_search
    if kind in ("random", "tokens", "zero"):
        theta, what = SoftPrompt(pm.layout, setup.lm, seed=setup.config.seed, init=kind).theta.detach(), kind
    else:
        text = start_text(setup, config)
        theta, what = text_theta(setup.lm, pm.layout, text), f"{kind}: text {text!r}"
    with torch.no_grad():
        pm.prompt.theta.copy_(theta.to(pm.prompt.theta.device))
    return what


def make_search(
    config: EnvConfig, setup: Setup | None = None, *, lm: LoadedModel | None = None, require_test: bool = False
) -> PromptSearch:
    """Build the :class:`PromptSearch` of ``config`` (or around an already built ``setup``).

    ``lm`` reuses a loaded model; ``require_test=True`` (the compare runner, which scores the test
    split) refuses a missing test file instead of leaving the test split empty.
    """
    if setup is None:
        setup = build(config.setup, device=resolve_device(config.device), lm=lm, require_test=require_test)
        head = config.head_kind
        if head == "verbalizer" and setup.model.head_kind != "verbalizer":
            raise ConfigError("head='verbalizer' needs setup head='verbalizer' (pass head='verbalizer' for both)")
        if config.max_drl is not None and config.max_drl < len(setup.drl):
            setup.drl = setup.drl.subset(np.arange(config.max_drl))
        start = apply_start(setup, config)
        if config.checkpoint:
            load_prompt(setup.model, config.checkpoint)
            if config.start_kind not in ("setup", "checkpoint"):
                apply_start(setup, config)  # the checkpoint's head, the start's θ
        if head == "probe":
            rows = np.arange(min(config.probe_rows, len(setup.train)))
            fit = fit_probe_head(setup.model, setup.train.subset(rows), setup.drl)
            log.info("fitted a logistic-regression probe head at the start on %d train rows (C=%g chosen on D_RL; "
                     "train acc %.3f, D_RL acc %.3f)", len(rows), fit.c, fit.train_acc, fit.drl_acc)  # fmt: skip
        elif head == "planted":
            acc = plant_head(setup, rows=config.probe_rows)
            log.info("planted a probe head at a hidden prompt (train acc %.3f); the search starts elsewhere", acc)
        log.info("start prompt: %s", "checkpoint" if config.checkpoint and start == "setup" else start)
    setup.model.eval()
    return PromptSearch(setup, config)


def _describe(scales: torch.Tensor) -> str:
    if scales.numel() == 1:
        return f"{float(scales):.4g}"
    return f"keys {scales[:, 0].min():.3g}..{scales[:, 0].max():.3g}, values {scales[:, 1].min():.3g}..{scales[:, 1].max():.3g}"


def resolve_search(config: EnvConfig | None, search: PromptSearch | None, kwargs: dict[str, Any]) -> PromptSearch:
    """The search an env constructor was given: an EnvConfig, keyword options (``gym.make``), a
    built ``search``, or ``setup=<a built Setup>`` to reuse its model and data as they are."""
    if search is not None:  # its config fixes every option; gym.make's registered kwargs do not apply
        if config is not None and config is not search.config:
            raise ConfigError("pass search= alone: its config already fixes every option")
        return search
    built = kwargs.pop("setup", None)
    if config is not None and kwargs:
        raise ConfigError("pass either an EnvConfig or keyword options, not both")
    if isinstance(built, Setup):
        config = config or EnvConfig.from_kwargs(setup=built.config, **kwargs)
        built.model.eval()
        return PromptSearch(built, config)
    if built is not None:
        kwargs["setup"] = built  # a SetupConfig or a dict of its fields
    return make_search(config or EnvConfig.from_kwargs(**kwargs))
