"""The benchmark results page from the benchmarks' JSON records (``results/benchmarks/*.jsonl``).

Every script in this folder appends one record per run (:meth:`_common.Report.finish`): its title,
command, date, wall time, machine, how loaded the machine was, and the parts it printed (tables
as header + rows, notes as text). This tool prints them as the Markdown blocks of
``benchmarks/RESULTS.md``, newest first per benchmark; ``python scripts/update_readme.py``
writes them there (``--check`` in CI compares).

    python benchmarks/results_table.py results/benchmarks
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def table(header: list, rows: list[list]) -> str:
    out = ["| " + " | ".join(str(c) for c in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def parse_part(text: str) -> dict:
    """A part as a record holds it: ``{"table": {"header", "rows"}}`` for a Markdown table (cells as
    printed), else ``{"text": ...}``."""
    lines = text.strip().splitlines()
    is_table = len(lines) >= 2 and all(ln.startswith("|") for ln in lines) and set(lines[1]) <= set("|-: ")
    if not is_table:
        return {"text": text.strip()}
    cells = [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in lines]
    return {"table": {"header": cells[0], "rows": cells[2:]}}


def render_part(part: dict) -> str:
    return table(part["table"]["header"], part["table"]["rows"]) if "table" in part else part["text"]


def block(rec: dict) -> str:
    quick = " [--quick: smoke-test settings, not a measurement]" if rec.get("quick") else ""
    machine = rec["machine"].get("line") or rec.get("machine_line", "")
    lines = [f"### {rec['title']}{quick}", "",
             f"- date: {rec['date']}; wall time of the script {rec['wall_s']:.0f} s",
             f"- command: `{rec['command']}`", f"- machine: {machine}", f"- {rec['load_note']}"]  # fmt: skip
    lines += [f"- note (added by hand to the Markdown block): {n}" for n in rec.get("notes_by_hand", [])]
    commit = (rec.get("versions") or {}).get("commit") or (rec.get("migrated_from") or {}).get("added_in")
    if commit:
        lines[-1:-1] = [f"- commit: {commit[:10]}" + (" (the commit that added the block)" if rec.get("migrated_from") else "")]
    return "\n".join(lines + [""] + [render_part(p) + "\n" for p in rec["parts"]]).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    from crlprompt.runners.records import read_records

    args = sys.argv[1:] if argv is None else argv
    src = Path(args[0]) if args else ROOT / "results" / "benchmarks"
    files = sorted(src.glob("*.jsonl")) if src.is_dir() else [src]
    recs = [r for f in files for r in read_records(f, "benchmark")]
    if not recs:
        print(f"no records under {src}", file=sys.stderr)
        return 1
    by_bench: dict[str, list[dict]] = {}
    for r in recs:
        by_bench.setdefault(r["benchmark"], []).append(r)
    out = ["| benchmark | runs | latest | latest command |", "|---|---|---|---|"]
    for name, rs in sorted(by_bench.items()):
        rs.sort(key=lambda r: r["date"], reverse=True)
        out.append(f"| [`{name}.py`](#{name}) | {len(rs)} | {rs[0]['date']} | `{rs[0]['command']}` |")
    for name, rs in sorted(by_bench.items()):
        out += ["", f"## {name}", "", *[block(r) for r in rs]]
    print("\n".join(out).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
