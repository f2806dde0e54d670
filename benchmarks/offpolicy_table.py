"""Markdown tables and curves of ``benchmarks/bench_offpolicy.py``'s records.

    python benchmarks/offpolicy_table.py results/offpolicy      # or: bench_offpolicy.py --table

Reads ``search.jsonl``, ``racing.jsonl`` and ``crl.jsonl`` under the directory, prints the
tables, writes them to ``DIR/table.md`` and plots ``DIR/curves-<part>.png`` (test accuracy of the
best-scored prompt and best env reward against evaluations, mean over seeds with a min-max band).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ms(values: list[float], fmt: str = "{:.3f}") -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def curve(records: list[dict]) -> dict[int, list[float]]:
    """evals -> test accuracies over seeds, at each checkpoint."""
    out: dict[int, list[float]] = defaultdict(list)
    for r in records:
        for p in r["points"]:
            out[p["evals"]].append(p["test_acc"])
    return dict(sorted(out.items()))


def reward_curve(records: list[dict]) -> dict[int, float]:
    """evals -> mean over runs of the best env reward so far (each run's history is a step function)."""
    grid = sorted({e for r in records for e, _ in r["history"]})
    out = {}
    for e in grid:
        vals = [max((b for x, b in r["history"] if x <= e), default=None) for r in records]
        if all(v is not None for v in vals):
            out[e] = statistics.mean(vals)
    return out


def first_reach(curve_: dict[int, float], target: float) -> int | None:
    return next((e for e, v in curve_.items() if v >= target - 1e-9), None)


def evals_to_reach(points: dict[int, list[float]], target: float, seeds: int) -> int | None:
    """The first checkpoint whose mean test accuracy over all seeds reaches ``target``."""
    for evals, accs in points.items():
        if len(accs) == seeds and statistics.mean(accs) >= target - 1e-9:
            return evals
    return None


def search_tables(records: list[dict]) -> str:
    out = []
    by_part: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_part[r["part"]].append(r)
    for part, recs in by_part.items():
        env_id, budget = recs[0]["env_id"], recs[0]["budget"]
        algos = list(dict.fromkeys(r["algo"] for r in recs))
        runs = {a: [r for r in recs if r["algo"] == a] for a in algos}
        points = {a: curve(runs[a]) for a in algos}
        checkpoints = sorted({e for p in points.values() for e in p})
        targets, rtargets = {}, {}
        rewards = {a: reward_curve(runs[a]) for a in algos}
        for ref in ("es", "ppo"):
            if ref in runs and budget in points[ref]:
                targets[ref] = statistics.mean(points[ref][budget])
                rtargets[ref] = statistics.mean(r["best_env_reward"] for r in runs[ref])
        kw = json.dumps(recs[0]["env_kwargs"])
        out.append(f"### (a) {env_id} {kw}, budget {budget} evaluations\n")
        out.append("Test accuracy of the best-scored prompt at each number of evaluations (mean ± std over seeds); "
                   "'final policy' is the agent's final prompt (ES/PPO/off-policy mean, SAC's deterministic action, "
                   "the anchor) at the full budget. 'to reach X' = the first checkpoint at which the mean reaches X's "
                   "mean at the full budget (— = not within the budget).\n")  # fmt: skip
        head = ["algo", "seeds", *[f"@{c}" for c in checkpoints], "final policy", "s / run",
                *[f"to reach {t.upper()} ({v:.3f})" for t, v in targets.items()]]  # fmt: skip
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for a in algos:
            seeds = len(runs[a])
            row = [a, str(seeds), *[ms(points[a].get(c, [])) for c in checkpoints],
                   ms([r["final_test_acc"] for r in runs[a]]), f"{statistics.mean(r['seconds'] for r in runs[a]):.1f}"]
            for t, v in targets.items():
                e = evals_to_reach(points[a], v, seeds)
                row.append("—" if e is None else f"{e} ({e / budget:.0%})")
            out.append("| " + " | ".join(row) + " |")
        center = statistics.mean(r["center_test_acc"] for r in recs)
        out.append(f"\nStart prompt (the env's center): test accuracy {center:.3f}.\n")
        out.append("Best env reward (what the agents maximise: the id's reward on D_RL or its minibatch) at the full "
                   "budget, and the evaluations after which the mean best-so-far reward first reaches ES's / PPO's "
                   "at the full budget:\n")  # fmt: skip
        head = ["algo", "best env reward", *[f"to reach {t.upper()} ({v:.3f})" for t, v in rtargets.items()]]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for a in algos:
            row = [a, ms([r["best_env_reward"] for r in runs[a]])]
            for t, v in rtargets.items():
                e = first_reach(rewards[a], v)
                row.append("—" if e is None else f"{e} ({e / budget:.0%})")
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def racing_table(records: list[dict]) -> str:
    if not records:
        return ""
    r0 = records[0]
    out = [f"### (b) Racing best-of-{r0['k']} on a real D_RL ({r0['env_id']}, {r0['rows']} rows, accuracy)\n",
           "Same best: the race winner's full-D_RL accuracy equals the best of the K (ties count); same index: it is "
           "the first best. Fraction: example-forwards of the race / K·|D_RL| (full scoring = 1).\n",
           "| rule | trials | same best | same index | example-forwards (fraction) | mean regret (acc) |",
           "|---|---|---|---|---|---|"]  # fmt: skip
    for rule in dict.fromkeys(r["rule"] for r in records):
        rs = [r for r in records if r["rule"] == rule]
        n = len(rs)
        same, idx = sum(r["same_best"] for r in rs), sum(r["same_index"] for r in rs)
        out.append(f"| {rule} | {n} | {same}/{n} ({same / n:.0%}) | {idx}/{n} | "
                   f"{statistics.mean(r['fraction'] for r in rs):.3f} | {statistics.mean(r['regret'] for r in rs):.4f} |")
    spread = [max(r["full_acc"]) - min(r["full_acc"]) for r in records if r["rule"] == records[0]["rule"]]
    out.append(f"\nSpread of the K full-D_RL accuracies per trial (max − min): {ms(spread)}.\n")
    return "\n".join(out)


def crl_table(records: list[dict]) -> str:
    if not records:
        return ""
    cfg = records[0]["config"]
    out = [f"### (c) Inside Algorithm 1: the RL term (MiniLM, {records[0]['k_shot']}-shot, data seed "
           f"{records[0]['data_seed']}; {cfg['phase1_epochs']:g}+{cfg['phase2_epochs']:g} epochs, RL every "
           f"{cfg['rl_interval']} phase-2 steps, the paper's β, γ, σ)\n",
           "| task | RL term | seeds | test acc | D_RL acc | run s | RL s | RL share | RL updates | extra |",
           "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for task in dict.fromkeys(r["task"] for r in records):
        for est in dict.fromkeys(r["estimator"] for r in records):
            rs = [r for r in records if r["task"] == task and r["estimator"] == est]
            if not rs:
                continue
            extra = ""
            recs = [x for r in rs for x in r["rl_records"]]
            if est == "race" and recs:
                extra = f"forwards {statistics.mean(x['race_forwards'] for x in recs):.2f} of 8 full"
            elif est == "replay" and recs:
                extra = f"ESS {statistics.mean(x['ess'] for x in recs):.2f} of ≤ 16"
            share = statistics.mean(r["rl_seconds"] / r["seconds"] for r in rs)
            out.append(f"| {task} | {est} | {len(rs)} | {ms([r['test_acc'] for r in rs])} | "
                       f"{ms([r['drl_acc'] for r in rs])} | {statistics.mean(r['seconds'] for r in rs):.0f} | "
                       f"{statistics.mean(r['rl_seconds'] for r in rs):.1f} | {share:.1%} | "
                       f"{statistics.mean(r['rl_updates'] for r in rs):.0f} | {extra} |")  # fmt: skip
    return "\n".join(out) + "\n"


def plot(records: list[dict], out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return []
    paths = []
    for part in dict.fromkeys(r["part"] for r in records):
        recs = [r for r in records if r["part"] == part]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for algo in dict.fromkeys(r["algo"] for r in recs):
            pts = curve([r for r in recs if r["algo"] == algo])
            xs = list(pts)
            ax1.plot(xs, [statistics.mean(v) for v in pts.values()], marker="o", label=algo)
            ax1.fill_between(xs, [min(v) for v in pts.values()], [max(v) for v in pts.values()], alpha=0.12)
            # best env reward: a step function per run, sampled on a common grid
            grid = sorted({e for r in recs if r["algo"] == algo for e, _ in r["history"]})
            ys = []
            for e in grid:
                vals = [max((b for x, b in r["history"] if x <= e), default=float("nan"))
                        for r in recs if r["algo"] == algo]  # fmt: skip
                ys.append(statistics.mean(v for v in vals if v == v) if any(v == v for v in vals) else float("nan"))
            ax2.plot(grid, ys, label=algo)
        ax1.set(xlabel="reward evaluations", ylabel="test accuracy of the best-scored prompt", title=recs[0]["env_id"])
        ax2.set(xlabel="reward evaluations", ylabel="best env reward so far (mean over seeds)")
        ax1.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"curves-{part}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    d = Path(args[0] if args else Path(__file__).resolve().parents[1] / "results" / "offpolicy")
    search, races, crl = load(d / "search.jsonl"), load(d / "racing.jsonl"), load(d / "crl.jsonl")
    text = "\n".join(x for x in (search_tables(search), racing_table(races), crl_table(crl)) if x)
    commits = sorted({r["versions"].get("commit") or "?" for r in search + races + crl if "versions" in r})
    text += f"\nRecords: {len(search)} search runs, {len(races)} races, {len(crl)} CRL runs; commits {', '.join(commits)}.\n"
    (d / "table.md").write_text(text)
    pngs = plot(search, d)
    print(text)
    if pngs:
        print("wrote " + ", ".join(str(p) for p in pngs))
    return text


if __name__ == "__main__":
    main()
