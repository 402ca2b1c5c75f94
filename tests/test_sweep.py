"""`mmrebal sweep`: grid expansion, skip/resume, failures, interrupts (a fake trainer, then the real one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from test_report import assert_png_not_blank, expected, strip_style, table_row
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.sweep import (
    LOG_NAME,
    Cell,
    SweepError,
    SweepRunner,
    SweepSpec,
    build_spec,
    cell_command,
    cell_progress,
    cell_state,
    parse_train_opts,
    read_grid,
    running_line,
)

# A stand-in for `mmrebal train` with the same run-directory behaviour: a checkpoint after every
# epoch, summary.json at the end, `--resume` continues after the checkpoint's epoch. It appends each
# trained epoch to epochs.log so a test can tell exactly what was (re)trained.
FAKE_TRAIN = textwrap.dedent(
    """
    import argparse, json, os, sys, time
    from pathlib import Path

    p = argparse.ArgumentParser()
    for name in ("--sampler", "--method", "--seed", "--out", "--cache"):
        p.add_argument(name)
    for name in ("--sampler-opt", "--method-opt"):
        p.add_argument(name, action="append")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    started = time.time()
    ckpt = out / "checkpoints" / "last.pt"
    start = json.loads(ckpt.read_text())["epoch"] + 1 if args.resume else 0
    if args.sampler == "broken":
        print("boom: this sampler always fails")
        sys.exit(3)
    for epoch in range(start, args.epochs):
        time.sleep(args.sleep)
        with open(out / "epochs.log", "a") as f:
            f.write(f"{epoch}\\n")
        print(f"epoch {epoch + 1}/{args.epochs}  train loss 0.5000", flush=True)  # as the trainer prints
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.with_suffix(".tmp").write_text(json.dumps({"epoch": epoch}))
        os.replace(ckpt.with_suffix(".tmp"), ckpt)
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    (out / "device.json").write_text(json.dumps({"gpu": gpu, "start": started, "end": time.time()}))
    (out / "summary.json").write_text(json.dumps({"status": "finished"}))
    """
)


@pytest.fixture
def fake_train(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    return (sys.executable, str(script))


def epochs_trained(cell_dir: Path) -> list[int]:
    log = cell_dir / "epochs.log"
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def test_grid_file_cli_overrides_and_cell_commands(tmp_path: Path) -> None:
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(
        "samplers: [uniform, dus]\nmethods: [joint]\nseeds: [0, 1]\nout: ignored\n"
        "train: {preset: cpu, epochs: 3, bf16: false, preload: no, sampler_opt: {alpha: 0.5}}\n"
    )
    grid = read_grid(grid_file)
    assert grid["train"] == ["--preset", "cpu", "--epochs", "3", "--no-bf16", "--preload", "false",
                             "--sampler-opt", "alpha=0.5"]  # fmt: skip
    extra = parse_train_opts(["--epochs 1", "--lr=0.01"])
    spec = build_spec(grid, None, None, "joint,mla", None, tmp_path / "sw", None, extra)
    assert [c.name for c in spec.cells()][:3] == ["uniform-joint-s0", "uniform-joint-s1", "uniform-mla-s0"]
    assert len(spec.cells()) == 8
    cmd = cell_command(spec, Cell("dus", "mla", 1), resume=True, launcher=("train",))
    assert cmd[:9] == [
        "train",
        "--sampler",
        "dus",
        "--method",
        "mla",
        "--seed",
        "1",
        "--out",
        str(tmp_path / "sw" / "dus-mla-s1"),
    ]
    # The grid file's train flags come first so that the command line's (later) ones win.
    assert cmd[9:] == [*grid["train"], "--epochs", "1", "--lr=0.01", "--resume"]
    assert "--resume" not in cell_command(spec, Cell("dus", "mla", 1), resume=False)


def test_grid_entries_carry_their_own_options(tmp_path: Path) -> None:
    spec = build_spec({}, None, "uniform,remix:warmup=10:gamma=2", "fused,joint:unimodal_weight=0", "0",
                      tmp_path / "sw", None, [])  # fmt: skip
    names = [c.name for c in spec.cells()]
    assert names == [
        "uniform-fused-s0",
        "uniform-joint.unimodal_weight=0-s0",
        "remix.warmup=10.gamma=2-fused-s0",
        "remix.warmup=10.gamma=2-joint.unimodal_weight=0-s0",
    ]
    cmd = cell_command(spec, spec.cells()[3], resume=False, launcher=("train",))
    assert cmd == ["train", "--sampler", "remix", "--sampler-opt", "warmup=10", "--sampler-opt", "gamma=2",
                   "--method", "joint", "--method-opt", "unimodal_weight=0", "--seed", "0",
                   "--out", str(tmp_path / "sw" / names[3])]  # fmt: skip


def test_unimodal_flag_adds_one_cell_per_modality_and_seed(tmp_path: Path) -> None:
    from _tiny_cache import build_tiny_cache

    cache = build_tiny_cache(tmp_path / "c.h5", n=10)
    spec = build_spec({"unimodal": True}, cache, "dus", "joint", "0,1", tmp_path / "sw", None, [])
    assert [c.name for c in spec.cells()] == [
        "dus-joint-s0", "dus-joint-s1",
        "uniform-unimodal.modality=audio-s0", "uniform-unimodal.modality=audio-s1",
        "uniform-unimodal.modality=visual-s0", "uniform-unimodal.modality=visual-s1",
    ]  # fmt: skip
    cmd = cell_command(spec, spec.cells()[2], resume=False)
    assert cmd[cmd.index("--method") : cmd.index("--seed")] == [
        "--method", "unimodal", "--method-opt", "modality=audio"]  # fmt: skip
    # a grid that already lists a unimodal cell does not get it twice; --no-unimodal wins over the file
    again = build_spec({}, cache, "uniform", "unimodal:modality=audio", "0", tmp_path / "sw", None, [],
                       unimodal=True)  # fmt: skip
    assert len(again.cells()) == 2
    off = build_spec({"unimodal": True}, cache, "dus", "joint", "0", tmp_path, None, [], unimodal=False)
    assert len(off.cells()) == 1


def test_unimodal_cells_are_scored_for_the_ensemble_once(tmp_path: Path, fake_train: tuple[str, ...]) -> None:
    score = tmp_path / "fake_score.py"
    score.write_text(
        "import sys, pathlib\n"
        "run, split = pathlib.Path(sys.argv[1]), sys.argv[3]\n"
        "if 'visual' in run.name and not (run / 'retry').exists():\n"
        "    (run / 'retry').touch(); sys.exit(4)\n"
        "(run / 'predictions.parquet').write_text(split)\n"
    )
    spec = SweepSpec(["uniform"], ["joint"], [0], tmp_path / "sw", unimodal=["audio", "visual"])
    runner = SweepRunner(spec, fake_train, score_launcher=(sys.executable, str(score)))
    first = {o.cell.name: o.status for o in runner.run()}
    assert first == {"uniform-joint-s0": "finished", "uniform-unimodal.modality=audio-s0": "finished",
                     "uniform-unimodal.modality=visual-s0": "failed"}  # fmt: skip
    audio, visual = (spec.out / f"uniform-unimodal.modality={m}-s0" for m in ("audio", "visual"))
    assert (audio / "predictions.parquet").read_text() == "test"
    assert not (spec.out / "uniform-joint-s0" / "predictions.parquet").exists()
    # the next sweep scores the trained visual cell without training it again
    second = {o.cell.name: (o.status, o.resumed) for o in runner.run()}
    assert second["uniform-unimodal.modality=visual-s0"] == ("finished", False)
    assert second["uniform-unimodal.modality=audio-s0"][0] == "skipped"
    assert epochs_trained(visual) == [0, 1] and (visual / "predictions.parquet").exists()
    assert "mmrebal sweep score" in (visual / LOG_NAME).read_text()


@pytest.mark.parametrize(
    ("samplers", "methods", "message"),
    [
        ("remix:warmup", "joint", "options are NAME:KEY=VALUE"),
        ("remix:warmup=1:warmup=2", "joint", "sets warmup twice"),
        ("remix:warmpu=10", "joint", "did you mean 'warmup'"),
        ("remix:warmup=2.5", "joint", "warmup=.*whole number"),
        ("uniform", "joint:unimodal_wieght=0", "--methods: .*did you mean 'unimodal_weight'"),
        ("remx:warmup=1", "joint", "did you mean 'remix'"),
        ("uniform", "joint:x=a/b", "cannot contain '/'"),
    ],
)
def test_bad_grid_entries_are_refused_before_any_cell(samplers: str, methods: str, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        build_spec({}, None, samplers, methods, "0", None, None, [])


def test_unimodal_flag_needs_an_existing_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the default cache lives in $MMREBAL_HOME: point it at an empty folder, or a machine that has run
    # `make demo` (which builds ~/.cache/mmrebal/avmnist.h5) finds one and the sweep rightly goes on
    monkeypatch.setenv("MMREBAL_HOME", str(tmp_path / "home"))
    with pytest.raises(SweepError, match="--unimodal needs the cache's modalities"):
        build_spec({}, None, "uniform", "joint", "0", tmp_path / "sw", None, [], unimodal=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"samplers": None}, "no samplers"),
        ({"seeds": "0,x"}, "seeds are integers"),
        ({"seeds": "0,0"}, "lists a value twice"),
        ({"extra": ["--seed", "3"]}, "set per cell by the sweep"),
        ({"cache": Path("missing.h5")}, "no such cache"),
    ],
)
def test_bad_grids_are_refused_with_one_line(args: dict, message: str) -> None:
    values = {"cache": None, "samplers": "uniform", "methods": None, "seeds": None, "extra": []}
    values.update(args)
    with pytest.raises(SweepError, match=message):
        build_spec({}, values["cache"], values["samplers"], values["methods"], values["seeds"], None, None,
                   values["extra"])  # fmt: skip


def test_unknown_grid_key_names_the_file(tmp_path: Path) -> None:
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("sampler: [uniform]\n")
    with pytest.raises(SweepError, match=r"grid.yaml: unknown key\(s\) sampler"):
        read_grid(grid_file)
    grid_file.write_text("samplers: uniform\nseeds: 3\njobs: many\n")
    with pytest.raises(SweepError, match="--jobs 'many': expected a whole number"):
        build_spec(read_grid(grid_file), None, None, None, None, None, None, [])
    spec = build_spec(read_grid(grid_file), None, None, None, None, None, 2, [])
    assert [c.name for c in spec.cells()] == ["uniform-joint-s3"]


def test_finished_cells_are_skipped_and_unfinished_resumed(
    tmp_path: Path, fake_train: tuple[str, ...]
) -> None:
    spec = SweepSpec(["a", "b", "c"], ["joint"], [0], tmp_path / "sweep", train_args=["--epochs", "3"])
    finished, resumable, new = (spec.out / c.name for c in spec.cells())
    finished.mkdir(parents=True)
    (finished / "summary.json").write_text("{}")
    (resumable / "checkpoints").mkdir(parents=True)
    (resumable / "checkpoints" / "last.pt").write_text(json.dumps({"epoch": 0}))
    assert [cell_state(d) for d in (finished, resumable, new)] == ["finished", "resumable", "new"]

    outcomes = SweepRunner(spec, launcher=fake_train).run()
    assert [(o.status, o.resumed) for o in outcomes] == [
        ("skipped", False),
        ("finished", True),
        ("finished", False),
    ]
    assert epochs_trained(finished) == []
    assert epochs_trained(resumable) == [1, 2]  # continued after the checkpoint's epoch 0
    assert epochs_trained(new) == [0, 1, 2]
    assert (
        "resume:" in (resumable / LOG_NAME).read_text() and "--resume" in (resumable / LOG_NAME).read_text()
    )

    again = SweepRunner(spec, launcher=fake_train).run()
    assert [o.status for o in again] == ["skipped"] * 3
    assert epochs_trained(new) == [0, 1, 2]


def test_a_failing_cell_is_reported_and_the_others_run(tmp_path: Path, fake_train: tuple[str, ...]) -> None:
    spec = SweepSpec(["broken", "ok"], ["joint"], [0, 1], tmp_path / "sweep", jobs=2)
    outcomes = SweepRunner(spec, launcher=fake_train).run()
    status = {o.cell.name: (o.status, o.returncode) for o in outcomes}
    assert status == {
        "broken-joint-s0": ("failed", 3),
        "broken-joint-s1": ("failed", 3),
        "ok-joint-s0": ("finished", 0),
        "ok-joint-s1": ("finished", 0),
    }
    log = (spec.out / "broken-joint-s0" / LOG_NAME).read_text()
    assert "boom: this sampler always fails" in log


def wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"sweep exited early with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the sweep")
        time.sleep(0.05)


def test_interrupted_sweep_resumes_without_retraining(tmp_path: Path, fake_train: tuple[str, ...]) -> None:
    """SIGINT a sweep mid-way; its running cell is stopped; the re-run skips finished cells."""
    spec = SweepSpec(
        ["a", "b", "c"], ["joint"], [0], tmp_path / "sweep", train_args=["--epochs", "4", "--sleep", "0.3"]
    )
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys\nfrom pathlib import Path\nfrom mmrebal.sweep import SweepRunner, SweepSpec\n"
        f"spec = SweepSpec(['a', 'b', 'c'], ['joint'], [0], Path({str(spec.out)!r}))\n"
        f"spec.train_args = {spec.train_args!r}\n"
        f"SweepRunner(spec, launcher={fake_train!r}).run()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first, second, third = (spec.out / c.name for c in spec.cells())
    try:
        wait_for(lambda: (second / "checkpoints" / "last.pt").exists(), 60, proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert (first / "summary.json").exists() and not (second / "summary.json").exists()
    assert not third.exists()
    stamp = (first / "summary.json").stat().st_mtime_ns
    trained_before = epochs_trained(second)
    assert 1 <= len(trained_before) < 4

    outcomes = SweepRunner(spec, launcher=fake_train).run()
    assert [(o.status, o.resumed) for o in outcomes] == [
        ("skipped", False),
        ("finished", True),
        ("finished", False),
    ]
    assert (first / "summary.json").stat().st_mtime_ns == stamp
    assert epochs_trained(first) == [0, 1, 2, 3]
    assert epochs_trained(second) == [0, 1, 2, 3]  # nothing trained twice: resumed after the checkpoint
    assert epochs_trained(third) == [0, 1, 2, 3]


@pytest.mark.parametrize(("gpus", "jobs"), [("0,1", None), ("2,3", 4)])
def test_each_running_cell_gets_its_own_gpu(
    tmp_path: Path, fake_train: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, gpus: str, jobs: int | None
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # the sweep's own devices do not leak into cells
    names = "uniform,dus,remix"
    spec = build_spec({}, None, names, None, "0,1", tmp_path / "sw", jobs, ["--sleep", "0.3"], gpus)
    assert spec.gpus == gpus.split(",") and spec.jobs == (jobs or 2)
    outcomes = SweepRunner(spec, launcher=fake_train).run()
    assert [o.status for o in outcomes] == ["finished"] * 6
    runs = [json.loads((tmp_path / "sw" / c.name / "device.json").read_text()) for c in spec.cells()]
    assert {r["gpu"] for r in runs} == set(spec.gpus)
    for gpu in spec.gpus:  # never more cells on one GPU at once than its share of the jobs
        share = spec.jobs // len(spec.gpus)
        spans = [(r["start"], r["end"]) for r in runs if r["gpu"] == gpu]
        most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
        assert most <= share
    log = (tmp_path / "sw" / spec.cells()[0].name / LOG_NAME).read_text()
    assert "CUDA_VISIBLE_DEVICES=" in log.splitlines()[0]
    with pytest.raises(SweepError, match="device ids are whole numbers"):
        build_spec({}, None, "uniform", None, None, tmp_path / "sw", None, [], "0,cuda:1")


def test_without_gpus_cells_keep_the_environment(tmp_path: Path, fake_train: tuple[str, ...],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    spec = build_spec({"gpus": None}, None, "uniform", None, None, tmp_path / "sw", None, [])
    assert spec.jobs == 1 and spec.gpus == []
    SweepRunner(spec, launcher=fake_train).run()
    assert json.loads((tmp_path / "sw" / "uniform-joint-s0" / "device.json").read_text())["gpu"] == "5"
    grid = {"samplers": "uniform", "gpus": "0,1,2"}  # a grid file's gpus: one cell per GPU by default
    assert build_spec(grid, None, None, None, None, tmp_path / "sw", None, []).jobs == 3


def test_cluster_sweep_through_the_local_executor(tmp_path: Path, fake_train: tuple[str, ...]) -> None:
    from mmrebal.cluster import ClusterSweep

    # "broken" (a name the fake trainer fails on) is no registered sampler, so the spec is built directly
    cells = ["uniform", "broken", "dus"]
    spec = SweepSpec(cells, ["joint"], [0], tmp_path / "sw", train_args=["--epochs", "2"])
    resumable = tmp_path / "sw" / "dus-joint-s0" / "checkpoints" / "last.pt"
    resumable.parent.mkdir(parents=True)
    resumable.write_text(json.dumps({"epoch": 0}))  # an interrupted cell: only epoch 1 is left
    sweep = ClusterSweep(spec, "local", {"timeout_min": 5}, launcher=fake_train, poll_s=0.2)
    outcomes = sweep.run()
    assert [(o.cell.sampler, o.status, o.resumed) for o in outcomes] == [
        ("uniform", "finished", False), ("broken", "failed", False), ("dus", "finished", True)]  # fmt: skip
    assert epochs_trained(tmp_path / "sw" / "dus-joint-s0") == [1]
    device = json.loads((tmp_path / "sw" / "uniform-joint-s0" / "device.json").read_text())
    assert device["gpu"] == "0"  # the executor's one GPU per job (gpus_per_node: 1)
    assert "boom" in (tmp_path / "sw" / "broken-joint-s0" / LOG_NAME).read_text()
    assert (tmp_path / "sw" / ".submitit").is_dir()
    again = ClusterSweep(spec, "local", {"timeout_min": 5}, launcher=fake_train, poll_s=0.2).run()
    assert [o.status for o in again] == ["skipped", "failed", "skipped"]
    with pytest.raises(ValueError, match="--cluster 'pbs'"):
        ClusterSweep(spec, "pbs")


def test_cli_refuses_a_grid_without_samplers() -> None:
    result = CliRunner().invoke(app, ["sweep", "--seeds", "0"])
    assert result.exit_code == 2
    assert "no samplers" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "pbs"], "choose one of slurm, local"),
        (["--cluster", "local", "--gpus", "0,1"], "--gpus is for local sweeps"),
        (["--cluster", "local", "--cluster-opt", "timeout_min"], "expected KEY=VALUE"),
        (["--gpus", "a"], "device ids are whole numbers"),
    ],
)
def test_cli_refuses_bad_cluster_and_gpu_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["sweep", "--samplers", "uniform", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in strip_style(result.output), result.output


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmrebal", *args], capture_output=True, text=True, env=env, timeout=480
    )


@pytest.mark.slow
def test_real_sweep_interrupt_resume_and_report(tmp_path: Path) -> None:
    """2 samplers x 1 method x 2 seeds on a tiny cache with the real trainer, interrupted once."""
    from _tiny_cache import build_tiny_cache

    cache = build_tiny_cache(tmp_path / "tiny.h5")
    out = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = ["sweep", "--cache", str(cache), "--samplers", "uniform,dus", "--methods", "joint",
            "--seeds", "0,1", "--out", str(out), "--", "--preset", "cpu", "--epochs", "3",
            "--batch-size", "16"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrebal", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    first, second = out / "uniform-joint-s0", out / "uniform-joint-s1"
    try:  # stop the sweep once the second cell has checkpointed an epoch
        wait_for(lambda: (second / "checkpoints" / "last.pt").exists(), 300, proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    stamp = (first / "summary.json").stat().st_mtime_ns
    second_was_cut = not (second / "summary.json").exists()

    done = run_cli(args, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (first / "summary.json").stat().st_mtime_ns == stamp
    assert (first / LOG_NAME).read_text().count("mmrebal sweep start") == 1  # never retrained
    if second_was_cut:  # almost always: it had epochs left when stopped
        assert "mmrebal sweep resume" in (second / LOG_NAME).read_text()
        epochs = pl.read_parquet(second / "metrics.parquet").filter(pl.col("split") == "val")["epoch"]
        assert (
            sorted(epochs.unique().to_list()) == [0, 1, 2] and epochs.len() == 3 * 3
        )  # 3 scopes, no repeats
    for name in ("uniform-joint-s1", "dus-joint-s0", "dus-joint-s1"):
        assert (out / name / "summary.json").exists()

    report = run_cli(["report", str(out), "--out", str(tmp_path / "report.md"), "--metric", "acc,map"], env)
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report.md").read_text()
    for label, sampler in (("Uniform/Joint", "uniform"), ("DUS/Joint", "dus")):
        row = table_row(text, label)
        assert row[1] == "2"
        assert strip_style(row[2]) == expected(out, sampler, "joint", "fused", "acc")
        assert strip_style(row[3]) == expected(out, sampler, "joint", "fused", "map")
    for name in ("batch-size", "discrepancy"):
        assert_png_not_blank(tmp_path / f"report-{name}.png")
        assert f"](report-{name}.png)" in text


def test_cell_progress_reads_the_last_epoch_line_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / LOG_NAME
    assert cell_progress(log) == "starting"  # no log yet
    log.write_text("# start\nepoch 1/6  train loss 1.2\nepoch 2/6  train loss 0.9\n# resume\n")
    assert cell_progress(log) == "epoch 2/6 done"
    with open(log, "a") as f:
        f.write("x" * 70_000 + "\nepoch 3/6  train loss 0.7  val acc fused 0.9\n")  # beyond the tail read
    assert cell_progress(log) == "epoch 3/6 done"


def test_the_sweep_follows_its_running_cells_epochs(tmp_path: Path, fake_train: tuple[str, ...]) -> None:
    import threading

    args = ["--epochs", "3", "--sleep", "0.8"]  # each epoch line stays the latest for 0.8 s
    spec = SweepSpec(["a", "b"], ["joint"], [0], tmp_path / "sweep", train_args=args)
    runner = SweepRunner(spec, launcher=fake_train)
    seen: set[str] = set()
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        seen.add(running_line(spec, runner.running()))
        time.sleep(0.05)
    thread.join(timeout=30)
    assert "running: a-joint-s0 epoch 1/3 done" in seen and "running: b-joint-s0 epoch 2/3 done" in seen
    assert runner.running() == [] and running_line(spec, []) == "running: none"
