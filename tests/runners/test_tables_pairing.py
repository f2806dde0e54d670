"""The table tool's pairing rules (crlprompt.runners.tables, crlprompt.runners.pairing): runs pair only
when their configs differ in nothing but the methods' own fields, and the no-prompt floor table."""

from __future__ import annotations

import json

from crlprompt.runners import tables
from crlprompt.runners.records import SCHEMA, migrate


def _config(method: str, **agent) -> dict:
    """A record's config as ``crl-prompt train`` writes it, with the method's switches applied."""
    probe = method == "probe"
    setup = {"task": "trec", "model": "minilm", "prompt": "shallow" if probe else "deep", "num_tokens": 0 if probe else 20,
             "head": "linear", "init": "random" if probe else "zero", "pooling": "mean", "seed": 0, "data_seed": 13,
             "data_dir": "../shared/data", "drl_fraction": 0.1, "max_train": None, "max_test": None, "max_length": 128,
             "k_shot": 16, "template": "paper", "prompt_encoder": "none"}  # fmt: skip
    on = {"crl": (0.3, 2e-5), "crl-rl": (0.0, 2e-5), "crl-contrast": (0.3, 0.0)}.get(method, (0.0, 0.0))
    base = {"lr": 0.01, "phase2_lr": None, "batch_size": 32, "phase1_epochs": 3.0, "phase2_epochs": 2.0,
            "beta": on[0], "gamma": on[1], "rl_interval": 100, "sigma": 0.1, "rl_samples": 1, "rl_estimator": "single",
            "contrast_mode": "paper", "tau": 0.1, "head_init": "probe"}  # fmt: skip
    return {"setup": setup, "agent": base | agent, "max_train": None, "max_test": None}


def _rec(method: str, acc: float, data_seed: int = 13, seed: int = 0, tag: str = "", **agent) -> dict:
    config = _config(method, **agent)
    config["setup"].update(seed=seed, data_seed=data_seed)
    return tables.normalize({"task": "trec", "model": "minilm", "method": method, "seed": seed, "data_seed": data_seed,
                             "k_shot": 16, "tag": tag, "test_acc": acc, "config": config})  # fmt: skip


def test_config_mismatch_ignores_only_what_the_methods_set():
    assert tables.config_mismatch(_rec("crl", 0.5), _rec("ptv2", 0.5)) == []  # β, γ: the methods' own
    # the RL term's settings act on nothing in a run with γ = 0; the floor trains nothing (no agent, no init)
    assert tables.config_mismatch(_rec("crl-rl", 0.5, rl_interval=10, rl_samples=8), _rec("ptv2", 0.5)) == []
    assert tables.config_mismatch(_rec("ptv2", 0.5, phase1_epochs=30.0), _rec("probe", 0.3)) == []
    assert tables.config_mismatch(_rec("crl", 0.5, data_seed=13), _rec("probe", 0.3, data_seed=13, seed=1)) == []
    # ... but two runs with the RL term on must agree on it, and the data must always agree
    assert tables.config_mismatch(_rec("crl", 0.5, rl_interval=10), _rec("crl-rl", 0.5)) == ["agent.rl_interval (10 vs 100)"]
    capped = _rec("probe", 0.3)
    capped["config"]["max_train"] = 100
    assert tables.config_mismatch(_rec("ptv2", 0.5), capped) == ["max_train (None vs 100)"]
    assert tables.config_mismatch(_rec("crl", 0.5, lr=1e-3, phase2_epochs=3.0), _rec("ptv2", 0.5)) == [
        "agent.lr (0.001 vs 0.01)", "agent.phase2_epochs (3.0 vs 2.0)"]
    # records without a config, or without its agent part, compare on what they hold
    bare = {"task": "trec", "model": "minilm", "method": "ptv2", "seed": 0}
    assert tables.config_mismatch(bare, _rec("crl", 0.5, phase2_epochs=3.0)) == []
    # a record from before head_init existed ran with a randomly initialised head: migration wrote it in
    old = _rec("ptv2", 0.5)
    del old["config"]["agent"]["head_init"]
    assert tables.config_mismatch(_rec("crl", 0.5), old) == []  # a field one record lacks is not compared
    old = migrate(old, "kshot.jsonl")
    assert tables.config_mismatch(_rec("crl", 0.5), old) == ["agent.head_init (probe vs keep)"]


def test_a_pair_whose_configs_differ_in_more_than_beta_gamma_is_refused():
    seeds = (13, 21, 42)
    legit = [_rec("ptv2", 0.50 + 0.01 * i, d) for i, d in enumerate(seeds)]
    legit += [_rec("crl", 0.52 + 0.01 * i, d) for i, d in enumerate(seeds)]
    text = tables.paired_table(legit, methods=("crl",))
    row = text.splitlines()[2]
    assert row.startswith("| TREC | minilm | 16 | CRL-Prompt | 3 |") and "+0.020" in row
    assert "Refused" not in text

    # as in results/rl_sweep: the variant ran 3 + 3 epochs, its Prompt v2 partner 3 + 2
    longer = [_rec("ptv2", 0.50 + 0.01 * i, d) for i, d in enumerate(seeds)]
    longer += [_rec("crl", 0.52 + 0.01 * i, d, phase2_epochs=3.0) for i, d in enumerate(seeds)]
    text = tables.paired_table(longer, methods=("crl",))
    assert "| CRL-Prompt |" not in text  # no row: every pair was refused
    assert ("Refused 3 pairs with Prompt v2 whose configs differ in agent.phase2_epochs (3.0 vs 2.0): "
            "TREC minilm 16 CRL-Prompt (3).") in text  # fmt: skip

    sweep = [_rec("ptv2", 0.9, d) for d in seeds]
    sweep += [_rec("crl-rl", 0.9, d, tag="g2e-1-N10-single", gamma=0.2, rl_interval=10, phase2_epochs=3.0) for d in seeds]
    sweep += [_rec("crl-rl", 0.9, d, tag="g2e-1-N10-ok", gamma=0.2, rl_interval=10) for d in seeds]
    text = tables.sweep_table(sweep)
    assert "g2e-1-N10-ok" in text.splitlines()[2] and len([line for line in text.splitlines() if "| TREC |" in line]) == 1
    assert "Refused 3 pairs with Prompt v2 whose configs differ in agent.phase2_epochs (3.0 vs 2.0): " \
           "TREC 16 g2e-1-N10-single (3)." in text  # fmt: skip


