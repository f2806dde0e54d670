"""A trained prompt on disk, both ways: prompt files, and PEFT adapters in and out.

* ``prompt.safetensors`` (:func:`save_prompt`): θ, the linear head and the layout in its metadata.
* a PEFT adapter directory (:func:`save_peft_adapter`): ``adapter_config.json`` and
  ``adapter_model.safetensors`` as PEFT writes them (``PeftModel.from_pretrained`` loads it, its
  ``base_model_name_or_path`` the model's hub id; the weights' metadata adds crl-prompt's mark and
  checksum to PEFT's ``format``), plus ``head.safetensors`` (the linear classifier, ``linear.weight
  (C, H)`` and ``linear.bias (C,)``) and a model card ``README.md`` whose front matter holds a
  ``crl_prompt`` record (task, labels, pooling, setup, accuracy, the weights' checksum again).

:func:`load_prompt` reads all three: a prompt file, a run directory, and an adapter directory,
including one trained with plain PEFT (``PrefixTuningConfig``, ``PromptTuningConfig`` or
``PromptEncoderConfig`` on the same base model, ``save_pretrained``); a linear head comes from the
adapter's ``head.safetensors`` when it has one.

Every file written here carries a checksum, and a damaged one, or one of ours that lost its
checksum, is refused (:mod:`crlprompt.modelcard` says how); a plain-PEFT adapter, which never had one, loads.

Pooling, the feature a head sees (so a head trained outside crl-prompt must pool the same way), is
the setup's ``pooling`` (:data:`crlprompt.prompts.POOLINGS`): recorded in a prompt file's metadata,
a head file's metadata and the model card; a head saved with one pooling is refused by a model
built with another. An adapter trained with plain PEFT has no record: its head is read as the
runs before the option pooled (encoders the first text token, decoders the last non-pad token).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .atomic import atomic_dir, atomic_file
from .errors import CheckpointError
from .modelcard import (  # noqa: F401  (PromptFileError and tensor_digest: imported from here by other modules)
    ADAPTER_MARK, CARD_FILE, HEAD_FORMAT, POOLING_TEXT, PromptFileError, adapter_is_ours, adapter_record, base_model_id,
    check_digest, model_card, model_name, read_card_record, tensor_digest,
)  # fmt: skip
from .models import LoadedModel

log = logging.getLogger(__name__)

# This module does not import crlprompt.prompts (which re-exports it): ``pm: nn.Module`` below is a
# :class:`~crlprompt.prompts.PromptedModel`, ``layout`` its :class:`~crlprompt.prompts.PromptLayout`.
PromptKind = Literal["deep", "shallow"]

PROMPT_FILE = "prompt.safetensors"
ADAPTER_DIR = "adapter"  # a run directory's adapter
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_FILE = "head.safetensors"
#: PEFT prompt-learning types crl-prompt reads, and the prompt kind each one is
PEFT_KINDS: dict[str, PromptKind] = {"PREFIX_TUNING": "deep", "PROMPT_TUNING": "shallow", "P_TUNING": "shallow"}


# ---------------------------------------------------------------------- layouts
def checkpoint_layout(path: str | Path) -> tuple[str, int] | None:
    """``(prompt kind, virtual tokens)`` a saved prompt holds (a prompt file, a run directory or a PEFT
    adapter), read from its metadata or config alone; None when the path holds none of them."""
    path = Path(path)
    if path.is_dir():
        if (path / PROMPT_FILE).is_file():
            return checkpoint_layout(path / PROMPT_FILE)
        for adapter in (path, path / ADAPTER_DIR):
            if (adapter / ADAPTER_CONFIG).is_file():
                try:
                    cfg = json.loads((adapter / ADAPTER_CONFIG).read_text())
                    return PEFT_KINDS[cfg["peft_type"]], int(cfg["num_virtual_tokens"])
                except (ValueError, KeyError, TypeError):
                    return None
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            layout = json.loads((f.metadata() or {})["layout"])
        return layout["kind"], int(layout["num_tokens"])
    except Exception:  # not a prompt file: load_prompt says what is wrong with it
        return None


# ---------------------------------------------------------------------- prompt files
def save_prompt(pm: nn.Module, path: str | Path, meta: dict | None = None) -> None:
    """Write θ and the head (if it has parameters) as safetensors (atomically), the layout in its metadata."""
    from safetensors.torch import save_file

    tensors = {"theta": pm.prompt.theta.detach().float().cpu().contiguous()}
    if pm.head_kind == "linear":
        for k, v in pm.head.state_dict().items():
            tensors[f"head.{k}"] = v.detach().float().cpu().contiguous()
    metadata = {"layout": json.dumps(asdict(pm.layout)), "model": pm.lm.name, "head": pm.head_kind,
                "pooling": pm.pooling}  # fmt: skip
    metadata.update({k: json.dumps(v) for k, v in (meta or {}).items()})
    metadata["sha256"] = tensor_digest(tensors, metadata["layout"])
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_prompt(pm: nn.Module, path: str | Path, *, strict: bool = True, require_head: bool = True,
                allow_unverified: bool = False) -> dict:  # fmt: skip
    """Load θ (and the linear head) into ``pm`` from a prompt file, a run directory or a PEFT adapter
    directory; returns the file's metadata (a prompt file's strings as stored, an adapter's record).

    Everything is checked before anything is written, so a refused checkpoint leaves ``pm`` untouched;
    refusals are :class:`PromptFileError`. ``strict=False`` skips only the model-name check (for a
    model directory that was moved). ``require_head=False`` loads θ alone from an adapter that has no
    ``head.safetensors`` and keeps ``pm``'s linear head.
    """
    if not isinstance(pm.prompt.theta, nn.Parameter):
        raise PromptFileError("the model's prompt is computed by a prompt encoder; a saved prompt is that encoder's "
                              "output: load it into a model built with prompt_encoder='none'")  # fmt: skip
    path = Path(path)
    if path.is_dir():
        for adapter in (path, path / ADAPTER_DIR):
            if (adapter / ADAPTER_CONFIG).is_file() and not (path / PROMPT_FILE).is_file():
                info = read_adapter(adapter, allow_unverified=allow_unverified)
                return _load_adapter(pm, info, strict=strict, require_head=require_head)
        if (path / PROMPT_FILE).is_file():
            return _load_prompt_file(pm, path / PROMPT_FILE, strict, allow_unverified)
        raise PromptFileError(f"{path} holds neither {PROMPT_FILE} nor a PEFT adapter ({ADAPTER_CONFIG}); pass a "
                              "prompt file, a run directory or an adapter directory")  # fmt: skip
    if not path.is_file():
        raise PromptFileError(f"{path} does not exist; pass a prompt file, a run directory or an adapter directory")
    return _load_prompt_file(pm, path, strict, allow_unverified)


def _load_prompt_file(pm: nn.Module, path: Path, strict: bool, allow_unverified: bool = False) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # not safetensors: torn, random bytes, a pickle...
        raise PromptFileError(f"{path} is not a readable safetensors prompt file ({type(e).__name__}); pass a checkpoint written by crl-prompt") from None
    layout = meta.get("layout")
    if layout is None or "theta" not in tensors:
        raise PromptFileError(f"{path} is not a crl-prompt prompt file (no layout/theta); pass a checkpoint written by crl-prompt")
    check_digest(path, tensors, meta.get("sha256"), layout, allow_unverified=allow_unverified)
    try:
        saved = type(pm.layout)(**json.loads(layout))
    except Exception:
        raise PromptFileError(f"{path} has a malformed layout record; pass a checkpoint written by crl-prompt") from None
    theta = tensors["theta"]
    if theta.shape != (saved.dim,) or not theta.is_floating_point() or not torch.isfinite(theta).all():
        raise PromptFileError(f"{path} holds a theta of shape {tuple(theta.shape)} / dtype {theta.dtype} that is not a "
                              f"finite ({saved.dim},) float vector; the file is damaged")  # fmt: skip
    if saved != pm.layout:
        raise PromptFileError(
            f"{path} holds a prompt for model {meta.get('model')!r} with layout {saved}, but the model "
            f"{pm.lm.name!r} needs {pm.layout}; load it with --model {meta.get('model')}"
        )
    _check_model(path, meta.get("model"), pm, strict)
    _check_head_kind(path, meta.get("head", "linear"), pm)
    _check_pooling(path, meta.get("pooling"), pm)
    head_sd = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
    if pm.head_kind == "linear":
        _check_head(path, pm.head, head_sd)
    _write(pm, theta, head_sd if pm.head_kind == "linear" else None)
    return dict(meta)


def _check_model(path: Path, saved_model: str | None, pm: nn.Module, strict: bool) -> None:
    if strict and saved_model is not None and saved_model != pm.lm.name:
        raise PromptFileError(
            f"{path} holds a prompt trained on model {saved_model!r}, not {pm.lm.name!r}; load it with "
            f"--model {saved_model} (or strict=False if the same model was only moved)"
        )


def _check_head_kind(path: Path, saved: str, pm: nn.Module) -> None:
    if saved != pm.head_kind:
        raise PromptFileError(f"{path} was saved with head={saved!r} but the model uses head={pm.head_kind!r}; "
                              f"use --head {saved}")  # fmt: skip


def _check_pooling(path: Path, saved: str | None, pm: nn.Module) -> None:
    """A linear head is only right on the features it was trained on; files without a record pass."""
    if saved is not None and pm.head_kind == "linear" and saved != pm.pooling:
        raise PromptFileError(f"{path} holds a head trained on {saved!r}-pooled features, but the model pools "
                              f"{pm.pooling!r}; build it with pooling={saved!r} (--pooling {saved})")  # fmt: skip


def _check_head(path: Path, head: nn.Module, head_sd: dict[str, torch.Tensor]) -> None:
    want = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in head_sd.items()}
    if want != got:
        raise PromptFileError(f"{path} holds a head with shapes {got}, the model needs {want} (another task?)")
    if not all(v.is_floating_point() and torch.isfinite(v).all() for v in head_sd.values()):
        raise PromptFileError(f"{path} holds a head with non-finite or non-float values; the file is damaged")


def _write(pm: nn.Module, theta: torch.Tensor, head_sd: dict[str, torch.Tensor] | None) -> None:
    with torch.no_grad():
        pm.prompt.theta.copy_(theta.reshape(-1))
        if head_sd is not None:
            pm.head.load_state_dict(head_sd)


# ---------------------------------------------------------------------- PEFT adapters, out
def peft_config(lm: LoadedModel, layout):
    """The PEFT config whose prompt-encoder weight is θ reshaped to ``(tokens, D / tokens)``.

    ``base_model_name_or_path`` is left unset: PEFT fills it from the wrapped model (and warns if it
    differs); :func:`save_peft_adapter` sets the hub id after wrapping.
    """
    from peft import PrefixTuningConfig, PromptTuningConfig, TaskType

    task = TaskType.CAUSAL_LM if lm.arch == "decoder" else TaskType.FEATURE_EXTRACTION
    common = dict(task_type=task, num_virtual_tokens=layout.num_tokens, num_layers=layout.num_layers)
    if layout.kind == "deep":
        kv_dim = layout.num_kv_heads * layout.head_dim
        return PrefixTuningConfig(token_dim=kv_dim, num_attention_heads=layout.num_kv_heads, **common)
    return PromptTuningConfig(token_dim=layout.hidden_size, num_attention_heads=lm.config.num_attention_heads, **common)


def peft_model_with_theta(lm: LoadedModel, full_model: nn.Module, layout, theta: torch.Tensor):
    """Wrap ``full_model`` (what PEFT expects for the task type) in a PEFT model holding θ."""
    from peft import get_peft_model

    with warnings.catch_warnings():  # transformers' deprecation of a method PEFT calls, not the user's concern
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(full_model, peft_config(lm, layout))
    emb = model.prompt_encoder["default"].embedding
    with torch.no_grad():
        emb.weight.copy_(theta.detach().view(layout.num_tokens, -1).to(emb.weight))
    return model


def save_peft_adapter(
    pm: nn.Module, out_dir: str | Path, *, spec: Any = None, setup: Any = None, metrics: dict | None = None
) -> Path:
    """Save the prompt as a standard PEFT adapter (``PeftModel.from_pretrained`` loads it), with the linear
    head in ``head.safetensors`` and a model card; written beside ``out_dir``, then renamed over it.

    Args:
        spec: the :class:`~crlprompt.tasks.TaskSpec` (task name and labels for the card).
        setup: the :class:`~crlprompt.build.SetupConfig` (or its dict) the prompt was trained with.
        metrics: accuracies and the like (``test_acc``, ``drl_acc``, ``method``...) for the card.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not (out / ADAPTER_CONFIG).is_file():
        raise CheckpointError(f"{out} holds files other than a PEFT adapter; save to a new or empty directory")
    lm = pm.lm
    full = lm.body if lm.arch == "encoder" else lm.full
    model = peft_model_with_theta(lm, full, pm.layout, pm.prompt.theta)
    model.peft_config["default"].base_model_name_or_path = base_model_id(lm.name)
    record = adapter_record(pm, spec=spec, setup=setup, metrics=metrics)
    with atomic_dir(out) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model.save_pretrained(str(tmp), save_embedding_layers=False)  # a prompt never changes the vocabulary
        if pm.head_kind == "linear":
            tensors = {k: v.detach().float().cpu().contiguous() for k, v in pm.head.state_dict().items()}
            meta = {"format": HEAD_FORMAT, "pooling": record["pooling"], "model": lm.name,
                    "labels": json.dumps(record.get("labels")), "sha256": tensor_digest(tensors)}  # fmt: skip
            save_file(tensors, str(tmp / HEAD_FILE), metadata=meta)
        weights, weights_meta = _read_safetensors(tmp / ADAPTER_WEIGHTS)  # as PEFT wrote them
        record["adapter_sha256"] = tensor_digest(weights)
        # the checksum in the weights too, so it outlives a lost or hand-edited card; the mark says whose it is
        save_file(weights, str(tmp / ADAPTER_WEIGHTS),
                  metadata={**weights_meta, ADAPTER_MARK: "1", "sha256": record["adapter_sha256"]})  # fmt: skip
        (tmp / CARD_FILE).write_text(model_card(record, model.peft_config["default"].peft_type.value))
    return out


