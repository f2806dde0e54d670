"""Results records (crlprompt.runners.records): one writer that stamps the schema, versions and machine,
a reader that refuses unversioned records, and the one migration of the records written before them."""

from __future__ import annotations

import copy
import json

import pytest

from crlprompt.errors import ConfigError
from crlprompt.runners import records, tables
from crlprompt.runners.records import SCHEMA, append_record, migrate, migrate_file, read_records, stamp

VERSIONS = {"crlprompt": "0.1.0", "torch": "2.13.0+cpu", "commit": "c" * 40}


def flat_train() -> dict:
    """A training record of the first grids: no config at all, today's ``ptv1`` meaning shallow prompt tuning."""
    return {"task": "trec", "model": "minilm", "method": "ptv1", "seed": 0, "test_acc": 0.9, "versions": VERSIONS}


def grid_train(method: str = "ptv2", model: str = "smollm2", beta: float = 0.0) -> dict:
    """A record of the H100 grid: an agent config but no stored setup."""
    return {"task": "agnews", "model": model, "method": method, "seed": 1, "test_acc": 0.88, "versions": VERSIONS,
            "config": {"max_train": 5000, "max_test": None, "agent": {"lr": 0.01, "beta": beta, "gamma": 0.0}}}  # fmt: skip


def kshot_train() -> dict:
    """A few-shot record with its setup, from before pooling, head_init and the resolved init were stored."""
    setup = {"task": "trec", "model": "minilm", "prompt": "deep", "num_tokens": 20, "head": "linear", "init": "auto",
             "seed": 0, "data_seed": 13, "k_shot": 16}  # fmt: skip
    agent = {"lr": 0.01, "beta": 0.3, "gamma": 2e-5, "contrast_mode": "paper"}
    return {"task": "trec", "model": "minilm", "method": "crl", "seed": 0, "data_seed": 13, "k_shot": 16, "tag": "",
            "test_acc": 0.5, "versions": VERSIONS, "config": {"setup": setup, "agent": agent}}  # fmt: skip


def test_a_flat_train_record_gets_a_config_and_todays_method_name():
    old = flat_train()
    new = migrate(old, "results/paper_grid.jsonl")
    assert old == flat_train()  # pure
    assert new["schema"] == SCHEMA and new["kind"] == "train" and new["method"] == "prompt-tuning"
    assert new["config"]["setup"] == {"prompt": "shallow", "init": "random", "pooling": "legacy", "label_tokens": "first"}
    assert new["config"]["agent"] == {"rl_first_step": 1, "head_init": "keep"}
    meta = new["migrated_from"]
    assert meta["file"] == "paper_grid.jsonl" and meta["values"] == {"method": "ptv1"} and "config" in meta["added"]
    assert new["versions"] == VERSIONS and "machine" not in new  # nothing is invented about where it ran
    assert migrate(dict(old, method="handcraft"), "x.jsonl")["method"] == "handcraft-cloze"


def test_the_token_init_file_gives_its_records_the_token_init():
    new = migrate(grid_train(), "results/smollm2_ptv2_token_init_h100.jsonl")
    assert new["config"]["setup"]["init"] == "tokens" and new["config"]["setup"]["prompt"] == "deep"
    assert migrate(grid_train(), "results/paper_grid_h100.jsonl")["config"]["setup"]["init"] == "random"
    # the rule is the migration's: once written, the record reads the same under any file name
    assert tables.normalize(new)["current"] and not tables.normalize(migrate(grid_train(), "paper_grid_h100.jsonl"))["current"]


def test_fields_a_record_predates_are_written_in():
    new = migrate(kshot_train(), "kshot.jsonl")
    assert new["config"]["setup"]["pooling"] == "legacy" and new["config"]["agent"]["head_init"] == "keep"
    assert new["config"]["setup"]["init"] == "random"  # 'auto' on an encoder before the zero init existed
    assert new["migrated_from"]["values"] == {"config.setup.init": "auto"}
    assert new["config"]["agent"]["contrast_mode"] == "paper" and new["method"] == "crl"  # a stored setup: names kept
    assert "rl_first_step" not in new["config"]["agent"]  # it stores its setup: today's RL schedule
    old_crl = migrate(grid_train("crl", beta=0.3), "paper_grid_h100.jsonl")
    assert old_crl["config"]["agent"]["contrast_mode"] == "noise"
    assert "contrast_mode" not in migrate(grid_train(), "paper_grid_h100.jsonl")["config"]["agent"]  # β = 0


