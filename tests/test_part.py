"""The journal's part format: every dtype and shape back bit for bit; cut-short, zeroed and foreign
files are refused (a power loss, or a stray file in the journal folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrebal.cache.part import TornPart, read_part, whole_part, write_part


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "visual/frames": rng.integers(0, 255, (2, 5, 7, 3), dtype=np.uint8),
        "audio/spec": rng.standard_normal((4, 9)).astype(np.float32),
        "text/ids": rng.integers(0, 30000, 12).astype(np.int64),
        "text/mask": np.ones(12, bool),
        "scalar": np.array(3.5, np.float64),
        "empty": np.zeros((0, 4), np.int16),
        "strided": np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],  # not contiguous
        "big_endian": np.arange(6, dtype=">u4"),
    }


def test_a_part_returns_every_array_bit_for_bit_and_writable(tmp_path: Path) -> None:
    path = tmp_path / "a.part"
    write_part(path, arrays())
    back = read_part(path)
    assert list(back) == list(arrays())
    for key, value in arrays().items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        np.testing.assert_array_equal(back[key], value)
    back["audio/spec"][0, 0] = 1.0  # a caller may modify what it read
    assert whole_part(path) and [p.name for p in tmp_path.iterdir()] == ["a.part"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # cut short
        lambda b: b[:-1],
        lambda b: b"",
        lambda b: b"\0" * len(b),  # a power loss may bring the blocks back as zeros
        lambda b: b"PK\x03\x04" + b[4:],  # not a part (a stray zip)
    ],
)
def test_a_damaged_part_is_refused_by_its_size_check(tmp_path: Path, damage) -> None:
    path = tmp_path / "a.part"
    write_part(path, arrays())
    path.write_bytes(damage(path.read_bytes()))
    assert not whole_part(path)
    with pytest.raises(TornPart):
        read_part(path)


def test_a_part_of_the_right_size_with_zeroed_bytes_fails_its_crc(tmp_path: Path) -> None:
    path = tmp_path / "a.part"
    write_part(path, arrays())
    data = bytearray(path.read_bytes())
    data[-40:-4] = bytes(36)  # the last block's array bytes lost, the size kept
    path.write_bytes(bytes(data))
    assert whole_part(path)  # cheap check at journal open: only the size
    with pytest.raises(TornPart, match="CRC"):
        read_part(path)


def test_object_arrays_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="notes: an array of Python objects"):
        write_part(tmp_path / "a.part", {"notes": np.array([{"a": 1}], dtype=object)})
    assert list(tmp_path.iterdir()) == []
