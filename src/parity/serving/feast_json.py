"""Feast's JSON shapes for /get-online-features and /push: the request models, the response
body, and the response models the OpenAPI spec declares (200 bodies and the error body).

The response has one result per output column (entity columns first), each with `values`,
`statuses` and `event_timestamps`, so Feast's HTTP clients read it unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
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


_FLAGS = ("full_feature_names", "include_feature_view_version_metadata")
_LONG_NUMBER = re.compile(rb"\d{19}")
_FIELDS = frozenset(OnlineRequest.model_fields)


def parse_online(raw: bytes) -> OnlineRequest | None:
    """The request, if `raw` is plainly valid (orjson, and the checks OnlineRequest makes), else
    None: then OnlineRequest.model_validate_json decides, and words the 4xx, as it always has.
    (Pydantic's validation costs more than the rest of a small lookup's parsing.)"""
    if _LONG_NUMBER.search(raw):  # orjson reads an integer past 64 bits as a float
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or not _FIELDS.issuperset(body):
        return None
    features = body.get("features")
    service = body.get("feature_service")
    entities = body.get("entities")
    version = body.get("api_version")
    if not (
        (features is None or (type(features) is list and features and _all_str(features)))
        and (service is None or (type(service) is str and service))
        and type(entities) is dict
        and all(type(column) is list for column in entities.values())
        and all(type(body.get(flag, False)) is bool for flag in _FLAGS)
        and (version is None or type(version) is int)
    ):
        return None
    return OnlineRequest.model_construct(**body)


def _all_str(values: list[Any]) -> bool:
    return all(type(value) is str for value in values)


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


_Encode = Callable[[Any], bytes]


def response_json(response: OnlineResponse, encode: _Encode) -> bytes:
    """The bytes of `encode(response_body(response))` (orjson, compact), put together column by
    column: the statuses and event times of a view's features are alike, so a run of equal
    lists is encoded once. `encode` encodes one list of values."""
    results = []
    for values in response.entities.values():
        count = len(values)
        results.append(
            _result(
                encode(values),
                orjson.dumps(["PRESENT"] * count),
                orjson.dumps([EPOCH_TEXT] * count),
            )
        )
    status: list[Any] | None = None
    moments: list[Any] | None = None
    for name in response.feature_names:  # a view's features are together, their lists alike
        if response.statuses[name] != status:
            status = response.statuses[name]
            statuses = orjson.dumps(status)
        if response.event_timestamps[name] != moments:
            moments = response.event_timestamps[name]
            stamps = orjson.dumps([_stamp(t) for t in moments])
        results.append(_result(encode(response.values[name]), statuses, stamps))
    names = orjson.dumps([*response.entities, *response.feature_names])
    return b"".join(
        (b'{"metadata":{"feature_names":', names, b'},"results":[', b",".join(results), b"]}")
    )


def _result(values: bytes, statuses: bytes, stamps: bytes) -> bytes:
    return b"".join(
        (b'{"values":', values, b',"statuses":', statuses, b',"event_timestamps":', stamps, b"}")
    )


@lru_cache(maxsize=65_536)  # materialized rows share a few event times
def _stamp(moment: datetime | None) -> str:
    if moment is None:
        return EPOCH_TEXT
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
