"""The run directory's rules: one process at a time, nothing finished replaced unasked, options checked
before anything is touched, resume that applies and records what changed, best/last always consistent."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from _lock_holder import lock_held_elsewhere
from _tiny_cache import build_tiny_cache
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.engine import checkpoint as ckpt_mod
from mmrebal.engine import hooks as hooks_mod
from mmrebal.engine.config import config_yaml, resolve_config
from mmrebal.engine.trainer import train
from mmrebal.storage import StorageError

torch.set_num_threads(1)
BASE = ["--epochs", "2", "--batch-size", "12", "--feature-dim", "16", "--device", "cpu", "--seed", "7"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cache(tmp_path_factory.mktemp("cache") / "tiny.h5", n=60, num_classes=3, seed=1)


def cli(cache: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["train", "--cache", str(cache), "--out", str(out), *BASE, *extra])


def tiny_config(cache: Path, out: Path, **overrides):
    options = {"cache": str(cache), "out": str(out), "epochs": 2, "batch_size": 12, "feature_dim": 16,
               "device": "cpu", "seed": 7}  # fmt: skip
    return resolve_config({**options, **overrides})


def errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def digests(run: Path) -> dict[str, str]:
    """Every file of a run dir (the lock aside) -> sha256: 'nothing was touched' made checkable."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_config_records_the_thread_count_that_shaped_the_numbers(cache: Path, tmp_path: Path) -> None:
    """torch's intra-op thread count orders float reductions, so two runs of one config can differ
    by it alone: the run dir says which it was."""
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            recorded = yaml.safe_load(config_yaml(tiny_config(cache, tmp_path / "run"), {}))["versions"]
            assert recorded["torch_threads"] == str(threads)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def finished(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    result = cli(cache, out)
    assert result.exit_code == 0, result.output
    return out


def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holder_frees_the_dir(
    cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "S"
    with lock_held_elsewhere("from mmrebal.engine import rundir; rundir.lock(sys.argv[1])", out) as pid:
        result = cli(cache, out)
        assert result.exit_code == 1
        assert errors(result) == [
            f"error: {out} is in use by pid {pid} (mmrebal train); wait for it to finish or "
            "choose another --out"
        ]
        assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()
    again = cli(cache, out, "--epochs", "1")
    assert again.exit_code == 0, again.output


def test_a_finished_run_is_not_replaced_without_overwrite(
    cache: Path, finished: Path, tmp_path: Path
) -> None:
    before = digests(finished)
    result = cli(cache, finished, "--sampler", "remix", "--epochs", "1")
    assert result.exit_code == 1
    assert errors(result) == [
        f"error: {finished} holds a finished run; pass --resume to continue it or --overwrite to replace "
        "it, or choose another --out"
    ]
    assert digests(finished) == before
    both = cli(cache, finished, "--resume", "--overwrite")
    assert errors(both) == ["error: --resume continues a run and --overwrite replaces it; choose one"]

    copy = tmp_path / "copy"
    result = cli(cache, copy, "--epochs", "1")
    assert result.exit_code == 0
    replaced = cli(cache, copy, "--epochs", "1", "--seed", "3", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "replacing the earlier run" in replaced.output
    assert yaml.safe_load((copy / "config.yaml").read_text())["seed"] == 3


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--sampler", "bss", "--sampler-opt", "loss=foo"], "sampler option loss='foo' is not fused"),
        (
            ["--sampler", "remix", "--sampler-opt", "warmpu=1"],
            "has no option 'warmpu' (did you mean 'warmup'?)",
        ),
        (["--sampler", "remix", "--sampler-opt", "warmup=2.7"], "option warmup=2.7 is not a whole number"),
        (
            ["--sampler", "dus", "--sampler-opt", "cumulative=maybe"],
            "cumulative='maybe' is not true or false",
        ),
        (["--sampler", "remix", "--sampler-opt", "warmup=abc"], "option warmup='abc' is not a whole number"),
        (["--sampler", "dus-h", "--sampler-opt", "beta=abc"], "'dus-h': option beta='abc' is not a number"),
        (["--method", "joint", "--method-opt", "fused_weight=abc"], "fused_weight='abc' is not a number"),
        (["--model-opt", "fusion_options={gate: audio}", "--fusion", "film"], "has no option 'gate'"),
    ],
)
def test_bad_options_fail_before_the_run_dir_is_touched(
    cache: Path, finished: Path, flags: list[str], message: str
) -> None:
    before = digests(finished)
    result = cli(cache, finished, "--overwrite", *flags)
    assert result.exit_code == 1
    (line,) = errors(result)
    assert message in line, line
    assert digests(finished) == before


def test_resume_applies_and_records_lr_and_epochs_and_refuses_the_rest(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert cli(cache, out).exit_code == 0
    before = digests(out)
    refused = cli(cache, out, "--resume", "--seed", "8", "--batch-size", "6")
    assert refused.exit_code == 1
    (line,) = errors(refused)
    assert "seed 7 -> 8" in line and "batch_size 12 -> 6" in line and "cannot change mid-run" in line
    fewer = cli(cache, out, "--resume", "--epochs", "1")
    assert "the run already completed 2 epochs" in errors(fewer)[0]
    assert digests(out) == before

    resumed = CliRunner().invoke(
        app, ["train", "--out", str(out), "--resume", "--epochs", "3", "--lr", "1e-4"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert "from epoch 2: epochs 2 -> 3, lr 0.001 -> 0.0001" in resumed.output
    steps = pl.read_parquet(out / "steps.parquet")
    lrs = steps.group_by("epoch").agg(pl.col("lr").unique()).sort("epoch")["lr"].to_list()
    assert lrs == [[0.001], [0.001], [0.0001]]  # the new lr is what epoch 2 really trained with
    last = ckpt_mod.load_checkpoint(out / "checkpoints" / "last.pt")
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == [1e-4]
    records = [{"epoch": 2, "option": "epochs", "from": 2, "to": 3},
               {"epoch": 2, "option": "lr", "from": 0.001, "to": 0.0001}]  # fmt: skip
    assert last["changes"] == records
    assert yaml.safe_load((out / "config.yaml").read_text())["changes"] == records
    summary = json.loads((out / "summary.json").read_text())
    assert summary["changes"] == records and summary["epochs"] == 3
    assert resolve_config({}, out / "config.yaml").lr == 1e-4  # config.yaml is still a valid --config


def test_resume_restarts_a_step_schedule_from_the_new_lr(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert (
        cli(cache, out, "--scheduler", "step", "--step-size", "1", "--gamma", "0.5", "--lr", "0.01").exit_code
        == 0
    )
    result = cli(cache, out, "--resume", "--epochs", "4", "--scheduler", "step", "--step-size", "1",
                 "--gamma", "0.1", "--lr", "0.001")  # fmt: skip
    assert result.exit_code == 0, result.output
    steps = pl.read_parquet(out / "steps.parquet")
    lrs = [v[0] for v in steps.group_by("epoch").agg(pl.col("lr").unique()).sort("epoch")["lr"].to_list()]
    assert lrs == pytest.approx([0.01, 0.005, 0.001, 0.0001])


def _crash_when_writing(monkeypatch: pytest.MonkeyPatch, name: str, epoch: int) -> None:
    """Make the save of ``name`` after ``epoch`` fail as a full disk does."""
    save = ckpt_mod.save_checkpoint

    def failing(path: Path, state: dict) -> None:
        if Path(path).name == name and state["run"]["epoch"] == epoch:
            raise StorageError(f"cannot write {path}: No space left on device (0.0 MiB free there)")
        save(path, state)

    monkeypatch.setattr(hooks_mod, "save_checkpoint", failing)


def test_a_crash_between_best_and_last_is_finishable_and_equals_an_uninterrupted_run(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = train(tiny_config(cache, tmp_path / "a", epochs=3))
    _crash_when_writing(monkeypatch, "last.pt", epoch=1)
    with pytest.raises(StorageError):
        train(tiny_config(cache, tmp_path / "b", epochs=3))
    monkeypatch.undo()
    resumed = train(tiny_config(cache, tmp_path / "b", epochs=3, resume=True))
    assert resumed["val"] == straight["val"] and resumed["test"] == straight["test"]
    assert resumed["best_epoch"] == straight["best_epoch"]


def test_a_missing_best_pt_is_restored_from_last_when_last_is_the_best(cache: Path, tmp_path: Path) -> None:
    """The state the old write order (last, then best) left after a full disk: every --resume failed."""
    out = tmp_path / "run"
    assert cli(cache, out, "--epochs", "1").exit_code == 0
    (out / "checkpoints" / "best.pt").unlink()
    (out / "summary.json").unlink()
    result = cli(cache, out, "--epochs", "1", "--resume")
    assert result.exit_code == 0, result.output
    assert "best.pt was missing or stale; it is now" in result.output
    assert json.loads((out / "summary.json").read_text())["best_epoch"] == 0
