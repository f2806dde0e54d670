"""Text prompts found on one target, scored on the other offline model.

The text-prompt agents (``crl-prompt compare`` on a ``*-SmolLM2-Text-v0`` id) search instructions for
SmolLM2's verbalizer. The other offline model, MiniLM, has no LM head: here each selected instruction
is written in front of every input of the same task and 16-shot rows (same data seed) and scored the way
MiniLM's no-prompt floor is (mean pooling, logistic regression fitted on the train rows, C chosen on
D_RL; :func:`crlprompt.floors.instructed_probe`), beside that floor. One record per (run, instruction)
is appended to ``results/text/transfer/records.jsonl`` (commit, versions, machine); a rerun skips what
is recorded. ``--table`` prints the table the docs quote.

    OMP_NUM_THREADS=1 CRLPROMPT_DATA_DIR=../shared/data python benchmarks/text_transfer.py
    python benchmarks/text_transfer.py --table results/text/transfer
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

RUNS = ROOT / "results" / "text"
OUT = RUNS / "transfer" / "records.jsonl"
TARGET = "minilm"


def selected_prompts(root: Path) -> list[dict]:
    """The instruction each text run selected on D_RL, with the source target's accuracies."""
    from crlprompt.runners.records import read_records

    out = []
    for f in sorted(root.rglob("results.jsonl")):
        for r in read_records(f, "search"):
            if "-Text-" not in r["env_id"]:
                continue
            which = r.get("selected", "best")
            out.append({"env_id": r["env_id"], "algo": r["algo"], "seed": r["seed"], "data_seed": r["data_seed"],
                        "prompt": r[f"{which}_prompt"], "source_drl_acc": r["selected_drl_acc"],
                        "source_test_acc": r["selected_test_acc"]})  # fmt: skip
    return out


def task_of(env_id: str) -> str:
    from crlprompt.registry import TEXT_SPECS

    return TEXT_SPECS[env_id.removeprefix("CRLPrompt/").removesuffix("-Text-v0")]["task"]


def run(root: Path, out: Path, data_dir: str | None) -> None:
    import torch

    from crlprompt.build import SetupConfig, build
    from crlprompt.floors import instructed_probe
    from crlprompt.runners.records import append_record, read_records

    torch.set_num_threads(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    have = {(r["env_id"], r["algo"], r["seed"], r["data_seed"]) for r in read_records(out, "benchmark")} if out.is_file() else set()
    todo = [p for p in selected_prompts(root) if (p["env_id"], p["algo"], p["seed"], p["data_seed"]) not in have]
    setups: dict = {}
    for p in todo:
        key = (task_of(p["env_id"]), p["data_seed"])
        if key not in setups:
            cfg = SetupConfig(task=key[0], model=TARGET, k_shot=16, data_seed=key[1], num_tokens=0, prompt="shallow",
                              data_dir=data_dir)  # fmt: skip
            setup = build(cfg)
            setups[key] = (setup, instructed_probe(setup, ""))
        setup, floor = setups[key]
        got = instructed_probe(setup, p["prompt"])
        rec = {**p, "target": TARGET, "task": key[0], "target_floor_drl_acc": floor["drl_acc"],
               "target_floor_test_acc": floor["test_acc"], "target_drl_acc": got["drl_acc"],
               "target_test_acc": got["test_acc"], "c": got["c"], "pooling": got["pooling"]}  # fmt: skip
        append_record(out, rec, kind="benchmark")
        print(json.dumps({k: rec[k] for k in ("env_id", "algo", "data_seed", "target_floor_test_acc", "target_test_acc")}),
              flush=True)  # fmt: skip


def table(path: Path) -> str:
    """Per (source id, algorithm): the source target's test accuracy, MiniLM's no-prompt floor, MiniLM
    with the instruction, their difference, over the runs."""
    from crlprompt.runners.records import read_records

    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    recs = [r for f in files for r in read_records(f, "benchmark")]
    if not recs:
        raise SystemExit(f"no records under {path}")
    cells: dict[tuple, list[dict]] = {}
    for r in recs:
        cells.setdefault((r["env_id"], r["algo"]), []).append(r)
    lines = ["| source id | algo | runs (data seeds) | source test | MiniLM no-prompt floor (test) | MiniLM with the "
             "instruction (test) | Δ vs floor (pts) | instruction > floor |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (env_id, algo), rs in sorted(cells.items()):
        src = np.mean([r["source_test_acc"] for r in rs])
        fl = np.mean([r["target_floor_test_acc"] for r in rs])
        got = np.mean([r["target_test_acc"] for r in rs])
        wins = sum(r["target_test_acc"] > r["target_floor_test_acc"] for r in rs)
        seeds = ",".join(str(s) for s in sorted({r["data_seed"] for r in rs}))
        lines.append(f"| `{env_id.removeprefix('CRLPrompt/')}` | {algo} | {len(rs)} ({seeds}) | {src:.3f} | {fl:.3f} | "
                     f"{got:.3f} | {100 * (got - fl):+.1f} | {wins}/{len(rs)} |")  # fmt: skip
    commits = sorted({str(r["versions"].get("commit"))[:10] for r in recs})
    lines += ["", f"Each run's D_RL-selected instruction in front of every input, MiniLM mean pooling and the floor's "
              f"logistic regression (C on D_RL), LM-BFF 16-shot rows of the run's data seed; an empty instruction "
              f"(HandCraft) is the floor itself; commit {', '.join(commits)}; {recs[0]['machine'].get('cpu', 'cpu')}, "
              "1 torch thread."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=RUNS, help="text compare runs (their results.jsonl)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--data-dir", default=None, help="default: $CRLPROMPT_DATA_DIR (SST-2's test rows)")
    p.add_argument("--table", type=Path, default=None, help="print the table of these records and exit")
    args = p.parse_args(argv)
    if args.table is not None:
        print(table(args.table))
        return 0
    run(args.runs, args.out, args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
