"""The soft prompt, its heads, and the population forward.

One canonical flat parameter vector θ ∈ R^D holds a prompt. Its layout is PEFT's, so that a
trained prompt *is* a PEFT adapter weight (``prompt_encoder.embedding.weight``) reshaped:

* deep prefix (P-Tuning v2, ``kind="deep"``): ``(tokens, layers, 2, kv_heads, head_dim)``
  (2 = key, value), D = tokens × layers × 2 × kv_hidden; 92,160 for MiniLM with 20 tokens,
  368,640 for RoBERTa-base.
* shallow (P-Tuning v1 / prompt tuning, ``kind="shallow"``): ``(tokens, hidden)`` input embeddings.

:class:`PromptedModel` scores a **population** of K prompts over one batch of B examples in a
single model call: each of the K·B rows carries its own prefix. K = 1 is the ordinary forward;
the environment and the REINFORCE/ES estimators use K > 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .models import LoadedModel, ModelError, cache_kwargs
from .pooling import POOLINGS, Pooling, resolve_pooling  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

#: P-Tuning v2's dropout on the prompt vector in training (the paper's 10%): the one default of every caller.
PROMPT_DROPOUT = 0.1

PromptKind = Literal["deep", "shallow"]
HeadKind = Literal["linear", "verbalizer"]


@dataclass(frozen=True)
class PromptLayout:
    """Shape of a soft prompt for one model; ``dim`` is D, the flat vector's length."""

    kind: PromptKind
    num_tokens: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int

    @classmethod
    def for_model(cls, lm: LoadedModel, kind: PromptKind, num_tokens: int) -> "PromptLayout":
        if kind not in ("deep", "shallow"):
            raise ConfigError(f"prompt kind must be 'deep' or 'shallow', got {kind!r}")
        if num_tokens < 0 or (num_tokens == 0 and kind == "deep"):
            raise ConfigError(f"num_tokens must be >= 1 (0 allowed for kind='shallow': no prompt), got {num_tokens}")
        return cls(kind, num_tokens, lm.num_layers, lm.num_kv_heads, lm.head_dim, lm.hidden_size)

    @property
    def shape(self) -> tuple[int, ...]:
        if self.kind == "deep":
            return (self.num_tokens, self.num_layers, 2, self.num_kv_heads, self.head_dim)
        return (self.num_tokens, self.hidden_size)

    @property
    def dim(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


INITS = ("auto", "random", "tokens", "zero")


def auto_init(kind: str, arch: str | None) -> str:
    """What ``init="auto"`` means for a prompt kind on a model architecture (see :class:`SoftPrompt`)."""
    if kind != "deep" or arch is None:
        return "random"
    return "tokens" if arch == "decoder" else "zero"


class SoftPrompt(nn.Module):
    """A trainable prompt θ ∈ R^D (``self.theta``), viewed through a :class:`PromptLayout`.

    Initialisation (``init``):

    * ``"random"``: deep prefixes draw N(0, 1), as PEFT's and P-Tuning v2's embedding does;
      shallow prompts copy the embeddings of random vocabulary tokens (the usual prompt-tuning init).
    * ``"tokens"`` (deep only): the keys/values the frozen LM itself computes for P random
      vocabulary tokens (Li & Liang's "activations of real words"). Decoders need it: a random
      N(0, 1) prefix in all 30 layers of SmolLM2 is far from any context the model has seen
      (probably disturbing the attention it sinks into its first position; not verified), and
      prefix tuning from there does not recover (TREC test
      accuracy 0.354 ± 0.203 over 3 seeds at lr 1e-2, 0.38 and 0.26 at lr 1e-3 and 3e-3, against
      0.95 for a shallow prompt).
    * ``"zero"``: every key, value (deep) or embedding (shallow) 0. A deep zero prefix is the
      neutral start: its keys give every query the attention logit 0 and its values add nothing, so
      the unprompted features change only through the attention mass the P positions take.
    * ``"auto"`` (default): ``"tokens"`` for decoders' deep prefixes, ``"zero"`` for encoders' deep
      prefixes (a start at the no-prompt features), ``"random"`` otherwise.
    """

    def __init__(self, layout: PromptLayout, lm: LoadedModel | None = None, *, seed: int = 0, init: str = "auto"):
        super().__init__()
        self.layout = layout
        if init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {init!r}")
        if init == "auto":
            init = auto_init(layout.kind, None if lm is None else lm.arch)
        g = torch.Generator().manual_seed(seed)
        if init == "zero":
            value = torch.zeros(layout.dim)
        elif layout.kind == "shallow" and lm is not None:
            emb = lm.input_embeddings().weight.detach().float().cpu()
            ids = torch.randint(0, emb.shape[0], (layout.num_tokens,), generator=g)
            value = emb[ids].reshape(-1).clone()
        elif init == "tokens" and lm is not None and layout.num_tokens > 0:
            value = _token_prefix(lm, layout, g)
        else:
            value = torch.randn(layout.dim, generator=g)
        self.theta = nn.Parameter(value)

    def extra_repr(self) -> str:
        return f"kind={self.layout.kind}, shape={self.layout.shape}, D={self.layout.dim}"

    @classmethod
    def from_text(cls, layout: PromptLayout, lm: LoadedModel, text: str) -> "SoftPrompt":
        """A prompt that holds a real text: the frozen LM's own keys/values of its tokens (deep) or
        their input embeddings (shallow); see :func:`text_prompt_ids` for how it fills P tokens."""
        prompt = cls(layout, None, init="random")
        with torch.no_grad():
            prompt.theta.copy_(text_theta(lm, layout, text))
        return prompt


@torch.no_grad()
def _token_prefix(lm: LoadedModel, layout: PromptLayout, g: torch.Generator) -> torch.Tensor:
    """θ holding the frozen LM's own keys/values for P random vocabulary tokens, in θ's layout."""
    vocab = lm.input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (layout.num_tokens,), generator=g).to(lm.input_embeddings().weight.device)
    return _kv_theta(lm, ids)


