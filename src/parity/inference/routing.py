"""Routing decisions of a rollout (pure): which arm answers a routing key at a weight, and which
requests are mirrored to shadows. No I/O; the model server applies them, `deploy` sets them.

A key's bucket is a hash of (rollout id, key) into 10,000 buckets; the candidate answers buckets
below weight x 100. So the same key always gets the same arm at a given weight, and raising the
weight only moves keys from the champion to the candidate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

BUCKETS = 10_000  # weights resolve to 0.01 percentage points
Arm = Literal["champion", "candidate"]
KeySource = Literal["entity", "header"]


@dataclass(frozen=True, slots=True)
class Shadow:
    """A version that gets a mirrored copy of `fraction` of the champion's requests."""

    version: int
    fraction: float = 1.0


@dataclass(frozen=True, slots=True)
class Routes:
    """How one model's champion-alias traffic is split now (one active rollout)."""

    model: str
    rollout: str  # the rollout's id: salts the hash, so each rollout draws its own slice
    champion_alias: str
    champion: int
    candidate: int
    weight: float  # percent of the routing-key space answered by the candidate
    key: str  # the routing key's name
    key_source: KeySource = "entity"
    shadows: tuple[Shadow, ...] = ()

    @property
    def threshold(self) -> int:
        """Buckets below this go to the candidate."""
        return round(self.weight * (BUCKETS // 100))


def bucket(salt: str, key: str) -> int:
    """The key's bucket in [0, BUCKETS): stable across processes and Python versions."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def key_text(value: object) -> str:
    """A routing key value as text, so 42 (an int key) and "42" (a header) share a bucket."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def arm(routes: Routes, key: str | None) -> Arm:
    """The arm answering `key`; a request without a key stays with the champion."""
    if key is None or routes.threshold <= 0:
        return "champion"
    if routes.threshold >= BUCKETS:
        return "candidate"
    return "candidate" if bucket(routes.rollout, key) < routes.threshold else "champion"


def mirrored(routes: Routes, shadow: Shadow, key: str | None, request_id: str) -> bool:
    """Whether this request is copied to `shadow`: by the routing key when there is one (whole
    entities are mirrored, so per-entity comparisons hold), else by the request id."""
    if shadow.fraction >= 1.0:
        return True
    salt = f"{routes.rollout}/shadow/{shadow.version}"
    return bucket(salt, key if key is not None else request_id) < shadow.fraction * BUCKETS


def mirrored_versions(routes: Routes, key: str | None, request_id: str) -> list[int]:
    """The shadow versions that get a copy of this champion-answered request."""
    return [
        shadow.version
        for shadow in routes.shadows
        if shadow.version != routes.champion and mirrored(routes, shadow, key, request_id)
    ]


def request_key(
    routes: Routes, columns: Mapping[str, Sequence[Any]], headers: Mapping[str, str] | None
) -> str | None:
    """A `/v1` request's routing key: the key column's value in its first row (the request goes
    whole to one arm), or the header's value (`headers` by lower-case name); None: no key."""
    if routes.key_source == "header":
        return header_key(routes, headers)
    column = columns.get(routes.key)
    first = column[0] if column is not None and len(column) > 0 else None
    return None if first is None else key_text(first)


def tensor_key(
    routes: Routes, tensors: Mapping[str, Any], headers: Mapping[str, str] | None
) -> str | None:
    """A `/v2` request's routing key: the header's value, or the first value of the input tensor
    named like the key (numpy scalars as their Python value)."""
    if routes.key_source == "header":
        return header_key(routes, headers)
    tensor = tensors.get(routes.key)
    if tensor is None or getattr(tensor, "size", 0) == 0:
        return None
    first = tensor.flat[0]
    value = first.item() if hasattr(first, "item") else first
    return None if value is None else key_text(value)


def header_key(routes: Routes, headers: Mapping[str, str] | None) -> str | None:
    """The routing header's value without surrounding blanks; None when it is missing or blank
    (no key: the champion answers, rather than one bucket taking every blank header)."""
    value = (headers or {}).get(routes.key.lower())
    return (value.strip() or None) if value is not None else None
