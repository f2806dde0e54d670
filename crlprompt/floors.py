"""What a user gets without a prompt: the floors every few-shot and small-data result stands beside.

* :func:`probe_floor`: **no prompt + logistic regression** on the frozen model's pooled features
  (the setup's pooling: the mean over the input tokens for MiniLM), fitted on the train rows, the
  regularisation C chosen on D_RL by the rule every method in this package is selected by (the
  best D_RL accuracy; ties go to the lower D_RL loss), scored on test.
* :func:`fit_probe_head`: the same logistic regression fitted at the model's *current* prompt and
  written into its linear head: the head a search or a tuning run starts from, so that a neutral
  start (a zero prefix) scores at the floor before it moves.
* :func:`icl_floor`: in-context demonstrations for a decoder's verbalizer (as many train rows per
  class as fit the context, seeded, in front of every input), scored with the LM's own head.

The logistic regression is scikit-learn's (``lbfgs``, deterministic). Features are scaled by one
number, the inverse mean L2 norm of the train features, so that C means the same on every model and
the fitted weights fold back into a plain ``nn.Linear`` on the raw features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .batching import Encoded
from .build import Setup, build_model
from .errors import ConfigError
from .prompts import PromptedModel
from .scoring import accuracy, pooled_features

log = logging.getLogger(__name__)

#: The regularisation grid of the probe (inverse strength); the D_RL rows choose one.
PROBE_CS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


@dataclass
class ProbeFit:
    """A logistic regression on raw pooled features: ``logits = x @ weight.T + bias``."""

    weight: torch.Tensor  # (C, H)
    bias: torch.Tensor  # (C,)
    c: float
    """The chosen regularisation (scikit-learn's C, on features scaled to unit mean norm)."""
    train_acc: float
    drl_acc: float
    drl_loss: float
    """Mean cross-entropy on D_RL (the tie-break of the selection)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.double() @ self.weight.double().T + self.bias.double()


def _ce(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.nn.functional.cross_entropy(logits.double(), y.long()))


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, x_rl: torch.Tensor, y_rl: torch.Tensor, num_labels: int,
    *, cs: tuple[float, ...] = PROBE_CS,
) -> ProbeFit:  # fmt: skip
    """Fit one logistic regression per C on ``x (n, H)``, ``y (n,)``; keep the best on ``x_rl``, ``y_rl``
    (accuracy, then lower D_RL loss; with no D_RL rows, the train accuracy)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise ConfigError("the no-prompt floor needs scikit-learn; run: pip install scikit-learn") from None
    present = np.unique(y.numpy())
    if len(present) < 2:
        raise ConfigError(f"a logistic-regression probe needs rows of at least two classes, got only {present.tolist()}")
    xs = x.double().numpy()
    scale = 1.0 / max(float(np.linalg.norm(xs, axis=1).mean()), 1e-12)
    best = None
    for c in cs:
        clf = LogisticRegression(C=c, max_iter=5000)
        clf.fit(xs * scale, y.numpy())
        w = np.zeros((num_labels, xs.shape[1]))
        b = np.full(num_labels, -1e4)  # a class absent from the train rows is never predicted
        if len(clf.classes_) == 2:  # scikit-learn's binary form: one row for the second class
            coef = np.stack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
            icpt = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
        else:
            coef, icpt = clf.coef_, clf.intercept_
        w[clf.classes_] = coef * scale
        b[clf.classes_] = icpt
        fit = ProbeFit(torch.from_numpy(w), torch.from_numpy(b), c, 0.0, 0.0, float("inf"))
        fit.train_acc = float((fit.logits(x).argmax(1) == y).double().mean())
        if len(x_rl):
            z = fit.logits(x_rl)
            fit.drl_acc, fit.drl_loss = float((z.argmax(1) == y_rl).double().mean()), _ce(z, y_rl)
        else:
            fit.drl_acc = fit.train_acc
        if best is None or (fit.drl_acc, -fit.drl_loss) > (best.drl_acc, -best.drl_loss):
            best = fit
    return best


def no_prompt_model(setup: Setup, head: str = "linear") -> PromptedModel:
    """The setup's frozen LM with no prompt at all (zero virtual tokens), pooled as the setup pools."""
    c = setup.config
    pooling = c.pooling if head == "linear" else "auto"
    pm = build_model(setup.lm, setup.spec, prompt="shallow", num_tokens=0, head=head, seed=c.seed, pooling=pooling,
                     label_tokens=c.label_tokens)  # fmt: skip
    return pm.to(setup.model.device).eval()


def fit_probe_head(pm: PromptedModel, train: Encoded, rl: Encoded, *, cs: tuple[float, ...] = PROBE_CS) -> ProbeFit:
    """Fit the logistic-regression probe on ``pm``'s features at its current prompt and write it into
    ``pm``'s linear head; returns the fit (C chosen on ``rl``)."""
    if pm.head_kind != "linear":
        raise ConfigError("a probe head needs head='linear'")
    fit = fit_logistic(pooled_features(pm, train), train.labels, pooled_features(pm, rl), rl.labels,
                       pm.head.linear.out_features, cs=cs)  # fmt: skip
    with torch.no_grad():
        pm.head.linear.weight.copy_(fit.weight.float())
        pm.head.linear.bias.copy_(fit.bias.float())
    return fit


def probe_floor(setup: Setup, *, cs: tuple[float, ...] = PROBE_CS) -> dict:
    """The no-prompt floor of ``setup``: ``{"drl_acc", "test_acc", "train_acc", "c", "pooling"}``."""
    pm = no_prompt_model(setup)
    fit = fit_probe_head(pm, setup.train, setup.drl, cs=cs)
    empty = torch.zeros(0)
    test = accuracy(pm, setup.test, theta=empty) if len(setup.test) else None
    return {"drl_acc": fit.drl_acc, "test_acc": test, "train_acc": fit.train_acc, "c": fit.c,
            "pooling": pm.pooling}  # fmt: skip


def handcraft_floor(setup: Setup) -> dict:
    """HandCraft zero-shot: the task template and the LM's own head over the label words, no prompt
    (a setup whose head is the verbalizer, so its splits carry the template)."""
    if setup.model.head_kind != "verbalizer":
        raise ConfigError("the HandCraft floor needs the setup's verbalizer template (head='verbalizer')")
    pm = no_prompt_model(setup, head="verbalizer")
    empty = torch.zeros(0)
    test = accuracy(pm, setup.test, theta=empty) if len(setup.test) else None
    return {"drl_acc": accuracy(pm, setup.drl, theta=empty), "test_acc": test}


def demonstrations(setup: Setup, *, max_tokens: int = 1024, seed: int = 0) -> str:
    """A seeded block of train rows, each rendered with the decoder template and its label word, the
    classes interleaved, as many rows per class as fit ``max_tokens`` tokens."""
    if setup.rows is None:
        raise ConfigError("in-context demonstrations need the setup's rows (a Setup made by build())")
    spec, train = setup.spec, setup.rows.train
    labels = np.asarray(train.labels).tolist()
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation([i for i, y in enumerate(labels) if y == k]).tolist() for k in range(spec.num_labels)]
    tok = setup.lm.tokenizer
    chosen: list[str] = []
    used = 0
    for j in range(max((len(v) for v in by_class), default=0)):
        row = [spec.render(train.texts[v[j]], spec.verbalizer[k], lm=True) for k, v in enumerate(by_class) if j < len(v)]
        cost = sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in row)
        if used + cost > max_tokens:
            break
        chosen.extend(row)
        used += cost
    return "\n".join(chosen)


