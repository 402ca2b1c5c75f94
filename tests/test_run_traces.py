"""Traces of runs with different samplers and methods share one schema, load as one table per kind
(``load_runs``, a polars glob, duckdb) and are documented column by column in docs/run-dir.md."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
import torch
from _tiny_cache import build_tiny_cache

from mmrebal.engine.config import resolve_config
from mmrebal.engine.trace_schema import SCHEMAS
from mmrebal.engine.trainer import train
from mmrebal.report import load_runs

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CELLS = {  # sampler, method, options: a plain run, a per-sample sampler, a per-step sampler + OGM-GE
    "uniform-joint-s0": ("uniform", "joint", {}),
    "remix-joint-s1": ("remix", "joint", {"warmup": 1}),
    "dus-h-ogm-ge-s0": ("dus-h", "ogm-ge", {}),
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("traces")
    cache = build_tiny_cache(root / "tiny.h5", n=48, num_classes=3, seed=2)
    for name, (sampler, method, options) in CELLS.items():
        train(
            resolve_config(
                {
                    "cache": str(cache),
                    "out": str(root / "sw" / name),
                    "epochs": 2,
                    "batch_size": 8,
                    "feature_dim": 8,
                    "device": "cpu",
                    "sampler": sampler,
                    "method": method,
                    "seed": int(name[-1]),
                    "sampler_options": options,
                }  # fmt: skip
            )
        )
    return root / "sw"


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SCHEMAS))
def test_every_run_writes_the_same_columns(sweep: Path, kind: str) -> None:
    schemas = {name: pl.read_parquet_schema(sweep / name / f"{kind}.parquet") for name in CELLS}
    first = next(iter(schemas.values()))
    assert list(first)[: len(SCHEMAS[kind])] == list(SCHEMAS[kind])
    assert all(s == first for s in schemas.values()), schemas
    globbed = pl.read_parquet(sweep / f"*/{kind}.parquet")  # the failing one-liner
    assert set(globbed["run_id"].unique()) <= set(CELLS)


@pytest.mark.slow
def test_load_runs_over_mixed_samplers(sweep: Path) -> None:
    tables = load_runs([sweep])
    assert set(tables) == {"steps", "metrics", "samples"}
    steps, samples, metrics = tables["steps"], tables["samples"], tables["metrics"]
    per_run = steps.group_by("run_id").agg(pl.col("sampler").first(), pl.col("method").first(),
                                           pl.col("seed").first())  # fmt: skip
    assert sorted(per_run.rows()) == sorted((k, *v[:2], int(k[-1])) for k, v in CELLS.items())
    # a sampler's column is null where another sampler has none
    dus = steps.filter(pl.col("sampler") == "dus-h")
    assert dus["dominant"].null_count() == 0 and dus["rho"].null_count() == 0  # OGM-GE's rho per row
    assert steps.filter(pl.col("sampler") == "uniform")["dominant"].null_count() > 0
    assert set(samples["sampler"].unique()) == {"remix"}
    assert samples["assigned"].dtype == pl.Boolean and samples["idx"].dtype == pl.Int64
    assert set(metrics["split"].unique()) == {"train", "val", "test"}
    assert steps["run_dir"].str.ends_with("uniform-joint-s0").any()


@pytest.mark.slow
def test_duckdb_reads_the_traces_directly(sweep: Path) -> None:
    """The docs/run-dir.md example: final fused test accuracy per run, straight from the files."""
    query = (
        "SELECT run_id, sampler, acc FROM read_parquet(?) "
        "WHERE selected AND split = 'test' AND scope = 'fused' ORDER BY run_id"
    )
    rows = duckdb.execute(query, [str(sweep / "*" / "metrics.parquet")]).fetchall()
    assert [r[0] for r in rows] == sorted(CELLS)
    assert all(0.0 <= r[2] <= 1.0 for r in rows)


def test_run_dir_doc_lists_every_column_with_a_dtype() -> None:
    doc = (ROOT / "docs" / "run-dir.md").read_text()
    for kind, columns in SCHEMAS.items():
        section = doc.split(f"## {kind}.parquet", 1)[1].split("\n## ", 1)[0]
        for name, dtype in columns.items():
            expected = {"string": "string", "int64": "int64", "double": "float64", "bool": "bool"}[str(dtype)]
            assert re.search(rf"^\| `{name}` \| {expected} \|", section, re.M), f"{kind}: {name}"
