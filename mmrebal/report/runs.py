"""Finding run directories, reading their traces with polars, and grouping runs that differ only by seed.

A run directory is whatever holds a ``config.yaml`` (see ``docs/architecture.md``); only runs with a
``summary.json`` (written when a run completes) are reported, so a half-trained run never silently
enters a mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl
import yaml

# Config keys that never make two runs different experiments: the seed, where the run wrote to,
# where its inputs lived, when and with which library versions it ran, and how the loader reads
# (``reader``: threads and processes give the same batches, tests/test_loading.py; runs from before
# the option have none). A dotted key is ignored when its first component is in ``_IGNORED_TOP`` or
# its last component is in ``_IGNORED_LEAF`` or ends with one of ``_IGNORED_SUFFIXES``.
_IGNORED_TOP = {"seed", "out", "resume", "versions", "reader"}
_IGNORED_LEAF = {"seed", "out", "resume", "cache", "path", "root", "created", "hostname"}
_IGNORED_SUFFIXES = ("_path", "_dir", "_file", "_version")
# The factors a report compares: they may differ between groups without a warning.
FACTOR_KEYS = ("sampler", "method", "sampler_options", "method_options")
# Training settings every comparison states: shared ones under the main table, the others per group.
TRAINING_KEYS = ("preset", "encoders", "fusion", "optimizer", "lr", "momentum", "weight_decay", "scheduler",
                 "step_size", "gamma", "epochs", "batch_size", "augment", "model_options")  # fmt: skip


class ReportError(RuntimeError):
    """Input a report cannot use; the message names the file and what to do."""


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> ``{"a.b": value}``; lists become JSON text so that they compare and hash."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, sort_keys=True, default=str)
        else:
            out[name] = value
    return out


def is_ignored(key: str) -> bool:
    parts = key.split(".")
    leaf = parts[-1]
    return parts[0] in _IGNORED_TOP or leaf in _IGNORED_LEAF or leaf.endswith(_IGNORED_SUFFIXES)


def is_factor(key: str) -> bool:
    return key.split(".")[0] in FACTOR_KEYS


def _name(value: Any) -> str:
    """A sampler/method entry is a name, or a mapping with a ``name``."""
    if isinstance(value, dict):
        value = value.get("name")
    return str(value) if value is not None else "?"


def _read_parquet(path: Path) -> pl.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for a damaged file
        raise ReportError(f"{path}: not a readable Parquet file ({exc}); re-run or remove the run") from exc


@dataclass
class Run:
    """One finished run directory; traces are read on first use."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]

    @property
    def sampler(self) -> str:
        return _name(self.config.get("sampler"))

    @property
    def method(self) -> str:
        return _name(self.config.get("method"))

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return int(seed) if seed is not None else None

    @cached_property
    def flat_config(self) -> dict[str, Any]:
        return flatten(self.config)

    @property
    def dataset(self) -> str:
        """The config's ``dataset``, else a cache attribute ``*.dataset``, else the cache file's stem."""
        flat = self.flat_config
        if flat.get("dataset"):
            return str(flat["dataset"])
        for key in sorted(flat):
            if key.endswith(".dataset") and flat[key]:
                return str(flat[key])
        cache = flat.get("cache") or flat.get("cache.path")
        return Path(str(cache)).stem if cache else "dataset"

    @cached_property
    def steps(self) -> pl.DataFrame | None:
        return _read_parquet(self.path / "steps.parquet")

    @cached_property
    def metrics(self) -> pl.DataFrame | None:
        return _read_parquet(self.path / "metrics.parquet")

    @cached_property
    def samples(self) -> pl.DataFrame | None:
        return _read_parquet(self.path / "samples.parquet")

    def comparable(self) -> dict[str, Any]:
        """Config entries that define the experiment (everything but seed, paths, versions)."""
        return {k: v for k, v in self.flat_config.items() if not is_ignored(k)}

    def selected_metrics(self, split: str) -> pl.DataFrame:
        """Rows of the checkpoint chosen on validation for ``split``, one per scope."""
        metrics = self.metrics
        if metrics is None:
            raise ReportError(f"{self.path}: no metrics.parquet; the run did not record metrics")
        missing = {"epoch", "split", "scope", "selected"} - set(metrics.columns)
        if missing:
            raise ReportError(
                f"{self.path / 'metrics.parquet'}: missing column(s) {', '.join(sorted(missing))}; "
                "it was not written by this mmrebal's trainer"
            )
        rows = metrics.filter(pl.col("selected") & (pl.col("split") == split))
        # One row per scope: should the trainer mark several epochs, the latest one wins.
        return rows.sort("epoch").group_by("scope", maintain_order=True).last()


