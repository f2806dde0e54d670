"""Which records of the results may be set side by side: a method and its partner (Prompt v2, or the
no-prompt floor) pair only if their configs agree in everything but the methods' own fields.

A field one record lacks is not compared: every field whose value is known is written in the record
(what older records ran with was written into them by ``scripts/migrate_records.py``).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .config import METHODS

#: fields a method sets itself (TrainConfig.resolved_setup, Method.agent_config): never compared
METHOD_SETUP = ("prompt", "head", "num_tokens", "prompt_encoder", "template")
METHOD_AGENT = ("beta", "gamma")
#: agent fields that act only through the RL (γ) or the contrastive (β) term: inert in a run with that term off
RL_ONLY = ("rl_interval", "rl_first_step", "sigma", "rl_samples", "rl_estimator", "rl_buffer", "reward_batch_size")
CONTRAST_ONLY = ("tau", "contrast_mode", "num_negatives", "negative_kind", "negative_dropout", "negative_noise")
#: where the data was read from, and the training seed (the pairing key matches seeds; a floor pairs across them)
NOT_COMPARED = ("data_dir", "seed")
Refused = dict[tuple[str, ...], list[str]]  # config differences -> the table row of each refused pair


def trains(rec: dict) -> bool:
    """False for a run without a trained prompt (the probe, HandCraft): its agent settings act on nothing."""
    method = METHODS.get(rec["method"])
    return (method is None or method.trains) and ((rec.get("config") or {}).get("setup") or {}).get("num_tokens") != 0


def config_mismatch(a: dict, b: dict) -> list[str]:
    """``"part.field (value of a vs value of b)"`` for each config field in which runs ``a`` and ``b``
    differ beyond their methods' own fields, so that a difference of their accuracies is the methods'
    (empty: they may be paired). A part or field that one record lacks is not compared; records without a
    config compare equal."""
    ca, cb = a.get("config") or {}, b.get("config") or {}
    sa, sb = ca.get("setup") or {}, cb.get("setup") or {}
    ga, gb = ((c.get("agent") or {}).get("gamma") for c in (ca, cb))
    beta_a, beta_b = ((c.get("agent") or {}).get("beta") for c in (ca, cb))
    both_train = trains(a) and trains(b)  # else the agent's settings act on nothing in one of them
    skip = {("setup", f) for f in METHOD_SETUP + NOT_COMPARED} | {("agent", f) for f in METHOD_AGENT}
    # the prompt's init follows its kind, the pooling its head; neither acts in a run without a prompt
    skip |= {("setup", "init")} if not both_train or sa.get("prompt") != sb.get("prompt") else set()
    skip |= {("setup", "pooling")} if not both_train or sa.get("head") != sb.get("head") else set()
    # how a label word of several tokens is scored acts on the LM's verbalizer head alone
    skip |= {("setup", "label_tokens")} if not sa.get("head") == sb.get("head") == "verbalizer" else set()
    skip |= {("agent", f) for f in RL_ONLY} if not (ga and gb) else set()
    skip |= {("agent", f) for f in CONTRAST_ONLY} if not (beta_a and beta_b) else set()
    compared = ("setup", "agent") if both_train else ("setup",)
    parts = [(p, ca[p] or {}, cb[p] or {}) for p in compared if p in ca and p in cb]
    parts.append(("", {k: v for k, v in ca.items() if k not in ("setup", "agent")},
                  {k: v for k, v in cb.items() if k not in ("setup", "agent")}))  # fmt: skip
    grids = [sorted(p.get("phase2_lr") for p in r.get("phase2_lr_grid") or []) for r in (a, b)]
    if all(grids):  # a --phase2-lrs protocol: each run chose its phase-2 lr on D_RL, from the same grid
        skip.add(("agent", "phase2_lr"))
        parts.append(("", {"phase2_lr_grid": grids[0]}, {"phase2_lr_grid": grids[1]}))
    out = []
    for part, x, y in parts:
        for f in sorted(set(x) | set(y)):
            if (part, f) in skip or f not in x or f not in y:
                continue
            vx, vy = x[f], y[f]
            if vx != vy:
                out.append(f"{part + '.' if part else ''}{f} ({vx} vs {vy})")
    return out


def refusal_note(refused: Refused, partner: str) -> str:
    """Lines under a table: how many pairs with ``partner`` were refused, for which rows, and why."""
    lines = []
    for diff, rows in refused.items():
        counts = ", ".join(f"{row} ({rows.count(row)})" for row in dict.fromkeys(rows))
        lines.append(f"Refused {len(rows)} pair{'s' * (len(rows) != 1)} with {partner} whose configs differ in "
                     f"{', '.join(diff)}: {counts}.")  # fmt: skip
    return "".join(line + "\n" for line in lines)


def scored_runs(results: list[dict], group: tuple, method: str, tag: str) -> list[dict]:
    """The scored runs of ``method`` under ``tag`` in one (task, model, k) group."""
    return [r for r in results if (r["task"], r["model"], r["k_shot"]) == group and r["method"] == method
            and r["tag"] == tag and r.get("test_acc") is not None]  # fmt: skip


def pairs(results: list[dict], group: tuple, method: str, tag: str, base: str, refused: Refused | None = None,
          label: str = "") -> tuple[list[float], list[float], list[tuple]]:  # fmt: skip
    """Matched test accuracies (method, base) of one (task, model, k) group over (data seed, seed), and
    their keys; a pair whose configs differ beyond the methods' fields is left out (noted in ``refused``)."""
    def runs(meth, t):
        return {(r["data_seed"], r["seed"]): r for r in scored_runs(results, group, meth, t)}

    base_tag = tag if any(r["method"] == base and r["tag"] == tag for r in results) else ""  # a protocol pairs within it
    a, b = runs(method, tag), runs(base, base_tag)
    keys = []
    for k in sorted(set(a) & set(b)):
        diff = config_mismatch(a[k], b[k])
        if diff and refused is not None:
            refused.setdefault(tuple(diff), []).append(label)
        keys += [] if diff else [k]
    return [a[k]["test_acc"] for k in keys], [b[k]["test_acc"] for k in keys], keys


def floor_pairs(results: list[dict], group: tuple, method: str, tag: str, refused: Refused | None = None,
                label: str = "", keys: list[tuple] | None = None) -> dict[int, tuple[float, float]]:  # fmt: skip
    """Data seed -> (mean test accuracy of the method's runs, mean of their floors), over the runs of
    ``keys`` (data seed, seed) if given: each run is paired with the ``probe`` record of its data seed and
    seed (seed 0 where that is absent: the floor trains nothing); a pair whose configs differ beyond the
    methods' fields is left out (noted in ``refused``)."""
    floor_tag = tag if any(r["method"] == "probe" and r["tag"] == tag for r in results) else ""
    floors = {(r["data_seed"], r["seed"]): r for r in scored_runs(results, group, "probe", floor_tag)}
    by_seed = defaultdict(list)
    for r in scored_runs(results, group, method, tag):
        if keys is not None and (r["data_seed"], r["seed"]) not in keys:
            continue
        f = floors.get((r["data_seed"], r["seed"])) or floors.get((r["data_seed"], 0))
        diff = config_mismatch(r, f) if f else []
        if diff and refused is not None:
            refused.setdefault(tuple(diff), []).append(label)
        if f and not diff:
            by_seed[r["data_seed"]].append((r["test_acc"], f["test_acc"]))
    return {d: (float(np.mean([x for x, _ in v])), float(np.mean([y for _, y in v])))
            for d, v in sorted(by_seed.items())}  # fmt: skip
