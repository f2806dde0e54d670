"""Merge the results.jsonl files under a directory into Table 1 / Table 2 Markdown.

    python -m crlprompt.runners.tables runs/paper
"""

from __future__ import annotations

import sys
from pathlib import Path

from .crl import ABLATION_METHODS, ABLATION_NAMES, METHOD_NAMES, TABLE1_METHODS, load_results, table

TASK_ORDER = ("agnews", "trec", "sst2", "empathetic_dialogues")


def merge(root: Path) -> tuple[str, str, list[dict]]:
    results = [r for f in sorted(root.rglob("results.jsonl")) for r in load_results(f)]
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in results)]
    models = list(dict.fromkeys(r["model"] for r in results))
    t1 = table(results, tasks, models, TABLE1_METHODS, METHOD_NAMES)
    abl_models = [m for m in models if any(r["model"] == m and r["method"].startswith("crl-") for r in results)]
    t2 = table(results, tasks, abl_models, ABLATION_METHODS, ABLATION_NAMES) if abl_models else ""
    return t1, t2, results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m crlprompt.runners.tables RESULTS_DIR")
    root = Path(argv[0])
    t1, t2, results = merge(root)
    if not results:
        raise SystemExit(f"no results.jsonl under {root}")
    (root / "table1.md").write_text(t1)
    print("## Table 1\n\n" + t1)
    if t2:
        (root / "table2.md").write_text(t2)
        print("## Table 2 (ablation)\n\n" + t2)


if __name__ == "__main__":
    main()
