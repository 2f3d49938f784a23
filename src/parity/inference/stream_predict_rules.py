"""Pure rules of streaming predictions (`parity predict stream`): which events can be scored, at
what time their features are read, and what the output and dead-letter messages hold.

No I/O: the worker (inference/stream_predict.py) reads, predicts and publishes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from parity.errors import (
    BadRequest,
    EntityKeyTypeError,
    InvalidPredictionInput,
    InvalidRequestField,
    OnDemandError,
)
from parity.inference.request_fields import FieldRule, RequestSchema
from parity.online.encoding import entity_keys
from parity.online.reads import OnlineResponse, with_on_demand
from parity.timeutil import from_micros, to_micros

_FIRST_US, _LAST_US = -62_135_596_800_000_000, 253_402_300_799_999_999  # years 1 to 9999


def request_id(message_id: str) -> str:
    """The prediction log's request id of a scored stream message."""
    return f"stream-{message_id}"


@dataclass(frozen=True)
class EventSpec:
    """What a scorable event must carry: its time, the service's entity keys (with their
    declared types) and the model's request-time inputs."""

    model: str
    timestamp_field: str
    keys: Mapping[str, str]  # join key -> "Int64" or "String"
    inputs: Mapping[str, FieldRule]

    @cached_property
    def checks(self) -> dict[str, RequestSchema]:
        """Per request-time input, the `/v1` schema of that one field (its value check)."""
        rules = self.inputs.items()
        return {name: RequestSchema(self.model, (), {name: rule}) for name, rule in rules}


@dataclass(frozen=True)
class Event:
    """A decoded, checked event: its message id, time (µs), keys and request-time inputs."""

    message_id: str
    event_us: int
    keys: dict[str, Any]
    inputs: dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    """Why a message gets no score: a reason code, the field at fault and the typed error."""

    message_id: str
    reason: str  # undecodable, missing_field, wrong_type, future, late, unknown_entity, ...
    field: str
    error: InvalidPredictionInput


@dataclass
class Limits:
    """The accepted event times, relative to the worker's clock (µs)."""

    now_us: int
    lateness_us: int
    future_skew_us: int


@dataclass
class StreamStats:
    batches: int = 0
    scored: int = 0  # scores published by this worker
    dead_lettered: int = 0
    duplicates: int = 0  # messages already published by a previous run (only acknowledged)
    ingest_behind: int = 0  # scores read before `parity ingest` had applied their event
    retries: int = 0  # batches retried after a store was unreachable
    by_reason: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


def reject(message_id: str, reason: str, name: str, text: str) -> Rejection:
    return Rejection(message_id, reason, name, InvalidPredictionInput(text))


def check_event(
    message_id: str, row: Mapping[str, Any], spec: EventSpec, limits: Limits
) -> Event | Rejection:
    """The event as `Event`, or the first problem with it as a `Rejection` naming the field."""
    moment = _event_time(message_id, row, spec.timestamp_field)
    if isinstance(moment, Rejection):
        return moment
    late = _check_time(message_id, spec.timestamp_field, moment, limits)
    if late is not None:
        return late
    keys: dict[str, Any] = {}
    for name, kind in spec.keys.items():
        problem = _check_key(message_id, row, name, kind)
        if problem is not None:
            return problem
        keys[name] = row[name]
    inputs: dict[str, Any] = {}
    for name, rule in spec.inputs.items():
        if name not in row:
            text = (
                f"stream event {message_id} has no request field '{name}' ({rule.dtype}, "
                f"declared by {rule.by}); model {spec.model} needs it: add it to the events"
            )
            return reject(message_id, "missing_field", name, text)
        try:
            spec.checks[name].check({name: [row[name]]})
        except InvalidRequestField as error:
            text = f"stream event {message_id}: {error}".replace(" row 0", "")
            return reject(message_id, "wrong_type", name, text)
        inputs[name] = row[name]
    return Event(message_id, moment, keys, inputs)


