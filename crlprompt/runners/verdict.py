"""The README's verdict lines, computed from the raw records (so the front page types no number).

    python -m crlprompt.runners.verdict results/floor

Three lines: gradient prompt tuning at k = 16 against the no-prompt floor (the targets:
≥ 10 points on TREC, ≥ 3 on SST-2), search at 1,000 evaluations against the floor (≥ 2 points on
2 of the 3 MiniLM tasks; ≥ 5 over HandCraft on SST-2 / SmolLM2), and CRL-Prompt against Prompt v2.
Each difference is a mean over data seeds with its paired 95% t interval; a target is "met" only
when the mean clears it, and the interval is printed beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .plots import _records, floor_rows
from .tables import t_ci

#: (task, minimum gain over the floor in points) for Prompt v2 / CRL-Prompt at k = 16
TUNING_TARGETS = {"trec": 10.0, "sst2": 3.0}
SEARCH_TARGET, SEARCH_TASKS, HANDCRAFT_TARGET = 2.0, ("trec", "sst2", "agnews"), 5.0
TASK_NAMES = {"trec": "TREC", "sst2": "SST-2", "agnews": "AG News"}


def _ci(d: list[float]) -> str:
    if len(d) < 2:
        return f"{np.mean(d):+.1f} (n = {len(d)})"
    m, lo, hi = t_ci(d)
    return f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}] (n = {len(d)})"


def tuning_line(records: list[dict]) -> str:
    rows = dict(floor_rows(records))
    parts, targets = [], []
    for task, target in TUNING_TARGETS.items():
        met, complete = [], True
        for method in ("Prompt v2", "CRL-Prompt"):
            d = rows.get(f"{task} / minilm / k=16: {method}")
            complete &= bool(d) and len(d) >= 5
            if d:
                parts.append(f"{TASK_NAMES[task]} {method} {_ci(d)}" + (" **under the floor**" if np.mean(d) < 0 else ""))
                met.append(float(np.mean(d)) >= target)
        if met:
            verdict = ("met" if all(met) and len(met) == 2 else "missed") + ("" if complete else " so far")
            targets.append(f"≥ {target:g} on {TASK_NAMES[task]}: **{verdict}**")
    if not parts:
        return "- Few-shot tuning vs the no-prompt floor: no records yet."
    note = "" if all("so far" not in t for t in targets) and len(targets) == len(TUNING_TARGETS) else (
        " (so far: not every task has 5 data seeds)")
    return (f"- **Few-shot tuning vs the no-prompt floor** (MiniLM, k = 16, test points over the floor): "
            f"{'; '.join(parts)}. Targets (Prompt v2 and CRL-Prompt): {'; '.join(targets)}{note}.")  # fmt: skip


def _search_deltas(root: Path) -> dict[str, dict[str, list[float]]]:
    """env id -> algo -> per-data-seed (test − best floor) in points; also ``handcraft`` deltas."""
    from .compare_report import _baseline_acc, best_floor, load_tree

    runs, base = load_tree(root)
    out: dict = {}
    for r in runs:
        floor = best_floor(base, r["env_id"]).get(r["data_seed"])
        if floor is not None:
            out.setdefault(r["env_id"], {}).setdefault(r["algo"], []).append(100 * (r["selected_test_acc"] - floor))
        hc = _baseline_acc(base, r["env_id"], "handcraft").get(r["data_seed"])
        if hc is not None:
            out.setdefault(r["env_id"], {}).setdefault(f"{r['algo']} vs HandCraft", []).append(
                100 * (r["selected_test_acc"] - hc))
    return out


def search_line(root: Path) -> str:
    if not root.exists():
        return "- Search vs the floor: no records yet."
    deltas = _search_deltas(root)
    parts, above, complete = [], 0, True
    for task in SEARCH_TASKS:
        env = next((e for e in deltas if e.split("/")[-1].lower().startswith(f"{task}-minilm")), None)
        d = deltas[env].get("cma") if env else None
        complete &= bool(d) and len(d) >= 5
        if d:
            parts.append(f"{TASK_NAMES[task]} {_ci(d)}" + (" **under the floor**" if np.mean(d) < 0 else ""))
            above += float(np.mean(d)) >= SEARCH_TARGET
    sm = next((e for e in deltas if "sst2-smollm2" in e.lower()), None)
    hc = deltas.get(sm, {}).get("cma vs HandCraft") if sm else None
    line = (f"- **CMA-ES at 1,000 evaluations vs the best floor** (test points): {'; '.join(parts) or 'not run'}; "
            f"target (≥ 2 on 2 of 3 MiniLM tasks): **{'met' if above >= 2 else 'missed'}"
            f"{'' if complete else ' so far (not every task has 5 data seeds)'}**")  # fmt: skip
    if hc:
        line += (f". SST-2 / SmolLM2 vs HandCraft: {_ci(hc)}, target ≥ 5: "
                 f"**{'met' if np.mean(hc) >= HANDCRAFT_TARGET else 'missed'}**")  # fmt: skip
    return line + "."


def crl_line(records: list[dict]) -> str:
    by: dict = {}
    for r in records:
        if r.get("method") in ("ptv2", "crl") and not r.get("tag") and r.get("test_acc") is not None:
            by.setdefault(r["task"], {}).setdefault((r.get("data_seed"), r.get("seed")), {})[r["method"]] = r["test_acc"]
    parts = []
    for task, cells in sorted(by.items()):
        d = [100 * (c["crl"] - c["ptv2"]) for c in cells.values() if "crl" in c and "ptv2" in c]
        if d:
            parts.append(f"{TASK_NAMES.get(task, task)} {_ci(d)}")
    if not parts:
        return "- CRL-Prompt vs Prompt v2: no pairs yet."
    return f"- **CRL-Prompt − Prompt v2** (k = 16, test points, paired): {'; '.join(parts)}."


def verdict(root: Path) -> str:
    records = _records([root / "repro"]) if (root / "repro").exists() else []
    return "\n".join([tuning_line(records), search_line(root / "search"), crl_line(records)])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m crlprompt.runners.verdict RESULTS_DIR")
    print(verdict(Path(args[0])))


if __name__ == "__main__":
    main()