def load_run(path: Path) -> Run:
    config_path = path / "config.yaml"
    try:
        config = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReportError(f"{config_path}: unreadable run config ({exc}); re-run the run") from exc
    if not isinstance(config, dict):
        raise ReportError(f"{config_path}: not a mapping; re-run the run")
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{summary_path}: unreadable summary ({exc}); re-run the run") from exc
    return Run(path=path, config=config, summary=summary)


TRACE_FILES = ("steps.parquet", "metrics.parquet", "samples.parquet")


def check_traces(run_dir: Path) -> None:
    """Refuse a run whose trace files are cut short (their Parquet footer is the last thing written),
    so that one damaged run is left out with a warning instead of stopping the report."""
    import pyarrow.parquet as pq

    for name in TRACE_FILES:
        path = run_dir / name
        if path.exists():
            try:
                pq.read_metadata(path)
            except Exception as exc:  # pyarrow raises several error types for a damaged file
                raise ReportError(f"{path}: not a readable Parquet file ({exc})") from None


def find_runs(paths: list[Path]) -> tuple[list[Run], list[str]]:
    """Every finished run at or below ``paths`` and a warning for each unfinished or damaged one."""
    runs: list[Run] = []
    warnings: list[str] = []
    seen: set[Path] = set()
    for root in paths:
        if not root.is_dir():
            raise ReportError(f"{root}: not a directory; pass run directories or a sweep directory")
        if (root / "config.yaml").exists():
            found = [root]
        else:
            found = sorted(p.parent for p in root.rglob("config.yaml"))
        if not found:
            raise ReportError(f"{root}: no run directories (a run directory holds config.yaml) below it")
        for run_dir in found:
            if run_dir.resolve() in seen:
                continue
            seen.add(run_dir.resolve())
            if not (run_dir / "summary.json").exists():
                warnings.append(f"{run_dir}: unfinished (no summary.json), left out; finish it with --resume")
                continue
            try:
                run = load_run(run_dir)
                check_traces(run_dir)
            except ReportError as exc:
                warnings.append(f"damaged run left out: {exc}")
                continue
            runs.append(run)
    if not runs:
        why = "".join(f"; {w}" for w in warnings)
        raise ReportError(f"no finished runs under {', '.join(map(str, paths))}; nothing to report{why}")
    return runs, warnings


@dataclass
class RunGroup:
    """Runs whose configs agree on everything but seed, paths and versions."""

    runs: list[Run]
    label: str = ""
    distinct: dict[str, Any] = field(default_factory=dict)  # keys telling apart same-label groups

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def sampler(self) -> str:
        return self.first.sampler

    @property
    def method(self) -> str:
        return self.first.method

    @property
    def dataset(self) -> str:
        return self.first.dataset

    @property
    def unimodal_modality(self) -> str | None:
        """The one modality a ``unimodal`` run trains (``--method-opt modality=...``), if any."""
        if self.method != "unimodal":
            return None
        modality = (self.first.config.get("method_options") or {}).get("modality")
        return str(modality) if modality else None

    @property
    def suffix(self) -> str:
        """`` (lr=0.1)``: the settings telling this group apart from same-named ones, if any."""
        return " (" + ", ".join(f"{k}={v}" for k, v in self.distinct.items()) + ")" if self.distinct else ""

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    @property
    def run_warnings(self) -> list[str]:
        """What the trainer warned about this group's configuration (degenerate schedules, OGM-GE
        under Adam), from the runs' summaries."""
        return sorted({w for r in self.runs for w in r.summary.get("warnings") or []})

    @property
    def ran_with(self) -> dict[str, Any]:
        """The sampler's and method's options with their defaults (as the trainer recorded them), and
        the training settings a comparison has to state."""
        recorded = self.first.summary.get("options") or {}
        config = self.first.config
        return {
            "sampler": recorded.get("sampler", config.get("sampler_options") or {}),
            "method": recorded.get("method", config.get("method_options") or {}),
            "training": {k: config.get(k) for k in TRAINING_KEYS if k in config},
        }


SAMPLER_NAMES = {
    "uniform": "Uniform",
    "dus": "DUS",
    "dus-h": "DUS-H",
    "dus-ds": "DUS-DS",
    "remix": "Remix",
    "bss": "BSS",
    "bss-l": "BSS-L",
    "smv": "SMV",
}
METHOD_NAMES = {"joint": "Joint", "fused": "Fused", "mla": "MLA", "ogm-ge": "OGM-GE", "pmr": "PMR",
                "agm": "AGM", "unimodal": "Unimodal"}  # fmt: skip


