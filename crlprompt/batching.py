"""Tokenize once, batch many times: pre-padded id tensors, dynamic padding, length bucketing.

Texts are tokenized a single time into one right-padded ``(n, max_len)`` tensor; a batch is a
row gather trimmed to its own longest row, so no step pays for the corpus-wide max length and
no step calls the tokenizer. Training batches are length-bucketed (shuffle, sort within chunks
of 50 batches, shuffle the batches), which cuts padding further without fixing the order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
import torch

from .errors import ConfigError
from .tasks import Split, TaskSpec

Template = Literal["none", "mlm", "lm"]


@dataclass
class Encoded:
    """A tokenized split: ``ids (n, L)`` right-padded int64, ``lengths (n,)``, ``labels (n,)``."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def batch(self, idx: np.ndarray | torch.Tensor, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids (B, Lb), attention_mask (B, Lb), labels (B,))`` trimmed to the batch's max length."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        lengths = self.lengths[idx]
        width = int(lengths.max())
        ids = self.ids[idx, :width]
        mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()
        labels = self.labels[idx]
        if device is not None:
            ids, mask, labels = ids.to(device, non_blocking=True), mask.to(device), labels.to(device)
        return ids, mask, labels

    def subset(self, idx: np.ndarray) -> "Encoded":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        lengths = self.lengths[idx]
        width = int(lengths.max()) if len(idx) else 0
        return Encoded(self.ids[idx, :width].clone(), lengths.clone(), self.labels[idx].clone())


def render(spec: TaskSpec | None, text: str, template: Template, mask_token: str | None) -> str:
    if template == "none" or spec is None:
        return text
    if template == "mlm":
        return spec.render(text, mask_token or "[MASK]")
    return spec.render(text, "", lm=True).rstrip()


def encode(
    split: Split,
    tokenizer,
    *,
    spec: TaskSpec | None = None,
    template: Template = "none",
    max_length: int = 128,
) -> Encoded:
    """Tokenize every text once (with the task template for verbalizer heads)."""
    texts = [render(spec, t, template, getattr(tokenizer, "mask_token", None)) for t in split.texts]
    rows = tokenizer(texts, truncation=True, max_length=max_length, padding=False)["input_ids"] if texts else []
    if template == "mlm":  # truncation must not cut the [MASK] away
        mid = tokenizer.mask_token_id
        bad = [i for i, r in enumerate(rows) if mid not in r]
        if bad:
            raise ConfigError(
                f"{len(bad)} inputs lost their [MASK] token to truncation at max_length={max_length}; "
                "raise --max-length or use a template with the mask first"
            )
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = int(lengths.max()) if len(rows) else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return Encoded(ids, lengths, torch.as_tensor(split.labels, dtype=torch.long))


def train_batches(
    lengths: torch.Tensor, batch_size: int, rng: np.random.Generator, *, bucket: bool = True, chunk: int = 50
) -> list[np.ndarray]:
    """One epoch of index batches: shuffled; with ``bucket``, similar lengths share a batch."""
    n = len(lengths)
    order = rng.permutation(n)
    if bucket:
        lens = lengths.numpy()
        span = batch_size * chunk
        order = np.concatenate(
            [c[np.argsort(lens[c], kind="stable")] for c in np.array_split(order, max(1, -(-n // span)))]
        )
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def eval_batches(lengths: torch.Tensor, batch_size: int) -> Iterator[np.ndarray]:
    """Deterministic batches sorted by length (least padding) for scoring."""
    order = np.argsort(lengths.numpy(), kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]
