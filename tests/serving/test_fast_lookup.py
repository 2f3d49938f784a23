"""The fast lookup path (issue 19) against the old one, kept here as the oracle: stores' read_views
against their per-pair `read`, the response shaped from (event time, values) rows against the old
per-OnlineRow shaping, the response bytes against orjson of the old response body, and the cheap
request parser against pydantic. Over SQLite and Redis, with awkward values (NaN, inf, bytes,
lists, bools, missing features), unknown and duplicate keys, rows past max age or in the future,
empty and huge requests, full feature names, a second entity type, windowed and on-demand views."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import FeatureStore
from parity.errors import ParityError
from parity.online.encoding import (
    OnlineRow,
    decode_payload,
    decode_payloads,
    entity_key,
    latest_by_view,
)
from parity.online.reads import (
    _REFUSED,
    _UNKNOWN,
    OnlineResponse,
    Status,
    plain_keys,
    plan_read,
    read_windows,
    with_on_demand,
)
from parity.serving.app import _encode_other, create_app
from parity.serving.errors import body_for, status_for
from parity.serving.feast_json import OnlineRequest, parse_online, response_body
from parity.timeutil import from_micros, to_micros
from tests.conftest import DRIVER_REPO, write_repo
from tests.transform.test_on_demand import RATIO

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
NOW_US = to_micros(NOW)
HOUR_US = 3_600_000_000
VIEWS = """
from datetime import timedelta
from entities import driver
from parity import Aggregation, Entity, FeatureView, Field, FileSource, Float64, String

