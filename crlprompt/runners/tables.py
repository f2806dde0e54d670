"""Results records -> Markdown: Table 1 / Table 2 (mean ± std), and paired comparisons with CIs.

    python -m crlprompt.runners.tables runs/paper                       # Table 1 / 2 of a results dir
    python -m crlprompt.runners.tables results/ results/repro/kshot.jsonl   # every table the records hold
    python -m crlprompt.runners.tables --runs results/main_job              # one row per run

The records are read as they are (:func:`crlprompt.runners.records.read_records`): what older records
left implicit (their method names, prefix init, pooling, contrastive form, RL schedule) was written
into them once by ``scripts/migrate_records.py``, so no file name and no record's age decides a number.

Paired comparisons: a method and Prompt v2 that share (task, model, k, data seed, training seed)
form a pair; the table gives the mean paired difference with a 95% t confidence interval over
the pairs and a verdict that says whether the interval excludes 0. Two runs pair only if their configs
agree in all but their methods' own fields (:func:`config_mismatch`); a refused pair is named under its
table. Where ``probe`` records (the no-prompt floor) exist, each few-shot row is also set against the
floor of its data seeds, and a table gives every trained method against it.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .common import mean_std
from .config import METHODS
from .pairing import Refused, floor_pairs, pairs, refusal_note, scored_runs, trains
from .pairing import config_mismatch  # noqa: F401  (the pairing rule, read as tables.config_mismatch)
from .records import DECODERS, read_records

TASK_ORDER = ("agnews", "trec", "sst2", "empathetic_dialogues")
TASK_NAMES = {"agnews": "AG News", "trec": "TREC", "sst2": "SST-2", "empathetic_dialogues": "EmpDial"}
TABLE1_METHODS = ("handcraft", "ptv1", "ptv2", "crl")
TABLE1_ROWS = ("probe", "handcraft", "handcraft-cloze", "ptv1", "ptv1-lstm", "prompt-tuning", "ptv2", "crl")
ABLATION_METHODS = ("ptv2", "crl-contrast", "crl-rl", "crl")
METHOD_NAMES = {name: m.title for name, m in METHODS.items()}
ABLATION_NAMES = {"ptv2": "v2 only", "crl-contrast": "+ contrastive", "crl-rl": "+ RL", "crl": "full (CRL-Prompt)"}

def normalize(rec: dict) -> dict:
    """A record with the fields the tables key on: ``contrast_mode`` (None without a contrastive term),
    ``k_shot``, ``data_seed``, ``tag``, the prefix ``init`` (``auto`` resolved as the model builder does) and
    ``current`` (False for a decoder's deep prefix drawn N(0, 1): runs superseded by the token init, never
    shown beside current ones). Reads only the record's own fields."""
    out = dict(rec)
    config = rec.get("config") or {}
    setup = config.get("setup") or {}
    method = METHODS.get(rec["method"])
    deep = setup.get("prompt", method.prompt if method else "deep") == "deep"
    decoder = rec["model"] in DECODERS
    init = setup.get("init", "auto")
    if init == "auto":
        init = "tokens" if decoder and deep else "random"
    out["init"] = init
    out["current"] = not (decoder and deep and init == "random")
    agent = config.get("agent") or {}
    out["contrast_mode"] = agent.get("contrast_mode") if agent.get("beta") else None
    out.setdefault("k_shot", None)
    out.setdefault("data_seed", 0)
    out.setdefault("tag", "")
    return out


def collect(paths: list[Path]) -> list[dict]:
    """Every training record of the given JSON-lines files and of the ``*.jsonl`` files under the given
    directories (a file of unversioned records is refused, naming the migration)."""
    files: list[Path] = []
    for p in paths:
        files += sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
    return [normalize(r) for f in files for r in read_records(f, kind="train")]


