"""Property tests of training-state files (:func:`crlprompt.checkpoint.load_state`): damaged files.

See :mod:`helpers.properties` for what a property promises and how pinned bugs are kept.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from crlprompt.checkpoint import CheckpointError, load_state

from helpers.properties import count_case, damaged, fresh_name, fuzz


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    """A real state file from a short CRL run, with what load_state returns for it."""
    from crlprompt.agents.crl import CRLAgent, CRLConfig
    from helpers.tiny import tiny_setup

    path = tmp_path_factory.mktemp("state") / "state.safetensors"
    CRLAgent(tiny_setup(), CRLConfig(phase1_epochs=0.25, phase2_epochs=0), progress=False).learn(
        checkpoint=str(path), checkpoint_every=1
    )
    tensors, doc = load_state(path)
    return path.read_bytes(), tensors, doc


def _same_state_file(loaded, tensors, doc) -> bool:
    t2, d2 = loaded
    return (
        d2 == doc
        and t2.keys() == tensors.keys()
        and all(t2[k].dtype == v.dtype and torch.equal(t2[k], v) for k, v in tensors.items())
    )



@fuzz(400)
@given(data=st.data())
def test_load_state_refuses_damage(state_file, workdir, data):
    """Random, truncated, bit-flipped or extended state files: CheckpointError, or (for changes the
    format cannot see, such as header whitespace) exactly the original tensors and document."""
    count_case("load_state_damaged")
    original, tensors, doc = state_file
    blob = data.draw(damaged(original), label="file")
    path = workdir / fresh_name("state")
    path.write_bytes(blob)
    try:
        loaded = load_state(path)
    except CheckpointError as e:
        event("CheckpointError")
        assert "\n" not in str(e) and str(path) in str(e)
        return
    finally:
        path.unlink()
    event("loaded, identical")
    assert _same_state_file(loaded, tensors, doc), "a damaged state file loaded as different data"


def test_load_state_missing_or_directory(tmp_path):
    for p in (tmp_path / "nope.safetensors", tmp_path):
        with pytest.raises(CheckpointError):
            load_state(p)


def _forge_state(path: Path, doc_text: str) -> None:
    """A state file with a valid checksum around ``doc_text`` (what a tool or a person could write)."""
    from safetensors.torch import save_file

    from crlprompt.checkpoint import FORMAT, _digest

    tensors = {"param.x": torch.zeros(2)}
    save_file(tensors, str(path), metadata={"format": FORMAT, "doc": doc_text, "sha256": _digest(tensors, doc_text)})


@pytest.mark.parametrize("doc_text", ['{"step": ', "[1, 2]"], ids=["not-json", "not-an-object"])
def test_bug_load_state_checksummed_bad_document(tmp_path, doc_text):
    path = tmp_path / "state.safetensors"
    _forge_state(path, doc_text)
    try:
        _, doc = load_state(path)
    except CheckpointError:
        return
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{type(e).__name__}: {e}") from None
    assert isinstance(doc, dict), f"load_state returned a {type(doc).__name__} document"
