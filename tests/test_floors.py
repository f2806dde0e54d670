"""Pooling as a setup option, the no-prompt floor, the neutral start, and the model-selection tie rule.

The rules: a linear head pools the way the checkpoint was trained (a sentence-transformers pooling
config beside the weights says ``mean``), a verbalizer the position its LM head predicts, runs saved
before the option keep [CLS]; the floor is a logistic regression on no-prompt features with C chosen
on D_RL; a deep zero prefix is the encoders' default start; ties in D_RL accuracy go to the lower loss.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crlprompt.build import SetupConfig, build, build_model
from crlprompt.errors import ConfigError
from crlprompt.prompt_io import PromptFileError
from crlprompt.floors import fit_logistic, fit_probe_head, instructed_probe, no_prompt_model, probe_floor
from crlprompt.models import trained_pooling
from crlprompt.prompts import resolve_pooling
from crlprompt.scoring import accuracy, pooled_features


# ----------------------------------------------------------------------------- pooling rules
def test_auto_pooling_follows_how_the_model_was_trained(tiny_bert, tiny_llama):
    assert resolve_pooling("auto", tiny_bert, "linear") == "cls"  # no sentence-transformers config
    assert resolve_pooling("auto", tiny_llama, "linear") == "last"
    assert resolve_pooling("auto", tiny_bert, "verbalizer") == "mask"
    assert resolve_pooling("auto", tiny_llama, "verbalizer") == "last"
    tiny_bert.trained_pooling = "mean"  # what MiniLM's packaged 1_Pooling/config.json says
    assert resolve_pooling("auto", tiny_bert, "linear") == "mean"
    assert resolve_pooling("legacy", tiny_bert, "linear") == "cls"  # runs saved before the option
    assert resolve_pooling("mean", tiny_llama, "linear") == "mean"
    with pytest.raises(ConfigError, match="pooling must be 'mask'"):
        resolve_pooling("mean", tiny_bert, "verbalizer")
    with pytest.raises(ConfigError, match="pooling must be one of"):
        SetupConfig(pooling="max")


def test_trained_pooling_reads_a_sentence_transformers_config(tmp_path):
    assert trained_pooling(tmp_path) is None
    (tmp_path / "pool").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 1, "path": "pool", "type": "sentence_transformers.models.Pooling"}]))
    flags = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}
    (tmp_path / "pool" / "config.json").write_text(json.dumps(flags))
    assert trained_pooling(tmp_path) == "mean"
    (tmp_path / "pool" / "config.json").write_text(json.dumps({**flags, "pooling_mode_mean_tokens": False,
                                                                "pooling_mode_cls_token": True}))  # fmt: skip
    assert trained_pooling(tmp_path) == "cls"
    (tmp_path / "pool" / "config.json").write_text(json.dumps({**flags, "pooling_mode_mean_tokens": False,
                                                                "pooling_mode_max_tokens": True}))  # fmt: skip
    assert trained_pooling(tmp_path) is None  # max pooling is not implemented here: the arch default applies


@pytest.mark.parametrize("kind", ["deep", "shallow"])
def test_mean_pooling_averages_the_input_tokens_only(tiny_bert, kind, make_batch):
    """Mean pooling = the masked mean of the last hidden states over the input positions (never the
    shallow prompt's), and a row's feature does not depend on the padding its batch adds."""
    from crlprompt.tasks import get_task

    pm = build_model(tiny_bert, get_task("tiny"), prompt=kind, num_tokens=3, seed=1, init="random", pooling="mean").eval()
    ids, mask, _ = make_batch(tiny_bert)
    with torch.no_grad():
        feats = pm.features(ids, mask)[0]  # (B, H)
        p = 3 if kind == "shallow" else 0
        theta = pm.prompt.theta.view(1, -1)
        # by hand: the same forward, then the mean over the unpadded input positions
        if kind == "shallow":
            emb = torch.cat([theta.view(1, 3, -1).expand(len(ids), -1, -1), tiny_bert.input_embeddings()(ids)], 1)
            full = torch.cat([mask.new_ones(len(ids), 3), mask], 1)
            hidden = tiny_bert.body(inputs_embeds=emb, attention_mask=full).last_hidden_state[:, p:]
        else:
            hidden = None
        for i in range(len(ids)):
            n = int(mask[i].sum())
            alone = pm.features(ids[i : i + 1, :n], mask[i : i + 1, :n])[0, 0]
            torch.testing.assert_close(feats[i], alone, atol=1e-5, rtol=1e-5)  # padding changes nothing
            if hidden is not None:
                torch.testing.assert_close(feats[i], hidden[i, :n].mean(0), atol=1e-5, rtol=1e-5)
    cls = build_model(tiny_bert, get_task("tiny"), prompt=kind, num_tokens=3, seed=1, init="random", pooling="cls")
    with torch.no_grad():
        assert not torch.allclose(cls.eval().features(ids, mask)[0], feats)  # a different feature, not a renamed one


def test_zero_init_is_the_encoders_deep_default(tiny_bert, tiny_llama):
    from crlprompt.tasks import get_task

    spec = get_task("tiny")
    assert not build_model(tiny_bert, spec, prompt="deep", num_tokens=2).prompt.theta.any()
    assert build_model(tiny_llama, spec, prompt="deep", num_tokens=2).prompt.theta.abs().sum() > 0  # tokens init
    assert build_model(tiny_bert, spec, prompt="shallow", num_tokens=2).prompt.theta.abs().sum() > 0  # token embeddings


# ----------------------------------------------------------------------------- the probe
def test_fit_logistic_matches_sklearn_and_picks_c_on_d_rl():
    from sklearn.linear_model import LogisticRegression

    g = np.random.default_rng(0)
    centers = g.normal(size=(3, 8)) * 3
    y = np.repeat(np.arange(3), 20)
    x = centers[y] + g.normal(size=(60, 8)) * 2
    y_rl = np.repeat(np.arange(3), 10)
    x_rl = centers[y_rl] + g.normal(size=(30, 8)) * 2
    fit = fit_logistic(torch.tensor(x), torch.tensor(y), torch.tensor(x_rl), torch.tensor(y_rl), 3, cs=(0.01, 1.0))
    scale = 1 / np.linalg.norm(x, axis=1).mean()
    ref = LogisticRegression(C=fit.c, max_iter=5000).fit(x * scale, y)
    assert (fit.logits(torch.tensor(x_rl)).argmax(1).numpy() == ref.predict(x_rl * scale)).all()
    accs = {c: (LogisticRegression(C=c, max_iter=5000).fit(x * scale, y).predict(x_rl * scale) == y_rl).mean()
            for c in (0.01, 1.0)}  # fmt: skip
    assert fit.drl_acc == pytest.approx(max(accs.values()))
    # binary: scikit-learn's one-row form becomes two logits with the same decisions
    b = fit_logistic(torch.tensor(x[y < 2]), torch.tensor(y[y < 2]), torch.tensor(x_rl[y_rl < 2]),
                     torch.tensor(y_rl[y_rl < 2]), 2, cs=(1.0,))  # fmt: skip
    ref2 = LogisticRegression(C=1.0, max_iter=5000).fit(x[y < 2] * scale, y[y < 2])
    assert (b.logits(torch.tensor(x_rl[y_rl < 2])).argmax(1).numpy() == ref2.predict(x_rl[y_rl < 2] * scale)).all()
    with pytest.raises(ConfigError, match="at least two classes"):
        fit_logistic(torch.tensor(x[:5]), torch.zeros(5, dtype=torch.long), torch.tensor(x_rl), torch.tensor(y_rl), 3)


def test_probe_floor_has_no_prompt_and_is_what_a_head_fitted_on_unprompted_features_scores():
    setup = build(SetupConfig(task="tiny", model="tiny-bert", num_tokens=3, pooling="mean"))
    floor = probe_floor(setup)
    pm = no_prompt_model(setup)
    assert pm.layout.num_tokens == 0 and pm.pooling == "mean"
    fit = fit_probe_head(pm, setup.train, setup.drl)
    assert floor["c"] == fit.c and floor["drl_acc"] == pytest.approx(fit.drl_acc)
    assert floor["test_acc"] == pytest.approx(accuracy(pm, setup.test, theta=torch.zeros(0)))
    # the floor's features are the unprompted model's: the prompted model's differ
    assert not torch.allclose(pooled_features(pm, setup.test), pooled_features(setup.model.eval(), setup.test))


def test_an_instruction_carried_to_a_probed_target_is_the_floor_on_instructed_rows():
    """instructed_probe(setup, w) is the no-prompt floor of the same rows with w in front of each input;
    the empty instruction is the floor itself."""
    import dataclasses

    from crlprompt.tasks import load_task

    cfg = SetupConfig(task="tiny", model="tiny-bert", num_tokens=0, prompt="shallow", pooling="mean")
    setup = build(cfg)
    assert instructed_probe(setup, "") == {**probe_floor(setup), "instruction": ""}
    got = instructed_probe(setup, "good good good")
    rows = load_task("tiny")
    put = {n: dataclasses.replace(getattr(rows, n), texts=[f"good good good {t}" for t in getattr(rows, n).texts])
           for n in ("train", "drl", "test")}  # fmt: skip
    want = probe_floor(build(cfg, data=dataclasses.replace(rows, **put)))
    assert got == {**want, "instruction": "good good good"}
    # the words reach the features: the instructed rows pool to other vectors than the plain ones
    plain = build(cfg)
    instructed = build(cfg, data=dataclasses.replace(rows, **put))
    pm = no_prompt_model(plain)
    assert not torch.allclose(pooled_features(pm, plain.test), pooled_features(pm, instructed.test))
    with pytest.raises(ConfigError, match="instruction must be a string"):
        instructed_probe(setup, None)


def test_a_head_trained_on_one_pooling_is_refused_by_a_model_that_pools_another(tmp_path, tiny_bert):
    from crlprompt.prompt_io import load_prompt, save_prompt
    from crlprompt.tasks import get_task

    spec = get_task("tiny")
    mean = build_model(tiny_bert, spec, num_tokens=2, pooling="mean")
    save_prompt(mean, tmp_path / "p.safetensors")
    cls = build_model(tiny_bert, spec, num_tokens=2, pooling="cls")
    with pytest.raises(PromptFileError, match="'mean'-pooled features.*pooling='mean'"):
        load_prompt(cls, tmp_path / "p.safetensors")
    load_prompt(build_model(tiny_bert, spec, num_tokens=2, pooling="mean"), tmp_path / "p.safetensors")


def test_stored_setups_keep_their_pooling():
    from crlprompt.runners.config import setup_from_run_config

    old = {"setup": {"task": "trec", "model": "minilm"}}  # a run directory from before the option
    assert setup_from_run_config(old).pooling == "legacy"
    assert setup_from_run_config({"setup": {"task": "trec", "model": "minilm", "pooling": "mean"}}).pooling == "mean"
    assert setup_from_run_config({"task": "trec", "model": "minilm", "method": "ptv2"}).pooling == "legacy"


def test_a_train_run_stores_its_resolved_pooling_and_eval_reads_it(tmp_path):
    from crlprompt.agents.crl import CRLConfig
    from crlprompt.runners.config import TrainConfig
    from crlprompt.runners.train import evaluate_checkpoint, run

    out = tmp_path / "run"
    rec = run(TrainConfig(setup=SetupConfig(task="tiny", model="tiny-bert", num_tokens=2), method="ptv2", out=out,
                          agent=CRLConfig(phase1_epochs=0.5, phase2_epochs=0)), progress=False)  # fmt: skip
    stored = json.loads((out / "config.json").read_text())["setup"]
    assert stored["pooling"] == "cls" and stored["init"] == "zero"  # auto made explicit on the model
    card = (out / "adapter" / "README.md").read_text()
    assert "pooling: cls" in card
    again = evaluate_checkpoint(out, split="test")
    assert again["accuracy"] == pytest.approx(rec["test_acc"])


# ----------------------------------------------------------------------------- selection
def test_ties_in_d_rl_accuracy_go_to_the_lower_loss(monkeypatch):
    """Epochs that tie on D_RL accuracy (a saturated or tiny holdout) are told apart by D_RL loss; the
    earliest of exact ties is kept."""
    from crlprompt.agents.crl import CRLAgent, CRLConfig

    setup = build(SetupConfig(task="tiny", model="tiny-bert", num_tokens=2))
    scores = iter([(1.0, 0.50), (1.0, 0.20), (1.0, 0.30), (0.9, 0.01), (1.0, 0.20)])
    agent = CRLAgent(setup, CRLConfig(phase1_epochs=5, phase2_epochs=0, batch_size=256), progress=False)
    kept = []
    monkeypatch.setattr(agent, "_rl_scores", lambda: next(scores))
    real = agent._snapshot
    monkeypatch.setattr(agent, "_snapshot", lambda: (kept.append(agent.state.epoch), real())[1])
    summary = agent.learn()
    assert kept == [1, 2]  # epoch 2 (loss 0.2) beats 1 (0.5); 3, 4 and 5 do not beat it
    assert summary["drl_acc"] == 1.0 and summary["drl_loss"] == 0.20
