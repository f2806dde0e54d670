"""The rows a compare run reports beside the search algorithms, per data seed:

* the **floors**, what a user gets with no prompt (:mod:`crlprompt.floors`): ``floor`` (frozen
  features pooled as the setup pools + a logistic regression, C chosen on D_RL), and for a
  verbalizer head ``handcraft`` (the template and the LM's label words, zero-shot) and, on
  decoders, ``icl`` (in-context demonstrations from the train rows);
* ``start``: the env's start prompt with the env's head;
* the **gradient ceiling**: prompt tuning by backprop on the same train rows with the same kind of
  head, the epoch best on D_RL kept (ties: lower D_RL loss): ``gradient-ptv2`` (the deep prefix from
  the env's start, Prompt v2), ``gradient-prompt-tuning`` (a shallow prompt of the same number of
  tokens) and ``gradient``, the one of the two better on D_RL (the strongest gradient method, chosen
  by the rule every run is selected by).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterator

import numpy as np
import torch

from ..build import build_model
from ..floors import handcraft_floor, icl_floor, probe_floor
from ..scoring import accuracy

#: The gradient ceiling's budget (compare's --grad-epochs / --grad-lr default to these).
GRADIENT_EPOCHS, GRADIENT_LR = 50.0, 1e-2
#: The gradient methods the ceiling is the best of: record name -> prompt kind.
GRADIENT_METHODS = {"gradient-ptv2": "deep", "gradient-prompt-tuning": "shallow"}


def baselines(
    search, *, seed: int = 0, grad_epochs: float = GRADIENT_EPOCHS, grad_lr: float = GRADIENT_LR,
    skip: Collection[str] = (),
) -> Iterator[dict]:
    """Records of the floors, the start prompt and the gradient ceiling (those not named in
    ``skip``), each yielded as soon as it is scored."""
    setup = search.setup
    center = search.center.detach()
    free = {"seed": seed, "evals": 0, "example_forwards": 0, "seconds": 0.0}
    if "floor" not in skip and setup.model.head_kind == "linear":
        f = probe_floor(setup)
        yield {"algo": "floor", **free, "c": f["c"], "pooling": f["pooling"], "selected_drl_acc": f["drl_acc"],
               "selected_test_acc": f["test_acc"]}  # fmt: skip
    if setup.model.head_kind == "verbalizer" and "handcraft" not in skip:
        f = handcraft_floor(setup)
        yield {"algo": "handcraft", **free, "selected_drl_acc": f["drl_acc"], "selected_test_acc": f["test_acc"]}
    if setup.model.head_kind == "verbalizer" and setup.lm.arch == "decoder" and "icl" not in skip:
        f = icl_floor(setup, seed=seed)
        yield {"algo": "icl", **free, "demos": f["demos"], "selected_drl_acc": f["drl_acc"],
               "selected_test_acc": f["test_acc"]}  # fmt: skip
    if "start" not in skip:
        reward, _ = search.rewards(center[None], np.random.default_rng(seed))
        yield {"algo": "start", "seed": seed, "evals": 1, "example_forwards": len(search.data), "seconds": 0.0,
               "env_reward": float(reward[0]), "selected_drl_acc": accuracy(setup.model, setup.drl, theta=center),
               "selected_test_acc": accuracy(setup.model, setup.test, theta=center)}  # fmt: skip
    if "gradient" not in skip:  # a method row already recorded is trained again (same seed, same result), not re-yielded
        recs = {}
        for name, kind in GRADIENT_METHODS.items():
            recs[name] = {"algo": name, "seed": seed, **gradient_ceiling(search, seed=seed, epochs=grad_epochs,
                                                                          lr=grad_lr, prompt=kind)}  # fmt: skip
            if name not in skip:
                yield recs[name]
        best = max(recs.values(), key=lambda r: (r["selected_drl_acc"], -(r.get("drl_loss") or 0.0)))
        yield {**best, "algo": "gradient", "method": best["algo"]}


def gradient_ceiling(search, *, seed: int = 0, epochs: float = GRADIENT_EPOCHS, lr: float = GRADIENT_LR,
                     prompt: str = "deep") -> dict:
    """Prompt tuning by backprop on the setup's train rows (θ and, for a linear head, the head), the
    epoch with the best D_RL accuracy kept: CRLAgent with β = γ = 0. A deep prompt starts at the
    env's start; a shallow one at its usual init (random token embeddings). A linear head starts
    as the probe fitted at the start prompt at C = ``CRLConfig.head_c`` (``head_init="probe"``; the
    record's ``head_c``)."""
    from ..agents.crl import CRLAgent, CRLConfig

    setup, c = search.setup, search.setup.config
    deep = prompt == "deep"
    pm = build_model(setup.lm, setup.spec, prompt=prompt, num_tokens=c.num_tokens, head=c.head_kind,
                     seed=c.seed, init="random", pooling=c.pooling, label_tokens=c.label_tokens).to(search.model.device)  # fmt: skip
    if deep and search.center.numel() == pm.layout.dim:
        with torch.no_grad():
            pm.prompt.theta.copy_(search.center)
    cfg = CRLConfig(lr=lr, phase1_epochs=epochs, phase2_epochs=0, beta=0.0, gamma=0.0, head_init="probe")
    crl_log = logging.getLogger(CRLAgent.__module__)
    level = crl_log.level
    crl_log.setLevel(logging.WARNING)  # one line per epoch would bury the progress bar
    try:
        summary = CRLAgent(dataclasses.replace(setup, model=pm), cfg, seed=seed, progress=False).learn()
    finally:
        crl_log.setLevel(level)
    n_epochs = len(summary["history"])
    return {"evals": n_epochs, "example_forwards": summary["steps"] * cfg.batch_size + n_epochs * len(setup.drl),
            "steps": summary["steps"], "seconds": summary["seconds"], "lr": lr, "epochs": epochs, "prompt": prompt,
            "head_c": cfg.head_c if c.head_kind == "linear" else None,
            "selected_drl_acc": summary["drl_acc"], "drl_loss": summary.get("drl_loss"),
            "selected_test_acc": summary["test_acc"]}  # fmt: skip