@torch.no_grad()
def _kv_theta(lm: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    """θ ``(D,)`` of a deep prefix holding the frozen LM's own keys/values for the tokens ``ids`` ``(P,)``."""
    from transformers import DynamicCache

    cache = DynamicCache()
    lm.body(input_ids=ids[None], attention_mask=torch.ones_like(ids[None]), use_cache=True,
            **cache_kwargs(lm.body, cache))  # fmt: skip
    # each layer: keys/values (1, kv_heads, P, head_dim) -> (P, L, 2, kv_heads, head_dim)
    kv = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])  # (L, 2, H, P, d)
    return kv.permute(3, 0, 1, 2, 4).reshape(-1).float().cpu().clone()


def text_prompt_ids(lm: LoadedModel, text: str, num_tokens: int) -> torch.Tensor:
    """``(num_tokens,)`` token ids of ``text`` (no special tokens): its last ``num_tokens`` tokens
    when longer, else left-padded with a boundary token (BOS, else EOS, else [CLS], else pad);
    an empty text is boundary tokens only."""
    tok = lm.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"] if text else []
    if len(ids) > num_tokens:
        log.warning("the start text has %d tokens, more than num_tokens=%d: keeping its last %d", len(ids), num_tokens,
                    num_tokens)  # fmt: skip
        ids = ids[-num_tokens:]
    filler = next(t for t in (tok.bos_token_id, tok.eos_token_id, tok.cls_token_id, tok.pad_token_id, 0) if t is not None)
    return torch.tensor([filler] * (num_tokens - len(ids)) + list(ids), dtype=torch.long)


@torch.no_grad()
def text_theta(lm: LoadedModel, layout: PromptLayout, text: str) -> torch.Tensor:
    """θ ``(D,)`` holding ``text`` in ``layout``: keys/values the LM computes for it (deep), or its
    token embeddings (shallow)."""
    if layout.num_tokens == 0:
        return torch.zeros(0)
    emb = lm.input_embeddings().weight
    ids = text_prompt_ids(lm, text, layout.num_tokens).to(emb.device)
    if layout.kind == "shallow":
        return emb[ids].detach().float().cpu().reshape(-1).clone()
    return _kv_theta(lm, ids)


class LinearHead(nn.Module):
    """Dropout + linear classifier on a pooled feature ``(R, hidden) -> (R, C)``."""

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, num_labels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(h))


#: how a verbalizer word of several sub-tokens is scored at the answer position (OpenPrompt's
#: multi-token handlers): ``mean`` of its sub-tokens' logits, or its ``first`` sub-token alone (the rule
#: of runs saved before the option). A word of one token scores the same under both.
LABEL_TOKENS = ("mean", "first")


