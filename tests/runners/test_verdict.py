"""The README's verdict lines (crlprompt.runners.verdict): computed from records, targets judged by the mean."""

from __future__ import annotations

from crlprompt.runners.verdict import crl_line, tuning_line


def _rec(task: str, method: str, data_seed: int, acc: float, tag: str = "") -> dict:
    return {"task": task, "model": "minilm", "method": method, "seed": 0, "data_seed": data_seed, "k_shot": 16,
            "tag": tag, "test_acc": acc}  # fmt: skip


def _grid(gains: dict[tuple[str, str], list[float]], floor: float = 0.5) -> list[dict]:
    recs = []
    for (task, method), per_seed in gains.items():
        for d, g in zip((13, 21, 42, 87, 100), per_seed):
            recs += [_rec(task, "probe", d, floor), _rec(task, method, d, floor + g / 100)]
    return recs


def test_tuning_targets_are_met_only_when_every_mean_clears_them():
    met = _grid({("trec", "ptv2"): [11, 12, 13, 10, 14], ("trec", "crl"): [12, 12, 12, 12, 11],
                 ("sst2", "ptv2"): [3, 4, 3, 5, 3], ("sst2", "crl"): [4, 4, 4, 4, 4]})  # fmt: skip
    line = tuning_line(met)
    assert "≥ 10 on TREC: **met**; ≥ 3 on SST-2: **met**." in line
    assert "TREC Prompt v2 +12.0 [" in line and "(n = 5)" in line
    missed = _grid({("trec", "ptv2"): [11, 12, 13, 10, 14], ("trec", "crl"): [12, 12, 12, 12, 11],
                    ("sst2", "ptv2"): [1, 2, 1, 2, 1], ("sst2", "crl"): [-2, -1, -3, -2, -2]})  # fmt: skip
    line = tuning_line(missed)
    assert "≥ 10 on TREC: **met**; ≥ 3 on SST-2: **missed**." in line
    assert "SST-2 CRL-Prompt -2.0 [" in line and line.count("**under the floor**") == 1


def test_a_partial_grid_says_so_and_tagged_runs_stay_out():
    recs = _grid({("trec", "ptv2"): [20]}) + [_rec("trec", "ptv2", 13, 0.1, tag="head-c-floor")]
    line = tuning_line(recs)
    assert "TREC Prompt v2 +20.0 (n = 1)" in line and "≥ 10 on TREC: **missed so far**" in line
    assert "(so far: not every task has 5 data seeds)" in line  # and SST-2 has no records at all


def test_crl_minus_prompt_v2_is_paired_by_data_seed():
    recs = [_rec("trec", "ptv2", 13, 0.70), _rec("trec", "crl", 13, 0.72), _rec("trec", "ptv2", 21, 0.60),
            _rec("trec", "crl", 21, 0.61), _rec("trec", "crl", 42, 0.99)]  # seed 42 has no partner  # fmt: skip
    assert crl_line(recs) == "- **CRL-Prompt − Prompt v2** (k = 16, test points, paired): TREC +1.5 [-4.9, +7.9] (n = 2)."
