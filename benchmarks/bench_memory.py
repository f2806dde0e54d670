"""Peak memory of a short training run, one fresh process per case.

Each case runs in its own child Python (``bench_memory.py --child CASE``); at its end the child
reads its own peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and, on CUDA,
``torch.cuda.max_memory_allocated`` / ``max_memory_reserved``. The parent imports neither torch nor
transformers, so no child inherits a large image.

Cases (``--cases``; defaults in brackets):
* floor-<model>   import torch + transformers, load the model, tokenize TREC, one forward of one
                  example (touches every weight): the floor
* crl-<model>     the CLI run: ``python -m crlprompt.cli train --task trec --model <model> --method crl
                  --lr 1e-2 --max-train 500 --phase1-epochs 1 --phase2-epochs 0.5`` (in-process
                  ``cli.train_main``; lr 1e-2 as in the README's main job and the peer loop)
* ptv2-<model>    the same CLI run with ``--method ptv2`` (β = γ = 0: what the peer loop does)
* peft-<model>    the peer: PEFT prefix model + linear head, plain loop tokenizing each batch with
                  ``padding="max_length", max_length=64``, same rows, batch 32, the same number of
                  optimizer steps as the CLI run (1.5 epochs), then one pass over the test split
* peft-dyn-<model> the same with ``padding=True``
<model> is minilm or smollm2. SmolLM2's first load dequantizes its GGUF file (~30 s) into the
crl-prompt cache; a prepare step does that first, outside any measured case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import _common as C

DEFAULT_CASES = (
    "floor-minilm,crl-minilm,ptv2-minilm,peft-minilm,peft-dyn-minilm,floor-smollm2,crl-smollm2,ptv2-smollm2"
)
MARK = "@@BENCH_MEMORY@@"


def budget(quick: bool) -> dict:
    if quick:
        return {"max_train": 100, "max_test": 64, "phase1": 0.3, "phase2": 0.2}
    return {"max_train": 500, "max_test": None, "phase1": 1.0, "phase2": 0.5}


# ----------------------------------------------------------------------------- child side
def child(case: str, device: str, quick: bool, threads: int | None = None) -> dict:
    t0 = time.perf_counter()
    C.quiet()
    kind, model = case.rsplit("-", 1)
    b = budget(quick)
    import torch

    if threads:
        torch.set_num_threads(threads)

    out = {"case": case, "rss_after_import_mib": C.current_rss_mib()}
    if kind == "floor":
        import numpy as np

        from crlprompt.build import SetupConfig, build

        setup = build(SetupConfig(task="trec", model=model, max_train=b["max_train"], max_test=b["max_test"]), device=device)
        with torch.inference_mode():  # touch every weight once (safetensors loads may be lazy)
            setup.model(*setup.train.batch(np.arange(1), setup.model.device)[:2])
    elif kind in ("crl", "ptv2"):
        from crlprompt import cli

        with tempfile.TemporaryDirectory() as tmp:
            argv = ["--task", "trec", "--model", model, "--method", kind, "--lr", "1e-2", "--max-train", str(b["max_train"]),
                    "--phase1-epochs", str(b["phase1"]), "--phase2-epochs", str(b["phase2"]),
                    "--out", os.path.join(tmp, "run"), "--device", device]  # fmt: skip
            if b["max_test"]:
                argv += ["--max-test", str(b["max_test"])]
            rec = cli.train_main(argv)
            out["test_acc"] = rec["test_acc"]
            out["steps"] = rec["steps"]
    elif kind in ("peft", "peft-dyn"):
        import math

        import _peer as P
        from crlprompt.tasks import load_task

        dev = torch.device(device)
        data = load_task("trec", drl_fraction=0.1, seed=0, max_train=b["max_train"], max_test=b["max_test"])
        base, tok, arch = P.load_base(model)
        peer = P.PeerClassifier(P.prefix_model(base, arch), base.config.hidden_size, data.spec.num_labels, arch).to(dev)
        padding = "max_length" if kind == "peft" else True
        loop = P.PlainLoop(peer, tok, data.train.texts, data.train.labels, device=dev, padding=padding, max_length=64)
        spe = math.ceil(len(data.train) / 32)
        steps = math.ceil(b["phase1"] * spe) + math.ceil(b["phase2"] * spe)
        loop.steps(steps)
        peer.eval()
        correct = 0
        with torch.inference_mode():
            texts, labels = list(data.test.texts), torch.as_tensor(data.test.labels)
            for i in range(0, len(texts), 64):
                enc = tok(texts[i : i + 64], padding=padding, max_length=64, truncation=True, return_tensors="pt")
                with P.autocast(dev):
                    logits = peer(enc["input_ids"].to(dev), enc["attention_mask"].to(dev))["logits"]
                correct += int((logits.argmax(1).cpu() == labels[i : i + 64]).sum())
        out["test_acc"] = correct / len(texts)
        out["steps"] = steps
    else:
        raise SystemExit(f"unknown case {case!r}")
    out["peak_rss_mib"] = C.peak_rss_mib()
    out["seconds"] = time.perf_counter() - t0
    if device == "cuda":
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["cuda_max_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    return out


# ----------------------------------------------------------------------------- parent side
def run_child(case: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", case, "--device", args.device]
    if args.quick:
        cmd.append("--quick")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"case {case} failed (exit {proc.returncode})")
    res = json.loads(line[len(MARK) :])
    res["wall_s"] = wall
    return res


def main(argv=None):
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--cases", default=DEFAULT_CASES)
    p.add_argument("--child", default=None, help=argparse_suppress())
    args = p.parse_args(argv)
    if args.child:
        res = child(args.child, args.device, args.quick, args.threads)
        print(MARK + json.dumps(res), flush=True)
        return res

    cases = [c for c in args.cases.split(",") if c]
    load_start, cpu_start, t_start = C.loadavg(), C.cpu_snapshot(), time.time()
    prep = ""
    if any(c.endswith("smollm2") for c in cases):
        t = time.perf_counter()
        code = "import sys; sys.path.insert(0, %r); from crlprompt.models import smollm2_dir; smollm2_dir()" % str(C.ROOT)
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        prep = f"SmolLM2 dequantized cache prepared (or found) in {time.perf_counter() - t:.0f} s before the cases (not measured). "

    # The report needs torch for the machine line; import it only after the children ran.
    results = []
    for case in cases:
        res = run_child(case, args)
        results.append(res)
        print(f"{case}: peak RSS {res['peak_rss_mib']:.0f} MiB ({res['wall_s']:.0f} s)", file=sys.stderr)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # so the machine line shows the children's thread count
    rep = C.Report("Peak memory of a short run (one process per case)", args, torch.device(args.device))
    rep.load_start, rep.cpu_start, rep.t0 = load_start, cpu_start, t_start  # taken before the first case
    b = budget(args.quick)
    rep.add(
        f"Budget: TREC, `--max-train {b['max_train']}` (D_RL = 10% of it), phase 1 {b['phase1']} epoch + phase 2 "
        f"{b['phase2']} epoch, batch 32{', test capped at ' + str(b['max_test']) if b['max_test'] else ''}. {prep}"
        "Peak RSS = `ru_maxrss` of the case's own process (includes Python, torch, the model, data and the run)."
    )
    header = ["case", "peak RSS MiB", "RSS after imports MiB", "steps", "test acc", "wall s"]
    if args.device == "cuda":
        header += ["CUDA max allocated MiB", "CUDA max reserved MiB"]
    rows = []
    for r in results:
        row = [f"`{r['case']}`", f"{r['peak_rss_mib']:.0f}", C.fmt(r["rss_after_import_mib"] or float("nan")),
               str(r.get("steps", "-")), f"{r['test_acc']:.3f}" if "test_acc" in r else "-", f"{r['wall_s']:.0f}"]  # fmt: skip
        if args.device == "cuda":
            row += [f"{r['cuda_max_allocated_mib']:.0f}", f"{r['cuda_max_reserved_mib']:.0f}"]
        rows.append(row)
    rep.add(C.table(header, rows))
    by = {r["case"]: r for r in results}
    notes = []
    for m in ("minilm", "smollm2"):
        for a, bb in ((f"crl-{m}", f"peft-{m}"), (f"ptv2-{m}", f"peft-{m}"), (f"ptv2-{m}", f"peft-dyn-{m}")):
            if a in by and bb in by:
                notes.append(f"- `{a}` / `{bb}` peak RSS: {by[a]['peak_rss_mib'] / by[bb]['peak_rss_mib']:.2f}×")
        for a in (f"crl-{m}", f"ptv2-{m}", f"peft-{m}"):
            if a in by and f"floor-{m}" in by:
                notes.append(f"- `{a}` above `floor-{m}`: {by[a]['peak_rss_mib'] - by[f'floor-{m}']['peak_rss_mib']:+.0f} MiB")
    if notes:
        rep.add("\n".join(notes))
    rep.finish()
    return results


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