def test_the_main_job_record_gets_its_machine_from_its_command():
    rec = dict(kshot_train(), command="crl-prompt --threads 1 train --task trec", device="cpu", cpus=2)
    assert migrate(rec, "trec-minilm-crl-s0.jsonl")["machine"] == {"device": "cpu", "cpus": 2, "torch_threads": 1}
    assert "machine" not in migrate(kshot_train(), "kshot.jsonl")


@pytest.mark.parametrize(("rec", "name", "kind"), [
    ({"env_id": "CRLPrompt/SST2-MiniLM-16Shot-v0", "algo": "cma", "seed": 0, "data_seed": 13}, "results.jsonl", "search"),
    ({"env_id": "CRLPrompt/SST2-MiniLM-16Shot-v0", "algo": "floor", "seed": 0, "data_seed": 13}, "baselines.jsonl",
     "baseline"),
    ({"what": "eval_cost", "model": "minilm", "seconds_per_eval": 0.1}, "measure.jsonl", "benchmark"),
    ({"part": "a-real", "env_id": "CRLPrompt/TREC-MiniLM-16Shot-v0", "algo": "es", "seed": 0}, "search.jsonl", "benchmark"),
    ({"part": "c", "task": "trec", "model": "minilm", "seed": 0, "config": {"lr": 0.01}}, "crl.jsonl", "benchmark"),
])  # fmt: skip
def test_other_records_get_their_kind_and_nothing_else(rec, name, kind):
    new = migrate(rec, name)
    assert new["kind"] == kind and {k: v for k, v in new.items() if k not in ("schema", "kind", "migrated_from")} == rec
    assert new["migrated_from"] == {"schema": None, "file": name}


def test_a_record_of_no_known_shape_is_refused():
    with pytest.raises(ConfigError, match="none of"):
        migrate({"accuracy": 0.5}, "odd.jsonl")


def test_migration_is_idempotent_and_keeps_everything(tmp_path):
    recs = [flat_train(), grid_train("crl", beta=0.3), kshot_train()]
    path = tmp_path / "smollm2_ptv2_token_init_h100.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"task": "tr')  # a torn last line
    counts = migrate_file(path)
    assert counts == {"records": 3, "migrated": 3, "kind train": 3, "torn": 1}
    once = path.read_text()
    assert once.endswith('{"task": "tr\n')  # the torn line is kept as it was (readers skip it)
    for rec in read_records(path):
        assert migrate(rec, path.name) is rec  # a record of this schema passes through
    assert migrate_file(path) == {"records": 3, "current": 3, "kind train": 3, "torn": 1} and path.read_text() == once
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    # nothing the old records held is lost: undo what migrated_from lists and get them back
    for old, new in zip(recs, read_records(path)):
        new = copy.deepcopy(new)
        meta = new.pop("migrated_from")
        del new["schema"], new["kind"]
        for dotted in sorted(meta.get("added", []), key=len, reverse=True):
            *parents, last = dotted.split(".")
            node = new
            for p in parents:
                node = node.get(p, {})
            node.pop(last, None)
        for dotted, value in meta.get("values", {}).items():
            *parents, last = dotted.split(".")
            node = new
            for p in parents:
                node = node[p]
            node[last] = value
        assert new == old


def test_read_records_refuses_unversioned_and_foreign_records(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(flat_train()) + "\n")
    with pytest.raises(ConfigError, match="scripts/migrate_records.py"):
        read_records(path)
    with pytest.raises(ConfigError, match="scripts/migrate_records.py"):
        tables.collect([tmp_path])  # the table tool reads through it
    path.write_text(json.dumps(dict(flat_train(), schema=SCHEMA + 1, kind="train")) + "\n")
    with pytest.raises(ConfigError, match=f"schema {SCHEMA + 1}"):
        read_records(path)
    assert read_records(tmp_path / "absent.jsonl") == []


