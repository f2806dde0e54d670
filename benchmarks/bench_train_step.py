"""Supervised step throughput (examples/s): P-Tuning v2 (deep prefix, 20 tokens) on TREC, batch 32.

Sides, all in this one process, same frozen model weights, same data rows, batch 32, lr 1e-2,
AdamW, grad-norm clip 1.0, frozen LM in eval mode (no dropout inside it), prefix + head trained:

* crl (agent step)   crl-prompt's way: ``build()`` tokenizes once into ``Encoded``; length-bucketed
                     ``train_batches``; the CRLAgent's own ``batch_loss`` (``PromptedModel``
                     forward, CE) + backward + clip + AdamW step, as ``CRLAgent.learn`` does.
* crl (no bucketing) the same with ``train_batches(bucket=False)`` (pre-tokenized, dynamic width,
                     random batches): separates the gain of bucketing from the rest.
* crl learn()        ``CRLAgent(...).learn()`` end to end for the same number of steps, minus the
                     time of its D_RL/test evaluations (wrapped and timed).
* peft plain (max_length=64)  ``get_peft_model(AutoModel, PrefixTuningConfig(FEATURE_EXTRACTION, 20))``
                     + linear head on [CLS]; a plain loop that tokenizes each batch with
                     ``padding="max_length", max_length=64`` (the P-Tuning v2 / PEFT examples).
* peft plain (dynamic)        the same loop with ``padding=True``.
* trainer (max_length=64)     the same PEFT model in HF ``Trainer`` (pre-tokenized at max_length 64,
                     default collator, as the P-Tuning v2 code does).
* trainer (dynamic)  HF ``Trainer`` with ``DataCollatorWithPadding``.

Each side gets ``--warmup`` steps first, then ``--repeats`` timed runs of ``--steps`` steps,
interleaved side by side; the median examples/s is reported. On CUDA everything runs under bf16
autocast (crl-prompt's library does it; the peers get it too, Trainer via ``bf16=True``).
"""

from __future__ import annotations

import math
import sys
import time

import _common as C