def icl_floor(setup: Setup, *, max_tokens: int = 1024, seed: int = 0) -> dict:
    """In-context demonstrations (decoders with a verbalizer): train rows in front of every D_RL / test
    input, as many per class as fit ``max_tokens``; ``{"drl_acc", "test_acc", "demos", "tokens"}``.

    The demonstrations are the same for every row, so they are run through the LM once: their keys and
    values become a deep prefix (:func:`crlprompt.prompts.text_theta`) in front of each templated input,
    which is exactly the LM reading the demonstrations and then the input, at the cost of the input alone."""
    from .prompts import PromptLayout, text_prompt_ids, text_theta

    if setup.lm.arch != "decoder" or setup.model.head_kind != "verbalizer":
        raise ConfigError("the in-context floor needs a decoder with head='verbalizer'")
    limit = getattr(setup.lm.config, "max_position_embeddings", None)
    if limit:  # leave the inputs half of the model's positions
        max_tokens = min(max_tokens, limit // 2)
    demos = demonstrations(setup, max_tokens=max_tokens, seed=seed) + "\n"
    n = len(setup.lm.tokenizer(demos, add_special_tokens=False)["input_ids"])
    layout = PromptLayout.for_model(setup.lm, "deep", n)
    assert len(text_prompt_ids(setup.lm, demos, n)) == n
    pm = build_model(setup.lm, setup.spec, prompt="deep", num_tokens=n, head="verbalizer", seed=setup.config.seed,
                     label_tokens=setup.config.label_tokens)  # fmt: skip
    pm = pm.to(setup.model.device).eval()
    theta = text_theta(setup.lm, layout, demos).to(setup.model.device)
    out: dict = {"demos": demos.count("\n"), "tokens": n}
    for name, data in (("drl", setup.drl), ("test", setup.test)):
        out[f"{name}_acc"] = accuracy(pm, data, theta=theta, batch_size=16) if len(data) else None
    return out


def instructed_probe(setup: Setup, instruction: str, *, cs: tuple[float, ...] = PROBE_CS) -> dict:
    """A text instruction scored on a target without an LM head (MiniLM): the instruction in front of
    every input (``"{instruction} {text}"``, pooled as the setup pools), then the no-prompt floor's
    procedure (logistic regression fitted on the train rows, C chosen on D_RL), scored on D_RL and test.
    An empty instruction is :func:`probe_floor` itself: the keys of its dict, and ``"instruction"``.

    This is how a prompt found with one target's verbalizer (SmolLM2's) is carried to the other offline
    model, whose features a probe reads: it measures whether the words help the other model's features,
    not whether it would answer with them."""
    from .batching import encode

    if setup.rows is None:
        raise ConfigError("scoring an instruction needs the setup's rows (a Setup made by build())")
    if not isinstance(instruction, str):
        raise ConfigError(f"instruction must be a string, got {type(instruction).__name__}")
    if not instruction.strip():
        return {**probe_floor(setup, cs=cs), "instruction": instruction}
    pm = no_prompt_model(setup)
    tok, max_len = setup.lm.tokenizer, setup.config.max_length
    enc = {}
    for name in ("train", "drl", "test"):
        split = getattr(setup.rows, name)
        texts = [f"{instruction.strip()} {t}" for t in split.texts]
        enc[name] = encode(type(split)(texts, split.labels), tok, spec=setup.spec, template="none", max_length=max_len)
    fit = fit_probe_head(pm, enc["train"], enc["drl"], cs=cs)
    empty = torch.zeros(0)
    test = accuracy(pm, enc["test"], theta=empty) if len(enc["test"]) else None
    return {"drl_acc": fit.drl_acc, "test_acc": test, "train_acc": fit.train_acc, "c": fit.c, "pooling": pm.pooling,
            "instruction": instruction}  # fmt: skip
