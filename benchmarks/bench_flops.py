"""Closeness to the limit: achieved FLOP/s of the frozen forward in reward evaluation, over the
matmul peak this script measures on the same machine with the same thread count.

FLOPs of one forward (counted, not profiled), for a row of q real-or-padded token positions and a
deep prefix of P virtual tokens (keys/values only, so they go through no projection):

    linear    = 2 × (non-embedding, non-pooler parameters) × q        (every projection + MLP)
    attention = 4 × layers × q × (P + q) × hidden                     (QKᵀ and A·V)
    pooler    = 2 × (pooler parameters)                               (encoders with a pooler: one row)

Summed over rows. "padded" counts every position the kernels ran on (the batch width); "real"
counts only real tokens (the useful work). Causal models are counted like encoders (SDPA with a
mask does the full product). The peak is a square ``torch.mm`` (``--mm-size``, default 2048³ on CPU,
8192³ on CUDA) in
fp32; on CUDA also in bf16, the dtype crl-prompt's autocast runs the forward in.

Cases: (1) a synthetic batch 32 × 64 tokens (random ids, no padding), population K = 1, deep
prefix 20, ``PromptedModel`` forward under inference mode; the plain HF model on the same ids with
no prefix is shown beside it; (2) the actual D_RL scoring, ``score_population`` on TREC's D_RL
with K = 1 and K = 16 (whole call, its bookkeeping included).
"""

from __future__ import annotations

import sys
import time

import _common as C


def param_groups(body):
    """(per-token parameters, per-row pooler parameters) of the transformer body."""
    per_token = pool = 0
    for name, p in body.named_parameters():
        if name.startswith("pooler."):
            pool += p.numel()
        elif "embed" in name.split(".")[0] or name.startswith(("embeddings.", "embed_tokens", "wte", "wpe")):
            continue
        else:
            per_token += p.numel()
    return per_token, pool


def forward_flops(lm, lengths, width: int, prefix: int) -> tuple[float, float]:
    """(padded, real) FLOPs of one forward over rows with these real ``lengths`` padded to ``width``."""
    per_token, pool = param_groups(lm.body)
    layers, hidden = lm.num_layers, lm.config.num_attention_heads * lm.head_dim
    rows = len(lengths)
    padded = rows * (2 * per_token * width + 4 * layers * width * (prefix + width) * hidden + 2 * pool)
    real = sum(2 * per_token * q + 4 * layers * q * (prefix + q) * hidden + 2 * pool for q in lengths)
    return float(padded), float(real)