def main(argv=None):
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--task", default="trec")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps per repeat (default 60, --quick 6)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per side first (default 5, --quick 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--max-train", type=int, default=None, help="cap the training rows (default all; --quick 400)")
    p.add_argument("--block", type=int, default=10, help="loop sides alternate every this many steps")
    p.add_argument("--sides", default="all", help="comma list of side keys to run (see the table), or all")
    args = p.parse_args(argv)
    C.quiet()
    steps = args.steps or (6 if args.quick else 60)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    repeats = args.repeats or (1 if args.quick else 3)
    max_train = args.max_train or (400 if args.quick else None)

    import numpy as np
    import torch

    import _peer as P
    from crlprompt.agents.crl import CRLAgent, CRLConfig
    from crlprompt.batching import train_batches
    from crlprompt.build import SetupConfig, build
    from crlprompt.models import load_model
    from crlprompt.tasks import load_task

    device = C.setup_torch(args)
    rep = C.Report(f"Supervised train step: P-Tuning v2 deep prefix, {args.task.upper()} / {args.model}, batch {args.batch_size}", args, device)
    bs = args.batch_size

    # ---------------------------------------------------------------- crl-prompt's side
    data = load_task(args.task, drl_fraction=0.1, seed=0, max_train=max_train)
    lm = load_model(args.model)
    setup = build(SetupConfig(task=args.task, model=lm.name), lm=lm, data=data, device=device)
    pm = setup.model
    cfg = CRLConfig(lr=args.lr, batch_size=bs, phase1_epochs=1.0, phase2_epochs=0.0, eval_batch_size=64)
    agent = CRLAgent(setup, cfg, seed=0, progress=False)
    params = pm.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    class CrlSteps:
        def __init__(self, bucket: bool):
            self.bucket = bucket
            self.rng = np.random.default_rng(0)
            self.batches: list = []
            self.positions = self.real = self.rows = 0
            self.last_loss = float("nan")

        def steps(self, n):
            pm.train()
            for _ in range(n):
                if not self.batches:
                    self.batches = train_batches(setup.train.lengths, bs, self.rng, bucket=self.bucket)[::-1]
                idx = self.batches.pop()
                ids, mask, labels = setup.train.batch(idx, pm.device)
                self.positions += ids.numel()
                self.real += int(setup.train.lengths[idx].sum())
                self.rows += len(idx)
                loss, parts, _ = agent.batch_loss(ids, mask, labels, 1, self.rng)
                if pm.device.type == "cpu" and not torch.isfinite(loss):  # what learn() checks
                    raise FloatingPointError("non-finite loss")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                self.last_loss = loss.detach()

    class CrlLearn:
        """CRLAgent.learn() for exactly n phase-1 steps; evaluation time measured and subtracted."""

        positions = real = rows = 0
        last_loss = float("nan")

        def __init__(self):
            self.eval_s = 0.0
            self.raw_s = 0.0

        def steps(self, n):
            spe = math.ceil(len(setup.train) / bs)
            c = CRLConfig(lr=args.lr, batch_size=bs, phase1_epochs=(n - 0.5) / spe, phase2_epochs=0.0)
            a = CRLAgent(setup, c, seed=0, progress=False)
            inner = a.evaluate
            clock = C.Clock(device)

            def timed_eval(split="drl"):
                with clock:
                    return inner(split)

            a.evaluate = timed_eval
            summary, raw = C.timed_learn(a, device, n)
            self.eval_s, self.raw_s = clock.total, raw
            self.last_loss = summary["history"][-1].get("train_ce", float("nan"))
            return raw - clock.total  # reported time: training only

    # ---------------------------------------------------------------- the peer side
    texts, labels = data.train.texts, data.train.labels
    base, tok, arch = P.load_base(args.model)
    peer = P.PeerClassifier(P.prefix_model(base, arch), base.config.hidden_size, data.spec.num_labels, arch).to(device)

    def plain(padding):
        return P.PlainLoop(peer, tok, texts, labels, device=device, batch_size=bs, lr=args.lr, padding=padding, max_length=64)

    class TrainerSide:
        def __init__(self, padding):
            from transformers import DataCollatorWithPadding, default_data_collator

            self.dataset = P.tokenized_rows(tok, texts, labels, padding="max_length" if padding == "max_length" else False)
            self.collator = default_data_collator if padding == "max_length" else DataCollatorWithPadding(tok)
            self.positions = self.real = self.rows = 0
            self.last_loss = float("nan")
            self.runs = 0

        def steps(self, n, skip=0):
            """Train n + skip steps with a fresh Trainer; time the last n (callback timestamps)."""
            import tempfile

            from transformers import Trainer, TrainerCallback, TrainingArguments

            marks = {}

            class Marks(TrainerCallback):
                def on_step_end(self, a, state, control, **kw):
                    if state.global_step in (skip, skip + n):
                        C.sync(device)
                        marks[state.global_step] = time.perf_counter()

                def on_train_begin(self, a, state, control, **kw):
                    C.sync(device)
                    marks[0] = time.perf_counter()

            outer = self

            with tempfile.TemporaryDirectory() as tmp:
                targs = TrainingArguments(
                    output_dir=tmp, per_device_train_batch_size=bs, max_steps=n + skip, learning_rate=args.lr,
                    report_to=[], logging_strategy="no", save_strategy="no", use_cpu=device.type == "cpu",
                    bf16=device.type == "cuda", disable_tqdm=True, seed=self.runs,
                    remove_unused_columns=False, dataloader_pin_memory=device.type == "cuda",
                )  # fmt: skip
                collate = self.collator

                def counting(features):
                    batch = collate(features)
                    outer.positions += batch["input_ids"].numel()
                    outer.real += int(batch["attention_mask"].sum())
                    outer.rows += batch["input_ids"].shape[0]
                    return batch

                tr = Trainer(model=peer, args=targs, train_dataset=self.dataset, data_collator=counting, callbacks=[Marks()])
                out = tr.train()
                self.last_loss = out.training_loss
            self.runs += 1
            return marks[skip + n] - marks[skip]

    sides = {
        "crl": ("crl (agent step)", CrlSteps(bucket=True)),
        "crl-nobucket": ("crl (no bucketing)", CrlSteps(bucket=False)),
        "crl-learn": ("crl learn() − eval", CrlLearn()),
        "peft-max": ("peft plain (max_length=64)", plain("max_length")),
        "peft-dyn": ("peft plain (dynamic)", plain(True)),
        "trainer-max": ("trainer (max_length=64)", TrainerSide("max_length")),
        "trainer-dyn": ("trainer (dynamic)", TrainerSide("dynamic")),
    }
    if args.sides != "all":
        keep = args.sides.split(",")
        sides = {k: v for k, v in sides.items() if k in keep}

    def run(key, n, timed: bool):
        name, side = sides[key]
        if isinstance(side, TrainerSide):
            # A Trainer run pays its own start-up; warm it by running `warmup` steps before the timed ones.
            if not timed:
                return side.steps(n, skip=0)
            return side.steps(n, skip=warmup)
        if isinstance(side, CrlLearn):
            if not timed:
                return side.steps(max(n, 2))
            return side.steps(n)
        C.sync(device)
        t = time.perf_counter()
        side.steps(n)
        C.sync(device)
        return time.perf_counter() - t

    print(f"warm-up: {warmup} steps per side ({', '.join(sides)})", file=sys.stderr)
    for key in sides:
        if warmup:
            run(key, warmup, timed=False)
        sides[key][1].positions = sides[key][1].real = sides[key][1].rows = 0
    # Loop sides run round-robin in blocks of --block steps, so a burst of load from other processes
    # hits them alike; learn() and Trainer runs are whole runs (they pay their own start-up).
    loop_keys = [k for k, (_, s) in sides.items() if not isinstance(s, (TrainerSide, CrlLearn))]
    whole_keys = [k for k in sides if k not in loop_keys]
    block = max(1, min(args.block, steps))
    times: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(repeats):
        acc = dict.fromkeys(loop_keys, 0.0)
        done = 0
        while done < steps:
            n = min(block, steps - done)
            for key in loop_keys:
                acc[key] += run(key, n, timed=True)
            done += n
        for key in loop_keys:
            times[key].append(acc[key])
        for key in whole_keys:
            times[key].append(run(key, steps, timed=True))
        for key in sides:
            t = times[key][-1]
            print(f"repeat {r + 1}/{repeats} {sides[key][0]}: {steps * bs / t:.1f} ex/s ({t:.2f} s)", file=sys.stderr)

    thr = {k: [steps * bs / t for t in v] for k, v in times.items()}
    med = {k: C.median(v) for k, v in thr.items()}
    rows = []
    for key, (name, side) in sides.items():
        pad = f"{side.real / side.positions:.0%}" if side.positions else "-"
        width = f"{side.positions / side.rows:.1f}" if side.rows else "-"
        loss = side.last_loss
        loss = float(loss) if loss == loss else float("nan")
        extra = ""
        if isinstance(side, CrlLearn):
            extra = f" (raw {side.raw_s:.2f} s incl. {side.eval_s:.2f} s eval)"
        rows.append([f"`{key}` {name}", C.fmt(med[key]), C.spread(thr[key]), width, pad, f"{C.fmt(loss)}{extra}"])
    rep.add(
        f"{steps} timed steps × {repeats} repeats per side after {warmup} warm-up steps (loop sides alternate every "
        f"{block} steps; learn() and Trainer sides are whole runs); {len(setup.train)} training rows; "
        f"lr {args.lr}; frozen LM `{args.model}` ({arch}), deep prefix 20 tokens; "
        f"{'bf16 autocast on every side' if device.type == 'cuda' else 'fp32'}."
    )
    rep.add(C.table(["side", "examples/s (median)", "min–max", "mean padded width", "real tokens / positions", "last loss"], rows))
    ratios = []
    for a in ("crl", "crl-learn"):
        for b in ("peft-max", "peft-dyn", "trainer-max", "trainer-dyn", "crl-nobucket"):
            if a in med and b in med and a != b:
                ratios.append([f"`{a}` / `{b}`", f"{med[a] / med[b]:.2f}×"])
    if ratios:
        rep.add(C.table(["ratio", "value"], ratios))
    if "crl" in med and "peft-dyn" in med and device.type == "cpu":
        r = med["crl"] / med["peft-dyn"]
        rep.add(f"Target (≥ 1.3× the plain PEFT loop with dynamic padding, CPU): {'met' if r >= 1.3 else 'NOT met'} ({r:.2f}×).")
    rep.finish()
    return med


if __name__ == "__main__":
    main()
