"""One training run (``crl-prompt train``) and re-evaluation of its checkpoint (``crl-prompt eval``).

A run directory holds::

    config.json          the resolved configuration
    metrics.jsonl        one record per epoch, then the final record (crlprompt.runners.records' schema)
    tb/                  TensorBoard scalars (train/, rl/, eval/)
    prompt.safetensors   θ and the linear head (never pickle)
    adapter/             the prompt as a standard PEFT adapter (PeftModel.from_pretrained)

It is written under a temporary name and renamed into place at the end, so an interrupted or
failed run leaves no half-written ``--out``.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
from pathlib import Path

from ..checkpoint import STATE_FILE
from ..data.splits import split_name
from ..distributed import barrier, default_device, is_main
from ..errors import CheckpointError, ConfigError
from ..atomic import atomic_write, partial_dir, replace_dir
from .common import check_out_dir, jsonable, setup_logging  # noqa: F401  (setup_logging re-exported for the CLI)
from .config import METHODS, EvalConfig, Method, TrainConfig, get_method, setup_from_run_config  # noqa: F401
from .records import append_record, stamp

log = logging.getLogger("crlprompt")

#: run settings that say how to run, not what: a partial run that differs in these alone is the same run
NOT_IDENTITY = ("overwrite", "resume")


def _check_partial(out: Path, identity: dict, overwrite: bool) -> None:
    """Refuse, before anything is loaded, to discard an interrupted run in ``.<out>.partial`` whose
    settings differ from this run's (or that ``--no-resume`` would restart), unless ``--overwrite``: one
    line naming the differing fields and the two ways forward."""
    tmp = partial_dir(out)
    if overwrite or not (tmp / STATE_FILE).is_file():
        return
    try:
        stored = json.loads((tmp / "config.json").read_text())
    except (OSError, ValueError):
        stored = None
    request = _request(identity)
    if isinstance(stored, dict) and isinstance(stored.get("request"), dict):
        old = stored["request"]  # the settings as that run was given them ("auto" unresolved)
    else:  # a partial run written before "request" was stored: its resolved settings
        old = {k: stored.get(k) for k in request} if isinstance(stored, dict) else None
    if old == request:
        if identity.get("resume", True):
            return  # the same run: resumed
        raise ConfigError(f"{tmp} holds an interrupted run of these settings and --no-resume would discard it; pass "
                          "--overwrite with --no-resume to start afresh, or drop --no-resume to resume it")  # fmt: skip
    diff = _dict_diff(old, request) if isinstance(old, dict) else "its config.json is unreadable"
    raise ConfigError(
        f"{tmp} holds an interrupted run with other settings ({diff}); pass --overwrite to discard it and "
        f"start afresh, or choose another --out (rerun with the same settings to resume it)"
    )


def _prepare_out(out: Path, config_text: str, resume: bool) -> tuple[Path, bool]:
    """The run's working directory ``.<out>.partial`` beside ``--out``; (path, resuming?).

    A partial directory left by an interrupted run with the same configuration and a training
    state is kept and resumed (when ``resume``); anything else there is discarded (``run`` has
    refused already when the settings differ and ``--overwrite`` was not given).
    """
    out.parent.mkdir(parents=True, exist_ok=True)  # (run() refused a non-empty --out before loading)
    tmp = partial_dir(out)
    same = (tmp / "config.json").is_file() and _same_run((tmp / "config.json").read_text(), config_text)
    if resume and same and (tmp / STATE_FILE).is_file():
        return tmp, True
    if (tmp / STATE_FILE).is_file():  # an interrupted run of other settings (or --no-resume): say what is dropped
        why = "--no-resume was given" if same else f"its settings differ ({_config_diff(tmp / 'config.json', config_text)})"
        log.warning("discarding the interrupted run in %s and starting afresh: %s", tmp, why)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp, False


def _same_run(a: str, b: str) -> bool:
    """Two config.json texts describe the same run (they may differ in NOT_IDENTITY)."""
    try:
        da, db = json.loads(a), json.loads(b)
    except ValueError:
        return False
    return {k: v for k, v in da.items() if k not in NOT_IDENTITY} == {k: v for k, v in db.items() if k not in NOT_IDENTITY}


def _request(identity: dict) -> dict:
    """The run's settings as given (``auto`` left unresolved, no NOT_IDENTITY flags), JSON-normalised:
    what a rerun must repeat to resume the run."""
    return json.loads(json.dumps({k: v for k, v in sorted(identity.items()) if k not in NOT_IDENTITY}, default=str))


def _config_diff(old_file: Path, new_text: str) -> str:
    """The top-level and nested config keys whose values differ, as ``a.b: old -> new`` (at most 5)."""
    try:
        old = json.loads(old_file.read_text())
    except (OSError, ValueError):
        return "its config.json is unreadable"
    return _dict_diff(old if isinstance(old, dict) else {}, json.loads(new_text))


def _dict_diff(old: dict, new: dict) -> str:
    """``a.b: old -> new`` for each nested key whose value differs (at most 5 named)."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(old), flat(new)
    diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")


