"""`mmrebal sweep`: a sampler x method x seed grid, one ``mmrebal train`` subprocess per cell.

A grid entry may carry its own options, ``NAME:KEY=VALUE[:KEY=VALUE]``: ``--samplers
uniform,remix:warmup=10 --methods fused,joint:unimodal_weight=0.5`` trains Remix with
``--sampler-opt warmup=10`` in cells named ``remix.warmup=10-fused-s0``. ``unimodal=True``
(``--unimodal``) adds a Uniform/Unimodal cell per modality of the cache and seed, the reference rows
(each modality alone, and their late-fusion ensemble) the report sets beside the grid.

Each cell runs as ``python -m mmrebal train ... --out SWEEP_DIR/<sampler>-<method>-s<seed>`` in
its own process, so a crash or a kill touches one cell only. A cell whose directory holds
``summary.json`` is finished and skipped; one with a checkpoint is resumed with
``--resume``; any other starts afresh. So re-running an interrupted sweep loses at most the epoch
each unfinished cell was in. Each attempt's output is appended to ``<cell>/train.log``.

With ``gpus`` (``--gpus 0,1,2,3``) each running cell holds one of them, as its process's only visible
device (``CUDA_VISIBLE_DEVICES``); ``jobs`` then defaults to one cell per GPU, and a larger ``jobs``
shares the GPUs round-robin.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LOG_NAME = "train.log"
GRID_KEYS = ("cache", "samplers", "methods", "seeds", "out", "jobs", "gpus", "unimodal", "train")
DEFAULT_LAUNCHER = (sys.executable, "-m", "mmrebal", "train")
# a finished unimodal cell is scored on test, for the report's unimodal-ensemble row
SCORE_LAUNCHER = (sys.executable, "-m", "mmrebal", "score")
ENSEMBLE_SPLIT = "test"


class SweepError(ValueError):
    """A grid that cannot run; the message names the file or option and what to do."""


@dataclass(frozen=True)
class Cell:
    sampler: str  # a grid entry: a name, optionally with options (``remix:warmup=10``)
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.sampler.replace(':', '.')}-{self.method.replace(':', '.')}-s{self.seed}"


def parse_entry(text: str, what: str = "--samplers") -> tuple[str, dict[str, str]]:
    """``remix:warmup=10:gamma=2`` -> ``("remix", {"warmup": "10", "gamma": "2"})``."""
    name, *pairs = text.split(":")
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise SweepError(
                f"{what} entry {text!r}: options are NAME:KEY=VALUE[:KEY=VALUE], e.g. remix:warmup=10"
            )
        if "/" in pair:  # the entry names the cell's directory
            raise SweepError(f"{what} entry {text!r}: a grid entry's options cannot contain '/'")
        if key in options:
            raise SweepError(f"{what} entry {text!r} sets {key} twice")
        options[key] = value.strip()
    return name.strip(), options


def entry_args(text: str, flag: str) -> list[str]:
    """A grid entry as train flags: ``remix:warmup=10`` -> ``remix --sampler-opt warmup=10``."""
    name, options = parse_entry(text)
    return [name, *(a for k, v in options.items() for a in (f"{flag}-opt", f"{k}={v}"))]


@dataclass
class SweepSpec:
    """The grid and what every cell's ``mmrebal train`` gets besides sampler, method, seed and out."""

    samplers: list[str]
    methods: list[str]
    seeds: list[int]
    out: Path
    cache: Path | None = None
    jobs: int = 1
    train_args: list[str] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)  # CUDA device ids, one per running cell
    unimodal: list[str] = field(default_factory=list)  # modalities that get a Uniform/Unimodal cell

    def cells(self) -> list[Cell]:
        grid = [Cell(s, m, seed) for s in self.samplers for m in self.methods for seed in self.seeds]
        seeds, alone = self.seeds, [f"unimodal:modality={m}" for m in self.unimodal]
        alone = [Cell("uniform", m, seed) for m in alone for seed in seeds]
        return grid + [c for c in alone if c not in grid]


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # "skipped" (already finished) | "finished" | "failed"
    resumed: bool = False
    returncode: int | None = None
    log: Path | None = None


def split_list(text: str | Sequence[Any] | None, what: str) -> list[str]:
    """``"a,b"`` or a YAML list -> ``["a", "b"]``."""
    if text is None:
        return []
    if isinstance(text, int | float):  # a grid file's `seeds: 0`
        text = str(text)
    items = text.split(",") if isinstance(text, str) else [str(t) for t in text]
    out = [t.strip() for t in items if str(t).strip()]
    if len(set(out)) != len(out):
        raise SweepError(f"{what} {text!r} lists a value twice")
    return out


