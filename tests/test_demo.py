"""`mmrebal demo` end to end on a tiny cache: four real runs, a report, and the side-by-side view."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _tiny_cache import build_tiny_cache
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.report.imbalance import accuracies
from mmrebal.report.runs import find_runs, group_runs


@pytest.mark.slow
def test_demo_trains_baseline_and_sampler_and_shows_them_side_by_side(tmp_path: Path) -> None:
    cache = build_tiny_cache(tmp_path / "tiny.h5", n=240)  # DUS draws 2 x 64 rows a step
    out = tmp_path / "demo"
    args = ["demo", "--cache", str(cache), "--out", str(out), "--epochs", "1", "--sampler", "dus"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cells = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert cells == ["dus-fused-s0", "uniform-fused-s0", "uniform-unimodal.modality=audio-s0",
                     "uniform-unimodal.modality=visual-s0"]  # fmt: skip
    assert (out / "report.md").exists() and "## Imbalance: tiny" in (out / "report.md").read_text()
    groups, _ = group_runs(find_runs([out])[0])  # labels may carry the trainer's ⚠ (a 1-epoch DUS)
    by_name = {(g.sampler, g.unimodal_modality or g.method): g for g in groups}
    alone = {m: accuracies(by_name["uniform", m], "test", m)[0] for m in ("audio", "visual")}
    for label, sampler in (("Uniform/Fused", "uniform"), ("DUS/Fused", "dus")):
        row = next(ln for ln in result.output.splitlines() if ln.strip("│ ").startswith(label))
        group = by_name[sampler, "fused"]
        fused, audio, visual = (accuracies(group, "test", scope)[0] for scope in ("fused", *alone))
        numbers = [float(x) for x in re.findall(r"[-+]?\d+\.\d+", row)]
        assert numbers == pytest.approx(
            [round(fused, 2), round(audio, 2), round(audio - alone["audio"], 2), round(visual, 2),
             round(visual - alone["visual"], 2)], abs=0.006)  # fmt: skip
    weak = min(alone, key=alone.get)
    assert f"against Uniform/Fused: the {weak} head" in " ".join(result.output.split())
    assert "⚠ dus under fused: the rows dus gives" in " ".join(result.output.split())  # the trainer's line
    # a second demo reuses the finished runs instead of training them again
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and again.output.count("skipped") == 4, again.output


def test_demo_refuses_uniform_beside_itself(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--sampler", "uniform", "--cache", str(tmp_path)])
    assert result.exit_code == 1 and "pick a rebalancing sampler" in result.output