def run(cfg: TrainConfig, *, progress: bool | None = None) -> dict:
    """Train and evaluate one configuration; returns the final record (also in metrics.jsonl).
    ``progress`` overrides ``cfg.progress``."""
    from ..agents.crl import CRLAgent
    from ..build import build, resolve_device
    from ..rundir import write_prompt_files

    agent_cfg = cfg.agent_config()  # validates
    check_out_dir(cfg.out)  # a file, or under a file or an unwritable directory: refused before loading anything
    if cfg.out.exists() and any(cfg.out.iterdir()) and not cfg.overwrite:  # fail before loading anything
        raise ConfigError(f"--out {cfg.out} exists and is not empty; choose another --out or pass --overwrite")
    identity = {k: v for k, v in jsonable(cfg).items() if k != "progress"}  # a resume may change the display
    _check_partial(cfg.out, identity, cfg.overwrite)  # before loading anything
    setup_cfg = cfg.resolved_setup()
    device = resolve_device(default_device() if cfg.device == "auto" and default_device() else cfg.device)
    setup = build(setup_cfg, device=device, prompt_dropout=agent_cfg.prompt_dropout)
    trainable, total = setup.model.parameter_counts()
    log.info(
        "%s on %s/%s: %d train, %d D_RL, %d test | trainable params: %s || all params: %s || trainable%%: %.4f",
        cfg.method, setup_cfg.task, setup_cfg.model, len(setup.train), len(setup.drl), len(setup.test),
        f"{trainable:,}", f"{total:,}", 100 * trainable / total,
    )  # fmt: skip
    progress = cfg.progress if progress is None else progress
    setup_cfg = setup.config  # pooling and init resolved on the model
    config_text = json.dumps(
        identity | {"setup": jsonable(setup_cfg), "agent": jsonable(agent_cfg), "request": _request(identity)}, indent=2
    )  # "request": the settings as given, which _check_partial compares with a rerun's
    main = is_main()  # under torchrun, rank 0 alone writes; the others train and read
    if main:
        tmp, resuming = _prepare_out(cfg.out, config_text, cfg.resume)
    barrier()
    if not main:
        tmp = partial_dir(cfg.out)
        resuming = (tmp / STATE_FILE).is_file()
    if resuming:
        log.info("resuming the interrupted run in %s", tmp)
    try:
        metrics = io.StringIO()
        if main:
            atomic_write(tmp / "config.json", config_text)  # a resume reads it back
            metrics = open(tmp / "metrics.jsonl", "w")  # rewritten from the agent's history on resume

        def write(event: str, rec: dict) -> None:
            if event == "epoch":
                metrics.write(json.dumps({"event": event, **rec}) + "\n")
                metrics.flush()

        t0 = time.perf_counter()
        if not cfg.method_spec.trains:
            from ..floors import fit_probe_head
            from ..scoring import accuracy

            if setup.model.head_kind == "linear":  # the probe: the no-prompt floor's logistic regression
                fit = fit_probe_head(setup.model, setup.train, setup.drl)
                log.info("probe: logistic regression on the frozen features, C=%g chosen on D_RL", fit.c)
            summary = {"drl_acc": accuracy(setup.model, setup.drl), "test_acc": accuracy(setup.model, setup.test),
                       "steps": 0, "history": []}  # fmt: skip
            summary["phase1_drl_acc"], summary["phase1_test_acc"] = summary["drl_acc"], summary["test_acc"]
        else:
            agent = CRLAgent(setup, agent_cfg, seed=cfg.seed, log_dir=str(tmp / "tb"), callbacks=[write], progress=progress)
            summary = agent.learn(checkpoint=str(tmp / STATE_FILE), checkpoint_every=cfg.checkpoint_every, resume=True)
            if resuming:  # metrics.jsonl holds the epochs after the checkpoint; rewrite it whole
                metrics.seek(0)
                metrics.truncate()
                for rec in summary["history"]:
                    metrics.write(json.dumps({"event": "epoch", **rec}) + "\n")
        record = stamp({
            "event": "final", "task": setup_cfg.task, "model": setup_cfg.model, "method": cfg.method, "seed": cfg.seed,
            "test_acc": summary["test_acc"], "drl_acc": summary["drl_acc"],
            "phase1_test_acc": summary["phase1_test_acc"], "phase1_drl_acc": summary["phase1_drl_acc"],
            "steps": summary["steps"], "seconds": time.perf_counter() - t0, "trainable_params": trainable,
            "total_params": total, "n_train": len(setup.train), "n_drl": len(setup.drl), "n_test": len(setup.test),
            "device": str(device), "config": {"setup": jsonable(setup_cfg), "agent": jsonable(agent_cfg)},
        }, kind="train", device=device)  # fmt: skip
        metrics.close()
        if main:  # the final record: schema, versions, machine
            append_record(tmp / "metrics.jsonl", record, kind="train")
        barrier()  # every rank is done with the checkpoint before rank 0 finalizes
        if not main:
            return record
        meta = {"task": setup_cfg.task, "method": cfg.method, "test_acc": record["test_acc"]}
        write_prompt_files(tmp, setup.model, meta=meta, spec=setup.spec, setup=setup_cfg, record=record,
                           adapter=cfg.save_adapter)  # fmt: skip
        (tmp / STATE_FILE).unlink(missing_ok=True)  # the finished run needs no resume state
        replace_dir(tmp, cfg.out)
    except BaseException as e:
        if not main:
            raise
        if (tmp / STATE_FILE).is_file():  # keep the last good checkpoint (Ctrl-C, kill, NaN guard)
            log.warning("run interrupted (%s); the last checkpoint is in %s: rerun the same command to resume",
                        type(e).__name__, tmp)  # fmt: skip
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def evaluate_checkpoint(
    checkpoint: Path, split: str = "test", device: str = "auto", data_dir: str | None = None, *,
    task: str | None = None, model: str | None = None, head: str | None = None,
) -> dict:  # fmt: skip
    """Score a saved prompt on a split: a run directory (rebuilt from its stored :class:`SetupConfig`,
    and its own rows for a run saved from Python) or a PEFT adapter directory, crl-prompt's or one
    trained with plain PEFT (``task``, ``model``, ``head`` supply what the adapter does not record)."""
    import dataclasses

    from ..build import build, resolve_device
    from ..prompt_io import load_prompt
    from ..scoring import accuracy
    from .saved import open_checkpoint

    saved = open_checkpoint(checkpoint, task=task, model=model, head=head)
    setup_cfg = saved.setup if data_dir is None else dataclasses.replace(saved.setup, data_dir=data_dir)
    if saved.data is None and saved.spec is not None:
        raise CheckpointError(
            f"{checkpoint} holds a prompt for task {saved.spec.name!r}, defined from Python with rows it does not "
            "hold; evaluate the run directory it was saved in, or pass --task with a task crl-prompt knows"
        )
    setup = build(setup_cfg, device=resolve_device(device), data=saved.data)
    load_prompt(setup.model, saved.path)
    split = split_name(split)
    data = {"test": setup.test, "drl": setup.drl, "train": setup.train}[split]
    acc = accuracy(setup.model, data)
    return {"checkpoint": str(checkpoint), "split": split, "accuracy": acc, "n": len(data),
            "task": setup_cfg.task, "model": setup_cfg.model}  # fmt: skip
