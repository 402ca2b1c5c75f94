"""Parquet traces of a run (schema in ``conventions.md``), rewritten atomically at each epoch end.

Rows are kept in memory for the whole run and each file is rewritten whole through a temp file and a
rename, so a killed run keeps every finished epoch and a reader never sees a torn file. On resume the
rows of epochs after the checkpoint are dropped, so the traces equal an uninterrupted run's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TRACE_FILES = {"steps": "steps.parquet", "metrics": "metrics.parquet", "samples": "samples.parquet"}


def merge_step_rows(rows: list[dict[str, Any]], extra: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add sampler columns to the trainer's rows, matched on (step, modality).

    A sampler row without ``modality`` applies to every modality row of its step; a sampler row for
    a (step, modality) the trainer has no row for becomes a row of its own.
    """
    index = {(r["step"], r["modality"]): r for r in rows}
    by_step: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_step.setdefault(r["step"], []).append(r)
    added: list[dict[str, Any]] = []
    for row in extra:
        columns = {k: v for k, v in row.items() if k not in ("step", "modality")}
        if row.get("modality") is None:
            for target in by_step.get(row["step"], []):
                target.update(columns)
        elif (row["step"], row["modality"]) in index:
            index[(row["step"], row["modality"])].update(columns)
        else:
            added.append(dict(row))
            index[(row["step"], row["modality"])] = added[-1]
    return rows + added


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """A table over the union of the rows' columns (first-seen order), missing values as nulls."""
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    return pa.table({c: [r.get(c) for r in rows] for c in columns})


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(_table(rows), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class TraceWriter:
    """The run's trace rows, by file; :meth:`flush` rewrites the files that have rows."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TRACE_FILES}

    def add(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        self.rows[name].extend(rows)

    def flush(self) -> None:
        for name, rows in self.rows.items():
            if rows:
                write_parquet(self.run_dir / TRACE_FILES[name], rows)

    def resume(self, last_epoch: int) -> None:
        """Reload traces up to ``last_epoch`` (the checkpoint's), dropping later and final-selection rows."""
        for name, filename in TRACE_FILES.items():
            path = self.run_dir / filename
            if not path.exists():
                continue
            rows = [r for r in pq.read_table(path).to_pylist() if r["epoch"] <= last_epoch]
            if name == "metrics":
                final = [r["selected"] and r["split"] == "test" for r in rows]
                rows = [{**r, "selected": False} for r, drop in zip(rows, final, strict=True) if not drop]
            self.rows[name] = rows
