"""The HDF5 cache: journal, atomic assembly, format checks, and the torch Dataset over it."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmrebal.cache import rows
from mmrebal.cache.dataset import CacheDataset, batch_collate, model_inputs
from mmrebal.cache.format import FORMAT_VERSION, CacheError, open_cache, read_info
from mmrebal.cache.writer import Entry, SampleJournal, assemble

KINDS = {"audio": "spectrogram", "visual": "frames"}


def sample(i: int) -> dict[str, np.ndarray]:
    return {
        "audio/spec": np.full((4, 5), i, np.float32),
        "visual/frames": np.full((2, 6, 6, 3), i, np.uint8),
    }


def build(tmp_path: Path, n: int = 10, name: str = "c.h5") -> Path:
    out = tmp_path / name
    journal = SampleJournal(out, "hash-1")
    entries = []
    for i in range(n):
        journal.write(f"id{i}", sample(i))
        entries.append(Entry(f"id{i}", i % 2, ("train", "train", "val", "test", "train")[i % 5]))
    assemble(journal, entries, out, ["even", "odd"], KINDS, {"dataset": "toy", "params": {"n_fft": 512}})
    return out


def test_journal_round_trip_and_reset_on_a_new_source(tmp_path: Path):
    out = tmp_path / "c.h5"
    journal = SampleJournal(out, "a")
    journal.write("x/1", sample(3))
    assert journal.done("x/1") and not journal.done("x/2")
    np.testing.assert_array_equal(journal.read("x/1")["visual/frames"], sample(3)["visual/frames"])
    again = SampleJournal(out, "a")
    assert again.reset_reason is None and again.done("x/1")
    changed = SampleJournal(out, "b")
    assert "source changed" in changed.reset_reason and not changed.done("x/1")
    changed.remove()
    assert not changed.dir.exists()


def test_journal_parts_skip_the_fsync_and_torn_ones_are_decoded_again(tmp_path: Path, monkeypatch):
    out = tmp_path / "c.h5"
    journal = SampleJournal(out, "a")
    synced = []
    monkeypatch.setattr("os.fsync", lambda fd: synced.append(fd))
    for i in range(3):
        journal.write(f"s{i}", sample(i))
    assert synced == []  # the parts only; the finished cache is fsynced (atomic_path)
    empty, flipped = journal._path("s0"), journal._path("s1")  # what a power loss may leave
    empty.write_bytes(b"")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the array bytes: the size still matches its header
    flipped.write_bytes(bytes(data))
    again = SampleJournal(out, "a")
    assert again.dropped == 1 and not again.done("s0") and again.done("s1") and again.done("s2")
    with pytest.raises(CacheError, match="s1: its decoded part .* was torn"):
        again.read("s1")
    assert not again.done("s1")  # removed: a re-run decodes it again
    np.testing.assert_array_equal(again.read("s2")["audio/spec"], sample(2)["audio/spec"])


def test_assemble_writes_layout_attributes_and_one_sample_chunks(tmp_path: Path):
    out = build(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    with h5py.File(out) as f:
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert f["visual/frames"].shape == (10, 2, 6, 6, 3) and f["visual/frames"].chunks == (1, 2, 6, 6, 3)
        assert f["audio/spec"].chunks == (1, 4, 5)
        np.testing.assert_array_equal(f["audio/spec"][7], sample(7)["audio/spec"])
        assert [s.decode() for s in f["sample_id"][:3]] == ["id0", "id1", "id2"]
    info = read_info(out)
    assert info.n == 10 and info.modalities == KINDS and info.class_names == ["even", "odd"]
    assert info.shapes == {"audio/spec": (4, 5), "visual/frames": (2, 6, 6, 3)}
    assert info.split_counts == {"train": 6, "val": 2, "test": 2}
    assert info.attrs["dataset"] == "toy" and info.attrs["params"] == {"n_fft": 512}


def test_assemble_refuses_bad_entries_and_leaves_no_file(tmp_path: Path):
    out = tmp_path / "c.h5"
    journal = SampleJournal(out, "h")
    journal.write("a", sample(0))
    journal.write(
        "b", {"audio/spec": np.zeros((4, 6), np.float32), "visual/frames": sample(1)["visual/frames"]}
    )
    with pytest.raises(CacheError, match="appears twice"):
        assemble(journal, [Entry("a", 0, "train"), Entry("a", 0, "test")], out, ["x"], KINDS, {})
    with pytest.raises(CacheError, match="unknown split 'dev'"):
        assemble(journal, [Entry("a", 0, "dev")], out, ["x"], KINDS, {})
    with pytest.raises(CacheError, match=r"b: audio/spec has shape \(4, 6\), expected \(4, 5\)"):
        assemble(journal, [Entry("a", 0, "train"), Entry("b", 0, "train")], out, ["x"], KINDS, {})
    with pytest.raises(CacheError, match="nothing to write"):
        assemble(journal, [], out, ["x"], KINDS, {})
    assert list(tmp_path.glob("*.h5")) == [] and list(tmp_path.glob(".c.h5*")) == []


def test_open_cache_refuses_missing_foreign_and_unknown_versions(tmp_path: Path):
    with pytest.raises(CacheError, match="no such cache; build it with `mmrebal prep"):
        open_cache(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(CacheError, match="not a readable HDF5 cache"):
        open_cache(tmp_path / "text.h5")
    out = build(tmp_path)
    with h5py.File(out, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CacheError, match=f"version {FORMAT_VERSION + 1} is not supported.*rebuild it"):
        read_info(out)


def test_dataset_items_batches_and_preload_agree(tmp_path: Path):
    out = build(tmp_path)
    lazy = CacheDataset(out, "train")
    assert len(lazy) == 6 and lazy.sample_ids == ["id0", "id1", "id4", "id5", "id6", "id9"]
    item = lazy[2]
    assert item["idx"] == 2 and item["label"] == 0
    assert item["audio"].shape == (4, 5) and torch.all(item["audio"] == 4)
    assert item["visual"].shape == (2, 6, 6, 3) and item["visual"].dtype == torch.uint8  # stored layout
    batch = lazy.__getitems__([5, 0, 5])
    assert batch["idx"].tolist() == [5, 0, 5] and batch["label"].tolist() == [1, 0, 1]
    assert batch["audio"][:, 0, 0].tolist() == [9.0, 0.0, 9.0]
    eager = CacheDataset(out, "train", preload=True).__getitems__([5, 0, 5])
    for key in ("audio", "visual", "label"):
        assert torch.equal(batch[key], eager[key])
    clone = pickle.loads(pickle.dumps(lazy))  # what a DataLoader worker receives: no open handle
    assert clone._file is None and torch.equal(clone[1]["audio"], lazy[1]["audio"])


def test_reading_one_modality_never_touches_another(tmp_path: Path, monkeypatch):
    out = build(tmp_path)
    touched: list[str] = []
    original = h5py.Group.__getitem__

    def spy(self, name):
        touched.append(f"{self.name}/{name}" if isinstance(name, str) else str(name))
        return original(self, name)

    monkeypatch.setattr(h5py.Group, "__getitem__", spy)
    ds = CacheDataset(out, "test", modalities=["audio"])  # where the rows' chunks sit: asked of HDF5 here
    batch = ds.__getitems__([0, 1])
    assert set(batch) == {"idx", "label", "audio"} and set(ds.keys) == {"audio/spec"}
    assert touched and not any("visual" in t for t in touched)
    with pytest.raises(ValueError, match="no modality depth"):
        CacheDataset(out, "test", modalities=["depth"])


def test_dataloader_workers_open_the_file_lazily(tmp_path: Path):
    out = build(tmp_path, n=20)
    ds = CacheDataset(out, "train")
    loader = DataLoader(ds, batch_size=4, num_workers=1, collate_fn=batch_collate)
    seen = torch.cat([b["idx"] for b in loader])
    assert seen.tolist() == list(range(len(ds)))
    assert ds._file is None  # the parent never opened a handle


ALL_KINDS = {"visual": "frames", "image": "image", "audio": "spectrogram", "text": "tokens"}


def all_kinds_sample(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "visual/frames": rng.integers(0, 256, (2, 5, 4, 3), dtype=np.uint8),
        "image/pixels": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
        "audio/spec": rng.standard_normal((7, 3)).astype(np.float32),
        "text/input_ids": rng.integers(0, 30000, 8, dtype=np.int64),
        "text/attention_mask": (np.arange(8) < rng.integers(1, 9)).astype(np.int64),
    }


# raw chunk reads (gathered from the mapped file, or one preadv per row); filtered ones
@pytest.mark.parametrize(
    ("compression", "gather_max"), [(None, 64 << 10), (None, 0), ("lzf", 0), ("gzip", 0)]
)
@pytest.mark.parametrize("preload", [False, True])
def test_batch_reads_equal_per_row_reads_for_every_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression, gather_max, preload
):
    monkeypatch.setattr(rows, "GATHER_MAX", gather_max)
    rng = np.random.default_rng(0)
    out = tmp_path / "all.h5"
    journal = SampleJournal(out, "all-kinds")
    entries = []
    for i in range(12):
        journal.write(f"s{i}", all_kinds_sample(rng))
        entries.append(Entry(f"s{i}", i % 3, "val" if i % 4 == 1 else "train"))
    assemble(journal, entries, out, ["a", "b", "c"], ALL_KINDS, {}, compression=compression)
    ds = CacheDataset(out, "train", preload=preload)
    positions = [6, 0, 3, 3, 8, 0, 1]  # unsorted, with duplicates
    batch = ds.__getitems__(positions)
    assert batch["idx"].tolist() == positions
    with h5py.File(out) as f:
        for key in all_kinds_sample(rng):
            group, name = key.split("/")
            got = batch[group][name] if group == "text" else batch[group]
            want = np.stack([f[key][ds.rows[p]] for p in positions])  # plain per-row h5py reads
            assert got.dtype == torch.from_numpy(want).dtype
            np.testing.assert_array_equal(got.numpy(), want)
        labels = np.asarray(f["label"][:])[ds.rows[positions]]
    np.testing.assert_array_equal(batch["label"].numpy(), labels)
    for i, p in enumerate(positions):  # single items are the batch's rows
        item = ds[p]
        assert torch.equal(item["visual"], batch["visual"][i])
        assert torch.equal(item["audio"], batch["audio"][i])
        assert torch.equal(item["text"]["input_ids"], batch["text"]["input_ids"][i])


@pytest.mark.parametrize("gather_max", [64 << 10, 0])  # from the mapped file; one preadv per row
def test_a_row_cut_short_by_a_truncated_file_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gather_max: int
):
    monkeypatch.setattr(rows, "GATHER_MAX", gather_max)
    out = build(tmp_path, n=8)
    with h5py.File(out) as f:
        offsets = rows.chunk_offsets(f["audio/spec"])
        shape, dtype = f["audio/spec"].shape[1:], f["audio/spec"].dtype
    last = int(np.argmax(offsets))
    with open(out, "r+b") as handle:  # the file ends inside the last row's chunk
        handle.truncate(int(offsets[last]) + 3)
    reader = rows.RowFile(out)
    batch = np.empty((2, *shape), dtype)
    with pytest.raises(OSError, match="rebuild the cache"):
        reader.read(offsets, np.array([0, last]), batch)
    reader.close()


@pytest.mark.parametrize("gather_max", [64 << 10, 0])  # one fresh gather; into a pooled buffer
@pytest.mark.parametrize("preload", [False, True])
def test_a_position_past_the_split_is_an_index_error_and_an_empty_batch_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gather_max: int, preload: bool
):
    monkeypatch.setattr(rows, "GATHER_MAX", gather_max)
    ds = CacheDataset(build(tmp_path), "train", preload=preload)
    with pytest.raises(IndexError):
        ds.__getitems__([0, len(ds)])
    empty = ds.__getitems__([])  # an empty batch is empty arrays of the stored row shapes
    assert empty["audio"].shape == (0, 4, 5) and empty["visual"].shape == (0, 2, 6, 6, 3)


def test_model_inputs_convert_stored_layouts_as_the_models_expect(tmp_path: Path):
    rng = np.random.default_rng(1)
    raw = {m: torch.from_numpy(np.stack([all_kinds_sample(rng)[m] for _ in range(2)])) for m in (
        "visual/frames", "image/pixels", "audio/spec")}  # fmt: skip
    ids = torch.arange(16, dtype=torch.int32).view(2, 8)
    batch = {"idx": torch.tensor([0, 1]), "visual": raw["visual/frames"], "image": raw["image/pixels"],
             "audio": raw["audio/spec"], "text": {"input_ids": ids}}  # fmt: skip
    out = model_inputs(batch, ALL_KINDS)
    assert out["visual"].shape == (2, 2, 3, 5, 4) and out["visual"].dtype == torch.float32
    assert out["image"].shape == (2, 3, 6, 5) and out["audio"].shape == (2, 1, 7, 3)
    assert out["text"]["input_ids"].dtype == torch.int64 and torch.equal(out["idx"], batch["idx"])
    pixel = raw["image/pixels"][1, 4, 2].float() / 255.0  # row 4, column 2, RGB
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out["image"][1, :, 4, 2], (pixel - mean) / std)
    frame_pixel = raw["visual/frames"][0, 1, 3, 0].float() / 255.0
    torch.testing.assert_close(out["visual"][0, 1, :, 3, 0], (frame_pixel - mean) / std)
