"""Results records: one writer, one versioned schema, one migration of what was written before it.

Every record a runner keeps (a JSON line under ``results/``, a run's final line in ``metrics.jsonl``) is
written by :func:`append_record`, which stamps it (:func:`stamp`) with

* ``schema``: :data:`SCHEMA`, the version of this layout;
* ``kind``: ``train`` (a training run: ``crl-prompt train``, ``reproduce``, ``PromptClassifier``),
  ``search`` (one algorithm run of ``compare``), ``baseline`` (a row of ``compare``'s ``baselines.jsonl``:
  a floor, the start prompt, a gradient run), ``benchmark`` (a measurement of a benchmark script);
* ``versions``: the package versions, Python and the commit the process started from
  (:func:`~.common.versions`);
* ``machine``: device (GPU, CUDA), CPU model and counts, torch threads, platform (:func:`~.common.machine`).

A ``train`` record also holds its full config: ``config.setup`` (the resolved ``SetupConfig``),
``config.agent`` (the ``CRLConfig`` the method ran with) and, from a grid, the caps ``config.max_train`` /
``config.max_test``. Readers compare these fields, never file names (:mod:`.pairing`).

:func:`read_records` refuses a record without ``schema``. Records written before it existed are converted
once, in place, by ``python scripts/migrate_records.py`` (:func:`migrate`), which writes down as explicit
fields what the tables used to infer from a record's file name or from the fields it lacks:

* a ``train`` record that stores no setup (written before ``SetupConfig`` was stored in records) is named
  in today's methods (its ``ptv1`` was shallow prompt tuning, now ``prompt-tuning``; its ``handcraft`` used
  the cloze templates, now ``handcraft-cloze``) and gets ``config.setup.prompt`` (its method's prompt kind),
  ``config.setup.init`` (``tokens`` for the files of :data:`TOKEN_INIT_FILES`; otherwise ``random``, the
  N(0, 1) draw of that code) and ``config.agent.rl_first_step = 1`` (its first RL update came at phase-2
  step 1; today's agent makes it at step N, ``rl_interval``);
* a setup whose ``init`` is ``auto`` (records from before the resolved init was stored, and before the zero
  init existed) gets what it was built with: ``tokens`` for a decoder's deep prefix, else ``random``;
* a setup without ``pooling`` gets ``legacy`` (the rule of the runs from before the option);
* a setup without ``label_tokens`` gets ``first`` (a verbalizer word scored by its first sub-token, the
  rule before the option; it also applies to records of the current schema, :data:`ADDED_FIELDS`);
* an agent without ``head_init`` gets ``keep`` (a randomly initialised head, before the option);
* an agent whose ``head_init`` is ``probe`` and that has no ``head_c`` gets None (its start head took the
  floor's C, chosen on D_RL, before the option). This one also applies to records of the current schema
  (:data:`ADDED_FIELDS`): the migration fills it in, in place, and says so under ``migrated_from.added``;
* an agent with β > 0 and no ``contrast_mode`` gets ``noise`` (the contrastive form of that code);
* the fields that named the D_RL split ``rl`` (schema 1) take the names of schema 2, where ``rl`` names the
  RL term only (:data:`RENAMED_FIELDS`: ``rl_acc`` → ``drl_acc``, ``selected_rl_acc`` → ``selected_drl_acc``,
  ``n_rl`` → ``n_drl``, ``config.setup.rl_fraction`` → ``drl_fraction``..., and a benchmark's per-split
  scores ``start.rl`` / ``found.rl`` → ``drl``, and a ``split`` or ``reward_split`` of ``"rl"`` → ``"drl"``), at
  any depth; no other value changes;
* a record without ``machine`` that names ``--threads`` in its ``command`` gets a ``machine`` from its
  ``device``, ``cpus`` and that thread count.

Each migrated record says so under ``migrated_from``: the schema it was read as, the file it was read from,
the values migration replaced (by dotted path), the fields it added and the ones it renamed; nothing a
record held is dropped.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..errors import ConfigError
from .common import append_jsonl, jsonable, load_results, machine, versions
from .config import METHODS

SCHEMA = 2
#: schema 1's names of the fields about the D_RL split (``rl`` also named the RL term): schema 2's names
RENAMED_FIELDS = {
    "rl_acc": "drl_acc", "rl_loss": "drl_loss", "n_rl": "n_drl", "best_rl_acc": "best_drl_acc",
    "final_rl_acc": "final_drl_acc", "selected_rl_acc": "selected_drl_acc", "center_rl_acc": "center_drl_acc",
    "phase1_rl_acc": "phase1_drl_acc", "rl_rows": "drl_rows", "rl_fraction": "drl_fraction", "max_rl": "max_drl",
}  # fmt: skip
#: dicts keyed by split name (a benchmark's ``start`` / ``found`` scores): their ``rl`` key is ``drl``
SPLIT_KEYED = ("start", "found")
#: config fields added to schema-1 records after they were first written; :func:`migrate` fills them in
ADDED_FIELDS = ("config.agent.head_c", "config.setup.label_tokens")
KINDS = ("train", "search", "baseline", "benchmark")
MIGRATE = "python scripts/migrate_records.py"

#: methods of records that store no setup, in today's names
RENAMED_METHODS = {"ptv1": "prompt-tuning", "handcraft": "handcraft-cloze"}
#: files whose records store no setup but whose prefixes started from the LM's token keys/values
TOKEN_INIT_FILES = ("smollm2_ptv2_token_init_h100.jsonl",)
#: the decoders among the named models: ``init="auto"`` gives their deep prefixes the LM's token keys/values
DECODERS = ("smollm2", "tiny-llama")


def stamp(rec: dict, *, kind: str, device: Any = None) -> dict:
    """``rec`` as a record of this schema: ``schema``, ``kind``, ``versions`` and ``machine`` (of ``device``)
    added where missing. A record that already carries a ``schema`` (stamped, or migrated) is returned as it
    is: its versions and machine are those of the process that made it, not of this one."""
    if kind not in KINDS:
        raise ValueError(f"record kind {kind!r}: choose one of {KINDS}")
    if "schema" in rec:
        _check(rec, "a record to write")
        if rec.get("kind") != kind:
            raise ValueError(f"a {rec.get('kind')!r} record cannot be written as a {kind!r} one")
        return rec
    out = {"schema": SCHEMA, "kind": kind, **rec}
    if "versions" not in out:
        out["versions"] = versions()
    if "machine" not in out:
        out["machine"] = machine(device)
    return out


def append_record(path: Path | str, rec: dict, *, kind: str, device: Any = None) -> dict:
    """Stamp ``rec`` (:func:`stamp`) and append it to the JSON-lines file ``path`` (a line torn by an
    interrupted write is ended first); the record as written."""
    out = jsonable(stamp(rec, kind=kind, device=device))
    append_jsonl(Path(path), out)
    return out


def read_records(path: Path | str, kind: str | None = None) -> list[dict]:
    """The records of a JSON-lines file (of ``kind``, if given); a torn line is skipped. A record of no or
    another schema is refused, naming the migration."""
    path = Path(path)
    out = load_results(path)
    for i, rec in enumerate(out):
        _check(rec, f"{path}: record {i + 1}")
    return [r for r in out if kind is None or r["kind"] == kind]


def _check(rec: Any, where: str) -> None:
    if not isinstance(rec, dict) or "schema" not in rec:
        raise ConfigError(f"{where} has no schema: it was written before records were versioned; convert the "
                          f"results once with `{MIGRATE}` (it rewrites every results/**/*.jsonl in place)")  # fmt: skip
    if rec["schema"] != SCHEMA:
        raise ConfigError(f"{where} has schema {rec['schema']!r}; this code reads schema {SCHEMA}: "
                          f"run `{MIGRATE}`, or read it with the code that wrote it")  # fmt: skip


# ----------------------------------------------------------------------------- migration
def kind_of(rec: dict, source_name: str = "") -> str:
    """What an unversioned record is, from the fields each writer wrote (``baselines.jsonl`` holds compare's
    baseline rows, which look like its runs)."""
    if {"task", "model", "method", "seed"} <= set(rec):
        return "train"
    if "what" in rec or "part" in rec:  # the benchmarks' measurements and grids (benchmarks/bench_*.py)
        return "benchmark"
    if {"env_id", "algo"} <= set(rec):
        return "baseline" if Path(source_name).name == "baselines.jsonl" else "search"
    raise ConfigError(f"a record of {source_name or 'an unnamed file'} with fields {sorted(rec)[:12]} is none of "
                      f"{KINDS}; migrate it by hand")  # fmt: skip


def migrate(rec: dict, source_name: str = "") -> dict:
    """A record written so far as a record of :data:`SCHEMA` (see the module docstring); ``source_name``
    is the file it was read from. Pure: ``rec`` is not changed; a record of this schema is returned as is."""
    if rec.get("schema") == 1:
        return _from_schema_1(rec)
    if "schema" in rec:
        _check(rec, f"a record of {source_name or 'an unnamed file'}")
        return _fill_added(rec)
    out = copy.deepcopy(rec)
    kind = kind_of(out, source_name)
    replaced: dict[str, Any] = {}
    added: list[str] = []

    def put(parent: dict, key: str, value: Any, path: str) -> None:
        if key in parent:
            if parent[key] == value:
                return
            replaced[path] = parent[key]
        else:
            added.append(path)
        parent[key] = value

    if kind == "train":
        _migrate_train(out, Path(source_name).name, put)
    meta: dict[str, Any] = {"schema": None, "file": Path(source_name).name}
    meta |= {"values": replaced} if replaced else {}
    meta |= {"added": added} if added else {}
    out, renamed = _rename_drl(out)
    meta |= {"renamed": renamed} if renamed else {}
    return _fill_added({"schema": SCHEMA, "kind": kind, **out, "migrated_from": meta})


def _from_schema_1(rec: dict) -> dict:
    """A schema-1 record in schema 2: the D_RL fields renamed (:data:`RENAMED_FIELDS`), listed under
    ``migrated_from.renamed`` (``migrated_from.schema`` stays the schema it was first read as)."""
    out, renamed = _rename_drl(copy.deepcopy(rec))
    meta = out.setdefault("migrated_from", {"schema": 1})
    if renamed:
        meta["renamed"] = [*meta.get("renamed", []), *renamed]
    out["schema"] = SCHEMA
    return _fill_added(out)


def _rename_drl(rec: dict) -> tuple[dict, list[str]]:
    """``rec`` with the schema-1 D_RL names replaced at any depth (in place), and the dotted paths (old
    names; ``[]`` for list items) that were renamed."""
    renamed: list[str] = []

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, list):
            return [walk(x, f"{path}[]") for x in obj]
        if not isinstance(obj, dict):
            return obj
        out = {}
        for key, value in obj.items():
            where = f"{path}.{key}" if path else key
            new = RENAMED_FIELDS.get(key, key)
            if key == "rl" and path.rsplit(".", 1)[-1] in SPLIT_KEYED and isinstance(value, dict):
                new = "drl"
            if new != key:
                if new in obj:
                    raise ConfigError(f"a record holds both {where} and its schema-2 name {new}; fix it by hand")
                if where not in renamed:  # list items share their path
                    renamed.append(where)
            out[new] = walk(value, where) if key != "migrated_from" else value
            if key in ("split", "reward_split") and value == "rl":  # a split named by value
                out[new] = "drl"
                if where not in renamed:
                    renamed.append(where)
        return out

    return walk(rec, ""), renamed


def _head_c(agent: dict, put) -> None:
    """A probe-headed agent from before ``head_c`` fitted its start head with the floor's C, chosen on D_RL."""
    if agent.get("head_init") == "probe" and "head_c" not in agent:
        put(agent, "head_c", None, "config.agent.head_c")


