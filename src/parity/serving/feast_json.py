"""Feast's JSON shapes for /get-online-features: the request model and the response body.

The response has one result per output column (entity columns first), each with `values`,
`statuses` and `event_timestamps`, so Feast's HTTP clients read it unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict

from parity.online.reads import OnlineResponse

EPOCH_TEXT = "1970-01-01T00:00:00Z"


class OnlineRequest(BaseModel):
    """Unknown fields are refused (a typo such as `feature` would otherwise be ignored), but
    every field Feast's clients send is accepted; those Parity has no use for are ignored."""

    model_config = ConfigDict(extra="forbid")
    features: list[str] | None = None
    feature_service: str | None = None
    entities: dict[str, list[Any]]
    full_feature_names: bool = False
    # Sent by Feast's RemoteOnlineStore (0.5x+); Parity views have no version numbers to report.
    include_feature_view_version_metadata: bool = False
    api_version: int | None = None


class PushRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    push_source_name: str
    df: dict[str, list[Any]]
    to: str = "online"
    # Feast's push fields: the registry is always read through its cache, and push sources
    # here have no on-write transforms, so both are accepted and ignored.
    allow_registry_cache: bool = True
    transform_on_write: bool = True


def response_body(response: OnlineResponse) -> dict[str, Any]:
    names = [*response.entities, *response.feature_names]
    results: list[dict[str, Any]] = [
        {
            "values": values,
            "statuses": ["PRESENT"] * len(values),
            "event_timestamps": [EPOCH_TEXT] * len(values),
        }
        for values in response.entities.values()
    ]
    for name in response.feature_names:
        results.append(
            {
                "values": response.values[name],
                "statuses": response.statuses[name],
                "event_timestamps": [_stamp(t) for t in response.event_timestamps[name]],
            }
        )
    return {"metadata": {"feature_names": names}, "results": results}


@lru_cache(maxsize=65_536)  # materialized rows share a few event times
def _stamp(moment: datetime | None) -> str:
    if moment is None:
        return EPOCH_TEXT
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
