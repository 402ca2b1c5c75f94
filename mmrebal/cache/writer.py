"""Crash-safe cache writing: a journal of finished samples, then one atomic assembly.

Each decoded sample is written as its own part (``mmrebal.cache.part``) in ``<out>.parts/`` (temp
file + rename), so a Ctrl-C or ``kill -9`` at any moment loses at most the samples in flight and a
re-run skips what is done. The parts are not fsynced one by one (that cost ~5-8 ms a sample, several
% of a clip's decode): a power loss may leave some torn, and reopening the journal drops those cut
short (their CRC catches the rest when read), so they are decoded again. The HDF5 file is assembled
from the journal into a temp file and renamed into place only when complete, streaming one sample at
a time so peak memory does not grow with the dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mmrebal import __version__
from mmrebal.cache import jpeg
from mmrebal.cache.format import FORMAT_VERSION, SPLITS, CacheError, attr_value
from mmrebal.cache.part import TornPart, read_part, whole_part, write_part
from mmrebal.storage import StorageError, atomic_path, atomic_write_bytes, free_space, human_size


@dataclass(frozen=True)
class Entry:
    """One sample's metadata as the assembly needs it (arrays live in the journal)."""

    sample_id: str
    label: int
    split: str


PART_SUFFIX = ".part"  # parts of older versions (.npz) are not read: their samples are decoded again


class SampleJournal:
    """Finished samples of one prep run, keyed by sample id, tied to the source manifest's hash."""

    def __init__(self, out: Path, manifest_hash: str) -> None:
        self.dir = out.with_name(out.name + ".parts")
        self.manifest_hash = manifest_hash
        self.reset_reason: str | None = None
        meta = self.dir / "journal.json"
        if meta.exists():
            recorded = json.loads(meta.read_text()).get("manifest_hash")
            if recorded != manifest_hash:
                self.reset_reason = (
                    f"{self.dir}: the source changed since the interrupted prep; starting over"
                )
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not meta.exists():
            atomic_write_bytes(meta, json.dumps({"manifest_hash": manifest_hash}).encode())
        self.dropped = self._drop_torn()

    def _drop_torn(self) -> int:
        """Remove parts a power loss left cut short; how many there were."""
        torn = [part for part in self.dir.glob(f"*{PART_SUFFIX}") if not whole_part(part)]
        for part in torn:
            part.unlink(missing_ok=True)
        return len(torn)

    def _path(self, sample_id: str) -> Path:
        digest = hashlib.sha1(sample_id.encode()).hexdigest()[:16]
        return self.dir / f"{digest}{PART_SUFFIX}"

    def done(self, sample_id: str) -> bool:
        return self._path(sample_id).exists()

    def write(self, sample_id: str, arrays: dict[str, np.ndarray]) -> None:
        write_part(self._path(sample_id), arrays)

    def read(self, sample_id: str) -> dict[str, np.ndarray]:
        """A part's arrays; a torn one (its CRC fails) is removed, so that a re-run decodes it again."""
        path = self._path(sample_id)
        try:
            return read_part(path)
        except TornPart as exc:
            path.unlink(missing_ok=True)
            raise CacheError(
                f"{sample_id}: its decoded part in {self.dir} was torn ({exc}; a power loss?); it is "
                "removed, re-run the prep to decode it again"
            ) from None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class _AbandonableFile(io.FileIO):
    """The HDF5 file's bytes, written through Python so that a refused write never reaches HDF5.

    HDF5 cannot always unwind from a failed write (a full disk during assembly ended in a segfault
    while h5py freed its objects), so the first ``OSError`` is kept, later writes are dropped, HDF5
    finishes on a file that will be abandoned, and the error is raised on exit instead.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, "w+")
        self.failure: OSError | None = None

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if self.failure is None:
            try:
                return super().write(data) or 0
            except OSError as exc:
                self.failure = exc
        return size

    def truncate(self, size: int | None = None) -> int:
        if self.failure is None:
            try:
                return super().truncate(size)
            except OSError as exc:
                self.failure = exc
        return size or 0

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        if self.failure is not None:
            raise self.failure


def check_free_space(out: Path, payload_bytes: int) -> None:
    """Refuse before HDF5 starts writing: a full disk in the middle of an HDF5 write is not an error
    h5py can always report (the library may crash), so the space is checked first."""
    probe = out.parent if out.parent.exists() else Path.cwd()
    need = int(payload_bytes * 1.01) + 2**20  # chunk index and attributes: well under 1% here
    free = shutil.disk_usage(probe).free
    if free < need:
        raise StorageError(
            f"cannot write {out}: it needs about {human_size(need)} and {free_space(out)} is free "
            "there; free some space or write elsewhere (the decoded samples are kept, re-run to resume)"
        )


def assemble(
    journal: SampleJournal,
    entries: Sequence[Entry],
    out: Path,
    class_names: Sequence[str],
    modality_kinds: dict[str, str],
    attrs: dict[str, Any],
    compression: str | None = None,
) -> Path:
    """Write the HDF5 cache from the journal in ``entries`` order; the file appears only when complete.

    ``compression``: None (raw), an HDF5 filter of every per-sample array (``lzf``, ``gzip``), or
    ``jpeg``: frames and images JPEG-encoded (``mmrebal.cache.jpeg``), the other arrays raw."""
    if not entries:
        raise CacheError(f"{out}: nothing to write (no sample was prepared)")
    ids = [e.sample_id for e in entries]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise CacheError(f"{out}: sample id {dup!r} appears twice in the source; ids must be unique")
    for e in entries:
        if e.split not in SPLITS:
            raise CacheError(f"{out}: sample {e.sample_id!r} has unknown split {e.split!r}")
    first = journal.read(entries[0].sample_id)
    n = len(entries)
    if compression is None:
        check_free_space(out, n * sum(v.nbytes for v in first.values()))
    with atomic_path(out) as tmp, _AbandonableFile(tmp) as raw, h5py.File(raw, "w") as f:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["mmrebal_version"] = __version__
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for key, value in attrs.items():
            f.attrs[key] = attr_value(value)
        f.create_dataset("label", data=np.array([e.label for e in entries], dtype=np.int64))
        f.create_dataset("split", data=np.array([e.split.encode() for e in entries]))
        f.create_dataset("sample_id", data=np.array([e.sample_id.encode() for e in entries]))
        f.create_dataset("class_names", data=np.array([c.encode() for c in class_names]))
        arrays = {}
        for key, value in first.items():
            group_name = key.split("/", 1)[0]
            group = f.require_group(group_name)
            group.attrs["kind"] = modality_kinds[group_name]
            if compression == "jpeg" and jpeg.encodable(value):
                arrays[key] = jpeg.create(f, key, n, value)
                continue
            arrays[key] = f.create_dataset(
                key,
                shape=(n, *value.shape),
                dtype=value.dtype,
                chunks=(1, *value.shape),
                compression=None if compression == "jpeg" else compression,
            )
        for row, entry in enumerate(entries):
            sample = first if row == 0 else journal.read(entry.sample_id)
            for key, ds in arrays.items():
                value = sample.get(key)
                if value is None or value.shape != jpeg.decoded_shape(ds):
                    got = None if value is None else value.shape
                    raise CacheError(
                        f"{entry.sample_id}: {key} has shape {got}, expected {jpeg.decoded_shape(ds)}; "
                        "the preset must give every sample the same shape"
                    )
                if jpeg.encoded(ds):
                    jpeg.write(ds, row, value)
                else:
                    ds[row] = value
    return out
