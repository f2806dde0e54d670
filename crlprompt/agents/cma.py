"""CMA-ES on the env's action (Black-Box Tuning's optimizer), acting only through the env API.

Why pycma (the ``cma`` package) rather than ``cmaes`` or ``evotorch``:

* It is the reference implementation (N. Hansen's) and the one Black-Box Tuning used, so runs
  here line up with BBT's (same defaults: popsize, weights, step-size adaptation, active CMA).
* One class covers both search spaces: full CMA for a projected action (d ≤ ~1000) and
  separable CMA with linear time and memory (``CMA_diagonal=True``) for the full prompt,
  D in the hundreds of thousands.
* It depends on numpy only; ``cmaes`` would also do (small, separate ``CMA``/``SepCMA``
  classes), but ``evotorch`` is a framework with its own problem/algorithm classes and heavy
  dependencies (Ray, pandas, matplotlib) for what is an ask/tell loop here.
* ``ask``/``tell`` over a whole population fits the vector env: one generation is one
  batched forward, and its ``randn`` option lets the agent own the random stream (below).
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from .base import AskTellAgent

log = logging.getLogger(__name__)

#: Above this action dimension ``diagonal=None`` picks separable CMA: a full covariance needs
#: d² memory and an O(d³) eigendecomposition every few generations.
FULL_CMA_MAX_DIM = 1000


def _import_cma():
    try:
        import cma
    except ImportError as e:  # pragma: no cover - the extra is installed in the test env
        raise ImportError("CMAAgent needs pycma: pip install 'crl-prompt[search]' (or 'cma>=3.3')") from e
    return cma


def check_popsize(popsize) -> int:
    """CMA-ES's population: an int >= 2 (CMA ranks its samples); the one place it is validated."""
    if isinstance(popsize, bool) or not isinstance(popsize, (int, np.integer)) or popsize < 2:
        raise ConfigError(f"popsize must be an int >= 2 (CMA ranks its samples), got {popsize!r}")
    return int(popsize)


