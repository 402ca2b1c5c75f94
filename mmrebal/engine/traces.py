"""Parquet traces of a run (columns in ``trace_schema`` and docs/run-dir.md), rewritten atomically at
each epoch end.

Rows are kept in memory for the whole run and each file is rewritten whole through a temp file and a
rename, so a killed run keeps every finished epoch and a reader never sees a torn file. On resume the
rows of epochs after the checkpoint are dropped, so the traces equal an uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrebal.engine.trace_schema import conform, empty
from mmrebal.storage import atomic_path

TRACE_FILES = {"steps": "steps.parquet", "metrics": "metrics.parquet", "samples": "samples.parquet"}


def merge_step_rows(
    rows: list[dict[str, Any]], extra: Iterable[dict[str, Any]], epoch: int
) -> list[dict[str, Any]]:
    """Add sampler columns to the trainer's rows of ``epoch``, matched on (step, modality).

    A sampler row without ``modality`` applies to every modality row of its step; a sampler row for
    a (step, modality) the trainer has no row for becomes a row of its own (in ``epoch``).
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
            added.append({"epoch": epoch, **row})
            index[(row["step"], row["modality"])] = added[-1]
    return rows + added


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """A table over the union of the rows' columns (first-seen order), missing values as nulls."""
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    return pa.table({c: [r.get(c) for r in rows] for c in columns})


def write_parquet(path: Path, rows: list[dict[str, Any]] | pa.Table) -> None:
    """Rows (or a table) to ``path`` through a temp file and a rename."""
    table = rows if isinstance(rows, pa.Table) else _table(rows)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class TraceWriter:
    """The run's traces by file, held as one Arrow table per batch of rows added (compact: a long
    run's per-sample rows would take gigabytes as Python dicts); :meth:`flush` rewrites each file."""

    def __init__(self, run_dir: Path, run_columns: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_columns = run_columns or {}  # run_id, sampler, method, seed: on every row
        self.tables: dict[str, list[pa.Table]] = {name: [] for name in TRACE_FILES}

    def add(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if rows:
            self.tables[name].append(_table(rows))

    def table(self, name: str) -> pa.Table | None:
        """Everything added to ``name`` so far (columns a batch lacks are nulls), or None."""
        parts = self.tables[name]
        if not parts:
            return None
        table = pa.concat_tables(parts, promote_options="permissive")
        self.tables[name] = [table]
        return table

    def flush(self) -> None:
        """Every file, each with every declared column (an empty file when a run has no such rows)."""
        for name, filename in TRACE_FILES.items():
            table = self.table(name)
            table = empty(name) if table is None else self._with_run_columns(table)
            write_parquet(self.run_dir / filename, conform(table, name))

    def _with_run_columns(self, table: pa.Table) -> pa.Table:
        for key, value in self.run_columns.items():
            column = pa.array([value] * table.num_rows)
            index = table.schema.get_field_index(key)
            table = table.set_column(index, key, column) if index >= 0 else table.append_column(key, column)
        return table

    def select(self, epoch: int, test_rows: list[dict[str, Any]]) -> None:
        """Mark the selected checkpoint's val rows and add its TEST rows (``selected`` true)."""
        metrics = self.table("metrics")
        if metrics is not None:
            chosen = pc.and_(pc.equal(metrics["split"], "val"), pc.equal(metrics["epoch"], epoch))
            column = metrics.schema.get_field_index("selected")
            self.tables["metrics"] = [metrics.set_column(column, "selected", chosen)]
        self.add("metrics", test_rows)

    def resume(self, last_epoch: int) -> None:
        """Reload traces up to ``last_epoch`` (the checkpoint's), dropping later and final-selection rows."""
        for name, filename in TRACE_FILES.items():
            path = self.run_dir / filename
            if not path.exists():
                continue
            table = pq.read_table(path)
            table = table.filter(pc.less_equal(table["epoch"], last_epoch))
            if name == "metrics":
                final = pc.and_(table["selected"], pc.equal(table["split"], "test"))
                table = table.filter(pc.invert(final))
                column = table.schema.get_field_index("selected")
                table = table.set_column(column, "selected", pa.array([False] * table.num_rows))
            self.tables[name] = [table]
