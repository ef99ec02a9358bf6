"""The Python API page (docs/how-to/python-api.md) runs: its ```python blocks, in order, in
one namespace, in an empty folder, as a reader would paste them into a notebook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "python-api.md"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every ```python block of a Markdown text."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def test_python_blocks_finds_each_block_and_its_line():
    text = "intro\n```python\na = 1\n```\ntext\n```bash\nls\n```\n```python\nb = a\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n"), (10, "b = a\n")]


@pytest.mark.slow
def test_the_python_api_page_runs(tmp_path, monkeypatch):
    blocks = python_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 8, "the page lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for line, code in blocks:
        # blank lines before the block: a traceback names the page's own line numbers
        exec(compile("\n" * (line - 1) + code, str(PAGE), "exec"), namespace)
    # what the page promises, checked
    assert namespace["sr"].shape == (8, 48, 48)
    assert namespace["sr"].spacing_mm == pytest.approx((0.01,) * 3)
    assert (tmp_path / "sr.mha").is_file() and (tmp_path / "evaluation" / "summary.json").is_file()
    assert Path(namespace["study"]["report"]).is_file()
