"""The text-prompt benchmark's targets, computed from the compare records under ``results/text``.

    python benchmarks/text_verdict.py results/text

* every text agent's test accuracy over HandCraft (the template alone), paired by data seed and agent
  seed, mean with its 95% t interval; the target is the best agent ≥ HandCraft + 3 points on
  ``SST2-SmolLM2-Text``;
* StablePrompt's APPO against its plain-PPO ablation: the spread (std) of test accuracy over agent
  seeds on each data seed, and its mean over data seeds; the target is APPO's spread below PPO's;
* the D_RL-to-test gap of each text agent beside soft-prompt CMA-ES at the same budget
  (``*-SmolLM2-16Shot`` compare runs under the same root), the gap measured on the same rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

HANDCRAFT_TARGET = 3.0
TARGET_ID = "SST2-SmolLM2-Text-v0"


def _ci(d: list[float]) -> str:
    from crlprompt.runners.tables import t_ci

    if len(d) < 2:
        return f"{np.mean(d):+.1f} (n = {len(d)})"
    m, lo, hi = t_ci(d)
    return f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}] (n = {len(d)})"


def vs_handcraft(runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    """text env id -> algo -> test points over the handcraft run of the same data seed (agent seed 0's
    when the algo's seed has none: HandCraft is deterministic)."""
    hc = {(r["env_id"], r["data_seed"]): r["selected_test_acc"] for r in runs if r["algo"] == "handcraft"}
    out: dict = {}
    for r in runs:
        base = hc.get((r["env_id"], r["data_seed"]))
        if r["algo"] != "handcraft" and base is not None and "-Text-" in r["env_id"]:
            out.setdefault(r["env_id"], {}).setdefault(r["algo"], []).append(100 * (r["selected_test_acc"] - base))
    return out


def spread(runs: list[dict], algo: str) -> dict[int, float]:
    """data seed -> std (points, ddof 1) of ``algo``'s test accuracy over agent seeds (≥ 2 seeds)."""
    by: dict = {}
    for r in runs:
        if r["algo"] == algo and "-Text-" in r["env_id"]:
            by.setdefault(r["data_seed"], []).append(100 * r["selected_test_acc"])
    return {ds: float(np.std(v, ddof=1)) for ds, v in sorted(by.items()) if len(v) >= 2}


def gaps(runs: list[dict]) -> dict[str, list[float]]:
    """algo (soft ones suffixed ``(soft)``) -> D_RL − test gap in points, per run."""
    out: dict = {}
    for r in runs:
        name = r["algo"] if "-Text-" in r["env_id"] else f"{r['algo']} (soft)"
        out.setdefault(name, []).append(100 * (r["selected_drl_acc"] - r["selected_test_acc"]))
    return out


def verdict(root: Path) -> str:
    from crlprompt.runners.compare_report import load_tree

    runs, _ = load_tree(root)
    if not runs:
        return "- Text prompts: no records yet."
    lines = []
    deltas = vs_handcraft(runs)
    for env_id, by in sorted(deltas.items()):
        parts = [f"{a} {_ci(d)}" for a, d in sorted(by.items())]
        line = f"- **Text agents vs HandCraft** on `{env_id.removeprefix('CRLPrompt/')}` (test points, paired): {'; '.join(parts)}"
        if env_id.endswith(TARGET_ID):
            best = max(by, key=lambda a: np.mean(by[a]))
            n = len({r["data_seed"] for r in runs if r["algo"] == best and r["env_id"] == env_id})
            met = np.mean(by[best]) >= HANDCRAFT_TARGET
            line += (f". Target (best agent ≥ HandCraft + {HANDCRAFT_TARGET:g}): **{'met' if met else 'missed'}"
                     f"{'' if n >= 3 else ' so far (fewer than 3 data seeds)'}** ({best})")  # fmt: skip
        lines.append(line + ".")
    appo, ppo = spread(runs, "stableprompt"), spread(runs, "stableprompt-ppo")
    both = sorted(set(appo) & set(ppo))
    if both:
        a, p = np.mean([appo[d] for d in both]), np.mean([ppo[d] for d in both])
        per = ", ".join(f"data seed {d}: {appo[d]:.1f} vs {ppo[d]:.1f}" for d in both)
        lines.append(f"- **Seed spread, APPO vs plain PPO** (std of test accuracy over agent seeds, points): {per}; "
                     f"target (APPO's below PPO's): **{'met' if a < p else 'missed'}** ({a:.1f} vs {p:.1f}).")  # fmt: skip
    else:
        lines.append("- Seed spread, APPO vs plain PPO: not measured yet (needs ≥ 2 agent seeds of both on a data seed).")
    g = gaps(runs)
    lines.append("- **D_RL − test gap** (points, mean over runs): "
                 + "; ".join(f"{a} {np.mean(v):+.1f} (n = {len(v)})" for a, v in sorted(g.items())) + ".")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python benchmarks/text_verdict.py RESULTS_DIR")
    print(verdict(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
