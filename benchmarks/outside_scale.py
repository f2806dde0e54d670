"""At which scale does a plain outside optimiser, at its library defaults, improve test accuracy
within 200 evaluations on each registered few-shot id?

For every id, BBT scale α (the ``alpha`` keyword of ``gym.make``) and LM-BFF data seed: pycma at its
defaults (``CMAEvolutionStrategy(zeros(d), sigma0)``: popsize 4 + ⌊3 ln d⌋, σ₀ = the id's ``sigma0``)
drives the id's batched vector env, one generation per ``step``, for as many whole generations as fit
200 evaluations; its best action (on the id's fitness) is scored on D_RL and on test with
``env.unwrapped.evaluate`` beside the start (the zero action). One record per cell is appended to
``results/outside_scale/records.jsonl`` as it ends (commit, versions, machine); a rerun skips what is
recorded. ``--table`` prints the table the docs and the ids' docstrings quote.

    OMP_NUM_THREADS=1 python benchmarks/outside_scale.py                       # MiniLM ids, 3 data seeds
    OMP_NUM_THREADS=1 python benchmarks/outside_scale.py --model SmolLM2 --data-seeds 13
    OMP_NUM_THREADS=1 python benchmarks/outside_scale.py --model SmolLM2 --tasks AGNews --alphas 0.05 --data-seeds 13 --test-sample 1000
    python benchmarks/outside_scale.py --table results/outside_scale
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "results" / "outside_scale" / "records.jsonl"
TASKS = ("SST2", "TREC", "AGNews")
#: α grid per model family (the registered value is in each)
ALPHAS = {"MiniLM": (0.1, 0.3, 1.0), "SmolLM2": (0.05, 0.1, 0.2)}


def run_cell(env_id: str, alpha: float, data_seed: int, budget: int, seed: int = 0, test_sample: int | None = None) -> dict:
    import cma
    import gymnasium as gym

    import crlprompt  # noqa: F401  (registers the ids)

    d = gym.spec(env_id).kwargs["projection_dim"]
    sigma0 = gym.spec(env_id).kwargs["sigma0"]
    es = cma.CMAEvolutionStrategy(np.zeros(d), sigma0, {"seed": seed + 1, "verbose": -9})  # library defaults
    pop = es.popsize
    vec = gym.make_vec(env_id, num_envs=pop, vectorization_mode="vector_entry_point", alpha=alpha, data_seed=data_seed)
    vec.reset(seed=seed)
    t0, evals, best_r = time.perf_counter(), 0, -np.inf
    while evals + pop <= budget:
        xs = es.ask()
        _, rewards, *_ = vec.step(np.asarray(xs, np.float32))
        es.tell(xs, list(-np.asarray(rewards, float)))  # pycma minimises
        evals += pop
        best_r = max(best_r, float(np.max(rewards)))
    best = np.asarray(es.result.xbest, np.float32)
    def ev(action=None, *, split):  # the start and the found prompt on the same rows
        return vec.unwrapped.evaluate(action, split=split, sample=test_sample if split == "test" else None)

    rec = {
        "env_id": env_id, "alpha": alpha, "data_seed": data_seed, "seed": seed, "budget": budget, "evals": evals,
        "optimizer": f"pycma {cma.__version__} defaults (popsize {pop}, sigma0 {sigma0})",
        "best_fitness": best_r, "test_sample": test_sample,
        "label_tokens": vec.unwrapped.search.setup.config.label_tokens,
        "start": {s: ev(split=s) for s in ("drl", "test")},
        "found": {s: ev(best, split=s) for s in ("drl", "test")},
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    vec.close()
    return rec


def done(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    from crlprompt.runners.records import read_records

    return {(r["env_id"], r["alpha"], r["data_seed"], r["seed"], r["budget"]) for r in read_records(path, "benchmark")}


#: compare runs whose no-prompt baseline rows (per id and data seed) the table shows
FLOORS = ROOT / "results" / "floor" / "search"


def floors(root: Path = FLOORS) -> dict[tuple[str, int], float]:
    """(id, data seed) -> the best no-prompt floor's test accuracy (no prompt + logistic regression; for a
    verbalizer, HandCraft or in-context demonstrations), from compare's ``baselines.jsonl`` files."""
    from crlprompt.runners.compare_report import best_floor, load_tree

    _, base = load_tree(root)
    return {(env_id, ds): acc for env_id in {b["env_id"] for b in base} for ds, acc in best_floor(base, env_id).items()}