def _event_time(message_id: str, row: Mapping[str, Any], name: str) -> int | Rejection:
    """The event's time in µs: an int of µs (how `publish` writes datetimes) or ISO 8601 text."""
    if name not in row or row[name] is None:
        text = f"stream event {message_id} has no event time '{name}'; every event needs one"
        return reject(message_id, "missing_field", name, text)
    value = row[name]
    if isinstance(value, datetime) and value.tzinfo is not None:
        return to_micros(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if _FIRST_US <= value <= _LAST_US:
            return value
        text = f"stream event {message_id}: '{name}' {value} µs is outside years 1 to 9999"
        return reject(message_id, "wrong_type", name, text)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return to_micros(moment)
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
    text = (
        f"stream event {message_id}: '{name}' is {shown} ({type(value).__name__}); send µs since "
        "the epoch (an integer) or ISO 8601 text with a time zone"
    )
    return reject(message_id, "wrong_type", name, text)


def _check_time(message_id: str, name: str, moment: int, limits: Limits) -> Rejection | None:
    shown, clock = from_micros(moment).isoformat(), from_micros(limits.now_us).isoformat()
    if moment > limits.now_us + limits.future_skew_us:
        text = (
            f"stream event {message_id}: '{name}' {shown} is more than max_future_skew after the "
            f"worker's clock {clock}; fix the producer's timestamps"
        )
        return reject(message_id, "future", name, text)
    if moment < limits.now_us - limits.lateness_us:
        text = (
            f"stream event {message_id}: '{name}' {shown} is older than the source's lateness "
            f"behind the worker's clock {clock}; `parity ingest` drops it too, and the online "
            "store no longer answers for that time"
        )
        return reject(message_id, "late", name, text)
    return None


def _check_key(message_id: str, row: Mapping[str, Any], name: str, kind: str) -> Rejection | None:
    value = row.get(name)
    if value is None:
        text = f"stream event {message_id} has no entity key '{name}' ({kind}); send it"
        return reject(message_id, "missing_field", name, text)
    try:
        entity_keys([name], [[value]], [kind])
    except EntityKeyTypeError as error:
        return reject(message_id, "wrong_type", name, f"stream event {message_id}: {error}")
    return None


def unknown_key(
    views: Sequence[tuple[Sequence[str], Sequence[str]]],
    statuses: Mapping[str, Sequence[Any]],
    row: int,
) -> str | None:
    """The first join key that no view keyed by it knows (every feature NOT_FOUND) in `row`:
    `views` are (join keys, output names) of the service's stored views."""
    known: dict[str, bool] = {}
    for keys, outputs in views:
        found = any(str(statuses[o][row]) != "NOT_FOUND" for o in outputs)
        for key in keys:
            known[key] = known.get(key, False) or found
    return next((key for key, seen in known.items() if not seen), None)


def refused_window(
    views: Sequence[tuple[str, Sequence[str]]],
    statuses: Mapping[str, Sequence[Any]],
    row: int,
    before: Mapping[str, int],
    read_us: int,
) -> tuple[str, list[str]] | None:
    """The first aggregated view whose windows the online store refused (OUTSIDE_MAX_AGE) for
    `row` because it reads at `read_us`, before the view's materialized tiles answer reads
    (`before[view]`, its prepared `since`), and those windows: such an event would be scored on
    null windows that offline has. `views` are (view name, window output names)."""
    for name, outputs in views:
        if name not in before or read_us >= before[name]:
            continue
        refused = [o for o in outputs if str(statuses[o][row]) == "OUTSIDE_MAX_AGE"]
        if refused:
            return name, refused
    return None


def late_windows(
    events: Sequence[Event],
    windowed: Sequence[tuple[str, Sequence[str]]],
    statuses: Mapping[str, Sequence[Any]],
    before: Mapping[str, int],
    timestamp_field: str,
) -> tuple[list[int], list[Rejection]]:
    """The events whose windows were refused because they read before a materialization of
    the view (`refused_window`), as `late` rejections, and the rows kept."""
    keep: list[int] = []
    rejected: list[Rejection] = []
    for row, event in enumerate(events):
        found = refused_window(windowed, statuses, row, before, event.event_us)
        if found is None:
            keep.append(row)
            continue
        view, names = found
        text = (
            f"stream event {event.message_id}: '{timestamp_field}' "
            f"{from_micros(event.event_us).isoformat()} is before the last materialization of "
            f"view '{view}' (its tiles answer reads from {from_micros(before[view]).isoformat()} "
            f"on): its windows {names} cannot be read as of the event, and it is not scored on "
            "null windows (the worker was behind `parity materialize`)"
        )
        rejected.append(reject(event.message_id, "late", timestamp_field, text))
    return keep, rejected


def late_rows(
    events: Sequence[Event],
    plain: Sequence[tuple[str, Sequence[str]]],
    statuses: Mapping[str, Sequence[Any]],
    stamps: Mapping[str, Sequence[Any]],
    timestamp_field: str,
) -> tuple[list[int], list[Rejection]]:
    """The events for which a plain view's row is refused (OUTSIDE_MAX_AGE) because the online
    store's row for the entity is stamped after the event's read time: it keeps only a view's
    newest row, so the value as of the event (which offline has) is gone. `late` rejections."""
    keep: list[int] = []
    rejected: list[Rejection] = []
    for row, event in enumerate(events):
        read = from_micros(event.event_us)
        newer = [
            (view, stamps[names[0]][row])
            for view, names in plain
            if names
            and str(statuses[names[0]][row]) == "OUTSIDE_MAX_AGE"
            and isinstance(stamps[names[0]][row], datetime)
            and stamps[names[0]][row] > read
        ]
        if not newer:
            keep.append(row)
            continue
        view, stamp = newer[0]
        text = (
            f"stream event {event.message_id}: '{timestamp_field}' "
            f"{from_micros(event.event_us).isoformat()} is before the row of view '{view}' "
            f"the online store holds for it (stamped {stamp.isoformat()}): the store keeps only "
            "the newest row, so the value as of the event is gone, and it is not scored on null"
        )
        rejected.append(reject(event.message_id, "late", timestamp_field, text))
    return keep, rejected


def text(value: Any) -> str:
    """A value as output-stream text: floats as their shortest round-trip repr, NaN as 'nan'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def score_fields(
    event: Event,
    model: str,
    version: int,
    outputs: Mapping[str, Any],
    first: str,
    ingest_behind: bool = False,
) -> dict[str, str]:
    """The output message of one scored event (every value as text). `ingest_behind`: `parity
    ingest` had not applied the event (or an earlier one) when its features were read: they
    may miss it."""
    fields = {
        "source_id": event.message_id,
        "request_id": request_id(event.message_id),
        **{name: text(value) for name, value in event.keys.items()},
        "event_timestamp": from_micros(event.event_us).isoformat(),
        "model": model,
        "version": str(version),
        "score": text(outputs[first]),
        "ingest_behind": "1" if ingest_behind else "0",
    }
    if len(outputs) > 1:
        fields.update({f"output:{name}": text(value) for name, value in outputs.items()})
    return fields


def dead_letter_fields(rejection: Rejection, raw: bytes | None) -> dict[str, str | bytes]:
    """The dead-letter message of a rejected event: why, the field, and the event as sent."""
    fields: dict[str, str | bytes] = {
        "source_id": rejection.message_id,
        "reason": rejection.reason,
        "field": rejection.field,
        "code": rejection.error.code,
        "error": str(rejection.error),
    }
    if raw is not None:
        fields["e"] = raw
    return fields


def redis_location(client: Any) -> str:
    """host:port/db of a Redis client, never its credentials."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def check_keys(source: str, sink: str, dead_letter: str) -> None:
    """The score and dead-letter streams: named, and not the source stream itself (a dead letter
    keeps its event: added to the source, it would be read and dead-lettered again, forever)."""
    for option, key in (("--sink", sink), ("--dead-letter", dead_letter)):
        if not key:
            raise BadRequest(f"{option} is empty: give the Redis stream key to add to")
        if key == source:
            raise BadRequest(
                f"{option} '{key}' is the source's own stream: its entries would be read back "
                "as events; give another key"
            )


def take_rows(response: OnlineResponse, rows: Sequence[int]) -> OnlineResponse:
    """The rows `rows` of a response, in that order."""

    def pick(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {name: [values[r] for r in rows] for name, values in columns.items()}

    return OnlineResponse(
        pick(response.entities),
        pick(response.values),
        pick(response.statuses),
        pick(response.event_timestamps),
    )


def entry_args(message_id: str, target: int, fields: dict[str, Any]) -> list[Any]:
    """One message's arguments of the publish script: id, target, field count, fields."""
    flat: list[Any] = [message_id, target, len(fields) * 2]
    for name, value in fields.items():
        flat += [name, value]
    return flat


def transformed(
    response: OnlineResponse, request: Any, message_ids: Sequence[str]
) -> tuple[OnlineResponse, list[int], list[Rejection]]:
    """The response with the on-demand features, the rows kept and the rejected ones: when the
    repo's function fails on the batch, row by row, so an event whose request data it refuses is
    a dead letter (`transform_failed`, field: the view) and the others are still scored."""
    try:
        return with_on_demand(response, request), list(range(len(message_ids))), []
    except OnDemandError:
        pass
    keep: list[int] = []
    parts: list[OnlineResponse] = []
    rejected: list[Rejection] = []
    for row, message_id in enumerate(message_ids):
        try:
            parts.append(with_on_demand(take_rows(response, [row]), request))
        except OnDemandError as error:
            found = re.search(r"on-demand feature view '(\w+)'", str(error))
            name = found.group(1) if found else "on_demand"
            text = f"stream event {message_id}: {error}"
            rejected.append(reject(message_id, "transform_failed", name, text))
            continue
        keep.append(row)
    return concat_rows(parts), keep, rejected


def concat_rows(parts: Sequence[OnlineResponse]) -> OnlineResponse:
    """Responses of a few rows each, one after the other, as one."""

    def joined(pick: Any) -> dict[str, list[Any]]:
        names = pick(parts[0]) if parts else {}
        return {name: [v for part in parts for v in pick(part)[name]] for name in names}

    return OnlineResponse(
        joined(lambda p: p.entities),
        joined(lambda p: p.values),
        joined(lambda p: p.statuses),
        joined(lambda p: p.event_timestamps),
    )