def _floor_records() -> list[dict]:
    """Floors at seed 0 (and, for data seed 42, also at seed 1), Prompt v2 at two seeds, the rest at seed 0."""
    recs = [_rec("probe", acc, d) for d, acc in ((13, 0.30), (21, 0.40), (42, 0.50))] + [_rec("probe", 0.60, 42, seed=1)]
    recs += [_rec("ptv2", acc, d, s) for d, accs in ((13, (0.42, 0.44)), (21, (0.50, 0.54)), (42, (0.61, 0.63)))
             for s, acc in enumerate(accs)]  # fmt: skip
    recs += [_rec("crl", acc, d) for d, acc in ((13, 0.25), (21, 0.35), (42, 0.44))]
    recs += [_rec("crl-rl", acc, d) for d, acc in ((13, 0.35), (21, 0.38), (42, 0.50))]
    return recs


def test_floor_table_pairs_each_run_with_the_floor_of_its_data_seed():
    rows = {line.split("|")[4].strip(): line for line in tables.floor_table(_floor_records()).splitlines()
            if line.startswith("| TREC")}  # fmt: skip
    # Prompt v2 − floor per data seed, in points: 13: (42 + 44)/2 − 30 = 13; 21: 52 − 40 = 12;
    # 42: seed 0 with the seed-0 floor, seed 1 with the seed-1 floor: (61 + 63)/2 − (50 + 60)/2 = 7.
    # mean 10.667, sd sqrt(10.333) = 3.2146, t(0.975, 2) = 4.3027: half-width 7.985
    assert "| Prompt v2 | 3 | 41.7 | 52.3 | +10.7 [+2.7, +18.7] | above the floor |" in rows["Prompt v2"]
    # CRL-Prompt: -5, -5, -6 -> mean -5.333, sd 0.5774, half-width 1.434
    assert "| CRL-Prompt | 3 | 40.0 | 34.7 | -5.3 [-6.8, -3.9] | under the floor |" in rows["CRL-Prompt"]
    # + RL: +5, -2, 0 -> mean 1.0, sd sqrt(13) = 3.606, half-width 8.957
    assert "| + RL | 3 | 40.0 | 41.0 | +1.0 [-8.0, +10.0] | not separated from the floor |" in rows["+ RL"]
    assert "No prompt" not in "".join(rows)  # the floor is never a row of its own


def test_paired_table_sets_each_row_against_the_floor():
    text = tables.paired_table(_floor_records(), methods=("crl", "crl-rl"))
    rows = {line.split("|")[4].strip(): line for line in text.splitlines() if line.startswith("| TREC")}
    assert set(rows) == {"CRL-Prompt", "+ RL"}  # the probe is no method row
    assert rows["CRL-Prompt"].rstrip().endswith("| 0.400 (3) | -0.053 [-0.068, -0.039] | under the floor |")
    assert rows["+ RL"].rstrip().endswith("| 0.400 (3) | +0.010 [-0.080, +0.100] | not separated from the floor |")
    assert "Prompt v2 vs the floor, TREC minilm 16: Δ +0.107 [+0.027, +0.187] over 3 data seeds, above the floor." in text


def test_report_shows_the_floor_in_table_1_only_where_it_has_records(tmp_path):
    recs = [dict(r, k_shot=None, schema=SCHEMA, kind="train") for r in _floor_records()]
    (tmp_path / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    text = tables.report([tmp_path])
    # floors 0.30, 0.40, 0.50, 0.60: mean 0.45, sample std sqrt(0.05 / 3) = 0.129
    assert "| No prompt + LR (floor) | 0.450 ± 0.129 |" in text.split("## Full data: Table 2")[0]
    (tmp_path / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs if r["method"] != "probe"))
    assert "No prompt" not in tables.report([tmp_path])


def test_a_protocol_of_prompt_v2_alone_is_a_floor_row_not_an_empty_paired_table():
    seeds = (13, 21)
    recs = [_rec("probe", 0.5, d) for d in seeds] + [_rec("ptv2", 0.6, d) for d in seeds]
    recs += [_rec("ptv2", 0.55, d, tag="head-c-floor", head_c=None) for d in seeds]
    text = "\n".join(tables.few_shot_sections(recs))
    assert "Prompt v2 (`head-c-floor`) | 2 | 50.0 | 55.0 | +5.0" in text
    assert "protocol `head-c-floor`" not in text
    recs += [_rec("crl", 0.58, d, tag="head-c-floor", head_c=None) for d in seeds]  # now there is a pair to show
    assert "protocol `head-c-floor`: paired differences" in "\n".join(tables.few_shot_sections(recs))
