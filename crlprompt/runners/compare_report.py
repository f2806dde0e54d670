"""Tables and curves from compare records: what ``crl-prompt compare`` prints and plots, and the
table tool over a results tree::

    python -m crlprompt.runners.compare --table results/search

Records (one JSON line each) come in two files per compare run: ``results.jsonl`` (one record
per algorithm run) and ``baselines.jsonl`` (the floors, the start prompt and the gradient
ceiling: :mod:`crlprompt.runners.baselines`). Every table row is a mean ± sample std over runs
(seeds × data seeds). Gains are measured from the **best floor** of the run's own data seed (the
highest test accuracy among the no-prompt rows: ``floor``, ``handcraft``, ``icl``): Δ vs floor in
points, and the normalized gain ``(acc − floor) / (gradient − floor)``. A row under the floor says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .common import mean_std
from .records import read_records

BASELINES = ("floor", "handcraft", "icl", "start", "gradient-ptv2", "gradient-prompt-tuning", "gradient")
BASELINE_NAMES = {
    "floor": "floor: no prompt + logistic regression", "handcraft": "floor: HandCraft (no prompt, zero-shot)",
    "icl": "floor: in-context demonstrations", "start": "start prompt",
    "gradient-ptv2": "gradient: Prompt v2 (deep prefix)", "gradient-prompt-tuning": "gradient: prompt tuning (shallow)",
    "gradient": "gradient ceiling (the better on D_RL)",
}  # fmt: skip
#: The rows that are a no-prompt floor (the best of them per data seed is what gains are measured from).
FLOORS = ("floor", "handcraft", "icl")


def load_tree(root: Path) -> tuple[list[dict], list[dict]]:
    """(algorithm records, baseline records) of every compare run under ``root``."""
    root = Path(root)
    runs = [r for f in sorted(root.rglob("results.jsonl")) for r in read_records(f, "search")]
    base = [r for f in sorted(root.rglob("baselines.jsonl")) for r in read_records(f, "baseline")]
    # Two compare runs on one env (two budgets) each hold the same baseline rows of a data seed: keep one.
    unique = {(b["env_id"], b["algo"], b.get("seed"), b["data_seed"]): b for b in reversed(base)}
    return runs, [b for b in base if unique[(b["env_id"], b["algo"], b.get("seed"), b["data_seed"])] is b]


def _baseline_acc(baselines: list[dict], env_id: str, algo: str) -> dict:
    """data_seed -> mean test accuracy of a baseline row (over its seeds)."""
    by_seed: dict = {}
    for r in baselines:
        if r["env_id"] == env_id and r["algo"] == algo:
            by_seed.setdefault(r["data_seed"], []).append(r["selected_test_acc"])
    return {k: float(np.mean(v)) for k, v in by_seed.items()}


#: The gradient ceiling must beat the best floor by this much for a normalized gain to mean anything:
#: below it (the gradient run learnt nothing over the floor on that data seed) the ratio is noise over noise.
MIN_GRADIENT_GAIN = 0.01


def best_floor(baselines: list[dict], env_id: str) -> dict:
    """data_seed -> the highest test accuracy of the no-prompt rows (:data:`FLOORS`) on it."""
    out: dict = {}
    for algo in FLOORS:
        for ds, acc in _baseline_acc(baselines, env_id, algo).items():
            out[ds] = max(out.get(ds, acc), acc)
    return out


def normalized_gains(runs: list[dict], baselines: list[dict]) -> list[float | None]:
    """Per run: (test acc − best floor) / (gradient's − best floor) on its data seed; None when unknown
    or when the gradient ceiling is not at least ``MIN_GRADIENT_GAIN`` above the floor."""
    out = []
    for r in runs:
        floor = best_floor(baselines, r["env_id"]).get(r["data_seed"])
        grad = _baseline_acc(baselines, r["env_id"], "gradient").get(r["data_seed"])
        if floor is None or grad is None or grad - floor < MIN_GRADIENT_GAIN:  # no ceiling to normalise by
            out.append(None)
        else:
            out.append((r["selected_test_acc"] - floor) / (grad - floor))
    return out


def markdown_table(runs: list[dict], baselines: list[dict] = ()) -> str:
    """One Markdown table per env id: the baseline rows, then one row per (algorithm, budget)."""
    env_ids = list(dict.fromkeys([r["env_id"] for r in [*baselines, *runs]]))
    return "\n".join(_env_table(e, [r for r in runs if r["env_id"] == e], [b for b in baselines if b["env_id"] == e])
                     for e in env_ids)  # fmt: skip


def _env_table(env_id: str, runs: list[dict], baselines: list[dict]) -> str:
    head = ("| algo | runs | action dim | evals | example-forwards | D_RL acc | test acc | Δ test vs start (points) "
            "| Δ test vs best floor (points) | D_RL − test gap (points) | normalized gain | seconds | evals/s |")  # fmt: skip
    data_seeds = sorted({r["data_seed"] for r in [*runs, *baselines]})
    lines = [
        f"Env `{env_id}` (data seeds {', '.join(map(str, data_seeds))}). Accuracy of the D_RL-selected prompt, "
        "mean ± std over runs; best floor = the highest no-prompt row of the data seed; a Δ vs floor below 0 "
        "is marked **under the floor**; normalized gain = (acc − best floor) / (gradient − best floor) per data "
        f"seed, over the data seeds where the gradient gains ≥ {100 * MIN_GRADIENT_GAIN:g} point over the floor "
        f"({_ceiling_seeds(baselines, env_id)}).",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]  # fmt: skip
    start = _baseline_acc(baselines, env_id, "start")
    floor = best_floor(baselines, env_id)

    def delta(rs: list[dict], ref: dict, mark: bool = False) -> str:
        d = [100 * (r["selected_test_acc"] - ref[r["data_seed"]]) for r in rs if r["data_seed"] in ref]
        if not d:
            return "–"
        text = f"{np.mean(d):+.1f}" + (f" ± {np.std(d, ddof=1):.1f}" if len(d) > 1 else "")
        return text + (" **under the floor**" if mark and np.mean(d) < 0 else "")

    def gap(rs: list[dict]) -> str:
        g = [100 * (r["selected_drl_acc"] - r["selected_test_acc"]) for r in rs]
        return f"{np.mean(g):+.1f}" + (f" ± {np.std(g, ddof=1):.1f}" if len(g) > 1 else "")

    for algo in BASELINES:
        rs = [b for b in baselines if b["algo"] == algo and b.get("selected_test_acc") is not None]
        if rs:
            name = BASELINE_NAMES[algo]
            if algo == "gradient" and any("method" not in r for r in rs):  # records from before the best-of-two ceiling
                name = "gradient (Prompt v2 from the start only)"
            lines.append(
                f"| {name} | {len(rs)} | – | {_evals(rs)} | {_forwards(rs)} "
                f"| {mean_std([r['selected_drl_acc'] for r in rs])} | {mean_std([r['selected_test_acc'] for r in rs])} "
                f"| {delta(rs, start) if algo != 'start' else '–'} "
                f"| {delta(rs, floor, algo not in FLOORS) if algo not in FLOORS else '–'} | {gap(rs)} "
                f"| {'1.00' if algo == 'gradient' else '–'} | {mean_std([r['seconds'] for r in rs], '{:.1f}')} | – |"
            )
    for algo, budget in sorted(dict.fromkeys((r["algo"], r["budget"]) for r in runs), key=lambda ab: ab[1]):
        rs = [r for r in runs if r["algo"] == algo and r["budget"] == budget]
        gains = [g for g in normalized_gains(rs, baselines) if g is not None]
        lines.append(
            f"| {algo} | {len(rs)} | {rs[0]['action_dim']} | {_evals(rs)} | {_forwards(rs)} "
            f"| {mean_std([r['selected_drl_acc'] for r in rs])} | {mean_std([r['selected_test_acc'] for r in rs])} "
            f"| {delta(rs, start)} | {delta(rs, floor, True)} | {gap(rs)} | {mean_std(gains, '{:.2f}') if gains else '–'} "
            f"| {mean_std([r['seconds'] for r in rs], '{:.1f}')} | {mean_std([r['evals_per_s'] for r in rs], '{:.1f}')} |"
        )
    return "\n".join(lines) + "\n" + separation(runs)


def separation(runs: list[dict]) -> str:
    """Per budget: the algorithm with the best mean test (and D_RL) accuracy, and its paired difference
    with the runner-up over the (seed, data seed) runs both have, with a 95% t interval: does it win
    beyond the seed spread?"""
    from .tables import t_ci

    lines = []
    for budget in sorted({r["budget"] for r in runs}):
        at = [r for r in runs if r["budget"] == budget]
        for key, name in (("selected_test_acc", "test"), ("selected_drl_acc", "D_RL")):
            acc = {}
            for r in at:
                acc.setdefault(r["algo"], {})[(r["seed"], r["data_seed"])] = r[key]
            ranked = sorted(acc, key=lambda a: -float(np.mean(list(acc[a].values()))))
            if len(ranked) < 2:
                continue
            best, second = ranked[:2]
            pairs = sorted(set(acc[best]) & set(acc[second]))
            d = [acc[best][k] - acc[second][k] for k in pairs]
            m, lo, hi = t_ci(d) if d else (float("nan"),) * 3
            beyond = f"n = {len(d)}: no interval" if np.isnan(lo) else ("beyond the seed spread" if lo > 0 else "not beyond the seed spread")
            interval = "" if np.isnan(lo) else f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"  # one pair has no interval
            lines.append(f"| {budget} | {name} | {best} | {second} | {len(d)} | "
                         f"{'–' if np.isnan(m) else f'{100 * m:+.1f}'}{interval} | {beyond} |")  # fmt: skip
    if not lines:
        return ""
    head = "| budget | accuracy | best algo | runner-up | n pairs | Δ best − runner-up, points [95% CI] | verdict |"
    return "\n".join(["", "Which algorithm wins at each budget (paired over the runs both have):", "", head,
                      "|" + "---|" * (head.count("|") - 1), *lines]) + "\n"  # fmt: skip


def _ceiling_seeds(baselines: list[dict], env_id: str) -> str:
    start, grad = best_floor(baselines, env_id), _baseline_acc(baselines, env_id, "gradient")
    seeds = [d for d in sorted(grad) if d in start and grad[d] - start[d] >= MIN_GRADIENT_GAIN]
    return ", ".join(map(str, seeds)) or "none"


def _evals(rs: list[dict]) -> str:
    values = sorted({int(r.get("evals", 0)) for r in rs})
    return "/".join(map(str, values))


def _forwards(rs: list[dict]) -> str:
    return mean_std([r.get("example_forwards", 0) for r in rs], "{:.0f}")


def plot_curves(runs: list[dict], path: Path, baselines: list[dict] = ()) -> None:
    """Best-so-far env reward against evaluations: per algorithm the mean over runs and a band
    from the lowest to the highest run; the start prompt's reward as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for algo in dict.fromkeys(r["algo"] for r in runs):
        rs = [r for r in runs if r["algo"] == algo and r["history"]]
        if not rs:
            continue
        grid = np.unique(np.concatenate([[e for e, _ in r["history"]] for r in rs]))
        ys = []
        for r in rs:
            ev, best = np.array(r["history"], dtype=float).T
            i = np.searchsorted(ev, grid, side="right") - 1  # step function: last value at or before
            ys.append(np.where(i >= 0, best[np.clip(i, 0, None)], np.nan))
        ys = np.array(ys)  # (runs, grid)
        (line,) = ax.plot(grid, np.nanmean(ys, 0), label=f"{algo} ({len(rs)} run{'s' * (len(rs) > 1)})",
                          drawstyle="steps-post")  # fmt: skip
        if len(rs) > 1:
            ax.fill_between(grid, np.nanmin(ys, 0), np.nanmax(ys, 0), step="post", alpha=0.2, color=line.get_color())
    start = [b["env_reward"] for b in baselines if b["algo"] == "start" and b.get("env_reward") is not None]
    if start:
        ax.axhline(float(np.mean(start)), color="gray", ls="--", lw=1, label="start prompt")
    reward = runs[0].get("reward", "accuracy") if runs else "accuracy"
    ax.set_xlabel("prompt evaluations")
    ax.set_ylabel(f"best-so-far env reward ({reward})")
    ax.set_title(runs[0]["env_id"] if runs else "")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_main(root: str | Path) -> str:
    """The table of every compare run under ``root`` (also written to ``root/table.md``)."""
    from ..errors import ConfigError

    root = Path(root)
    runs, base = load_tree(root)
    if not runs and not base:
        raise ConfigError(f"no results.jsonl or baselines.jsonl under {root}; pass a compare --out directory")
    text = markdown_table(runs, base)
    atomic_write(root / "table.md", text)
    return text
