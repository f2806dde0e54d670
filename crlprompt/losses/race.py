"""Best-of-K selection by racing, and racing as the RL term of Algorithm 1.

:func:`race` scores K prompts on growing subsets of D_RL and drops those that cannot win, so a
best-of-K costs a fraction of scoring every prompt on all of D_RL. It reads the search's model and
reward rows (``search.model``, ``search.data``, ``search.reward_kind``, ``search.max_rows`` of a
:class:`~crlprompt.envs.PromptSearch`) through :func:`crlprompt.scoring.score_population`; the cost
is counted in *example-forwards* (one prompt on one example). :func:`race_rl_term` turns a race's
ranking into the centered-rank REINFORCE loss (``CRLConfig(rl_estimator="race")``);
:class:`~crlprompt.agents.RacingSearch` is the search agent built on :func:`race`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..scoring import score_population
from .rl import reinforce_population_loss


@dataclass
class RaceResult:
    """The outcome of one race among K prompts."""

    winner: int
    """Index of the selected prompt."""
    reward: float
    """The winner's mean reward on all of D_RL."""
    means: np.ndarray
    """``(K,)`` each prompt's mean reward on the examples it was scored on."""
    examples: np.ndarray
    """``(K,)`` how many examples each prompt was scored on (len(D_RL) for the finalists)."""
    example_forwards: int
    """Prompt-example pairs scored: ``examples.sum()``."""


def race_schedule(k: int, n: int, *, eta: int = 2, finalists: int = 2) -> list[tuple[int, int]]:
    """``[(prompts alive, examples scored so far), ...]`` of successive halving, last round on all n.

    Rounds keep ``ceil(alive / eta)`` prompts (at least ``finalists``) and multiply the prefix of
    examples by ``eta``, so that the last round reaches all ``n`` examples with the finalists.
    """
    alive, rounds = [k], 0
    while alive[-1] > finalists:
        alive.append(max(finalists, math.ceil(alive[-1] / eta)))
        rounds += 1
    sizes = [max(1, math.ceil(n / eta ** (rounds - r))) for r in range(rounds + 1)]
    sizes[-1] = n
    return list(zip(alive, sizes))


RULES = ("halving", "paired")


def check_race_args(
    rule: str = "halving", eta: int = 2, finalists: int = 2, block: int = 8, z: float = 2.5, min_blocks: int = 3
) -> None:
    """Raise :class:`ConfigError` on arguments :func:`race` cannot use."""
    if rule not in RULES:
        raise ConfigError(f"rule must be one of {RULES}, got {rule!r}")
    if not (isinstance(eta, int) and eta >= 2):
        raise ConfigError(f"eta must be an int >= 2, got {eta!r}")
    if not (isinstance(finalists, int) and finalists >= 1):
        raise ConfigError(f"finalists must be an int >= 1, got {finalists!r}")
    if not (isinstance(block, int) and block >= 1 and isinstance(min_blocks, int) and min_blocks >= 2 and z > 0):
        raise ConfigError(
            f"need an int block >= 1, an int min_blocks >= 2 and z > 0; got {block!r}, {min_blocks!r}, {z!r}"
        )


