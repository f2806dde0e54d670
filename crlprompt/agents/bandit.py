"""A Gaussian-process bandit over the projected action: BoTorch, q = K points per step, TuRBO's trust region."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import torch

from ..errors import ConfigError
from .base import AskTellAgent
from .limits import require_action_dim

#: GP fits above this action dimension are refused (use a ``-Proj`` id).
MAX_GP_ACTION_DIM = 200
ACQUISITIONS = ("qlogei", "qucb")


def _require_botorch():
    try:
        import botorch  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("GPBanditAgent needs BoTorch: pip install botorch") from e


class GPBanditAgent(AskTellAgent):
    """Batch Bayesian optimisation of the env's reward over a box of actions.

    Follows batch BO with a GP surrogate (BoTorch ``SingleTaskGP`` + ``qLogExpectedImprovement``,
    Ament et al. 2023; or ``qUpperConfidenceBound``) and, with ``trust_region=True`` (default),
    the trust region of TuRBO-1 (Eriksson et al. 2019) for d ≈ 32–200: candidates are chosen in
    a box around the best point whose side doubles after 3 successive improving steps and halves
    after ``max(4, d/q)`` failing ones (restored to its initial size when it collapses). What
    differs from TuRBO: qLogEI in the region instead of Thompson sampling on 5000 candidates
    (too slow on a CPU), one region, and a bounded history.

    The search space is ``[-bound, bound]^d`` in action units (the env's box for ``bound=1``),
    rescaled to the unit cube for the GP; rewards are standardised. The first round is a scrambled
    Sobol design of ``n_init`` points (the center, a = 0, first). Each later round fits the GP
    (exact, O(n³)) on at most ``max_history`` points — the best quarter and the newest rest — and
    scores the q = ``batch`` points that maximise the acquisition. Fits stay cheap because the
    history is bounded; d above ``MAX_GP_ACTION_DIM`` (200) is refused. Not resumable: each
    ``learn`` starts a new design.

    Args:
        env: a soft-prompt env with a projected action, or its vector form (K points per forward).
        batch: q, points per round (default: the vector env's K, else 8); a multiple of K.
        n_init: points of the initial Sobol design (default 2·batch); a multiple of K.
        bound: half-width of the searched box in action units.
        acquisition: ``"qlogei"`` or ``"qucb"`` (with ``beta``).
        trust_region: TuRBO's region (True) or the whole box.
        max_history: points the GP is fitted on (>= 2·batch; at most 1000).
        num_restarts, raw_samples, maxiter: of BoTorch's acquisition optimiser (L-BFGS-B over the
            q·d coordinates jointly; its default of 200 iterations costs ~20 s a round at q = 16,
            d = 64 on one CPU core, 50 about 0.3 s).
        seed: seeds the design, the optimiser and the env.

    Events carry the trust region's side ``length`` after the round.
    """

    algo = "gp-bandit"
    global_rngs = ("torch",)  # BoTorch's draws, from the private stream of session()

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        batch: int | None = None,
        n_init: int | None = None,
        bound: float = 1.0,
        acquisition: str = "qlogei",
        beta: float = 2.0,
        trust_region: bool = True,
        max_history: int = 256,
        num_restarts: int = 2,
        raw_samples: int = 64,
        maxiter: int = 50,
        seed: int = 0,
    ):
        _require_botorch()
        super().__init__(env, seed)
        k = self.scorer.batch
        require_action_dim(self.scorer.action_dim, MAX_GP_ACTION_DIM, "GPBanditAgent (a GP fit on the action)")
        self.batch = batch or (k if self.scorer.vector else 8)
        self.n_init = n_init or 2 * self.batch
        for name, v in (("batch", self.batch), ("n_init", self.n_init)):
            if not (isinstance(v, int) and v >= 1 and v % k == 0):
                raise ConfigError(f"{name} must be a positive multiple of the vector env's num_envs={k}, got {v!r}")
        if acquisition not in ACQUISITIONS:
            raise ConfigError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
        if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
            raise ConfigError(f"bound must be a finite number > 0, got {bound!r}")
        if not (isinstance(max_history, int) and 2 * self.batch <= max_history <= 1000):
            raise ConfigError(f"max_history must be an int in [2*batch={2 * self.batch}, 1000], got {max_history!r}")
        if not beta > 0:
            raise ConfigError(f"beta must be > 0, got {beta!r}")
        for name, v in (("num_restarts", num_restarts), ("raw_samples", raw_samples), ("maxiter", maxiter)):
            if not (isinstance(v, int) and v >= 1):
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        self.bound, self.acquisition, self.beta = float(bound), acquisition, float(beta)
        self.trust_region, self.max_history = trust_region, max_history
        self.num_restarts, self.raw_samples, self.maxiter = num_restarts, raw_samples, maxiter
        self.lengths: list[float] = []
        """Trust-region side length (unit-cube units) used at each round of the last ``learn``."""

    @property
    def evals_per_update(self) -> int:
        """The fewest evaluations a ``learn`` spends: the initial design."""
        return self.n_init

    @property
    def update_text(self) -> str:
        return f"n_init={self.n_init} (the initial design)"

    def _to_action(self, x: torch.Tensor) -> np.ndarray:
        return ((2 * x - 1) * self.bound).numpy().astype(np.float32)  # unit cube -> [-bound, bound]

    def _history(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """At most ``max_history`` points: the best quarter, then the newest."""
        n = len(y)
        if n <= self.max_history:
            return x, y
        top = torch.topk(y, self.max_history // 4).indices
        taken = set(top.tolist())
        rest = torch.tensor([i for i in range(n - 1, -1, -1) if i not in taken])
        keep = torch.cat([top, rest[: self.max_history - len(top)]]).sort().values
        return x[keep], y[keep]

    def _propose(self, x: torch.Tensor, y: torch.Tensor, length: float) -> torch.Tensor:
        """Fit the GP and return q = ``batch`` points ``(q, d)`` in the unit cube."""
        from botorch.acquisition import qLogExpectedImprovement, qUpperConfidenceBound
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from botorch.optim import optimize_acqf
        from gpytorch.mlls import ExactMarginalLogLikelihood

        hx, hy = self._history(x, y)
        gp = SingleTaskGP(hx, hy.unsqueeze(1), outcome_transform=Standardize(m=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BoTorch warns on ill-conditioned fits it then handles
            fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        d = x.shape[1]
        lo, hi = torch.zeros(d, dtype=x.dtype), torch.ones(d, dtype=x.dtype)
        if self.trust_region:
            best = hx[hy.argmax()]
            ls = gp.covar_module.lengthscale.detach().reshape(-1)
            w = ls / ls.log().mean().exp()  # TuRBO: side ∝ lengthscale, geometric mean 1
            lo, hi = (best - w * length / 2).clamp(0, 1), (best + w * length / 2).clamp(0, 1)
        if self.acquisition == "qlogei":
            acq = qLogExpectedImprovement(gp, best_f=hy.max())
        else:
            acq = qUpperConfidenceBound(gp, beta=self.beta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cand, _ = optimize_acqf(
                acq, bounds=torch.stack([lo, hi]), q=self.batch, num_restarts=self.num_restarts,
                raw_samples=self.raw_samples, options={"maxiter": self.maxiter},
            )  # fmt: skip
        return cand.detach()

    @contextmanager
    def session(self) -> Iterator[None]:
        """BoTorch draws from torch's global generator: a private, seeded state for the whole search."""
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            yield

    def start(self) -> None:
        d = self.scorer.action_dim
        self.length = 0.8  # TuRBO-1's initial side (its l_min 0.5**7, l_max 1.6 in tell)
        self._tol = (max(4, math.ceil(d / self.batch)), 3)  # failures to halve, successes to double
        self._fails = self._succs = 0
        self.lengths = []
        self.x: torch.Tensor | None = None  # (n, d) points scored, in the unit cube
        self.y: torch.Tensor | None = None  # (n,) their rewards

    def next_batch_size(self) -> int:
        return self.n_init if self.y is None else self.batch

    def ask(self) -> np.ndarray:
        from torch.quasirandom import SobolEngine

        if self.y is None:  # the initial design
            d = self.scorer.action_dim
            self._cand = SobolEngine(d, scramble=True, seed=self.seed).draw(self.n_init, dtype=torch.float64)  # (n, d)
            self._cand[0] = 0.5  # the center, a = 0
        else:
            self.lengths.append(self.length)
            self._cand = self._propose(self.x, self.y, self.length)  # (q, d)
        return self._to_action(self._cand)

    def tell(self, actions: np.ndarray, rewards: np.ndarray) -> dict:
        r = torch.from_numpy(rewards)
        if self.y is None:
            self.x, self.y = self._cand, r
            return {"length": self.length}
        improved = float(r.max()) > float(self.y.max()) + 1e-3 * abs(float(self.y.max()))
        self.x, self.y = torch.cat([self.x, self._cand]), torch.cat([self.y, r])
        if self.trust_region:
            fail_tol, succ_tol = self._tol
            self._succs, self._fails = (self._succs + 1, 0) if improved else (0, self._fails + 1)
            if self._succs == succ_tol:
                self.length, self._succs = min(2 * self.length, 1.6), 0
            elif self._fails == fail_tol:
                self.length, self._fails = self.length / 2, 0
            if self.length < 0.5**7:  # collapsed: start a fresh region (the data is kept)
                self.length = 0.8
        return {"length": self.length}
