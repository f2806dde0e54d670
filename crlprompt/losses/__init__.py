"""The losses of CRL-Prompt as small pure functions: tensors in, scalar out.

* :func:`cross_entropy_loss` — L_CE, Eq. 2.
* :func:`info_nce_loss` — L_contrast, Eq. 3 (InfoNCE with temperature τ).
* :func:`reinforce_loss` — L_RL = -r · log π(P'|P), Eq. 5, for the Gaussian policy π = N(P, σ²I),
  with the sample P' detached so that the gradient is ``-r (P' - P) / σ²``.
* Variance-reduced estimators next to the faithful single-sample form: a reward baseline,
  antithetic pairs, centered ranks (OpenAI-ES), K samples per update; :func:`sample_actions`
  draws their noise and :func:`estimator_loss` picks the estimator (the CRL agent and ES share both).
* The off-policy estimators of Algorithm 1's RL term: :class:`~crlprompt.losses.offpolicy.ReplayRLTerm`
  (importance-weighted REINFORCE over a replay buffer, :mod:`crlprompt.losses.offpolicy`) and
  :func:`~crlprompt.losses.race.race_rl_term` (centered ranks of a race on subsets of D_RL,
  :mod:`crlprompt.losses.race`, which scores prompts and so is imported on its own).
"""

from .rl import (
    ESTIMATORS,
    centered_ranks,
    estimator_loss,
    gaussian_log_prob,
    reinforce_loss,
    reinforce_population_loss,
    sample_actions,
    shape_rewards,
)
from .supervised import cross_entropy_loss, info_nce_loss

__all__ = [
    "ESTIMATORS",
    "centered_ranks",
    "cross_entropy_loss",
    "estimator_loss",
    "gaussian_log_prob",
    "info_nce_loss",
    "reinforce_loss",
    "reinforce_population_loss",
    "sample_actions",
    "shape_rewards",
]
