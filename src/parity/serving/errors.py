"""The one place that maps ParityError classes to HTTP status codes."""

from __future__ import annotations

from parity.errors import (
    BackendNotInstalled,
    BodyTooLarge,
    BreakingChange,
    DatasetExists,
    NoRollbackTarget,
    ObjectNotFound,
    OnlineStoreUnavailable,
    ParityError,
    PushDisabled,
    RegistryConflict,
    RegistryUnavailable,
    VersionAliased,
)

_STATUS: list[tuple[type[ParityError], int]] = [
    (ObjectNotFound, 404),
    (RegistryConflict, 409),
    (DatasetExists, 409),
    (BreakingChange, 409),
    (VersionAliased, 409),
    (NoRollbackTarget, 409),
    (RegistryUnavailable, 503),
    (OnlineStoreUnavailable, 503),
    (BackendNotInstalled, 501),
    (BodyTooLarge, 413),
    (PushDisabled, 403),
]


def status_for(error: ParityError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 400


def body_for(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}
