"""``crl-prompt`` command line: ``train``, ``eval``, ``reproduce``, ``compare``.

Each subcommand parses its flags into a config dataclass (``--help`` shows every field with its
default and docstring) and calls a plain ``main(config)``-style function.
"""

from __future__ import annotations

import json
import sys

USAGE = """usage: crl-prompt [--threads N] {train,eval,reproduce,compare} [--help] [flags]

  train      train + evaluate one method on one task/model, write a run directory
  eval       re-evaluate a run directory's prompt on a split
  reproduce  the paper's grid (tasks x models x methods x seeds) -> results.jsonl + Table 1/2
  compare    RL algorithms side by side on a registered env id (equal evaluation budgets)

  --threads N   torch CPU threads (default: $OMP_NUM_THREADS, else half the CPUs, at least 1)
  --version     print the version and exit

Try it in 10 seconds (tiny random model, synthetic task, no downloads):
  crl-prompt train --task tiny --model tiny-llama --method crl --num-tokens 4 --phase1-epochs 1 \\
      --phase2-epochs 1 --rl-interval 4 --lr 1e-2 --out runs/tiny
"""


def _friendly(fn):
    """Turn user-fixable errors (:class:`CRLPromptError`, a diverged run) into one line on stderr
    and exit code 2; anything else is a bug and keeps its traceback."""
    from .errors import CRLPromptError

    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_redirect_tqdm():  # log lines above the progress bar, not on it
            return fn()
    except (CRLPromptError, FloatingPointError) as e:
        print(f"crl-prompt: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("crl-prompt: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        raise SystemExit(130) from None


def train_main(argv: list[str]) -> dict:
    from .runners.common import parse_config, setup_logging
    from .runners.train import TrainConfig, run

    cfg = _friendly(lambda: parse_config(TrainConfig, argv, "Train and evaluate one method on one task/model.",
                                         "crl-prompt train"))  # fmt: skip
    setup_logging()
    rec = _friendly(lambda: run(cfg))
    from .distributed import is_main

    if is_main():
        print(
            f"{rec['method']} {rec['task']}/{rec['model']} seed {rec['seed']}: test accuracy {rec['test_acc']:.4f} "
            f"(best after phase 1, CE only: {rec['phase1_test_acc']:.4f}; best D_RL {rec['drl_acc']:.4f}) | "
            f"trainable params {rec['trainable_params']:,} of {rec['total_params']:,} | {rec['seconds']:.0f}s -> {cfg.out}"
        )
    return rec


def eval_main(argv: list[str]) -> dict:
    from .runners.common import parse_config, setup_logging
    from .runners.train import EvalConfig, evaluate_checkpoint

    cfg = _friendly(lambda: parse_config(EvalConfig, argv, "Re-evaluate a run directory's prompt on a split.",
                                         "crl-prompt eval"))  # fmt: skip
    setup_logging()
    res = _friendly(lambda: evaluate_checkpoint(cfg.checkpoint, cfg.split, cfg.device, cfg.data_dir,
                                                  task=cfg.task, model=cfg.model, head=cfg.head))
    print(json.dumps(res))
    return res


def reproduce_main(argv: list[str]):
    from .runners import crl

    return crl.main(argv)


def compare_main(argv: list[str]):
    from .runners import compare

    return compare.main(argv)


COMMANDS = {"train": train_main, "eval": eval_main, "reproduce": reproduce_main, "compare": compare_main}


def _pop_threads(argv: list[str]) -> tuple[int | None, list[str]]:
    """The global ``--threads N`` (or ``--threads=N``) anywhere in argv, and argv without it."""
    rest, threads, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--threads" or a.startswith("--threads="):
            value = a.partition("=")[2] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in a else 2
            try:
                threads = int(value)
                if threads < 1:
                    raise ValueError
            except ValueError:
                print(f"crl-prompt: error: --threads needs an int >= 1, got {value!r}", file=sys.stderr)
                raise SystemExit(2) from None
            continue
        rest.append(a)
        i += 1
    return threads, rest


def main(argv: list[str] | None = None):
    from .runners.common import set_threads

    threads, argv = _pop_threads(list(sys.argv[1:] if argv is None else argv))
    if argv[:1] == ["--version"]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"crl-prompt {version('crl-prompt')}")
        except PackageNotFoundError:  # run from a source tree that was not installed
            print("crl-prompt (not installed: no version metadata)")
        raise SystemExit(0)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    if argv[0] not in COMMANDS:
        print(f"crl-prompt: error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}\n", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    set_threads(threads)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
