"""CRLAgent: Algorithm 1 of CRL-Prompt, and with β = γ = 0 plain P-Tuning v1/v2.

Phase 1 takes cross-entropy steps on the prompt (and linear head). Phase 2 takes
L = L_CE + β·L_contrast + γ·L_RL, where L_RL is non-zero at phase-2 steps N, 2N, ...: the agent
hands its current θ to a :class:`~crlprompt.envs.SoftPromptEnv` as the center
(``reset(options={"center": θ})``), samples a ~ N(0, I), gets the reward r = accuracy of
P' = θ + σa on D_RL from ``env.step(a)``, and adds -r·log N(P'; θ, σ²I) with P' detached.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..batching import train_batches
from ..build import Setup
from ..checkpoint import TrainState, load_train_state, save_train_state
from ..data.splits import split_name
from ..distributed import all_reduce_grads_, is_main, shard_batch, world_size
from ..losses import cross_entropy_loss, estimator_loss, info_nce_loss, sample_actions
from ..losses.offpolicy import ReplayRLTerm
from ..losses.race import race_rl_term
from ..losses.supervised import contrastive_loss, contrastive_prompts
from ..floors import PROBE_CS, fit_probe_head
from ..scoring import accuracy, autocast, score_population
from .base import SearchEvent, takes_two_arguments
from .crl_config import CRLConfig

log = logging.getLogger(__name__)


#: ``cb(event)`` with a :class:`~crlprompt.agents.base.SearchEvent` (``kind`` "rl" or "epoch"), or
#: the short form ``cb(kind, record)``.
EventCallback = Callable[[SearchEvent], None] | Callable[[str, dict], None]

#: D_RL sizes below this get a log line: accuracy steps of 1/n make epochs tie (ties go to the lower loss).
SMALL_HOLDOUT = 50


class CRLAgent:
    """Trains ``setup.model``'s prompt (and linear head) with Algorithm 1.

    Args:
        setup: model + tokenized train / D_RL / test splits (see :func:`crlprompt.build.build`).
        config: hyperparameters.
        seed: seeds torch (dropout, noise) and numpy (batch order, RL samples).
        log_dir: TensorBoard directory (``train/``, ``rl/``, ``eval/`` scalars), or None.
        callbacks: functions called after each RL step and each epoch, with the search agents'
            protocol: ``cb(event)`` gets a :class:`~crlprompt.agents.base.SearchEvent` whose
            ``kind`` is ``"rl"`` (``rewards``/``accuracies``: the K samples' rewards and D_RL
            accuracies; ``evals``: RL evaluations so far, K per RL step; ``best_reward``: the best
            sample reward this process has seen; ``diagnostics``: the record below) or ``"epoch"``
            (``rewards``: the epoch's D_RL accuracy; ``best_reward``: the best D_RL accuracy so far;
            ``best_prompt``: None). A function of two arguments is called ``cb(kind, record)``:
            ``"rl"`` records hold ``step``, ``reward``, ``reward_max``, ``grad_norm``, ``seconds``
            (the RL term's wall time) and the estimator's own (``ess``, ``buffer``, ``truncated``;
            ``race_forwards``); ``"epoch"`` records are the entries of the summary's ``history``.
            Return values are ignored (training does not stop early).
        progress: show a tqdm bar.

    ``learn()`` is the whole of Algorithm 1; where it stands (steps, phase, epoch, batch order,
    best prompts, history) is ``self.state``, a :class:`~crlprompt.checkpoint.TrainState` that
    :func:`~crlprompt.checkpoint.save_train_state` writes for a resume.
    """

    def __init__(
        self,
        setup: Setup,
        config: CRLConfig | None = None,
        *,
        seed: int = 0,
        log_dir: str | None = None,
        callbacks: list[EventCallback] = (),
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
        self.log_dir = log_dir
        self.callbacks = list(callbacks)
        self._best_rl_reward = -math.inf  # for "rl" events (not checkpointed: a resumed run starts again)
        self.progress = progress
        self.writer = None  # opened by learn(), which knows the step it resumes from
        self.env = None
        self.replay = ReplayRLTerm(self.cfg.rl_buffer, self.model.prompt.theta.numel(), self.cfg.sigma)  # if 'replay'
        self.state = TrainState()

    # ------------------------------------------------------------------ training
    def learn(self, *, checkpoint: str | None = None, checkpoint_every: int = 100, resume: bool = True) -> dict:
        """Run phase 1 then phase 2; keep the prompt with the best D_RL accuracy; return a summary.

        Args:
            checkpoint: path of a resumable state file (:mod:`crlprompt.checkpoint`), written every
                ``checkpoint_every`` optimizer steps and at each epoch end. With ``resume`` and an
                existing file, training continues from it and ends with the same prompt, bit for
                bit on CPU, as an uninterrupted run with the same seed.

        Summary keys: ``drl_acc``/``test_acc`` (best-on-D_RL prompt after both phases),
        ``phase1_drl_acc``/``phase1_test_acc`` (best within phase 1 = the Prompt v1/v2 result),
        ``seconds``, ``steps``, ``history``, ``resumed_from_step``, ``eval_seconds`` (the wall time of
        the final test / D_RL evaluations, after ``seconds``).
        """
        from tqdm.auto import tqdm

        cfg, pm = self.cfg, self.model
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)  # batch order and RL samples
        params = pm.trainable_parameters()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(self.setup.train) / cfg.batch_size)
        plan = [(1, cfg.phase1_epochs), (2, cfg.phase2_epochs)]
        budgets = [math.ceil(epochs * steps_per_epoch) for _, epochs in plan]  # optimizer steps per phase
        run = dict(config=asdict(cfg), seed=self.seed)  # a checkpoint must come from the same run
        st = self.state = TrainState()
        if checkpoint and resume and Path(checkpoint).exists():
            st = self.state = load_train_state(
                checkpoint, pm, opt, rng=rng, env_rng=lambda: self._rl_env().np_random, **run
            )
            log.info("resumed from %s at step %d", checkpoint, st.step)
        resumed, t0 = st.step, time.perf_counter() - st.elapsed
        if not resumed:
            self._start_head()

        def save() -> None:
            if checkpoint and is_main():
                st.elapsed = time.perf_counter() - t0
                env_rng = None if self.env is None else self.env.np_random
                save_train_state(checkpoint, st, pm, opt, rng=rng, env_rng=env_rng, **run)

        # Events up to the resumed step were logged before its checkpoint; TensorBoard drops later ones.
        self.writer = self._open_writer(purge_step=resumed + 1 if resumed else None)
        bar = tqdm(total=sum(budgets), initial=st.step, desc="train", unit="step", disable=not self.progress,
                   dynamic_ncols=True)  # fmt: skip
        try:
            while st.phase_idx < len(plan):  # a resumable state machine over (phase, epoch, batch position)
                (phase, epochs), budget = plan[st.phase_idx], budgets[st.phase_idx]
                for group in opt.param_groups:  # also right after a resume (the state holds the saved lr)
                    group["lr"] = cfg.phase2_lr if phase == 2 and cfg.phase2_lr is not None else cfg.lr
                if st.phase_step >= budget:  # phase over
                    if phase == 1 and epochs > 0:
                        st.phase1_best, st.phase1_best_acc = st.best, st.best_acc
                    st.phase_idx, st.phase_step, st.epoch, st.batch_pos, st.loss_sums = st.phase_idx + 1, 0, 0, 0, {}
                    continue
                if st.batches is None:  # a new epoch: its order comes from the seeded generator
                    st.batches = train_batches(self.setup.train.lengths, cfg.batch_size, rng)
                    st.batch_pos, st.loss_sums = 0, {}
                pm.train()
                while st.batch_pos < len(st.batches) and st.phase_step < budget:
                    shard, weight = shard_batch(st.batches[st.batch_pos])  # this rank's rows of the global batch
                    ids, mask, labels = self.setup.train.batch(shard, pm.device)
                    loss, parts, rl = self.batch_loss(ids, mask, labels, phase, rng, weight)
                    # On CUDA the check is a host sync, so it runs every 10th step there.
                    if (pm.device.type == "cpu" or st.step % 10 == 0) and not torch.isfinite(loss):
                        values = {k: float(v.detach()) for k, v in parts.items()}
                        raise FloatingPointError(
                            f"non-finite loss at step {st.step} ({values}); "
                            "lower --lr or --gamma; the last good checkpoint was not overwritten"
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    all_reduce_grads_(params)  # sum of shard gradients = the global-batch gradient
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    opt.step()
                    st.step, st.phase_step, st.batch_pos = st.step + 1, st.phase_step + 1, st.batch_pos + 1
                    if phase == 2:
                        st.phase2_step += 1
                    for k, v in parts.items():  # device tensors: no host sync per step
                        st.loss_sums[k] = st.loss_sums.get(k, 0.0) + v.detach()
                    self._log_step(bar, phase, parts, rl)
                    last = st.batch_pos == len(st.batches) or st.phase_step == budget  # the epoch end saves anyway
                    if checkpoint_every and st.step % checkpoint_every == 0 and not last:
                        save()
                self._end_epoch(phase, t0)
                save()
            summary = self._finish(t0)
        finally:
            bar.close()
            if self.writer is not None:  # flushes the events of an interrupted run too
                self.writer.close()
                self.writer = None
        summary["resumed_from_step"] = resumed
        return summary

    def _start_head(self) -> None:
        """Fit the linear head at the start prompt (``head_init="probe"``) and say how coarse D_RL is."""
        pm, n = self.model, len(self.setup.drl)
        if self.cfg.head_init == "probe" and pm.head_kind == "linear":
            cs = PROBE_CS if self.cfg.head_c is None else (self.cfg.head_c,)
            fit = fit_probe_head(pm, self.setup.train, self.setup.drl, cs=cs)
            log.info("head: logistic-regression probe at the start prompt (C=%g%s; D_RL acc %.4f, train acc %.4f)",
                     fit.c, " chosen on D_RL" if self.cfg.head_c is None else "", fit.drl_acc, fit.train_acc)  # fmt: skip
        if 0 < n < SMALL_HOLDOUT:
            log.info("D_RL has %d rows: its accuracy moves in steps of %.3f, so epochs often tie; ties go to the "
                     "lower D_RL loss", n, 1 / n)  # fmt: skip

    def batch_loss(
        self, ids, mask, labels, phase: int, rng: np.random.Generator, weight: float = 1.0
    ) -> tuple[torch.Tensor, dict, dict | None]:
        """Loss of one (shard of a) batch: ``(loss, parts, rl)``.

        ``parts`` holds the unweighted terms (``ce``, ``contrast``, ``rl``); ``rl`` is the RL
        update's record (``reward``, ``reward_max``, ``grad_norm``) on RL steps, else None.
        ``weight`` = shard rows / global batch rows scales the per-example terms; the
        rank-identical RL term is scaled by 1/world instead.
        """
        cfg, pm = self.cfg, self.model
        use_contrast = phase == 2 and cfg.beta > 0
        paper_views = use_contrast and cfg.contrast_mode != "noise"
        theta = pm.prompt.theta
        if paper_views:
            # One population forward: dropout(θ) (CE + anchor), clean θ (positive), k corrupted prompts
            # (negatives); the dropout is applied here per row, so the forward runs with it off.
            drop = pm.prompt_dropout if pm.training else 0.0
            thetas = contrastive_prompts(theta, pm.layout.shape, dropout=drop, num_negatives=cfg.num_negatives,
                                         negative=cfg.negative_kind, negative_dropout=cfg.negative_dropout)  # (2+k, D)
        elif use_contrast:
            # The earlier form: view 1 (CE + anchor), view 2 (positive; dropout makes them differ), k noised negatives.
            noise = torch.randn(cfg.num_negatives, theta.numel(), device=theta.device) * cfg.negative_noise
            thetas = torch.cat([theta.unsqueeze(0), theta.unsqueeze(0), theta.unsqueeze(0) + noise])  # (2+k, D)
        else:
            thetas = theta.unsqueeze(0)
        dropout = pm.prompt_dropout
        pm.prompt_dropout = 0.0 if paper_views else dropout
        try:
            with autocast(pm.device):
                feats = pm.features(ids, mask, thetas)  # (K, B, H)
                logits = pm.head(feats[0]).float()  # (B, C)
        finally:
            pm.prompt_dropout = dropout
        parts = {"ce": cross_entropy_loss(logits, labels)}
        loss = parts["ce"]
        if paper_views:
            parts["contrast"] = contrastive_loss(feats[0], feats[1], feats[2:], labels, tau=cfg.tau,
                                                 supervised=cfg.contrast_mode == "supcon")  # fmt: skip
            loss = loss + cfg.beta * parts["contrast"]
        elif use_contrast:
            parts["contrast"] = info_nce_loss(feats[0], feats[1], feats[2:], tau=cfg.tau)
            loss = loss + cfg.beta * parts["contrast"]
        loss = loss * weight
        t = self.state.phase2_step + 1  # this step's number within phase 2, counted from 1
        if not (phase == 2 and cfg.gamma > 0 and t % cfg.rl_interval == 0):
            return loss, parts, None
        _sync(theta.device)  # the RL term's wall time excludes the CE forward queued before it
        start = time.perf_counter()
        parts["rl"], rl = self._rl_loss(rng)
        _sync(theta.device)
        rl["seconds"] = time.perf_counter() - start
        # The RL term's own contribution to the gradient (not CE's): γ·‖∇θ L_RL‖.
        (g,) = torch.autograd.grad(parts["rl"], theta, retain_graph=True)
        rl["grad_norm"] = cfg.gamma * float(g.norm())
        return loss + cfg.gamma * parts["rl"] / world_size(), parts, rl

    def _rl_loss(self, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
        """One REINFORCE term: center the env on θ, sample K actions, score them (env step, or race), build the loss."""
        cfg, st, theta = self.cfg, self.state, self.model.prompt.theta
        env = self._rl_env()
        env.reset(options={"center": theta.detach()})
        actions = sample_actions(rng, cfg.rl_samples, theta.numel(), cfg.rl_estimator)  # (K, D) ~ N(0, I)
        samples = env.search.perturb(torch.as_tensor(actions, device=theta.device))  # (K, D) = θ + σa
        self._rl_batch = None  # (rewards (K,), accuracies (K,) or None) for the "rl" event
        if cfg.rl_estimator == "race":  # ranks from a race on growing subsets of D_RL: fewer example-forwards
            rewards, loss, extra = race_rl_term(env.search, theta, samples, cfg.sigma, rng)
            self._rl_batch = (rewards.double().numpy(), None)
        else:
            _, reward, _, _, info = env.step(actions[0] if cfg.rl_samples == 1 else actions)
            rewards = torch.as_tensor(np.atleast_1d(reward), dtype=torch.float32)  # (K,)
            self._rl_batch = (np.atleast_1d(reward).astype(np.float64), np.atleast_1d(info["accuracy"]).astype(np.float64))
            loss, extra = (self.replay(theta, samples, rewards, st.reward_mean) if cfg.rl_estimator == "replay" else
                           (estimator_loss(theta, samples, rewards, cfg.sigma, cfg.rl_estimator, st.reward_mean), {}))
        mean_r = float(rewards.mean())
        st.reward_mean = mean_r if st.reward_mean is None else 0.9 * st.reward_mean + 0.1 * mean_r
        return loss, {"reward": mean_r, "reward_max": float(rewards.max()), **extra}

    def _make_rl_env(self):
        """The environment whose reward the RL term uses; it shares the model."""
        from ..envs import EnvConfig, PromptSearch, SoftPromptEnv, SoftPromptVectorEnv

        config = EnvConfig(setup=self.setup.config, sigma=self.cfg.sigma, reward="accuracy",
                           reward_batch_size=self.cfg.reward_batch_size, max_rows=self.cfg.eval_batch_size * 2)  # fmt: skip
        search = PromptSearch(self.setup, config)
        if self.cfg.rl_samples == 1:
            return SoftPromptEnv(search=search)
        return SoftPromptVectorEnv(self.cfg.rl_samples, search=search)

    def _rl_env(self):
        """The RL env, built on first use (never when γ = 0) and seeded once."""
        if self.env is None:
            self.env = self._make_rl_env()
            self.env.reset(seed=self.seed)
        return self.env

    # ------------------------------------------------------------------ logging and epoch ends
    def _open_writer(self, purge_step: int | None):
        if self.log_dir is None:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed; no TensorBoard logs (pip install tensorboard)")
            return None
        return SummaryWriter(self.log_dir, purge_step=purge_step)

    def _scalar(self, key: str, value: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar(key, value, self.state.step)

    def _log_step(self, bar, phase: int, parts: dict, rl: dict | None) -> None:
        if self.state.step % 10 == 0:
            for k, v in parts.items():
                self._scalar(f"train/{k}", v.item())
            bar.set_postfix(phase=phase, ce=f"{parts['ce'].item():.3f}")
        if rl is not None:
            rec = {"step": self.state.step, **rl}
            self._scalar("rl/reward", rec["reward"])
            self._scalar("rl/grad_norm", rec["grad_norm"])
            rewards, accs = self._rl_batch
            self._best_rl_reward = max(self._best_rl_reward, float(rewards.max()))
            evals = self.state.phase2_step // self.cfg.rl_interval * self.cfg.rl_samples  # K per RL step so far
            self._notify("rl", rec, SearchEvent("rl", evals, self._best_rl_reward, rewards, accs, rec, None, "crl"))
        bar.update(1)

    def _notify(self, kind: str, rec: dict, event: SearchEvent) -> None:
        for cb in self.callbacks:
            if takes_two_arguments(cb):
                cb(kind, rec)
            else:
                cb(event)

    def _end_epoch(self, phase: int, t0: float) -> None:
        """Score D_RL, record the epoch, keep the best prompt, start a new batch order."""
        st = self.state
        st.epoch += 1
        acc, loss = self._rl_scores()
        rec = {"phase": phase, "epoch": st.epoch, "step": st.step, "drl_acc": acc, "drl_loss": loss,
               "seconds": time.perf_counter() - t0}  # fmt: skip
        rec.update({f"train_{k}": float(v) / max(1, st.batch_pos) for k, v in st.loss_sums.items()})
        st.history.append(rec)
        self._scalar("eval/acc", acc)
        log.info("phase %d epoch %d: D_RL acc %.4f", phase, st.epoch, acc)
        evals = st.phase2_step // self.cfg.rl_interval * self.cfg.rl_samples if self.cfg.gamma > 0 else 0
        self._notify("epoch", rec, SearchEvent("epoch", evals, max(st.best_acc, acc), np.array([acc]), np.array([acc]),
                                               rec, None, "crl"))  # fmt: skip
        if acc == 1.0 and st.best_acc == 1.0 and (st.best_loss is None or loss < st.best_loss):
            log.info("D_RL accuracy is saturated (1.0 again at epoch %d): the lower D_RL loss (%.4f) selects", st.epoch, loss)
        if acc > st.best_acc or (acc == st.best_acc and (st.best_loss is None or loss < st.best_loss)):
            st.best, st.best_acc, st.best_loss = self._snapshot(), acc, loss
        st.batches, st.batch_pos, st.loss_sums = None, 0, {}

    def _finish(self, t0: float) -> dict:
        st, start = self.state, time.perf_counter()
        summary = {"steps": st.step, "seconds": start - t0, "history": st.history}
        if st.phase1_best is not None and self.cfg.phase2_epochs > 0:
            self._restore(st.phase1_best)
            summary["phase1_drl_acc"] = st.phase1_best_acc
            summary["phase1_test_acc"] = self.evaluate("test")
        if st.best is not None:
            self._restore(st.best)
        summary["drl_acc"] = st.best_acc if st.best is not None else max(st.best_acc, self.evaluate("drl"))
        summary["drl_loss"] = st.best_loss
        summary["test_acc"] = self.evaluate("test")
        if "phase1_drl_acc" not in summary:
            summary["phase1_drl_acc"], summary["phase1_test_acc"] = summary["drl_acc"], summary["test_acc"]
        self._scalar("eval/test_acc", summary["test_acc"])
        summary["eval_seconds"] = time.perf_counter() - start
        return summary

    # ------------------------------------------------------------------ evaluation
    def _rl_scores(self) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of the current prompt on D_RL: the model-selection scores."""
        theta = self.model.prompt.theta.detach().reshape(1, -1)
        scores = score_population(self.model, self.setup.drl, theta, max_rows=self.cfg.eval_batch_size)
        return float(scores.reward("accuracy")[0]), float(-scores.reward("ce")[0])

    def evaluate(self, split: str = "drl") -> float:
        """Accuracy of the current prompt on a split: drl (D_RL; ``"rl"`` is its earlier name) | test | train."""
        data = {"drl": self.setup.drl, "test": self.setup.test, "train": self.setup.train}[split_name(split)]
        return accuracy(self.model, data, batch_size=self.cfg.eval_batch_size)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}

    def _restore(self, snap: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(snap, strict=False)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA work (timing only; called on RL steps, which sync on their rewards anyway)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
