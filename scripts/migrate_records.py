"""Convert every results record written before records were versioned into the current schema, in place.

    python scripts/migrate_records.py                 # every results/**/*.jsonl
    python scripts/migrate_records.py results/repro   # the files under some directories (or single files)
    python scripts/migrate_records.py --dry-run       # only count what would change

Each file is rewritten atomically (a temporary file renamed over it) and only where a record changes;
a record already of the current schema passes through as it is, so a second run changes nothing. What
migration writes into a record is described in :mod:`crlprompt.runners.records`. Prints the counts of
each file: records, migrated, already current, torn lines kept as they were, records by kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from crlprompt.errors import CRLPromptError
    from crlprompt.runners.records import SCHEMA, migrate_file

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", type=Path, default=[ROOT / "results"], help="files or directories")
    p.add_argument("--dry-run", action="store_true", help="count only; write nothing")
    args = p.parse_args(argv)
    files = sorted({f for path in args.paths for f in (path.rglob("*.jsonl") if path.is_dir() else [path])})
    if not files:
        print(f"no *.jsonl under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    total = {"records": 0, "migrated": 0}
    for f in files:
        try:
            counts = migrate_file(f, write=not args.dry_run)
        except (CRLPromptError, OSError) as e:
            print(f"{f}: error: {e}", file=sys.stderr)
            return 2
        for k in total:
            total[k] += counts.get(k, 0)
        rest = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k not in total)
        print(f"{f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}: {counts.get('records', 0)} records, "
              f"{counts.get('migrated', 0)} migrated; {rest}")  # fmt: skip
    verb = "would migrate" if args.dry_run else "migrated"
    print(f"{len(files)} files, {total['records']} records: {verb} {total['migrated']} to schema {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
