"""Convert the Markdown blocks the benchmark scripts used to append to ``benchmarks/RESULTS.md`` into
records under ``results/benchmarks/<script>.jsonl`` (run once; kept to show how those records came to be).

Each block becomes one ``benchmark`` record holding what the block printed: title, date, command,
wall time, the machine line, the load note, and its parts (tables as header + rows). Nothing is
recomputed: the values are the block's. The record's ``versions`` are those the machine line names
(no commit was printed); ``migrated_from.added_in`` is the commit that added the block to the file.
The hand-typed summary at the top of the file is not a measurement and is not converted.

    python scripts/migrate_benchmark_results.py benchmarks/RESULTS.md
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from results_table import parse_part  # noqa: E402

from crlprompt.runners.records import SCHEMA, append_record  # noqa: E402


def added_in(path: Path, line: str) -> str | None:
    out = subprocess.run(["git", "log", "--format=%H", "--reverse", "-S", line, "--", str(path)], cwd=ROOT,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return out[0] if out else None


def blocks(path: Path) -> list[dict]:
    text = path.read_text()
    recs = []
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        head, _, body = chunk.partition("\n")
        if head.startswith("Summary"):
            continue
        title, quick = head.replace(" [--quick: smoke-test settings, not a measurement]", ""), "[--quick" in head
        meta, parts, para = {}, [], []
        for ln in body.strip().splitlines():
            m = re.match(r"- (date|command|machine): (.*)", ln)
            if m and not parts and not para:
                meta[m[1]] = m[2]
            elif ln.startswith("- load average") and not parts and not para:
                meta["load"] = ln[2:]
            elif ln.startswith("- note (added by hand): ") and not parts and not para:
                meta.setdefault("notes", []).append(ln.removeprefix("- note (added by hand): "))
            elif not ln.strip():
                if para:
                    parts.append(parse_part("\n".join(para)))
                    para = []
            else:
                para.append(ln)
        if para:
            parts.append(parse_part("\n".join(para)))
        date, _, wall = meta["date"].partition("; wall time of the script ")
        v = dict(re.findall(r"(Python|torch|transformers|peft) ([^,\s]+)", meta["machine"]))
        cmd = meta["command"].strip("`")
        recs.append({
            "schema": SCHEMA, "kind": "benchmark", "benchmark": Path(cmd.split()[1]).stem, "title": title, "quick": quick,
            "date": date, "wall_s": float(wall.split()[0]), "command": cmd, "load_note": meta["load"], "parts": parts,
            "notes_by_hand": meta.get("notes", []),
            "versions": {"python": v.get("Python"), "torch": v.get("torch"), "transformers": v.get("transformers"),
                         "peft": v.get("peft"), "commit": None},
            "machine": {"line": meta["machine"]},
            "migrated_from": {"file": str(path.relative_to(ROOT)), "added_in": added_in(path, meta["date"])},
        })  # fmt: skip
    return recs


def main() -> int:
    src = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "benchmarks" / "RESULTS.md"
    out = ROOT / "results" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    for rec in blocks(src):
        append_record(out / f"{rec['benchmark']}.jsonl", rec, kind="benchmark")
        print(json.dumps({k: rec[k] for k in ("benchmark", "date", "title")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
