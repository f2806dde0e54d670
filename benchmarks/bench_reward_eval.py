"""Reward evaluation: perturbed prompts scored per second on D_RL (TREC: 10% of train, 545 rows).

Sides, in this one process, same frozen weights, same linear head (a ridge probe fitted on training
rows so the accuracies are not chance), same K prompts θ_k = θ_0 + σ·ε_k:

* crl (population)  ``score_population(pm, setup.drl, thetas (K, D), max_rows=m)``: D_RL tokenized
                    once, visited in length order, each forward scores all K prompts on
                    ``m // K`` examples (row k·b+i = prompt k, example i). Swept over ``--max-rows``;
                    the best is then timed against the peer ``--repeats`` times, interleaved.
* crl (sequential)  ``score_population`` with one prompt at a time, K calls (pre-tokenized, length
                    sorted, no population batching): separates the two gains. ``--sequential``.
* peft (sequential) the PEFT way: ``peft_model_with_theta`` builds a PEFT prefix model once; for
                    each prompt, θ_k is copied into its prompt encoder and D_RL is tokenized in
                    batches of 64 (``padding=True``) and run under ``torch.inference_mode``.

Both sides must give the same accuracies (to 1e-6 in fp32 on CPU; the script exits 1 otherwise).
On CUDA both run under bf16 autocast (what the library does), where kernels round differently for
different batch shapes: there the tolerance is 1% of D_RL unless ``--strict``.
"""

from __future__ import annotations

import sys
import time

import _common as C