# ---------------------------------------------------------------------- PEFT adapters, in
@dataclass
class AdapterInfo:
    """A PEFT prompt adapter as read from disk (checked, not yet tied to a model)."""

    path: Path
    peft_type: str
    kind: PromptKind
    config: dict
    """adapter_config.json."""
    weight: torch.Tensor
    """PEFT's ``prompt_embeddings``: ``(tokens, layers·2·kv_dim)`` for a prefix, ``(tokens, hidden)`` for a prompt."""
    head: dict[str, torch.Tensor] | None = None
    """``head.safetensors`` as ``linear.weight (C, H)``, ``linear.bias (C,)``, or None."""
    head_meta: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    """The model card's ``crl_prompt`` record (empty for an adapter trained with plain PEFT)."""

    @property
    def num_tokens(self) -> int:
        return int(self.config["num_virtual_tokens"])

    @property
    def base_model(self) -> str | None:
        return self.config.get("base_model_name_or_path") or self.record.get("base_model")

    @property
    def model(self) -> str | None:
        """The name to load the base model by (the record's, else the config's base model mapped back)."""
        return self.record.get("model") or model_name(self.base_model)


def read_adapter(path: str | Path, *, allow_unverified: bool = False) -> AdapterInfo:
    """Read and check a PEFT prompt adapter directory; :class:`PromptFileError` says what is wrong
    (``allow_unverified``: see :func:`load_prompt`)."""
    from safetensors import safe_open

    path = Path(path)
    cfg_file, weights = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not cfg_file.is_file():
        raise PromptFileError(f"{path} is not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    try:
        config = json.loads(cfg_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise PromptFileError(f"{cfg_file} is not valid JSON ({e}); re-save the adapter with save_pretrained") from None
    if not isinstance(config, dict):
        raise PromptFileError(f"{cfg_file} is not a JSON object; re-save the adapter with save_pretrained")
    peft_type = config.get("peft_type")
    if peft_type not in PEFT_KINDS:
        raise PromptFileError(f"{path} is a {peft_type} adapter; crl-prompt reads the prompt adapters {tuple(PEFT_KINDS)}")
    if config.get("num_transformer_submodules", 1) != 1:
        raise PromptFileError(f"{path} is an encoder-decoder adapter (num_transformer_submodules="
                              f"{config.get('num_transformer_submodules')}); crl-prompt reads encoder or decoder ones")  # fmt: skip
    for key in ("num_virtual_tokens", "token_dim", "num_layers"):
        if isinstance(config.get(key), bool) or not isinstance(config.get(key), int) or config[key] < 1:
            raise PromptFileError(f"{cfg_file} has no valid {key} ({config.get(key)!r}); re-save the adapter with save_pretrained")
    if not weights.is_file():
        pickled = (path / "adapter_model.bin").is_file()
        raise PromptFileError(f"{path} has no {ADAPTER_WEIGHTS}" + (" (adapter_model.bin is a pickle, never loaded: "
                              "re-save with safe_serialization=True)" if pickled else ""))  # fmt: skip
    tensors, weights_meta = _read_safetensors(weights, safe_open)
    record = read_card_record(path)
    head_file = path / HEAD_FILE
    head, head_meta = _read_safetensors(head_file, safe_open) if head_file.is_file() else (None, {})
    ours = adapter_is_ours(path, weights_meta, head_meta, record)
    sums = [d for d in (weights_meta.get("sha256"), record.get("adapter_sha256")) if d is not None]
    for want in sums or [None]:
        check_digest(weights, tensors, want, ours=ours, allow_unverified=allow_unverified,
                      where=f"its metadata and in {CARD_FILE}'s crl_prompt record")  # fmt: skip
    weight = tensors.get("prompt_embeddings")
    p, width = config["num_virtual_tokens"], config["token_dim"]
    if peft_type == "PREFIX_TUNING":
        width *= 2 * config["num_layers"]
    ok = weight is not None and tuple(weight.shape) == (p, width) and weight.is_floating_point()
    if not ok or not torch.isfinite(weight).all():
        got = None if weight is None else f"{tuple(weight.shape)} {weight.dtype}"
        raise PromptFileError(f"{weights} should hold a finite float prompt_embeddings of shape {(p, width)} "
                              f"(from {ADAPTER_CONFIG}), got {got}; the adapter is damaged")  # fmt: skip
    info = AdapterInfo(path, peft_type, PEFT_KINDS[peft_type], config, weight.float(), record=record)
    if head is not None:
        info.head_meta = head_meta
        check_digest(head_file, head, head_meta.get("sha256"), ours=head_meta.get("format") == HEAD_FORMAT,
                      allow_unverified=allow_unverified)  # fmt: skip
        info.head = {k if k.startswith("linear.") else f"linear.{k}": v for k, v in head.items()}
        if set(info.head) != {"linear.weight", "linear.bias"}:
            raise PromptFileError(f"{path / HEAD_FILE} holds {sorted(head)}; a head is 'weight' (C, H) and 'bias' (C,)")
    return info


def _read_safetensors(path: Path, safe_open=None) -> tuple[dict[str, torch.Tensor], dict]:
    if safe_open is None:
        from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:
        raise PromptFileError(f"{path} is not a readable safetensors file ({type(e).__name__}); the adapter is damaged") from None


def _load_adapter(pm: nn.Module, info: AdapterInfo, *, strict: bool, require_head: bool) -> dict:
    lay, cfg, path = pm.layout, info.config, info.path
    if info.kind == "deep":
        want = {"num_virtual_tokens": lay.num_tokens, "num_layers": lay.num_layers,
                "token_dim": lay.num_kv_heads * lay.head_dim}  # fmt: skip
        heads = cfg.get("num_attention_heads")
        if lay.kind == "deep" and heads is not None and heads != lay.num_kv_heads:
            raise PromptFileError(f"{path} splits its prefix into {heads} heads, the model {pm.lm.name!r} has "
                                  f"{lay.num_kv_heads} key/value heads; the adapter was made for another model")  # fmt: skip
    else:
        want = {"num_virtual_tokens": lay.num_tokens, "token_dim": lay.hidden_size}
    bad = {k: (cfg[k], v) for k, v in want.items() if cfg[k] != v}
    if info.kind != lay.kind or bad:
        raise PromptFileError(
            f"{path} holds a {info.kind} prompt ({info.peft_type}) of {info.num_tokens} virtual tokens, but the model "
            f"{pm.lm.name!r} was built with a {lay.kind} prompt of {lay.num_tokens}"
            + (f" (adapter vs model: {bad})" if bad and info.kind == lay.kind else "")
            + f"; pass --prompt {info.kind} --num-tokens {info.num_tokens}"
            + (f" and the adapter's base model ({info.base_model})" if bad else "")
        )
    _check_model(path, info.record.get("model"), pm, strict)
    _check_head_kind(path, info.record.get("head", pm.head_kind), pm)
    if info.head is not None:
        _check_pooling(path, info.head_meta.get("pooling") or info.record.get("pooling"), pm)
    head_sd = None
    if pm.head_kind == "linear":
        if info.head is not None:
            head_sd = info.head
            _check_head(path / HEAD_FILE, pm.head, head_sd)
        elif require_head:
            raise PromptFileError(
                f"{path} has no {HEAD_FILE}, and the model's linear head would stay untrained. A linear head is "
                f"needed: save the classifier (an nn.Linear on {POOLING_TEXT[pm.pooling]}) as "
                f"{path / HEAD_FILE} with tensors 'weight' (C, H) and 'bias' (C,), or use --head verbalizer "
                "(the LM's own head over the label words)"
            )
    _write(pm, info.weight, head_sd)
    log.info("loaded a %s adapter (%d virtual tokens%s) from %s", info.peft_type, info.num_tokens,
             ", with its head" if head_sd is not None else "", path)  # fmt: skip
    return {"source": "peft", "peft_type": info.peft_type, "base_model": info.base_model, **info.record}
