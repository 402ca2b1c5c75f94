"""`mmrebal train`: options -> :class:`TrainConfig` (preset <- YAML <- flags) -> the trainer."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from mmrebal.engine.config import TRAIN_PRESETS, default_of
from mmrebal.names import choices

SAMPLER_OPT_HELP = "Sampler option KEY=VALUE (repeatable; VALUE parsed as a YAML scalar)."
WHAT, OPTIM, DATA, RUN, EXTRA = "What to train", "Optimisation", "Data and device", "Run", "Component options"


def _opt(flags: str, help: str, panel: str, default_key: str | None = None) -> Any:
    """An option whose default is None (so presets and --config can fill it) and whose help shows the
    value it gets from the dataclass defaults, i.e. the cpu preset."""
    key = default_key or flags.split("/")[0].removeprefix("--").replace("-", "_")
    default = default_of(key)
    shown = f" [dim]\\[default: {default}][/dim]" if default not in (None, {}) else ""
    return typer.Option(None, *flags.split(" "), help=help + shown, rich_help_panel=panel)



def default_cache(workers: int | None = None) -> Path:
    """The cache a run without ``--cache`` trains on: ``$MMREBAL_HOME/avmnist.h5``, the embedded
    AV-MNIST built with its default knobs on first use (``workers``: its prep workers)."""
    from mmrebal.paths import default_cache_path
    from mmrebal.prep.runner import run_prep

    out = default_cache_path("avmnist")
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the default avmnist cache at {out} (first use only)", file=sys.stderr)
    run_prep("avmnist", None, out, workers=workers or max(1, min(4, os.cpu_count() or 1)))
    return out


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn the errors a user can fix (bad option, file, cache, NaN loss, busy run dir, full disk)
    into one line and exit 1."""
    from mmrebal.cache.format import CacheError
    from mmrebal.engine.checkpoint import CheckpointError
    from mmrebal.engine.config import ConfigError
    from mmrebal.engine.rundir import RunDirError
    from mmrebal.engine.trainer import NonFiniteLoss
    from mmrebal.prep.runner import PrepFailed  # building the default cache
    from mmrebal.storage import StorageError, is_storage_error, storage_error

    try:
        yield
    except (
        ConfigError,
        CacheError,
        CheckpointError,
        NonFiniteLoss,
        RunDirError,
        StorageError,
        PrepFailed,
        KeyError,
        ValueError,
        FileNotFoundError,
    ) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        if not is_storage_error(exc):
            raise
        typer.echo(f"error: {storage_error(Path(exc.filename or '.'), exc)}", err=True)
        raise typer.Exit(1) from None