class VerbalizerHead(nn.Module):
    """The frozen LM head's logits over the label words: ``(R, hidden) -> (R, C)``.

    ``label_token_ids[c]`` is the token id of class c's word, or the list of its sub-tokens' ids, whose
    logits at the answer position are averaged (a word scored by its first sub-token alone lets a
    common prefix such as SmolLM2's " Ab" of " Abbreviation" take every row)."""

    def __init__(self, lm_head: nn.Module, label_token_ids: list[int] | list[list[int]]):
        super().__init__()
        self.lm_head = lm_head
        words = [[int(t) for t in w] if isinstance(w, (list, tuple)) else [int(w)] for w in label_token_ids]
        if any(not w for w in words):
            raise ConfigError("every verbalizer word needs at least one token id")
        width = max(len(w) for w in words)
        ids = torch.tensor([w + [w[0]] * (width - len(w)) for w in words], dtype=torch.long)  # (C, T), padded
        mask = torch.tensor([[1.0] * len(w) + [0.0] * (width - len(w)) for w in words])
        self.register_buffer("label_token_ids", ids, persistent=False)
        self.register_buffer("label_token_mask", mask / mask.sum(1, keepdim=True), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        flat = self.label_token_ids.reshape(-1)
        if isinstance(self.lm_head, nn.Linear):  # decoders: only the label words' rows of the unembedding
            w = self.lm_head.weight[flat]
            b = None if self.lm_head.bias is None else self.lm_head.bias[flat]
            logits = F.linear(h, w, b)
        else:
            logits = self.lm_head(h)[..., flat]
        logits = logits.reshape(*h.shape[:-1], *self.label_token_ids.shape)  # (..., C, T)
        if logits.shape[-1] == 1:
            return logits[..., 0]
        return (logits * self.label_token_mask.to(logits.dtype)).sum(-1)


def label_token_ids(lm: LoadedModel, words: tuple[str, ...], *, label_tokens: str = "mean") -> list[list[int]]:
    """The token ids of each verbalizer word (with a leading space for BPE decoders): all its
    sub-tokens (``label_tokens="mean"``) or the first one alone (``"first"``); see :data:`LABEL_TOKENS`."""
    if label_tokens not in LABEL_TOKENS:
        raise ConfigError(f"label_tokens must be one of {LABEL_TOKENS}, got {label_tokens!r}")
    ids = []
    for w in words:
        text = f" {w}" if lm.arch == "decoder" else w
        toks = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not toks:
            raise ConfigError(f"verbalizer word {w!r} tokenizes to nothing for model {lm.name}")
        if len(toks) > 1:
            how = "the mean of their logits" if label_tokens == "mean" else "its first token alone"
            log.info("verbalizer word %r is %d tokens for %s; scoring %s", w, len(toks), lm.name, how)
        ids.append(list(toks) if label_tokens == "mean" else [toks[0]])
    if len({tuple(t) for t in ids}) != len(ids):
        raise ConfigError(f"verbalizer words {words} score the same tokens for model {lm.name}; choose other words")
    return ids


class PromptedModel(nn.Module):
    """Frozen LM + soft prompt + head; ``forward`` scores a population of prompts.

    Args:
        lm: the frozen model.
        prompt: the trainable soft prompt (its ``theta`` is the default single prompt).
        head: ``"linear"`` (trained with the prompt) or ``"verbalizer"`` (frozen LM head).
        num_labels: C.
        label_ids: per class, the verbalizer word's token id or its sub-tokens' ids (``head="verbalizer"``
            only; :class:`VerbalizerHead`).
        prompt_dropout: dropout on θ in training mode (P-Tuning v2's prefix dropout).
        pooling: where the head reads its feature (:data:`POOLINGS`, or ``auto`` / ``legacy``:
            :func:`resolve_pooling`).
    """

    def __init__(
        self,
        lm: LoadedModel,
        prompt: SoftPrompt,
        head: HeadKind,
        num_labels: int,
        *,
        label_ids: list[int] | list[list[int]] | None = None,
        prompt_dropout: float = PROMPT_DROPOUT,
        head_dropout: float = 0.1,
        pooling: str = "auto",
    ):
        super().__init__()
        self.pooling = resolve_pooling(pooling, lm, head)
        self.lm = lm
        self.body = lm.body  # registered so .to(device) moves it; frozen
        self.prompt = prompt
        self.head_kind = head
        self.prompt_dropout = prompt_dropout
        if head == "linear":
            self.head = LinearHead(lm.hidden_size, num_labels, head_dropout)
        elif head == "verbalizer":
            if lm.lm_head is None:
                raise ModelError(
                    f"model {lm.name!r} has no MLM/LM head, so head='verbalizer' cannot work; "
                    "use head='linear' or a checkpoint with an LM head (e.g. roberta-base, smollm2)"
                )
            if label_ids is None or len(label_ids) != num_labels:
                raise ConfigError("head='verbalizer' needs the label word's token ids for each class")
            self.head = VerbalizerHead(lm.lm_head, label_ids)
        else:
            raise ConfigError(f"head must be 'linear' or 'verbalizer', got {head!r}")
        self.mask_token_id = getattr(lm.tokenizer, "mask_token_id", None)

    # ------------------------------------------------------------------ parameters
    @property
    def layout(self) -> PromptLayout:
        return self.prompt.layout

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameter counts, the frozen LM included in total."""
        trainable = sum(p.numel() for p in self.trainable_parameters())
        return trainable, trainable + self.lm.num_parameters()

    def train(self, mode: bool = True):
        super().train(mode)
        self.body.eval()  # the frozen LM never runs its own dropout
        return self

    # ------------------------------------------------------------------ forward
    def _past_key_values(self, thetas: torch.Tensor, batch: int):
        """Per-row prefix cache: ``thetas (K, D)`` -> a DynamicCache of K·B rows, row k·B+b = prompt k."""
        from transformers import DynamicCache

        lay = self.layout
        k = thetas.shape[0]
        kv = thetas.view(k, lay.num_tokens, lay.num_layers, 2, lay.num_kv_heads, lay.head_dim)
        kv = kv.permute(2, 3, 0, 4, 1, 5)  # (L, 2, K, kv_heads, P, head_dim)

        def rows(t: torch.Tensor) -> torch.Tensor:  # (K, H, P, d) -> (K*B, H, P, d), row k*B+b = prompt k
            return t.unsqueeze(1).expand(-1, batch, -1, -1, -1).reshape(k * batch, *t.shape[1:])

        # unbind, not kv[i, 0]: each indexed select's backward would zero-fill the whole KV tensor
        return DynamicCache([(rows(key), rows(val)) for key, val in (layer.unbind(0) for layer in kv.unbind(0))])

    def features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, thetas: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled features ``(K, B, hidden)`` for K prompts ``thetas (K, D)`` over a batch ``(B, L)``,
        pooled as ``self.pooling`` says (:data:`POOLINGS`); prompt positions are never pooled."""
        if thetas is None:
            thetas = self.prompt.theta.unsqueeze(0)
        if self.training and self.prompt_dropout > 0:
            thetas = F.dropout(thetas, self.prompt_dropout)
        k, (b, length) = thetas.shape[0], input_ids.shape
        p = self.layout.num_tokens
        rows_ids = input_ids.repeat(k, 1)  # (K*B, L)
        rows_mask = attention_mask.repeat(k, 1)
        full_mask = torch.cat([rows_mask.new_ones(k * b, p), rows_mask], dim=1)  # (K*B, P+L)
        thetas = thetas.to(self.dtype)
        if p == 0:  # no prompt at all (HandCraft: template + verbalizer only)
            out = self.body(input_ids=rows_ids, attention_mask=rows_mask, use_cache=False)
            offset = 0
        elif self.layout.kind == "deep":
            out = self.body(
                input_ids=rows_ids, attention_mask=full_mask, use_cache=False,
                **cache_kwargs(self.body, self._past_key_values(thetas, b)),
            )  # fmt: skip
            offset = 0
        else:
            emb = self.lm.input_embeddings()(rows_ids)  # (K*B, L, H)
            soft = thetas.view(k, 1, p, -1).expand(k, b, p, -1).reshape(k * b, p, -1)
            out = self.body(inputs_embeds=torch.cat([soft, emb], dim=1), attention_mask=full_mask, use_cache=False)
            offset = p
        hidden = out.last_hidden_state[:, offset:]  # (K*B, L, H): the input positions only
        if self.pooling == "mean":
            m = rows_mask.to(hidden.dtype).unsqueeze(2)  # (K*B, L, 1)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        else:
            pos = self._pool_positions(rows_ids, rows_mask)
            pooled = hidden[torch.arange(k * b, device=hidden.device), pos]  # (K*B, H)
        return pooled.view(k, b, -1)

    def _pool_positions(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pooled position of each row (``cls``, ``mask``, ``last``), counted from the first input token."""
        if self.pooling == "last":
            return mask.sum(1) - 1
        if self.pooling == "mask":
            is_mask = ids == self.mask_token_id
            if not bool(is_mask.any(1).all()):
                raise ConfigError("pooling='mask' (a verbalizer on an encoder) needs a [MASK] token in every input "
                                  "(apply the template)")  # fmt: skip
            return is_mask.int().argmax(1)
        return torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, thetas: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class logits ``(K, B, C)`` (float32) for prompts ``thetas (K, D)`` (default: K=1, own θ)."""
        h = self.features(input_ids, attention_mask, thetas)
        return self.head(h).float()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.body.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return self.prompt.theta.device


# ---------------------------------------------------------------------- file I/O
# Prompt files and PEFT adapters live in crlprompt.prompt_io; these names stay importable from here.
_MOVED = ("PROMPT_FILE", "save_prompt", "load_prompt", "save_peft_adapter", "peft_config", "peft_model_with_theta")


def __getattr__(name: str):
    if name in _MOVED:  # imported on first use: prompt_io imports this module
        from . import prompt_io

        return getattr(prompt_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
