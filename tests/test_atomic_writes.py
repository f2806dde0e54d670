"""crlprompt.atomic: records and run-directory files are found whole or not at all.

The kill tests run a real writer in a subprocess, SIGKILL it while a write is in progress (the file
being written is watched until it holds part of a record), then check what a reader finds and that the
next run reads every record before the kill and adds the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crlprompt.atomic import append_line, atomic_dir, atomic_file, atomic_write, partial_dir
from crlprompt.runners.common import append_jsonl, load_results

ROOT = Path(__file__).resolve().parents[1]
PAD = 4 << 20  # 4 MiB a record: one write takes long enough to be caught in the middle


# ----------------------------------------------------------------------------- without a kill
def test_an_append_after_a_torn_line_keeps_every_whole_record(tmp_path):
    path = tmp_path / "records.jsonl"
    append_jsonl(path, {"i": 0})
    append_jsonl(path, {"i": 1})
    with open(path, "a") as f:  # what a writer killed mid-line leaves: part of a record, no newline
        f.write('{"i": 2, "pad": "xx')
    append_jsonl(path, {"i": 3})
    assert path.read_text().splitlines() == ['{"i": 0}', '{"i": 1}', '{"i": 2, "pad": "xx', '{"i": 3}']
    assert load_results(path) == [{"i": 0}, {"i": 1}, {"i": 3}]


def test_append_line_writes_one_line():
    with pytest.raises(ValueError, match="one line"):
        append_line(os.devnull, '{"a": 1}\n{"b": 2}')


def test_an_error_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "config.json"
    atomic_write(path, '{"old": true}\n')
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text('{"new": ')
        raise RuntimeError("the writer fails half-way")
    assert path.read_text() == '{"old": true}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    atomic_write(path, b'{"new": true}\n')
    assert json.loads(path.read_text()) == {"new": True} and len(list(tmp_path.iterdir())) == 1


def test_the_temporary_keeps_the_suffix(tmp_path):
    with atomic_file(tmp_path / "curves.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".curves.png.")
        tmp.write_bytes(b"png")
    assert (tmp_path / "curves.png").read_bytes() == b"png"


def test_an_error_mid_directory_leaves_the_old_directory(tmp_path):
    out = tmp_path / "run"
    with atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("2")
        raise RuntimeError("the writer fails half-way")
    assert (out / "config.json").read_text() == "1" and not partial_dir(out).exists()
    with atomic_dir(out) as tmp:
        (tmp / "other.json").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["other.json"]  # replaced as a whole


def test_an_adapter_replaces_an_adapter_and_refuses_other_files(tmp_path):
    from crlprompt.errors import CheckpointError
    from crlprompt.models import load_model
    from crlprompt.prompt_io import ADAPTER_CONFIG, HEAD_FILE, load_prompt, save_peft_adapter
    from crlprompt.prompts import PromptedModel, PromptLayout, SoftPrompt

    lm = load_model("tiny-bert")
    layout = PromptLayout.for_model(lm, "deep", 2)
    first, second = (PromptedModel(lm, SoftPrompt(layout, lm, seed=s, init="random"), "linear", 2) for s in (0, 1))
    out = tmp_path / "adapter"
    save_peft_adapter(first, out)
    (out / "stale.txt").write_text("from an older save")
    save_peft_adapter(second, out)  # an adapter there: replaced whole
    assert (out / ADAPTER_CONFIG).is_file() and (out / HEAD_FILE).is_file() and not (out / "stale.txt").exists()
    assert not partial_dir(out).exists()
    load_prompt(first, out)
    assert first.prompt.theta.detach().equal(second.prompt.theta.detach())
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("mine")
    with pytest.raises(CheckpointError, match="new or empty directory"):
        save_peft_adapter(first, notes)
    assert [p.name for p in notes.iterdir()] == ["todo.md"]


# ----------------------------------------------------------------------------- killed writers
def _start(script: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _kill_when(proc: subprocess.Popen, mid_write, timeout: float = 120.0) -> bool:
    """SIGKILL ``proc`` as soon as ``mid_write()`` is true (polled); True if it was caught mid-write,
    False if the timeout came first (killed then). Fails if the writer exited by itself."""
    deadline = time.monotonic() + timeout
    caught = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the writer exited ({proc.returncode}) before it was killed: {proc.stderr.read()}")
        try:
            caught = mid_write()
        except OSError:  # the file is being renamed or created
            caught = False
        if caught:
            break
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return caught


APPENDER = """
    import sys
    from pathlib import Path
    from crlprompt.runners.common import append_jsonl, load_results
    path, stop = Path(sys.argv[1]), int(sys.argv[2])
    start = len(load_results(path))  # the next run reads what is there and adds the rest
    for i in range(start, stop):
        append_jsonl(path, {"i": i, "pad": "x" * %d})