def parse_seeds(text: str | Sequence[Any] | None, what: str = "--seeds") -> list[int]:
    items = split_list(text, what)
    try:
        return [int(s) for s in items]
    except ValueError:
        raise SweepError(f"{what} {text!r}: seeds are integers, e.g. 0,1,2") from None


def option_args(options: dict[str, Any], where: str) -> list[str]:
    """A grid file's ``train:`` mapping as command-line flags.

    ``epochs: 2`` -> ``--epochs 2``; ``bf16: true`` -> ``--bf16`` (false -> ``--no-bf16``) for the
    on/off flags of ``mmrebal train``; a boolean of an option that takes a value is passed as one
    (YAML reads ``preload: no`` as false -> ``--preload false``);
    ``sampler_opt: {alpha: 0.5}`` -> ``--sampler-opt alpha=0.5``; a list repeats the flag.
    """
    args: list[str] = []
    switches = train_switches()
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if isinstance(value, bool) and flag in switches:
            args.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, dict):
            for k, v in value.items():
                args += [flag, f"{k}={_scalar(v)}"]
        elif isinstance(value, list):
            for v in value:
                args += [flag, _scalar(v)]
        elif value is None:
            raise SweepError(f"{where}: train option {key!r} has no value; give one or remove it")
        else:
            args += [flag, _scalar(value)]
    return args


def train_switches() -> set[str]:
    """The on/off flags of ``mmrebal train`` (``--bf16``, ``--resume``, ...), read from the command."""
    import typer.main

    from mmrebal.cli import app

    command = typer.main.get_command(app).commands["train"]
    return {opt for param in command.params if getattr(param, "is_flag", False) for opt in param.opts}


def _scalar(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def read_grid(path: Path) -> dict[str, Any]:
    """A YAML grid file: any of ``cache, samplers, methods, seeds, out, jobs`` and a ``train:`` mapping."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise SweepError(f"{path}: cannot read the grid file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML ({exc}); fix the file") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a mapping with keys {', '.join(GRID_KEYS)}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(GRID_KEYS)}")
    train = data.get("train") or {}
    if not isinstance(train, dict):
        raise SweepError(f"{path}: `train` must map train options to values, e.g. `epochs: 2`")
    return {**data, "train": option_args(train, str(path))}


def build_spec(
    grid: dict[str, Any],
    cache: Path | None,
    samplers: str | None,
    methods: str | None,
    seeds: str | None,
    out: Path | None,
    jobs: int | None,
    train_args: list[str],
    gpus: str | None = None,
    unimodal: bool | None = None,
) -> SweepSpec:
    """Command-line values over the grid file's; train flags from the file first, so the CLI's win."""
    cache_value = cache if cache is not None else grid.get("cache")
    gpu_ids = split_list(gpus if gpus is not None else grid.get("gpus"), "--gpus")
    default_jobs = len(gpu_ids) or 1
    spec = SweepSpec(
        samplers=split_list(samplers if samplers is not None else grid.get("samplers"), "--samplers"),
        methods=split_list(methods if methods is not None else grid.get("methods", "joint"), "--methods"),
        seeds=parse_seeds(seeds if seeds is not None else grid.get("seeds", "0")),
        out=Path(out if out is not None else grid.get("out", "runs/sweep")),
        cache=Path(cache_value) if cache_value else None,
        jobs=_int(jobs if jobs is not None else grid.get("jobs", default_jobs), "--jobs"),
        train_args=[*grid.get("train", []), *train_args],
        gpus=gpu_ids,
    )
    if unimodal if unimodal is not None else grid.get("unimodal", False):
        spec.unimodal = cache_modalities(spec.cache)
    if not spec.samplers:
        raise SweepError("no samplers: pass --samplers uniform,dus (or `samplers:` in the grid file)")
    if not spec.methods or not spec.seeds:
        raise SweepError("--methods and --seeds need at least one value each")
    if spec.jobs < 1:
        raise SweepError(f"--jobs {spec.jobs}: must be at least 1")
    bad = [g for g in spec.gpus if not g.isdigit()]
    if bad:
        raise SweepError(f"--gpus {','.join(spec.gpus)}: device ids are whole numbers, e.g. 0,1,2,3")
    reserved = {"--sampler", "--method", "--seed", "--out", "--resume", "--cache"}
    clash = sorted({a.split("=")[0] for a in spec.train_args} & reserved)
    if clash:
        raise SweepError(f"train option(s) {', '.join(clash)} are set per cell by the sweep; remove them")
    _check_names(spec)
    if spec.cache is not None and not spec.cache.exists():
        raise SweepError(f"{spec.cache}: no such cache; build it with `mmrebal prep` or fix --cache")
    return spec


def _check_names(spec: SweepSpec) -> None:
    """Every sampler and method of the grid, and every entry's options, are known before the first
    cell trains (the registries are imported only when some entry has options)."""
    from mmrebal.names import UnknownName, check

    entries = [("sampler", "--samplers", e) for e in spec.samplers]
    entries += [("method", "--methods", e) for e in spec.methods]
    parsed = [(kind, flag, *parse_entry(e, flag)) for kind, flag, e in entries]
    try:
        for kind, flag, name, _ in parsed:
            check(kind, name, flag)
    except UnknownName as exc:
        raise SweepError(str(exc)) from None
    if any(options for *_, options in parsed):
        from mmrebal.methods import check_method_options
        from mmrebal.samplers import check_sampler_options

        checkers = {"sampler": check_sampler_options, "method": check_method_options}
        for kind, flag, name, options in parsed:
            try:
                checkers[kind](name, options)
            except ValueError as exc:
                raise SweepError(f"{flag}: {exc}") from None


def cache_modalities(cache: Path | None) -> list[str]:
    """The modalities of the cache the cells train on (the default cache when none is given)."""
    from mmrebal.cache.format import CacheError, read_info
    from mmrebal.paths import default_cache_path

    path = cache if cache is not None else default_cache_path("avmnist")
    if not path.exists():
        raise SweepError(f"--unimodal needs the cache's modalities, but {path} does not exist; pass --cache")
    try:
        return list(read_info(path).modalities)
    except (CacheError, OSError) as exc:
        raise SweepError(f"--unimodal: {path}: {exc}") from None


def error_line(log: Path) -> str | None:
    """The last ``error: ...`` line a failed cell's ``train.log`` holds, to echo it."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    return next((ln.strip() for ln in reversed(lines) if ln.startswith("error:")), None)


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SweepError(f"{what} {value!r}: expected a whole number") from None


def parse_train_opts(values: list[str]) -> list[str]:
    """``--train-opt "--epochs 2"`` values, each split like a shell would."""
    return [arg for value in values for arg in shlex.split(value)]


def cell_state(cell_dir: Path) -> str:
    """``finished`` (summary.json), ``resumable`` (a checkpoint: ``train`` refuses to start such a dir
    afresh, and ``--resume`` without last.pt starts it over) or ``new``."""
    if (cell_dir / "summary.json").exists():
        return "finished"
    if any((cell_dir / "checkpoints").glob("*.pt")):
        return "resumable"
    return "new"


# the line the trainer prints after every epoch (1-based): ``epoch 3/6  train loss ...``
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) +train loss", re.MULTILINE)


