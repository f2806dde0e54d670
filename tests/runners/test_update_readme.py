"""scripts/update_readme.py: only the generated blocks change, and each names a table tool."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "update_readme.py"


@pytest.fixture
def tool(monkeypatch):
    spec = importlib.util.spec_from_file_location("update_readme", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "render", lambda name: f"| table of {name} |\n")
    return mod


def test_only_generated_blocks_are_rewritten(tool):
    text = ("prose 0.5 stays\n<!-- generated: search -->\n| old |\n<!-- end: search -->\nmore prose\n"
            "<!-- generated: few-shot -->\n<!-- end: few-shot -->\n")  # fmt: skip
    assert tool.update(text) == ("prose 0.5 stays\n<!-- generated: search -->\n| table of search |\n<!-- end: search -->\n"
                                 "more prose\n<!-- generated: few-shot -->\n| table of few-shot |\n<!-- end: few-shot -->\n")


def test_a_block_without_a_table_tool_is_an_error(tool):
    with pytest.raises(SystemExit, match="nosuch"):
        tool.update("<!-- generated: nosuch -->\n<!-- end: nosuch -->\n")


def test_the_readme_blocks_all_have_table_tools(tool):
    names = [m["name"] for page in tool.pages() for m in tool.BLOCK.finditer(page.read_text())]
    assert set(names) == set(tool.BLOCKS) and len(names) == len(set(names))  # each block once, in one page
