"""Regenerate the result tables of the README and of the docs pages from the raw records under
``results/`` (never typed), and the figures of the results pages.

    python scripts/update_readme.py           # rewrite every generated block and figure
    python scripts/update_readme.py --check   # exit 1 if a block differs from what its records give

A generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` in README.md,
``benchmarks/RESULTS.md`` or any ``docs/**/*.md``; ``BLOCKS`` says which table tool prints it. Only those blocks change: the
prose around them is the page's own. ``FIGURES`` are drawn by ``crlprompt.runners.plots`` into
``docs/results/img/`` (``--check`` does not compare images, which differ by library version).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def pages() -> list[Path]:
    """The files whose generated blocks this tool owns: the README and every docs page."""
    return [README, ROOT / "benchmarks" / "RESULTS.md", *sorted((ROOT / "docs").rglob("*.md"))]
TABLES = ["-m", "crlprompt.runners.tables"]

#: block name -> (table tool arguments after ``python``, how many '#' to add to the tool's headings)
BLOCKS: dict[str, tuple[list[str], int]] = {
    "algorithms": (["-m", "crlprompt.runners.compare", "--algorithms"], 0),  # the agent registry's table
    "main-job": ([*TABLES, "--runs", "results/main_job"], 0),
    "full": ([*TABLES, "results/paper_grid_h100.jsonl", "results/smollm2_ptv2_token_init_h100.jsonl",
              "results/smollm2_crl_token_init_cpu.jsonl"], 2),  # fmt: skip
    "few-shot": ([*TABLES, "results/repro"], 2),
    "rl-sweep": ([*TABLES, "results/rl_sweep"], 2),
    "search": (["-m", "crlprompt.runners.compare", "--table", "results/search"], 0),
    "offpolicy": (["benchmarks/offpolicy_table.py", "results/offpolicy"], 1),
    "verdict": (["-m", "crlprompt.runners.verdict", "results/floor"], 0),
    "floor-few-shot": ([*TABLES, "results/floor/repro"], 1),
    "floor-few-shot-floor-c": ([*TABLES, "results/floor/repro-floor-c"], 2),
    "floor-full": ([*TABLES, "results/floor/full", "results/main_job"], 1),
    "floor-search": (["-m", "crlprompt.runners.compare", "--table", "results/floor/search"], 0),
    "benchmarks": (["benchmarks/results_table.py", "results/benchmarks"], 0),
    "outside-scale": (["benchmarks/outside_scale.py", "--table", "results/outside_scale"], 0),
    "text-verdict": (["benchmarks/text_verdict.py", "results/text"], 0),
    "text": (["-m", "crlprompt.runners.compare", "--table", "results/text"], 1),
    "text-transfer": (["benchmarks/text_transfer.py", "--table", "results/text/transfer"], 0),
}
#: figures of the results pages: arguments of ``python -m crlprompt.runners.plots``
FIGURES: list[list[str]] = [
    ["floor", "results/floor/repro", "docs/results/img/few-shot-floor.png"],
    ["search", "results/floor/search", "docs/results/img/search"],
]
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def render(name: str) -> str:
    """What the block's table tool prints now, headings demoted to sit inside a README section."""
    args, demote = BLOCKS[name]
    args = [a for a in args if not a.startswith("results/") or (ROOT / a).exists()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if not [a for a in args if a.startswith("results/")] and any(a.startswith("results/") for a in BLOCKS[name][0]):
        return "No records yet.\n"
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode and "no records" in proc.stderr:
        return "No records yet.\n"
    if proc.returncode:
        raise SystemExit(f"block {name}: `python {' '.join(args)}` failed:\n{proc.stderr[-2000:]}")
    lines = [line for line in proc.stdout.strip().splitlines() if not line.startswith("wrote ")]
    return "\n".join("#" * demote + line if line.startswith("#") else line for line in lines) + "\n"


def update(text: str) -> str:
    names = [m["name"] for m in BLOCK.finditer(text)]
    unknown = sorted(set(names) - set(BLOCKS))
    if unknown:
        raise SystemExit(f"blocks {unknown} have no table tool in BLOCKS")
    return BLOCK.sub(lambda m: m.group(1) + render(m["name"]) + m.group(4), text)


def draw() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for args in FIGURES:
        if (ROOT / args[1]).exists():
            subprocess.run([sys.executable, "-m", "crlprompt.runners.plots", *args], cwd=ROOT, env=env, check=True,
                           capture_output=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = p.parse_args(argv)
    stale = []
    for page in pages():
        old = page.read_text()
        if not BLOCK.search(old):
            continue
        new = update(old)
        rel = page.relative_to(ROOT)
        if args.check:
            stale += [f"{rel}:{m['name']}" for m, n in zip(BLOCK.finditer(old), BLOCK.finditer(new)) if m["body"] != n["body"]]
        elif new != old:
            page.write_text(new)
            print(f"rewrote the generated blocks of {rel}")
    if args.check:
        print("tables match their records" if not stale else f"stale blocks: {', '.join(stale)}")
        return 1 if stale else 0
    draw()
    return 0


if __name__ == "__main__":
    sys.exit(main())
