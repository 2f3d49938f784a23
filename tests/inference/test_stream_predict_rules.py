"""The pure rules of streaming predictions: event checks (each problem names its field), the read
time, output text and the unknown-entity rule, against hand-worked expectations."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from parity.inference.request_fields import FieldRule
from parity.inference.stream_predict_ingest import not_applied
from parity.inference.stream_predict_rules import (
    Event,
    EventSpec,
    Limits,
    Rejection,
    check_event,
    score_fields,
    text,
    unknown_key,
)
from parity.timeutil import to_micros

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
SPEC = EventSpec(
    model="m/1",
    timestamp_field="ts",
    keys={"account_id": "Int64", "merchant": "String"},
    inputs={"amount": FieldRule("amount", "Float64", "float", "request source 'txn'")},
)
LIMITS = Limits(to_micros(NOW), 3_600_000_000, 300_000_000)
TS = to_micros(NOW) - 1_000_000
GOOD: dict[str, Any] = {"account_id": 7, "merchant": "m1", "ts": TS, "amount": 2.5}


def checked(**change: Any) -> Event | Rejection:
    row = {**GOOD, **change}
    return check_event("5-0", {k: v for k, v in row.items() if v is not ...}, SPEC, LIMITS)


def test_a_good_event_keeps_its_keys_inputs_and_time() -> None:
    event = checked()
    assert event == Event("5-0", TS, {"account_id": 7, "merchant": "m1"}, {"amount": 2.5})
    assert isinstance(event, Event)
    assert checked(amount=3) == Event("5-0", TS, event.keys, {"amount": 3})
    iso = checked(ts="2026-05-01T13:59:59+02:00")
    assert isinstance(iso, Event) and iso.event_us == TS


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"amount": ...}, "missing_field", "amount"),
        ({"amount": None}, "wrong_type", "amount"),
        ({"amount": "2.5"}, "wrong_type", "amount"),
        ({"amount": True}, "wrong_type", "amount"),
        ({"amount": math.nan}, "wrong_type", "amount"),
        ({"amount": -math.inf}, "wrong_type", "amount"),
        ({"amount": 10**400}, "wrong_type", "amount"),
        ({"amount": [1.0]}, "wrong_type", "amount"),
        ({"account_id": ...}, "missing_field", "account_id"),
        ({"account_id": None}, "missing_field", "account_id"),
        ({"account_id": True}, "wrong_type", "account_id"),
        ({"account_id": 2**63}, "wrong_type", "account_id"),
        ({"account_id": "7"}, "wrong_type", "account_id"),
        ({"merchant": 5}, "wrong_type", "merchant"),
        ({"ts": ...}, "missing_field", "ts"),
        ({"ts": 1.5e15}, "wrong_type", "ts"),
        ({"ts": True}, "wrong_type", "ts"),
        ({"ts": 10**20}, "wrong_type", "ts"),
        ({"ts": "2026-05-01T12:00:00"}, "wrong_type", "ts"),  # no time zone
        ({"ts": "soon"}, "wrong_type", "ts"),
        ({"ts": to_micros(NOW + timedelta(minutes=6))}, "future", "ts"),
        ({"ts": to_micros(NOW - timedelta(hours=2))}, "late", "ts"),
        ({"ts": to_micros(datetime(1, 1, 1, tzinfo=UTC))}, "late", "ts"),
    ],
)
def test_each_bad_event_is_rejected_naming_its_field(
    change: dict[str, Any], reason: str, field: str
) -> None:
    rejection = checked(**change)
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.field) == (reason, field)
    assert f"'{field}'" in str(rejection.error) and "5-0" in str(rejection.error)
    assert rejection.error.code == "invalid_prediction_input"


def test_the_edges_of_the_accepted_times_are_inclusive() -> None:
    assert isinstance(checked(ts=LIMITS.now_us + LIMITS.future_skew_us), Event)
    assert isinstance(checked(ts=LIMITS.now_us - LIMITS.lateness_us), Event)
    assert isinstance(checked(ts=LIMITS.now_us + LIMITS.future_skew_us + 1), Rejection)
    assert isinstance(checked(ts=LIMITS.now_us - LIMITS.lateness_us - 1), Rejection)


def test_output_text_round_trips_floats_and_marks_missing_values() -> None:
    for value in (0.1, 1 / 3, -2.5e-300, 1e308):
        assert float(text(value)) == value
    assert (text(math.nan), text(math.inf), text(None), text(True), text(3)) == (
        "nan", "inf", "", "true", "3",
    )  # fmt: skip


def test_score_fields_hold_the_source_id_keys_time_model_and_every_output() -> None:
    event = Event("9-1", TS, {"account_id": 7}, {})
    one = score_fields(event, "fraud", 3, {"p": 0.25}, "p")
    assert one == {
        "source_id": "9-1",
        "request_id": "stream-9-1",
        "account_id": "7",
        "event_timestamp": "2026-05-01T11:59:59+00:00",
        "model": "fraud",
        "version": "3",
        "score": "0.25",
        "ingest_behind": "0",
    }
    two = score_fields(event, "fraud", 3, {"label": 1, "p": 0.75}, "label", True)
    assert (two["score"], two["output:label"], two["output:p"]) == ("1", "1", "0.75")
    assert two["ingest_behind"] == "1"


def test_an_entity_is_unknown_only_when_every_view_keyed_by_it_lacks_it() -> None:
    views = [(("a",), ("x", "y")), (("a", "d"), ("z",)), (("d",), ("w",))]
    statuses = {
        "x": ["NOT_FOUND", "PRESENT", "NOT_FOUND"],
        "y": ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"],
        "z": ["NOT_FOUND", "NOT_FOUND", "NULL_VALUE"],
        "w": ["PRESENT", "NOT_FOUND", "NOT_FOUND"],
    }
    assert unknown_key(views, statuses, 0) == "a"  # d is known (w), a by none of its views
    assert unknown_key(views, statuses, 1) == "d"
    assert unknown_key(views, statuses, 2) is None  # z found (null value): both keys known


def order(message_id: str) -> int:
    millis, _, sequence = message_id.partition("-")
    return int(millis) * 2**20 + int(sequence)  # as Redis orders ids: ms, then the sequence


def test_an_event_is_applied_when_delivered_to_ingest_and_no_longer_pending_there() -> None:
    ids = ["5-0", "5-1", "7-0", "10-2"]
    assert not_applied(ids, None, None) == set(ids)  # no ingest group: none applied
    assert not_applied(ids, order("10-2"), None) == set()  # all delivered, none pending
    assert not_applied(ids, order("7-0"), None) == {"10-2"}  # not yet delivered
    assert not_applied(ids, order("10-2"), order("5-1")) == {"5-1", "7-0", "10-2"}
    # a pending event before the batch: every event of the batch may miss it
    assert not_applied(ids, order("10-2"), order("1-0")) == set(ids)
    assert not_applied(ids, order("5-0"), order("5-0")) == set(ids)
    assert not_applied([], None, None) == set()
