"""Where a head reads its feature in the last hidden states: the pooling rules and how ``auto`` resolves."""

from __future__ import annotations

from typing import Literal

from .errors import ConfigError
from .models import LoadedModel

Pooling = Literal["cls", "mean", "mask", "last"]
POOLINGS = ("cls", "mean", "mask", "last")
"""Where a head reads its feature in the last hidden states (prompt positions are never pooled):

* ``cls``: the first input token ([CLS]; after a shallow prompt's virtual tokens);
* ``mean``: the mean over the input tokens (attention mask 1, special tokens included), as
  sentence-transformers pools; the prompt's positions are excluded;
* ``mask``: the [MASK] token (an encoder's verbalizer);
* ``last``: the last non-pad token (decoders, right padding; a decoder's verbalizer).
"""


def resolve_pooling(pooling: str, lm: LoadedModel, head: str) -> Pooling:
    """The pooling a setup asks for made explicit.

    ``auto`` pools the way the model was trained: a verbalizer reads the position its LM head
    predicts ([MASK] for encoders, the last token for decoders); a linear head reads the
    checkpoint's own sentence pooling (:attr:`LoadedModel.trained_pooling`: ``mean`` for
    all-MiniLM-L6-v2, read from its packaged pooling config), else [CLS] for encoders and the last
    token for decoders. ``legacy`` is the rule of runs saved before pooling was an option (the same,
    except that encoders' linear heads always read [CLS]); their run directories lack the field.
    """
    decoder = lm.arch == "decoder"
    if head == "verbalizer":
        want = "last" if decoder else "mask"
        if pooling not in ("auto", "legacy", want):
            raise ConfigError(f"head='verbalizer' reads the LM head's own position: pooling must be {want!r} "
                              f"(or 'auto') for this {lm.arch}, got {pooling!r}")  # fmt: skip
        return want
    if pooling == "legacy":
        return "last" if decoder else "cls"
    if pooling == "auto":
        return lm.trained_pooling or ("last" if decoder else "cls")
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {('auto', *POOLINGS)}, got {pooling!r}")
    return pooling  # type: ignore[return-value]