def main(argv=None):
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--task", default="trec")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--extra-batch", type=int, default=128, help="a second, larger synthetic batch for context (0 = skip)")
    p.add_argument("--mm-size", type=int, default=None, help="square matmul size for the peak (default 2048 on CPU, 8192 on CUDA, --quick 512)")
    p.add_argument("--k", type=int, default=16, help="population size of the second D_RL case")
    p.add_argument("--max-rows", type=int, default=128, help="score_population max_rows for the D_RL cases (128: what the CRL agent's env uses)")
    args = p.parse_args(argv)
    C.quiet()
    repeats = args.repeats or (3 if args.quick else 10)
    mm = args.mm_size or (512 if args.quick else 8192 if args.device == "cuda" else 2048)

    import numpy as np
    import torch

    from crlprompt.build import SetupConfig, build
    from crlprompt.models import load_model
    from crlprompt.scoring import autocast, score_population
    from crlprompt.tasks import load_task
    from crlprompt.batching import eval_batches

    device = C.setup_torch(args)
    rep = C.Report(f"FLOP/s of the frozen forward vs measured matmul peak, {args.model}", args, device)

    def bench(fn, n=repeats, warm=2):
        for _ in range(warm):
            fn()
        ts = []
        for _ in range(n):
            C.sync(device)
            t = time.perf_counter()
            fn()
            C.sync(device)
            ts.append(time.perf_counter() - t)
        return ts

    # ---- peak: measured once up front, and again (a shorter burst) right before each case, so
    # that a case's percentage is taken against a peak measured under the same machine load
    fwd_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    mats = {}
    for dt in [torch.float32] + ([torch.bfloat16] if device.type == "cuda" else []):
        g = torch.Generator(device="cpu").manual_seed(0)
        mats[dt] = (torch.randn(mm, mm, generator=g).to(device, dt), torch.randn(mm, mm, generator=g).to(device, dt))

    def measure_peak(dt, n):
        a, b = mats[dt]
        ts = bench(lambda: torch.mm(a, b), n=n, warm=1)
        return [2 * mm**3 / t for t in ts]

    peaks = {dt: measure_peak(dt, max(repeats, 5)) for dt in mats}
    for dt, xs in peaks.items():
        print(f"peak {dt}: {C.median(xs) / 1e9:.1f} GFLOP/s", file=sys.stderr)
    local_peaks = []

    data = load_task(args.task, drl_fraction=0.1, seed=0, max_train=(400 if args.quick else None))
    lm = load_model(args.model)
    setup = build(SetupConfig(task=args.task, model=lm.name), lm=lm, data=data, device=device)
    pm = setup.model.eval()
    theta = pm.prompt.theta.detach().unsqueeze(0)
    prefix = pm.layout.num_tokens
    tok = lm.tokenizer
    special = set(tok.all_special_ids)
    vocab = [i for i in range(min(len(tok), 30000)) if i not in special]

    rows = []

    def add_row(name, ts, padded, real, peak, note=""):
        med = C.median(ts)
        rows.append([name, f"{med * 1e3:.1f}", f"{padded / 1e9:.2f}", f"{padded / med / 1e9:.1f}", f"{peak / 1e9:.1f}",
                     f"**{padded / med / peak:.0%}**", f"{real / med / 1e9:.1f}", f"{real / med / peak:.0%}", note])  # fmt: skip

    def case_peak():
        xs = measure_peak(fwd_dtype, 3)
        local_peaks.extend(xs)
        return C.median(xs)

    # ---- synthetic batches
    batches = [args.batch] + ([args.extra_batch] if args.extra_batch and not args.quick else [])
    for bsz in batches:
        g = torch.Generator().manual_seed(0)
        ids = torch.tensor(vocab, dtype=torch.long)[torch.randint(len(vocab), (bsz, args.seq), generator=g)]
        if lm.arch == "encoder" and tok.cls_token_id is not None:
            ids[:, 0] = tok.cls_token_id
        ids = ids.to(device)
        mask = torch.ones_like(ids)

        @torch.inference_mode()
        def crl_forward():
            with autocast(device):
                pm(ids, mask, theta)

        @torch.inference_mode()
        def hf_forward():
            with autocast(device):
                lm.body(input_ids=ids, attention_mask=mask, use_cache=False)

        pk = case_peak()
        ts = bench(crl_forward)
        fl = forward_flops(lm, [args.seq] * bsz, args.seq, prefix)
        add_row(f"synthetic {bsz}×{args.seq}, K=1, deep prefix {prefix} (`PromptedModel`)", ts, *fl, pk)
        pk = case_peak()
        ts = bench(hf_forward)
        fl0 = forward_flops(lm, [args.seq] * bsz, args.seq, 0)
        add_row(f"synthetic {bsz}×{args.seq}, plain HF body, no prefix", ts, *fl0, pk, "reference")

    # ---- the actual D_RL scoring
    rl = setup.drl
    for k in (1, args.k if not args.quick else 4):
        g = torch.Generator().manual_seed(1)
        thetas = (theta.cpu() + 0.1 * torch.randn(k, theta.shape[1], generator=g)).to(device)
        per_chunk = max(1, args.max_rows // k)
        padded = real = 0.0
        for chunk in eval_batches(rl.lengths, per_chunk):
            lens = rl.lengths[chunk].tolist()
            fp, fr = forward_flops(lm, lens * k, max(lens), prefix)
            padded, real = padded + fp, real + fr
        pk = case_peak()
        ts = bench(lambda: score_population(pm, rl, thetas, max_rows=args.max_rows), n=max(1, repeats // 3), warm=1)
        add_row(f"D_RL scoring: {len(rl)} rows, K={k}, max_rows={args.max_rows} (`score_population`)", ts, padded, real,
                pk, f"{padded / real - 1:.0%} padding overhead")  # fmt: skip

    peak_lines = ", ".join(
        f"{str(dt).replace('torch.', '')} {C.fmt(C.median(xs) / 1e9)} GFLOP/s (min–max {C.spread([x / 1e9 for x in xs])})"
        for dt, xs in peaks.items()
    )
    rep.add(
        f"Peak: `torch.mm` {mm}×{mm}×{mm}, median of {max(repeats, 5)} up front: {peak_lines}; "
        f"re-measured (median of 3) right before each case: min–max {C.spread([x / 1e9 for x in local_peaks])} GFLOP/s, "
        "and each case's % is of its own adjacent peak. "
        f"Forward dtype: {str(fwd_dtype).replace('torch.', '')} ({'bf16 autocast' if device.type == 'cuda' else 'fp32'}); "
        f"peaks are {str(fwd_dtype).replace('torch.', '')} matmuls. "
        f"Per-token parameters counted: {param_groups(lm.body)[0]:,} (pooler {param_groups(lm.body)[1]:,}); "
        f"{lm.num_layers} layers, attention width {lm.config.num_attention_heads * lm.head_dim}."
    )
    rep.add(C.table(["case", "ms (median)", "GFLOP (padded)", "GFLOP/s padded", "adjacent peak GFLOP/s", "% of peak",
                     "GFLOP/s real tokens", "% of peak (real)", "note"], rows))  # fmt: skip
    rep.finish()


if __name__ == "__main__":
    main()
