"""The README's sampler example (kept in docs/samplers.md) runs as printed and stays within 15 lines."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "samplers.md"


def test_plain_loop_example_runs():
    text = DOC.read_text()
    block = re.search(r"<!-- example.*?-->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "docs/samplers.md lost its example block"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 15
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    rows = scope["sampler"].drain_step_rows()
    assert len(rows) == 3 * 8 * 2 and all(r["batch_size_planned"] >= 1 for r in rows)
