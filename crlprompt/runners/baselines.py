"""The rows a compare run reports beside the search algorithms, per data seed: the start prompt,
HandCraft (the template and verbalizer with no prompt, where the head is a verbalizer) and the
gradient ceiling (prompt tuning by backprop on the same train rows, selected on the same D_RL
rows: :class:`~crlprompt.agents.crl.CRLAgent` with β = γ = 0 from the env's start)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterator

import numpy as np
import torch

from ..build import build_model
from ..scoring import accuracy


def baselines(
    search, *, seed: int = 0, grad_epochs: float = 50.0, grad_lr: float = 1e-2, skip: Collection[str] = ()
) -> Iterator[dict]:
    """Records of the start prompt, HandCraft (verbalizer heads only) and the gradient ceiling
    (those not named in ``skip``), each yielded as soon as it is scored."""
    setup = search.setup
    center = search.center.detach()
    if "start" not in skip:
        reward, _ = search.rewards(center[None], np.random.default_rng(seed))
        yield {"algo": "start", "seed": seed, "evals": 1, "example_forwards": len(search.data), "seconds": 0.0,
               "env_reward": float(reward[0]), "selected_rl_acc": accuracy(setup.model, setup.rl, theta=center),
               "selected_test_acc": accuracy(setup.model, setup.test, theta=center)}  # fmt: skip
    if setup.model.head_kind == "verbalizer" and "handcraft" not in skip:
        plain = build_model(setup.lm, setup.spec, prompt="shallow", num_tokens=0, head="verbalizer").to(search.model.device)
        none = torch.zeros(0)
        yield {"algo": "handcraft", "seed": seed, "evals": 0, "example_forwards": 0, "seconds": 0.0,
               "selected_rl_acc": accuracy(plain, setup.rl, theta=none),
               "selected_test_acc": accuracy(plain, setup.test, theta=none)}  # fmt: skip
    if "gradient" not in skip:
        yield {"algo": "gradient", "seed": seed, **gradient_ceiling(search, seed=seed, epochs=grad_epochs, lr=grad_lr)}


def gradient_ceiling(search, *, seed: int = 0, epochs: float = 50.0, lr: float = 1e-2) -> dict:
    """Prompt tuning by backprop from the env's start (θ and, for a linear head, the head) on the
    setup's train rows, keeping the epoch with the best D_RL accuracy: CRLAgent with β = γ = 0."""
    from ..agents.crl import CRLAgent, CRLConfig

    setup, c = search.setup, search.setup.config
    pm = build_model(setup.lm, setup.spec, prompt=c.prompt_kind, num_tokens=c.num_tokens, head=c.head_kind,
                     seed=c.seed, init="random").to(search.model.device)  # fmt: skip
    with torch.no_grad():
        pm.prompt.theta.copy_(search.center)
        if pm.head_kind == "linear":
            pm.head.load_state_dict(setup.model.head.state_dict())
    cfg = CRLConfig(lr=lr, phase1_epochs=epochs, phase2_epochs=0, beta=0.0, gamma=0.0)
    crl_log = logging.getLogger(CRLAgent.__module__)
    level = crl_log.level
    crl_log.setLevel(logging.WARNING)  # one line per epoch would bury the progress bar
    try:
        summary = CRLAgent(dataclasses.replace(setup, model=pm), cfg, seed=seed, progress=False).learn()
    finally:
        crl_log.setLevel(level)
    n_epochs = len(summary["history"])
    return {"evals": n_epochs, "example_forwards": summary["steps"] * cfg.batch_size + n_epochs * len(setup.rl),
            "steps": summary["steps"], "seconds": summary["seconds"], "lr": lr, "epochs": epochs,
            "selected_rl_acc": summary["rl_acc"], "selected_test_acc": summary["test_acc"]}  # fmt: skip
