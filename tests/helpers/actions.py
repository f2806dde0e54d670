"""Actions for the env property tests: well-formed, special-valued, mis-shaped and plain junk."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import torch
from hypothesis import strategies as st

import crlprompt  # noqa: F401  (registers the CRLPrompt/... ids)

from .envs import TINY, TINY_PROJ  # noqa: F401  (re-exported for the property tests)
from .properties import INF, NAN


def make_env(env_id: str, **kwargs) -> gym.Env:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's note about the unbounded observation Box
        return gym.make(env_id, **kwargs)


def good_action(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(123).standard_normal(shape).astype(np.float32)


def check_reward(r: float, kind: str) -> None:
    assert isinstance(r, float) and math.isfinite(r), r
    if kind == "accuracy":
        assert 0.0 <= r <= 1.0, r
    elif kind == "neg_ce":
        assert r <= 0.0, r


# |finite values| <= 1e30: bigger ones are accepted and overflow the perturbed prompt to inf (float64
# beyond float32's range, or float32 near its max times the projection or summed over an episode);
# pinned by test_bug_env_action_not_cleanly_refused.
ACTION_MAX = 1e30
FLOAT_SPECIALS = [NAN, INF, -INF, 1e30, -1e30, 5e-324, -5e-324, 1e-45, 6e-8, 0.0, -0.0, 65504.0, 65520.0, 1e-300,
                  1.0, -1.0]  # fmt: skip
OTHER_DTYPES = [np.int8, np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.complex128, object, "U3", "S3",
                "datetime64[s]", "timedelta64[s]", np.dtype([("x", np.float32)])]  # fmt: skip


def float_values(dtype) -> st.SearchStrategy[float]:
    return st.sampled_from(FLOAT_SPECIALS) | st.floats(min_value=-ACTION_MAX, max_value=ACTION_MAX, width=64)


@st.composite
def float_array(draw, shape, dtypes=(np.float16, np.float32, np.float64)):
    """An array of ``shape``: zeros, N(0, s²) or a fill value, with up to 6 arbitrary entries set."""
    dtype = draw(st.sampled_from(dtypes))
    base = draw(st.sampled_from(["normal", "zeros", "fill"]))
    if base == "normal":
        scale = draw(st.sampled_from([1.0, 1e-30, 1e-3, 1e3, 1e30]))
        a = np.random.default_rng(draw(st.integers(0, 9))).standard_normal(shape) * scale
    elif base == "zeros":
        a = np.zeros(shape)
    else:
        a = np.full(shape, draw(float_values(dtype)))
    for idx, v in draw(st.lists(st.tuples(st.integers(0, 10**6), float_values(dtype)), max_size=6)):
        if a.size:
            a.flat[idx % a.size] = v
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dtype)


def wrong_shapes(want: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    d = want[-1]
    cands = [(), (0,), (1,), (d - 1,), (d + 1,), (1, d), (d, 1), (2, d), (d, d), (1, 1, d)]
    if len(want) == 2:
        n = want[0]
        cands += [(d,), (n,), (n - 1, d), (n + 1, d), (n, d + 1), (n, d - 1), (d, n), (1, n, d), (n, d, 1)]
    small = st.lists(st.integers(0, 5), max_size=3).map(tuple)
    return (st.sampled_from(cands) | small).filter(lambda s: s != want)


@st.composite
def any_action(draw, want: tuple[int, ...]):
    """Anything a caller might pass as an action for an env expecting ``want``-shaped float arrays."""
    kind = draw(st.sampled_from(["float", "float", "float", "dtype", "shape", "list", "scalar", "junk", "torch"]))
    if kind == "float":
        return draw(float_array(want))
    if kind == "dtype":
        dtype = draw(st.sampled_from(OTHER_DTYPES))
        fill = draw(st.sampled_from([0, 1]))
        return np.full(want, fill).astype(dtype) if dtype != object else np.full(want, float(fill), dtype=object)
    if kind == "shape":
        return draw(float_array(draw(wrong_shapes(want)), dtypes=(np.float32, np.float64)))
    if kind == "list":
        a = draw(float_array(want, dtypes=(np.float32, np.float64)))
        how = draw(st.sampled_from(["floats", "ints", "ragged", "tuple"]))
        if how == "ints":
            return np.zeros(want, np.int64).tolist()
        if how == "ragged":
            rows = a.reshape(-1, want[-1]).tolist()
            rows[-1] = rows[-1][:-1]
            return rows if len(want) == 2 else [rows[0], [0.0]]
        return a.tolist() if how == "floats" else tuple(a.tolist())
    if kind == "scalar":
        return draw(st.sampled_from([0.0, 1, True, None, NAN, 1e30, np.float32(0.5), np.float64(-2.0), 1j, -INF]))
    if kind == "junk":
        junk = ["", "0.5", "nan", b"\x00\x01", {"a": 1}, {0.0}, object(), [[]], [None], Ellipsis, slice(None),
                range(want[-1])]  # fmt: skip
        return draw(st.sampled_from(junk))
    # torch tensors: float16/32/64 (bfloat16 and tensors that require grad: pinned bugs)
    dtype = draw(st.sampled_from([torch.float16, torch.float32, torch.float64]))
    return torch.as_tensor(draw(float_array(want, dtypes=(np.float64,)))).to(dtype)


BASELINES: dict = {}  # what a run with no bad action gives, by (config, seed)


def baseline(key, fn):
    if key not in BASELINES:
        BASELINES[key] = fn()
    return BASELINES[key]