rider = Entity(name="rider", join_keys=["rider_id"], value_type="String")
rider_stats = FeatureView(
    name="rider_stats", entities=[rider], schema=[Field(name="score", dtype=Float64)],
    source=FileSource(path="data/riders.parquet"),
)
velocity = FeatureView(
    name="velocity", entities=[driver], schema=[Field(name="amount", dtype=Float64)],
    source=FileSource(path="data/events", timestamp_field="ts"),
    tile_interval=timedelta(minutes=5),
    aggregations=[Aggregation(column="amount", function="sum", window=timedelta(hours=1),
                              name="amount_1h")],
)
"""
# Awkward stored values, written over the materialized rows of drivers 1-3 and new drivers 5-9.
AWKWARD: dict[int, tuple[int, dict[str, Any]]] = {
    1: (NOW_US - HOUR_US, {"conv_rate": math.nan, "trips": 2**62, "city": "Zürich ✓"}),
    2: (NOW_US - HOUR_US, {"conv_rate": math.inf, "trips": -1, "city": b"\x00\xffbytes"}),
    3: (NOW_US - HOUR_US, {"conv_rate": -math.inf, "trips": True, "city": [1, "two", None]}),
    5: (NOW_US - HOUR_US, {"conv_rate": None, "trips": 0, "city": ""}),
    6: (NOW_US - HOUR_US, {"trips": 7}),  # written before conv_rate and city existed
    7: (NOW_US - 2 * 24 * HOUR_US, {"conv_rate": 1.0, "trips": 1, "city": "old"}),  # past ttl
    8: (NOW_US + HOUR_US, {"conv_rate": 2.0, "trips": 2, "city": "future"}),  # after the read
    9: (NOW_US - HOUR_US, {"conv_rate": 0.1, "trips": False, "city": {"a": 1}}),
}
PLAIN = ["driver_stats:conv_rate", "driver_stats:trips", "driver_stats:city"]
IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 999]


def write_data(root: Path) -> None:
    stamp = pa.timestamp("us", tz="UTC")
    pq.write_table(
        pa.table(
            {
                "rider_id": ["a", "b"],
                "event_timestamp": pa.array([NOW - timedelta(hours=2)] * 2, stamp),
                "score": [0.25, None],
            }
        ),
        root / "data" / "riders.parquet",
    )
    (root / "data" / "events").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([1, 1, 2], pa.int64()),
                "ts": pa.array([NOW - timedelta(minutes=m) for m in (10, 20, 30)], stamp),
                "amount": [1.5, 2.5, 4.0],
            }
        ),
        root / "data" / "events" / "part-0.parquet",
    )


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, project_name: str) -> Iterator[Any]:
    extra = ""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        extra = f"online:\n  type: redis\n  connection_string: {url}\n"
    files = {**DRIVER_REPO, "ratio.py": RATIO.replace("VECTORIZED", "None"), "more.py": VIEWS}
    root = write_repo(tmp_path / "repo", files, project=project_name, extra=extra)
    write_data(root)
    feature_store = FeatureStore(root, clock=lambda: NOW)
    feature_store.apply()
    feature_store.materialize(NOW - timedelta(days=1), NOW)
    rows = [
        OnlineRow("driver_stats", entity_key(["driver_id"], [i]), ts, ts, values)
        for i, (ts, values) in AWKWARD.items()
    ]
    feature_store.online_store.write(project_name, rows)
    yield feature_store
    if request.param == "redis":
        client = feature_store.online_store.client
        for key in client.scan_iter(match=f"parity:v1:{project_name}*", count=1000):
            client.delete(key)
    feature_store.close()


# --- the oracle: the read path before issue 19 ----------------------------------------------------


def old_shape(
    request: Any,
    entities: dict[str, list[Any]],
    found: Sequence[OnlineRow | None],
    now_us: int,
    windows: dict[str, list[Any]],
) -> OnlineResponse:
    count = len(next(iter(entities.values()), []))
    response = OnlineResponse(dict(entities), {}, {}, {})
    index = 0
    for view_request in request.views:
        if view_request.view.is_aggregated:
            for output in view_request.output_names:
                values = windows[output]
                response.statuses[output] = [
                    Status.NOT_FOUND
                    if v is _UNKNOWN
                    else Status.NULL_VALUE
                    if v is None
                    else Status.OUTSIDE_MAX_AGE
                    if v is _REFUSED
                    else Status.PRESENT
                    for v in values
                ]
                response.values[output] = [
                    None if v is _UNKNOWN or v is _REFUSED else v for v in values
                ]
                response.event_timestamps[output] = [None] * count
            continue
        rows = found[index * count : (index + 1) * count]
        index += 1
        ttl = view_request.view.ttl
        cutoff = None if ttl is None else now_us - int(ttl.total_seconds() * 1_000_000)
        live = [
            row
            if row is not None
            and row.event_ts <= now_us
            and (cutoff is None or row.event_ts >= cutoff)
            else None
            for row in rows
        ]
        forced = [
            Status.NOT_FOUND
            if row is None
            else None
            if kept is not None
            else Status.OUTSIDE_MAX_AGE
            for row, kept in zip(rows, live, strict=True)
        ]
        stamps = [None if row is None else _old_moment(row.event_ts) for row in rows]
        for feature, output in zip(view_request.features, view_request.output_names, strict=True):
            values = [None if row is None else row.values.get(feature) for row in live]
            response.values[output] = values
            response.statuses[output] = [
                status
                if status is not None
                else Status.NULL_VALUE
                if value is None
                else Status.PRESENT
                for status, value in zip(forced, values, strict=True)
            ]
            response.event_timestamps[output] = stamps.copy()
    return response


_old_moment = lru_cache(maxsize=1024)(from_micros)


def old_read(
    store: FeatureStore, refs: Any, entities: dict[str, list[Any]], full: bool = False
) -> OnlineResponse:
    request = store._online_request(refs, full)
    columns, wanted = plan_read(request, entities)
    online = store.online_store
    windows = read_windows(online, store.project, request, columns, NOW_US)
    found = online.read(store.project, wanted)
    return with_on_demand(old_shape(request, columns, found, NOW_US, windows), request)


def old_bytes(response: OnlineResponse) -> bytes:
    return orjson.dumps(
        response_body(response), default=_encode_other, option=orjson.OPT_NON_STR_KEYS
    )


def same(got: OnlineResponse, expected: OnlineResponse) -> None:
    # repr: NaN equals NaN, True differs from 1, bytes from str
    assert repr(got.entities) == repr(expected.entities)
    assert repr(got.values) == repr(expected.values)
    assert got.statuses == expected.statuses
    assert got.event_timestamps == expected.event_timestamps


CASES: list[tuple[Any, dict[str, list[Any]], bool]] = [
    (PLAIN, {"driver_id": IDS}, False),
    (PLAIN, {"driver_id": IDS}, True),  # full_feature_names
    (PLAIN, {"driver_id": [1, 1, 999, 2, 1, 999]}, False),  # duplicates and unknown keys
    (PLAIN, {"driver_id": []}, False),  # no rows
    (["driver_stats:city"], {"driver_id": [3, 9, 6]}, False),  # one feature
    ("driver_service", {"driver_id": [1, 2, 4]}, False),  # a feature service
    (
        [*PLAIN, "velocity:amount_1h", "fare_ratio:fare_per_trip"],  # windowed and on demand
        {"driver_id": [1, 2, 4, 999], "fare": [10.0, 8.0, 1.0, 3.0]},
        False,
    ),
    (
        ["rider_stats:score", *PLAIN],  # a second entity type: views keyed differently
        {"driver_id": [1, 2, 999], "rider_id": ["a", "b", "zz"]},
        False,
    ),
]


@pytest.mark.parametrize(("refs", "entities", "full"), CASES)
def test_reads_and_answers_equal_the_old_path(
    store: FeatureStore, refs: Any, entities: dict[str, list[Any]], full: bool
) -> None:
    expected = old_read(store, refs, entities, full)
    same(store.get_online_features(refs, entities, full_feature_names=full), expected)
    client = TestClient(create_app(store))
    body = {"entities": entities, "full_feature_names": full}
    body |= {"feature_service": refs} if isinstance(refs, str) else {"features": refs}
    reply = client.post("/get-online-features", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.content == old_bytes(expected)


def test_a_huge_request_with_repeats_equals_the_old_path(store: FeatureStore) -> None:
    rng = random.Random(19)
    ids = [rng.choice([*IDS, *range(100, 140)]) for _ in range(3_000)]
    expected = old_read(store, PLAIN, {"driver_id": ids})
    reply = TestClient(create_app(store)).post(
        "/get-online-features", json={"features": PLAIN, "entities": {"driver_id": ids}}
    )
    assert reply.content == old_bytes(expected)


def test_read_views_equals_the_per_pair_read(store: FeatureStore) -> None:
    online = store.online_store
    request = store._online_request(["rider_stats:score", *PLAIN], False)
    keys = {"driver_id": [1, 999, 1, 8, 6], "rider_id": ["a", "a", "zz", "b", "a"]}
    for plain in (
        plain_keys(request, keys),  # keyed differently: the per-pair fallback
        [(name, ks) for name, ks in plain_keys(request, keys) if name == "driver_stats"] * 2,
        [("driver_stats", [])],
        [],
    ):
        pairs = [(name, key) for name, ks in plain for key in ks]
        expected = latest_by_view(plain, online.read(store.project, pairs))
        assert repr(online.read_views(store.project, plain)) == repr(expected)  # NaN: by repr


@pytest.mark.parametrize(
    ("column", "word"),
    [(["1"], "'driver_id'"), ([True], "'driver_id'"), ([1.5], "'driver_id'"), ([None], "row 0")],
)
def test_a_wrongly_typed_key_is_refused_as_before(
    store: FeatureStore, column: list[Any], word: str
) -> None:
    with pytest.raises(ParityError) as failure:
        old_read(store, PLAIN, {"driver_id": column})
    reply = TestClient(create_app(store)).post(
        "/get-online-features", json={"features": PLAIN, "entities": {"driver_id": column}}
    )
    assert reply.status_code == status_for(failure.value)
    assert reply.json() == body_for(failure.value.code, failure.value.message)
    assert word in reply.json()["error"]["message"]


def test_decode_payloads_answers_as_decode_payload_each_and_fails_alike() -> None:
    import msgpack

    payloads = [msgpack.packb(v) for v in ({"a": 1}, {}, {"b": [1.5, None]}, {"c": b"\x00"})]
    assert decode_payloads(payloads) == [decode_payload(p) for p in payloads]
    assert decode_payloads([]) == []
    for bad in (payloads[0][:-1], payloads[0] + b"\x01", b"\xc1"):
        with pytest.raises(Exception) as alone:
            decode_payload(bad)
        with pytest.raises(type(alone.value)):
            decode_payloads([payloads[1], bad, payloads[2]])
    # A payload that is not a map comes back as it is, as decode_payload gives it.
    assert decode_payloads([msgpack.packb([1]), payloads[0]]) == [[1], {"a": 1}]


# --- request parsing -------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_fields = st.sampled_from(
    [
        "features",
        "feature_service",
        "entities",
        "full_feature_names",
        "include_feature_view_version_metadata",
        "api_version",
        "feature",
    ]
)
_plausible = {
    "features": st.lists(st.text(max_size=8), max_size=3) | _json_values,
    "feature_service": st.text(max_size=5) | _json_values,
    "entities": st.dictionaries(st.text(max_size=5), st.lists(_json_values, max_size=3))
    | _json_values,
    "full_feature_names": st.booleans() | _json_values,
    "include_feature_view_version_metadata": st.booleans() | _json_values,
    "api_version": st.integers() | _json_values,
    "feature": _json_values,
}
_bodies = st.lists(_fields, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: _plausible[n] for n in names})
)


@settings(max_examples=400, deadline=None)
@given(body=_bodies | _json_values)
def test_the_cheap_parser_accepts_only_what_pydantic_accepts_and_reads_it_alike(body: Any) -> None:
    raw = json.dumps(body).encode()
    parsed = parse_online(raw)
    try:
        expected = OnlineRequest.model_validate_json(raw)
    except ValueError:
        assert parsed is None
        return
    if parsed is not None:
        assert parsed.model_dump() == expected.model_dump()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"features": ["a:b"], "entities": {"x": [1e400]}}',  # inf: orjson refuses, pydantic not
        b'{"features": ["a:b"], "entities": {"x": [123456789012345678901234567890]}}',
        b'{"features": ["a:b"], "entities": {"x": [NaN]}}',
        b'{"features": ["a:b"], "features": ["c:d"], "entities": {"x": [1]}}',
        b'{"features": ["a:b"], "entities": {"x": ["\\ud800"]}}',
    ],
)
def test_bodies_the_cheap_parser_leaves_to_pydantic_are_read_as_pydantic_reads_them(
    raw: bytes,
) -> None:
    parsed = parse_online(raw)
    try:
        expected = OnlineRequest.model_validate_json(raw)
    except ValueError:
        assert parsed is None
        return
    if parsed is not None:
        assert repr(parsed.model_dump()) == repr(expected.model_dump())


def test_read_views_through_a_given_client_equals_the_per_pair_read(
    redis_url: str, project_name: str
) -> None:
    import redis

    from parity.online.redis_store import RedisOnlineStore

    client = redis.Redis.from_url(redis_url)
    given = RedisOnlineStore(redis_url, client=client)
    rows = [
        OnlineRow(view, entity_key(["driver_id"], [i]), NOW_US, NOW_US, {"f": i, "g": [view]})
        for view in ("a", "b")
        for i in (1, 2, 3)
    ]
    try:
        given.write(project_name, rows)
        for ids in ([1], [2, 1, 2, 999], [999], []):
            keys = [entity_key(["driver_id"], [i]) for i in ids]
            plain = [("a", keys), ("b", keys), ("c", keys)]
            pairs = [(name, key) for name, ks in plain for key in ks]
            expected = latest_by_view(plain, given.read(project_name, pairs))
            assert given.read_views(project_name, plain) == expected
    finally:
        for key in client.scan_iter(match=f"parity:v1:{project_name}*", count=1000):
            client.delete(key)
        given.close()
