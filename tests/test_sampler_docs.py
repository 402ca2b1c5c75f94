"""The README's sampler example (kept in docs/samplers.md) runs as printed and stays within 15 lines."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
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


def test_remix_own_loop_example_runs_and_remixes():
    text = DOC.read_text()
    block = re.search(r"<!-- example-remix.*?-->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "docs/samplers.md lost its Remix example block"
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(block.group(1), str(DOC), "exec"), scope)
    sampler = scope["sampler"]
    rows = sampler.drain_sample_rows()
    assert sorted({r["epoch"] for r in rows}) == [1, 2] and len(rows) == 2 * 512 * 2  # scored twice
    assigned = [r for r in rows if r["assigned"] and r["epoch"] == 2]
    assert len(assigned) == 512  # every sample assigned to exactly one modality
    plans = list(sampler.plans(2))  # epoch 2 again, from its assignment
    assert plans and all(len(p.groups) == 1 and len(p.groups[0].modalities) == 1 for p in plans)


def _scores(n: int = 6, scopes=("fused", "audio", "visual")):
    probs = {s: np.full((n, 3), 1 / 3) for s in scopes}
    return probs, {s: np.ones(n) for s in scopes}


def test_score_result_errors_are_one_line():
    from mmrebal.samplers import ScoreResult, create_sampler

    probs, losses = _scores()
    labels = np.zeros(6, int)
    with pytest.raises(ValueError, match=r"ScoreResult.losses must be a dict scope -> \[N\] array") as e:
        ScoreResult(labels, probs, np.ones(6))  # the README once said "an array"
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"ScoreResult.probs\['audio'\] must be \[N, C\] with N = 6"):
        ScoreResult(labels, {**probs, "audio": np.ones((5, 3))}, losses)
    with pytest.raises(ValueError, match="same scopes"):
        ScoreResult(labels, probs, {"fused": np.ones(6)})
    remix = create_sampler("remix", num_samples=6, labels=labels, modalities=("audio", "visual"),
                           batch_size=2, epochs=3, warmup=0)  # fmt: skip
    probs, losses = _scores(scopes=("fused", "audio"))
    with pytest.raises(ValueError, match=r"remix: ScoreResult lacks scope\(s\) 'visual'"):
        remix.receive_scores(0, ScoreResult(labels, probs, losses))
    with pytest.raises(ValueError, match="scores 4 samples, the train split has 6"):
        remix.receive_scores(0, ScoreResult(np.zeros(4, int), *_scores(4)))
    bss = create_sampler("bss", num_samples=6, labels=labels, modalities=("audio", "visual"),
                         batch_size=2, epochs=3)  # fmt: skip
    with pytest.raises(ValueError, match=r"bss: ScoreResult lacks scope\(s\) 'visual'"):
        bss.receive_scores(0, ScoreResult(labels, probs, losses))
