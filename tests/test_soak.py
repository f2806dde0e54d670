"""Load: step ``CRLPrompt/Tiny-v0`` thousands of times and show flat memory and no slowdown.

Two soaks, each after a warm-up (allocator pools, lazy imports, first-call caches):

* the single env: ``SOAK_STEPS`` steps (warm-up ``WARMUP_STEPS``), each followed by ``reset()``
  as a one-step bandit requires, with a refused NaN action every 50th step so the error path is
  soaked too;
* the vector env with 16 sub-envs: ``VEC_STEPS`` batched steps (warm-up ``VEC_WARMUP``).

Checked: resident memory (``/proc/self/statm``) grows by less than ``RSS_BOUND_MB`` from the end of
the warm-up to the end, and the median step time of the last window is within ``SLOWDOWN`` of the
first window after the warm-up. The check uses the process CPU time of each step, which other jobs
on a shared machine do not inflate; wall-clock medians are printed beside it. The measured figures are printed (and attached to the JUnit
report as properties) so they can be quoted. Sizes fit ~40 s on a shared 2-core CPU; set
``CRLPROMPT_SOAK_SCALE=4`` for a longer soak.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
import warnings

import gymnasium as gym
import numpy as np
import pytest

import crlprompt  # noqa: F401  (registers the CRLPrompt/... ids)

pytestmark = pytest.mark.slow

SCALE = float(os.environ.get("CRLPROMPT_SOAK_SCALE", "1"))
WARMUP_STEPS, SOAK_STEPS, WINDOW = 500, int(4500 * SCALE), 1000
VEC_ENVS, VEC_WARMUP, VEC_STEPS, VEC_WINDOW = 16, 30, int(250 * SCALE), 80
RSS_BOUND_MB = 20.0
SLOWDOWN = 1.5


def rss_mb() -> float:
    """Resident set size now (Linux ``/proc/self/statm``; elsewhere the peak, from ``resource``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 1024


def report(capsys, record_property, name: str, figures: dict) -> None:
    for k, v in figures.items():
        record_property(f"{name}.{k}", v)
    with capsys.disabled():
        print(f"\n[soak] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def timed(fn):
    """(wall seconds, process CPU seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def figures_of(times: list[tuple[float, float]], rss_start: float, rss_end: float, window: int) -> dict:
    wall, cpu = [t[0] for t in times], [t[1] for t in times]

    def med_ms(xs):
        return round(1e3 * statistics.median(xs), 3)

    return {
        "steps": len(times), "rss_after_warmup_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_start, 2),
        "median_cpu_ms_first": med_ms(cpu[:window]), "median_cpu_ms_last": med_ms(cpu[-window:]),
        "median_wall_ms_first": med_ms(wall[:window]), "median_wall_ms_last": med_ms(wall[-window:]),
        "slowdown_cpu": round(statistics.median(cpu[-window:]) / statistics.median(cpu[:window]), 3),
        "slowdown_wall": round(statistics.median(wall[-window:]) / statistics.median(wall[:window]), 3),
    }  # fmt: skip


def test_soak_single_env(capsys, record_property):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("CRLPrompt/Tiny-v0")
    d = env.action_space.shape[0]
    rng = np.random.default_rng(0)
    bad = np.full(d, np.nan, np.float32)
    env.reset(seed=0)

    def step(i: int) -> tuple[float, float]:
        if i % 50 == 49:  # the refusal path must not leak either
            with pytest.raises(ValueError):
                env.step(bad)
        a = rng.standard_normal(d, dtype=np.float32)
        out = []
        dt = timed(lambda: out.extend(env.step(a)))
        _, r, terminated, truncated, _ = out
        assert terminated and not truncated and 0.0 <= r <= 1.0
        env.reset()
        return dt

    for i in range(WARMUP_STEPS):
        step(i)
    rss_start = rss_mb()
    t_start = time.perf_counter()
    times = [step(i) for i in range(SOAK_STEPS)]
    wall = time.perf_counter() - t_start
    rss_end = rss_mb()
    figures = figures_of(times, rss_start, rss_end, WINDOW)
    figures["wall_s"] = round(wall, 1)
    report(capsys, record_property, "Tiny-v0 single env", figures)

    assert env.unwrapped.search.num_evals == WARMUP_STEPS + SOAK_STEPS  # refused steps evaluate nothing
    assert rss_end - rss_start < RSS_BOUND_MB, figures
    assert figures["slowdown_cpu"] < SLOWDOWN, figures


def test_soak_vector_env(capsys, record_property):
    venv = gym.make_vec("CRLPrompt/Tiny-v0", num_envs=VEC_ENVS, vectorization_mode="vector_entry_point")
    d = venv.single_action_space.shape[0]
    rng = np.random.default_rng(1)
    venv.reset(seed=0)

    def step() -> tuple[float, float]:
        a = rng.standard_normal((VEC_ENVS, d), dtype=np.float32)
        out = []
        dt = timed(lambda: out.extend(venv.step(a)))  # autoreset in the same step
        _, r, terminated, truncated, _ = out
        assert r.shape == (VEC_ENVS,) and ((0 <= r) & (r <= 1)).all() and terminated.all() and not truncated.any()
        return dt

    for _ in range(VEC_WARMUP):
        step()
    rss_start = rss_mb()
    t_start = time.perf_counter()
    times = [step() for _ in range(VEC_STEPS)]
    wall = time.perf_counter() - t_start
    rss_end = rss_mb()
    figures = figures_of(times, rss_start, rss_end, VEC_WINDOW)
    figures["wall_s"] = round(wall, 1)
    figures["prompt_evals"] = VEC_ENVS * (VEC_WARMUP + VEC_STEPS)
    report(capsys, record_property, f"Tiny-v0 vector env x{VEC_ENVS}", figures)

    assert venv.unwrapped.search.num_evals == figures["prompt_evals"]
    assert rss_end - rss_start < RSS_BOUND_MB, figures
    assert figures["slowdown_cpu"] < SLOWDOWN, figures
