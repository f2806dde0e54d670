"""crlprompt.api.PromptClassifier: train on one's own (text, label) pairs, evaluate, save a run
directory that ``crl-prompt eval`` reads, load it back, predict; and the README quickstart."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from crlprompt import PromptClassifier
from crlprompt.data.synthetic import tiny_split
from crlprompt.errors import ConfigError, DataError
from crlprompt.prompt_io import HEAD_FILE, read_card_record
from crlprompt.runners.records import SCHEMA

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
    scores = clf.evaluate(TEST.texts, TEST.labels)
    proba = clf.predict_proba(TEST.texts)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(1), 1, atol=1e-6)
    assert scores == {"accuracy": pytest.approx(float((proba.argmax(1) == TEST.labels).mean()), abs=1e-6), "n": 40}
    assert clf.predict(TEST.texts[:3]) == [NAMES[i] for i in proba[:3].argmax(1)]

    out = clf.save(tmp_path / "mine")
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.jsonl", "prompt.safetensors", "adapter", "data"}
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "crl" and config["setup"]["task"] == "custom" and config["agent"]["rl_interval"] == 2
    assert config["task_spec"]["label_names"] == NAMES and set(config["data"]) == {"train", "rl", "test"}
    final = json.loads((out / "metrics.jsonl").read_text())
    assert final["test_acc"] == scores["accuracy"] and final["n_train"] + final["n_rl"] == 96 and final["n_test"] == 40
    assert final["schema"] == SCHEMA and final["kind"] == "train" and final["machine"]["torch_threads"] >= 1
    assert final["versions"]["commit"] and final["config"]["setup"]["init"] != "auto"  # the config as built
    assert (out / "adapter" / HEAD_FILE).is_file() and read_card_record(out / "adapter")["labels"] == NAMES

    back = PromptClassifier.load(out, device="cpu")
    assert back.labels == tuple(NAMES) and back.config.method == "crl"
    np.testing.assert_array_equal(back.predict_proba(TEST.texts), proba)  # the same prompt and head, bit for bit
    assert back.evaluate(TEST.texts, TEST.labels) == scores

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
    assert before.record["n_rl"] == len(TEST) and before.record["n_train"] == len(TRAIN)  # validation = D_RL


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


def test_quickstart_example(tmp_path, capsys):
    """examples/quickstart.py (the README's quickstart): fit, evaluate, save, load, predict, and
    ``crl-prompt eval`` of what it saved gives the accuracy it printed."""
    out = tmp_path / "quickstart"
    res = runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="example")["main"](str(out))
    assert res["scores"]["n"] == 4 and set(res["predicted"]) <= set(NAMES) and len(res["predicted"]) == 2
    assert res["proba"].shape == (4, 2)
    assert eval_cli(out, capsys)["accuracy"] == pytest.approx(res["scores"]["accuracy"], abs=1e-7)