def display_name(sampler: str, method: str) -> str:
    """``DUS/MLA`` as the papers write it; unknown names pass through unchanged."""
    return f"{SAMPLER_NAMES.get(sampler, sampler)}/{METHOD_NAMES.get(method, method)}"


def unimodal_label(group: RunGroup, scope: str) -> str:
    """``Unimodal (audio)`` for a ``unimodal`` group's ``scope`` (the sampler is named unless uniform)."""
    if scope == "fused":
        return group.label
    prefix = "" if group.sampler == "uniform" else f"{SAMPLER_NAMES.get(group.sampler, group.sampler)}/"
    return f"{prefix}Unimodal ({scope}){group.suffix}"


def group_order(group: RunGroup) -> tuple:
    """Papers' row order: unimodal first, then samplers and methods in the order of the name tables."""
    samplers, methods = list(SAMPLER_NAMES), list(METHOD_NAMES)
    return (
        group.method != "unimodal",
        samplers.index(group.sampler) if group.sampler in samplers else len(samplers),
        methods.index(group.method) if group.method in methods else len(methods),
        group.sampler,
        group.method,
        group.suffix,
    )


def _key(run: Run) -> str:
    return json.dumps(run.comparable(), sort_keys=True, default=str)


def name_option_twins(groups: list[RunGroup]) -> None:
    """Groups of one sampler/method that differ only in their options get those options in the label.

    Options are compared factors (no warning), but two rows both called ``DUS/Joint`` would be
    unreadable, so e.g. ``DUS/Joint (streams=shared)`` and ``DUS/Joint (streams=default)``.
    """
    twins: dict[tuple[str, str], list[RunGroup]] = {}
    for group in groups:
        twins.setdefault((group.sampler, group.method), []).append(group)
    for same_name in twins.values():
        if len(same_name) < 2:
            continue
        # A unimodal run's modality is already in its label (``Unimodal (audio)``).
        options = [
            {
                k: v
                for k, v in g.first.comparable().items()
                if k.split(".")[0] in FACTOR_KEYS[2:]
                and not (g.unimodal_modality and k.endswith(".modality"))
            }
            for g in same_name
        ]
        keys = sorted({k for o in options for k in o})
        differing = [k for k in keys if len({json.dumps(o.get(k), default=str) for o in options}) > 1]
        for group, option in zip(same_name, options, strict=True):
            for key in differing:
                value = option.get(key)
                group.distinct[key.split(".", 1)[1]] = "default" if value is None else value


def group_runs(runs: list[Run]) -> tuple[list[RunGroup], list[str]]:
    """Group by comparable config; label groups as the papers do; collect warnings.

    Warns when a group has a single seed, when two runs of one group share a seed, and when groups
    of the same dataset differ in anything besides sampler, method and their options (then such
    groups' labels also carry the differing settings so that rows stay distinguishable).
    """
    by_key: dict[str, list[Run]] = {}
    for run in runs:
        by_key.setdefault(_key(run), []).append(run)
    by_seed = [sorted(rs, key=lambda r: (r.seed is None, r.seed or 0, str(r.path))) for rs in by_key.values()]
    groups = [RunGroup(rs) for rs in by_seed]
    groups.sort(key=lambda g: (g.dataset, group_order(g)))
    warnings: list[str] = []
    for dataset in sorted({g.dataset for g in groups}):
        same = [g for g in groups if g.dataset == dataset]
        settings = [{k: v for k, v in g.first.comparable().items() if not is_factor(k)} for g in same]
        keys = sorted({k for s in settings for k in s})
        differing = [k for k in keys if len({json.dumps(s.get(k), default=str) for s in settings}) > 1]
        if differing:
            warnings.append(
                f"{dataset}: runs differ in more than seed, sampler and method: {', '.join(differing)}"
            )
        for group, setting in zip(same, settings, strict=True):
            group.distinct = {k: setting.get(k) for k in differing}
        name_option_twins(same)
    for group in groups:
        if group.unimodal_modality:
            group.label = unimodal_label(group, group.unimodal_modality)
        else:
            group.label = display_name(group.sampler, group.method) + group.suffix
        if group.run_warnings:
            group.label += " ⚠"
            warnings += [f"{group.label} on {group.dataset}: {w}" for w in group.run_warnings]
        where = ", ".join(str(r.path) for r in group.runs)
        if len(group.runs) == 1:
            warnings.append(f"{group.label} on {group.dataset}: a single seed ({where}); no std")
        seeds = [s for s in group.seeds if s is not None]
        if len(set(seeds)) < len(seeds):
            warnings.append(f"{group.label} on {group.dataset}: repeated seeds {seeds} ({where})")
    return groups, warnings
