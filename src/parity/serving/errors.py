"""The one place that maps ParityError classes to HTTP status codes."""

from __future__ import annotations

import math

from parity.errors import (
    BackendNotInstalled,
    BodyTooLarge,
    BreakingChange,
    DatasetExists,
    Forbidden,
    IdentityProviderUnavailable,
    NoRollbackTarget,
    ObjectNotFound,
    OnlineStoreUnavailable,
    ParityError,
    PushDisabled,
    RateLimited,
    RegistryConflict,
    RegistryUnavailable,
    RolloutActive,
    RolloutControlDisabled,
    RolloutStateError,
    ServerOverloaded,
    TooManyEntities,
    Unauthenticated,
    VersionAliased,
)

_STATUS: list[tuple[type[ParityError], int]] = [
    (Unauthenticated, 401),
    (Forbidden, 403),
    (RateLimited, 429),
    (ObjectNotFound, 404),
    (RegistryConflict, 409),
    (DatasetExists, 409),
    (BreakingChange, 409),
    (VersionAliased, 409),
    (NoRollbackTarget, 409),
    (RolloutActive, 409),
    (RolloutStateError, 409),
    (RegistryUnavailable, 503),
    (IdentityProviderUnavailable, 503),
    (OnlineStoreUnavailable, 503),
    (ServerOverloaded, 503),
    (TooManyEntities, 413),
    (BackendNotInstalled, 501),
    (BodyTooLarge, 413),
    (PushDisabled, 403),
    (RolloutControlDisabled, 403),
]


def status_for(error: ParityError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 400


def headers_for(error: ParityError) -> dict[str, str]:
    """`Retry-After` (whole seconds, at least 1) on every 503 and 429: when the overload, the
    online store's open circuit or the client's limit is expected to let a request through
    again; `WWW-Authenticate: Bearer` on a 401."""
    status = status_for(error)
    if status == 401:
        return {"www-authenticate": 'Bearer realm="parity"'}
    if status not in (503, 429):
        return {}
    seconds = getattr(error, "retry_after_seconds", 1.0)
    return {"retry-after": str(max(1, math.ceil(seconds)))}


def body_for(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}