def test_append_record_stamps_schema_versions_and_machine(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"schema": 1, "kind": "train", "task": "tr')  # torn by an interrupted write
    written = append_record(path, {"task": "trec", "model": "minilm", "method": "ptv2", "seed": 0}, kind="train",
                            device="cpu")  # fmt: skip
    (rec,) = read_records(path)
    assert rec == written and rec["schema"] == SCHEMA and rec["kind"] == "train"
    assert rec["versions"]["commit"] and rec["versions"]["torch"] and rec["versions"]["python"]
    m = rec["machine"]
    assert m["device"] == "cpu" and m["torch_threads"] >= 1 and m["cpus"] >= 1 and m["usable_cpus"] >= 1 and m["cpu"]
    assert list(rec)[:2] == ["schema", "kind"]
    # a record that has a schema already keeps its own versions and machine (it was made elsewhere)
    migrated = migrate(grid_train(), "paper_grid_h100.jsonl")
    assert stamp(migrated, kind="train") is migrated and "machine" not in migrated
    assert stamp({"versions": VERSIONS}, kind="benchmark")["versions"] == VERSIONS  # a writer's own stamp kept
    with pytest.raises(ValueError, match="kind"):
        stamp({}, kind="results")
    with pytest.raises(ValueError, match="cannot be written"):
        stamp(migrated, kind="baseline")
    assert read_records(path, kind="search") == []


def test_normalize_reads_the_record_not_its_file_name(tmp_path):
    """The same migrated record gives the same table row whatever file it sits in."""
    rec = migrate(grid_train(), "smollm2_ptv2_token_init_h100.jsonl")
    for name in ("smollm2_ptv2_token_init_h100.jsonl", "elsewhere.jsonl"):
        (tmp_path / name).write_text(json.dumps(rec) + "\n")
    a, b = tables.collect([tmp_path])
    assert a == b and a["init"] == "tokens" and a["current"]
    assert "source" not in tables.normalize.__code__.co_varnames
    assert not any(name.startswith("LEGACY") for name in vars(tables))
    from crlprompt.runners import pairing

    assert not any(name.startswith("LEGACY") for name in vars(pairing))
    assert records.TOKEN_INIT_FILES  # the one place a file name still means something: the migration


def test_a_current_record_from_before_head_c_gets_the_floors_c_written_in(tmp_path):
    """Schema-1 records whose probe head took the floor's C on D_RL (before head_c) say so once migrated;
    records that hold head_c, or whose head is not a probe, pass through as they are."""
    rec = stamp(kshot_train(), kind="train")
    rec["config"]["agent"]["head_init"] = "probe"
    rec["config"]["setup"]["label_tokens"] = "mean"
    new = migrate(rec, "kshot.jsonl")
    assert new["config"]["agent"]["head_c"] is None and new["migrated_from"]["added"] == ["config.agent.head_c"]
    assert "head_c" not in rec["config"]["agent"]  # pure
    assert migrate(new, "kshot.jsonl") is new
    keep = copy.deepcopy(rec)
    keep["config"]["agent"]["head_init"] = "keep"
    assert migrate(keep, "kshot.jsonl") is keep
    path = tmp_path / "kshot.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    assert migrate_file(path)["migrated"] == 1 and read_records(path)[0]["config"]["agent"]["head_c"] is None
    assert migrate_file(path)["current"] == 1
    # paired with a run of today's head (C = 0.1), the difference is named
    today = copy.deepcopy(new)
    today["config"]["agent"]["head_c"] = 0.1
    assert tables.config_mismatch(today, new) == ["agent.head_c (0.1 vs None)"]


def test_a_current_record_from_before_label_tokens_gets_first_written_in():
    """Schema-1 train records from before ``label_tokens`` scored a several-token verbalizer word by its
    first sub-token; migrated, they say so, and a pair across the two rules is refused only when both
    runs read the verbalizer."""
    rec = stamp(kshot_train(), kind="train")
    rec["config"]["setup"].pop("label_tokens", None)
    new = migrate(rec, "kshot.jsonl")
    assert new["config"]["setup"]["label_tokens"] == "first"
    assert "config.setup.label_tokens" in new["migrated_from"]["added"]
    today = copy.deepcopy(new)
    today["config"]["setup"]["label_tokens"] = "mean"
    assert tables.config_mismatch(today, new) == []  # a linear head reads no label word
    for r in (today, new):
        r["config"]["setup"]["head"] = "verbalizer"
    assert tables.config_mismatch(today, new) == ["setup.label_tokens (mean vs first)"]


def test_a_stored_setup_from_before_label_tokens_keeps_the_first_sub_token():
    from crlprompt.build import SetupConfig

    assert SetupConfig.from_stored({"task": "trec", "model": "smollm2"}).label_tokens == "first"
    assert SetupConfig.from_stored({"task": "trec", "model": "smollm2", "label_tokens": "mean"}).label_tokens == "mean"
    assert SetupConfig().label_tokens == "mean"
    with pytest.raises(ConfigError, match="label_tokens must be one of"):
        SetupConfig(label_tokens="max")


def schema_1_search() -> dict:
    """A compare run and an outside-scale measurement as schema 1 wrote them: the D_RL split named ``rl``."""
    return {"schema": 1, "kind": "search", "env_id": "E", "algo": "cma", "seed": 0, "data_seed": 13,
            "best_rl_acc": 0.5, "final_rl_acc": 0.25, "selected_rl_acc": 0.5, "center_rl_acc": 0.125,
            "selected_test_acc": 0.4, "start": {"rl": {"accuracy": 0.125, "split": "rl"}, "test": {"accuracy": 0.3}},
            "config": {"setup": {"rl_fraction": 0.2, "label_tokens": "mean"}, "agent": {"rl_interval": 4}},
            "phase2_lr_grid": [{"rl_acc": 0.5}, {"rl_acc": 0.75}], "rl_records": [{"seconds": 1.0}]}  # fmt: skip


def test_schema_1_records_take_the_drl_names_and_keep_their_values(tmp_path):
    old = schema_1_search()
    new = migrate(old, "results.jsonl")
    assert old == schema_1_search() and new["schema"] == SCHEMA == 2  # pure
    assert (new["best_drl_acc"], new["final_drl_acc"], new["selected_drl_acc"], new["center_drl_acc"]) == (0.5, 0.25, 0.5, 0.125)
    assert new["start"] == {"drl": {"accuracy": 0.125, "split": "drl"}, "test": {"accuracy": 0.3}}
    assert new["config"]["setup"] == {"drl_fraction": 0.2, "label_tokens": "mean"}
    assert [g["drl_acc"] for g in new["phase2_lr_grid"]] == [0.5, 0.75]
    # the RL term keeps its name: rl_interval, rl_records
    assert new["config"]["agent"] == {"rl_interval": 4} and new["rl_records"] == [{"seconds": 1.0}]
    body = {k: v for k, v in new.items() if k != "migrated_from"}  # which lists the old names
    assert not [k for k in json.dumps(body).split('"') if k in records.RENAMED_FIELDS]
    meta = new["migrated_from"]
    assert meta["schema"] == 1 and "phase2_lr_grid[].rl_acc" in meta["renamed"] and "start.rl.split" in meta["renamed"]
    assert len(meta["renamed"]) == len(set(meta["renamed"]))  # a list item's path once
    assert migrate(new, "results.jsonl") is new  # once migrated, it stays
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(old) + "\n")
    with pytest.raises(ConfigError, match="schema 1; this code reads schema 2: run `python scripts/migrate_records.py`"):
        read_records(path)
    assert migrate_file(path)["migrated"] == 1 and read_records(path) == [new]


def test_a_record_with_both_names_is_refused():
    with pytest.raises(ConfigError, match="both selected_rl_acc and its schema-2 name selected_drl_acc"):
        migrate(dict(schema_1_search(), selected_drl_acc=0.5))


def test_the_results_under_results_are_all_of_this_schema():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "results"
    files = sorted(root.rglob("*.jsonl"))
    assert len(files) > 20
    for f in files:
        assert {r["schema"] for r in read_records(f)} == {SCHEMA}, f
