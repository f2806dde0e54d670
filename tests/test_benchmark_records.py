"""The benchmarks' results: each run is one record under results/benchmarks/, and benchmarks/RESULTS.md is
generated from the records (a table printed by a script survives as data and renders back the same)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _common
    import results_table

    return _common, results_table


def test_a_report_becomes_one_record_that_renders_its_tables(bench, tmp_path, monkeypatch, capsys):
    import torch

    from crlprompt.runners.records import read_records

    C, T = bench
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / "bench_demo.py"), "--threads", "1"])
    path = tmp_path / "bench_demo.jsonl"
    rep = C.Report("Demo: two sides", argparse.Namespace(quick=False, no_write=False, results=path), torch.device("cpu"))
    rep.add(C.table(["side", "items/s"], [["ours", "2.50"], ["peer", "1.25"]]))
    rep.add("ratio ours / peer: **2.00×**")
    printed = rep.finish()
    (rec,) = read_records(path, "benchmark")
    assert rec["benchmark"] == "bench_demo" and rec["command"] == "python benchmarks/bench_demo.py --threads 1"
    assert rec["parts"][0] == {"table": {"header": ["side", "items/s"], "rows": [["ours", "2.50"], ["peer", "1.25"]]}}
    assert rec["parts"][1] == {"text": "ratio ours / peer: **2.00×**"}
    assert rec["versions"]["torch"] and rec["machine"]["torch_threads"] >= 1
    assert T.main([str(path)]) == 0
    page = capsys.readouterr().out
    assert "| ours | 2.50 |" in page and "### Demo: two sides" in page and "**2.00×**" in page
    assert T.block(rec) == printed  # what the page shows is what the script printed


def test_no_write_appends_nothing(bench, tmp_path, monkeypatch):
    import torch

    C, _ = bench
    monkeypatch.setattr(sys, "argv", ["benchmarks/bench_demo.py"])
    path = tmp_path / "x.jsonl"
    rep = C.Report("Demo", argparse.Namespace(quick=True, no_write=True, results=path), torch.device("cpu"))
    rep.add("text")
    assert "[--quick" in rep.finish()
    assert not path.exists()


def test_markdown_tables_parse_to_cells_and_render_back(bench):
    _, T = bench
    md = "| a | b c |\n|---|---|\n| 1 | **2** |\n| x |  |"
    part = T.parse_part(md)
    assert part == {"table": {"header": ["a", "b c"], "rows": [["1", "**2**"], ["x", ""]]}}
    assert T.parse_part("- not a table\n| half |") == {"text": "- not a table\n| half |"}
    assert T.render_part(part).splitlines()[2] == "| 1 | **2** |"
