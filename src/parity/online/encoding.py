"""Version 1 of the online key and value encoding (docs/online.md); both stores use it.

Entity key: b"\x01", then per join key (in the view's order) its name and its typed value.
Value: a 32-character hex header (event and created time, µs, offset by 2**63 so that byte order
is time order) followed by a msgpack map of feature name to value. Pure functions; no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from parity.definitions import FeatureView
from parity.errors import EntityFrameError

VERSION = 1
HEADER_CHARS = 32
_OFFSET = 1 << 63
_INT = struct.Struct(">q")


@dataclass(frozen=True)
class OnlineRow:
    """One view's features for one entity, as stored: values keyed by feature name."""

    view: str
    entity_key: bytes
    event_ts: int
    created_ts: int
    values: Mapping[str, Any]
    # When the row stops being valid (event time + the view's ttl, µs), None for never. Stores
    # configured to expire keys honour it; it is not stored, so rows read back have None.
    expires_at: int | None = field(default=None, compare=False)

    @property
    def version(self) -> tuple[int, int]:
        """What write-if-newer compares: (event time, created time), in µs."""
        return (self.event_ts, self.created_ts)


def entity_key(join_keys: Sequence[str], values: Sequence[object]) -> bytes:
    """Canonical bytes of one entity's join key values (ints as int64, strings as UTF-8)."""
    if len(join_keys) != len(values):
        raise EntityFrameError(f"expected values for {list(join_keys)}, got {list(values)}")
    parts = [bytes([VERSION])]
    for name, value in zip(join_keys, values, strict=True):
        encoded_name = name.encode()
        parts.append(bytes([len(encoded_name)]) + encoded_name)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise EntityFrameError(
                f"join key '{name}' value {value!r} is {type(value).__name__}; keys are integers "
                "or strings"
            )
        if isinstance(value, int):
            parts.append(b"i" + _INT.pack(value))
        else:
            text = value.encode()
            parts.append(b"s" + struct.pack(">I", len(text)) + text)
    return b"".join(parts)


def rows_from_columns(view: FeatureView, columns: Mapping[str, Sequence[Any]]) -> list[OnlineRow]:
    """Online rows from columns named by join key and feature, plus `__ts` and `__created` (µs)."""
    keys = [columns[k] for k in view.join_keys]
    features = [(name, columns[name]) for name in view.feature_names]
    ttl = None if view.ttl is None else int(view.ttl.total_seconds() * 1_000_000)
    rows = []
    for i, (event, created) in enumerate(zip(columns["__ts"], columns["__created"], strict=True)):
        values = {name: column[i] for name, column in features}
        key = entity_key(view.join_keys, [k[i] for k in keys])
        expires = None if ttl is None else event + ttl
        rows.append(OnlineRow(view.name, key, event, created, values, expires))
    return rows


def header(event_ts: int, created_ts: int) -> bytes:
    return b"%016x%016x" % (event_ts + _OFFSET, created_ts + _OFFSET)


def encode_value(row: OnlineRow) -> bytes:
    """Header plus msgpack payload: the bytes one Redis hash field holds."""
    return header(row.event_ts, row.created_ts) + encode_payload(row.values)


def encode_payload(values: Mapping[str, Any]) -> bytes:
    return bytes(msgpack.packb(dict(values), use_bin_type=True))


def decode_payload(payload: bytes) -> dict[str, Any]:
    decoded = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    return dict(decoded)


def decode_value(view: str, key: bytes, data: bytes) -> OnlineRow:
    event = int(data[:16], 16) - _OFFSET
    created = int(data[16:HEADER_CHARS], 16) - _OFFSET
    return OnlineRow(view, key, event, created, decode_payload(data[HEADER_CHARS:]))
