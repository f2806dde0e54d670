"""P-Tuning v1 (Liu et al. 2021a, "GPT Understands, Too"): a shallow prompt produced by a prompt encoder.

The virtual-token embeddings are not trained directly: a small network reparameterises them,

    θ = encoder(E)                  E: (tokens, hidden) trainable input embeddings

with PEFT's ``PromptEncoder`` architectures (``PromptEncoderConfig``), layer for layer:

* ``"mlp"``: Linear(hidden, h) → ReLU → Linear(h, h) → ReLU → Linear(h, hidden);
* ``"lstm"``: a 2-layer bidirectional LSTM(hidden → h), then Linear(2h, 2h) → ReLU → Linear(2h, hidden)
  (the LSTM head of the P-Tuning paper).

h = ``encoder_hidden_size`` (PEFT's default: the LM's hidden size). :class:`EncodedPrompt` is a
drop-in for :class:`~crlprompt.prompts.SoftPrompt` with ``kind="shallow"``: ``theta`` is the
flat ``(tokens * hidden,)`` encoder output, so the population forward, the RL term (its
gradient flows back through the encoder), the environment's center and ``save_prompt`` all see
the one canonical θ. The encoder is a training-time reparameterisation, as in PEFT, whose
inference mode keeps only the encoder's output: a saved P-Tuning v1 prompt is a plain shallow
prompt, and is re-evaluated as one.

``theta`` is recomputed when a parameter changed since the last call (the optimizer steps in
place and bumps the parameters' version counters), and reused otherwise, so all the terms of
one training step (CE, contrast, RL) differentiate through the same θ node. Writing θ in place
(``theta.copy_``, as env-only agents do) has no effect here: build those with plain prompts.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .errors import ConfigError
from .models import LoadedModel
from .prompts import PromptLayout

EncoderKind = Literal["mlp", "lstm"]
ENCODERS = ("mlp", "lstm")


class EncodedPrompt(nn.Module):
    """A shallow prompt θ = encoder(E), PEFT ``PromptEncoder`` style (see the module docstring).

    Args:
        layout: a shallow :class:`PromptLayout` (θ has ``tokens × hidden`` entries).
        lm: the frozen LM (unused but for symmetry with :class:`SoftPrompt`; may be None).
        encoder: ``"mlp"`` or ``"lstm"``.
        hidden_size: h of the encoder (None = the LM's hidden size, PEFT's default).
        num_layers: LSTM layers (PEFT's ``encoder_num_layers``; the MLP always has 3 linear layers).
        dropout: LSTM dropout between layers (PEFT's ``encoder_dropout``).
        seed: seeds E (N(0, 1), as ``nn.Embedding``) and the encoder's default init.
    """

    def __init__(
        self, layout: PromptLayout, lm: LoadedModel | None = None, *, encoder: EncoderKind = "mlp",
        hidden_size: int | None = None, num_layers: int = 2, dropout: float = 0.0, seed: int = 0,
    ):  # fmt: skip
        super().__init__()
        if layout.kind != "shallow" or layout.num_tokens < 1:
            raise ConfigError(f"P-Tuning v1 reparameterises a shallow prompt of >= 1 token, got {layout.kind} "
                              f"with {layout.num_tokens} tokens; use prompt='shallow'")  # fmt: skip
        if encoder not in ENCODERS:
            raise ConfigError(f"prompt encoder must be one of {ENCODERS}, got {encoder!r}")
        self.layout = layout
        self.kind = encoder
        dim = layout.hidden_size
        h = hidden_size or dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embedding = nn.Embedding(layout.num_tokens, dim)
            if encoder == "lstm":
                self.lstm_head = nn.LSTM(dim, h, num_layers=num_layers, dropout=dropout, bidirectional=True,
                                         batch_first=True)  # fmt: skip
                self.mlp_head = nn.Sequential(nn.Linear(2 * h, 2 * h), nn.ReLU(), nn.Linear(2 * h, dim))
            else:
                self.mlp_head = nn.Sequential(nn.Linear(dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, dim))
        self._cache: tuple[tuple[int, ...], torch.Tensor] | None = None

    def encode(self) -> torch.Tensor:
        """The virtual-token embeddings ``(tokens, hidden)``: encoder(E), PEFT's ``PromptEncoder.forward``."""
        e = self.embedding.weight.unsqueeze(0)  # (1, tokens, hidden)
        if self.kind == "lstm":
            e = self.lstm_head(e)[0]  # (1, tokens, 2h)
        return self.mlp_head(e)[0]

    @property
    def theta(self) -> torch.Tensor:
        """θ ∈ R^D, D = tokens × hidden: the flat encoder output (a non-leaf tensor while gradients are on)."""
        if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return self.encode().reshape(-1)
        key = tuple(p._version for p in self.parameters()) + tuple(id(p) for p in self.parameters())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.encode().reshape(-1))
        return self._cache[1]

    def train(self, mode: bool = True):
        self._cache = None  # dropout in the LSTM differs between modes
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        self._cache = None  # .to(device) / .half() make new parameter tensors
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"encoder={self.kind}, shape={self.layout.shape}, D={self.layout.dim}"


def peft_prompt_encoder_config(lm: LoadedModel, prompt: EncodedPrompt):
    """PEFT's ``PromptEncoderConfig`` (P_TUNING) with the same architecture as ``prompt``."""
    from peft import PromptEncoderConfig, TaskType

    lay = prompt.layout
    hidden = prompt.mlp_head[-1].in_features // (2 if prompt.kind == "lstm" else 1)
    return PromptEncoderConfig(
        task_type=TaskType.CAUSAL_LM if lm.arch == "decoder" else TaskType.FEATURE_EXTRACTION,
        num_virtual_tokens=lay.num_tokens, token_dim=lay.hidden_size, num_layers=lay.num_layers,
        num_attention_heads=lm.config.num_attention_heads, encoder_hidden_size=hidden,
        encoder_reparameterization_type=prompt.kind.upper(),
        encoder_num_layers=prompt.lstm_head.num_layers if prompt.kind == "lstm" else 2,
        encoder_dropout=prompt.lstm_head.dropout if prompt.kind == "lstm" else 0.0,
    )  # fmt: skip


def copy_into_peft(prompt: EncodedPrompt, peft_encoder: nn.Module) -> None:
    """Load ``prompt``'s E and encoder weights into a PEFT ``PromptEncoder`` (same parameter names)."""
    missing, unexpected = peft_encoder.load_state_dict(prompt.state_dict(), strict=False)
    if missing or unexpected:
        raise ConfigError(f"PEFT PromptEncoder layout differs: missing {missing}, unexpected {unexpected}")
