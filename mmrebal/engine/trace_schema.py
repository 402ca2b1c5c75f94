"""The columns of every trace file, in order, with their Arrow type (docs/run-dir.md explains each).

Every run writes every column, null where its sampler or method has no value, so the files of runs
with different samplers read as one table (``pl.read_parquet("sweep/*/steps.parquet")``, duckdb's
``read_parquet('sweep/*/steps.parquet')``). A column a sampler or method outside these adds is kept,
after the declared ones; declare it here (and in docs/run-dir.md) to make it part of every run.
"""

from __future__ import annotations

import pyarrow as pa

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

# Which run a row belongs to: the same in every row of a run.
RUN_COLUMNS: dict[str, pa.DataType] = {"run_id": _S, "sampler": _S, "method": _S, "seed": _I}

STEP_COLUMNS: dict[str, pa.DataType] = {
    **RUN_COLUMNS,
    "epoch": _I,
    "step": _I,
    "modality": _S,
    "batch_size": _I,
    "confidence": _F,
    "discrepancy": _F,
    "cum_discrepancy": _F,
    "loss": _F,
    "lr": _F,
    "total_loss": _F,
    # DUS family
    "batch_size_planned": _I,
    "cum_score": _F,
    "policy_prob": _F,
    "reward": _F,
    "log_prob": _F,
    "dominant": _B,
    # OGM-GE (its per-modality diagnostics on that modality's row)
    "rho": _F,
    "k": _F,
}

METRIC_COLUMNS: dict[str, pa.DataType] = {
    **RUN_COLUMNS,
    "epoch": _I,
    "split": _S,
    "scope": _S,
    "acc": _F,
    "map": _F,
    "macro_f1": _F,
    "loss": _F,
    "selected": _B,
}

SAMPLE_COLUMNS: dict[str, pa.DataType] = {
    **RUN_COLUMNS,
    "epoch": _I,
    "idx": _I,
    "sample_id": _S,
    "modality": _S,
    # Remix
    "kl_uniform": _F,
    "assigned": _B,
    # BSS family
    "similarity": _F,
    "loss": _F,
    "score": _F,
    "order": _I,
    "used": _B,
}

SCHEMAS: dict[str, dict[str, pa.DataType]] = {
    "steps": STEP_COLUMNS,
    "metrics": METRIC_COLUMNS,
    "samples": SAMPLE_COLUMNS,
}


def conform(table: pa.Table, kind: str) -> pa.Table:
    """``table`` with every declared column of ``kind`` (missing ones null) cast to its type, in the
    declared order; undeclared columns follow in their own order."""
    declared = SCHEMAS[kind]
    columns, fields = [], []
    for name, dtype in declared.items():
        if name in table.column_names:
            columns.append(table[name].cast(dtype))
        else:
            columns.append(pa.nulls(table.num_rows, dtype))
        fields.append(pa.field(name, dtype))
    for name in table.column_names:
        if name not in declared:
            columns.append(table[name])
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def empty(kind: str) -> pa.Table:
    return pa.schema(list(SCHEMAS[kind].items())).empty_table()
