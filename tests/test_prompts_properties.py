"""Property tests of prompt files (:func:`crlprompt.prompts.load_prompt`): damaged or forged files.

See :mod:`helpers.properties` for what a property promises and how pinned bugs are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from crlprompt.models import ModelError

from helpers.properties import NAN, count_case, damaged, fresh_name, fuzz


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    from helpers.tiny import tiny_setup
    from crlprompt.prompts import save_prompt

    setup = tiny_setup()
    path = tmp_path_factory.mktemp("prompt") / "prompt.safetensors"
    save_prompt(setup.model, path, {"task": "tiny"})
    return setup.model, path.read_bytes()


def _params(pm) -> dict:
    return {k: v.detach().clone() for k, v in pm.named_parameters() if v.requires_grad}


@fuzz(150)
@given(data=st.data())
def test_load_prompt_damaged_file_leaves_model_untouched(prompt_file, workdir, data):
    """Random / truncated / bit-flipped prompt files: an exception and θ, head unchanged, or a load.

    What it raises today (see the pinned bug below): safetensors' SafetensorError for random and
    truncated files, ModelError for well-formed files of another layout, JSONDecodeError/TypeError
    for a damaged layout, RuntimeError for a damaged theta shape. Bit flips in the tensor bytes fail
    the file's checksum (PromptFileError).
    """
    count_case("load_prompt_damaged")
    from crlprompt.prompts import load_prompt

    pm, original = prompt_file
    blob = data.draw(damaged(original), label="file")
    path = workdir / fresh_name("prompt")
    path.write_bytes(blob)
    before = _params(pm)
    try:
        load_prompt(pm, path)
    except Exception:  # noqa: BLE001
        after = _params(pm)
        assert all(torch.equal(before[k], after[k]) for k in before), "a refused prompt file changed the model"
    finally:
        path.unlink()
        with torch.no_grad():
            for k, v in pm.named_parameters():
                if k in before:
                    v.copy_(before[k])


def _forge_prompt(pm, path: Path, *, theta=None, layout=None) -> None:
    from safetensors.torch import save_file

    from crlprompt.prompts import save_prompt

    save_prompt(pm, path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    if theta is not None:
        tensors["theta"] = theta
    if layout is not None:
        meta["layout"] = layout
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "random",
        "truncated",
        "layout-not-json",
        "layout-missing-keys",
        "theta-(1,)-broadcasts",
        "theta-(16,16)",
        "theta-nan",
    ],
)
def test_bug_load_prompt_bad_file(prompt_file, tmp_path, case):
    from crlprompt.prompts import load_prompt

    pm, original = prompt_file
    path = tmp_path / "prompt.safetensors"
    d = pm.prompt.theta.numel()
    if case in ("empty", "random", "truncated"):
        raw = {"empty": b"", "random": np.random.default_rng(0).bytes(256), "truncated": original[: len(original) // 2]}
        path.write_bytes(raw[case])
    else:
        _forge_prompt(
            pm,
            path,
            **{
                "layout-not-json": {"layout": "{bad"},
                "layout-missing-keys": {"layout": '{"kind": "deep"}'},
                "theta-(1,)-broadcasts": {"theta": torch.tensor([7.0])},
                "theta-(16,16)": {"theta": torch.zeros(16, d // 16)},
                "theta-nan": {"theta": torch.full((d,), NAN)},
            }[case],
        )
    before = _params(pm)
    try:
        load_prompt(pm, path)
        raised = None
    except Exception as e:  # noqa: BLE001
        raised = e
    finally:
        after = _params(pm)
        with torch.no_grad():
            for k, v in pm.named_parameters():
                if k in before:
                    v.copy_(before[k])
    assert isinstance(raised, ModelError), f"load_prompt raised {type(raised).__name__}: {raised}"
    assert all(torch.equal(before[k], after[k]) for k in before)
