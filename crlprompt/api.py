"""PromptClassifier: a soft-prompt text classifier on a frozen LM, trained on your own (text, label) pairs.

    from crlprompt import PromptClassifier

    clf = PromptClassifier(["negative", "positive"], model="tiny-bert", num_tokens=4)
    clf.fit(texts, labels)                     # CRL-Prompt (Algorithm 1); method="ptv2", ... for the others
    clf.evaluate(test_texts, test_labels)      # {"accuracy": ..., "n": ...}; as_test=True: saved as the test split
    clf.save("runs/mine")                      # a run directory: crl-prompt eval --checkpoint runs/mine
    clf = PromptClassifier.load("runs/mine")   # also a `crl-prompt train` run or a PEFT adapter directory
    clf.predict(["a wonderful film"])          # ["positive"]; predict_proba: (n, C) probabilities

The machinery is ``crl-prompt train``'s: :func:`crlprompt.build.build` on a
:class:`~crlprompt.tasks.TaskData` made from your rows, then :class:`~crlprompt.agents.CRLAgent`;
the run directory is the same too, plus the task spec and the rows (``data/*.jsonl``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .agents.crl import CRLAgent, CRLConfig
from .batching import Encoded, encode, eval_batches
from .build import SetupConfig, build, build_model, resolve_device, template_for
from .checkpoint import jsonable
from .data.files import parse_label
from .data.splits import split_drl
from .errors import ConfigError, CRLPromptError, DataError
from .floors import fit_probe_head
from .models import load_model
from .prompt_io import load_prompt
from .rundir import write_run_dir
from .runners.config import METHODS, TrainConfig
from .runners.records import append_record, migrate, stamp
from .runners.saved import custom_spec, open_checkpoint, spec_record, write_splits
from .scoring import accuracy, autocast
from .tasks import TASKS, Split, TaskData, TaskSpec, get_task

_OWN = ("task", "model", "num_tokens", "seed")  # SetupConfig fields that are PromptClassifier arguments


log = logging.getLogger("crlprompt")


def _log_to_stderr() -> None:
    """Show crl-prompt's progress lines (INFO) on stderr when the user has configured no logging at all,
    as ``crl-prompt`` does; a user's own logging configuration is left alone."""
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


@contextlib.contextmanager
def _verbosity(verbose: bool):
    """verbose: crl-prompt's INFO lines shown (on stderr when the user configured no logging, else
    through their handlers); quiet: the package's loggers held at WARNING for the call, so only
    warnings and errors pass whatever the user's configuration, and restored afterwards."""
    if verbose:
        from tqdm.contrib.logging import logging_redirect_tqdm

        _log_to_stderr()
        with logging_redirect_tqdm(loggers=[log]):  # the INFO lines above the progress bar, not through it
            yield
        return
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


