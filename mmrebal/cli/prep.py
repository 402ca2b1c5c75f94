"""`mmrebal prep`: raw media -> HDF5 cache (heavy imports happen inside the command)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

OPT_HELP = "Adapter option KEY=VALUE (repeatable; VALUE parsed as a YAML scalar), e.g. classes=a,b."


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_opts(pairs: list[str]) -> dict[str, Any]:
    """``["size=60", "classes=a,b"]`` -> ``{"size": 60, "classes": "a,b"}``; dashes become underscores."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--opt")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value.strip() else None
    return out


def prep_command(
    dataset: str = typer.Argument(
        ..., help="avmnist, cremad, kinetics-sounds, manifest, twitter2015, sarcasm, nvgesture or ave."
    ),
    out: Path = typer.Option(..., "--out", help="The cache file to write (CACHE.h5)."),
    root: Path | None = typer.Option(
        None, "--root", help="Raw dataset folder or manifest file (avmnist: where to write its clips)."
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="ogm, ogm-3f, bss, bss-ks, fbank, ast, avmnist, image-text, nvgesture, nvgesture-i3d, ave "
        "(default: the dataset's).",
    ),
    workers: int = typer.Option(_cores(), "--workers", help="Decoding processes (default: all cores)."),
    strict: bool = typer.Option(
        False, "--strict", help="Stop at the first bad file or row (exit 1, journal kept)."
    ),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", help="Share of train carved (stratified) into val when the source has none."
    ),
    test_fraction: float = typer.Option(
        0.2, "--test-fraction", help="Share carved into test, only when the source has no test split."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of every random choice of the prep (carving, avmnist generation)."
    ),
    size: int | None = typer.Option(None, "--size", help="avmnist: number of samples (default 3000)."),
    audio_snr_db: float | None = typer.Option(
        None, "--audio-snr-db", help="avmnist: speech-to-noise ratio in dB (default -6)."
    ),
    visual_noise: float | None = typer.Option(
        None, "--visual-noise", help="avmnist: per-pixel noise std, 0-1 (default 0.5)."
    ),
    keep_raw: bool = typer.Option(
        False, "--keep-raw", help="avmnist: keep the generated clips in <out>.raw/."
    ),
    compression: str = typer.Option(
        "none",
        "--compression",
        help="none | lzf | gzip: HDF5 filter of the arrays; jpeg: JPEG frames/images (none reads fastest).",
    ),
    name: str | None = typer.Option(
        None, "--name", help="Dataset name recorded in the cache, used by run folders and reports."
    ),
    opt: list[str] | None = typer.Option(None, "--opt", help=OPT_HELP),
) -> None:
    """Decode a raw dataset into one HDF5 cache; re-running after an interruption resumes."""
    from mmrebal.cache.format import CacheError
    from mmrebal.prep.adapters import LayoutError
    from mmrebal.prep.runner import PrepFailed, run_prep
    from mmrebal.storage import StorageError, is_storage_error, storage_error

    named = {"size": size, "audio_snr_db": audio_snr_db, "visual_noise": visual_noise}
    options = {**{k: v for k, v in named.items() if v is not None}, **parse_opts(opt or [])}
    try:
        report = run_prep(
            dataset,
            root,
            out,
            preset=preset,
            workers=max(1, workers),
            strict=strict,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            keep_raw=keep_raw,
            compression=None if compression == "none" else compression,
            name=name,
            **options,
        )
    except (PrepFailed, LayoutError, CacheError, StorageError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        if not is_storage_error(exc):
            raise
        typer.echo(f"error: {storage_error(Path(exc.filename or out), exc)}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted: decoded samples are kept; re-run the same command to resume {out}", err=True
        )
        raise typer.Exit(130) from None
    counts = ", ".join(f"{k} {v}" for k, v in report.split_counts.items())
    rate = (report.cached - report.resumed) / max(report.wall_s, 1e-9)
    size_mb = report.out.stat().st_size / 2**20
    typer.echo(
        f"wrote {report.out} ({size_mb:.1f} MiB): {report.cached} samples ({counts}), "
        f"preset {report.preset}, {report.wall_s:.1f} s, {rate:.1f} clips/s"
        + (f", {report.resumed} resumed" if report.resumed else "")
    )
    if report.issues:
        typer.echo(f"{len(report.issues)} sample(s) skipped; listed in {report.errors_csv}", err=True)
