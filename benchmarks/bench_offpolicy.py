"""Off-policy and bandit agents: evaluations to reach the on-policy result, racing, and the RL term.

    nohup python benchmarks/bench_offpolicy.py > bench_offpolicy.log 2>&1 &   # measure, then the grid
    python benchmarks/bench_offpolicy.py --measure-only                           # one cell of each part
    python benchmarks/bench_offpolicy.py --table                                  # Markdown + curves

Three parts, each appending one JSON line per finished cell under ``results/offpolicy/`` (with
the commit, package versions and machine); rerunning skips the cells already recorded, so an
interrupted run resumes. One process, ``torch.set_num_threads(1)``.

* **(a) evaluations to reach the on-policy result** (``search.jsonl``): ES and PPO against the
  off-policy agents at one budget, seeds 0-4, on ``CRLPrompt/Tiny-Proj64-v0`` (registered
  defaults: σ = 2, accuracy; 512 evaluations; offpolicy, SAC, TD3, anchor, random) and
  ``CRLPrompt/TREC-MiniLM-16Shot-v0`` (its registered search space, rewards on a 32-row minibatch
  of D_RL; 160 evaluations; offpolicy, SAC). The GP bandit is left out: its rounds cost 2-10 s
  each on this CPU (about 5 minutes a run at 512 evaluations). A callback reads the agent's
  event after each batch (evaluations so far, the best prompt so far) and at checkpoints of the
  budget measures that prompt's *test* accuracy (the agents are not changed). "Evaluations to reach ES"
  is the first checkpoint at which the agent's mean test accuracy over seeds reaches ES's at the
  full budget.
* **(b) racing best-of-16 on a real D_RL** (``racing.jsonl``): 16 prompts (actions N(0, I) of the
  TREC-MiniLM 16-shot id) scored on all of D_RL (96 rows, accuracy) and raced on it
  (:func:`crlprompt.agents.racing.race`: successive halving to 2 finalists); same best
  (the winner's full-D_RL accuracy equals the best one's) and fraction of example-forwards.
* **(c) inside Algorithm 1** (``crl.jsonl``): CRLAgent on TREC and SST-2 16-shot with MiniLM
  (data seed 13), RL term ``single`` (Eq. 5, faithful), ``replay`` (importance-weighted over a
  16-sample buffer, one fresh sample per RL step) and ``race`` (8 samples raced on D_RL, centered
  ranks); the paper's β, γ and σ, lr 1e-2 (the k-shot runs' rate), 4 + 12 epochs and an RL step
  every 2 phase-2 steps (16-shot data: 3 steps an epoch on TREC, 1 on SST-2). Test accuracy and
  the seconds spent in the RL term; seed 0, then seed 1 as the wall-clock allows.

Sizes were set from ``--measure-only`` on the shared 2-core CPU (see ``measure.jsonl``) to fit
about 45 minutes of wall-clock in all; ``--parts`` picks parts (a-tiny, a-real, b, c).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
OUT = ROOT / "results" / "offpolicy"
SEEDS = (0, 1, 2, 3, 4)

#: part (a): id -> (env kwargs, algorithms, budget, checkpoints, per-algorithm kwargs)
SEARCH = {
    "a-tiny": ("CRLPrompt/Tiny-Proj64-v0", {},
               ("es", "ppo", "offpolicy", "sac", "td3", "anchor", "random"), 512,
               (32, 64, 128, 192, 256, 384, 512)),
    "a-real": ("CRLPrompt/TREC-MiniLM-16Shot-v0", {"reward_batch_size": 32},
               ("es", "ppo", "offpolicy", "sac"), 160, (48, 80, 160)),
}  # fmt: skip
NUM_ENVS = 16
RACE_ID, RACE_TRIALS, RACE_K = "CRLPrompt/TREC-MiniLM-16Shot-v0", 20, 16
RACE_RULES = {"halving-2": {"finalists": 2}}
CRL_TASKS, CRL_ESTIMATORS, CRL_SEEDS = ("trec", "sst2"), ("single", "replay", "race"), (0, 1)
CRL_CONFIG = {"lr": 1e-2, "phase1_epochs": 4.0, "phase2_epochs": 12.0, "rl_interval": 2, "batch_size": 32}
CRL_ESTIMATOR_KW = {"single": {}, "replay": {"rl_buffer": 16}, "race": {"rl_samples": 8}}


def stamp() -> dict:
    from crlprompt.runners.common import machine, versions

    return {"versions": versions(), "machine": machine(), "load1": os.getloadavg()[0]}


# ----------------------------------------------------------------------------- (a)
class Tap:
    """A :class:`~crlprompt.agents.SearchEvent` callback: keeps the best prompt so far and measures
    its test accuracy at each checkpoint (a batch may cross one: it is recorded at the batch's end)."""

    def __init__(self, checkpoints, test_acc):
        self.todo, self.test_acc = sorted(checkpoints), test_acc
        self.evals, self.best, self.best_r, self.points, self._cache = 0, None, -math.inf, [], (None, None)

    def __call__(self, event) -> None:
        self.evals = event.evals
        if event.best_reward > self.best_r:
            self.best, self.best_r = event.best_prompt.copy(), event.best_reward
        while self.todo and self.evals >= self.todo[0]:
            self.points.append({"evals": self.todo.pop(0), "best_reward": self.best_r, "test_acc": self._test()})

    def _test(self) -> float:
        if self._cache[0] is not self.best:  # the best prompt changed since the last checkpoint
            self._cache = (self.best, self.test_acc(self.best))
        return self._cache[1]


def run_search(part: str, algo: str, seed: int, setup) -> dict:
    import numpy as np
    import torch

    from crlprompt.agents import registry
    from crlprompt.agents.base import search_of
    from crlprompt.scoring import accuracy

    env_id, env_kwargs, _, budget, checkpoints = SEARCH[part]
    agent, env = registry.get_spec(algo).build(env_id, {**env_kwargs, "setup": setup}, seed, num_envs=NUM_ENVS)
    search = search_of(env)
    test = lambda p: accuracy(setup.model, setup.test, theta=torch.as_tensor(p))  # noqa: E731
    tap = Tap(checkpoints, test)
    t = time.perf_counter()
    result = agent.learn(budget, callback=tap)
    seconds = time.perf_counter() - t
    final_test = test(result.final_prompt)
    env.close()
    return {"part": part, "env_id": env_id, "env_kwargs": env_kwargs, "algo": algo, "seed": seed, "budget": budget,
            "evals": result.evals, "tapped_evals": tap.evals, "seconds": seconds, "points": tap.points,
            "history": result.history, "best_env_reward": result.best_reward, "final_env_reward": result.final_reward,
            "final_test_acc": final_test, "center_test_acc": test(search.center),
            "best_prompt_match": bool(np.allclose(tap.best, result.best_prompt, atol=1e-5))
            if tap.best is not None else None}  # fmt: skip


# ----------------------------------------------------------------------------- (b)
def run_race_trial(trial: int, env) -> list[dict]:
    import numpy as np
    import torch

    from crlprompt.agents.racing import race
    from crlprompt.scoring import score_population

    search = env.unwrapped.search
    rng = np.random.default_rng(1000 + trial)
    actions = rng.standard_normal((RACE_K, search.action_dim)).astype(np.float32)  # (K, d) ~ N(0, I)
    prompts = torch.from_numpy(np.stack([search.prompt_for(a) for a in actions]))  # (K, D)
    t = time.perf_counter()
    full = score_population(search.model, search.data, prompts, max_rows=search.max_rows).reward("accuracy").numpy()
    full_s = time.perf_counter() - t
    n = len(search.data)
    out = []
    for name, kw in RACE_RULES.items():
        t = time.perf_counter()
        res = race(search, prompts, rng=np.random.default_rng(trial), **kw)
        out.append({"part": "b", "env_id": RACE_ID, "rule": name, "race_kwargs": kw, "trial": trial, "k": RACE_K,
                    "rows": n, "full_acc": full.tolist(), "winner": res.winner, "best": int(full.argmax()),
                    "same_best": bool(full[res.winner] >= full.max() - 1e-9),  # ties on full D_RL count
                    "same_index": res.winner == int(full.argmax()),
                    "regret": float(full.max() - full[res.winner]), "example_forwards": res.example_forwards,
                    "fraction": res.example_forwards / (RACE_K * n), "seconds": time.perf_counter() - t,
                    "full_seconds": full_s})  # fmt: skip
    return out


# ----------------------------------------------------------------------------- (c)
def run_crl(task: str, estimator: str, seed: int) -> dict:
    from crlprompt.agents.crl import CRLAgent, CRLConfig
    from crlprompt.build import SetupConfig, build

    setup = build(SetupConfig(task=task, model="minilm", k_shot=16, data_seed=13, seed=seed))
    cfg = CRLConfig(**CRL_CONFIG, rl_estimator=estimator, **CRL_ESTIMATOR_KW[estimator])
    records = []  # "rl" records; their "seconds": the RL term's wall time (sampling, env step or race, the loss)
    agent = CRLAgent(setup, cfg, seed=seed, progress=False,
                     callbacks=[lambda ev: records.append(ev.diagnostics) if ev.kind == "rl" else None])  # fmt: skip
    t = time.perf_counter()
    summary = agent.learn()
    seconds = time.perf_counter() - t
    return {"part": "c", "task": task, "model": "minilm", "k_shot": 16, "data_seed": 13, "estimator": estimator,
            "seed": seed, "config": {**CRL_CONFIG, **CRL_ESTIMATOR_KW[estimator]}, "seconds": seconds,
            "rl_seconds": sum(r["seconds"] for r in records), "rl_updates": len(records), "rl_records": records,
            "test_acc": summary["test_acc"], "drl_acc": summary["drl_acc"], "phase1_test_acc": summary["phase1_test_acc"],
            "train_rows": len(setup.train), "drl_rows": len(setup.drl), "test_rows": len(setup.test)}  # fmt: skip


# ----------------------------------------------------------------------------- driver
def done_keys(path: Path, keys: tuple[str, ...]) -> set[tuple]:
    from crlprompt.runners.common import load_results

    return {tuple(r.get(k) for k in keys) for r in load_results(path)} if path.exists() else set()


def part_a(part: str, only: tuple[int, ...] | None = None, algos: tuple[str, ...] | None = None) -> None:
    import gymnasium as gym

    from crlprompt.runners.records import append_record

    env_id, env_kwargs, all_algos, *_ = SEARCH[part]
    path = OUT / "search.jsonl"
    done = done_keys(path, ("part", "algo", "seed"))
    todo = [(a, s) for s in (only or SEEDS) for a in (algos or all_algos) if (part, a, s) not in done]
    if not todo:
        return
    setup = gym.make(env_id, **env_kwargs).unwrapped.search.setup  # one model and data for every run
    base = stamp()
    for algo, seed in todo:
        rec = {**run_search(part, algo, seed, setup), **base, "load1": os.getloadavg()[0]}
        append_record(path, rec, kind="benchmark")
        last = rec["points"][-1] if rec["points"] else {}
        print(f"{part} {algo} seed {seed}: test {last.get('test_acc', float('nan')):.3f} at {last.get('evals')} "
              f"evals, {rec['seconds']:.0f}s", flush=True)  # fmt: skip


def part_b(trials: int = RACE_TRIALS) -> None:
    import gymnasium as gym

    from crlprompt.runners.records import append_record

    path = OUT / "racing.jsonl"
    done = {t for (t,) in done_keys(path, ("trial",))}
    todo = [t for t in range(trials) if t not in done]
    if not todo:
        return
    env = gym.make(RACE_ID, reward="accuracy")
    base = stamp()
    for trial in todo:
        recs = run_race_trial(trial, env)
        for rec in recs:
            append_record(path, {**rec, **base}, kind="benchmark")
        print(f"race {trial}: " + ", ".join(f"{r['rule']} same={r['same_best']} {r['fraction']:.2f}" for r in recs),
              flush=True)  # fmt: skip


def part_c(seeds=CRL_SEEDS, estimators=CRL_ESTIMATORS, tasks=CRL_TASKS) -> None:
    from crlprompt.runners.records import append_record

    path = OUT / "crl.jsonl"
    done = done_keys(path, ("task", "estimator", "seed"))
    for seed in seeds:
        for task in tasks:
            for est in estimators:
                if (task, est, seed) in done:
                    continue
                rec = {**run_crl(task, est, seed), **stamp()}
                append_record(path, rec, kind="benchmark")
                print(f"crl {task} {est} seed {seed}: test {rec['test_acc']:.3f}, {rec['seconds']:.0f}s "
                      f"(RL {rec['rl_seconds']:.1f}s, {rec['rl_updates']} updates)", flush=True)  # fmt: skip


def measure() -> None:
    """The first cell of each part, timed into ``measure.jsonl``; its records count toward the grid."""
    from crlprompt.runners.records import append_record

    steps = [("a-tiny es", lambda: part_a("a-tiny", (0,), ("es",))),
             ("a-real es", lambda: part_a("a-real", (0,), ("es",))), ("b one trial", lambda: part_b(1)),
             ("c trec single", lambda: part_c((0,), ("single",), ("trec",))),
             ("c trec race", lambda: part_c((0,), ("race",), ("trec",)))]  # fmt: skip
    for what, step in steps:
        t = time.perf_counter()
        step()
        append_record(OUT / "measure.jsonl", {"what": what, "seconds": time.perf_counter() - t, **stamp()},
                      kind="benchmark")  # fmt: skip
        print(f"measure {what}: {time.perf_counter() - t:.1f}s", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="a-tiny,b,a-real,c", help="comma-separated parts, run in this order")
    p.add_argument("--measure-only", action="store_true")
    p.add_argument("--table", action="store_true", help="print the Markdown tables of results/offpolicy and plot")
    args = p.parse_args(argv)
    if args.table:
        sys.path.insert(0, str(HERE))
        from offpolicy_table import main as table_main

        table_main([str(OUT)])
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("CRLPROMPT_DATA_DIR", str(ROOT.parent / "shared" / "data"))  # SST-2 dev.tsv (test)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.measure_only:
        measure()
        return
    for part in [s.strip() for s in args.parts.split(",") if s.strip()]:
        t = time.perf_counter()
        {"a-tiny": lambda: part_a("a-tiny"), "a-real": lambda: part_a("a-real"), "b": part_b, "c": part_c}[part]()
        print(json.dumps({"part": part, "seconds": time.perf_counter() - t}), flush=True)
    print(json.dumps({"total_seconds": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()
