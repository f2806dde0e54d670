"""One training run (``crl-prompt train``) and re-evaluation of its checkpoint (``crl-prompt eval``).

A run directory holds::

    config.json          the resolved configuration
    metrics.jsonl        one record per epoch, then the final record
    tb/                  TensorBoard scalars (train/, rl/, eval/)
    prompt.safetensors   θ and the linear head (never pickle)
    adapter/             the prompt as a standard PEFT adapter (PeftModel.from_pretrained)

It is written under a temporary name and renamed into place at the end, so an interrupted or
failed run leaves no half-written ``--out``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..agents.crl import CRLConfig
from ..checkpoint import STATE_FILE
from ..distributed import barrier, default_device, init_from_env, is_main

log = logging.getLogger("crlprompt")

Method = Literal["handcraft", "ptv1", "ptv2", "crl", "crl-contrast", "crl-rl"]
METHODS: tuple[str, ...] = ("handcraft", "ptv1", "ptv2", "crl", "crl-contrast", "crl-rl")


@dataclass
class TrainConfig:
    """One run: a method on a task and model, with one seed."""

    task: str = "trec"
    """trec | agnews | sst2 | empathetic_dialogues | tiny (synthetic, for tiny-bert / tiny-llama)."""
    model: str = "minilm"
    """minilm | smollm2 | an HF id | a local model directory."""
    method: Method = "ptv2"
    """handcraft (template + verbalizer, zero-shot) | ptv1 (shallow, CE) | ptv2 (deep, CE) | crl (Algorithm 1) |
    crl-contrast (β only) | crl-rl (γ only)."""
    seed: int = 0
    """Seeds the prompt init, dropout, batch order and RL samples."""
    out: Path = Path("runs/train")
    """Run directory to create (refused if it exists and is not empty, unless --overwrite)."""
    overwrite: bool = False
    """Replace an existing --out."""
    data_dir: str | None = None
    """Directory with task files (SST-2 needs sst2/dev.tsv from GLUE); also $CRLPROMPT_DATA_DIR."""
    data_seed: int = 0
    """Seed of the D_RL split (kept fixed across method seeds so runs share D_RL and test)."""
    rl_fraction: float = 0.1
    """|D_RL| / |train|; paper: 10%."""
    num_tokens: int = 20
    """Virtual tokens; paper: 20."""
    head: Literal["auto", "linear", "verbalizer"] = "auto"
    """Classifier: linear head (trained) or the LM's verbalizer; auto = verbalizer for handcraft only."""
    max_train: int | None = None
    """Cap the training pool (seeded subsample; D_RL is taken from it)."""
    max_test: int | None = None
    """Cap the test split (seeded subsample)."""
    max_length: int = 128
    """Token cap per input."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    save_adapter: bool = True
    """Also write the prompt as a PEFT adapter directory."""
    checkpoint_every: int = 100
    """Write a resumable training state every this many optimizer steps (and at every epoch end)."""
    resume: bool = True
    """Resume an interrupted run of the same configuration from its last checkpoint."""
    agent: CRLConfig = field(default_factory=CRLConfig)
    """Hyperparameters of the agent (CRLConfig)."""

    def agent_config(self):
        """The agent config with the method's switches applied (β, γ off for the baselines)."""
        cfg = self.agent
        if self.method in ("ptv1", "ptv2", "handcraft"):
            cfg = dataclasses.replace(cfg, beta=0.0, gamma=0.0)
        elif self.method == "crl-contrast":
            cfg = dataclasses.replace(cfg, gamma=0.0)
        elif self.method == "crl-rl":
            cfg = dataclasses.replace(cfg, beta=0.0)
        return cfg

    @property
    def prompt_kind(self) -> str:
        return "shallow" if self.method in ("ptv1", "handcraft") else "deep"

    @property
    def head_kind(self) -> str:
        if self.head != "auto":
            return self.head
        return "verbalizer" if self.method == "handcraft" else "linear"

    @property
    def tokens(self) -> int:
        return 0 if self.method == "handcraft" else self.num_tokens