def table(path: Path) -> str:
    """Per (id, α): mean test accuracy of the no-prompt floor, the start and the found prompt over the
    data seeds, the found prompt's gain over the start and over the floor (marked where it is under the
    floor), and on how many data seeds the found prompt beats the start."""
    from crlprompt.runners.records import read_records

    files = sorted(f for f in path.rglob("*.jsonl") if "superseded" not in f.parts) if path.is_dir() else [path]
    recs = [r for f in files for r in read_records(f, "benchmark")]
    if not recs:
        raise SystemExit(f"no records under {path}")
    cells: dict[tuple, list[dict]] = {}
    for r in recs:
        cells.setdefault((r["env_id"], r["alpha"]), []).append(r)
    floor = floors()
    lines = ["| id | α | data seeds | evals | no-prompt floor (test) | test at the start | test, found | Δ vs start (pts) "
             "| Δ vs floor (pts) | found > start | D_RL, start → found |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    import gymnasium as gym

    import crlprompt  # noqa: F401  (registers the ids; no torch import)

    for (env_id, alpha), rs in sorted(cells.items()):
        star = "*" if gym.spec(env_id).kwargs.get("alpha") == alpha else ""
        s = np.mean([r["start"]["test"]["accuracy"] for r in rs])
        f = np.mean([r["found"]["test"]["accuracy"] for r in rs])
        wins = sum(r["found"]["test"]["accuracy"] > r["start"]["test"]["accuracy"] for r in rs)
        rl0 = np.mean([r["start"]["drl"]["accuracy"] for r in rs])
        rl1 = np.mean([r["found"]["drl"]["accuracy"] for r in rs])
        seeds = ",".join(str(x) for x in sorted({r["data_seed"] for r in rs}))
        fl = [floor.get((env_id, r["data_seed"])) for r in rs]
        fl_cell, vs_floor = "–", "–"
        if None not in fl:
            fl_cell, d = f"{np.mean(fl):.3f}", 100 * (f - np.mean(fl))
            vs_floor = f"{d:+.1f}" + (" **under the floor**" if d < 0 else "")
        lines.append(f"| `{env_id.removeprefix('CRLPrompt/')}` | {alpha:g}{star} | {seeds} | {rs[0]['evals']} | {fl_cell} | "
                     f"{s:.3f} | {f:.3f} | {100 * (f - s):+.1f} | {vs_floor} | {wins}/{len(rs)} | {rl0:.3f} → {rl1:.3f} |")  # fmt: skip
    missing = sorted({env_id.removeprefix("CRLPrompt/") for (env_id, _), rs in cells.items()
                      if any(floor.get((env_id, r["data_seed"])) is None for r in rs)})  # fmt: skip
    r0 = recs[0]
    commits = sorted({str(r["versions"].get("commit"))[:10] for r in recs})
    lines += ["", f"{r0['optimizer']}; its best action of the run (optimiser seed {r0['seed'] + 1}, env seed "
              f"{r0['seed']}); α marked * is the id's registered value; the floor is the best no-prompt row (logistic regression, HandCraft, in-context) of the compare runs under results/floor/search for the same id and data seeds; commit {', '.join(commits)}; "
              f"{r0['machine'].get('cpu', 'cpu')}, 1 torch thread."]  # fmt: skip
    sampled = sorted({(r["env_id"].removeprefix("CRLPrompt/"), r["start"]["test"]["n"]) for r in recs if r.get("test_sample")})
    if sampled:
        lines.append("Test scored on a seeded sample of its rows (the same rows for the start and the found prompt): "
                     + ", ".join(f"{i}: {n} rows" for i, n in sampled) + ".")
    if missing:
        lines.append(f"No floor recorded yet (–) for {', '.join(missing)}: no compare run under results/floor/search "
                     "scored this id's no-prompt rows on those data seeds, so the found prompt is not measured against it.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=tuple(ALPHAS), default="MiniLM")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--alphas", nargs="+", type=float, default=None, help="default: the model's grid (ALPHAS)")
    p.add_argument("--data-seeds", nargs="+", type=int, default=[13, 21, 42])
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--test-sample", type=int, default=None,
                   help="score start and found prompt on this many seeded test rows (default: all; AG News on "
                        "SmolLM2 has 7,600 test rows, hours on this CPU)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--table", type=Path, default=None, help="print the table of these records and exit")
    args = p.parse_args(argv)
    if args.table is not None:
        print(table(args.table))
        return 0
    import torch

    from crlprompt.runners.records import append_record

    torch.set_num_threads(1)
    have = done(args.out)
    for task in args.tasks:
        env_id = f"CRLPrompt/{task}-{args.model}-16Shot-v0"
        for alpha in args.alphas or ALPHAS[args.model]:
            for ds in args.data_seeds:
                if (env_id, alpha, ds, 0, args.budget) in have:
                    continue
                rec = run_cell(env_id, alpha, ds, args.budget, test_sample=args.test_sample)
                append_record(args.out, rec, kind="benchmark")
                print(json.dumps({k: rec[k] for k in ("env_id", "alpha", "data_seed", "seconds")})
                      + f" test {rec['start']['test']['accuracy']:.3f} -> {rec['found']['test']['accuracy']:.3f}",
                      flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
