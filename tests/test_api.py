"""crlprompt.api.PromptClassifier: train on one's own (text, label) pairs, evaluate, save a run
directory that ``crl-prompt eval`` reads, load it back, predict; and the README quickstart."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crlprompt import PromptClassifier
from crlprompt.data.synthetic import tiny_split
from crlprompt.errors import ConfigError, CRLPromptError, DataError
from crlprompt.prompt_io import HEAD_FILE, read_card_record
from crlprompt.runners.records import SCHEMA

from helpers.peft import plain_peft_adapter

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ["negative", "positive"]
TRAIN, TEST = tiny_split(96, 0), tiny_split(40, 1)
FAST = dict(num_tokens=3, batch_size=16, phase1_epochs=1, phase2_epochs=1, rl_interval=2, lr=1e-2)


def fitted(model="tiny-llama", **kw) -> PromptClassifier:
    clf = PromptClassifier(NAMES, model=model, device="cpu", **{**FAST, **kw})
    return clf.fit(TRAIN.texts, [NAMES[i] for i in TRAIN.labels])


def eval_cli(path: Path, capsys, *flags: str) -> dict:
    from crlprompt import cli

    capsys.readouterr()
    cli.main(["eval", "--checkpoint", str(path), *flags])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_lazy_public_name():
    import crlprompt
    from crlprompt.api import PromptClassifier as cls

    assert crlprompt.PromptClassifier is cls and "PromptClassifier" in crlprompt.__all__


def test_fit_evaluate_save_load_predict_round_trip(tmp_path, capsys):
    clf = fitted()
    scores = clf.evaluate(TEST.texts, TEST.labels, as_test=True)
    proba = clf.predict_proba(TEST.texts)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(1), 1, atol=1e-6)
    assert scores == {"accuracy": pytest.approx(float((proba.argmax(1) == TEST.labels).mean()), abs=1e-6), "n": 40}
    assert clf.predict(TEST.texts[:3]) == [NAMES[i] for i in proba[:3].argmax(1)]

    out = clf.save(tmp_path / "mine")
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "prompt.safetensors", "adapter", "data"}
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "crl" and config["setup"]["task"] == "custom" and config["agent"]["rl_interval"] == 2
    assert config["task_spec"]["label_names"] == NAMES and set(config["data"]) == {"train", "drl", "test"}
    final = json.loads((out / "metrics.jsonl").read_text())
    assert final["test_acc"] == scores["accuracy"] and final["n_train"] + final["n_drl"] == 96 and final["n_test"] == 40
    assert final["schema"] == SCHEMA and final["kind"] == "train" and final["machine"]["torch_threads"] >= 1
    assert final["versions"]["commit"] and final["config"]["setup"]["init"] != "auto"  # the config as built
    assert (out / "adapter" / HEAD_FILE).is_file() and read_card_record(out / "adapter")["labels"] == NAMES

    back = PromptClassifier.load(out, device="cpu")
    assert back.labels == tuple(NAMES) and back.config.method == "crl"
    np.testing.assert_array_equal(back.predict_proba(TEST.texts), proba)  # the same prompt and head, bit for bit
    assert back.evaluate(TEST.texts, TEST.labels) == scores and back.record == final

    res = eval_cli(out, capsys)  # crl-prompt eval reads it: the rows are in the run directory
    assert res["accuracy"] == pytest.approx(scores["accuracy"], abs=1e-7) and res["n"] == 40
    assert eval_cli(out, capsys, "--split", "train")["n"] == final["n_train"]


def test_fit_trains_the_prompt_and_head_and_never_the_lm():
    from crlprompt.models import load_model

    before = PromptClassifier(NAMES, model="tiny-bert", **FAST).fit(TRAIN.texts, TRAIN.labels, validation=(TEST.texts, TEST.labels))
    untrained = PromptClassifier(NAMES, model="tiny-bert", **{**FAST, "phase1_epochs": 0, "phase2_epochs": 0})
    untrained.fit(TRAIN.texts, TRAIN.labels, validation=(TEST.texts, TEST.labels))
    assert not torch.equal(before.model.prompt.theta, untrained.model.prompt.theta)
    assert not torch.equal(before.model.head.linear.weight, untrained.model.head.linear.weight)
    fresh = load_model("tiny-bert").body.state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in before.lm.body.state_dict().items())
    assert before.record["n_drl"] == len(TEST) and before.record["n_train"] == len(TRAIN)  # validation = D_RL


def test_same_seed_same_prompt_labels_as_names_or_ids():
    a = fitted(model="tiny-bert")
    b = PromptClassifier(NAMES, model="tiny-bert", device="cpu", **FAST).fit(TRAIN.texts, TRAIN.labels.tolist())
    assert torch.equal(a.model.prompt.theta, b.model.prompt.theta)
    c = fitted(model="tiny-bert", seed=1)
    assert not torch.equal(a.model.prompt.theta, c.model.prompt.theta)


def test_zero_shot_method_saves_no_adapter(tmp_path):
    clf = PromptClassifier(NAMES, model="tiny-bert", method="handcraft", verbalizer=["bad", "good"])
    clf.fit(TRAIN.texts, TRAIN.labels)
    assert clf.model.layout.num_tokens == 0 and clf.model.head_kind == "verbalizer"
    out = clf.save(tmp_path / "zs")
    assert not (out / "adapter").exists()
    back = PromptClassifier.load(out)
    np.testing.assert_array_equal(back.predict_proba(TEST.texts), clf.predict_proba(TEST.texts))


def test_loads_a_crl_prompt_train_run(tmp_path):
    from crlprompt.agents.crl import CRLConfig
    from crlprompt.build import SetupConfig
    from crlprompt.runners.train import TrainConfig, evaluate_checkpoint, run
    from crlprompt.tasks import load_task

    out = tmp_path / "run"
    run(TrainConfig(setup=SetupConfig(task="tiny", model="tiny-bert", num_tokens=2), method="ptv2", out=out,
                    agent=CRLConfig(phase1_epochs=1, phase2_epochs=0)), progress=False)  # fmt: skip
    clf = PromptClassifier.load(out)
    assert clf.labels == ("negative", "positive") and clf.splits == {}
    lines = (out / "metrics.jsonl").read_text().splitlines()
    final = json.loads(lines[-1])
    assert clf.record == final and final["schema"] == SCHEMA and final["machine"]["device"] == "cpu"
    assert all("schema" not in json.loads(line) for line in lines[:-1])  # the epoch lines are the run's log
    # a run directory saved before records had a schema: its record is migrated as it is read
    old = {k: v for k, v in final.items() if k not in ("schema", "kind")}
    (out / "metrics.jsonl").write_text("\n".join([*lines[:-1], json.dumps(old)]) + "\n")
    assert PromptClassifier.load(out).record == {**final, "migrated_from": {"schema": None, "file": "metrics.jsonl"}}
    test = load_task("tiny").test
    assert clf.evaluate(test.texts, test.labels)["accuracy"] == pytest.approx(evaluate_checkpoint(out)["accuracy"], abs=1e-7)


@pytest.mark.slow  # a subprocess or hundreds of steps: seconds, outside the inner loop
def test_verbose_shows_a_bar_and_a_summary_line_and_quiet_shows_neither():
    """In a fresh interpreter with no logging configured (pytest's own handlers would hide the rule):
    verbose (the default) writes the bar and the INFO lines to stderr, verbose=False writes neither."""
    code = (
        "import sys\n"
        "from crlprompt import PromptClassifier\n"
        "from crlprompt.data.synthetic import tiny_split\n"
        "rows = tiny_split(48, 0)\n"
        "kw = dict(model='tiny-bert', num_tokens=2, batch_size=16, phase1_epochs=1, phase2_epochs=0, device='cpu')\n"
        "PromptClassifier(['negative', 'positive'], verbose=False, **kw).fit(rows.texts, rows.labels)\n"
        "print('=== verbose', file=sys.stderr, flush=True)\n"
        "PromptClassifier(['negative', 'positive'], **kw).fit(rows.texts, rows.labels)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    quiet, verbose = res.stderr.split("=== verbose")
    assert "crlprompt" not in quiet and "train:" not in quiet, quiet
    assert "train:" in verbose and "step" in verbose  # tqdm's bar
    summary = [line for line in verbose.splitlines() if "fit: crl on 48 rows" in line]
    assert len(summary) == 1 and "D_RL accuracy" in summary[0] and summary[0].rstrip().endswith("s"), verbose


def test_quiet_holds_back_info_lines_even_where_logging_is_configured(caplog):
    with caplog.at_level("INFO", logger="crlprompt"):
        fitted(model="tiny-bert", verbose=False)
        assert not [r for r in caplog.records if r.levelname == "INFO"], caplog.text
        clf = fitted(model="tiny-bert")
    assert clf.progress and not PromptClassifier(NAMES, verbose=False).progress
    assert PromptClassifier(NAMES, verbose=False, progress=True).progress  # progress set: the bar alone
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("fit: "))
    assert f"crl on 96 rows ({clf.record['n_train']} train, {clf.record['n_drl']} D_RL)" in line
    assert f"D_RL accuracy {clf.record['drl_acc']:.4f}" in line


def test_loads_a_plain_peft_adapter_given_only_its_labels(tmp_path):
    """An adapter saved by PEFT itself records no task: labels=[...] make it a classifier of those
    classes; with a built-in task's name the labels rename that task's classes."""
    from crlprompt.runners.train import evaluate_checkpoint
    from crlprompt.tasks import load_task

    out = tmp_path / "adapter"
    plain_peft_adapter(out, "tiny-llama", "PREFIX_TUNING", tokens=3)
    with pytest.raises(CRLPromptError, match=r"pass labels=\[\.\.\.\] \(your own class names\) or task=NAME"):
        PromptClassifier.load(out, model="tiny-llama", device="cpu")

    clf = PromptClassifier.load(out, labels=["bad", "good"], model="tiny-llama", device="cpu", verbose=False)
    assert clf.labels == ("bad", "good") and clf.config.setup.task == "custom" and clf.model.layout.num_tokens == 3
    test = load_task("tiny").test
    want = evaluate_checkpoint(out, task="tiny", model="tiny-llama", device="cpu")["accuracy"]
    assert clf.evaluate(test.texts, test.labels)["accuracy"] == pytest.approx(want, abs=1e-7)
    assert set(clf.predict(test.texts[:4])) <= {"bad", "good"}

    named = PromptClassifier.load(out, labels=["bad", "good"], task="tiny", model="tiny-llama", device="cpu")
    assert named.labels == ("bad", "good") and named.config.setup.task == "tiny"
    np.testing.assert_array_equal(named.predict_proba(test.texts[:8]), clf.predict_proba(test.texts[:8]))
    with pytest.raises(ConfigError, match="one name per class"):
        PromptClassifier.load(out, labels=["a", "b", "c"], task="tiny", model="tiny-llama", device="cpu")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(labels=["a", "a"]), "distinct"),
        (dict(labels=["only"]), "two or more"),
        (dict(labels=NAMES, task="sst2"), "built-in"),
        (dict(labels=NAMES, learning_rate=1e-3), "learning_rate"),
        (dict(labels=NAMES, method="nope"), "unknown method"),
        (dict(labels=NAMES, lr=float("nan")), "lr"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PromptClassifier(model="tiny-bert", **kwargs)


def test_bad_rows_and_order_of_calls(tmp_path):
    clf = PromptClassifier(NAMES, model="tiny-bert", **FAST)
    with pytest.raises(ConfigError, match="fit"):
        clf.predict(["the movie"])
    with pytest.raises(DataError, match="neutral"):
        clf.fit(["a", "b"], ["positive", "neutral"])
    with pytest.raises(DataError, match="one string"):
        clf.fit("the movie was great", [1])
    with pytest.raises(DataError, match="2 texts and 1 labels"):
        clf.fit(["a", "b"], [1])
    with pytest.raises(DataError, match="not a string"):
        clf.fit(["a", 3], [1, 0])
    clf.fit(TRAIN.texts, TRAIN.labels)
    assert clf.predict([]) == []
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="overwrite=True"):
        clf.save(tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "x"
    clf.save(tmp_path / "full", overwrite=True)
    assert not (tmp_path / "full" / "keep.txt").exists() and not list(tmp_path.glob(".*partial"))


TEST_TEXTS_OF_QUICKSTART = ["a wonderful film", "the plot was boring", "good fun", "an awful movie"]


def test_quickstart_example(tmp_path, capsys):
    """examples/quickstart.py (the README's quickstart): fit, evaluate, save, load, predict, and
    ``crl-prompt eval`` scores what it saved the way the loaded classifier does."""
    out = tmp_path / "quickstart"
    res = runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="example")["main"](str(out))
    assert res["scores"]["n"] == 4 and set(res["predicted"]) <= set(NAMES) and len(res["predicted"]) == 2
    assert res["proba"].shape == (4, 2)
    back = PromptClassifier.load(out, device="cpu")
    test = back.splits["test"]  # the example evaluates with as_test=True: its held-out rows are the saved test split
    assert list(test.texts) == TEST_TEXTS_OF_QUICKSTART
    want = back.evaluate(test.texts, test.labels)
    res = eval_cli(out, capsys)
    assert res["accuracy"] == pytest.approx(want["accuracy"], abs=1e-7) and res["n"] == want["n"]
