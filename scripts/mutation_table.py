"""Mutation scores by package folder: configure a run, record its score, print or write the table.

``scripts/mutation.sh FOLDER`` calls the first two; the table is for ``docs/mutation.md``::

    python scripts/mutation_table.py tests crlprompt/losses                           # the tests that cover it
    python scripts/mutation_table.py configure crlprompt/losses WORK/pyproject.toml  # mutmut's settings there
    python scripts/mutation_table.py record crlprompt/losses WORK                     # append the score
    python scripts/mutation_table.py table                                            # print the table
    python scripts/mutation_table.py table --write docs/mutation.md                   # regenerate the page's table
    python scripts/mutation_table.py table --check docs/mutation.md                   # exit 1 if it is stale

The settings shared by every folder are ``[tool.mutmut]`` in ``pyproject.toml``; the fast tests
that cover each folder are ``[tool.crlprompt.mutation.tests]`` there. One record per finished run
is appended to ``docs/mutation-scores.jsonl`` (folder, date, commit, mutmut version, tests, counts
by mutmut status, score, the surviving mutants' names); the table shows each folder's latest.

Score = caught / checked, where caught = killed + timeout + segfault (the tests failed or hung),
and checked = caught + survived + suspicious + no tests (a mutant no selected test reaches counts
as not caught); mutants that were skipped or not run (an interrupted run) are left out and shown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crlprompt.atomic import append_line, atomic_write  # noqa: E402

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

SCORES = ROOT / "docs" / "mutation-scores.jsonl"
BEGIN, END = "<!-- mutation-table: begin (scripts/mutation_table.py) -->", "<!-- mutation-table: end -->"
CAUGHT = ("killed", "timeout", "segfault")
MISSED = ("survived", "suspicious", "no tests")


def settings(pyproject: Path = ROOT / "pyproject.toml") -> tuple[dict, dict[str, list[str]]]:
    """``([tool.mutmut], {folder: its tests})`` from ``pyproject``."""
    tool = tomllib.loads(pyproject.read_text())["tool"]
    return tool["mutmut"], tool["crlprompt"]["mutation"]["tests"]


def tests_of(folder: str) -> list[str]:
    folders = settings()[1]
    if folder not in folders:
        raise SystemExit(f"no mutation settings for {folder!r}; choose one of {', '.join(folders)}")
    return folders[folder]


def _toml(value) -> str:
    return json.dumps(value)  # a string or a list of strings: the same text in TOML


def configure(folder: str, pyproject: Path) -> None:
    """Rewrite ``[tool.mutmut]`` of the work copy's ``pyproject`` for ``folder``: mutate its files
    only, collect the tests that cover it."""
    base, _ = settings()
    mutmut = {**base, "only_mutate": [f"{folder}/*"], "pytest_add_cli_args_test_selection": tests_of(folder)}
    text = pyproject.read_text()
    start = text.index("[tool.mutmut]")
    end = text.find("\n[", start + 1)
    section = "[tool.mutmut]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in mutmut.items())
    atomic_write(pyproject, text[:start] + section + (text[end:] if end >= 0 else ""))


def record(folder: str, work: Path, commit: str, scores: Path = SCORES) -> dict:
    """Count the mutants of ``folder`` by status in ``work/mutants`` and append the record (the tests are
    the selection the work copy ran with)."""
    from importlib.metadata import version

    from mutmut.stats import status_by_exit_code

    counts: Counter = Counter()
    survivors = []
    for meta in sorted((work / "mutants" / folder).rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status = status_by_exit_code[code]
            counts[status] += 1
            if status == "survived":
                survivors.append(name)
    if not counts:
        raise SystemExit(f"no mutmut results for {folder} under {work}/mutants; run scripts/mutation.sh {folder}")
    caught = sum(counts[s] for s in CAUGHT)
    checked = caught + sum(counts[s] for s in MISSED)
    rec = {
        "folder": folder, "date": dt.date.today().isoformat(), "commit": commit, "mutmut": version("mutmut"),
        "tests": settings(work / "pyproject.toml")[0]["pytest_add_cli_args_test_selection"], "counts": dict(sorted(counts.items())), "caught": caught, "checked": checked,
        "score": round(caught / checked, 4) if checked else None, "survived_mutants": survivors,
    }  # fmt: skip
    append_line(scores, json.dumps(rec))
    return rec


def latest(path: Path = SCORES) -> dict[str, dict]:
    """Each folder's latest record (a torn line is skipped)."""
    out: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[rec["folder"]] = rec
    return out


