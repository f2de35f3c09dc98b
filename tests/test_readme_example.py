"""The README notebook example runs as written (smaller sizes): its public names keep working."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _notebook_block() -> str:
    text = README.read_text()
    section = text[text.index("## From a notebook") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_notebook_example_runs(capsys):
    code = _notebook_block()
    # the same code at a test's size: fewer tasks, updates and held-out tasks
    small = (
        code.replace("num_tasks=512", "num_tasks=16")
        .replace("range(300)", "range(2)")
        .replace("test_tasks(1000)", "test_tasks(8)")
    )
    assert small != code, "the README example changed: update this test's size substitutions"
    exec(compile(small, str(README), "exec"), {})
    assert "|" in capsys.readouterr().out  # the markdown report was printed
