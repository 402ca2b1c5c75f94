"""The training engine: metrics, config resolution, atomic checkpoints, the loop, resume and the NaN guard."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from _tiny_cache import build_tiny_cache
from typer.testing import CliRunner

from mmrebal.cli import app
from mmrebal.engine import checkpoint as ckpt_mod
from mmrebal.engine.config import ConfigError, TrainConfig, parse_options, resolve_config
from mmrebal.engine.trainer import CheckpointHook, train
from mmrebal.evaluation.metrics import classification_metrics

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cache(tmp_path_factory.mktemp("cache") / "tiny.h5", n=60, num_classes=3, seed=1)


def tiny_config(cache: Path, out: Path, **overrides) -> TrainConfig:
    options = {"cache": str(cache), "out": str(out), "epochs": 2, "batch_size": 12, "feature_dim": 16,
               "device": "cpu", "lr": 3e-3, "seed": 7}  # fmt: skip
    return resolve_config({**options, **overrides})


# --- metrics -------------------------------------------------------------------------------------
def test_metrics_by_hand() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.4, 0.6, 0.0], [0.3, 0.7, 0.0], [0.8, 0.2, 0.0]])
    m = classification_metrics(labels, probs)
    assert m["acc"] == pytest.approx(0.5)
    # class 0 ranking 0.9(+) 0.8(-) 0.4(+) 0.3(-): AP = (1/1 + 2/3) / 2; class 1 ranking 0.7(+) 0.6(-) 0.2(+)
    # 0.1(-): AP = (1 + 2/3) / 2; class 2 has no positive and is left out of the mean.
    assert m["map"] == pytest.approx((1 + 2 / 3) / 2)
    # predictions 0 1 1 0: F1 of each class = 0.5
    assert m["macro_f1"] == pytest.approx(0.5)
    assert math.isnan(classification_metrics(np.zeros(0, int), np.zeros((0, 3)))["acc"])


# --- config --------------------------------------------------------------------------------------
def test_config_layers_and_yaml(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("preset: ogm\nlr: 1e-2\nbatch_size: 8\nsampler_options: {alpha: 1}\n")
    c = resolve_config({"batch_size": 4, "sampler_options": {"beta": 2}}, yaml_file)
    assert (c.optimizer, c.momentum, c.weight_decay, c.step_size, c.encoders) == (
        "sgd",
        0.9,
        1e-4,
        70,
        "resnet18",
    )
    assert c.lr == 1e-2  # YAML over preset ("1e-2" is a string to YAML 1.1; still a float here)
    assert c.batch_size == 4  # CLI over YAML
    assert c.sampler_options == {"alpha": 1, "beta": 2}
    assert resolve_config({"preset": "remix"}).lr == 5e-5
    assert resolve_config({"preset": "bss"}).batch_size == 32
    assert parse_options(["a=3", "b=0.5", "c=true", "d=x", "e=1e-3"], "--x") == {
        "a": 3, "b": 0.5, "c": True, "d": "x", "e": 1e-3}  # fmt: skip
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_options(["nokey"], "--sampler-opt")
    (tmp_path / "bad.yaml").write_text("learning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown option 'learning_rate'"):
        resolve_config({}, tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="optimizer='rmsprop'"):
        resolve_config({"optimizer": "rmsprop"})
    assert TrainConfig(encoders="audio=cnn,visual=resnet18").encoder_map(["audio", "visual"]) == {
        "audio": "cnn", "visual": "resnet18"}  # fmt: skip


# --- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_is_atomic_and_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    state = {"w": torch.arange(3.0), "sampler": {"rng": np.random.default_rng(0).bit_generator.state,
             "scores": np.arange(4.0)}, "rng": ckpt_mod.rng_state()}  # fmt: skip
    ckpt_mod.save_checkpoint(path, state)
    before = path.read_bytes()

    def torn_save(obj, fh) -> None:
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt_mod.save_checkpoint(path, {"w": torch.zeros(3)})
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    loaded = ckpt_mod.load_checkpoint(path)
    assert torch.equal(loaded["w"], state["w"])
    np.testing.assert_array_equal(loaded["sampler"]["scores"], np.arange(4.0))
    rng = np.random.default_rng()
    rng.bit_generator.state = loaded["sampler"]["rng"]
    assert rng.random() == np.random.default_rng(0).random()


# --- the loop ------------------------------------------------------------------------------------
def test_train_writes_the_run_directory(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(tiny_config(cache, out, test_each_epoch=True))
    assert summary["status"] == "complete"
    for name in ("config.yaml", "steps.parquet", "metrics.parquet", "summary.json", "checkpoints/last.pt",
                 "checkpoints/best.pt"):  # fmt: skip
        assert (out / name).exists(), name
    assert json.loads((out / "summary.json").read_text())["test"] == summary["test"]
    for scope in ("fused", "audio", "visual"):  # 3 classes: chance is 1/3
        assert summary["val"][scope]["acc"] > 0.6 and summary["test"][scope]["acc"] > 0.6

    steps = pl.read_parquet(out / "steps.parquet")
    assert {"epoch", "step", "modality", "batch_size", "confidence", "discrepancy", "cum_discrepancy", "loss",
            "lr"} <= set(steps.columns)  # fmt: skip
    assert (
        steps.filter(pl.col("modality") == "audio")["batch_size"].sum() == 2 * 36
    )  # 36 train rows x 2 epochs
    for m in ("audio", "visual"):  # Eq. 3 of DUS over the run
        rows = steps.filter(pl.col("modality") == m).sort("step")
        s, expected = rows["discrepancy"].to_list(), []
        for t, value in enumerate(s, start=1):
            expected.append(value if t == 1 else (t - 1) / t * expected[-1] + value / t)
        np.testing.assert_allclose(rows["cum_discrepancy"].to_numpy(), expected, rtol=1e-12)
        np.testing.assert_allclose(rows["confidence"] * rows["batch_size"], rows["discrepancy"], rtol=1e-12)

    metrics = pl.read_parquet(out / "metrics.parquet")
    per_epoch_test = metrics.filter((pl.col("split") == "test") & ~pl.col("selected"))
    assert sorted(per_epoch_test["epoch"].unique().to_list()) == [0, 1]  # asked for; never used to select
    assert metrics.filter(pl.col("split") == "train")["scope"].sort().to_list() == [
        "audio",
        "audio",
        "total",
        "total",
        "visual",
        "visual",
    ]
    selected = metrics.filter(pl.col("selected"))
    assert sorted(selected["split"].unique().to_list()) == ["test", "val"]
    assert selected["epoch"].unique().to_list() == [summary["best_epoch"]]
    best_val = metrics.filter((pl.col("split") == "val") & (pl.col("scope") == "fused"))
    assert (
        selected.filter((pl.col("split") == "val") & (pl.col("scope") == "fused"))["acc"][0]
        == best_val["acc"].max()
    )
    config_text = (out / "config.yaml").read_text()
    assert "dataset: tiny" in config_text and "torch:" in config_text
    assert resolve_config({}, out / "config.yaml").cache == str(cache)  # the saved config is a valid --config


def _last_params(run: Path) -> dict[str, torch.Tensor]:
    return ckpt_mod.load_checkpoint(run / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("augment", [False, True])
def test_resume_equals_uninterrupted(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, augment: bool
) -> None:
    straight = train(tiny_config(cache, tmp_path / "a", augment=augment))

    original = CheckpointHook.after_epoch

    def killed_after_first_epoch(self, trainer, epoch) -> None:
        original(self, trainer, epoch)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointHook, "after_epoch", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(cache, tmp_path / "b", augment=augment))
    monkeypatch.setattr(CheckpointHook, "after_epoch", original)
    assert not (tmp_path / "b" / "summary.json").exists()
    resumed = train(tiny_config(cache, tmp_path / "b", resume=True, augment=augment))

    assert resumed["val"] == straight["val"] and resumed["test"] == straight["test"]
    a, b = _last_params(tmp_path / "a"), _last_params(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("metrics.parquet", "steps.parquet"):
        a_rows, b_rows = (pl.read_parquet(tmp_path / d / name).drop("run_id") for d in "ab")  # dir names
        assert a_rows.equals(b_rows), name


def test_nan_loss_stops_with_one_line_and_keeps_the_checkpoint(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmrebal.methods as methods

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.pt"
    seen: dict[str, str] = {}
    create = methods.create_method

    def poisoned(name, modalities, **options):
        method = create(name, modalities, **options)
        step = method.train_step

        def train_step(model, batch, active, fused, optimizer, ctx):
            if ctx.epoch == 1 and ctx.step == 4:  # epoch 1 starts at global step 3 (36 rows / 12)
                seen["digest"] = hashlib.sha256(last.read_bytes()).hexdigest()
                batch = {**batch, "audio": torch.full_like(batch["audio"], float("nan"))}
            return step(model, batch, active, fused, optimizer, ctx)

        method.train_step = train_step
        return method

    monkeypatch.setattr(methods, "create_method", poisoned)
    args = ["train", "--cache", str(cache), "--out", str(out), "--epochs", "3", "--batch-size", "12",
            "--feature-dim", "16", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert error[0].startswith("error: epoch 1 step 4: loss is nan")
    assert f"last good checkpoint {last} is intact" in error[0] and "lower --lr" in error[0]
    assert hashlib.sha256(last.read_bytes()).hexdigest() == seen["digest"]
    assert not (out / "summary.json").exists()
    steps = pl.read_parquet(out / "steps.parquet")
    assert math.isnan(steps.filter(pl.col("step") == 4)["total_loss"][0])  # the bad step is in the trace


# --- traces --------------------------------------------------------------------------------------
def test_traces_merge_sampler_columns_and_resume(tmp_path: Path) -> None:
    from mmrebal.engine.traces import TraceWriter, merge_step_rows

    rows = [{"epoch": 0, "step": 0, "modality": m, "loss": 1.0} for m in ("audio", "visual")]
    merged = merge_step_rows(
        rows,
        [
            {"step": 0, "modality": "audio", "policy_prob": 0.25},
            {"step": 0, "reward": 2.0},  # no modality: every modality row of the step
            {"step": 0, "modality": "text", "policy_prob": 0.5},  # no trainer row: a row of its own
        ],
        epoch=0,
    )
    assert [(r["modality"], r.get("policy_prob"), r.get("reward")) for r in merged] == [
        ("audio", 0.25, 2.0), ("visual", None, 2.0), ("text", 0.5, None)]  # fmt: skip

    traces = TraceWriter(tmp_path)
    traces.add("steps", merged)
    traces.add("steps", [{"epoch": 1, "step": 1, "modality": "audio", "loss": 0.5, "extra": 3}])
    traces.add("metrics", [{"epoch": e, "split": "val", "scope": "fused", "acc": 0.5, "map": 0.5,
                            "macro_f1": 0.5, "loss": 1.0, "selected": False} for e in (0, 1)])  # fmt: skip
    traces.select(1, [{"epoch": 1, "split": "test", "scope": "fused", "acc": 0.4, "map": 0.4,
                       "macro_f1": 0.4, "loss": 1.0, "selected": True}])  # fmt: skip
    traces.flush()
    steps = pl.read_parquet(tmp_path / "steps.parquet")
    assert steps.height == 4 and steps["extra"].to_list() == [None, None, None, 3]
    metrics = pl.read_parquet(tmp_path / "metrics.parquet")
    assert metrics["selected"].to_list() == [False, True, True]

    resumed = TraceWriter(tmp_path)
    resumed.resume(last_epoch=0)  # a run killed after epoch 0's checkpoint
    assert resumed.table("steps")["epoch"].to_pylist() == [0, 0, 0]
    assert resumed.table("metrics").to_pylist()[0]["selected"] is False
    assert resumed.table("metrics").num_rows == 1


def test_cli_yaml_config_then_resume_with_only_out(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        f"cache: {cache}\nepochs: 1\nbatch_size: 12\nfeature_dim: 16\ndevice: cpu\nlr: 3e-3\n"
    )
    runner = CliRunner()
    first = runner.invoke(
        app, ["train", "--config", str(yaml_file), "--out", str(out), "--method-opt", "fused_weight=2"]
    )
    assert first.exit_code == 0, first.output
    saved = (out / "config.yaml").read_text()
    assert "feature_dim: 16" in saved and "fused_weight: 2" in saved and "lr: 0.003" in saved
    again = runner.invoke(app, ["train", "--out", str(out), "--resume", "--epochs", "2"])
    assert again.exit_code == 0, again.output
    assert "resuming from" in again.output and "after epoch 1" in again.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2
    assert pl.read_parquet(out / "steps.parquet")["epoch"].unique().sort().to_list() == [0, 1]


def test_bf16_autocast_trains_on_cpu(cache: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(cache, tmp_path / "run", bf16=True, epochs=1))
    assert summary["status"] == "complete" and summary["val"]["fused"]["acc"] > 0.5
    assert pl.read_parquet(tmp_path / "run" / "steps.parquet")["loss"].is_finite().all()


@pytest.mark.parametrize("name", ["ogm", "mla", "dus", "remix", "bss", "bss-ks"])
def test_cpu_twins_keep_the_reference_set_up_with_small_encoders(name: str) -> None:
    reference, twin = resolve_config({"preset": name}), resolve_config({"preset": f"{name}-cpu"})
    assert (twin.encoders, twin.feature_dim, twin.augment) == ("cnn-small", 128, False)
    for key in ("optimizer", "lr", "momentum", "weight_decay", "scheduler", "step_size", "gamma", "epochs",
                "batch_size", "method", "fusion", "model_options", "method_options"):  # fmt: skip
        assert getattr(twin, key) == getattr(reference, key), key


def test_presets_carry_the_reference_set_ups() -> None:
    ogm = resolve_config({"preset": "ogm"})
    assert (ogm.optimizer, ogm.lr, ogm.momentum, ogm.weight_decay, ogm.step_size, ogm.augment) == (
        "sgd", 1e-3, 0.9, 1e-4, 70, True
    )
    remix = resolve_config({"preset": "remix"})
    assert (remix.optimizer, remix.lr, remix.weight_decay, remix.epochs, remix.step_size) == (
        "adam", 5e-5, 1e-4, 60, 30
    )
    assert remix.model_options == {"unimodal_logits": "heads"}  # separate unimodal heads
    # BSS on CREMA-D trains 0.1 CE_fused + 0.9 (CE_a + CE_v) with the joint loss; given options win
    assert resolve_config({"preset": "bss"}).method_options == {"fused_weight": 0.1, "unimodal_weight": 0.9}
    given = resolve_config({"preset": "bss", "method_options": {"fused_weight": 1.0}})
    assert given.method_options == {"fused_weight": 1.0, "unimodal_weight": 0.9}
    assert resolve_config({"preset": "bss", "method": "mla"}).method_options == {}  # not MLA's options
    ks = resolve_config({"preset": "bss-ks"})
    assert (ks.lr, ks.batch_size, ks.method_options) == (1e-1, 32, {})
    mla = resolve_config({"preset": "mla"})
    assert (mla.method, mla.fusion, mla.optimizer) == ("mla", "shared", "sgd")
    assert resolve_config({"preset": "dus"}).lr == 1e-2
    cpu = resolve_config({})
    assert (cpu.augment, cpu.optimizer) == (False, "adam")
    assert resolve_config({"preset": "ogm", "augment": False}).augment is False