def cell_progress(log: Path) -> str:
    """Where a running cell is, from the last epoch line of its log: ``epoch 3/6 done``, or
    ``starting`` before its first epoch ends (only the log's last 64 KiB are read)."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return "starting"
    found = EPOCH_LINE.findall(tail)
    return f"epoch {found[-1][0]}/{found[-1][1]} done" if found else "starting"


def running_line(spec: SweepSpec, cells: Sequence[Cell]) -> str:
    """``running: dus-joint-s0 epoch 3/6 done, remix-joint-s0 starting`` for the sweep's display."""
    parts = [f"{c.name} {cell_progress(spec.out / c.name / LOG_NAME)}" for c in cells]
    return "running: " + (", ".join(parts) if parts else "none")


def cell_command(
    spec: SweepSpec, cell: Cell, resume: bool, launcher: Sequence[str] = DEFAULT_LAUNCHER
) -> list[str]:
    cmd = [*launcher, "--sampler", *entry_args(cell.sampler, "--sampler")]
    cmd += ["--method", *entry_args(cell.method, "--method"), "--seed", str(cell.seed)]
    cmd += ["--out", str(spec.out / cell.name)]
    if spec.cache is not None:
        cmd += ["--cache", str(spec.cache)]
    return cmd + spec.train_args + (["--resume"] if resume else [])


def skip_finished(
    spec: SweepSpec, on_outcome: Callable[[CellOutcome], None]
) -> tuple[dict[Cell, CellOutcome], list[Cell]]:
    """``skipped`` outcomes of the finished cells (each reported) and the cells left to train."""
    spec.out.mkdir(parents=True, exist_ok=True)
    outcomes: dict[Cell, CellOutcome] = {}
    todo = []
    for cell in spec.cells():
        cell_dir = spec.out / cell.name
        if cell_state(cell_dir) == "finished" and not needs_predictions(cell, cell_dir):
            outcomes[cell] = CellOutcome(cell, "skipped")
            on_outcome(outcomes[cell])
        else:
            todo.append(cell)
    return outcomes, todo


