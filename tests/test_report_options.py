"""`mmrebal report` options: refused before anything is written, reports kept unless --force,
--format on stdout too, CSV headers without spaces; figures at 200 dpi in png/pdf/svg with one
legend, shared axes, and only where they mean what they claim."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
from PIL import Image
from test_report import write_run
from typer.testing import CliRunner

import mmrebal.report.figures as figures
from mmrebal.cli import app
from mmrebal.report import write_report
from mmrebal.report.runs import find_runs, group_runs


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed)
        write_run(root, "dus", "joint", seed)
    return root


def _report(*args: str):
    return CliRunner().invoke(app, ["report", *args])


def test_a_misspelt_split_format_or_fig_format_is_an_error_and_writes_nothing(runs: Path, tmp_path: Path):
    out = tmp_path / "r.md"
    for flag, value, hint in (("--split", "tst", "'test'"), ("--format", "ltx", "'latex'"),
                              ("--fig-format", "jpg", "png")):  # fmt: skip
        result = _report(str(runs), "--out", str(out), flag, value)
        assert result.exit_code == 2, result.output
        assert f"{flag} {value!r}: unknown value" in result.output and hint in result.output
    assert not out.exists() and not list(tmp_path.glob("r-*"))


def test_an_existing_report_is_kept_without_force(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    assert _report(str(runs), "--out", str(out)).exit_code == 0
    written = [out, *tmp_path.glob("r-*")]
    before = {p: p.read_bytes() for p in written}
    again = _report(str(runs), "--out", str(out))
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    assert {p: p.read_bytes() for p in written} == before and len(written) > 1
    assert _report(str(runs), "--out", str(out), "--force").exit_code == 0


def test_csv_and_latex_go_to_stdout_as_written(runs: Path, tmp_path: Path) -> None:
    for fmt, name in (("csv", "t.csv"), ("latex", "t.tex")):
        result = CliRunner().invoke(
            app, ["report", str(runs), "--out", str(tmp_path / name), "--format", fmt]
        )
        assert result.exit_code == 0
        assert result.stdout.strip() == (tmp_path / name).read_text().strip()
    header = next(csv.reader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert header[0] == "method" and all(" " not in h and h == h.lower() for h in header)
    assert "avmnist_acc_mean" in header and "avmnist_acc_std" in header


def test_legend_mentions_the_best_unimodal_row_only_when_there_is_one(runs: Path, tmp_path: Path) -> None:
    text = write_report([runs], tmp_path / "a.md").text
    assert "best unimodal" not in text
    write_run(runs, "uniform", "unimodal", 0, modality="audio")
    write_run(runs, "uniform", "unimodal", 1, modality="audio")
    assert "below the best unimodal row" in write_report([runs], tmp_path / "b.md").text


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_figure_formats(runs: Path, tmp_path: Path, fmt: str) -> None:
    outcome = write_report([runs], tmp_path / "r.md", fig_format=fmt)
    drawn = [f.path for f in outcome.figures if f.path is not None]
    assert drawn and all(p.suffix == f".{fmt}" for p in drawn)
    head = drawn[0].read_bytes()[:5]
    assert head == {"png": b"\x89PNG\r", "pdf": b"%PDF-", "svg": b"<?xml"}[fmt]
    assert f"]({drawn[0].name})" in outcome.text


def test_png_figures_are_200_dpi_with_one_legend_and_shared_axes(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = write_report([runs], tmp_path / "r.md")
    batch = next(f.path for f in outcome.figures if f.title.startswith("Batch size"))
    image = Image.open(batch)
    assert round(image.info["dpi"][0]) == 200 and image.width >= 900  # 4.8 in x 200 dpi, trimmed
    groups, _ = group_runs(find_runs([runs])[0])
    captured = {}
    real_save = figures._save

    def keep(fig, path):  # the figure object itself, to inspect its legends and axes
        captured[path.name] = fig
        real_save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    figures.discrepancy_figure(groups, tmp_path / "d.png")
    figures.batch_size_figure(groups, tmp_path / "b.png")
    for fig in captured.values():
        assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    d = [ax for ax in captured["d.png"].axes if ax.get_visible()]
    assert len(d) == 2 and d[0].get_ylim() == d[1].get_ylim()  # uniform and dus on one scale
    # DUS: seed mean with a band (two seeds), not a line per seed
    b = captured["b.png"].axes[0]
    assert len(b.lines) == 2 and len(b.collections) == 2


def test_discrepancy_is_not_drawn_for_modality_pure_steps(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        run = write_run(root, "remix", "joint", seed)
        steps = pl.read_parquet(run / "steps.parquet")
        pure = steps.filter((pl.col("step") % 2 == 0) == (pl.col("modality") == "audio"))  # one per step
        pure.write_parquet(run / "steps.parquet")
    outcome = write_report([root], tmp_path / "r.md")
    figure = next(f for f in outcome.figures if f.title.startswith("Cumulative discrepancy"))
    assert figure.path is None and "train only some modalities" in figure.note
