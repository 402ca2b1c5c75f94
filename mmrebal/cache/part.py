"""One decoded sample as one journal file: a header, the raw array bytes, a CRC32 trailer.

The prep journal writes every sample once and reads it back once. An ``.npz`` builds its zip in
memory and copies it, and checks a CRC per member on read; this layout writes the arrays' own
buffers straight to the file, and reads the file with one copy into one buffer that the arrays then
view (``benchmarks/prep.py``, one worker: write + read 1.5 -> 0.9 ms an ``ogm-3f`` sample, 1.6 ->
1.4 ms a ``bss-ks`` one). Its size is in the header, so a part a power loss cut short is found
without reading it; its CRC catches one whose blocks came back as zeros, when it is read.

Layout: ``MAGIC``, the header length (uint32, little-endian), the JSON header (one
``[key, dtype, shape]`` per array), the arrays' C-order bytes in header order, and the CRC32 of
header and bytes (uint32, little-endian).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from mmrebal.storage import atomic_path

MAGIC = b"MMRPART1"
_LENGTH = struct.Struct("<I")
_PREFIX = len(MAGIC) + _LENGTH.size


class TornPart(ValueError):
    """The file is not a whole part (cut short, zeroed, or not a part at all)."""


def write_part(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (temp file + rename), without an fsync: the journal
    trusts a part only once its size and CRC check out (:func:`read_part`)."""
    ready = {key: np.asarray(value, order="C") for key, value in arrays.items()}  # keeps 0-d ones 0-d
    for key, value in ready.items():
        if value.dtype.hasobject:
            raise TypeError(f"{key}: an array of Python objects cannot be cached; give it a numeric dtype")
    header = json.dumps([[key, value.dtype.str, list(value.shape)] for key, value in ready.items()]).encode()
    size = _PREFIX + len(header) + sum(v.nbytes for v in ready.values()) + _LENGTH.size
    with atomic_path(path, size, durable=False) as tmp, open(tmp, "wb") as fh:
        fh.write(MAGIC + _LENGTH.pack(len(header)) + header)
        crc = zlib.crc32(header)
        for value in ready.values():
            flat = value.reshape(-1).view(np.uint8)
            crc = zlib.crc32(flat, crc)
            fh.write(flat)
        fh.write(_LENGTH.pack(crc))


def read_part(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the part at ``path`` (views of one writable buffer); ``TornPart`` when it is not
    whole, ``OSError`` when it cannot be read."""
    with open(path, "rb") as fh:
        buf = bytearray(Path(path).stat().st_size)
        got = fh.readinto(buf)
    header, start = _header(buf, got)
    checked = memoryview(buf)[_PREFIX : got - _LENGTH.size]
    if zlib.crc32(checked) != _LENGTH.unpack_from(buf, got - _LENGTH.size)[0]:
        raise TornPart("its CRC does not match")
    arrays, offset = {}, start
    for key, dtype, shape in header:
        count = int(np.prod(shape, dtype=np.int64))
        arrays[key] = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += arrays[key].nbytes
    return arrays


def whole_part(path: Path) -> bool:
    """Whether ``path`` is as long as its header says (cheap: the bytes are checked when read)."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(_PREFIX)
            if len(head) == _PREFIX and head.startswith(MAGIC):
                head += fh.read(_LENGTH.unpack_from(head, len(MAGIC))[0])
        _header(head, size)
        return True
    except (OSError, TornPart):
        return False


def _header(head: bytes | bytearray, size: int) -> tuple[list[tuple[str, str, list[int]]], int]:
    """The parsed header and where the array bytes start, checked against the file's ``size``."""
    if len(head) < _PREFIX or head[: len(MAGIC)] != MAGIC:
        raise TornPart("it does not start like a journal part")
    length = _LENGTH.unpack_from(head, len(MAGIC))[0]
    if _PREFIX + length > len(head):
        raise TornPart("its header is cut short")
    try:
        header = json.loads(head[_PREFIX : _PREFIX + length])
        payload = sum(_nbytes(dtype, shape) for _, dtype, shape in header)
    except (ValueError, TypeError) as exc:
        raise TornPart(f"its header is unreadable ({exc})") from None
    promised = _PREFIX + length + payload + _LENGTH.size
    if size != promised:
        raise TornPart(f"it holds {size} bytes where its header promises {promised}")
    return header, _PREFIX + length


def _nbytes(dtype: str, shape: list[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
