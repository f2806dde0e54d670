"""RL overhead: wall time of CRL phase 2 at the paper's settings with the REINFORCE term on
(γ = 2e-5, N = rl_interval = 100, reward on all of D_RL = 10% of train) vs off (γ = 0), same β = 0.3.

Each case is ``CRLAgent(setup, CRLConfig(phase1_epochs=0, phase2_epochs=e)).learn()`` for exactly
``--steps`` phase-2 optimizer steps (default 201: RL updates at phase-2 steps 0, 100, 200), from
the same initial prompt/head, same batches. The agent's final D_RL/test evaluations (common to both;
the summary's ``eval_seconds``) are subtracted; the RL updates (env reset to θ, sample, one D_RL
scoring, the REINFORCE loss) are timed by the agent itself (each ``"rl"`` event's ``seconds``,
between device syncs). Cases run interleaved, ``--repeats`` times; medians.

Three overhead figures:
* run overhead      (training time with γ) / (training time with γ = 0) − 1: what the wall clock
                    says for this run (noisy: the difference of two totals);
* measured RL time  time inside the RL updates / training time with γ = 0 (over this run, which has
                    one update per ~67 steps at 201 steps, more than steady state);
* steady state      (median time of one RL update, a run's first excluded: it also builds the
                    env) / (N × median step time without RL): the overhead of a long run at one
                    update per N steps.
Also with ``reward_batch_size=128`` (a seeded 128-row minibatch of D_RL per reward).
"""

from __future__ import annotations

import math
import sys

import _common as C


def main(argv=None):
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--task", default="trec")
    p.add_argument("--steps", type=int, default=None, help="phase-2 steps per run (default 201, --quick 11)")
    p.add_argument("--rl-interval", type=int, default=None, help="N (default 100, --quick 5)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--max-train", type=int, default=None, help="cap the training pool (default all: D_RL = 545 rows; --quick 300)")
    args = p.parse_args(argv)
    C.quiet()
    steps = args.steps or (11 if args.quick else 201)
    interval = args.rl_interval or (5 if args.quick else 100)
    repeats = args.repeats or (1 if args.quick else 2)
    max_train = args.max_train or (300 if args.quick else None)

    import torch

    from crlprompt.agents.crl import CRLAgent, CRLConfig
    from crlprompt.build import SetupConfig, build
    from crlprompt.models import load_model
    from crlprompt.tasks import load_task

    device = C.setup_torch(args)
    rep = C.Report(f"RL overhead in CRL phase 2 (β 0.3, N {interval}, γ 2e-5 vs 0), {args.task.upper()} / {args.model}", args, device)
    data = load_task(args.task, drl_fraction=0.1, seed=0, max_train=max_train)
    lm = load_model(args.model)
    setup = build(SetupConfig(task=args.task, model=lm.name), lm=lm, data=data, device=device)
    pm = setup.model
    init = {k: v.detach().clone() for k, v in pm.named_parameters() if v.requires_grad}
    spe = math.ceil(len(setup.train) / 32)
    epochs = (steps - 0.5) / spe

    cases = {
        "γ = 0": dict(gamma=0.0),
        "γ = 2e-5": dict(gamma=2e-5),
        "γ = 2e-5, reward_batch_size=128": dict(gamma=2e-5, reward_batch_size=128),
    }
    results = {name: {"train": [], "eval": [], "rl": [], "rl_calls": [], "rl_each": []} for name in cases}

    def run(name):
        pm.load_state_dict(init, strict=False)
        cfg = CRLConfig(lr=args.lr, phase1_epochs=0.0, phase2_epochs=epochs, beta=0.3, rl_interval=interval, **cases[name])
        rl_times = []  # each RL update's wall time, from the agent's "rl" events
        agent = CRLAgent(setup, cfg, seed=0, progress=False,
                         callbacks=[lambda ev: rl_times.append(ev.diagnostics["seconds"]) if ev.kind == "rl" else None])
        summary, raw = C.timed_learn(agent, device, steps)
        ev_total, rl_total = summary["eval_seconds"], sum(rl_times)
        r = results[name]
        r["train"].append(raw - ev_total)
        r["eval"].append(ev_total)
        r["rl"].append(rl_total)
        r["rl_calls"].append(len(rl_times))
        r["rl_each"].append(rl_times)
        each = ", ".join(f"{t:.2f}" for t in rl_times)
        print(f"{name}: {raw:.1f} s raw, {ev_total:.1f} s eval, {rl_total:.2f} s in {len(rl_times)} RL updates ({each})",
              file=sys.stderr)  # fmt: skip

    # warm-up: a few steps of the γ > 0 case (builds the env lazily inside the agent, as a real run does)
    pm.load_state_dict(init, strict=False)
    CRLAgent(setup, CRLConfig(lr=args.lr, phase1_epochs=0.0, phase2_epochs=2.5 / spe, beta=0.3, rl_interval=2, gamma=2e-5),
             seed=0, progress=False).learn()  # fmt: skip
    for _ in range(repeats):
        for name in cases:
            run(name)

    base = C.median(results["γ = 0"]["train"])
    step_s = base / steps
    rows = []
    for name, r in results.items():
        train = C.median(r["train"])
        calls = r["rl_calls"][-1]
        # one update in steady state: every update but a run's first (which also builds the env)
        later = [t for ts in r["rl_each"] for t in ts[1:]]
        first = [ts[0] for ts in r["rl_each"] if ts]
        per_update = C.median(later) if later else (C.median(first) if first else 0.0)
        run_over = train / base - 1
        measured = C.median(r["rl"]) / base
        steady = per_update / (interval * step_s) if calls else 0.0
        rows.append([
            name, f"{train:.1f}", C.spread(r["train"]), f"{C.median(r['eval']):.1f}", str(calls),
            f"{per_update:.2f} (first {C.median(first):.2f})" if calls else "-", f"{run_over:+.1%}" if name != "γ = 0" else "-",
            f"{measured:.1%}" if calls else "-", f"{steady:.2%}" if calls else "-",
        ])  # fmt: skip
    rep.add(
        f"{steps} phase-2 steps per run (batch 32, β = 0.3: each step is a K = 3 population forward + backward), "
        f"{len(setup.train)} training rows, D_RL {len(setup.drl)} rows, N = {interval}, lr {args.lr}; "
        f"{repeats} interleaved repeats, medians; median step without RL {step_s * 1e3:.0f} ms. "
        f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}."
    )
    rep.add(C.table(
        ["case", "train s (median, eval excluded)", "min–max", "eval s", "RL updates", "s per RL update (later; first)",
         "run overhead", "measured RL time / train", "steady-state overhead (1 per N)"], rows))  # fmt: skip
    worst = max(float(r[-1].rstrip("%")) for r in rows[1:] if r[-1] != "-") if len(rows) > 1 else 0
    rep.add(f"Target (≤ 10% steady-state overhead at N = {interval}): {'met' if worst <= 10 else 'NOT met'} (worst {worst:.2f}%).")
    rep.finish()


if __name__ == "__main__":
    main()
