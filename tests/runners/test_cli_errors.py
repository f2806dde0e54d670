"""One error contract for every subcommand: a bad argument is one line on stderr naming the problem,
exit code 2, no traceback, and nothing written (not even an empty --out)."""

from __future__ import annotations

import os

import pytest

from crlprompt.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    return e.value.code, err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["train", "--task", "nope", "--model", "tiny-bert"], "unknown task"),
        (["eval", "--checkpoint", "{tmp}/missing"], "neither a crl-prompt run directory"),
        (["reproduce", "--tasks", "nope", "--models", "tiny-bert"], "unknown tasks ['nope']"),
        (["reproduce", "--tasks", "tiny", "--models", "tiny-bert", "--methods", "nope"], "unknown methods"),
        (["compare", "--env-id", "CRLPrompt/Tiny-Proj64-v0", "--algos", "nope"], "unknown algorithm"),
        (["compare", "--env-id", "CRLPrompt/Nope-v0"], "unknown env id"),
    ],
)
def test_every_subcommand_answers_a_bad_argument_with_one_line(argv, match, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] != "eval":
        argv += ["--out", str(out)]
    code, err = _run(argv, capsys)
    assert code == 2 and match in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("cmd", ["train", "reproduce", "compare"])
def test_an_out_that_cannot_be_a_directory_is_refused_before_loading(cmd, tmp_path, capsys, monkeypatch):
    """A file, a path under a file and an unwritable directory: one line, exit 2, before any model is built."""
    import crlprompt.build
    import crlprompt.runners.common as common

    args = {"train": ["train", "--task", "tiny", "--model", "tiny-bert"],
            "reproduce": ["reproduce", "--tasks", "tiny", "--models", "tiny-bert"],
            "compare": ["compare", "--env-id", "CRLPrompt/Tiny-Proj64-v0", "--algos", "random"]}[cmd]  # fmt: skip
    monkeypatch.setattr(crlprompt.build, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    a_file = tmp_path / "f"
    a_file.write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    real_access = os.access  # root writes anywhere: the unwritable directory is one that os.access says so of
    monkeypatch.setattr(common.os, "access", lambda p, mode: False if os.fspath(p) == str(ro) else real_access(p, mode))
    for out, said in ((a_file, "is a file"), (a_file / "under", "cannot be made"), (ro / "x", "not writable")):
        code, err = _run([*args, "--out", str(out)], capsys)
        assert code == 2 and said in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert not (ro / "x").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("crl-prompt ")
