"""Shared helpers of the crl-prompt benchmarks: CLI flags, machine description, timing, and the
block each script prints and records under ``results/benchmarks/`` (``benchmarks/RESULTS.md`` is
generated from those records).

Not part of the library: the scripts import it as a sibling module (``python benchmarks/x.py``).
Dependencies: torch, numpy, the library itself; psutil is optional (``resource`` is the fallback).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
LOAD_WARN = 1.5


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the script runs, measures nothing useful")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--model", default="minilm", help="crl-prompt model name (minilm; smollm2 where noted)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per side (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--no-write", action="store_true", help="print only; append no record")
    p.add_argument("--results", type=Path, default=None,
                   help="JSON-lines file the record is appended to (default results/benchmarks/<script>.jsonl)")
    return p


def setup_torch(args) -> "torch.device":
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")
        return torch.device("cuda")
    return torch.device("cpu")


def quiet() -> None:
    """Silence the libraries' progress bars and warnings that would drown the tables."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "peft", "accelerate", "crlprompt"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.suppress(Exception):
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()


# ----------------------------------------------------------------------------- machine
def loadavg() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (OSError, AttributeError):
        return None


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall s, busy CPU-s of the whole machine, CPU-s of this process and its children) from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        vals = [int(x) for x in fields]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        busy = (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal, no guest (counted in user)
    except (OSError, ValueError, IndexError):
        return None
    t = os.times()
    return time.time(), busy, t.user + t.system + t.children_user + t.children_system


def other_load(start, end) -> float | None:
    """Average number of cores that *other* processes kept busy between two snapshots."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / (end[0] - start[0]))


def machine(device) -> dict:
    """:func:`crlprompt.runners.common.machine` (the one description of a machine, records' too) and, for the
    report line, the package versions under ``versions``."""
    from crlprompt.runners.common import machine as described, versions

    return {**described(device), "versions": versions()}


def machine_line(info: dict) -> str:
    v = info["versions"]
    gpu = info.get("gpu") if str(info["device"]).startswith("cuda") else None
    dev = f"**{gpu}** (CUDA {info.get('cuda')})" if gpu else info["device"]
    return (
        f"{info['cpu']}, {info['cpus']} cores ({info['usable_cpus']} usable, torch threads {info['torch_threads']}); "
        f"device {dev}; Python {v['python']}, torch {v['torch']}, transformers {v.get('transformers', '-')}, "
        f"peft {v.get('peft', '-')}"
    )


# ----------------------------------------------------------------------------- timing
def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """``with clock: ...`` adds the wall time of the block (synchronizing CUDA around it)."""

    def __init__(self, device):
        self.device = device
        self.total = 0.0
        self.count = 0
        self.times: list[float] = []

    def __enter__(self):
        sync(self.device)
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        dt = time.perf_counter() - self._t
        self.total += dt
        self.count += 1
        self.times.append(dt)
        return False


def timed_learn(agent, device, steps: int) -> tuple[dict, float]:
    """Run ``agent.learn()`` between device syncs; (summary, wall seconds). Refuses a run whose
    step count is not ``steps``, so both sides of a comparison do the same work."""
    sync(device)
    t = time.perf_counter()
    summary = agent.learn()
    sync(device)
    raw = time.perf_counter() - t
    if summary["steps"] != steps:
        raise RuntimeError(f"learn() ran {summary['steps']} steps, wanted {steps}")
    return summary, raw


def median(xs) -> float:
    return float(statistics.median(xs))


def spread(xs) -> str:
    """``min–max`` of a list, for showing the noise next to a median."""
    return f"{min(xs):.3g}–{max(xs):.3g}" if len(xs) > 1 else "-"


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (ru_maxrss; KiB on Linux, bytes on macOS)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def current_rss_mib() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return None


# ----------------------------------------------------------------------------- report
def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


class Report:
    """Collects one benchmark's Markdown block; ``finish()`` prints and appends it."""

    def __init__(self, title: str, args, device):
        self.title = title
        self.args = args
        self.device = device
        self.info = machine(device)
        self.load_start = loadavg()
        self.cpu_start = cpu_snapshot()
        self.t0 = time.time()
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text.rstrip())

    def load_note(self) -> str:
        end = loadavg()
        fmt = lambda la: "n/a" if la is None else " / ".join(f"{x:.2f}" for x in la)  # noqa: E731
        worst = max((la[0] for la in (self.load_start, end) if la), default=0.0)
        other = other_load(self.cpu_start, cpu_snapshot())
        note = f"load average (1/5/15 min) at start {fmt(self.load_start)}, at end {fmt(end)} (it counts this script's own threads)"
        if other is not None:
            note += f"; other processes kept **{other:.2f} of {self.info['cpus']} cores** busy on average during the script"
        busy = worst > LOAD_WARN if other is None else other > 0.25
        if self.device.type == "cpu" and busy:
            note += (
                " — **taken under load**: other processes shared the CPU, so absolute figures are low and noisy; "
                "both sides ran interleaved in the same process, so the ratios are the figures to read"
            )
        return note

    def finish(self) -> str:
        """Print the block and append its record to ``--results`` (``results/benchmarks/<script>.jsonl``):
        title, command, date, wall time, load note and the parts (tables as header + rows), stamped with the
        versions and machine by the project's record writer. ``benchmarks/RESULTS.md`` is generated from
        these records (``python scripts/update_readme.py``)."""
        from crlprompt.runners.records import append_record
        from results_table import block, parse_part

        cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
        rec = {
            "benchmark": Path(sys.argv[0]).stem, "title": self.title, "quick": bool(self.args.quick),
            "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "wall_s": time.time() - self.t0,
            "command": cmd, "load_note": self.load_note(), "parts": [parse_part(p) for p in self.parts],
        }  # fmt: skip
        rec["machine"] = {**{k: v for k, v in self.info.items() if k != "versions"}, "line": machine_line(self.info)}
        text = block({**rec, "versions": self.info["versions"]})
        print("\n" + text)
        if not self.args.no_write:
            path = self.args.results or ROOT / "results" / "benchmarks" / f"{rec['benchmark']}.jsonl"
            append_record(path, rec, kind="benchmark", device=self.device)
            print(f"(record appended to {os.path.relpath(path, ROOT)}; `python scripts/update_readme.py` regenerates "
                  f"benchmarks/RESULTS.md)")  # fmt: skip
        return text


def fmt(x: float, digits: int = 3) -> str:
    if x != x:  # nan
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"
