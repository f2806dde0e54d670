"""SoftPromptEnv: soft-prompt search on a frozen LM as a Gymnasium environment."""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ..build import Setup, build, resolve_device
from ..prompts import load_prompt
from ..scoring import REWARDS, fit_probe, score_population

log = logging.getLogger(__name__)

HEADS = ("auto", "probe", "verbalizer", "random", "checkpoint")


class PromptSearch:
    """What a step computes, shared by the single and the vector env.

    Holds the frozen scorer (LM + head), the reward data D_RL, the action projection A, σ and
    the center. ``perturb(actions (K, d)) -> (K, D)`` prompts; ``rewards(prompts) -> (K,)``.
    """

    def __init__(
        self,
        setup: Setup,
        *,
        sigma: float,
        projection_dim: int | None,
        projection_seed: int,
        reward: str,
        reward_batch_size: int | None,
        max_rows: int,
    ):
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating, np.integer)):
            raise ValueError(f"sigma must be a number, got {sigma!r}")
        if not (np.isfinite(sigma) and 0 < sigma <= 1e6):
            raise ValueError(f"sigma must be finite and in (0, 1e6], got {sigma!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        self.setup = setup
        self.model = setup.model
        self.data = setup.rl
        if len(self.data) == 0:
            raise ValueError("D_RL is empty: raise rl_fraction or give more training data")
        dim = self.model.layout.dim
        if projection_dim is not None and not (isinstance(projection_dim, int) and 0 < projection_dim <= dim):
            raise ValueError(f"projection_dim must be an int in [1, D={dim}], got {projection_dim!r}")
        for name, v in (("reward_batch_size", reward_batch_size), ("max_rows", max_rows)):
            if (v is not None or name == "max_rows") and not (
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            ):
                raise ValueError(f"{name} must be a positive int{' or None' if name != 'max_rows' else ''}, got {v!r}")
        if dim == 0:
            raise ValueError("the prompt has no parameters (num_tokens=0): there is nothing to search")
        self.sigma = float(sigma)
        self.reward_kind = reward
        self.reward_batch_size = None if reward_batch_size is None else min(int(reward_batch_size), len(self.data))
        self.max_rows = max_rows
        self.dim = dim
        self.action_dim = projection_dim or dim
        self.projection = None
        if projection_dim is not None and projection_dim != dim:
            # Entries N(0, 1/d): each coordinate of A a has unit variance for a ~ N(0, I_d), so
            # sigma means the same per-coordinate noise with and without projection.
            g = torch.Generator().manual_seed(projection_seed)
            self.projection = (torch.randn(dim, projection_dim, generator=g) / np.sqrt(projection_dim)).to(self.model.device)
        self.center = self.model.prompt.theta.detach().clone()
        self.num_evals = 0

    def set_center(self, center: Any) -> None:
        c = torch.as_tensor(np.asarray(center) if not torch.is_tensor(center) else center.detach(), dtype=torch.float32)
        if c.shape != (self.dim,):
            raise ValueError(f"center must have shape ({self.dim},), got {tuple(c.shape)}")
        if not torch.isfinite(c).all():
            raise ValueError("center contains NaN or inf")
        self.center = c.to(self.model.device).clone()

    def check_actions(self, actions: Any, batch: int | None) -> torch.Tensor:
        try:
            if torch.is_tensor(actions):
                actions = actions.detach().cpu().float().numpy()
            a = np.asarray(actions)
        except Exception as e:  # objects numpy cannot hold as an array
            raise ValueError(f"action must be a float array, got {type(actions).__name__} ({e})") from None
        want = (self.action_dim,) if batch is None else (batch, self.action_dim)
        if a.shape != want:
            raise ValueError(f"action must have shape {want}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"action must be a float array, got dtype {a.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            a32 = a.astype(np.float32)  # the check runs on what is evaluated: 1e39 overflows here
        if not np.isfinite(a32).all():
            raise ValueError("action contains NaN or inf (or overflows float32); the env was not stepped")
        return torch.as_tensor(a32).reshape(-1, self.action_dim).to(self.model.device)

    @staticmethod
    def check_prompts(prompts: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(prompts).all():
            raise ValueError("the perturbed prompt center + sigma*A*a overflows (non-finite); use a smaller action")
        return prompts

    def perturb(self, actions: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
        """P' = center + σ A a for each row of ``actions (K, d)``: ``(K, D)``."""
        center = self.center if center is None else center
        delta = actions if self.projection is None else actions @ self.projection.T
        return center.unsqueeze(0) + self.sigma * delta

    def prompt_for(self, action: Any) -> np.ndarray:
        """The prompt vector an action evaluates (float32 ``(D,)``), for agents and export."""
        a = self.check_actions(action, None)
        return self.perturb(a)[0].cpu().numpy()

    def rewards(self, prompts: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward, accuracy), each ``(K,)``, on all of D_RL or a minibatch drawn from ``rng``."""
        idx = None
        if self.reward_batch_size is not None and self.reward_batch_size < len(self.data):
            idx = np.sort(rng.choice(len(self.data), self.reward_batch_size, replace=False))
        scores = score_population(self.model, self.data, prompts, idx=idx, max_rows=self.max_rows)
        self.num_evals += prompts.shape[0]
        reward = scores.reward(self.reward_kind)
        if not torch.isfinite(reward).all():  # e.g. |P'| ~ 1e37: the frozen LM's logits are NaN
            raise ValueError("the perturbed prompt gives non-finite logits (its values are too large); use a smaller action")
        return reward, scores.reward("accuracy")


def make_search(
    task: str = "trec",
    model: str = "minilm",
    *,
    prompt: str = "deep",
    num_tokens: int = 20,
    head: str = "auto",
    sigma: float = 0.1,
    projection_dim: int | None = None,
    projection_seed: int = 0,
    reward: str = "accuracy",
    reward_batch_size: int | None = None,
    rl_fraction: float = 0.1,
    max_train: int | None = None,
    max_rl: int | None = None,
    probe_rows: int = 2000,
    data_seed: int = 0,
    init_seed: int = 0,
    checkpoint: str | None = None,
    data_dir: str | None = None,
    max_rows: int = 128,
    device: str | None = None,
    setup: Setup | None = None,
) -> PromptSearch:
    """Build the :class:`PromptSearch` behind an env from names (or reuse a built ``setup``)."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if setup is None:
        head_kind = "verbalizer" if head == "verbalizer" else "linear"
        if head == "auto" and task == "tiny":
            head = "random"
        if task == "tiny":
            from .synthetic import tiny_setup

            setup = tiny_setup(model=model, prompt=prompt, num_tokens=num_tokens, seed=init_seed, data_seed=data_seed)
        else:
            setup = build(
                task, model, prompt=prompt, num_tokens=num_tokens, head=head_kind, seed=init_seed,
                data_seed=data_seed, data_dir=data_dir, rl_fraction=rl_fraction, max_train=max_train,
                device=resolve_device(device),
            )  # fmt: skip
        if head == "auto":
            head = "checkpoint" if checkpoint else ("verbalizer" if head_kind == "verbalizer" else "probe")
        if max_rl is not None and not (isinstance(max_rl, int) and max_rl > 0):
            raise ValueError(f"max_rl must be a positive int (rows of D_RL to keep) or None, got {max_rl!r}")
        if max_rl is not None and max_rl < len(setup.rl):
            setup.rl = setup.rl.subset(np.arange(max_rl))
        if checkpoint:
            load_prompt(setup.model, checkpoint)
        elif head == "probe":
            rows = np.arange(min(probe_rows, len(setup.train)))
            acc = fit_probe(setup.model, setup.train.subset(rows))
            log.info("fitted a ridge probe head on %d train rows (train acc %.3f)", len(rows), acc)
    setup.model.eval()
    return PromptSearch(
        setup, sigma=sigma, projection_dim=projection_dim, projection_seed=projection_seed, reward=reward,
        reward_batch_size=reward_batch_size, max_rows=max_rows,
    )  # fmt: skip


class SoftPromptEnv(gym.Env):
    """Search a soft prompt for a frozen language model; the reward is accuracy on D_RL.

    ## Description
    A frozen LM with a soft prompt θ ∈ R^D (deep prefix or shallow) and a frozen classification
    head defines a classifier f(θ, x). The environment holds a *center* prompt and a reward subset
    D_RL of the training data. An action perturbs the center; the reward is how well the
    perturbed prompt classifies D_RL. This is the environment of CRL-Prompt (Algorithm 1): a
    Gaussian policy N(center, σ²I) is exactly an agent that samples ``a ~ N(0, I)``.

    ## Action Space
    ``Box(-1, 1, (d,), float32)``. The evaluated prompt is ``P' = center + σ · A · a`` where A is
    the identity (d = D) or, with ``projection_dim=d``, a fixed seeded Gaussian matrix of shape
    (D, d) with entries N(0, 1/d) (Black-Box-Tuning style; keeps PPO/CMA well conditioned). The
    env does **not** clip: values outside the nominal box are evaluated as given (so Gaussian
    agents get exact N(center, σ²AAᵀ) samples); NaN/inf, wrong shapes and non-float dtypes raise
    ``ValueError`` and leave the env unchanged.

    ## Observation Space
    ``Box(-inf, inf, (2,), float32)``: ``[last reward, t / episode_length]``; ``[0, 0]`` after reset.
    The task is a bandit (one step) by default, so the observation carries no state to exploit.

    ## Rewards
    ``reward="accuracy"`` (default, as in the paper): fraction of D_RL (or of a seeded minibatch
    of ``reward_batch_size`` rows drawn with ``self.np_random``) classified correctly by P'.
    Denser options: ``"margin"`` (mean true-class logit margin) and ``"neg_ce"`` (mean log p(y)).

    ## Starting State
    The center is the initial prompt (seeded random, or ``checkpoint``'s), or whatever
    ``reset(options={"center": θ})`` set last; an agent training θ by gradients hands θ over this way.

    ## Episode End
    ``episode_length=1`` (default): every step ends with ``terminated=True, truncated=False``.
    With ``episode_length=T > 1`` the center moves by each action within the episode and the
    episode is truncated after T steps (the base center is restored at reset).

    ## Arguments
    ``task``, ``model``: names understood by :func:`crlprompt.tasks.load_task` and
    :func:`crlprompt.models.load_model` (``task="tiny"`` is a synthetic task for tiny models).
    ``prompt`` ("deep" | "shallow"), ``num_tokens``, ``head`` ("auto" | "probe" | "verbalizer" |
    "random" | "checkpoint"; "probe" fits a ridge-regression linear head once on train features,
    for LMs without an LM head), ``sigma`` (> 0), ``projection_dim``, ``projection_seed``,
    ``reward``, ``reward_batch_size``, ``episode_length``, ``rl_fraction``, ``max_rl``,
    ``checkpoint`` (a crl-prompt ``prompt.safetensors``), ``data_dir``, ``device``,
    ``max_rows`` (rows per forward), ``setup`` (reuse a built :class:`crlprompt.build.Setup`).

    ## Info
    ``{"accuracy": float, "step": int}`` — plain, deterministic values (the lifetime count of
    prompt evaluations is ``env.unwrapped.search.num_evals``).

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": []}

    def __init__(self, *, episode_length: int = 1, search: PromptSearch | None = None, **kwargs: Any):
        super().__init__()
        if not (isinstance(episode_length, int) and episode_length >= 1):
            raise ValueError(f"episode_length must be an int >= 1, got {episode_length!r}")
        self.search = search or make_search(**kwargs)
        self.episode_length = episode_length
        self.action_space = spaces.Box(-1.0, 1.0, (self.search.action_dim,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self._base_center = self.search.center.clone()
        self._t = 0

    @property
    def center(self) -> np.ndarray:
        return self.search.center.cpu().numpy()

    def prompt_for(self, action: Any) -> np.ndarray:
        return self.search.prompt_for(action)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "center" in options:
            self.search.set_center(options["center"])
            self._base_center = self.search.center.clone()
        else:
            self.search.center = self._base_center.clone()
        self._t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action: Any):
        a = self.search.check_actions(action, None)
        prompts = self.search.check_prompts(self.search.perturb(a))
        reward, acc = self.search.rewards(prompts, self.np_random)
        self._t += 1
        if self.episode_length > 1:
            self.search.center = prompts[0].clone()
        r = float(reward[0])
        obs = np.array([r, self._t / self.episode_length], np.float32)
        terminated = self.episode_length == 1
        truncated = self.episode_length > 1 and self._t >= self.episode_length
        info = {"accuracy": float(acc[0]), "step": self._t}
        return obs, r, terminated, truncated, info
