"""A prefix adapter trained with plain PEFT, then evaluated, loaded and searched from by crl-prompt.

The PEFT side is what any PEFT user writes: ``get_peft_model(model, PrefixTuningConfig(...))``,
a linear head on the pooled feature (the last non-pad token of a decoder; [CLS] for an encoder),
cross-entropy steps, ``save_pretrained``, and the head saved beside the adapter as
``head.safetensors`` (tensors ``weight (C, H)`` and ``bias (C,)``). crl-prompt then reads that
directory three ways:

* ``crl-prompt eval --checkpoint DIR --task tiny --model tiny-llama`` (here its function,
  ``evaluate_checkpoint``): the same accuracy as PEFT's own forward;
* ``PromptClassifier.load(DIR, task="tiny", model="tiny-llama").predict(texts)``;
* ``gym.make("CRLPrompt/Tiny-v0", checkpoint=DIR, head="checkpoint")``: an environment whose
  center is the adapter's prompt and whose head is the adapter's head.

It runs in seconds: tiny-llama is a 2-layer Llama with random weights, built in code. On a hub
model the adapter names its base model itself, and only ``--task`` is needed.

    python examples/peft_interop.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from peft import PrefixTuningConfig, TaskType, get_peft_model
from safetensors.torch import save_file

from crlprompt import PromptClassifier, load_task
from crlprompt.models import load_model
from crlprompt.runners.train import evaluate_checkpoint

TOKENS, STEPS, BATCH, LR = 4, 120, 32, 3e-2


def pooled(model, tok, texts: list[str]) -> torch.Tensor:
    """The feature the head sees: the last non-pad token of the last hidden layer, ``(B, H)``."""
    batch = tok(texts, return_tensors="pt", padding=True)
    hidden = model(**batch, output_hidden_states=True).hidden_states[-1]  # (B, L, H)
    return hidden[torch.arange(len(texts)), batch["attention_mask"].sum(1) - 1]


def train_with_peft(out: Path) -> float:
    """Plain PEFT prefix tuning + a linear head on the tiny task; returns PEFT's own test accuracy."""
    torch.manual_seed(0)
    lm = load_model("tiny-llama")  # any AutoModelForCausalLM works the same way
    tok, base = lm.tokenizer, lm.full
    tok.padding_side = "right"
    model = get_peft_model(base, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=TOKENS))
    head = torch.nn.Linear(lm.hidden_size, 2)
    data = load_task("tiny")
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=LR)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(STEPS):
        idx = rng.choice(len(data.train), BATCH, replace=False)
        logits = head(pooled(model, tok, [data.train.texts[i] for i in idx]))
        loss = F.cross_entropy(logits, torch.as_tensor(data.train.labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = head(pooled(model, tok, data.test.texts)).argmax(1).numpy()
    model.save_pretrained(str(out))
    save_file({"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
              str(out / "head.safetensors"))  # fmt: skip
    return float((pred == data.test.labels).mean())


def main(out: str | None = None) -> dict:
    adapter = Path(out or tempfile.mkdtemp(prefix="peft-adapter-"))
    peft_acc = train_with_peft(adapter)
    res = evaluate_checkpoint(adapter, task="tiny", model="tiny-llama", device="cpu")
    clf = PromptClassifier.load(adapter, task="tiny", model="tiny-llama", device="cpu")
    predicted = clf.predict(["the movie was great", "a boring and awful film"])
    env = gym.make("CRLPrompt/Tiny-v0", checkpoint=str(adapter), head="checkpoint", device="cpu")
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))  # the center itself
    print(f"PEFT test accuracy {peft_acc:.4f} | crl-prompt eval {res['accuracy']:.4f} on {res['n']} rows | "
          f"predict {predicted} | env reward at the adapter's prompt {reward:.4f} (D_RL accuracy) | {adapter}")  # fmt: skip
    return {"peft_acc": peft_acc, "eval": res, "predicted": predicted, "center_reward": float(reward)}


if __name__ == "__main__":
    main(*sys.argv[1:2])
