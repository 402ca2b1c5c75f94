"""Degenerate configurations (a schedule the run never reaches, OGM-GE under Adam) warn at start,
land in summary.json, and are shown by the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _tiny_cache import build_tiny_cache
from rich.console import Console
from sampler_helpers import make

from mmrebal.engine.config import resolve_config
from mmrebal.engine.trainer import train
from mmrebal.methods import create_method

torch.set_num_threads(1)


def test_sampler_schedules_the_run_cannot_reach() -> None:
    assert "never remixes" in make("remix", epochs=10).config_warnings()[0]  # warm-up 10 of 10
    assert make("remix", epochs=11).config_warnings() == []
    bss = make("bss", epochs=6).config_warnings()[0]  # T_grow 40 of 6 epochs
    assert "T_grow 40 > epochs 6" in bss and "40%" in bss  # lambda_5 = sqrt(0.99 / 40 * 6 + 0.01) = 0.398
    assert make("bss", epochs=6, t_grow=6).config_warnings() == []
    assert "scored once" in make("bss-l", epochs=3, period=3).config_warnings()[0]
    assert make("bss-l", epochs=3).config_warnings() == []
    assert "never leave" in make("dus", epochs=1).config_warnings()[0]
    assert make("dus-ds", epochs=1, update="step").config_warnings() == []
    assert make("uniform", epochs=1).config_warnings() == []


def test_a_sampler_of_unpaired_rows_warns_under_a_method_that_discards_them() -> None:
    """DUS's rows beyond the paired ones feed only unimodal losses: fused, ogm-ge, pmr, agm weigh them 0."""
    from mmrebal.engine.build import run_warnings

    config = resolve_config({"epochs": 10, "optimizer": "sgd"})

    def pairing(sampler: str, method: str, **options: float) -> list[str]:
        method_ = create_method(method, ["audio", "visual"], **options)
        return [line for line in run_warnings(make(sampler, epochs=10), method_, config) if " under " in line]

    for sampler in ("dus", "dus-h", "dus-ds"):
        for method in ("fused", "ogm-ge", "pmr", "agm"):
            (line,) = pairing(sampler, method)
            assert line.startswith(f"{sampler} under {method}: ") and "--method joint" in line
        assert pairing(sampler, "joint") == pairing(sampler, "mla") == []
        assert pairing(sampler, "ogm-ge", unimodal_weight=1.0) == []
    for sampler in ("uniform", "bss", "smv"):
        assert pairing(sampler, "fused") == []


def test_a_sampler_that_sets_every_loss_weight_warns_where_it_overrules_the_methods_unimodal_losses() -> None:
    """Remix's plans weigh every term of each step, so fused, ogm-ge, pmr and agm still train its unimodal
    terms (Remix/Fused is Remix/Joint), and Remix's data alone under joint trains the fused loss only."""
    from mmrebal.engine.build import run_warnings

    config = resolve_config({"epochs": 20, "optimizer": "sgd"})

    def lines(method: str, **options: float) -> list[str]:
        sampler = make("remix", epochs=20, **options)
        method_ = create_method(method, ["audio", "visual"])
        return [line for line in run_warnings(sampler, method_, config) if " under " in line]

    for method in ("fused", "ogm-ge", "pmr", "agm"):
        (line,) = lines(method)
        assert line.startswith(f"remix under {method}: ") and "the run is not fused-only" in line
    assert lines("joint") == lines("mla") == []
    data_alone = {"gamma": 0.0, "warmup_weight": 0.0}
    (line,) = lines("joint", **data_alone)
    assert line.startswith("remix under joint: ") and "the run is fused-only" in line
    assert lines("fused", **data_alone) == lines("mla", **data_alone) == []
    assert lines("fused", gamma=0.0) != []  # the warm-up's 0.5 weights still train the unimodal losses


def test_ogm_ge_warns_under_adam_and_outside_its_window() -> None:
    ogm = create_method("ogm-ge", ["audio", "visual"], modulation_starts=5)
    lines = ogm.config_warnings(epochs=5, optimizer="adam")
    assert len(lines) == 2 and "no step is modulated" in lines[0] and "cancels" in lines[1]
    assert create_method("ogm-ge", ["audio", "visual"]).config_warnings(100, "sgd") == []
    assert create_method("joint", ["audio", "visual"]).config_warnings(1, "adam") == []


@pytest.mark.slow
def test_trainer_prints_and_records_the_warnings(tmp_path: Path) -> None:
    cache = build_tiny_cache(tmp_path / "tiny.h5", n=60, num_classes=3, seed=1)
    console = Console(record=True, width=200)
    config = resolve_config(
        {"cache": str(cache), "out": str(tmp_path / "run"), "epochs": 2, "batch_size": 12,
         "feature_dim": 16, "device": "cpu", "sampler": "remix", "method": "ogm-ge"}  # fmt: skip
    )
    summary = train(config, console)
    printed = console.export_text()
    assert "warning: remix: warm-up 10 >= epochs 2" in printed and "warning: ogm-ge under adam" in printed
    assert "warning: remix under ogm-ge: remix sets every loss weight" in printed
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["warnings"] == summary["warnings"] and len(saved["warnings"]) == 3
    # the options the run really ran with, defaults filled in
    assert saved["options"]["sampler"]["warmup"] == 10 and saved["options"]["sampler"]["tie"] == "last"
    assert saved["options"]["method"]["rho_rows"] == "paired"


@pytest.mark.parametrize(
    ("method", "options", "weights"),
    [("fused", {}, (1.0, 0.0)), ("pmr", {}, (1.0, 0.0)), ("joint", {}, (1.0, 1.0)),
     ("joint", {"unimodal_weight": {"audio": 0.5, "visual": 1.0}}, (1.0, {"audio": 0.5, "visual": 1.0}))],
)  # fmt: skip
def test_recorded_method_options_are_the_loss_weights_trained_with(method, options, weights) -> None:
    """``fused``/``pmr``/``agm`` fix the inherited weights; the record says what they train with."""
    from mmrebal.methods import METHODS
    from mmrebal.registry import keyword_defaults

    built = create_method(method, ["audio", "visual"], **options)
    recorded = built.ran_with(keyword_defaults(type(built), METHODS.reserved))
    assert (recorded["fused_weight"], recorded["unimodal_weight"]) == weights