def _fill_added(rec: dict) -> dict:
    """A record of this schema with the config fields added since it was written (:data:`ADDED_FIELDS`)
    filled in with the value its code ran with, noted under ``migrated_from.added``; ``rec`` itself when
    nothing is missing."""
    config = rec.get("config") if rec.get("kind") == "train" else None
    setup, agent = ((config or {}).get(k) for k in ("setup", "agent"))
    fill = []
    if isinstance(agent, dict) and agent.get("head_init") == "probe" and "head_c" not in agent:
        fill.append(("agent", "head_c", None))
    if isinstance(setup, dict) and "label_tokens" not in setup:
        fill.append(("setup", "label_tokens", "first"))
    if not fill:
        return rec
    out = copy.deepcopy(rec)
    meta = out.setdefault("migrated_from", {"schema": SCHEMA})
    for part, field, value in fill:
        out["config"][part][field] = value
        meta["added"] = [*meta.get("added", []), f"config.{part}.{field}"]
    return out


def _migrate_train(rec: dict, name: str, put) -> None:
    config = rec.get("config")
    if not isinstance(config, dict):
        config = {}
        put(rec, "config", config, "config")
    if config.get("setup") is None:  # written before the setup was stored in records
        put(rec, "method", RENAMED_METHODS.get(rec["method"], rec["method"]), "method")
        put(config, "setup", {}, "config.setup")
        method = METHODS.get(rec["method"])
        if method is not None:
            put(config["setup"], "prompt", method.prompt, "config.setup.prompt")
        if not isinstance(config.get("agent"), dict):
            put(config, "agent", {}, "config.agent")
        put(config["agent"], "rl_first_step", 1, "config.agent.rl_first_step")
    setup = config["setup"]
    if "init" not in setup:
        put(setup, "init", "tokens" if name in TOKEN_INIT_FILES else "random", "config.setup.init")
    elif setup["init"] == "auto":  # what the model builder made of it then: no zero init yet
        deep = setup.get("prompt", getattr(METHODS.get(rec["method"]), "prompt", "deep")) == "deep"
        put(setup, "init", "tokens" if deep and rec["model"] in DECODERS else "random", "config.setup.init")
    if "pooling" not in setup:
        put(setup, "pooling", "legacy", "config.setup.pooling")
    if "label_tokens" not in setup:
        put(setup, "label_tokens", "first", "config.setup.label_tokens")
    agent = config.get("agent")
    if isinstance(agent, dict):
        if "head_init" not in agent:
            put(agent, "head_init", "keep", "config.agent.head_init")
        _head_c(agent, put)
        if agent.get("beta") and "contrast_mode" not in agent:
            put(agent, "contrast_mode", "noise", "config.agent.contrast_mode")
    threads = re.search(r"--threads[ =](\d+)", rec.get("command") or "")
    if "machine" not in rec and threads:
        known = {"device": rec.get("device"), "cpus": rec.get("cpus"), "torch_threads": int(threads[1])}
        put(rec, "machine", {k: v for k, v in known.items() if v is not None}, "machine")


def migrate_file(path: Path | str, *, write: bool = True) -> dict:
    """Migrate every record of a JSON-lines file in place (a temporary file renamed over it, so an
    interrupted migration leaves the old file whole); untouched if nothing changes, and a torn line is
    kept as it is (readers skip it). Counts: ``records``, ``migrated``, ``current`` (already of this
    schema), ``torn``, and records by kind."""
    path = Path(path)
    lines = path.read_text().splitlines()
    counts: Counter = Counter()
    out = []
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            counts["torn"] += 1
            out.append(line)
            continue
        new = migrate(rec, path.name)
        counts["records"] += 1
        counts["current" if new is rec else "migrated"] += 1
        counts[f"kind {new['kind']}"] += 1
        out.append(line if new is rec else json.dumps(jsonable(new)))
    if write and counts["migrated"]:
        atomic_write(path, "".join(line + "\n" for line in out))
    return dict(counts)
