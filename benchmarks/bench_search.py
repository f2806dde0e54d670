"""Search benchmark: which algorithm wins on the 16-shot ids, at which budget.

    nohup python benchmarks/bench_search.py > bench_search.log 2>&1 &      # the grid below
    python benchmarks/bench_search.py --measure-only                             # step 1 only
    python -m crlprompt.runners.compare --table results/search                   # the tables

Step 1 measures what one evaluation costs on this machine (one 32-row D_RL evaluation of
SmolLM2 and of MiniLM, 20 prompts per batched forward, ``--threads`` torch threads, default 1) and appends
the figures to ``results/search/measure.jsonl``. Step 2 runs the grid, one compare run per cell
group, each writing its raw records under ``results/search/<name>/`` as runs finish; rerunning
the script skips every run already recorded, so an interrupted benchmark resumes where it
stopped. The grid was sized from step 1 on a shared 2-core CPU (one process, one thread):

* ``sst2-smollm2-cma-1000``: CMA-ES on ``SST2-SmolLM2-16Shot`` at 1,000 evaluations (about
  35 minutes at 2.1 s per evaluation), with the start, HandCraft and gradient rows of each data
  seed: data seed 13 first, 21 and 42 last (as many as the wall-clock allows; reruns resume).
* ``sst2-minilm-240`` / ``sst2-minilm-1000``: random, ES, CMA-ES (and at 1,000 separable CMA-ES on
  the full prompt, ``cma-diag``) and PPO on ``SST2-MiniLM-16Shot`` at 240 (12 generations of 20)
  and 1,000 evaluations, LM-BFF's five data seeds (about 0.12 s per evaluation: 2 minutes per
  1,000-evaluation run, PPO about twice that).
* ``sst2-minilm-cma-8000``: CMA-ES at BBT's 8,000 evaluations on data seed 13, timed end to end.
* ``trec-minilm-1000``: the four algorithms on ``TREC-MiniLM-16Shot`` (96-row fitness), data
  seeds 13, 21, 42.

Order: (SmolLM2, 13), the MiniLM cells, (SmolLM2, 21), (SmolLM2, 42) (``PLAN``); the cells'
other data seeds after that.

``--cells`` picks cell groups by name; ``--data-seeds`` overrides the data seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
OUT = ROOT / "results" / "search"

# name -> compare settings (one compare run per name)
CELLS: dict[str, dict] = {
    "sst2-smollm2-cma-1000": {"env_id": "CRLPrompt/SST2-SmolLM2-16Shot-v0", "algos": "cma", "budget": 1000},
    "sst2-minilm-240": {"env_id": "CRLPrompt/SST2-MiniLM-16Shot-v0", "algos": "random,es,cma,ppo", "budget": 240},
    "sst2-minilm-1000": {"env_id": "CRLPrompt/SST2-MiniLM-16Shot-v0", "algos": "random,es,cma,cma-diag,ppo",
                         "budget": 1000},
    "sst2-minilm-cma-8000": {"env_id": "CRLPrompt/SST2-MiniLM-16Shot-v0", "algos": "cma", "budget": 8000},
    "trec-minilm-1000": {"env_id": "CRLPrompt/TREC-MiniLM-16Shot-v0", "algos": "random,es,cma,ppo", "budget": 1000},
}
DATA_SEEDS = (13, 21, 42, 87, 100)  # LM-BFF's five
#: (cell, data seed) in run order, cheapest evidence first: the MiniLM grid over five data seeds,
#: CMA-ES at 8,000 evaluations (the end-to-end speed target), TREC, then SmolLM2's other seeds.
PLAN = [("sst2-smollm2-cma-1000", 13), *[("sst2-minilm-240", d) for d in DATA_SEEDS],
        *[("sst2-minilm-1000", d) for d in DATA_SEEDS], ("sst2-minilm-cma-8000", 13),
        *[("trec-minilm-1000", d) for d in DATA_SEEDS[:3]], ("sst2-smollm2-cma-1000", 21),
        ("sst2-smollm2-cma-1000", 42)]  # fmt: skip


def measure(rows: int = 32, k: int = 20, repeats: int = 3) -> list[dict]:
    """Seconds per prompt evaluation of ``rows`` D_RL rows, ``k`` prompts per batched forward."""
    import torch

    from crlprompt.build import SetupConfig, build
    from crlprompt.runners.common import machine, versions
    from crlprompt.scoring import score_population

    out = []
    for model, head in (("smollm2", "verbalizer"), ("minilm", "linear")):
        setup = build(SetupConfig(task="sst2", model=model, head=head, k_shot=16, data_seed=13), require_test=False)
        data = setup.drl.subset(list(range(min(rows, len(setup.drl)))))
        thetas = setup.model.prompt.theta.detach().expand(k, -1).clone()  # (K, D)
        score_population(setup.model, data, thetas)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            score_population(setup.model, data, thetas)
            times.append(time.perf_counter() - t)
        best = min(times)
        rec = {"what": "eval_cost", "model": model, "rows": len(data), "prompts_per_forward": k,
               "seconds_per_generation": times, "seconds_per_eval": best / k, "load1": os.getloadavg()[0],
               "torch_threads": torch.get_num_threads(),
               "versions": versions(), "machine": machine()}  # fmt: skip
        print(f"{model}: {best / k:.3f} s per {len(data)}-row evaluation ({k} prompts per forward; load {rec['load1']:.1f})",
              flush=True)  # fmt: skip
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated cell groups of {list(CELLS)}")
    p.add_argument("--data-seeds", default=",".join(map(str, DATA_SEEDS)))
    p.add_argument("--measure-only", action="store_true")
    p.add_argument("--skip-measure", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the grid runs with 1; 2 = both cores)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("CRLPROMPT_DATA_DIR", str(ROOT.parent / "shared" / "data"))  # SST-2 dev.tsv (test)
    import torch

    torch.set_num_threads(args.threads)
    from crlprompt.runners import compare
    from crlprompt.runners.common import setup_logging
    from crlprompt.runners.records import append_record

    setup_logging()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.skip_measure:
        for rec in measure():
            append_record(OUT / "measure.jsonl", rec, kind="benchmark")
    if args.measure_only:
        return
    names = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CELLS))
    if unknown:
        raise SystemExit(f"unknown cells {unknown}; choose from {list(CELLS)}")
    seeds = [int(d) for d in args.data_seeds.split(",")]
    plan = [(n, d) for n, d in PLAN if n in names and d in seeds] + [
        (n, d) for n in names for d in seeds if (n, d) not in PLAN]  # fmt: skip
    for name, data_seed in plan:  # one data seed at a time: finished ones are on disk early
        t = time.perf_counter()
        cfg = compare.CompareConfig(**CELLS[name], seeds="0", data_seeds=str(data_seed), out=OUT / name,
                                    save_prompts=False, progress=False)  # fmt: skip
        compare.run_compare(cfg)
        print(json.dumps({"cell": name, "data_seed": data_seed, "seconds": time.perf_counter() - t}), flush=True)
    print(compare.main(["--table", str(OUT)]) or "", flush=True)


if __name__ == "__main__":
    main()
