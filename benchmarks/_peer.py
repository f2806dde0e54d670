"""The peer way of doing what crl-prompt does, written as the PEFT / P-Tuning v2 examples do it:
``get_peft_model(AutoModel, PrefixTuningConfig(FEATURE_EXTRACTION, 20 tokens))`` + a linear head
on the [CLS] state (last non-pad token for decoders), tokenizing each batch with the tokenizer.

Shared by the benchmark scripts; not part of the library.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn


def base_dir(name: str) -> str:
    """The directory (or hub id) the crl-prompt model name resolves to, for ``from_pretrained``."""
    from crlprompt.models import minilm_dir, smollm2_dir

    if name == "minilm":
        return str(minilm_dir())
    if name == "smollm2":
        return str(smollm2_dir())
    return name


def load_base(name: str):
    """``(AutoModel in fp32, tokenizer, arch)`` loaded the ordinary way (a copy separate from crl-prompt's)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from crlprompt.models import ENCODER_TYPES

    path = base_dir(name)
    config = AutoConfig.from_pretrained(path)
    arch = "encoder" if config.model_type in ENCODER_TYPES else "decoder"
    model = AutoModel.from_pretrained(path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    return model, tok, arch


def prefix_model(base: nn.Module, arch: str, num_tokens: int = 20):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    # FEATURE_EXTRACTION for both: the hidden states are what the linear head needs.
    return get_peft_model(base, PrefixTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=num_tokens))


class PeerClassifier(nn.Module):
    """PEFT prefix model + dropout + linear head on the pooled state; returns ``{"loss", "logits"}``."""

    def __init__(self, peft_model: nn.Module, hidden: int, num_labels: int, arch: str, *, dropout: float = 0.1, seed: int = 0):
        super().__init__()
        self.peft = peft_model
        self.arch = arch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, num_labels)

    def pooled(self, input_ids, attention_mask):
        out = self.peft(input_ids=input_ids, attention_mask=attention_mask)
        h = out.last_hidden_state
        if self.arch == "decoder":
            pos = attention_mask.sum(1) - 1
            return h[torch.arange(h.shape[0], device=h.device), pos]
        return h[:, 0]

    def forward(self, input_ids, attention_mask, labels=None, **_):
        logits = self.head(self.dropout(self.pooled(input_ids, attention_mask))).float()
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        self.peft.base_model.eval()  # frozen LM: no dropout inside it (as crl-prompt does)
        return self


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class PlainLoop:
    """A plain PyTorch loop: shuffle, tokenize each batch, forward, CE, backward, clip, AdamW step."""

    def __init__(self, model: PeerClassifier, tok, texts, labels, *, device, batch_size=32, lr=1e-2,
                 padding="max_length", max_length=64, seed=0, grad_clip=1.0):  # fmt: skip
        self.model, self.tok, self.device = model, tok, device
        self.texts, self.labels = list(texts), torch.as_tensor(labels, dtype=torch.long)
        self.bs, self.padding, self.max_length, self.grad_clip = batch_size, padding, max_length, grad_clip
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=lr)
        self.rng = np.random.default_rng(seed)
        self._batches: list[np.ndarray] = []
        self.positions = 0  # padded positions seen
        self.real = 0  # real tokens seen
        self.rows = 0  # examples seen
        self.last_loss = float("nan")

    def _next(self) -> np.ndarray:
        if not self._batches:
            order = self.rng.permutation(len(self.texts))
            self._batches = [order[i : i + self.bs] for i in range(0, len(order), self.bs)][::-1]
        return self._batches.pop()

    def steps(self, n: int) -> None:
        self.model.train()
        for _ in range(n):
            idx = self._next()
            enc = self.tok([self.texts[i] for i in idx], padding=self.padding, max_length=self.max_length,
                           truncation=True, return_tensors="pt")  # fmt: skip
            ids = enc["input_ids"].to(self.device, non_blocking=True)
            mask = enc["attention_mask"].to(self.device, non_blocking=True)
            labels = self.labels[idx].to(self.device, non_blocking=True)
            self.positions += ids.numel()
            self.real += int(enc["attention_mask"].sum())
            self.rows += len(idx)
            with autocast(self.device):
                loss = self.model(ids, mask, labels)["loss"]
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            self.opt.step()
            self.last_loss = loss.detach()


def tokenized_rows(tok, texts, labels, *, padding, max_length=64) -> list[dict]:
    """A list-of-dicts dataset, tokenized once up front (what the P-Tuning v2 code does with datasets.map)."""
    enc = tok(list(texts), padding=padding, max_length=max_length, truncation=True)
    return [
        {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": int(labels[i])}
        for i in range(len(texts))
    ]