def table(results: list[dict], tasks, models, methods, names: dict[str, str], key: str = "test_acc") -> str:
    """Markdown in the paper's layout: rows = methods, columns = task × model, mean ± std."""
    cols = [(t, m) for m in models for t in tasks]
    head = "| Method | " + " | ".join(f"{TASK_NAMES.get(t, t)} ({m})" for t, m in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for meth in methods:
        row = [names.get(meth, meth)]
        for t, m in cols:
            recs = [r for r in results if (r["task"], r["model"], r["method"]) == (t, m, meth)]
            vals = [r[key] for r in recs if r.get(key) is not None]
            row.append("n/a" if recs and not vals else mean_std(vals))
        lines.append("| " + " | ".join(row) + " |")
    n = sorted({r["seed"] for r in results})
    lines.append("")
    lines.append(f"Test accuracy, mean ± sample std over seeds {n}; n/a = not applicable (HandCraft needs an LM head).")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- paired differences
def t_ci(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided t confidence interval of the mean of ``diffs`` (needs >= 2)."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    m = float(d.mean())
    if len(d) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return m, m - half, m + half


def verdict(low: float, high: float, name: str, base: str) -> str:
    if math.isnan(low):
        return "n = 1: no interval"
    if low > 0:
        return f"{name} better"
    if high < 0:
        return f"{base} better"
    return "no difference detected"


def floor_verdict(low: float, high: float) -> str:
    """Where the 95% CI [low, high] of method − floor lies: wholly above 0, wholly below, or across it."""
    if math.isnan(low):
        return "n = 1 data seed: no interval"
    return "above the floor" if low > 0 else "under the floor" if high < 0 else "not separated from the floor"


def floor_delta(by_seed: dict[int, tuple[float, float]], scale: float = 1.0) -> tuple[str, str]:
    """(``Δ [95% CI]``, verdict) of method − floor over the data seeds of ``by_seed`` (times ``scale``)."""
    m, lo, hi = t_ci([scale * (x - y) for x, y in by_seed.values()])
    digits = 1 if scale == 100 else 3
    ci = f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]" if len(by_seed) > 1 else f"{m:+.{digits}f}"
    return ci, floor_verdict(lo, hi)


def kept_phase1(results: list[dict], group: tuple, method: str, tag: str) -> str:
    """``kept/n``: how many of the method's runs ended on their phase-1 (CE-only) prompt, because no
    phase-2 epoch beat it on D_RL; such a run equals Prompt v2 whenever Prompt v2 keeps it too."""
    recs = [r for r in scored_runs(results, group, method, tag) if r.get("phase1_drl_acc") is not None]
    kept = sum(r["drl_acc"] == r["phase1_drl_acc"] and r["test_acc"] == r["phase1_test_acc"] for r in recs)
    return f"{kept}/{len(recs)}" if recs else "–"


def _label(group: tuple, name: str) -> str:
    """How a refusal or floor note names a row: ``TREC minilm 16 CRL-Prompt``."""
    task, model, k = group
    return f"{TASK_NAMES.get(task, task)} {model} {k or 'full'} {name}".rstrip()


def _group_order(group: tuple) -> tuple:
    return TASK_ORDER.index(group[0]) if group[0] in TASK_ORDER else 9, group[1], group[2] or 10**9


def paired_table(results: list[dict], methods=("crl", "crl-contrast", "crl-rl"), base: str = "ptv2", tag: str = "") -> str:
    """Rows = (task, model, k, method): both accuracies, the paired difference method − base with its
    95% CI over (data seed × training seed) pairs, wins/ties/losses, and a verdict (runs of one ``tag``);
    where ``probe`` records exist, also the floor of the pairs' data seeds and method − floor."""
    groups = sorted({(r["task"], r["model"], r["k_shot"]) for r in results if r["method"] == base and r["tag"] == tag},
                    key=_group_order)  # fmt: skip
    floor = any(r["method"] == "probe" for r in results)
    bname = METHOD_NAMES.get(base, base)
    lines = [f"| Task | Model | k | Method | n pairs | {bname} | Method acc | Δ = method − {bname} [95% CI] | W/T/L | "
             "phase-1 prompt kept | Verdict |" + (" Floor (data seeds) | Δ vs floor [95% CI] | vs floor |" if floor else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|" + "---|---|---|" * floor]  # fmt: skip
    refused: Refused = {}
    refused_floor: Refused = {}
    notes = []
    for group in groups:
        for meth in methods:
            a, b, keys = pairs(results, group, meth, tag, base, refused, _label(group, METHOD_NAMES.get(meth, meth)))
            if not a:
                continue
            d = [x - y for x, y in zip(a, b)]
            m, lo, hi = t_ci(d)
            wtl = f"{sum(x > 0 for x in d)}/{sum(x == 0 for x in d)}/{sum(x < 0 for x in d)}"
            kept = kept_phase1(results, group, meth, tag)
            ci = f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" if len(d) > 1 else f"{m:+.3f}"
            task, model, k = group
            lines.append(f"| {TASK_NAMES.get(task, task)} | {model} | {k or 'full'} | {METHOD_NAMES.get(meth, meth)} | "
                         f"{len(d)} | {mean_std(b)} | {mean_std(a)} | {ci} | {wtl} | {kept} | "
                         f"{verdict(lo, hi, METHOD_NAMES.get(meth, meth), bname)} |")  # fmt: skip
            if floor:
                label = _label(group, METHOD_NAMES.get(meth, meth))
                fp = floor_pairs(results, group, meth, tag, refused_floor, label, keys)  # the row's runs only
                lines[-1] += (f" {np.mean([y for _, y in fp.values()]):.3f} ({len(fp)}) | "
                              f"{' | '.join(floor_delta(fp))} |" if fp else " – | – | no floor record |")  # fmt: skip
        fp = floor_pairs(results, group, base, tag, refused_floor, _label(group, bname)) if floor else {}
        if fp:
            ci, word = floor_delta(fp)
            notes.append(f"{bname} vs the floor, {_label(group, '')}: Δ {ci} over {len(fp)} data "
                         f"seed{'s' * (len(fp) != 1)}, {word}.\n")  # fmt: skip
    notes += [refusal_note(refused, bname), refusal_note(refused_floor, "the floor")]
    return "\n".join(lines) + "\n" + ("\n" + "".join(notes) if any(notes) else "")


def floor_table(results: list[dict], base: str = "ptv2") -> str:
    """Rows = (task, model, k, method) for each trained method (Prompt v2 and CRL-Prompt first, untagged and
    under each protocol tag): method − the no-prompt floor in test points, paired by data seed, with its 95%
    CI over the data seeds (the issue's targets: Prompt v2 and CRL-Prompt at k = 16 above the floor by >= 10
    points on TREC and >= 3 on SST-2)."""
    groups = sorted({(r["task"], r["model"], r["k_shot"]) for r in results if r["method"] == "probe"}, key=_group_order)
    tags = [""] + sorted({r["tag"] for r in results if r["tag"] and r["method"] == base})
    order = [base, "crl"] + [m for m, spec in METHODS.items() if spec.trains and m not in (base, "crl")]
    lines = ["| Task | Model | k | Method | n pairs (data seeds) | Floor | Method acc | Δ = method − floor, points "
             "[95% CI] | Verdict |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    refused: Refused = {}
    for group in groups:
        for tag in tags:
            for meth in order:
                name = METHOD_NAMES.get(meth, meth) + (f" (`{tag}`)" if tag else "")
                fp = floor_pairs(results, group, meth, tag, refused, _label(group, name))
                if fp:
                    method_acc, floor_acc = (100 * np.mean([v[i] for v in fp.values()]) for i in (0, 1))
                    task, model, k = group
                    lines.append(f"| {TASK_NAMES.get(task, task)} | {model} | {k or 'full'} | {name} | {len(fp)} | "
                                 f"{floor_acc:.1f} | {method_acc:.1f} | {' | '.join(floor_delta(fp, scale=100))} |")  # fmt: skip
    note = refusal_note(refused, "the floor")
    return ("\n".join(lines) + "\n\nTest accuracy in %, each a mean over data seeds of the mean over training seeds; "
            "a run's floor is the probe record of its data seed (and seed, else seed 0).\n" + note)  # fmt: skip


def sweep_table(results: list[dict], base: str = "ptv2") -> str:
    """One row per tagged variant (a sweep point): its agent settings, and the paired difference with
    the untagged ``base`` runs of the same (task, model, k, data seed, seed), with a 95% CI (one pair:
    the difference alone, and no seed std)."""
    variants = defaultdict(list)
    protocols = {r["tag"] for r in results if r["method"] == base}  # tags paired within themselves (paired_table)
    for r in results:
        if r["tag"] and r["tag"] not in protocols and trains(r):  # a tagged floor is no variant
            variants[(r["task"], r["model"], r["k_shot"], r["method"], r["tag"])].append(r)
    lines = ["| Task | k | Variant | β | γ | N | estimator (K) | contrast | n pairs | Δ vs Prompt v2 [95% CI] | "
             "seed std of Prompt v2 | Verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    refused: Refused = {}
    for (task, model, k, meth, tag), recs in sorted(variants.items(), key=lambda kv: str(kv[0])):
        agent = (recs[0].get("config") or {}).get("agent", {})
        label = f"{TASK_NAMES.get(task, task)} {k or 'full'} {tag}"
        a, b, _ = pairs(results, (task, model, k), meth, tag, base, refused, label)
        if not a:
            continue
        d = [x - y for x, y in zip(a, b)]
        m, lo, hi = t_ci(d)
        spread = float(np.std(b, ddof=1)) if len(b) > 1 else math.nan
        ci = f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" if len(d) > 1 else f"{m:+.3f}"
        beyond = verdict(lo, hi, "variant", "Prompt v2")
        if beyond != "no difference detected" and not math.isnan(spread) and abs(m) < spread:
            beyond += " (within the seed spread)"
        lines.append(f"| {TASK_NAMES.get(task, task)} | {k or 'full'} | {tag} | {agent.get('beta')} | {agent.get('gamma')} | "
                     f"{agent.get('rl_interval')} | {agent.get('rl_estimator')} ({agent.get('rl_samples')}) | "
                     f"{(recs[0].get('contrast_mode') or '–')} | {len(d)} | {ci} | "
                     f"{'–' if math.isnan(spread) else f'{spread:.3f}'} | {beyond} |")  # fmt: skip
    note = refusal_note(refused, METHOD_NAMES.get(base, base))
    return "\n".join(lines) + "\n" + ("\n" + note if note else "")


def lr_note(results: list[dict], tag: str) -> str:
    """How often each phase-2 learning rate was chosen on D_RL under a ``--phase2-lrs`` protocol."""
    chosen = [(r.get("config") or {}).get("agent", {}).get("phase2_lr") for r in results
              if r["tag"] == tag and r.get("phase2_lr_grid")]  # fmt: skip
    if not chosen:
        return ""
    lr1 = {(r.get("config") or {}).get("agent", {}).get("lr") for r in results if r["tag"] == tag}
    counts = ", ".join(f"{lr:g}: {chosen.count(lr)}" for lr in sorted(set(chosen)))
    return f"Phase 1 at lr {', '.join(f'{x:g}' for x in sorted(lr1))}; phase-2 lr chosen on D_RL (runs): {counts}.\n"


def provenance(results: list[dict]) -> str:
    """One line on how the records' CRL rows were made: contrast form and RL schedule."""
    crl = [r for r in results if r["method"].startswith("crl") and r.get("test_acc") is not None]
    if not crl:
        return ""
    modes = sorted({r["contrast_mode"] for r in crl if r["contrast_mode"]})
    legacy = [r for r in crl if ((r.get("config") or {}).get("agent") or {}).get("rl_first_step") == 1]
    if not legacy:
        sched = "first RL update at phase-2 step N"
    elif len(legacy) == len(crl):
        sched = "first RL update at phase-2 step 1 (the earlier schedule)"
    else:  # a table that mixes both: say which runs are which
        new = sorted({f"{r['task']}/{r['model']}" for r in crl if r not in legacy})
        sched = (f"first RL update at phase-2 step 1 for the {len(legacy)} runs of the earlier schedule (contrastive form "
                 f"noise), at step N for the {len(crl) - len(legacy)} newer ones ({', '.join(new)})")  # fmt: skip
    return f"CRL rows: contrastive form {', '.join(modes) or '–'}; {sched}.\n"


def wall_clock(results: list[dict]) -> str:
    """Total and per-run wall-clock of the records, by device."""
    by = defaultdict(list)
    for r in results:
        if r.get("wall_seconds") is not None:
            by[(r.get("machine") or {}).get("device") or r.get("device", "?")].append(r["wall_seconds"])
    return "; ".join(f"{dev}: {len(v)} runs, {sum(v) / 60:.1f} min in all, {np.median(v):.0f} s median per run"
                     for dev, v in sorted(by.items()))  # fmt: skip


def merge(root: Path) -> tuple[str, str, list[dict]]:
    """Table 1 and Table 2 of the full-data records under ``root`` (k-shot and tagged runs left out)."""
    results = [r for r in collect([root]) if r["k_shot"] is None and not r["tag"] and r["current"]]
    tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in results)]
    models = list(dict.fromkeys(r["model"] for r in results))
    rows = [m for m in TABLE1_ROWS if any(r["method"] == m for r in results)]
    t1 = table(results, tasks, models, rows, METHOD_NAMES)
    abl_models = [m for m in models if any(r["model"] == m and r["method"].startswith("crl-") for r in results)]
    t2 = table(results, tasks, abl_models, ABLATION_METHODS, ABLATION_NAMES) if abl_models else ""
    return t1, t2, results


def report(paths: list[Path]) -> str:
    """Every table the records under ``paths`` hold, as one Markdown text."""
    results = collect(paths)
    full_all = [r for r in results if r["k_shot"] is None and r["current"]]
    full = [r for r in results if r["k_shot"] is None and not r["tag"]]
    few = [r for r in results if r["k_shot"] is not None]
    out = []
    for title, recs in (("Full data: Table 1", [r for r in full if r["current"]]),
                        ("Superseded runs (decoder prefix drawn N(0, 1), before the token init)",
                         [r for r in full if not r["current"]])):  # fmt: skip
        if not recs:
            continue
        tasks = [t for t in TASK_ORDER if any(r["task"] == t for r in recs)]
        models = list(dict.fromkeys(r["model"] for r in recs))
        rows = [m for m in TABLE1_ROWS if any(r["method"] == m for r in recs)]
        out += [f"## {title}\n", table(recs, tasks, models, rows, METHOD_NAMES), provenance(recs)]
        abl = [m for m in models if any(r["model"] == m and r["method"].startswith("crl-") for r in recs)]
        if abl and title.startswith("Full"):
            out += ["## Full data: Table 2 (ablation)\n", table(recs, tasks, abl, ABLATION_METHODS, ABLATION_NAMES)]
            out += ["## Full data: paired differences with Prompt v2\n", paired_table(recs)]
    if any(r["tag"] and trains(r) for r in full_all):
        out += ["## Full data: sweep (tagged variants)\n", sweep_table(full_all)]
    if few:
        out += few_shot_sections(few) + [f"Wall-clock: {wall_clock(few)}.\n"]
    return "\n".join(out)


def few_shot_sections(few: list[dict], base: str = "ptv2") -> list[str]:
    """Paired tables of few-shot (or tagged) records: untagged runs, each protocol tag (a tag that
    ``base`` runs carry too, paired within itself), then the sweep of the other tags."""
    protocols = sorted({r["tag"] for r in few if r["tag"] and r["method"] == base})
    # a protocol whose only trained method is the base has nothing to pair (its floor row is in the floor table)
    paired = [t for t in protocols if any(r["tag"] == t and r["method"] not in (base, "probe") for r in few)]
    out = ["## Few-shot: paired differences with Prompt v2\n", paired_table(few, base=base)]
    if any(r["method"] == "probe" for r in few):
        out += ["## Few-shot: against the no-prompt floor\n", floor_table(few, base=base)]
    for tag in paired:
        out += [f"## Few-shot, protocol `{tag}`: paired differences with Prompt v2\n", lr_note(few, tag),
                paired_table(few, base=base, tag=tag)]  # fmt: skip
    if any(r["tag"] and r["tag"] not in protocols and trains(r) for r in few):
        out += ["## Few-shot sweep (tagged variants)\n", sweep_table(few, base=base)]
    return out


def runs_table(results: list[dict]) -> str:
    """One row per run record: what ``crl-prompt train`` prints, with its machine and commit."""
    head = ("| run | test acc | best after phase 1 (CE only): test | best D_RL acc | steps | minutes | device, threads "
            "| commit |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        m = r.get("machine") or {}
        threads = m.get("torch_threads") or "?"
        lines.append(
            f"| {r['task']}/{r['model']} {r['method']} seed {r['seed']} | {r['test_acc']:.4f} | "
            f"{r.get('phase1_test_acc', float('nan')):.4f} | {r.get('drl_acc', float('nan')):.4f} | {r.get('steps', '–')} | "
            f"{r.get('wall_seconds_total', r.get('seconds', 0)) / 60:.1f} | {r.get('device', '?')}, {threads} "
            f"| {(r.get('versions') or {}).get('commit', '?')[:7]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--runs":  # one row per run (e.g. the README's main job)
        print(runs_table(collect([Path(a) for a in argv[1:]])))
        return
    if not argv:
        raise SystemExit("usage: python -m crlprompt.runners.tables [--runs] RESULTS_DIR_OR_JSONL [...]")
    if len(argv) == 1 and Path(argv[0]).is_dir() and any(Path(argv[0]).glob("results.jsonl")):
        root = Path(argv[0])  # a reproduce output directory: (re)write its table1.md / table2.md
        t1, t2, results = merge(root)
        if not results:
            raise SystemExit(f"no full-data records under {root}")
        atomic_write(root / "table1.md", t1)
        print("## Table 1\n\n" + t1)
        if t2:
            atomic_write(root / "table2.md", t2)
            print("## Table 2 (ablation)\n\n" + t2)
        return
    text = report([Path(a) for a in argv])
    if not text:
        raise SystemExit(f"no records in {argv}")
    print(text)


if __name__ == "__main__":
    main()