class CMAAgent(AskTellAgent):
    """CMA-ES (Hansen and Ostermeier 2001) on the env's action, via pycma's ask/tell interface.

    Each generation asks CMA for ``popsize`` actions, scores them with the env (a vector env of
    K sub-envs scores K per step in one batched forward, so ``popsize`` is a multiple of K) and
    tells CMA the negated rewards (CMA minimizes). The search starts at the env's center
    (action 0) with step size ``sigma0`` in action units, so the first generation samples
    prompts ``center + σ·sigma0·A·z``, z ~ N(0, I), like random search with ``scale=sigma0``.
    Actions are not bounded: the env evaluates them as given. The best action evaluated is kept.

    Common random numbers: with the env's ``reward_batch_size``, rows are drawn per env step;
    ``popsize = num_envs`` scores a whole generation on the same rows.

    The run ends when the budget is spent, ``callback`` returns ``False``, or CMA stops on a
    numerical criterion (``tolx``, ``tolconditioncov``, ``tolupsigma``, ``tolfacupx``: then
    ``stop_reason`` says which); its fitness-based stops (flat or stagnating fitness, common with
    accuracy rewards) are off, since the budget decides how long to search.

    Args:
        env: a soft-prompt env or its vector form
            (``gym.make_vec(id, num_envs=K, vectorization_mode="vector_entry_point")``).
        popsize: actions per generation (default: K for a vector env with K ≥ 2, else 20 as BBT).
        sigma0: initial step size in action units (BBT used 1 with its scaled projection).
        diagonal: separable CMA (a diagonal covariance, linear cost in d); ``None`` picks it for
            full-prompt actions (no projection) or d > ``FULL_CMA_MAX_DIM``, full CMA otherwise.
        seed: seeds CMA's samples and the env (minibatch draws); every int ≥ 0, 0 included,
            gives one reproducible run.
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        popsize: int | None = None,
        sigma0: float = 1.0,
        diagonal: bool | None = None,
        seed: int = 0,
    ):
        _import_cma()  # fail here, not after the env is built and the caller waits on learn()
        super().__init__(env, seed)
        k = self.scorer.batch
        if popsize is None:
            popsize = k if self.scorer.vector and k >= 2 else 20
        popsize = check_popsize(popsize)
        if popsize % k:
            raise ConfigError(
                f"popsize={popsize} must be a multiple of the vector env's num_envs={k} (one generation = "
                f"popsize/num_envs env steps); use popsize={k * max(1, round(popsize / k))} or make the vector "
                f"env with num_envs={popsize}"
            )
        if isinstance(sigma0, bool) or not isinstance(sigma0, (int, float, np.floating, np.integer)):
            raise ConfigError(f"sigma0 must be a number (the initial step size in action units), got {sigma0!r}")
        if not (np.isfinite(sigma0) and sigma0 > 0):
            raise ConfigError(f"sigma0 must be finite and > 0, got {sigma0!r}")
        if diagonal is not None and not isinstance(diagonal, bool):
            raise ConfigError(f"diagonal must be True, False or None (automatic), got {diagonal!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an int >= 0, got {seed!r}")
        d = self.scorer.action_dim
        full_dim = self.scorer.prompt_for(np.zeros(d, np.float32)).size  # D: the prompt's size
        self.popsize = int(popsize)
        self.sigma0 = float(sigma0)
        self.diagonal = (d == full_dim or d > FULL_CMA_MAX_DIM) if diagonal is None else diagonal
        self.seed = int(seed)
        self.mean_action: np.ndarray | None = None
        """CMA's mean action after ``learn`` (``(d,)`` float64)."""
        self.stop_reason: dict[str, Any] = {}
        """pycma's termination conditions if CMA stopped before the budget was spent, else ``{}``."""
        self.es: Any = None
        """The ``cma.CMAEvolutionStrategy`` of the last ``learn`` (its state, for inspection)."""

    def _strategy(self, d: int):
        """A fresh pycma ``CMAEvolutionStrategy`` at action 0, drawing its normals from ``seed``."""
        cma = _import_cma()
        rng = np.random.default_rng(self.seed)
        opts = {
            "popsize": self.popsize,
            "CMA_diagonal": self.diagonal,  # True: separable CMA, linear time and memory in d
            # Our own normal stream instead of the `seed` option, which reseeds numpy's global
            # generator (a side effect on every other user of it) and takes seed 0 as "random".
            "randn": _Normals(rng),  # an object, not a closure: a state_dict copies and pickles it
            "seed": np.nan,  # pycma: "do nothing" to the global generator
            "bounds": [None, None],  # the env does not clip, nor do we
            "maxiter": np.inf,
            "maxfevals": np.inf,
            # The budget ends the run: no stop on flat or stagnating fitness (accuracy is flat
            # over whole generations early on); numerical stops (tolx, condition...) stay.
            "tolfun": 0,
            "tolfunhist": 0,
            "tolflatfitness": np.inf,
            "tolstagnation": 0,
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
        }
        return cma.CMAEvolutionStrategy(np.zeros(d), self.sigma0, opts)

    @property
    def evals_per_update(self) -> int:
        return self.popsize

    @property
    def update_text(self) -> str:
        return f"popsize={self.popsize} (one generation of evaluations)"

    @property
    def algo(self) -> str:  # type: ignore[override]
        return "cma-diag" if self.diagonal else "cma"

    def start(self) -> None:
        self.es = self._strategy(self.scorer.action_dim)
        self.stop_reason = {}

    def ask(self) -> np.ndarray:
        self._xs = self.es.ask()  # popsize arrays (d,) float64
        return np.asarray(self._xs, dtype=np.float32)  # (popsize, d): what the env evaluates

    def tell(self, actions: np.ndarray, rewards: np.ndarray) -> dict:
        self.es.tell(self._xs, (-rewards).tolist())  # CMA minimizes
        return {"sigma": float(self.es.sigma)}

    def done(self) -> bool:
        if self.es.stop():
            self.stop_reason = dict(self.es.stop())
            log.info("CMA stopped after %d evaluations: %s", self.evals, self.stop_reason)
            return True
        return False

    def finish(self) -> tuple[np.ndarray, float]:
        """CMA's final mean and its reward (one extra evaluation, not counted in ``evals``)."""
        self.mean_action = np.asarray(self.es.result.xfavorite, dtype=np.float64)
        mean = self.mean_action.astype(np.float32)
        return self.scorer.prompt_for(mean), self.scorer.score_one(mean)


class _Normals:
    """pycma's ``randn(*shape)`` drawing from a numpy Generator of the agent's own."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)