def versions() -> dict:
    import numpy
    import torch
    import transformers

    from .. import __version__

    out = {"crlprompt": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
           "numpy": numpy.__version__, "python": platform.python_version()}  # fmt: skip
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:
        pass
    return out


def _jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _prepare_out(out: Path, config_text: str, resume: bool) -> tuple[Path, bool]:
    """The run's working directory ``.<out>.partial`` beside ``--out``; (path, resuming?).

    A partial directory left by an interrupted run with the same configuration and a training
    state is kept and resumed (when ``resume``); anything else there is discarded.
    """
    out.parent.mkdir(parents=True, exist_ok=True)  # (run() refused a non-empty --out before loading)
    tmp = out.parent / f".{out.name}.partial"
    same = (tmp / "config.json").is_file() and (tmp / "config.json").read_text() == config_text
    if resume and same and (tmp / STATE_FILE).is_file():
        return tmp, True
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp, False


def _finish_out(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def run(cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Train and evaluate one configuration; returns the final record (also in metrics.jsonl)."""
    from ..agents.crl import CRLAgent
    from ..build import build, resolve_device
    from ..prompts import save_peft_adapter, save_prompt
    from ..tasks import load_task

    agent_cfg = cfg.agent_config()  # validates
    if cfg.out.exists() and any(cfg.out.iterdir()) and not cfg.overwrite:  # fail before loading anything
        raise FileExistsError(f"--out {cfg.out} exists and is not empty; choose another --out or pass --overwrite")
    data = None if cfg.task == "tiny" else load_task(
        cfg.task, data_dir=cfg.data_dir, rl_fraction=cfg.rl_fraction, seed=cfg.data_seed,
        max_train=cfg.max_train, max_test=cfg.max_test,
    )  # fmt: skip
    device = resolve_device(default_device() if cfg.device == "auto" and default_device() else cfg.device)
    setup = build(
        cfg.task, cfg.model, prompt=cfg.prompt_kind, num_tokens=cfg.tokens, head=cfg.head_kind,
        prompt_dropout=agent_cfg.prompt_dropout, seed=cfg.seed, max_length=cfg.max_length, device=device, data=data,
    )  # fmt: skip
    trainable, total = setup.model.parameter_counts()
    log.info(
        "%s on %s/%s: %d train, %d D_RL, %d test | trainable params: %s || all params: %s || trainable%%: %.4f",
        cfg.method, cfg.task, cfg.model, len(setup.train), len(setup.rl), len(setup.test),
        f"{trainable:,}", f"{total:,}", 100 * trainable / total,
    )  # fmt: skip
    config_text = json.dumps(_jsonable(cfg) | {"agent": _jsonable(agent_cfg)}, indent=2)
    main = is_main()  # under torchrun, rank 0 alone writes; the others train and read
    if main:
        tmp, resuming = _prepare_out(cfg.out, config_text, cfg.resume)
    barrier()
    if not main:
        tmp = cfg.out.parent / f".{cfg.out.name}.partial"
        resuming = (tmp / STATE_FILE).is_file()
    if resuming:
        log.info("resuming the interrupted run in %s", tmp)
    try:
        metrics = io.StringIO()
        if main:
            (tmp / "config.json").write_text(config_text)
            metrics = open(tmp / "metrics.jsonl", "w")  # rewritten from the agent's history on resume

        def write(event: str, rec: dict) -> None:
            if event == "epoch":
                metrics.write(json.dumps({"event": event, **rec}) + "\n")
                metrics.flush()

        t0 = time.perf_counter()
        if cfg.method == "handcraft":
            from ..scoring import accuracy

            summary = {"rl_acc": accuracy(setup.model, setup.rl), "test_acc": accuracy(setup.model, setup.test),
                       "steps": 0, "history": []}  # fmt: skip
            summary["phase1_rl_acc"], summary["phase1_test_acc"] = summary["rl_acc"], summary["test_acc"]
        else:
            agent = CRLAgent(setup, agent_cfg, seed=cfg.seed, log_dir=str(tmp / "tb"), callbacks=[write], progress=progress)
            summary = agent.learn(checkpoint=str(tmp / STATE_FILE), checkpoint_every=cfg.checkpoint_every, resume=True)
            if resuming:  # metrics.jsonl holds the epochs after the checkpoint; rewrite it whole
                metrics.seek(0)
                metrics.truncate()
                for rec in summary["history"]:
                    metrics.write(json.dumps({"event": "epoch", **rec}) + "\n")
        record = {
            "event": "final", "task": cfg.task, "model": cfg.model, "method": cfg.method, "seed": cfg.seed,
            "test_acc": summary["test_acc"], "rl_acc": summary["rl_acc"],
            "phase1_test_acc": summary["phase1_test_acc"], "phase1_rl_acc": summary["phase1_rl_acc"],
            "steps": summary["steps"], "seconds": time.perf_counter() - t0, "trainable_params": trainable,
            "total_params": total, "n_train": len(setup.train), "n_rl": len(setup.rl), "n_test": len(setup.test),
            "device": str(device), "versions": versions(),
        }  # fmt: skip
        metrics.write(json.dumps(record) + "\n")
        metrics.close()
        barrier()  # every rank is done with the checkpoint before rank 0 finalizes
        if not main:
            return record
        meta = {"task": cfg.task, "method": cfg.method, "test_acc": record["test_acc"]}
        save_prompt(setup.model, tmp / "prompt.safetensors", meta)
        if cfg.save_adapter and setup.model.layout.num_tokens > 0:
            try:
                save_peft_adapter(setup.model, tmp / "adapter")
            except Exception as e:  # an architecture PEFT cannot wrap: the safetensors file still holds θ
                log.warning("could not write a PEFT adapter (%s: %s); prompt.safetensors holds the prompt", type(e).__name__, e)
        (tmp / STATE_FILE).unlink(missing_ok=True)  # the finished run needs no resume state
        _finish_out(tmp, cfg.out)
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


def evaluate_checkpoint(checkpoint: Path, split: str = "test", device: str = "auto", data_dir: str | None = None) -> dict:
    """Rebuild the run's model and data from ``config.json`` and score its saved prompt."""
    from ..build import build, resolve_device
    from ..models import ModelError
    from ..prompts import load_prompt
    from ..scoring import accuracy

    checkpoint = Path(checkpoint)
    cfg_file, prompt_file = checkpoint / "config.json", checkpoint / "prompt.safetensors"
    if not cfg_file.is_file() or not prompt_file.is_file():
        raise ModelError(f"{checkpoint} is not a crl-prompt run directory (needs config.json and prompt.safetensors)")
    saved = json.loads(cfg_file.read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"agent", "out"}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    if data_dir is not None:
        cfg.data_dir = data_dir
    setup = build(
        cfg.task, cfg.model, prompt=cfg.prompt_kind, num_tokens=cfg.tokens, head=cfg.head_kind, seed=cfg.seed,
        data_seed=cfg.data_seed, data_dir=cfg.data_dir, rl_fraction=cfg.rl_fraction, max_train=cfg.max_train,
        max_test=cfg.max_test, max_length=cfg.max_length, device=resolve_device(device),
    )  # fmt: skip
    load_prompt(setup.model, prompt_file)
    data = {"test": setup.test, "rl": setup.rl, "train": setup.train}[split]
    acc = accuracy(setup.model, data)
    return {"checkpoint": str(checkpoint), "split": split, "accuracy": acc, "n": len(data)}


@dataclass
class EvalConfig:
    """Re-evaluate a saved run."""

    checkpoint: Path
    """A run directory written by `crl-prompt train` (config.json + prompt.safetensors)."""
    split: Literal["test", "rl", "train"] = "test"
    """Which split to score."""
    device: str = "auto"
    """auto | cpu | cuda."""
    data_dir: str | None = None
    """Override the run's data directory."""


def setup_logging() -> None:
    init_from_env()  # joins the torchrun process group, if any
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