def race(
    search,
    prompts: torch.Tensor,
    *,
    rule: str = "halving",
    eta: int = 2,
    finalists: int = 2,
    block: int = 8,
    z: float = 2.5,
    min_blocks: int = 3,
    rng: np.random.Generator | None = None,
) -> RaceResult:
    """Pick the best of ``prompts (K, D)`` on D_RL = ``search.data`` by racing.

    ``search`` is the env's :class:`~crlprompt.envs.PromptSearch` (``search_of(env)``): its
    ``model``, ``data``, ``reward_kind`` and ``max_rows`` are used; ``rng`` orders the examples.

    Examples are visited in one random order (``rng``); the surviving prompts are scored on the
    next examples of it (the subsets grow, earlier sums are kept) and losers are dropped:

    * ``rule="halving"`` (successive halving; Karnin et al. 2013, Jamieson & Talwalkar 2016): a
      fixed schedule (:func:`race_schedule`) keeps the top ``ceil(alive / eta)`` by mean reward
      (ties: lower index) each time the prefix grows ``eta``-fold; cost known in advance.
    * ``rule="paired"`` (racing, Maron & Moore 1994; F-Race, Birattari et al. 2002): blocks of
      ``block`` examples; after ``min_blocks`` blocks, a prompt is dropped when the leader beats
      it by more than ``z`` standard errors of the paired per-block differences (every alive
      prompt is scored on the same blocks). Cost adapts: close races run longer.

    With ``reward="accuracy"`` a prompt is also dropped as soon as it *cannot* win: its correct
    count plus the examples it has not seen is below the leader's correct count. The last
    ``finalists`` (``paired``: the last survivors, at least the winner) are scored on all of D_RL,
    so the winner's ``reward`` is exact; it is the best full-D_RL reward among them.
    """
    check_race_args(rule, eta, finalists, block, z, min_blocks)
    k, n = prompts.shape[0], len(search.data)
    rng = rng or np.random.default_rng(0)
    order = rng.permutation(n)
    sums = np.zeros(k)  # summed reward over the examples seen
    seen = np.zeros(k, np.int64)
    alive = np.arange(k)

    def score(rows: np.ndarray) -> np.ndarray:
        """Add the alive prompts' rewards on ``rows`` to their sums; return their means there."""
        idx = np.sort(rows)
        scores = score_population(search.model, search.data, prompts[alive], idx=idx, max_rows=search.max_rows)
        got = scores.reward(search.reward_kind).double().numpy()
        sums[alive] += got * scores.count
        seen[alive] += scores.count
        return got

    def ranked() -> np.ndarray:
        """Alive prompts best first; with accuracy, without those that cannot catch the leader."""
        out = alive[np.argsort(-(sums[alive] / np.maximum(seen[alive], 1)), kind="stable")]
        if search.reward_kind == "accuracy":
            out = out[sums[out] + (n - seen[out]) >= sums[out[0]] - 1e-9]
        return out

    if rule == "halving":
        prev = 0
        for keep, size in race_schedule(k, n, eta=eta, finalists=finalists):
            alive = alive[:keep]  # ranked best first by the previous round
            if size > prev:
                score(order[prev:size])
            prev = size
            alive = ranked()
    else:
        blocks = []  # per block: (k,) mean rewards of the prompts alive then, NaN for the dropped
        for b, start in enumerate(range(0, n, block)):
            if len(alive) <= finalists:  # the finalists take the rest of D_RL in one go
                score(order[start:])
                break
            row = np.full(k, np.nan)
            row[alive] = score(order[start : start + block])
            blocks.append(row)
            alive = ranked()
            if b + 1 >= min_blocks:
                lead = alive[0]
                table = np.stack(blocks)  # (blocks, k); alive prompts were scored on every block
                diff = table[:, lead, None] - table[:, alive]  # (blocks, alive) paired differences
                se = diff.std(0, ddof=1) / np.sqrt(len(diff))
                alive = alive[(alive == lead) | ~(diff.mean(0) > z * np.maximum(se, 1e-12))]
        alive = ranked()
    winner = int(alive[0])
    means = np.where(seen > 0, sums / np.maximum(seen, 1), np.nan)
    return RaceResult(winner, float(means[winner]), means, seen, int(seen.sum()))


def race_rl_term(
    search, theta: torch.Tensor, samples: torch.Tensor, sigma: float, rng: np.random.Generator, **race_kwargs
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Racing as the RL term of Algorithm 1 (``CRLConfig(rl_estimator="race")``): ``(rewards, loss, record)``.

    The K perturbed prompts ``samples (K, D)`` around ``theta (D,)`` are raced on D_RL
    (:func:`race`, successive halving by default) instead of each being scored on all of it; they
    are ranked by how long they survived, then by their mean reward on the examples they saw
    (``examples + mean/2``: rewards in [0, 1], as the agent's accuracy), and the loss is the
    centered-rank REINFORCE estimator of those ranks (OpenAI-ES shaping; ``estimator="ranks"``).
    ``rewards (K,)`` are the race's means (on different subsets); the record's ``race_forwards``
    is the fraction of K·len(D_RL) example-forwards the race paid. The env's ``reward_batch_size``
    is not used (the race chooses its own subsets of D_RL).
    """
    res = race(search, samples.detach(), rng=rng, **race_kwargs)
    key = torch.as_tensor(res.examples + 0.5 * np.nan_to_num(res.means), dtype=torch.float32)  # (K,)
    loss = reinforce_population_loss(theta, samples, key, sigma, "ranks")
    full = len(samples) * len(search.data)
    return torch.as_tensor(res.means, dtype=torch.float32), loss, {"race_forwards": res.example_forwards / full}


__all__ = ["RULES", "RaceResult", "check_race_args", "race", "race_rl_term", "race_schedule"]