def table(records: dict[str, dict]) -> str:
    folders = list(settings()[1])
    head = ("| folder | score | caught / checked | survived | no tests | not run | date | commit | tests |\n"
            "|---|---|---|---|---|---|---|---|---|\n")  # fmt: skip
    rows = []
    for folder in folders:
        rec = records.get(folder)
        if rec is None:
            rows.append(f"| `{folder}` | not measured | – | – | – | – | – | – | {', '.join(tests_of(folder))} |")
            continue
        c = rec["counts"]
        score = "–" if rec["score"] is None else f"{100 * rec['score']:.1f}%"
        rows.append(f"| `{folder}` | {score} | {rec['caught']} / {rec['checked']} | {c.get('survived', 0)} | "
                    f"{c.get('no tests', 0)} | {c.get('not checked', 0) + c.get('check was interrupted by user', 0)} | "
                    f"{rec['date']} | `{rec['commit'][:10]}` | {', '.join(rec['tests'])} |")  # fmt: skip
    return head + "\n".join(rows) + "\n" + survivors(records, folders)


def survivors(records: dict[str, dict], folders: list[str]) -> str:
    """Where each measured folder's surviving mutants are: counts by file and function, most first."""
    out = []
    for folder in folders:
        rec = records.get(folder)
        if not rec or not rec.get("survived_mutants"):
            continue
        by: dict[tuple[str, str], int] = {}
        for name in rec["survived_mutants"]:  # crlprompt.losses.race.x_race__mutmut_3, ...xǁClassǁmethod__mutmut_9
            module, _, func = name.rpartition("__mutmut_")[0].rpartition(".")
            func = func.removeprefix("x_").removeprefix("x\u01c1").replace("\u01c1", ".")
            key = (module.rsplit(".", 1)[-1] + ".py", func)
            by[key] = by.get(key, 0) + 1
        cells = ", ".join(f"`{f}` {fn} {n}" for (f, fn), n in sorted(by.items(), key=lambda kv: (-kv[1], kv[0])))
        out.append(f"- `{folder}` survivors by file and function: {cells}.")
    return ("\n" + "\n".join(out) + "\n") if out else ""


def page_with_table(page: str, text: str) -> str:
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    return page[:start] + "\n" + text + page[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("configure", help="write a folder's [tool.mutmut] into a work copy's pyproject.toml")
    p.add_argument("folder")
    p.add_argument("pyproject", type=Path)
    p = sub.add_parser("tests", help="print the test selection of a folder (an unknown folder is an error)")
    p.add_argument("folder")
    p = sub.add_parser("record", help="append the score of a finished run")
    p.add_argument("folder")
    p.add_argument("work", type=Path)
    p.add_argument("--commit", required=True)
    p.add_argument("--scores", type=Path, default=SCORES, help="the records file (default: %(default)s)")
    p = sub.add_parser("table", help="print the table of each folder's latest score")
    p.add_argument("--write", type=Path, help="replace the table between the markers of this page")
    p.add_argument("--check", type=Path, help="exit 1 if this page's table differs from the records")
    p.add_argument("--scores", type=Path, default=SCORES, help="the records file (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.cmd == "configure":
        configure(args.folder, args.pyproject)
    elif args.cmd == "tests":
        print(" ".join(tests_of(args.folder)))
    elif args.cmd == "record":
        rec = record(args.folder, args.work, args.commit, args.scores)
        print(f"{rec['folder']}: {rec['caught']} of {rec['checked']} mutants caught ({rec['score']}); counts {rec['counts']}")
    else:
        text = table(latest(args.scores))
        if args.write or args.check:
            page = (args.write or args.check).read_text()
            new = page_with_table(page, text)
            if args.check:
                if new != page:
                    print(f"{args.check} is stale: run python scripts/mutation_table.py table --write {args.check}")
                    return 1
                return 0
            atomic_write(args.write, new)
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
