"""CRLAgent: Algorithm 1 of CRL-Prompt, and with β = γ = 0 plain P-Tuning v1/v2.

Phase 1 takes cross-entropy steps on the prompt (and linear head). Phase 2 takes
L = L_CE + β·L_contrast + γ·L_RL, where L_RL is non-zero every N-th optimizer step: the agent
hands its current θ to a :class:`~crlprompt.envs.SoftPromptEnv` as the center
(``reset(options={"center": θ})``), samples a ~ N(0, I), gets the reward r = accuracy of
P' = θ + σa on D_RL from ``env.step(a)``, and adds -r·log N(P'; θ, σ²I) with P' detached.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..batching import train_batches
from ..build import Setup
from ..losses import ESTIMATORS, cross_entropy_loss, info_nce_loss, reinforce_loss, reinforce_population_loss
from ..distributed import all_reduce_grads_, is_distributed, is_main, rank, world_size
from ..scoring import accuracy, autocast

log = logging.getLogger(__name__)


@dataclass
class CRLConfig:
    """Hyperparameters of Algorithm 1. Defaults are the paper's where it gives one."""

    lr: float = 1e-3
    """Learning rate of the prompt (and linear head); paper: 1e-3."""
    batch_size: int = 32
    """Examples per optimizer step; paper: 32."""
    phase1_epochs: float = 3.0
    """Epochs of cross-entropy only (Algorithm 1, phase 1 = Prompt v2 when the prompt is deep)."""
    phase2_epochs: float = 2.0
    """Epochs of CE + β·contrast + γ·RL (phase 2). 0 skips phase 2."""
    beta: float = 0.3
    """Weight β of the InfoNCE term; paper: 0.3. 0 turns the contrastive term off."""
    gamma: float = 2e-5
    """Weight γ of the REINFORCE term; paper: 2e-5. 0 turns RL off."""
    rl_interval: int = 100
    """N: the RL term is added every N-th phase-2 optimizer step; paper: 100."""
    sigma: float = 0.1
    """σ of the Gaussian policy N(θ, σ²I) (the paper leaves it open)."""
    rl_samples: int = 1
    """Perturbed prompts per RL update (1 = the paper's single sample); scored in one batched pass."""
    rl_estimator: str = "single"
    """single (faithful Eq. 5) | baseline | antithetic | ranks."""
    reward_batch_size: int | None = None
    """Score rewards on a seeded minibatch of D_RL of this size (None = all of D_RL, as in the paper)."""
    tau: float = 0.1
    """InfoNCE temperature τ; paper: 0.1."""
    num_negatives: int = 1
    """k noised-prompt negatives per example for InfoNCE (in-batch negatives are added too)."""
    negative_noise: float = 0.5
    """Std of the Gaussian noise that makes a negative prompt θ + ε."""
    prompt_dropout: float = 0.1
    """Dropout on the prompt vector in training; paper: 10%."""
    head_dropout: float = 0.1
    """Dropout before the linear head in training."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm (None = off)."""
    eval_batch_size: int = 64
    """Batch size for scoring D_RL / test."""

    def __post_init__(self):
        for f in ("lr", "tau", "sigma", "beta", "gamma", "phase1_epochs", "phase2_epochs", "negative_noise",
                  "prompt_dropout", "head_dropout", "weight_decay"):  # fmt: skip
            if not math.isfinite(getattr(self, f)):
                raise ValueError(f"{f} must be finite, got {getattr(self, f)!r}")
        if self.sigma > 1e6:
            raise ValueError(f"sigma must be <= 1e6 (σ² enters the RL gradient), got {self.sigma}")
        for name in ("lr", "batch_size", "tau", "sigma", "eval_batch_size", "rl_interval", "rl_samples"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("beta", "gamma", "phase1_epochs", "phase2_epochs", "num_negatives", "negative_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}")
        if self.rl_estimator not in ESTIMATORS:
            raise ValueError(f"rl_estimator must be one of {ESTIMATORS}, got {self.rl_estimator!r}")
        if self.rl_estimator == "antithetic" and self.rl_samples % 2:
            raise ValueError("rl_estimator='antithetic' needs an even rl_samples (pairs ε, -ε)")
        if self.rl_estimator == "ranks" and self.rl_samples < 2:
            raise ValueError("rl_estimator='ranks' needs rl_samples >= 2 (one sample has rank 0: a zero gradient)")
        if self.reward_batch_size is not None and self.reward_batch_size <= 0:
            raise ValueError(f"reward_batch_size must be > 0 or None, got {self.reward_batch_size}")


Callback = Callable[[str, dict], None]


def _jsonable(d: dict) -> dict:
    """Round-trip through JSON so configs compare equal after a save/load (tuples -> lists)."""
    return json.loads(json.dumps(d))


class CRLAgent:
    """Trains ``setup.model``'s prompt (and linear head) with Algorithm 1.

    Args:
        setup: model + tokenized train / D_RL / test splits (see :func:`crlprompt.build.build`).
        config: hyperparameters.
        seed: seeds torch (dropout, noise) and numpy (batch order, RL samples).
        log_dir: TensorBoard directory (``train/``, ``rl/``, ``eval/`` scalars), or None.
        callbacks: functions ``cb(event, record)`` called with ``"epoch"`` and ``"rl"`` records.
        progress: show a tqdm bar.
    """

    def __init__(
        self,
        setup: Setup,
        config: CRLConfig | None = None,
        *,
        seed: int = 0,
        log_dir: str | None = None,
        callbacks: list[Callback] = (),
        progress: bool = True,
    ):
        self.setup = setup
        self.cfg = config or CRLConfig()
        self.seed = seed
        self.model = setup.model
        self.model.prompt_dropout = self.cfg.prompt_dropout
        if self.model.head_kind == "linear":
            self.model.head.dropout.p = self.cfg.head_dropout
        if not is_main():  # rank 0 alone logs and shows progress
            log_dir, progress = None, False
        self.callbacks = list(callbacks)
        self.progress = progress
        self.writer = None
        if log_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir)
            except ImportError:
                log.warning("tensorboard is not installed; no TensorBoard logs (pip install tensorboard)")
        self.env = None
        self.step = 0  # optimizer steps, both phases
        self.phase2_step = 0
        self.history: list[dict] = []
        self._reward_mean: float | None = None  # running reward baseline (rl_estimator="baseline", K=1)

    # ------------------------------------------------------------------ helpers
    def _scalar(self, key: str, value: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar(key, value, self.step)

    def _rl_env(self):
        """The environment whose reward the RL term uses (built lazily, shares the model)."""
        if self.env is None:
            from ..envs import PromptSearch, SoftPromptEnv, SoftPromptVectorEnv

            search = PromptSearch(
                self.setup, sigma=self.cfg.sigma, projection_dim=None, projection_seed=0, reward="accuracy",
                reward_batch_size=self.cfg.reward_batch_size, max_rows=self.cfg.eval_batch_size * 2,
            )  # fmt: skip
            if self.cfg.rl_samples == 1:
                self.env = SoftPromptEnv(search=search)
            else:
                self.env = SoftPromptVectorEnv(self.cfg.rl_samples, search=search)
            self.env.reset(seed=self.seed)
        return self.env

    def _rl_loss(self, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
        """One REINFORCE term: center the env on θ, sample K actions, step, build -r log π."""
        theta = self.model.prompt.theta
        env = self._rl_env()
        env.reset(options={"center": theta.detach()})
        k, d = self.cfg.rl_samples, theta.numel()
        if self.cfg.rl_estimator == "antithetic":
            half = rng.standard_normal((k // 2, d), dtype=np.float32)
            actions = np.stack([half, -half], 1).reshape(k, d)
        else:
            actions = rng.standard_normal((k, d), dtype=np.float32)
        if k == 1:
            _, reward, _, _, info = env.step(actions[0])
            rewards = torch.tensor([reward])
        else:
            _, rew, _, _, info = env.step(actions)
            rewards = torch.as_tensor(rew, dtype=torch.float32)
        samples = env.search.perturb(torch.as_tensor(actions, device=theta.device))  # (K, D) = θ + σa
        if k == 1 and self.cfg.rl_estimator == "single":
            loss = reinforce_loss(theta, samples[0], rewards[0], self.cfg.sigma)
        elif k == 1 and self.cfg.rl_estimator == "baseline":
            # One sample: the baseline is a running mean of earlier rewards (0 before the first),
            # since the batch mean of a single reward would cancel it exactly.
            baseline = self._reward_mean if self._reward_mean is not None else 0.0
            loss = reinforce_population_loss(theta, samples, rewards, self.cfg.sigma, "baseline", baseline)
        else:
            loss = reinforce_population_loss(theta, samples, rewards, self.cfg.sigma, self.cfg.rl_estimator)
        mean_r = float(rewards.mean())
        self._reward_mean = mean_r if self._reward_mean is None else 0.9 * self._reward_mean + 0.1 * mean_r
        return loss, {"reward": float(rewards.mean()), "reward_max": float(rewards.max())}

    def _batch_loss(self, ids, mask, labels, phase: int, rng, weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Loss of one (shard of a) batch. ``weight`` = shard rows / global batch rows scales the
        per-example terms; the rank-identical RL term is scaled by 1/world instead."""
        cfg, pm = self.cfg, self.model
        use_contrast = phase == 2 and cfg.beta > 0
        theta = pm.prompt.theta
        if use_contrast:
            # One population forward: view 1 (CE + anchor), view 2 (positive), k noised negatives.
            noise = torch.randn(cfg.num_negatives, theta.numel(), device=theta.device) * cfg.negative_noise
            thetas = torch.cat([theta.unsqueeze(0), theta.unsqueeze(0), theta.unsqueeze(0) + noise])  # (2+k, D)
        else:
            thetas = theta.unsqueeze(0)
        with autocast(pm.device):
            feats = pm.features(ids, mask, thetas)  # (K, B, H); dropout makes views 1 and 2 differ
            logits = pm.head(feats[0]).float()  # (B, C)
        parts = {"ce": cross_entropy_loss(logits, labels)}
        loss = parts["ce"]
        if use_contrast:
            parts["contrast"] = info_nce_loss(feats[0], feats[1], feats[2:], tau=cfg.tau)
            loss = loss + cfg.beta * parts["contrast"]
        loss = loss * weight
        if phase == 2 and cfg.gamma > 0 and self.phase2_step % cfg.rl_interval == 0:
            rl, info = self._rl_loss(rng)
            # The RL term's own contribution to the gradient (not CE's): γ·‖∇θ L_RL‖.
            (g,) = torch.autograd.grad(rl, pm.prompt.theta, retain_graph=True)
            info["grad_norm"] = cfg.gamma * float(g.norm())
            parts["rl"] = rl
            loss = loss + cfg.gamma * rl / world_size()
            self._rl_info = info
        return loss, parts

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "rl") -> float:
        data = {"rl": self.setup.rl, "test": self.setup.test, "train": self.setup.train}[split]
        return accuracy(self.model, data, batch_size=self.cfg.eval_batch_size)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}

    def _restore(self, snap: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(snap, strict=False)

    # ------------------------------------------------------------------ training
    def learn(self, *, checkpoint: str | None = None, checkpoint_every: int = 100, resume: bool = True) -> dict:
        """Run phase 1 then phase 2; keep the prompt with the best D_RL accuracy; return a summary.

        Args:
            checkpoint: path of a resumable state file (:mod:`crlprompt.checkpoint`), written every
                ``checkpoint_every`` optimizer steps and at each epoch end. With ``resume`` and an
                existing file, training continues from it and ends with the same prompt, bit for
                bit on CPU, as an uninterrupted run with the same seed.

        Summary keys: ``rl_acc``/``test_acc`` (best-on-D_RL prompt after both phases),
        ``phase1_rl_acc``/``phase1_test_acc`` (best within phase 1 = the Prompt v1/v2 result),
        ``seconds``, ``steps``, ``history``, ``resumed_from_step``.
        """
        from tqdm.auto import tqdm

        cfg, pm = self.cfg, self.model
        torch.manual_seed(self.seed)
        self._rng = np.random.default_rng(self.seed)
        self._params = pm.trainable_parameters()
        self._opt = torch.optim.AdamW(self._params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self._steps_per_epoch = math.ceil(len(self.setup.train) / cfg.batch_size)
        plan = [(1, cfg.phase1_epochs), (2, cfg.phase2_epochs)]
        total = sum(math.ceil(e * self._steps_per_epoch) for _, e in plan)
        self._best: dict = {"acc": -1.0}
        self._phase1_best: dict | None = None
        self._progress = {"phase_idx": 0, "done": 0, "epoch": 0, "pos": 0, "sums": {}}
        self._batches: list[np.ndarray] | None = None
        self._elapsed = 0.0
        resumed = 0
        if checkpoint and resume and Path(checkpoint).exists():
            resumed = self._load_checkpoint(checkpoint)
            log.info("resumed from %s at step %d", checkpoint, resumed)
        self._t0 = time.perf_counter() - self._elapsed
        bar = tqdm(total=total, initial=self.step, desc="train", unit="step", disable=not self.progress, dynamic_ncols=True)
        try:
            self._train_phases(plan, bar, checkpoint, checkpoint_every)
        finally:
            bar.close()
        summary = self._finish(self._best, self._phase1_best, self._t0)
        summary["resumed_from_step"] = resumed
        return summary

    def _train_phases(self, plan, bar, checkpoint: str | None, every: int) -> None:
        """The loop, as a resumable state machine over (phase, epoch, batch position)."""
        cfg, pm, prog = self.cfg, self.model, self._progress
        while prog["phase_idx"] < len(plan):
            phase, epochs = plan[prog["phase_idx"]]
            budget = math.ceil(epochs * self._steps_per_epoch)
            if prog["done"] >= budget:  # phase over
                if phase == 1 and epochs > 0:
                    self._phase1_best = dict(self._best)
                prog.update(phase_idx=prog["phase_idx"] + 1, done=0, epoch=0, pos=0, sums={})
                continue
            if self._batches is None:  # a new epoch: its order comes from the seeded generator
                self._batches = train_batches(self.setup.train.lengths, cfg.batch_size, self._rng)
                prog.update(pos=0, sums={})
            pm.train()
            while prog["pos"] < len(self._batches) and prog["done"] < budget:
                idx = self._batches[prog["pos"]]
                self._rl_info = None
                if is_distributed():  # this rank's shard of the global batch
                    shard = idx[rank() :: world_size()]
                    weight = len(shard) / len(idx)
                    if len(shard) == 0:  # a tail batch smaller than the world: join with zero weight
                        shard, weight = idx[:1], 0.0
                else:
                    shard, weight = idx, 1.0
                ids, mask, labels = self.setup.train.batch(shard, pm.device)
                loss, parts = self._batch_loss(ids, mask, labels, phase, self._rng, weight)
                # On CUDA the check is a host sync, so it runs every 10th step there.
                if (pm.device.type == "cpu" or self.step % 10 == 0) and not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss at step {self.step} ({ {k: float(v) for k, v in parts.items()} }); "
                        "lower --lr or --gamma; the last good checkpoint was not overwritten"
                    )
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                all_reduce_grads_(self._params)  # sum of shard gradients = the global-batch gradient
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self._params, cfg.grad_clip)
                self._opt.step()
                self.step += 1
                prog["done"] += 1
                prog["pos"] += 1
                if phase == 2:
                    self.phase2_step += 1
                for k, v in parts.items():  # device tensors: no host sync per step
                    prog["sums"][k] = prog["sums"].get(k, 0.0) + v.detach()
                if self.step % 10 == 0:
                    for k, v in parts.items():
                        self._scalar(f"train/{k}", v.item())
                    bar.set_postfix(phase=phase, ce=f"{parts['ce'].item():.3f}")
                if self._rl_info is not None:
                    rec = {"step": self.step, **self._rl_info}
                    self._scalar("rl/reward", rec["reward"])
                    self._scalar("rl/grad_norm", rec["grad_norm"])
                    for cb in self.callbacks:
                        cb("rl", rec)
                bar.update(1)
                if checkpoint and every and self.step % every == 0 and is_main():
                    self._save_checkpoint(checkpoint)
            # epoch end: score D_RL, keep the best prompt
            prog["epoch"] += 1
            n_steps = max(1, prog["pos"])
            acc = self.evaluate("rl")
            rec = {"phase": phase, "epoch": prog["epoch"], "step": self.step, "rl_acc": acc,
                   "seconds": time.perf_counter() - self._t0}  # fmt: skip
            rec.update({f"train_{k}": float(v) / n_steps for k, v in prog["sums"].items()})
            self.history.append(rec)
            self._scalar("eval/acc", acc)
            log.info("phase %d epoch %d: D_RL acc %.4f", phase, prog["epoch"], acc)
            for cb in self.callbacks:
                cb("epoch", rec)
            if acc > self._best["acc"]:
                self._best.update(acc=acc, state=self._snapshot())
            self._batches = None
            prog.update(pos=0, sums={})
            if checkpoint and is_main():
                self._save_checkpoint(checkpoint)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, path: str) -> None:
        from ..checkpoint import optimizer_to_flat, save_state

        if not all(torch.isfinite(p).all() for p in self._params):
            raise FloatingPointError(
                f"non-finite loss/parameters: the prompt or head became NaN/inf by step {self.step}; lower --lr "
                f"or --gamma; the last good checkpoint {path} is kept"
            )
        tensors = {f"param.{k}": v for k, v in self._snapshot().items()}
        opt_t, opt_doc = optimizer_to_flat(self._opt)
        tensors.update(opt_t)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and self.model.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.model.device)
        if "state" in self._best:
            tensors.update({f"best.{k}": v for k, v in self._best["state"].items()})
        if self._phase1_best is not None and "state" in self._phase1_best:
            tensors.update({f"p1best.{k}": v for k, v in self._phase1_best["state"].items()})
        if self._batches is not None:
            tensors["batches.flat"] = torch.as_tensor(np.concatenate(self._batches), dtype=torch.long)
            tensors["batches.sizes"] = torch.as_tensor([len(b) for b in self._batches], dtype=torch.long)
        prog = dict(self._progress, sums={k: float(v) for k, v in self._progress["sums"].items()})
        env_rng = None if self.env is None else self.env.np_random.bit_generator.state
        doc = {
            "config": _jsonable(asdict(self.cfg)), "seed": self.seed, "step": self.step,
            "phase2_step": self.phase2_step, "progress": prog, "history": self.history,
            "best_acc": self._best["acc"], "phase1_best_acc": None if self._phase1_best is None else self._phase1_best["acc"],
            "reward_mean": self._reward_mean, "rng_numpy": self._rng.bit_generator.state, "rng_env": env_rng,
            "optimizer": opt_doc, "elapsed": time.perf_counter() - self._t0,
        }  # fmt: skip
        save_state(path, tensors, doc)

    def _load_checkpoint(self, path: str) -> int:
        from ..checkpoint import CheckpointError, load_state, optimizer_from_flat

        tensors, doc = load_state(path)
        if doc["config"] != _jsonable(asdict(self.cfg)) or doc["seed"] != self.seed:
            raise CheckpointError(f"{path} was written with another configuration or seed; delete it or use --overwrite")
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for k, v in tensors.items():
                if k.startswith("param."):
                    params[k[6:]].copy_(v)
        optimizer_from_flat(self._opt, tensors, doc["optimizer"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.model.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.model.device)
        self._rng.bit_generator.state = doc["rng_numpy"]

        def sub(prefix):
            return {k[len(prefix) :]: v.to(self.model.device) for k, v in tensors.items() if k.startswith(prefix)}

        self._best = {"acc": doc["best_acc"]}
        if sub("best."):
            self._best["state"] = sub("best.")
        if doc["phase1_best_acc"] is not None:
            self._phase1_best = {"acc": doc["phase1_best_acc"], "state": sub("p1best.")}
        if "batches.flat" in tensors:
            flat, sizes = tensors["batches.flat"].numpy(), tensors["batches.sizes"].tolist()
            self._batches = np.split(flat, np.cumsum(sizes)[:-1])
        self._progress = doc["progress"]
        self.step, self.phase2_step = doc["step"], doc["phase2_step"]
        self.history, self._reward_mean, self._elapsed = doc["history"], doc["reward_mean"], doc["elapsed"]
        if doc["rng_env"] is not None:
            self._rl_env().np_random.bit_generator.state = doc["rng_env"]
        return self.step

    def _finish(self, best: dict, phase1_best: dict | None, t0: float) -> dict:
        cfg = self.cfg
        summary = {"steps": self.step, "seconds": time.perf_counter() - t0, "history": self.history}
        if phase1_best is not None and cfg.phase2_epochs > 0:
            final_state = best["state"]
            self._restore(phase1_best["state"])
            summary["phase1_rl_acc"] = phase1_best["acc"]
            summary["phase1_test_acc"] = self.evaluate("test")
            self._restore(final_state)
        if "state" in best:
            self._restore(best["state"])
        summary["rl_acc"] = max(best["acc"], self.evaluate("rl")) if "state" not in best else best["acc"]
        summary["test_acc"] = self.evaluate("test")
        if "phase1_rl_acc" not in summary:
            summary["phase1_rl_acc"], summary["phase1_test_acc"] = summary["rl_acc"], summary["test_acc"]
        self._scalar("eval/test_acc", summary["test_acc"])
        if self.writer is not None:
            self.writer.flush()
        return summary

    def config_dict(self) -> dict:
        return asdict(self.cfg)