def train_command(
    cache: Path | None = _opt("--cache", "HDF5 cache (default: the embedded avmnist cache).", DATA),
    sampler: str | None = _opt("--sampler", f"Data-side sampler: {choices('sampler')}.", WHAT),
    method: str | None = _opt("--method", f"Model-side method: {choices('method')}.", WHAT),
    fusion: str | None = _opt("--fusion", f"Fusion module: {choices('fusion')}.", WHAT),
    encoders: str | None = _opt(
        "--encoders", f"One for all modalities, or audio=cnn,visual=resnet18: {choices('encoder')}.", WHAT
    ),
    feature_dim: int | None = _opt("--feature-dim", "Width of each encoder's feature vector.", WHAT),
    preset: str | None = _opt(
        "--preset", f"Reference training set-up (mmrebal list presets): {' | '.join(TRAIN_PRESETS)}.", WHAT
    ),
    epochs: int | None = _opt("--epochs", "Training epochs.", OPTIM),
    batch_size: int | None = _opt("--batch-size", "Rows per step (a sampler may use it as a budget).", OPTIM),
    eval_batch_size: int | None = _opt("--eval-batch-size", "Rows per batch when scoring/validating.", OPTIM),
    lr: float | None = _opt("--lr", "Learning rate.", OPTIM),
    optimizer: str | None = _opt("--optimizer", f"{choices('optimizer')}.", OPTIM),
    momentum: float | None = _opt("--momentum", "SGD momentum.", OPTIM),
    weight_decay: float | None = _opt("--weight-decay", "L2 weight decay.", OPTIM),
    scheduler: str | None = _opt("--scheduler", f"{choices('scheduler')} (step: StepLR).", OPTIM),
    step_size: int | None = _opt("--step-size", "StepLR: epochs between LR drops.", OPTIM),
    gamma: float | None = _opt("--gamma", "StepLR: factor of each LR drop.", OPTIM),
    seed: int | None = _opt("--seed", "Seed of the model, the sampler and the augmentation.", RUN),
    out: Path | None = _opt("--out", "Run dir (default runs/<dataset>-<sampler>-<method>-s<seed>).", RUN),
    config: Path | None = typer.Option(
        None, "--config", help="YAML file with any of these options.", rich_help_panel=RUN
    ),
    device: str | None = _opt("--device", "auto | cpu | cuda.", DATA),
    bf16: bool | None = _opt("--bf16/--no-bf16", "bf16 autocast for forward passes.", DATA),
    workers: int | None = _opt(
        "--workers", "Loader workers (default: 0 on CPU, from the cores on CUDA).", DATA
    ),
    reader: str | None = _opt(
        "--reader", "threads | processes: workers as reader threads (where the cache allows) or not.", DATA
    ),
    preload: str | None = _opt(
        "--preload", "auto | yes | no: read the splits into memory (auto: if they fit).", DATA
    ),
    augment: bool | None = _opt(
        "--augment/--no-augment",
        "Train-time RandomResizedCrop + horizontal flip of frames/images (on in the GPU presets).",
        DATA,
    ),
    resume: bool | None = _opt("--resume/--no-resume", "Continue from RUN_DIR/checkpoints/last.pt.", RUN),
    test_each_epoch: bool | None = _opt(
        "--test-each-epoch/--no-test-each-epoch", "Also evaluate TEST every epoch (never for selection).", RUN
    ),
    sampler_opt: list[str] | None = typer.Option(
        None, "--sampler-opt", help=SAMPLER_OPT_HELP, rich_help_panel=EXTRA
    ),
    method_opt: list[str] | None = typer.Option(
        None, "--method-opt", help="Method option KEY=VALUE (repeatable).", rich_help_panel=EXTRA
    ),
    model_opt: list[str] | None = typer.Option(
        None, "--model-opt", help="build_model option KEY=VALUE (repeatable).", rich_help_panel=EXTRA
    ),
    augment_opt: list[str] | None = typer.Option(
        None,
        "--augment-opt",
        help="Augmentation option KEY=VALUE: scale, ratio, flip, per=frame|clip.",
        rich_help_panel=EXTRA,
    ),
    help_sampler: bool = typer.Option(
        False, "--help-sampler", help="Show the --sampler's options, types, defaults and paper; exit."
    ),
    help_method: bool = typer.Option(
        False, "--help-method", help="Show the --method's options, types, defaults and paper; exit."
    ),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved options as a --config YAML file; exit."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a finished or unfinished run already in --out."
    ),
) -> None:
    """Train a multimodal model with a sampler and a method; writes traces, checkpoints and a summary.

    Options not given here come from --config, then from --preset (default cpu); the defaults shown
    are the cpu preset's. Names are checked before anything loads (mmrebal list samplers|methods|...).

    --resume --out RUN_DIR reads RUN_DIR/config.yaml unless --config is given; of the options,
    only --lr, --scheduler, --step-size, --gamma and --epochs may change on resume.
    """
    flags = dict(locals())
    from mmrebal.engine.config import parse_options, resolve_config
    from mmrebal.names import check_config

    try:  # options and names before torch loads: a typo costs milliseconds, not a model build
        lists = ("config", "sampler_opt", "method_opt", "model_opt", "augment_opt", "overwrite")
        lists += ("help_sampler", "help_method", "print_config")
        given = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items() if k not in lists}
        given["sampler_options"] = parse_options(sampler_opt, "--sampler-opt")
        given["method_options"] = parse_options(method_opt, "--method-opt")
        given["model_options"] = parse_options(model_opt, "--model-opt")
        given["augment_options"] = parse_options(augment_opt, "--augment-opt")
        if resume and out is not None and config is None and (out / "config.yaml").exists():
            config = out / "config.yaml"  # resume with the run's own options unless told otherwise
        resolved = resolve_config(given, config)
        check_config(resolved)
    except ValueError as exc:  # ConfigError, UnknownName
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if print_config:
        import yaml

        typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False), nl=False)
        return
    with fail_cleanly():
        if help_sampler or help_method:
            from mmrebal.cli.describe import describe

            kind, name = ("sampler", resolved.sampler) if help_sampler else ("method", resolved.method)
            typer.echo(describe(kind, name))
            return

        from mmrebal.engine.trainer import train

        train(resolved, overwrite=overwrite, default_cache=lambda: default_cache(resolved.workers))