class PromptClassifier:
    """A frozen LM with a trained soft prompt and head: ``fit``, ``evaluate``, ``predict``, ``save``, ``load``.

    Args:
        labels: the class names, in label-id order; ``fit``/``evaluate`` take these names or their ids.
        model: minilm | smollm2 | tiny-bert | tiny-llama | an HF id | a local model directory.
        method: a row of the method table: crl (default), ptv2, prompt-tuning, ptv1, ... (``crl-prompt train --help``).
        num_tokens: virtual tokens of the prompt.
        seed: seeds the prompt and head init, dropout, batch order and RL samples.
        task: the name the run directory records for this task (not a built-in task's name).
        verbalizer: label words for ``head="verbalizer"`` (default: the lower-cased label names).
        device: auto | cpu | cuda | cuda:N.
        verbose: a progress bar while training and crl-prompt's INFO lines (shown on stderr when you
            configured no logging), ending with one summary line per ``fit`` (method, rows, D_RL accuracy,
            seconds); False: neither, only warnings and errors.
        progress: the progress bar alone; None (default) follows ``verbose``.
        **options: other fields of :class:`~crlprompt.build.SetupConfig` (``prompt``, ``head``,
            ``max_length``, ``drl_fraction``, ``data_seed``...) or of :class:`~crlprompt.agents.CRLConfig`
            (``lr``, ``phase1_epochs``, ``phase2_epochs``, ``batch_size``, ``rl_interval``, ``gamma``...).
    """

    def __init__(
        self, labels: Sequence[str], *, model: str = "minilm", method: str = "crl", num_tokens: int = 20,
        seed: int = 0, task: str = "custom", verbalizer: Sequence[str] | None = None, device: str = "auto",
        verbose: bool = True, progress: bool | None = None, **options: Any,
    ):  # fmt: skip
        labels = tuple(str(x) for x in labels) if not isinstance(labels, str) else (labels,)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ConfigError(f"labels must be two or more distinct class names, got {labels!r}")
        if task in TASKS:
            raise ConfigError(f"task={task!r} is a built-in task's name; give your rows another name (e.g. 'custom')")
        setup_names = {f.name for f in dataclasses.fields(SetupConfig)} - set(_OWN)
        agent_names = {f.name for f in dataclasses.fields(CRLConfig)}
        unknown = sorted(set(options) - setup_names - agent_names)
        if unknown:
            raise ConfigError(f"unknown options {unknown}; setup options: {sorted(setup_names)}; "
                              f"training options: {sorted(agent_names)}")  # fmt: skip
        setup = SetupConfig(task=task, model=model, num_tokens=num_tokens, seed=seed,
                            **{k: v for k, v in options.items() if k in setup_names})  # fmt: skip
        agent = CRLConfig(**{k: v for k, v in options.items() if k in agent_names})
        self._init(TrainConfig(setup=setup, method=method, agent=agent), custom_spec(task, labels, verbalizer),
                   device, verbose, progress)  # fmt: skip

    def _init(self, config: TrainConfig, spec: TaskSpec, device: str, verbose: bool, progress: bool | None) -> None:
        self.config = config
        self.spec = spec
        self.device = resolve_device(device)
        self.verbose = bool(verbose)
        self.progress = self.verbose if progress is None else bool(progress)
        self.lm = None
        self.model = None  # the PromptedModel, once fitted or loaded
        self.splits: dict[str, Split] = {}  # the rows it was trained and evaluated on (saved with it)
        self.record: dict = {}  # the final record (metrics.jsonl)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.label_names

    # ------------------------------------------------------------------ training and scoring
    def fit(self, texts: Sequence[str], labels: Sequence[Any], *, validation: tuple | None = None) -> "PromptClassifier":
        """Train a fresh prompt (and head) on the rows; D_RL (reward and model selection) is
        ``validation=(texts, labels)``, else a seeded ``drl_fraction`` holdout of the rows."""
        with _verbosity(self.verbose):
            return self._fit(texts, labels, validation)

    def _fit(self, texts: Sequence[str], labels: Sequence[Any], validation: tuple | None) -> "PromptClassifier":
        train = self._rows(texts, labels, "fit")
        present = sorted({int(y) for y in train.labels})
        if len(present) < 2:
            raise DataError(f"fit: every row has the label {self.labels[present[0]]!r}; a classifier needs rows of at "
                            "least two classes. Fix: add rows of the other labels")  # fmt: skip
        cfg, agent_cfg = self.config.resolved_setup(), self.config.agent_config()
        if validation is None:
            train, drl = split_drl(train, cfg.drl_fraction, cfg.data_seed)
        else:
            drl = self._rows(*validation, "validation")
        # no test rows yet: the agent's closing "test" score runs on D_RL (evaluate() scores real ones)
        setup = build(cfg, device=self.device, lm=self.lm, data=TaskData(self.spec, train, drl, drl, "python"),
                      prompt_dropout=agent_cfg.prompt_dropout)  # fmt: skip
        self.lm, self.model, self.splits = setup.lm, setup.model, {"train": train, "drl": drl}
        t0 = time.perf_counter()
        if self.config.method_spec.trains:
            summary = CRLAgent(setup, agent_cfg, seed=cfg.seed, progress=self.progress).learn()
        else:  # probe (the no-prompt floor's logistic regression) or HandCraft: nothing is trained by gradient
            if setup.model.head_kind == "linear":
                fit_probe_head(setup.model, setup.train, setup.drl)
            summary = {"drl_acc": accuracy(setup.model, setup.drl), "steps": 0}
        self.model.eval()
        trainable, total = self.model.parameter_counts()
        self.record = stamp({
            "event": "final", "task": cfg.task, "model": cfg.model, "method": self.config.method, "seed": cfg.seed,
            "test_acc": None, "drl_acc": summary["drl_acc"], "steps": summary["steps"],
            "seconds": time.perf_counter() - t0, "trainable_params": trainable, "total_params": total,
            "n_train": len(train), "n_drl": len(drl), "n_test": 0, "device": str(self.device),
            "config": {"setup": jsonable(setup.config), "agent": jsonable(agent_cfg)},
        }, kind="train", device=self.device)  # fmt: skip
        log.info("fit: %s on %d rows (%d train, %d D_RL): D_RL accuracy %.4f in %.1fs", self.config.method,
                 len(train) + len(drl), len(train), len(drl), summary["drl_acc"], self.record["seconds"])  # fmt: skip
        return self

    def evaluate(self, texts: Sequence[str], labels: Sequence[Any], *, as_test: bool = False) -> dict:
        """Accuracy on the rows: ``{"accuracy", "n"}``.

        Scoring changes nothing ``save`` writes. ``as_test=True`` also keeps the rows as the run's test
        split (what ``save`` writes and ``crl-prompt eval`` scores as "test") and their accuracy as the
        record's ``test_acc``; replacing an earlier test split is logged, and rows shared with the
        training or D_RL rows are warned about (their accuracy is no held-out score)."""
        with _verbosity(self.verbose):
            test = self._rows(texts, labels, "evaluate")
            acc = accuracy(self._fitted(), self._encode(test))
            if as_test:
                self._keep_as_test(test, acc)
        return {"accuracy": acc, "n": len(test)}

    def _keep_as_test(self, test: Split, acc: float) -> None:
        seen = set(self.splits["train"].texts if "train" in self.splits else ()) | set(
            self.splits["drl"].texts if "drl" in self.splits else ())
        overlap = sum(t in seen for t in test.texts)
        if overlap:
            log.warning("evaluate: %d of %d rows kept as the run's test split are training or D_RL rows; its "
                        "test accuracy is not a held-out score", overlap, len(test))  # fmt: skip
        if "test" in self.splits and list(self.splits["test"].texts) != list(test.texts):
            log.info("evaluate: these %d rows replace the %d rows kept as the run's test split", len(test),
                     len(self.splits["test"]))  # fmt: skip
        self.splits["test"] = test
        self.record.update(test_acc=acc, n_test=len(test))

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities ``(n, C)``, columns in the order of ``labels``."""
        pm = self._fitted()
        if _count(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        data = self._encode(self._rows(texts, [0] * _count(texts), "predict"))
        probs = torch.empty(len(data), len(self.labels))
        pm.eval()
        for chunk in eval_batches(data.lengths, 64):
            ids, mask, _ = data.batch(chunk, pm.device)
            with autocast(pm.device):
                logits = pm(ids, mask)[0]  # (b, C)
            probs[torch.as_tensor(chunk)] = torch.softmax(logits.float(), -1).cpu()
        return probs.numpy()

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label name of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(1)]

    # ------------------------------------------------------------------ run directories
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a run directory (``crl-prompt eval --checkpoint PATH`` scores it; :meth:`load` reads it)."""
        pm, out = self._fitted(), Path(path)
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
            raise ConfigError(f"{out} exists and is not empty; choose another path or pass overwrite=True")
        cfg = dataclasses.replace(self.config.resolved_setup(), pooling=pm.pooling)  # auto made explicit
        config = jsonable(dataclasses.replace(self.config, out=out)) | {
            "setup": jsonable(cfg), "agent": jsonable(self.config.agent_config())}  # fmt: skip

        def rows_and_metrics(tmp: Path) -> dict:  # the run's own rows and its record, beside the prompt
            (tmp / "metrics.jsonl").write_text("")
            if self.record:
                append_record(tmp / "metrics.jsonl", self.record, kind="train")
            if not self.splits:
                return {}
            return {"task_spec": spec_record(self.spec), "data": write_splits(tmp, self.splits)}

        meta = {"task": cfg.task, "method": self.config.method, "test_acc": self.record.get("test_acc")}
        write_run_dir(out, config, pm, meta=meta, spec=self.spec, setup=cfg, record=self.record, extra=rows_and_metrics)
        return out

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, labels: Sequence[str] | None = None, task: str | None = None,
        model: str | None = None, head: str | None = None, device: str = "auto", verbose: bool = True,
        progress: bool | None = None,
    ) -> "PromptClassifier":  # fmt: skip
        """A classifier from a run directory (saved here or by ``crl-prompt train``) or a PEFT adapter
        directory; ``task``, ``model``, ``head`` and ``labels`` supply what a plain-PEFT adapter does not record.

        ``labels`` alone (no ``task``) loads an adapter that names no task as your own classes, the
        way ``PromptClassifier(labels)`` defines them; with a built-in task's name it keeps that
        task's templates and renames its classes. ``verbose`` and ``progress`` as in the constructor."""
        with _verbosity(verbose):
            return cls._load(Path(path), labels, task, model, head, device, verbose, progress)

    @classmethod
    def _load(cls, path: Path, labels: Sequence[str] | None, task: str | None, model: str | None, head: str | None,
              device: str, verbose: bool, progress: bool | None) -> "PromptClassifier":  # fmt: skip
        if labels is not None:
            labels = tuple(str(x) for x in labels) if not isinstance(labels, str) else (labels,)
            if len(labels) < 2 or len(set(labels)) != len(labels):
                raise ConfigError(f"labels must be two or more distinct class names, got {labels!r}")
        try:
            saved = open_checkpoint(path, task=task, model=model, head=head, labels=labels)
        except CRLPromptError as e:  # the checkpoint reader speaks CLI flags; here they are keyword arguments
            raise type(e)(str(e).replace("pass --task NAME", "pass labels=[...] (your own class names) or task=NAME")
                          .replace("pass --model NAME", "pass model=NAME")
                          .replace("pass --head verbalizer", "pass head='verbalizer'")) from None  # fmt: skip
        cfg = saved.setup
        spec = saved.spec
        if spec is None and cfg.task in TASKS:
            spec = get_task(cfg.task)
        if labels is not None:
            if cfg.task in TASKS:  # a built-in task's name: its templates, these label names
                builtin = get_task(cfg.task)
                if len(labels) != builtin.num_labels:
                    raise ConfigError(f"labels has {len(labels)} names, task {cfg.task!r} has {builtin.num_labels} "
                                      "classes; pass one name per class")  # fmt: skip
                spec = dataclasses.replace(builtin, label_names=labels)
            else:
                spec = custom_spec(cfg.task, labels)
        if spec is None:
            raise ConfigError(f"{path} does not record its labels (task {cfg.task!r}); pass labels=[...]")
        method = saved.config.get("method") or "ptv2"
        try:
            agent = CRLConfig(**saved.config.get("agent", {}))
        except (TypeError, ValueError):  # an older run's agent record: irrelevant to scoring
            agent = CRLConfig()
        clf = cls.__new__(cls)
        clf._init(TrainConfig(setup=cfg, method=method if method in METHODS else "ptv2", agent=agent), spec, device,
                  verbose, progress)  # fmt: skip
        clf.lm = load_model(cfg.model)
        clf.model = build_model(clf.lm, spec.with_template(cfg.template), prompt=cfg.prompt_kind,
                                num_tokens=cfg.num_tokens, head=cfg.head_kind, seed=cfg.seed, init=cfg.init,
                                pooling=cfg.pooling, label_tokens=cfg.label_tokens)  # fmt: skip
        clf.model.to(clf.device)
        load_prompt(clf.model, saved.path)
        clf.model.eval()
        if saved.data is not None:
            clf.splits = {"train": saved.data.train, "drl": saved.data.drl}
            if "test" in (saved.config.get("data") or {}):
                clf.splits["test"] = saved.data.test
        metrics = path / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        final = json.loads(lines[-1]) if lines and '"final"' in lines[-1] else {}
        clf.record = migrate(final, str(metrics)) if final else {}  # a run saved before records had a schema
        return clf

    # ------------------------------------------------------------------ helpers
    def _fitted(self):
        if self.model is None:
            raise ConfigError("this PromptClassifier has no trained prompt yet: call fit() or PromptClassifier.load()")
        return self.model

    def _rows(self, texts: Sequence[str], labels: Sequence[Any], where: str) -> Split:
        if isinstance(texts, str):
            raise DataError(f"{where}: texts must be a list of strings, got one string. Fix: pass [text]")
        texts, labels = list(texts), list(labels)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise DataError(f"{where}: text {bad} is a {type(texts[bad]).__name__}, not a string. Fix: pass strings")
        if len(texts) != len(labels) or not texts:
            raise DataError(f"{where}: {len(texts)} texts and {len(labels)} labels. Fix: pass one label per text, "
                            "at least one row")  # fmt: skip
        ids = [parse_label(y, self.labels, f"{where}: row {i}") for i, y in enumerate(labels)]
        return Split(texts, np.asarray(ids, dtype=np.int64))

    def _encode(self, split: Split) -> Encoded:
        cfg = self.config.resolved_setup()
        return encode(split, self.lm.tokenizer, spec=self.spec.with_template(cfg.template),
                      template=template_for(self.lm, cfg.head_kind), max_length=cfg.max_length)  # fmt: skip

    def __repr__(self) -> str:
        cfg = self.config.setup
        state = "fitted" if self.model is not None else "not fitted"
        return f"PromptClassifier(labels={list(self.labels)}, model={cfg.model!r}, method={self.config.method!r}, {state})"


def _count(texts: Sequence[str]) -> int:
    if isinstance(texts, str):
        raise DataError("predict: texts must be a list of strings, got one string. Fix: pass [text]")
    return len(texts)
