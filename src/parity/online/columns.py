"""Online rows encoded column by column from an Arrow batch: materialization's fast path.

The bytes are exactly those of encoding.py (entity key, value header, msgpack payload), built with
NumPy where the columns allow it (one signed-integer join key; float features without nulls) and
row by row through encoding.py otherwise. Imports numpy and pyarrow: load it only to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.types as pat

from parity.arrays import numpy_of
from parity.definitions import FeatureView
from parity.online.encoding import encode_payload, entity_keys, header

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE_SHIFTS = np.arange(60, -1, -4, dtype=np.uint64)  # 16 hex digits, most significant first
_SIGN = np.uint64(1 << 63)
_DOUBLE = b"\xcb"  # msgpack's float 64 marker: how msgpack packs every Python float


Bytes: TypeAlias = np.ndarray | list[bytes]
"""A column of byte strings: a 2-D uint8 array (one row each, all of one width) or a list."""


@dataclass(frozen=True)
class EncodedRows:
    """One view's rows ready for a store's batch write, in the batch's order: versions (µs),
    expiry (µs, None for never), and as bytes, built when a store asks (a store needs two of
    the four): entity keys, Redis keys, msgpack payloads, and values (the header plus the
    payload, what encoding.encode_value gives and a Redis hash field holds)."""

    view: str
    event_ts: list[int]
    created_ts: list[int]
    expires_at: list[int | None]
    keys: Bytes
    headers: Bytes
    payload_column: Bytes

    def __len__(self) -> int:
        return len(self.event_ts)

    def entity_keys(self) -> list[bytes]:
        return _listed(self.keys)

    def payloads(self) -> list[bytes]:
        return _listed(self.payload_column)

    def values(self) -> list[bytes]:
        if isinstance(self.headers, np.ndarray) and isinstance(self.payload_column, np.ndarray):
            return _split(np.concatenate([self.headers, self.payload_column], axis=1))
        pairs = zip(_listed(self.headers), _listed(self.payload_column), strict=True)
        return [head + payload for head, payload in pairs]

    def hex_keys(self, head: bytes = b"", tail: bytes = b"") -> list[bytes]:
        """`head` + each entity key in lowercase hex ASCII (bytes.hex) + `tail`."""
        if isinstance(self.keys, np.ndarray):
            rows = len(self.keys)
            ends = [
                np.broadcast_to(np.frombuffer(b, np.uint8), (rows, len(b))) for b in (head, tail)
            ]
            return _split(np.concatenate([ends[0], _hex_digits(self.keys), ends[1]], axis=1))
        return [head + key.hex().encode() + tail for key in self.keys]

    def head(self, count: int) -> EncodedRows:
        """The first `count` rows."""
        return EncodedRows(
            self.view,
            self.event_ts[:count],
            self.created_ts[:count],
            self.expires_at[:count],
            self.keys[:count],
            self.headers[:count],
            self.payload_column[:count],
        )


def encode_rows(view: FeatureView, batch: pa.RecordBatch) -> EncodedRows:
    """The rows of `batch` (join keys, __ts, __created µs, the view's features, as the engine's
    `latest` answers) encoded as rows_from_columns + encode_value would encode them."""
    events = numpy_of(batch.column("__ts")).astype(np.int64)
    created = numpy_of(batch.column("__created")).astype(np.int64)
    ttl = None if view.ttl is None else int(view.ttl.total_seconds() * 1_000_000)
    event_list, created_list = events.tolist(), created.tolist()
    expires: list[int | None] = (
        [None] * len(event_list) if ttl is None else [e + ttl for e in event_list]
    )
    payloads: Bytes | None = _fixed_payloads(view, batch)
    headers: Bytes
    if payloads is None:
        payloads = _row_payloads(view, batch)
        headers = [header(e, c) for e, c in zip(event_list, created_list, strict=True)]
    else:
        headers = _headers(events, created)
    keys = _entity_keys(view, batch)
    return EncodedRows(view.name, event_list, created_list, expires, keys, headers, payloads)


def _listed(column: Bytes) -> list[bytes]:
    return _split(column) if isinstance(column, np.ndarray) else column


def _hex_digits(raw: np.ndarray) -> np.ndarray:
    digits = np.empty((raw.shape[0], raw.shape[1] * 2), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 0x0F]
    return digits


def hex_of(items: list[bytes]) -> list[bytes]:
    """bytes.hex() of each item, as ASCII bytes."""
    width = len(items[0]) if items else 0
    if not items or any(len(item) != width for item in items):
        return [item.hex().encode() for item in items]
    raw = np.frombuffer(b"".join(items), dtype=np.uint8).reshape(len(items), width)
    return _split(_hex_digits(raw))


def _split(matrix: np.ndarray) -> list[bytes]:
    """The rows of a 2-D uint8 array as bytes objects."""
    rows, width = matrix.shape
    data = np.ascontiguousarray(matrix).tobytes()
    return [data[start : start + width] for start in range(0, rows * width, width)]


def _headers(events: np.ndarray, created: np.ndarray) -> np.ndarray:
    """encoding.header for each row: both times offset by 2**63, as 16 lowercase hex digits."""
    parts = []
    for stamps in (events, created):
        offset = stamps.view(np.uint64) ^ _SIGN  # + 2**63, wrapped into uint64
        parts.append(_HEX[((offset[:, None] >> _NIBBLE_SHIFTS) & np.uint64(15)).astype(np.intp)])
    return np.concatenate(parts, axis=1)


def _entity_keys(view: FeatureView, batch: pa.RecordBatch) -> Bytes:
    names = view.join_keys
    column = batch.column(names[0])
    if len(names) == 1 and pat.is_signed_integer(column.type) and column.null_count == 0:
        prefix = entity_keys(names, [[0]])[0][:-8]  # b"\x01", the name, b"i"; then the int64
        numbers = numpy_of(column).astype(">i8").view(np.uint8).reshape(len(column), 8)
        template = np.frombuffer(prefix, dtype=np.uint8)
        return np.concatenate([np.broadcast_to(template, (len(column), len(prefix))), numbers], 1)
    return entity_keys(names, [batch.column(k).to_pylist() for k in names])


def _fixed_payloads(view: FeatureView, batch: pa.RecordBatch) -> np.ndarray | None:
    """The msgpack maps as one row of bytes each, when every feature is a float column without
    nulls (each value then packs as 9 bytes); None otherwise."""
    names = view.feature_names
    columns = [batch.column(name) for name in names]
    if not names or any(
        not (pat.is_float32(c.type) or pat.is_float64(c.type)) or c.null_count for c in columns
    ):
        return None
    rows = batch.num_rows
    parts = [np.broadcast_to(_map_header(len(names)), (rows, len(_map_header(len(names)))))]
    for name, column in zip(names, columns, strict=True):
        label = np.frombuffer(msgpack.packb(name) + _DOUBLE, dtype=np.uint8)
        parts.append(np.broadcast_to(label, (rows, len(label))))
        doubles = numpy_of(column).astype(">f8")
        parts.append(doubles.view(np.uint8).reshape(rows, 8))
    return np.concatenate(parts, axis=1)


def _map_header(size: int) -> np.ndarray:
    """msgpack's header of a map of `size` entries (what packb writes before the first key)."""
    packed = msgpack.packb({str(i): None for i in range(size)})
    body = b"".join(msgpack.packb(str(i)) + b"\xc0" for i in range(size))
    return np.frombuffer(packed[: len(packed) - len(body)], dtype=np.uint8)


def _row_payloads(view: FeatureView, batch: pa.RecordBatch) -> list[bytes]:
    names = view.feature_names
    if not names:
        return [encode_payload({})] * batch.num_rows
    features = [batch.column(name).to_pylist() for name in names]
    return [
        encode_payload(dict(zip(names, row, strict=True))) for row in zip(*features, strict=True)
    ]
