"""`mmrebal train`: options -> :class:`TrainConfig` (preset <- YAML <- flags) -> the trainer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

SAMPLER_OPT_HELP = "Sampler option KEY=VALUE (repeatable; VALUE parsed as a YAML scalar)."


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn the errors a user can fix (bad option, file, cache, NaN loss) into one line and exit 1."""
    from mmrebal.cache.format import CacheError
    from mmrebal.engine.checkpoint import CheckpointError
    from mmrebal.engine.config import ConfigError
    from mmrebal.engine.trainer import NonFiniteLoss

    try:
        yield
    except (
        ConfigError,
        CacheError,
        CheckpointError,
        NonFiniteLoss,
        KeyError,
        ValueError,
        FileNotFoundError,
    ) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


def train_command(
    cache: Path | None = typer.Option(
        None, "--cache", help="HDF5 cache (default: the embedded avmnist cache)."
    ),
    sampler: str | None = typer.Option(None, "--sampler", help="uniform, dus, remix, bss, ..."),
    method: str | None = typer.Option(None, "--method", help="joint, unimodal, ogm-ge, mla, ..."),
    fusion: str | None = typer.Option(None, "--fusion", help="concat, sum, film, gated, shared."),
    encoders: str | None = typer.Option(
        None, "--encoders", help="cnn | resnet18 | resnet50 | minilm | hf | audio=cnn,visual=resnet18"
    ),
    feature_dim: int | None = typer.Option(None, "--feature-dim"),
    epochs: int | None = typer.Option(None, "--epochs"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    eval_batch_size: int | None = typer.Option(None, "--eval-batch-size"),
    lr: float | None = typer.Option(None, "--lr"),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd | adam | adamw"),
    momentum: float | None = typer.Option(None, "--momentum"),
    weight_decay: float | None = typer.Option(None, "--weight-decay"),
    scheduler: str | None = typer.Option(None, "--scheduler", help="step | none"),
    step_size: int | None = typer.Option(None, "--step-size"),
    gamma: float | None = typer.Option(None, "--gamma"),
    seed: int | None = typer.Option(None, "--seed"),
    out: Path | None = typer.Option(
        None, "--out", help="Run dir (default runs/<dataset>-<sampler>-<method>-s<seed>)."
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML file with any of these options."),
    preset: str | None = typer.Option(None, "--preset", help="cpu | ogm | mla | dus | remix | bss | bss-ks"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda"),
    bf16: bool | None = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast for forward passes."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes."),
    preload: bool | None = typer.Option(None, "--preload/--no-preload", help="Read the splits into memory."),
    augment: bool | None = typer.Option(
        None,
        "--augment/--no-augment",
        help="Train-time RandomResizedCrop + horizontal flip of frames/images (on in the GPU presets).",
    ),
    resume: bool | None = typer.Option(
        None, "--resume/--no-resume", help="Continue from RUN_DIR/checkpoints/last.pt."
    ),
    test_each_epoch: bool | None = typer.Option(None, "--test-each-epoch/--no-test-each-epoch"),
    sampler_opt: list[str] | None = typer.Option(None, "--sampler-opt", help=SAMPLER_OPT_HELP),
    method_opt: list[str] | None = typer.Option(
        None, "--method-opt", help="Method option KEY=VALUE (repeatable)."
    ),
    model_opt: list[str] | None = typer.Option(
        None, "--model-opt", help="build_model option KEY=VALUE (repeatable)."
    ),
    augment_opt: list[str] | None = typer.Option(
        None, "--augment-opt", help="Augmentation option KEY=VALUE: scale, ratio, flip, per=frame|clip."
    ),
) -> None:
    """Train a multimodal model with a sampler and a method; writes traces, checkpoints and a summary.

    Options not given here come from --config, then from --preset (default cpu).

    --resume --out RUN_DIR reads RUN_DIR/config.yaml unless --config is given.
    """
    flags = dict(locals())
    from mmrebal.engine.config import parse_options, resolve_config

    with fail_cleanly():
        lists = ("config", "sampler_opt", "method_opt", "model_opt", "augment_opt")
        given = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items() if k not in lists}
        given["sampler_options"] = parse_options(sampler_opt, "--sampler-opt")
        given["method_options"] = parse_options(method_opt, "--method-opt")
        given["model_options"] = parse_options(model_opt, "--model-opt")
        given["augment_options"] = parse_options(augment_opt, "--augment-opt")
        if resume and out is not None and config is None and (out / "config.yaml").exists():
            config = out / "config.yaml"  # resume with the run's own options unless told otherwise
        resolved = resolve_config(given, config)

        from mmrebal.engine.trainer import train

        train(resolved)
