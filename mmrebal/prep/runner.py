"""The prep runner: scan -> decode in parallel into the journal -> carve splits -> assemble the cache.

Crash safety comes from the journal (``mmrebal.cache.writer``): every decoded sample is its own
atomically written file, keyed by a hash of the source manifest and the preset, so a re-run after
Ctrl-C or ``kill -9`` decodes only what is missing and a changed source or preset starts over.
Workers write the journal themselves (the parent only counts), and at most a few tasks per worker are
in flight, so memory does not grow with the dataset. Each worker keeps native libraries (OpenBLAS,
OpenMP) to one thread: ``--workers`` processes already fill the cores, and idle BLAS threads that
spin for work took about half the CPU time of a 2-core avmnist build.

Per-sample problems (a corrupt clip, a missing file) are printed as one line each, collected in
``<cache stem>.prep_errors.csv`` next to the cache and do not stop the others; ``strict`` stops at
the first one and keeps the journal so nothing already decoded is lost.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import inspect
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrebal.cache.writer import Entry, SampleJournal, assemble
from mmrebal.media import MediaError
from mmrebal.prep.adapters import ADAPTERS, Adapter, PrepIssue, SourceItem
from mmrebal.prep.presets import PRESETS, Preset
from mmrebal.prep.splits import grouped_holdout, stratified_carve
from mmrebal.storage import Busy, ExclusiveLock, atomic_write_bytes, remove_stale_temps, writing

IN_FLIGHT_PER_WORKER = 4
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class PrepFailed(RuntimeError):
    """Prep could not produce a cache (strict mode hit an error, or no sample could be decoded)."""


@dataclass
class PrepReport:
    """What one ``run_prep`` call did."""

    out: Path
    dataset: str
    preset: str
    cached: int
    resumed: int
    issues: list[PrepIssue] = field(default_factory=list)
    split_counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    errors_csv: Path | None = None


def adapter_class(dataset: str) -> type[Adapter]:
    return ADAPTERS.get(dataset)


def errors_csv_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.prep_errors.csv")


# raw (the default: the fastest reads, see benchmarks/loader.py), an HDF5 filter every reader has, or
# JPEG-encoded frames and images (mmrebal.cache.jpeg; lossy, decoded on the training device)
COMPRESSIONS = (None, "lzf", "gzip", "jpeg")


def lock_output(out: Path) -> ExclusiveLock:
    """Hold ``.<out>.lock`` for this prep, or refuse naming the process that holds it; then remove
    the temp files that killed preps left (a half-assembled cache, journal samples in flight)."""
    out = Path(out)
    try:
        held = ExclusiveLock(out.with_name(f".{out.name}.lock"), "mmrebal prep")
    except Busy as exc:
        raise PrepFailed(
            f"{out} is being written by {exc}; wait for it to finish or choose another --out"
        ) from None
    remove_stale_temps(out)
    for stale in out.with_name(out.name + ".parts").glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)
    return held


def _exclusive_output(prep: Callable[..., PrepReport]) -> Callable[..., PrepReport]:
    """Run ``prep`` holding its output's lock (:func:`lock_output`) for the whole call, once the
    output is known to lie outside the source (:func:`check_output_place`)."""

    @functools.wraps(prep)
    def locked(*args: Any, **kwargs: Any) -> PrepReport:
        given = inspect.signature(prep).bind(*args, **kwargs).arguments
        check_output_place(given["dataset"], given["root"], given["out"])
        held = lock_output(given["out"])
        try:
            return prep(*args, **kwargs)
        finally:
            held.release()

    return locked


@_exclusive_output
def run_prep(
    dataset: str,
    root: Path | None,
    out: Path,
    preset: str | None = None,
    workers: int = 1,
    strict: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
    keep_raw: bool = False,
    compression: str | None = None,
    name: str | None = None,
    **options: Any,
) -> PrepReport:
    """Build ``out`` from the raw dataset at ``root`` (see the module docstring for the stages);
    one prep at a time per ``out`` (a second one is refused, naming the first one's pid).

    ``options`` go to the adapter's ``scan`` (unknown names are refused); ``seed`` is passed too when
    the adapter takes one, so one seed fixes every random choice of the prep. ``test_fraction`` is
    used only when the source has no test split. Synthetic adapters (avmnist) write their raw clips to
    ``root`` or, when it is None, to ``<out>.raw/``, removed after success unless ``keep_raw``.
    ``compression`` is the HDF5 filter of every per-sample array, or ``jpeg`` for JPEG frames and
    images (``COMPRESSIONS``; None: raw).
    ``name`` is the dataset name recorded in the cache (``dataset`` attribute: run directories and
    reports use it); default the adapter's name, which is always kept as the ``adapter`` attribute.
    """
    started = time.perf_counter()
    if compression not in COMPRESSIONS:
        raise PrepFailed(f"--compression {compression}: choose none or one of {', '.join(COMPRESSIONS[1:])}")
    for flag, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise PrepFailed(f"{flag} must be in [0, 1), got {value}")
    if name is not None and not DATASET_NAME.match(name):
        raise PrepFailed(f"--name {name!r}: use letters, digits, '.', '_' or '-' (it names run folders)")
    out = Path(out)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    adapter = adapter_class(dataset)()
    chosen = PRESETS.get(preset or adapter.default_preset)
    synthetic = bool(getattr(adapter, "synthetic", False))
    raw_dir = Path(root) if root is not None else (out.with_name(out.name + ".raw") if synthetic else None)
    resolved = resolve_options(adapter, options, seed)
    items, issues = adapter.scan(
        raw_dir, **{k: v for k, v in resolved.items() if k in options or k == "seed"}
    )
    log = _Log()
    for note in getattr(adapter, "notes", ()):
        log.note(note)
    for issue in issues:
        log.issue(issue)
    if not items:
        listed = f"; {len(issues)} problem(s) listed in {_write_errors(out, issues)}" if issues else ""
        raise PrepFailed(f"{root or raw_dir}: the source lists no sample{listed}; nothing was written")
    if strict and issues:
        _write_errors(out, issues)
        raise PrepFailed(
            f"{len(issues)} problem(s) in the source and --strict is set; see {errors_csv_path(out)}"
        )

    source_sha256 = manifest_hash(items, resolved, synthetic)
    journal = SampleJournal(out, _journal_key(source_sha256, chosen))
    if journal.reset_reason:
        log.note(journal.reset_reason)
    if journal.dropped:
        log.note(f"{journal.dir}: {journal.dropped} torn sample(s) (a power loss?) are decoded again")
    todo = [item for item in items if not journal.done(item.sample_id)]
    resumed = len(items) - len(todo)
    if resumed:
        log.note(f"resuming: {resumed} of {len(items)} samples already decoded in {journal.dir}")
    for issue in _decode_all(adapter, chosen, todo, out, journal.manifest_hash, workers, strict, log):
        issues.append(issue)
        if strict:
            _write_errors(out, issues)
            raise PrepFailed(
                f"--strict: stopped at the first bad sample ({issue.sample_id}); what was decoded stays in "
                f"{journal.dir} and a re-run resumes from there"
            )

    done = [item for item in items if journal.done(item.sample_id)]
    errors_csv = _write_errors(out, issues)
    if not done:
        journal.remove()  # holds no sample: nothing to resume from
        raise PrepFailed(f"{out}: no sample could be cached ({len(issues)} problem(s), see {errors_csv})")
    class_names = adapter.class_names(items)
    splits, split_attrs = assign_splits(items, class_names, val_fraction, test_fraction, seed)
    if getattr(adapter, "split_method", ""):  # how the adapter split a source that ships no split lists
        split_attrs["test_split"] = {"method": adapter.split_method}
    entries = [Entry(i.sample_id, class_names.index(i.label), splits[i.sample_id]) for i in done]
    check_splits(out, entries, journal.dir)
    attrs = {
        "dataset": name or dataset,
        "adapter": dataset,
        **chosen.params(),
        **{f"option_{key}": value for key, value in resolved.items()},
        "modalities": adapter.modalities,
        "source_sha256": source_sha256,
        **split_attrs,
        **{f"source_{key}": value for key, value in getattr(adapter, "source_attrs", {}).items()},
        "num_source_items": len(items),
        "num_prep_errors": len(issues),
    }
    assemble(journal, entries, out, class_names, adapter.modalities, attrs, compression=compression)
    journal.remove()
    if synthetic and root is None and not keep_raw and raw_dir is not None:
        shutil.rmtree(raw_dir, ignore_errors=True)
    counts = {s: sum(e.split == s for e in entries) for s in ("train", "val", "test")}
    return PrepReport(
        out,
        name or dataset,
        chosen.name,
        len(entries),
        resumed,
        issues,
        counts,
        time.perf_counter() - started,
        errors_csv,
    )


def check_splits(out: Path, entries: list[Entry], journal_dir: Path) -> None:
    """Every cache promises train, val and test samples; refuse (journal kept) to write one without."""
    counts = {s: sum(e.split == s for e in entries) for s in ("train", "val", "test")}
    empty = [s for s, n in counts.items() if n == 0]
    if empty:
        have = ", ".join(f"{s} {n}" for s, n in counts.items())
        raise PrepFailed(
            f"{out}: the {' and '.join(empty)} split would be empty ({have} of {len(entries)} decoded "
            f"samples); add samples, or change --val-fraction/--test-fraction (decoded samples stay "
            f"in {journal_dir})"
        )


def check_output_place(dataset: str, root: Path | None, out: Path) -> None:
    """Refuse a cache inside the raw dataset folder: the prep's own files (``prep_errors.csv``, the
    journal) would become part of the source it scans, so the next run would not resume."""
    if root is None or not Path(root).is_dir() or getattr(adapter_class(dataset), "synthetic", False):
        return
    if Path(root).resolve() in Path(out).resolve().parents:
        raise PrepFailed(
            f"--out {out} is inside --root {root}; write the cache outside the raw dataset folder"
        )


def resolve_options(adapter: Adapter, options: dict[str, Any], seed: int) -> dict[str, Any]:
    """Every scan option with its effective value (defaults included), for the attributes.

    Refuses options the adapter does not take, naming the ones it does.
    """
    params = {
        name: p
        for name, p in inspect.signature(adapter.scan).parameters.items()
        if name != "root" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    unknown = sorted(set(options) - set(params))
    if unknown:
        known = ", ".join(sorted(set(params) - {"seed"})) or "none"
        raise PrepFailed(f"{adapter.name} has no option {', '.join(unknown)} (its options: {known})")
    resolved = {name: p.default for name, p in params.items() if p.default is not inspect.Parameter.empty}
    resolved.update(options)
    if "seed" in params:
        resolved["seed"] = seed
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in resolved.items()}


def manifest_hash(items: list[SourceItem], options: dict[str, Any], synthetic: bool) -> str:
    """sha256 of the sorted (sample_id, label, split, meta, files) rows plus the adapter options.

    ``meta`` is what the adapter knows beyond the files (avmnist's generator recipe, a tweet's text,
    a gesture's frame window); ``files`` is each file's name, size and mtime, except for a synthetic
    dataset, whose clips do not exist before decoding.
    """
    rows = sorted(
        ([i.sample_id, i.label, i.split, i.meta, [] if synthetic else _file_record(i)] for i in items),
        key=lambda row: row[0],
    )
    payload = json.dumps({"rows": rows, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _file_record(item: SourceItem) -> list[list[Any]]:
    record = []
    for modality, path in sorted(item.paths.items()):
        try:
            stat = Path(path).stat()
            record.append([modality, Path(path).name, stat.st_size, stat.st_mtime_ns])
        except OSError:
            record.append([modality, Path(path).name, None, None])
    return record


def _journal_key(source_sha256: str, preset: Preset) -> str:
    """A journal is reusable only for the same source AND the same preset."""
    params = json.dumps(preset.params(), sort_keys=True, default=str)
    return hashlib.sha256(f"{source_sha256}\n{params}".encode()).hexdigest()


def assign_splits(
    items: list[SourceItem], class_names: list[str], val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[str, str], dict[str, Any]]:
    """Final split per sample id, carving test and then val from train where the source lacks them.

    Carving looks at every scanned item (not only the decoded ones), so a failed sample does not
    move other samples between splits. Items with ``meta["group"]`` (a speaker) get a grouped test split.
    """
    splits = {item.sample_id: item.split or "train" for item in items}
    given = set(splits.values())
    label_of = {item.sample_id: class_names.index(item.label) for item in items}
    attrs: dict[str, Any] = {}
    if "test" in given or test_fraction == 0:
        attrs["test_split"] = {"method": "given by the source" if "test" in given else "none"}
    else:
        train = [i for i in items if splits[i.sample_id] == "train"]
        groups = [i.meta.get("group") for i in train]
        if train and all(g is not None for g in groups) and len(set(groups)) >= 2:
            held = grouped_holdout([str(g) for g in groups], test_fraction, seed)
            moved = {i.sample_id for i in train if str(i.meta["group"]) in held}
            attrs["test_split"] = {
                "method": "grouped",
                "fraction": test_fraction,
                "seed": seed,
                "from": "train",
            }
        else:
            ids = [i.sample_id for i in train]
            moved = stratified_carve(ids, [label_of[s] for s in ids], test_fraction, seed)
            attrs["test_split"] = {
                "method": "stratified",
                "fraction": test_fraction,
                "seed": seed,
                "from": "train",
            }
        splits.update(dict.fromkeys(moved, "test"))
    if "val" in given:
        attrs["val_split"] = {"method": "given by the source"}
    else:
        ids = [sid for sid, split in splits.items() if split == "train"]
        moved = stratified_carve(ids, [label_of[s] for s in ids], val_fraction, seed + 1)
        splits.update(dict.fromkeys(moved, "val"))
        attrs["val_split"] = {
            "method": "stratified",
            "fraction": val_fraction,
            "seed": seed + 1,
            "from": "train",
        }
    return splits, attrs


# --- decoding ------------------------------------------------------------------------------------

_worker_state: dict[str, Any] = {}


NATIVE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init_worker(adapter: Adapter, preset: Preset, out: Path, journal_key: str) -> None:
    """Once per decoding process: the scanned adapter, the preset and a handle on the journal."""
    _worker_state.update(adapter=adapter, preset=preset, journal=SampleJournal(out, journal_key))


def _exit_with_parent(parent: int, period_s: float = 0.5) -> None:
    """Stop this worker once ``parent`` is gone (``kill -9`` of the prep leaves no decoders running:
    the pool cannot tell them, so each watches its parent pid)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_pool_worker(adapter: Adapter, preset: Preset, out: Path, journal_key: str, parent: int) -> None:
    """``_init_worker`` in a pool process, with its native thread pools cut to one thread: the
    environment covers libraries loaded later, ``threadpool_limits`` those already loaded (numpy's)."""
    from threadpoolctl import threadpool_limits

    _exit_with_parent(parent)
    # Ctrl-C reaches the whole process group: the parent stops the pool, so a worker must not die
    # of it with a traceback of its own (it would interrupt a journal write, or print from its idle loop).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(dict.fromkeys(NATIVE_THREAD_VARS, "1"))
    threadpool_limits(1)
    _init_worker(adapter, preset, out, journal_key)


def _decode_one(item: SourceItem) -> PrepIssue | None:
    """Decode one item into the journal; a bad file becomes a ``PrepIssue`` instead of an exception."""
    try:
        arrays = _worker_state["adapter"].decode(item, _worker_state["preset"])
    except MediaError as err:
        return _issue(item, str(err))
    except Exception as err:  # any other decoder failure is still about this one file
        return _issue(item, f"cannot decode ({type(err).__name__}: {err}); check the file")
    _worker_state["journal"].write(item.sample_id, arrays)
    return None


def _issue(item: SourceItem, message: str) -> PrepIssue:
    """Split ``"<path>: <reason>"`` (how ``MediaError`` reads) into the issue's path and reason."""
    for path in item.paths.values():
        prefix = f"{path}: "
        if message.startswith(prefix):
            return PrepIssue(item.sample_id, str(path), message[len(prefix) :])
    first = next(iter(item.paths.values()), "")
    return PrepIssue(item.sample_id, str(first), message)


def _decode_all(
    adapter: Adapter,
    preset: Preset,
    todo: list[SourceItem],
    out: Path,
    journal_key: str,
    workers: int,
    strict: bool,
    log: _Log,
) -> Iterator[PrepIssue]:
    """Decode ``todo`` (in-process for one worker, else a spawn pool), yielding problems as they come."""
    if not todo:
        return
    with log.progress(len(todo)) as advance:
        if workers <= 1:
            from threadpoolctl import threadpool_limits

            _init_worker(adapter, preset, out, journal_key)
            with threadpool_limits(1):  # as in a pool worker, restored afterwards
                for item in todo:
                    issue = _decode_one(item)
                    advance()
                    if issue is not None:
                        log.issue(issue)
                        yield issue
            return
        context = multiprocessing.get_context("spawn")
        initargs = (adapter, preset, out, journal_key, os.getpid())
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_pool_worker, initargs=initargs
        ) as pool:
            pending: set[Future] = set()
            queue = iter(todo)
            try:
                while True:
                    for item in queue:
                        pending.add(pool.submit(_decode_one, item))
                        if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                            break
                    if not pending:
                        return
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        issue = future.result()
                        advance()
                        if issue is not None:
                            log.issue(issue)
                            yield issue
            finally:  # Ctrl-C, --strict stop or an error: drop what has not started
                for future in pending:
                    future.cancel()


