"""Regenerate the README's result tables from the raw records under ``results/`` (never typed).

    python scripts/update_readme.py           # rewrite every generated block of README.md
    python scripts/update_readme.py --check   # exit 1 if a block differs from what its records give

A generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``; ``BLOCKS``
says which table tool prints it. Only those blocks change: the prose around them is the README's own.
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
}
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def render(name: str) -> str:
    """What the block's table tool prints now, headings demoted to sit inside a README section."""
    args, demote = BLOCKS[name]
    args = [a for a in args if not a.startswith("results/") or (ROOT / a).exists()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"block {name}: `python {' '.join(args)}` failed:\n{proc.stderr[-2000:]}")
    lines = [line for line in proc.stdout.strip().splitlines() if not line.startswith("wrote ")]
    return "\n".join("#" * demote + line if line.startswith("#") else line for line in lines) + "\n"


def update(text: str) -> str:
    names = [m["name"] for m in BLOCK.finditer(text)]
    unknown = sorted(set(names) - set(BLOCKS))
    if unknown:
        raise SystemExit(f"README blocks {unknown} have no table tool in BLOCKS")
    return BLOCK.sub(lambda m: m.group(1) + render(m["name"]) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = p.parse_args(argv)
    old = README.read_text()
    new = update(old)
    if args.check:
        stale = [m["name"] for m, n in zip(BLOCK.finditer(old), BLOCK.finditer(new)) if m["body"] != n["body"]]
        print("README tables match their records" if not stale else f"stale README blocks: {', '.join(stale)}")
        return 1 if stale else 0
    README.write_text(new)
    print(f"rewrote {len(BLOCKS)} kinds of block in {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
