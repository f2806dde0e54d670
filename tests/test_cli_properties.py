"""Property tests of the CLI (:mod:`crlprompt.cli`): bad flag values and combinations exit 2, cleanly.

See :mod:`helpers.properties` for what a property promises and how pinned bugs are kept.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from crlprompt.losses.rl import ESTIMATORS
from crlprompt.runners.train import METHODS
from crlprompt.tasks import _ALIASES, _norm

from helpers.properties import count_case, fresh_name, fuzz


def _float_refused(s: str, strict_positive: bool) -> bool:
    """Would tyro's float() parse plus CRLConfig's check refuse ``s`` (before any training)?"""
    try:
        x = float(s)
    except ValueError:
        return True
    if math.isinf(x) and x > 0:
        return False  # +inf passes CRLConfig: a validation gap (test_bug_cli_value_accepted_then_fails)
    return not (x > 0) if strict_positive else x < 0


def _int_refused(s: str, allow_none: bool = False) -> bool:
    if allow_none and s == "None":
        return False
    try:
        return int(s) <= 0
    except ValueError:
        return True


def _floats_as_text(strict_positive: bool) -> st.SearchStrategy[str]:
    nums = st.floats(max_value=0.0) if strict_positive else st.floats(max_value=-5e-324)
    s = nums.map(repr) | st.sampled_from(["nan", "-inf", "", "abc", "1/2", "0x1", "1,5", "--", "None", "1e-3e"])
    if strict_positive:
        s = s | st.sampled_from(["0", "-0", "-0.0", "0e10", "NaN"])
    return (s | st.text(max_size=8)).filter(lambda v: _float_refused(v, strict_positive))


def _ints_as_text(allow_none: bool = False) -> st.SearchStrategy[str]:
    s = st.integers(max_value=0).map(str) | st.sampled_from(["1.5", "1e3", "", "abc", "none", "0x10", "nan", "-1"])
    return (s | st.text(max_size=6)).filter(lambda v: _int_refused(v, allow_none))


CLI_FLAGS: dict[str, tuple[str, st.SearchStrategy]] = {
    # flag: (field name the message must mention, invalid values as argv tokens after "--flag=")
    "--lr": ("lr", _floats_as_text(True)),
    "--batch-size": ("batch_size", _ints_as_text()),
    "--beta": ("beta", _floats_as_text(False)),
    "--gamma": ("gamma", _floats_as_text(False)),
    "--sigma": ("sigma", _floats_as_text(True)),
    "--tau": ("tau", _floats_as_text(True)),
    "--rl-estimator": ("rl_estimator", st.text(max_size=10).filter(lambda v: v not in ESTIMATORS)),
    "--rl-samples": ("rl_samples", _ints_as_text()),
    "--reward-batch-size": ("reward_batch_size", _ints_as_text(allow_none=True)),
    "--num-tokens": ("num_tokens", _ints_as_text()),
    "--task": ("task", st.text(max_size=12).filter(lambda v: v != "tiny" and _ALIASES.get(_norm(v)) is None)),
    "--model": ("model", st.text(max_size=12).filter(lambda v: v not in ("tiny-bert", "tiny-llama"))),
    "--method": ("method", st.text(max_size=12).filter(lambda v: v not in METHODS)),
}
# valid values that are refused together: (extra argv, field the message must mention)
CLI_COMBOS = [
    (["--rl-estimator=antithetic", "--rl-samples=3"], "rl_estimator"),
    (["--rl-estimator=ranks", "--rl-samples=1"], "rl_estimator"),
    (["--method=ptv1", "--num-tokens=-1"], "num_tokens"),
]


def _run_cli(argv: list[str], capsys) -> tuple[object, str, str]:
    from crlprompt import cli

    capsys.readouterr()
    code: object = "returned"
    try:
        cli.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _check_cli_refusal(code, out, err, field: str, flag: str, out_dir: Path) -> None:
    assert code == 2, (code, err[-2000:])
    assert "Traceback" not in err, err
    assert not out_dir.exists(), "--out was created"
    assert not (out_dir.parent / f".{out_dir.name}.partial").exists(), "a .partial directory was left"
    if "crl-prompt: error:" in err:  # our own message: one line
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("crl-prompt: error:"), err
        assert field.replace("_", " ") in lines[0] or field in lines[0] or flag in lines[0]
    else:  # tyro's parse error box: names the flag or field
        assert flag in err or field in err, err


@pytest.mark.parametrize("flag", list(CLI_FLAGS))
@fuzz(25, suppress_health_check=[HealthCheck.function_scoped_fixture])  # capsys is drained per case
@given(data=st.data())
def test_cli_train_refuses_bad_flag(workdir, capsys, flag, data):
    """crl-prompt train --task tiny --model tiny-llama --out X --flag=BAD: exit 2, a short message,
    no traceback, and neither X nor .X.partial exists."""
    count_case(f"cli_bad_flag[{flag}]")
    field, values = CLI_FLAGS[flag]
    value = data.draw(values, label="value")
    out_dir = workdir / fresh_name("run")
    base = {"--task": "tiny", "--model": "tiny-llama", "--method": "crl"}
    argv = ["train", "--out", str(out_dir), *(f"{k}={v}" for k, v in base.items() if k != flag), f"{flag}={value}"]
    code, out, err = _run_cli(argv, capsys)
    if flag in ("--task", "--model"):
        field = "task" if flag == "--task" else "model"
    _check_cli_refusal(code, out, err, field, flag, out_dir)


@pytest.mark.parametrize("extra,field", CLI_COMBOS, ids=["antithetic-odd", "ranks-one", "shallow-negative-tokens"])
def test_cli_train_refuses_bad_combination(workdir, capsys, extra, field):
    out_dir = workdir / fresh_name("run")
    code, out, err = _run_cli(["train", "--task=tiny", "--model=tiny-llama", "--out", str(out_dir), *extra], capsys)
    _check_cli_refusal(code, out, err, field, "--" + field.replace("_", "-"), out_dir)


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--sigma", "inf"),  # phase 1 trains, then PromptSearch refuses sigma: exit 2 with .x.partial left behind
        ("--sigma", "1e308"),  # OverflowError traceback from losses/rl.py:25 (sigma**2); .x.partial left behind
        ("--beta", "nan"),  # accepted and silently treated as 0 (nan > 0 is False): the run "succeeds"
        ("--gamma", "inf"),  # NaN loss in phase 2: exit 2 after training, .x.partial left behind
    ],
)
def test_bug_cli_value_accepted_then_fails(workdir, capsys, flag, value):
    out_dir = workdir / fresh_name("run")
    argv = ["train", "--task=tiny", "--model=tiny-llama", "--method=crl", "--out", str(out_dir), f"{flag}={value}"]
    try:
        code, out, err = _run_cli(argv, capsys)
    except Exception as e:  # noqa: BLE001  (an uncaught exception is the bug too)
        raise AssertionError(f"{type(e).__name__}: {e}") from None
    _check_cli_refusal(code, out, err, flag[2:].replace("-", "_"), flag, out_dir)
