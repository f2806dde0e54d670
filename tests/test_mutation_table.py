"""scripts/mutation_table.py: the generated score table of docs/mutation.md and where the survivors are."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("mutation_table", ROOT / "scripts" / "mutation_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_survivors_are_counted_by_file_and_function_most_first():
    mt = load()
    rec = {"survived_mutants": [
        "crlprompt.losses.race.x_race__mutmut_3", "crlprompt.losses.race.x_race__mutmut_9",
        "crlprompt.losses.offpolicy.x\u01c1ReplayRLTerm\u01c1__call____mutmut_14", "crlprompt.losses.rl.x_reinforce_loss__mutmut_5",
    ]}  # fmt: skip
    line = mt.survivors({"crlprompt/losses": rec, "crlprompt/envs": {"survived_mutants": []}},
                        ["crlprompt/losses", "crlprompt/envs", "crlprompt/agents"])  # fmt: skip
    assert line == ("\n- `crlprompt/losses` survivors by file and function: `race.py` race 2, "
                    "`offpolicy.py` ReplayRLTerm.__call__ 1, `rl.py` reinforce_loss 1.\n")  # fmt: skip
    assert mt.survivors({}, ["crlprompt/losses"]) == ""


def test_the_page_table_matches_the_records():
    mt = load()
    page = (ROOT / "docs" / "mutation.md").read_text()
    assert mt.page_with_table(page, mt.table(mt.latest())) == page, "run: python scripts/mutation_table.py table --write docs/mutation.md"
