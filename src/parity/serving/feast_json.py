"""Feast's JSON shapes for /get-online-features and /push: the request models, the response
body, and the response models the OpenAPI spec declares (200 bodies and the error body).

The response has one result per output column (entity columns first), each with `values`,
`statuses` and `event_timestamps`, so Feast's HTTP clients read it unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from parity.online.reads import OnlineResponse, Status

EPOCH_TEXT = "1970-01-01T00:00:00Z"


class OnlineRequest(BaseModel):
    """Unknown fields are refused (a typo such as `feature` would otherwise be ignored), but
    every field Feast's clients send is accepted; those Parity has no use for are ignored.
    Strict: a flag must be a JSON boolean (`"yes"` or `1` is refused, not read as true)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    features: Annotated[list[str], Field(min_length=1)] | None = None
    feature_service: Annotated[str, Field(min_length=1)] | None = None
    entities: dict[str, list[Any]]
    full_feature_names: bool = False
    # Sent by Feast's RemoteOnlineStore (0.5x+); Parity views have no version numbers to report.
    include_feature_view_version_metadata: bool = False
    api_version: int | None = None


class PushRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    push_source_name: Annotated[str, Field(min_length=1)]
    df: dict[str, list[Any]]
    to: Literal["online", "offline", "both"] = "online"
    # Feast's push fields: the registry is always read through its cache, and push sources
    # here have no on-write transforms, so both are accepted and ignored.
    allow_registry_cache: bool = True
    transform_on_write: bool = True


class FeatureResult(BaseModel):
    """One output column: a value, a status and an event time per entity row."""

    values: list[Any] = Field(description="JSON values; Bytes features are base64 text")
    statuses: list[Status]
    event_timestamps: list[str] = Field(
        description="ISO 8601 UTC; 1970-01-01T00:00:00Z where there is no value or for entities"
    )


class OnlineMetadata(BaseModel):
    feature_names: list[str] = Field(description="entity columns first, then the features")


class OnlineResponseBody(BaseModel):
    """The 200 body of /get-online-features (Feast's shape)."""

    metadata: OnlineMetadata
    results: list[FeatureResult]


class PushResponse(BaseModel):
    pushed: Annotated[int, Field(ge=0, description="rows written")]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    project: str
    registry_version: int


class ErrorDetail(BaseModel):
    code: str = Field(description="stable error code, e.g. feature_view_not_found")
    message: str = Field(description="what went wrong and what to do")


class ErrorBody(BaseModel):
    """Every 4xx and 503 answer of the feature server."""

    error: ErrorDetail


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