def _write_errors(out: Path, issues: list[PrepIssue]) -> Path | None:
    """``<stem>.prep_errors.csv`` (atomic) listing every problem; a stale one is removed on a clean run."""
    path = errors_csv_path(out)
    if not issues:
        path.unlink(missing_ok=True)
        return None
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["sample_id", "path", "reason"])
    writer.writerows([i.sample_id, i.path, i.reason] for i in issues)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


class _Log:
    """Problem lines and notes on stderr, and a progress bar (clips/s, ETA) when stderr is a terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False, soft_wrap=True)

    def issue(self, issue: PrepIssue) -> None:
        self.console.print(f"skipped {issue.line()}", markup=False)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False)

    def progress(self, total: int) -> _Progress:
        return _Progress(self.console, total)


class _Progress:
    def __init__(self, console: Any, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.total = total
        self.bar = Progress(
            TextColumn("decoding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.1f} clips/s"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal or total == 0,
            transient=False,
        )
        self.task = self.bar.add_task("decode", total=total, rate=0.0)
        self.count = 0
        self.started = time.perf_counter()

    def __enter__(self) -> Any:
        self.bar.__enter__()
        return self.advance

    def advance(self) -> None:
        self.count += 1
        rate = self.count / max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(self.task, advance=1, rate=rate)

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)
