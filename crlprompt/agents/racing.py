"""Best-of-K selection by racing: score K prompts on growing subsets of D_RL, drop those that cannot win.

Racing reads the env's reward data directly: it scores prompts with
:func:`crlprompt.scoring.score_population` on ``search_of(env).data`` (D_RL) through the env's
frozen model, on subsets it chooses itself, instead of calling ``env.step`` (a step always pays
for all of D_RL, or for one minibatch of the env's ``reward_batch_size``). Candidates still come
from the env API (``reset(options={"center": θ})`` and ``prompt_for``), and the cost is counted
in *example-forwards* (one prompt on one example); ``example_forwards / len(D_RL)`` is the
equivalent number of full prompt evaluations. ``search.num_evals`` does not count races.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from ..errors import ConfigError
from ..losses import reinforce_population_loss
from ..scoring import score_population
from .base import ActionScorer, Callback, SearchResult, search_of


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


class RacingSearch:
    """Random search whose K candidates per round are raced on D_RL instead of scored in full.

    Each round draws K actions ``a ~ N(base, scale² I)`` — base = 0 (the env's center, as
    :class:`RandomSearch`) or, with ``around_best=True``, the best action so far (a (1, K)
    hill-climber) — turns them into prompts with the env's ``prompt_for`` and picks one with
    :func:`race`; the winner's full-D_RL reward is exact and kept if it is the best so far. The
    budget is in full prompt evaluations, ``budget × len(D_RL)`` example-forwards, so a race that
    costs ~5/16 of scoring every candidate in full lets the search try ~3× more prompts.
    ``best_reward`` is always measured on all of D_RL (the env's ``reward_batch_size`` is not used).

    Follows racing for model/configuration selection (Maron & Moore 1994; successive halving as
    in Hyperband, Li et al. 2018); differs in racing prompts of a frozen LM on subsets of D_RL.
    Not resumable.

    Args:
        env: a soft-prompt env or vector env (only its center, ``prompt_for`` and search are used).
        k: candidates per race.
        rule, eta, finalists, block, z: of :func:`race` (a ``paired`` race is budgeted at its
            worst case, k·len(D_RL), so it only starts when that much budget is left).
        scale: standard deviation of the actions.
        around_best: draw around the best action so far rather than around the center.
        include_center: the first race includes a = 0.
        seed: seeds the sampler and the example order.
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        *,
        k: int = 16,
        rule: str = "halving",
        eta: int = 2,
        finalists: int = 2,
        block: int = 8,
        z: float = 2.5,
        scale: float = 1.0,
        around_best: bool = False,
        include_center: bool = True,
        seed: int = 0,
    ):
        self.scorer = ActionScorer(env)
        self.search = search_of(env)
        if not (isinstance(k, int) and k >= 2):
            raise ConfigError(f"k must be an int >= 2, got {k!r}")
        if not (isinstance(finalists, int) and 1 <= finalists <= k):
            raise ConfigError(f"finalists must be an int in [1, k={k}], got {finalists!r}")
        self.race_kwargs = {"rule": rule, "eta": eta, "finalists": finalists, "block": block, "z": z}
        check_race_args(**self.race_kwargs)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"scale must be a finite number > 0, got {scale!r}")
        self.k, self.scale = k, float(scale)
        self.around_best, self.include_center, self.seed = around_best, include_center, seed
        self.example_forwards = 0
        """Prompt-example pairs scored by the last ``learn``."""
        self.races: list[RaceResult] = []

    @property
    def evals_per_update(self) -> int:
        """Full prompt evaluations one race costs at most (its example-forwards / len(D_RL), rounded up)."""
        return math.ceil(self.race_cost() / len(self.search.data))

    def race_cost(self) -> int:
        """Example-forwards of one race at most: the halving schedule's, or k·len(D_RL) for ``paired``."""
        n = len(self.search.data)
        if self.race_kwargs["rule"] == "paired":
            return self.k * n
        sched = race_schedule(self.k, n, eta=self.race_kwargs["eta"], finalists=self.race_kwargs["finalists"])
        return sum(alive * (size - prev) for (alive, size), prev in zip(sched, [0] + [s for _, s in sched]))

    def learn(self, budget: int, callback: Callback | None = None) -> SearchResult:
        """Race until ``budget × len(D_RL)`` example-forwards are spent (whole races only)."""
        n = len(self.search.data)
        cost = self.race_cost()
        if not (isinstance(budget, (int, np.integer)) and budget * n >= cost):
            need = math.ceil(cost / n)
            raise ConfigError(f"budget must be an int >= {need} (one race of k={self.k}), got {budget!r}")
        start = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        d = self.scorer.action_dim
        self.scorer.reset(seed=self.seed)
        best_a, best_r = np.zeros(d, np.float32), -np.inf
        self.example_forwards, self.races = 0, []
        history = []
        while self.example_forwards + cost <= budget * n:
            base = best_a if self.around_best else np.zeros(d, np.float32)
            actions = (base + self.scale * rng.standard_normal((self.k, d))).astype(np.float32)  # (k, d)
            if not self.races and self.include_center:
                actions[0] = 0.0
            prompts = torch.from_numpy(np.stack([self.scorer.prompt_for(a) for a in actions]))  # (k, D)
            res = race(self.search, prompts, rng=rng, **self.race_kwargs)
            self.races.append(res)
            self.example_forwards += res.example_forwards
            if res.reward > best_r:
                best_a, best_r = actions[res.winner].copy(), res.reward
            evals = math.ceil(self.example_forwards / n)
            history.append((evals, best_r))
            if callback is not None and callback(evals, best_r) is False:
                break
        best_prompt = self.scorer.prompt_for(best_a)
        return SearchResult(
            best_prompt=best_prompt, best_reward=best_r, final_prompt=best_prompt.copy(), final_reward=best_r,
            history=history, evals=math.ceil(self.example_forwards / n), seconds=time.perf_counter() - start,
            algo="racing",
        )  # fmt: skip
