"""The figures of the results pages, drawn from the raw records (never from typed numbers).

    python -m crlprompt.runners.plots floor results/floor/repro docs/results/img/few-shot-floor.png
    python -m crlprompt.runners.plots search results/floor/search docs/results/img/search

* ``floor``: a forest plot of each trained method's test accuracy minus the no-prompt floor, in
  points, mean over data seeds with its paired 95% t interval (one row per task and method), and a
  line at 0: a row left of it is under the floor.
* ``search``: per env id, the best-so-far env reward against prompt evaluations, one line per
  algorithm (mean over runs) with a band from the lowest to the highest run
  (:func:`crlprompt.runners.compare_report.plot_curves`), one PNG per env id.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .records import read_records


def _records(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        files = sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
        out += [r for f in files for r in read_records(f)]
    return out


def floor_rows(records: list[dict]) -> list[tuple[str, list[float]]]:
    """``(label, per-data-seed differences in points)``: each trained method's test accuracy minus the
    probe (no-prompt floor) record of the same task, model, k and data seed; means over training seeds."""
    from .tables import METHOD_NAMES

    floors: dict = {}
    for r in records:
        if r.get("method") == "probe" and r.get("test_acc") is not None:
            floors.setdefault((r["task"], r["model"], r.get("k_shot"), r.get("data_seed")), []).append(r["test_acc"])
    by: dict = {}
    for r in records:
        key = (r["task"], r["model"], r.get("k_shot"), r.get("data_seed"))
        if r.get("method") in (None, "probe") or r.get("test_acc") is None or key not in floors or r.get("tag"):
            continue
        by.setdefault((key[:3], r["method"]), {}).setdefault(key[3], []).append(r["test_acc"])
    rows = []
    for ((task, model, k), method), per_seed in sorted(by.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        diffs = [100 * (np.mean(v) - np.mean(floors[(task, model, k, d)])) for d, v in sorted(per_seed.items())]
        label = f"{task} / {model} / k={k if k is not None else 'full'}: {METHOD_NAMES.get(method, method)}"
        rows.append((label, diffs))
    return rows


def plot_floor(records: list[dict], path: Path) -> None:
    """The forest plot of :func:`floor_rows`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .tables import t_ci

    rows = floor_rows(records)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    for i, (label, d) in enumerate(rows):
        m, lo, hi = t_ci(d) if len(d) > 1 else (float(np.mean(d)), float("nan"), float("nan"))
        y = len(rows) - 1 - i
        if np.isfinite(lo):
            ax.plot([lo, hi], [y, y], color="C0", lw=2)
        ax.plot(d, [y] * len(d), "o", color="C0", alpha=0.3, ms=4)
        ax.plot([m], [y], "D", color="C3" if m < 0 else "C0", ms=7)
    ax.axvline(0, color="gray", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)], fontsize=8)
    ax.set_xlabel("test accuracy − no-prompt floor (points): mean, 95% paired interval, data seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_search(root: Path, prefix: Path) -> list[Path]:
    """One best-so-far curve PNG per env id under ``root``: ``{prefix}-{env}.png``."""
    from .compare_report import load_tree, plot_curves

    runs, base = load_tree(root)
    out = []
    for env_id in dict.fromkeys(r["env_id"] for r in runs):
        path = Path(f"{prefix}-{env_id.split('/')[-1].lower()}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_curves([r for r in runs if r["env_id"] == env_id], path, [b for b in base if b["env_id"] == env_id])
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "floor":
        plot_floor(_records([Path(args[1])]), Path(args[2]))
        print(f"wrote {args[2]}")
    elif len(args) == 3 and args[0] == "search":
        for p in plot_search(Path(args[1]), Path(args[2])):
            print(f"wrote {p}")
    else:
        raise SystemExit("usage: python -m crlprompt.runners.plots floor RECORDS OUT.png | search RESULTS_DIR OUT_PREFIX")


if __name__ == "__main__":
    main()