""" % PAD


def _ends_mid_record(path: Path, lines_before: int) -> bool:
    """The file ends inside a record, after at least one more whole record than it had."""
    size = path.stat().st_size
    if size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, 2)
        torn = f.read(1) != b"\n"
    return torn and size > (lines_before + 1) * PAD


@pytest.mark.slow
def test_a_killed_appender_loses_no_record_and_the_next_run_reads_the_rest(tmp_path):
    path, torn = tmp_path / "results.jsonl", 0
    for _ in range(3):
        before = len(path.read_text().splitlines()) if path.exists() else 0
        _kill_when(_start(APPENDER, path, 10**6), lambda: _ends_mid_record(path, before))  # appends until killed
        torn += not path.read_bytes().endswith(b"\n")  # the kill cut a record: the file ends inside it
        records = load_results(path)
        assert [r["i"] for r in records] == list(range(len(records)))  # nothing lost, nothing twice
        assert all(len(r["pad"]) == PAD for r in records)  # nothing half-written read as a record
    assert torn > 0, "no kill cut a record: the test did not test a torn line"
    lines = path.read_text().splitlines()
    assert sum(1 for line in lines if not line.endswith("}")) == torn  # each torn record stays one skipped line
    stop = len(records) + 3
    last = _start(APPENDER, path, stop)  # the next run: reads what is there, appends the rest up to `stop`
    assert last.wait(timeout=120) == 0, last.stderr.read()
    records = load_results(path)
    assert [r["i"] for r in records] == list(range(stop)) and all(len(r["pad"]) == PAD for r in records)


RUN_DIR_WRITER = """
    import json, sys
    from pathlib import Path
    from crlprompt.atomic import atomic_dir
    from crlprompt.rundir import write_json
    out, n = Path(sys.argv[1]), 0
    while True:  # rewrite the run directory, each time a new generation in both files
        n += 1
        with atomic_dir(out) as tmp:
            write_json(tmp / "config.json", {"generation": n, "pad": "c" * %d})
            (tmp / "prompt.bin").write_bytes(n.to_bytes(4, "little") * %d)
""" % (PAD, PAD // 4)


def _check_run_dir(out: Path) -> int:
    """The run directory is whole: both files of one generation; that generation."""
    config = json.loads((out / "config.json").read_text())
    data = (out / "prompt.bin").read_bytes()
    assert len(config["pad"]) == PAD and len(data) == PAD
    assert data == config["generation"].to_bytes(4, "little") * (PAD // 4)
    return config["generation"]


def _mid_run_dir(out: Path) -> bool:
    """A second generation is being written: the partial directory's config holds part of it."""
    tmp = partial_dir(out)
    if not out.exists() or not tmp.exists():
        return False
    return any(0 < p.stat().st_size < PAD for p in tmp.iterdir() if p.name.startswith(".config.json."))


@pytest.mark.slow
def test_a_killed_run_directory_writer_leaves_the_last_whole_directory(tmp_path):
    out = tmp_path / "run"
    assert _kill_when(_start(RUN_DIR_WRITER, out), lambda: _mid_run_dir(out))
    generation = _check_run_dir(out)  # the last complete generation, whole; the partial one is not read
    assert generation >= 1 and partial_dir(out).exists()
    config = out / "config.json"
    writer = _start(RUN_DIR_WRITER.replace("while True", "for _ in range(1)"), out)
    assert writer.wait(timeout=120) == 0, writer.stderr.read()
    assert _check_run_dir(out) == 1 and not partial_dir(out).exists()  # the next run replaced it whole
    # one file rewritten over and over: a reader finds the old text or a new one, never a mix
    old = config.read_text()
    script = "import sys; from crlprompt.atomic import atomic_write\n" \
             "while True:\n    for c in 'ab': atomic_write(sys.argv[1], c * %d)" % PAD  # fmt: skip
    assert _kill_when(_start(script, config), lambda: any(
        0 < p.stat().st_size < PAD for p in out.iterdir() if p.name.startswith(".config.json.")))
    assert config.read_text() in (old, "a" * PAD, "b" * PAD)