def needs_predictions(cell: Cell, cell_dir: Path) -> bool:
    """A unimodal cell whose ``predictions.parquet`` (the ensemble's input) is not written yet."""
    return parse_entry(cell.method)[0] == "unimodal" and not (cell_dir / "predictions.parquet").exists()


class SweepRunner:
    """Runs a spec's cells ``jobs`` at a time; :meth:`stop` terminates the ones running."""

    def __init__(
        self,
        spec: SweepSpec,
        launcher: Sequence[str] = DEFAULT_LAUNCHER,
        score_launcher: Sequence[str] = SCORE_LAUNCHER,
    ) -> None:
        self.spec = spec
        self.launcher = tuple(launcher)
        self.score_launcher = tuple(score_launcher)
        self._running: dict[Cell, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._free_gpus: queue.SimpleQueue[str] = queue.SimpleQueue()
        for slot in range(spec.jobs if spec.gpus else 0):
            self._free_gpus.put(spec.gpus[slot % len(spec.gpus)])

    def run(self, on_outcome: Callable[[CellOutcome], None] = lambda o: None) -> list[CellOutcome]:
        """Every cell's outcome, in grid order; ``on_outcome`` sees each as it happens."""
        cells = self.spec.cells()
        outcomes, todo = skip_finished(self.spec, on_outcome)
        with ThreadPoolExecutor(max_workers=self.spec.jobs) as pool:
            futures = [pool.submit(self._run_cell, cell) for cell in todo]
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    outcomes[outcome.cell] = outcome
                    on_outcome(outcome)
            except BaseException:
                for f in futures:
                    f.cancel()
                self.stop()
                raise
        return [outcomes[c] for c in cells]

    def _run_cell(self, cell: Cell) -> CellOutcome:
        if self._stopping:  # queued before an interrupt: leave the cell untouched
            return CellOutcome(cell, "failed")
        gpu = self._free_gpus.get() if self.spec.gpus else None  # one is free: at most `jobs` cells run
        try:
            return self.launch(cell, gpu)
        finally:
            if gpu is not None:
                self._free_gpus.put(gpu)

    def launch(self, cell: Cell, gpu: str | None) -> CellOutcome:
        """Train one cell now (resumed when it has a checkpoint), its output appended to its log; a
        unimodal cell is then scored on the ensemble's split (a failed scoring fails the cell, and
        the next sweep scores it without retraining)."""
        cell_dir = self.spec.out / cell.name
        resume = cell_state(cell_dir) == "resumable"
        cell_dir.mkdir(parents=True, exist_ok=True)
        log = cell_dir / LOG_NAME
        returncode = 0
        if cell_state(cell_dir) != "finished":
            cmd = cell_command(self.spec, cell, resume, self.launcher)
            returncode = self._logged(cell, cmd, log, "resume" if resume else "start", gpu)
        if returncode == 0 and cell_state(cell_dir) == "finished" and needs_predictions(cell, cell_dir):
            cmd = [*self.score_launcher, str(cell_dir), "--split", ENSEMBLE_SPLIT]
            returncode = self._logged(cell, cmd, log, "score", gpu)
        ok = returncode == 0 and cell_state(cell_dir) == "finished" and not needs_predictions(cell, cell_dir)
        return CellOutcome(cell, "finished" if ok else "failed", resume, returncode, log)

    def _logged(self, cell: Cell, cmd: list[str], log: Path, what: str, gpu: str | None) -> int | None:
        """Run ``cmd`` as ``cell``'s process, its output appended to ``log``; its exit code, or None
        when the sweep is stopping."""
        with open(log, "a") as handle:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            where = "" if gpu is None else f"CUDA_VISIBLE_DEVICES={gpu} "
            handle.write(f"# {stamp} mmrebal sweep {what}: {where}{shlex.join(cmd)}\n")
            handle.flush()
            with self._lock:
                if self._stopping:
                    return None
                proc = subprocess.Popen(
                    cmd, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self._env(gpu)
                )
                self._running[cell] = proc
            returncode = proc.wait()
            with self._lock:
                self._running.pop(cell, None)
        return returncode

    def _env(self, gpu: str | None) -> dict[str, str]:
        """Unbuffered output so ``train.log`` follows a cell live; with several cells at once, share
        the cores instead of each torch taking all of them; the cell's GPU as its only visible one."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        if self.spec.jobs > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.spec.jobs))
        return env

    def running(self) -> list[Cell]:
        """The cells whose process is alive now."""
        with self._lock:
            return list(self._running)

    def stop(self) -> None:
        """Terminate running cells (their checkpoints let the next sweep resume them)."""
        with self._lock:
            self._stopping = True
            procs = list(self._running.values())
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
