"""A small, strict Universal Binary JSON (UBJSON draft 12) codec.

XGBoost writes models as UBJ; we use the same encoding for the tree packs that
travel between sites and coordinator because typed numeric arrays are several
times smaller than JSON text. The decoder reads untrusted bytes (a site's reply
or the coordinator's broadcast), so it is bounded: nesting depth, container
sizes and string lengths are checked against the bytes actually present, and
anything unexpected raises :class:`~federation.errors.ModelFormatError`.
Only the subset XGBoost uses is supported (no high-precision numbers, no
optimized objects).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from federation.errors import ModelFormatError

MAX_DEPTH = 32

# marker -> (numpy big-endian dtype) for typed (optimized) arrays
_TYPED: dict[bytes, np.dtype[Any]] = {
    b"i": np.dtype(">i1"),
    b"U": np.dtype(">u1"),
    b"I": np.dtype(">i2"),
    b"l": np.dtype(">i4"),
    b"L": np.dtype(">i8"),
    b"d": np.dtype(">f4"),
    b"D": np.dtype(">f8"),
}
_NATIVE_TO_MARKER: dict[str, bytes] = {
    "int8": b"i",
    "uint8": b"U",
    "int16": b"I",
    "int32": b"l",
    "int64": b"L",
    "float32": b"d",
    "float64": b"D",
}


def _int(value: int) -> bytes:
    if -128 <= value <= 127:
        return b"i" + struct.pack(">b", value)
    if 0 <= value <= 255:
        return b"U" + struct.pack(">B", value)
    if -(2**15) <= value < 2**15:
        return b"I" + struct.pack(">h", value)
    if -(2**31) <= value < 2**31:
        return b"l" + struct.pack(">i", value)
    if -(2**63) <= value < 2**63:
        return b"L" + struct.pack(">q", value)
    raise ModelFormatError("integer out of UBJ range")


def _length(value: int, wide: bool) -> bytes:
    # XGBoost's reader insists on int64 lengths; the spec (and our reader) accept any int.
    return b"L" + struct.pack(">q", value) if wide else _int(value)


def _str_body(value: str, wide: bool) -> bytes:
    raw = value.encode("utf-8")
    return _length(len(raw), wide) + raw


def _encode(value: object, out: list[bytes], depth: int, wide: bool) -> None:
    if depth > MAX_DEPTH:
        raise ModelFormatError("UBJ nesting too deep")
    if value is None:
        out.append(b"Z")
    elif value is True:
        out.append(b"T")
    elif value is False:
        out.append(b"F")
    elif isinstance(value, int | np.integer):
        out.append(_int(int(value)))
    elif isinstance(value, float | np.floating):
        out.append(b"D" + struct.pack(">d", float(value)))
    elif isinstance(value, str):
        out.append(b"S" + _str_body(value, wide))
    elif isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ModelFormatError("only 1-d arrays are encodable")
        marker = _NATIVE_TO_MARKER.get(value.dtype.name)
        if marker is None:
            raise ModelFormatError(f"dtype {value.dtype.name} not encodable")
        out.append(b"[$" + marker + b"#" + _length(int(value.size), wide))
        out.append(value.astype(_TYPED[marker], copy=False).tobytes())
    elif isinstance(value, Mapping):
        out.append(b"{")
        for key, item in value.items():
            if not isinstance(key, str):
                raise ModelFormatError("object keys must be strings")
            out.append(_str_body(key, wide))
            _encode(item, out, depth + 1, wide)
        out.append(b"}")
    elif isinstance(value, Sequence):
        out.append(b"[")
        for item in value:
            _encode(item, out, depth + 1, wide)
        out.append(b"]")
    else:
        raise ModelFormatError(f"type {type(value).__name__} not encodable")


def dumps(value: object, *, xgboost_compatible: bool = False) -> bytes:
    """Encode ``value``; 1-d numpy arrays become typed (optimized) arrays.

    Lengths use the smallest integer type, except with ``xgboost_compatible``
    (XGBoost's reader requires int64 lengths).
    """
    out: list[bytes] = []
    _encode(value, out, 0, xgboost_compatible)
    return b"".join(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelFormatError("UBJ document truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def marker(self) -> bytes:
        return bytes(self.take(1))

    def length(self) -> int:
        value = self.scalar(self.marker())
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ModelFormatError("UBJ length must be a non-negative integer")
        if value > len(self.data) - self.pos:
            raise ModelFormatError("UBJ length exceeds the document")
        return value

    def scalar(self, marker: bytes) -> object:
        if marker in _TYPED:
            dtype = _TYPED[marker]
            raw = self.take(dtype.itemsize)
            item = np.frombuffer(raw, dtype=dtype)[0]
            return float(item) if dtype.kind == "f" else int(item)
        if marker == b"Z":
            return None
        if marker == b"T":
            return True
        if marker == b"F":
            return False
        if marker == b"S":
            return self.string()
        raise ModelFormatError("unexpected UBJ marker")

    def string(self) -> str:
        n = self.length()
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFormatError("UBJ string is not UTF-8") from exc

    def value(self, marker: bytes, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise ModelFormatError("UBJ nesting too deep")
        if marker == b"[":
            return self.array(depth)
        if marker == b"{":
            return self.obj(depth)
        return self.scalar(marker)

    def array(self, depth: int) -> object:
        if bytes(self.data[self.pos : self.pos + 1]) == b"$":
            self.take(1)
            marker = self.marker()
            if marker not in _TYPED or self.marker() != b"#":
                raise ModelFormatError("unsupported typed UBJ array")
            count = self.length()
            dtype = _TYPED[marker]
            raw = self.take(count * dtype.itemsize)
            return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        if bytes(self.data[self.pos : self.pos + 1]) == b"#":
            self.take(1)
            return [self.value(self.marker(), depth + 1) for _ in range(self.length())]
        items: list[object] = []
        while True:
            marker = self.marker()
            if marker == b"]":
                return items
            items.append(self.value(marker, depth + 1))

    def obj(self, depth: int) -> dict[str, object]:
        result: dict[str, object] = {}
        while True:
            if bytes(self.data[self.pos : self.pos + 1]) == b"}":
                self.take(1)
                return result
            key = self.string()
            if key in result:
                raise ModelFormatError("duplicate key in UBJ object")
            result[key] = self.value(self.marker(), depth + 1)


def loads(data: bytes) -> object:
    """Decode one UBJ document; trailing bytes are an error."""
    reader = _Reader(data)
    value = reader.value(reader.marker(), 0)
    if reader.pos != len(reader.data):
        raise ModelFormatError("trailing bytes after UBJ document")
    return value
