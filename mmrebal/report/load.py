"""``load_runs``: the traces of many runs as one polars table per trace kind, for analysis offline."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mmrebal.report.runs import Run, find_runs

TRACE_KINDS = ("steps", "metrics", "samples")


def load_runs(paths: list[Path | str] | Path | str) -> dict[str, pl.DataFrame]:
    """``{"steps": ..., "metrics": ..., "samples": ...}`` over every finished run at or below ``paths``.

    Rows carry ``run_id, sampler, method, seed`` (filled from the run's config for runs written before
    those columns existed) and ``run_dir``; a column one sampler has and another lacks is null in the
    other's rows (docs/run-dir.md lists every column with its dtype and unit).
    """
    roots = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    runs, _ = find_runs(roots)
    out: dict[str, pl.DataFrame] = {}
    for kind in TRACE_KINDS:
        frames = [_tagged(run, kind) for run in runs]
        frames = [f for f in frames if f is not None]
        out[kind] = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    return out


def _tagged(run: Run, kind: str) -> pl.DataFrame | None:
    frame = getattr(run, kind)
    if frame is None:
        return None
    tags = {"run_id": run.path.name, "sampler": run.sampler, "method": run.method, "seed": run.seed}
    missing = [pl.lit(v, dtype=pl.Int64 if k == "seed" else pl.String).alias(k) for k, v in tags.items()
               if k not in frame.columns]  # fmt: skip
    return frame.with_columns(*missing, pl.lit(str(run.path)).alias("run_dir"))
