"""`mmrebal report` on synthetic run directories written with exactly the run-directory contract."""

from __future__ import annotations

import csv
import io
import json
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.report import ReportError, parse_metrics, write_report
from mmrebal.report.runs import find_runs, group_runs

MODALITIES = ("audio", "visual")
EPOCHS = 3
STEPS_PER_EPOCH = 4
TRAIN_SAMPLES = 20


def write_run(
    root: Path,
    sampler: str,
    method: str,
    seed: int,
    *,
    dataset: str = "avmnist",
    lr: float = 1e-3,
    finished: bool = True,
    acc: float | None = None,
    modality: str | None = None,
    sampler_options: dict | None = None,
    run_warnings: list[str] | None = None,
    optimizer: str = "adam",
) -> Path:
    """A run directory as the trainer writes it: config.yaml, steps/metrics/samples.parquet, summary.json."""
    rng = np.random.default_rng(zlib.crc32(f"{sampler}{method}{seed}{dataset}{lr}{modality}".encode()))
    default_options = {"alpha": 0.5} if sampler == "dus" else {}
    tag = "".join(f"-{k}{v}" for k, v in (sampler_options or {}).items())
    run = root / f"{dataset}-{sampler}{tag}-{method}{modality or ''}-s{seed}"
    run.mkdir(parents=True)
    config = {
        "cache": {"dataset": dataset, "created": f"2026-01-0{seed + 1}", "format_version": 1},
        "sampler": sampler,
        "method": method,
        "seed": seed,
        "out": str(run),
        "lr": lr,
        "optimizer": optimizer,
        "epochs": EPOCHS,
        "batch_size": 16,
        "sampler_options": sampler_options if sampler_options is not None else default_options,
        "method_options": {"modality": modality} if modality else {},
        "versions": {"mmrebal": "0.1.0", "torch": "x"},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    steps = []
    cum = dict.fromkeys(MODALITIES, 0.0)
    for epoch in range(EPOCHS):
        for s in range(STEPS_PER_EPOCH):
            step = epoch * STEPS_PER_EPOCH + s
            for m in MODALITIES:
                batch = int(rng.integers(4, 16)) if sampler == "dus" else 16
                conf = float(rng.uniform(0.2, 0.9)) * (1.5 if m == "audio" else 1.0)
                cum[m] += conf * batch
                steps.append(
                    {"epoch": epoch, "step": step, "modality": m, "batch_size": batch, "confidence": conf,
                     "discrepancy": conf * batch, "cum_discrepancy": cum[m], "loss": 1.0, "lr": lr}
                )  # fmt: skip
    pl.DataFrame(steps).write_parquet(run / "steps.parquet")
    best = int(rng.integers(0, EPOCHS))
    metrics = []
    for epoch in range(EPOCHS):
        for split in ("train", "val", "test"):
            for scope in ("fused", *MODALITIES):
                values = {k: float(rng.uniform(0.3, 0.9)) for k in ("acc", "map", "macro_f1")}
                if acc is not None and scope in ("fused", modality):
                    values["acc"] = acc
                selected = epoch == best and split in ("val", "test")
                metrics.append({"epoch": epoch, "split": split, "scope": scope, **values, "loss": 1.0,
                                "selected": selected})  # fmt: skip
    pl.DataFrame(metrics).write_parquet(run / "metrics.parquet")
    samples = []
    for epoch in range(EPOCHS):
        for idx in range(TRAIN_SAMPLES):
            for m in MODALITIES:
                row = {"epoch": epoch, "sample_id": f"id{idx}", "idx": idx, "modality": m}
                if sampler == "remix":
                    row["assigned"] = (idx % 3 == 0) == (m == "audio")
                if sampler == "bss":
                    row["used"] = idx < TRAIN_SAMPLES - 4 * epoch
                samples.append(row)
    if sampler in ("remix", "bss"):
        pl.DataFrame(samples).write_parquet(run / "samples.parquet")
    if finished:
        options = {"sampler": {"warmup": 10, **(sampler_options or {})}, "method": {}}
        summary = {"status": "finished", "best_epoch": best, "epochs": EPOCHS, "wall_time_s": 10.0 + seed,
                   "train_samples_per_s": 100.0 + 3 * seed, "warnings": run_warnings or [],
                   "options": options}  # fmt: skip
        (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for seed in (0, 1, 2):
        write_run(root, "uniform", "joint", seed)
    for seed in (0, 1):
        write_run(root, "dus", "joint", seed)
        write_run(root, "remix", "joint", seed)
        write_run(root, "bss", "mla", seed)
        write_run(root, "uniform", "unimodal", seed, modality="audio")
        write_run(root, "uniform", "unimodal", seed, modality="visual")
    return root


def table_row(markdown: str, label: str, title: str = "## Main results") -> list[str]:
    section = markdown.split(title, 1)[1]
    for line in section.splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row {label!r} in {title}")


def expected(
    root: Path, sampler: str, method: str, scope: str, metric: str, option: str | None = None
) -> str:
    """Mean ± std (percent) straight from the traces with polars."""
    frames = []
    for run in root.iterdir():
        config = yaml.safe_load((run / "config.yaml").read_text())
        same_option = config["method_options"].get("modality") == option
        if config["sampler"] == sampler and config["method"] == method and same_option:
            frames.append(pl.read_parquet(run / "metrics.parquet"))
    values = (
        pl.concat(frames)
        .filter(pl.col("selected") & (pl.col("split") == "test") & (pl.col("scope") == scope))
        .select(pl.col(metric) * 100)
        .to_series()
    )
    return f"{values.mean():.2f} ± {values.std():.2f}"


def assert_png_not_blank(path: Path) -> None:
    image = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert image.shape[0] > 200 and image.shape[1] > 300, f"{path}: {image.shape} is too small"
    assert image.std() > 10, f"{path} looks blank"


def strip_style(cell: str) -> str:
    return cell.replace("**", "").replace("<u>", "").replace("</u>", "").replace(" †", "")


def test_markdown_numbers_equal_a_polars_query(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report" / "report.md"
    outcome = write_report([sweep], out, metrics=parse_metrics("acc,map"))
    text = out.read_text()
    assert outcome.path == out
    for label, sampler, method in [
        ("Uniform/Joint", "uniform", "joint"),
        ("DUS/Joint", "dus", "joint"),
        ("Remix/Joint", "remix", "joint"),
        ("BSS/MLA", "bss", "mla"),
    ]:
        row = table_row(text, label)
        n = 3 if sampler == "uniform" else 2
        assert row[1] == str(n)
        assert strip_style(row[2]) == expected(sweep, sampler, method, "fused", "acc")
        assert strip_style(row[3]) == expected(sweep, sampler, method, "fused", "map")
        modality_row = table_row(text, label, "## Per-modality results: avmnist")
        assert strip_style(modality_row[2 + 2 * 1]) == expected(sweep, sampler, method, "audio", "acc")
        assert strip_style(modality_row[2 + 2 * 2 + 1]) == expected(sweep, sampler, method, "visual", "map")
    # Unimodal rows come first, one per modality, from the modality scopes.
    main = text.split("## Main results", 1)[1].split("##", 1)[0]
    rows = [line for line in main.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    assert [r.split("|")[1].strip() for r in rows[:2]] == ["Unimodal (audio)", "Unimodal (visual)"]
    visual = expected(sweep, "uniform", "unimodal", "visual", "acc", option="visual")
    assert strip_style(table_row(text, "Unimodal (visual)")[2]) == visual
    audio = expected(sweep, "uniform", "unimodal", "audio", "acc", option="audio")
    unimodal_audio = table_row(text, "Unimodal (audio)", "## Per-modality results: avmnist")
    assert strip_style(unimodal_audio[4]) == audio
    assert unimodal_audio[6:] == ["–", "–"]  # its visual head is never trained: not reported
    cost = table_row(text, "Uniform/Joint", "## Training cost")
    assert cost[3] == "11.0 ± 1.0" and cost[4] == "103.0 ± 3.0"


def _selected_acc(root: Path, sampler: str, method: str, scope: str, option: str | None = None) -> list:
    """Per-seed percent accuracy of the selected test rows, straight from the traces."""
    values = []
    for run in sorted(root.iterdir()):
        config = yaml.safe_load((run / "config.yaml").read_text())
        key = (config["sampler"], config["method"], config["method_options"].get("modality"))
        if key == (sampler, method, option):
            rows = pl.read_parquet(run / "metrics.parquet").filter(
                pl.col("selected") & (pl.col("split") == "test") & (pl.col("scope") == scope)
            )
            values.append(100 * rows["acc"][0])
    return values


def test_imbalance_columns_and_intervals_equal_a_direct_computation(sweep: Path, tmp_path: Path) -> None:
    from scipy import stats

    for seed in (0, 1):
        write_run(sweep, "uniform", "fused", seed)
    text = write_report([sweep], tmp_path / "report.md").text
    title = "## Imbalance: avmnist"
    header = next(ln for ln in text.split(title, 1)[1].splitlines() if ln.startswith("| Method"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    alone = {m: np.mean(_selected_acc(sweep, "uniform", "unimodal", m, m)) for m in MODALITIES}
    weak = min(alone, key=alone.get)
    assert columns[-2:] == [f"Δ {weak} [95% CI]", f"p ({weak})"]
    for label, sampler, method, base in [
        ("DUS/Joint", "dus", "joint", ("uniform", "joint")),
        ("Remix/Joint", "remix", "joint", ("uniform", "joint")),
        ("Uniform/Joint", "uniform", "joint", ("uniform", "fused")),
        ("BSS/MLA", "bss", "mla", None),
        ("Uniform/Fused", "uniform", "fused", None),
    ]:
        row = dict(zip(columns, table_row(text, label, title), strict=True))
        fused = _selected_acc(sweep, sampler, method, "fused")
        assert row["n"] == str(len(fused))
        assert row["fused Acc"] == f"{np.mean(fused):.2f} ± {np.std(fused, ddof=1):.2f}"
        for m in MODALITIES:
            head = _selected_acc(sweep, sampler, method, m)
            assert row[f"{m} Acc"] == f"{np.mean(head):.2f} ± {np.std(head, ddof=1):.2f}"
            assert row[f"{m} gap"] == f"{np.mean(head) - alone[m]:+.2f}"
        ratios = []
        for run in sorted(sweep.glob(f"avmnist-{sampler}-{method}-s*")):
            steps = pl.read_parquet(run / "steps.parquet")
            conf = steps.group_by("modality").agg(pl.col("confidence").mean())
            ratios.append(conf["confidence"].max() / conf["confidence"].min())
        assert row["disc. ratio"] == f"{np.mean(ratios):.3f} ± {np.std(ratios, ddof=1):.3f}"
        if base is None:  # BSS/MLA: no Uniform/MLA in the report; Uniform/Fused is the baseline itself
            assert row["baseline"] == "–" and row["Δ fused [95% CI]"] == "–"
            continue
        assert row["baseline"] == {"joint": "Uniform/Joint", "fused": "Uniform/Fused"}[base[1]]
        for scope, key in (("fused", "Δ fused [95% CI]"), (weak, f"Δ {weak} [95% CI]")):
            a, b = _selected_acc(sweep, sampler, method, scope), _selected_acc(sweep, *base, scope)
            test = stats.ttest_ind(a, b, equal_var=False)
            low, high = test.confidence_interval(0.95)
            assert row[key] == f"{np.mean(a) - np.mean(b):+.2f} [{low:+.2f}, {high:+.2f}]"
            assert row[key.replace("Δ fused [95% CI]", "p").replace(f"Δ {weak} [95% CI]", f"p ({weak})")] == (
                f"{test.pvalue:.3f}"
            )


def test_figures_exist_are_linked_and_not_blank(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    outcome = write_report([sweep], out)
    text = out.read_text()
    assert len(outcome.figures) == 5
    for fig in outcome.figures:
        assert fig.path is not None, fig.note
        assert fig.path.parent == out.parent and f"]({fig.path.name})" in text
        assert_png_not_blank(fig.path)


def test_figures_without_data_are_skipped_with_a_note(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed)
    outcome = write_report([root], tmp_path / "r.md")
    drawn = {f.title: f.path for f in outcome.figures}
    assert drawn["Cumulative discrepancy per modality"] is not None
    text = (tmp_path / "r.md").read_text()
    for title in (
        "Batch size per modality (DUS)",
        "Remix assignment share per modality",
        "BSS fraction of data used",
    ):
        assert drawn[title] is None
        assert f"**{title}**: _skipped:" in text
    assert not list(tmp_path.glob("r-batch-size.png"))


def test_best_bold_second_underlined_and_below_unimodal_marked(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed, acc=0.50)
        write_run(root, "dus", "joint", seed, acc=0.95)
        write_run(root, "remix", "joint", seed, acc=0.93)
        write_run(root, "uniform", "unimodal", seed, modality="audio", acc=0.60)
    text = write_report([root], tmp_path / "r.md", metrics=["acc"]).path.read_text()
    assert table_row(text, "DUS/Joint")[2] == "**95.00 ± 0.00**"
    assert table_row(text, "Remix/Joint")[2] == "<u>93.00 ± 0.00</u>"
    assert table_row(text, "Uniform/Joint")[2] == "50.00 ± 0.00 †"  # below the unimodal 60 %
    assert table_row(text, "Unimodal (audio)")[2] == "60.00 ± 0.00"
    assert "†" not in table_row(text, "DUS/Joint")[2]


def test_grouping_by_config_minus_seed_and_warnings(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed)
    write_run(root, "dus", "joint", 0, lr=0.1)  # one seed, and a different learning rate
    write_run(root, "dus", "joint", 5, finished=False)
    runs, warnings = find_runs([root])
    assert len(runs) == 3 and any("unfinished" in w and "dus-joint-s5" in w for w in warnings)
    groups, group_warnings = group_runs(runs)
    assert sorted(len(g.runs) for g in groups) == [1, 2]
    assert any("differ in more than seed" in w and "lr" in w for w in group_warnings)
    assert any("a single seed" in w for w in group_warnings)
    assert {g.label for g in groups} == {"Uniform/Joint (lr=0.001)", "DUS/Joint (lr=0.1)"}


def test_sampler_options_and_creation_dates_do_not_split_groups(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed)
        write_run(root, "dus", "joint", seed)
    # how the loader read (a run from before --reader records none) is not a different experiment
    config = root / "avmnist-dus-joint-s1" / "config.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "reader": "threads"}))
    groups, warnings = group_runs(find_runs([root])[0])
    assert [len(g.runs) for g in groups] == [2, 2]
    assert warnings == []
    assert {g.label for g in groups} == {"Uniform/Joint", "DUS/Joint"}


def test_same_sampler_with_other_options_gets_the_options_in_its_label(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "dus", "joint", seed, sampler_options={})
        write_run(root, "dus", "joint", seed, sampler_options={"streams": "independent"})
        write_run(root, "uniform", "joint", seed)
    groups, warnings = group_runs(find_runs([root])[0])
    assert warnings == []
    assert sorted(g.label for g in groups) == [
        "DUS/Joint (streams=default)",
        "DUS/Joint (streams=independent)",
        "Uniform/Joint",
    ]


def test_csv_and_latex_main_table(sweep: Path, tmp_path: Path) -> None:
    csv_out = write_report([sweep], tmp_path / "t.csv", metrics=["acc"], fmt="csv").path
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text())))
    dus = next(r for r in rows if r["method"] == "DUS/Joint")
    mean, std = expected(sweep, "dus", "joint", "fused", "acc").split(" ± ")
    assert f"{float(dus['avmnist_acc_mean']):.2f}" == mean and f"{float(dus['avmnist_acc_std']):.2f}" == std
    assert dus["avmnist_n"] == "2" and not any(" " in h for h in rows[0])
    tex = write_report([sweep], tmp_path / "t.tex", metrics=["acc"], fmt="latex").path.read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{" in tex and r"\underline{" in tex
    lines = tex.splitlines()
    assert r"Method & \multicolumn{2}{c}{avmnist} \\" in lines and r" & n & Acc \\" in lines
    first_multimodal = next(i for i, line in enumerate(lines) if line.startswith("Uniform/Joint"))
    assert lines[first_multimodal - 1] == r"\midrule" and lines[first_multimodal - 2].startswith(
        "Unimodal (visual)"
    )
    dus_line = next(line for line in lines if line.startswith("DUS/Joint"))
    assert f"{mean} $\\pm$ {std}" in dus_line


def test_bad_input_gives_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no run directories"):
        find_runs([tmp_path])
    with pytest.raises(ReportError, match="unknown; choose from"):
        parse_metrics("acc,auc")
    run = write_run(tmp_path / "runs", "uniform", "joint", 0)
    (run / "metrics.parquet").write_text("not parquet")
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "r.md")])
    assert result.exit_code == 2
    assert "metrics.parquet: not a readable Parquet file" in result.output


def test_a_damaged_run_is_warned_about_and_left_out(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed)
    damaged = write_run(root, "uniform", "joint", 2)
    steps = (damaged / "steps.parquet").read_bytes()
    (damaged / "steps.parquet").write_bytes(steps[: len(steps) // 2])
    result = CliRunner().invoke(app, ["report", str(root), "--out", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    assert f"damaged run left out: {damaged / 'steps.parquet'}: not a readable Parquet file" in result.output
    assert "| Uniform/Joint |" in result.output and "| 2 |" in result.output  # the two intact seeds


def test_cli_writes_report_and_prints_the_main_table(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    result = CliRunner().invoke(app, ["report", str(sweep), "--out", str(out), "--metric", "acc"])
    assert result.exit_code == 0, result.output
    assert out.exists() and "| DUS/Joint |" in result.output and "a single seed" not in result.output


def test_datasets_become_column_groups_and_are_compared_separately(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed, dataset="avmnist", acc=0.8)
        write_run(root, "dus", "joint", seed, dataset="avmnist", acc=0.9)
        write_run(root, "dus", "joint", seed, dataset="cremad", lr=0.01, acc=0.6)  # other lr: other dataset
    outcome = write_report([root], tmp_path / "r.md", metrics=["acc"])
    assert not any("differ in more than" in w for w in outcome.warnings)
    assert outcome.main.header == ["Method", "avmnist n", "avmnist Acc", "cremad n", "cremad Acc"]
    text = outcome.path.read_text()
    assert table_row(text, "Uniform/Joint")[1:] == ["2", "<u>80.00 ± 0.00</u>", "–", "–"]
    assert table_row(text, "DUS/Joint")[1:] == ["2", "**90.00 ± 0.00**", "2", "60.00 ± 0.00"]
    assert "## Per-modality results: avmnist" in text and "## Per-modality results: cremad" in text
    val = write_report([root], tmp_path / "v.md", split="val", metrics=["acc"]).path.read_text()
    assert table_row(val, "DUS/Joint")[1:] == table_row(text, "DUS/Joint")[1:]  # acc is set on every split


def test_config_warnings_flag_the_group_and_the_training_settings_are_stated(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    line = "remix: warm-up 10 >= epochs 3, so the run never remixes"
    for seed in (0, 1):
        write_run(root, "uniform", "joint", seed)
        write_run(root, "remix", "joint", seed, run_warnings=[line])
    outcome = write_report([root], tmp_path / "r.md")
    labels = {g.label for g in outcome.groups}
    assert labels == {"Uniform/Joint", "Remix/Joint ⚠"}
    assert f"Remix/Joint ⚠ on avmnist: {line}" in outcome.warnings
    text = (tmp_path / "r.md").read_text()
    assert "Trained by every group with " in text and "optimizer=adam" in text and "lr=0.001" in text
    row = table_row(text, "Remix/Joint ⚠", "## Configurations")
    assert row[2] == "warmup: 10" and "optimizer=adam" in row[4] and "epochs=3" in row[4]
    # a setting that differs between groups is named under the table instead
    write_run(root, "dus", "joint", 0, optimizer="sgd")
    write_run(root, "dus", "joint", 1, optimizer="sgd")
    text = write_report([root], tmp_path / "r2.md").main.notes[-1]
    assert "Differs between groups: optimizer" in text and "optimizer=" not in text.split("Differs")[0]
