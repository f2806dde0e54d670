"""What every runner shares: the tyro call, logging, JSON-lines files (the records' low-level reader and
writer: :mod:`.records` stamps, migrates and checks them), mean ± std, versions, the machine."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..atomic import append_line
from ..checkpoint import jsonable  # noqa: F401  (re-exported for the runners)
from ..errors import ConfigError

log = logging.getLogger("crlprompt")
T = TypeVar("T")


def _bool_fields(cls: Any) -> set[str]:
    """Flag names (``--a-b``) of every bool field of the dataclass ``cls`` and its nested dataclasses."""
    import typing

    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name)
        if tp is bool:
            out.add("--" + f.name.replace("_", "-"))
        elif dataclasses.is_dataclass(tp):
            out |= _bool_fields(tp)
    return out


def _bool_values_to_flags(cls: Any, argv: list[str]) -> list[str]:
    """Accept ``--overwrite True`` / ``--resume False`` too: rewrite them to ``--overwrite`` / ``--no-resume``."""
    flags, out, i = _bool_fields(cls), [], 0
    while i < len(argv):
        a = argv[i]
        name, eq, value = a.partition("=")
        if name in flags and eq and value.lower() in ("true", "false"):
            out.append(name if value.lower() == "true" else "--no-" + name[2:])
        elif a in flags and i + 1 < len(argv) and argv[i + 1].lower() in ("true", "false"):
            out.append(a if argv[i + 1].lower() == "true" else "--no-" + a[2:])
            i += 1
        else:
            out.append(a)
        i += 1
    return out


def parse_config(cls: type[T], argv: list[str] | None, description: str | None = None, prog: str | None = None) -> T:
    """Parse flags into the config dataclass ``cls`` (``--help`` shows every field's docstring).

    Bool fields are flags (``--overwrite``, ``--no-resume``); ``--overwrite True`` works too.
    """
    import tyro

    argv = _split_list_commas(cls, _bool_values_to_flags(cls, list(sys.argv[1:] if argv is None else argv)))
    try:
        with _unboxed(cls):
            return tyro.cli(cls, args=argv, description=description, prog=prog, config=(tyro.conf.OmitArgPrefixes,))
    except _Refused as r:  # a config's own validation: the caller prints it as one line (exit code 2)
        raise r.error from None


def _split_list_commas(cls: Any, argv: list[str]) -> list[str]:
    """``--seeds 0,1,2`` -> ``--seeds 0 1 2`` for the tuple-valued (list) options of ``cls``: one list
    syntax, with the comma form earlier versions of ``compare`` took still read the same."""
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        return argv
    lists = {f"--{name.replace('_', '-')}" for name, t in hints.items() if typing.get_origin(t) is tuple}
    out, in_list = [], False
    for a in argv:
        if a.startswith("--"):
            in_list = a.split("=", 1)[0] in lists
            if "=" in a and in_list:
                flag, value = a.split("=", 1)
                out += [flag, *[v for v in value.split(",") if v]]
                continue
            out.append(a)
        elif in_list and "," in a:
            out += [v for v in a.split(",") if v]
        else:
            out.append(a)
    return out


class _Refused(Exception):
    """A config's :class:`~crlprompt.errors.CRLPromptError`, carried past tyro (which boxes every ValueError
    raised while it builds a dataclass) so that every subcommand reports bad settings the same way."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


@contextlib.contextmanager
def _unboxed(cls: type):
    """While tyro builds ``cls`` (and the config dataclasses nested in it), their ``__post_init__``
    raise :class:`_Refused` instead of the ValueError tyro would turn into a box of help text."""
    import typing

    from ..errors import CRLPromptError

    found: list[type] = []

    def visit(c: Any) -> None:
        if dataclasses.is_dataclass(c) and isinstance(c, type) and c not in found:
            found.append(c)
            try:
                hints = typing.get_type_hints(c)
            except Exception:  # an annotation that does not resolve: its nested configs stay boxed
                hints = {}
            for t in hints.values():
                visit(t)

    visit(cls)
    saved = {c: c.__dict__["__post_init__"] for c in found if "__post_init__" in c.__dict__}

    def wrap(orig):
        def __post_init__(self):
            try:
                orig(self)
            except CRLPromptError as e:
                raise _Refused(e) from None

        return __post_init__

    try:
        for c, orig in saved.items():
            c.__post_init__ = wrap(orig)
        yield
    finally:
        for c, orig in saved.items():
            c.__post_init__ = orig