def main(argv=None):
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--task", default="trec")
    p.add_argument("--k", type=int, default=None, help="prompts per evaluation (default 16, --quick 4)")
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--max-rows", default="64,128,256,512", help="score_population max_rows values to sweep")
    p.add_argument("--peer-batch", type=int, default=64)
    p.add_argument("--max-rl", type=int, default=None, help="cap D_RL rows (default all; --quick 48)")
    p.add_argument("--strict", action="store_true", help="on CUDA too, require accuracies equal to 1e-6 (bf16 may flip near-ties)")
    p.add_argument("--sequential", action="store_true", help="also time crl-prompt scoring one prompt at a time")
    args = p.parse_args(argv)
    C.quiet()
    k = args.k or (4 if args.quick else 16)
    repeats = args.repeats or (1 if args.quick else 3)
    max_rows = [int(x) for x in args.max_rows.split(",")]
    max_rl = args.max_rl or (48 if args.quick else None)

    import numpy as np
    import torch

    import _peer as P
    from crlprompt.batching import eval_batches
    from crlprompt.build import SetupConfig, build
    from crlprompt.models import load_model
    from crlprompt.prompts import peft_model_with_theta
    from crlprompt.scoring import autocast, fit_probe, score_population
    from crlprompt.tasks import load_task

    device = C.setup_torch(args)
    rep = C.Report(f"Reward evaluation: K={k} prompts on D_RL, {args.task.upper()} / {args.model}", args, device)

    data = load_task(args.task, drl_fraction=0.1, seed=0, max_train=(400 if args.quick else None))
    lm = load_model(args.model)
    setup = build(SetupConfig(task=args.task, model=lm.name), lm=lm, data=data, device=device)
    pm = setup.model
    rl_texts, rl_labels = list(data.drl.texts), torch.as_tensor(data.drl.labels)
    rl = setup.drl
    if max_rl and max_rl < len(rl):
        idx = np.arange(max_rl)
        rl = rl.subset(idx)
        rl_texts, rl_labels = rl_texts[:max_rl], rl_labels[:max_rl]
    probe_rows = min(len(setup.train), 200 if args.quick else 1000)
    fit_probe(pm, setup.train.subset(np.arange(probe_rows)))  # a trained head, so accuracies are not chance
    pm.eval()  # score_population restores the mode it found: keep the shared head out of dropout
    g = torch.Generator().manual_seed(0)
    theta0 = pm.prompt.theta.detach().cpu()
    thetas = (theta0.unsqueeze(0) + args.sigma * torch.randn(k, theta0.numel(), generator=g)).to(device)
    head = pm.head.eval()

    # ---- the peer: a PEFT prefix model over a separately loaded copy of the same weights
    base, tok, arch = P.load_base(args.model)
    peft = peft_model_with_theta(lm, base, pm.layout, thetas[0]).to(device).eval()
    emb = peft.prompt_encoder["default"].embedding.weight
    peer_batches = []  # tokenized per evaluation (inside the timed region); only the index split is fixed
    for i in range(0, len(rl_texts), args.peer_batch):
        peer_batches.append(list(range(i, min(i + args.peer_batch, len(rl_texts)))))

    @torch.inference_mode()
    def peer_scores():
        head.eval()
        correct = torch.zeros(k)
        margin = torch.zeros(k)
        positions = 0
        for j in range(k):
            emb.copy_(thetas[j].view(pm.layout.num_tokens, -1).to(emb))
            c = torch.zeros((), device=device)
            m = torch.zeros((), device=device)
            for b in peer_batches:
                enc = tok([rl_texts[i] for i in b], padding=True, truncation=True, max_length=128, return_tensors="pt")
                ids = enc["input_ids"].to(device)
                mask = enc["attention_mask"].to(device)
                y = rl_labels[b].to(device)
                positions += ids.numel()
                with autocast(device):
                    h = peft(input_ids=ids, attention_mask=mask).last_hidden_state
                    pooled = h[torch.arange(h.shape[0], device=device), mask.sum(1) - 1] if arch == "decoder" else h[:, 0]
                    logits = head(pooled).float()
                c += (logits.argmax(1) == y).sum()
                true = logits.gather(1, y.view(-1, 1)).squeeze(1)
                other = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
                m += (true - other).sum()
            correct[j], margin[j] = c.cpu(), m.cpu()
        return correct / len(rl_texts), margin / len(rl_texts), positions

    def crl_scores(m):
        s = score_population(pm, rl, thetas, max_rows=m)
        return s.reward("accuracy"), s.reward("margin")

    def crl_sequential():
        accs = [score_population(pm, rl, thetas[j : j + 1], max_rows=64).reward("accuracy") for j in range(k)]
        return torch.cat(accs)

    def timed(fn, *a):
        C.sync(device)
        t = time.perf_counter()
        out = fn(*a)
        C.sync(device)
        return time.perf_counter() - t, out

    # ---- warm-up: one small call of each
    score_population(pm, rl.subset(np.arange(min(16, len(rl)))), thetas[:2], max_rows=64)
    with torch.inference_mode(), autocast(device):
        enc = tok(rl_texts[:16], padding=True, return_tensors="pt")
        peft(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))

    # ---- sweep max_rows once, then best vs peer, interleaved
    sweep = {}
    for m in max_rows:
        t, (acc, marg) = timed(crl_scores, m)
        sweep[m] = [t]
        print(f"sweep max_rows={m}: {k / t:.2f} prompts/s ({t:.2f} s)", file=sys.stderr)
    best = min(sweep, key=lambda m: sweep[m][0])
    times = {"crl": [], "peft": [], "seq": []}
    results = {}
    for r in range(repeats):
        t, results["crl"] = timed(crl_scores, best)
        times["crl"].append(t)
        t, results["peft"] = timed(peer_scores)
        times["peft"].append(t)
        if args.sequential:
            t, results["seq"] = timed(crl_sequential)
            times["seq"].append(t)
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{n} {k / v[-1]:.2f} prompts/s" for n, v in times.items() if v), file=sys.stderr)

    acc_c, marg_c = results["crl"]
    acc_p, marg_p, positions = results["peft"]
    acc_diff = float((acc_c - acc_p).abs().max())
    marg_diff = float((marg_c - marg_p).abs().max())
    # fp32 (CPU): the two paths must agree exactly. bf16 autocast (CUDA): the kernels round
    # differently for different batch shapes, so a near-tie may flip; allow 1% unless --strict.
    tol = 1e-6 if (device.type == "cpu" or args.strict) else 0.01
    same = acc_diff <= tol
    if args.sequential:
        same = same and float((results["seq"] - acc_c).abs().max()) <= tol

    rows_real = int(rl.lengths.sum())
    crl_positions = sum(int(rl.lengths[c].max()) * len(c) for c in eval_batches(rl.lengths, max(1, best // k)))
    thr = {n: [k / t for t in v] for n, v in times.items() if v}
    med = {n: C.median(v) for n, v in thr.items()}
    rep.add(
        f"D_RL: {len(rl)} rows ({rows_real} real tokens), K = {k} prompts θ₀ + {args.sigma}·ε; head: ridge probe fitted on "
        f"{probe_rows} training rows; deep prefix {pm.layout.num_tokens} tokens; "
        f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}; {repeats} timed repeats after one warm-up call."
    )
    rows = []  # sweep rows: one timing each; the chosen row: the median of the interleaved repeats
    for m in max_rows:
        v = [k / t for t in (times["crl"] if m == best else sweep[m])]  # chosen: its interleaved repeats
        rows.append([f"crl `score_population(max_rows={m})`" + (" **chosen** (fastest in the sweep)" if m == best else ""), C.fmt(C.median(v)),
                     C.spread(v), f"{len(rl) * C.median(v):,.0f}"])  # fmt: skip
    if "seq" in med:
        rows.append(["crl, one prompt at a time (K calls, max_rows=64)", C.fmt(med["seq"]), C.spread(thr["seq"]),
                     f"{len(rl) * med['seq']:,.0f}"])  # fmt: skip
    rows.append([f"peft sequential (copy θ_k, tokenize batches of {args.peer_batch}, padding=True)", C.fmt(med["peft"]),
                 C.spread(thr["peft"]), f"{len(rl) * med['peft']:,.0f}"])  # fmt: skip
    rep.add(C.table(["side", "prompts/s (median)", "min–max", "example-evaluations/s"], rows))
    rep.add("(Sweep rows are one timing each; the chosen row and the peer rows are medians of the interleaved repeats.)")
    ratio = med["crl"] / med["peft"]
    lines = [
        f"- ratio crl (max_rows={best}, the sweep's fastest; medians of the {repeats} interleaved repeats) / peft sequential: **{ratio:.2f}×**"
        + (f" (target ≥ 2× on CPU: {'met' if ratio >= 2 else 'NOT met'})" if device.type == "cpu" else ""),
    ]
    if "seq" in med:
        lines.append(f"- ratio crl one-at-a-time / peft sequential: {med['seq'] / med['peft']:.2f}× (pre-tokenized + length-sorted, no population batching)")
        lines.append(f"- ratio crl population / crl one-at-a-time: {med['crl'] / med['seq']:.2f}× (population batching alone)")
    lines += [
        f"- padded positions per evaluation of all K prompts: crl {crl_positions * k:,} (max_rows={best}), "
        f"peft {positions:,}; real tokens {rows_real * k:,}",
        f"- same accuracies (tolerance {tol:g}): {'yes' if same else '**NO**'} (max |Δacc| = {acc_diff:.2g} over {k} prompts; "
        f"max |Δ mean margin| = {marg_diff:.2g}); accuracies: {', '.join(f'{a:.3f}' for a in acc_c.tolist())}",
    ]
    rep.add("\n".join(lines))
    rep.finish()
    if not same:
        print("accuracies differ between crl-prompt and PEFT scoring", file=sys.stderr)
        raise SystemExit(1)
    return med


if __name__ == "__main__":
    main()