def check_out_dir(path: Path | str, flag: str = "--out") -> Path:
    """Refuse an output directory that cannot be one before anything is loaded: a file, or a path
    whose nearest existing parent is not a writable directory (the directory itself is made later)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file; pass a directory path")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, so the directory cannot be made; pass another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {parent} is not writable; pass a directory you can write to")
    return path


def default_threads() -> int:
    """torch intra-op threads when the user sets none: half the CPUs, at least 1.

    On a 2-core host shared with one other busy process, torch's default of 2 threads makes
    every op spin-wait on the busy core (a Tiny-v0 step: 140-280 ms at 2 threads, 2.9 ms at 1).
    """
    return max(1, (os.cpu_count() or 2) // 2)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (``None`` = ``$OMP_NUM_THREADS`` if set, else :func:`default_threads`).

    Works before torch is imported (through ``OMP_NUM_THREADS``) and after it.
    """
    n = threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS") or default_threads())
    if n < 1:
        raise ConfigError(f"threads must be >= 1, got {n}")
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def setup_logging() -> None:
    """INFO logs on stderr (joined to the torchrun process group first, if any)."""
    from ..distributed import init_from_env

    init_from_env()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                            stream=sys.stderr)  # fmt: skip
    for noisy in ("transformers", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def mean_std(values: list[float], fmt: str = "{:.3f}") -> str:
    """``mean ± sample std`` (ddof = 1) over seeds; the single value when there is one; – when none."""
    values = [float(v) for v in values]
    if not values:
        return "–"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def load_results(path: Path) -> list[dict]:
    """Every record of a JSON-lines file (a line torn by an interrupted write is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("skipping a torn line in %s (an interrupted write)", path)
    return out


def append_jsonl(path: Path, rec: dict) -> None:
    """Append one record as one line (:func:`crlprompt.atomic.append_line`: a line torn by a killed
    writer is ended first, so no record merges into it)."""
    append_line(path, json.dumps(jsonable(rec)))


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (None outside a git checkout)."""
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _source_dirty() -> bool | None:
    """Whether the package's source differs from the checked-out commit (None outside a git checkout)."""
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "crlprompt"], capture_output=True,
                             text=True, timeout=5)  # fmt: skip
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


#: The commit this process's code was loaded from: a long grid keeps writing records after later
#: commits, and each record must name the code that made it, not the checkout's newest HEAD.
START_COMMIT, START_DIRTY = git_commit(), _source_dirty()


def versions() -> dict:
    """Package versions, Python, the commit the process started from (``source_dirty``: the package had
    uncommitted changes then; ``commit_now``: HEAD when the record was written, if it moved since)."""
    import torch
    import transformers

    from .. import __version__

    out = {"crlprompt": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
           "numpy": np.__version__, "python": platform.python_version(), "commit": START_COMMIT}  # fmt: skip
    if START_DIRTY:
        out["source_dirty"] = True
    now = git_commit()
    if now != START_COMMIT:
        out["commit_now"] = now
    for name in ("peft", "gymnasium", "stable_baselines3"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: Any = None) -> dict:
    """Where a record was measured: device (and its GPU and CUDA version), CPU model, CPU count and the CPUs
    this process may use, torch threads, host platform. The one description of a machine: records and the
    benchmarks' report lines both use it."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"device": str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "usable_cpus": usable, "cpu": cpu_model()}  # fmt: skip
    if torch.cuda.is_available():
        dev = torch.device(info["device"]) if info["device"].startswith("cuda") else torch.device("cuda", 0)
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["cuda"] = torch.version.cuda
    return info
