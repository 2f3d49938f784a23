"""/push over real HTTP, value by value (QA findings 3, 4 and 10 after issue 12): what a JSON
client pushes is what /get-online-features answers, NaN is a null, infinities and columns no view
reads are refused with a 400 naming them, and a push of no rows answers `{"pushed": 0}`."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parity import FeatureStore
from parity.serving.app import create_app
from tests.conftest import write_repo
from tests.inference.serving_helpers import running
from tests.ingest.test_push_values import FEATURES, REPO, WHEN, T


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    feature_store = FeatureStore(write_repo(tmp_path / "repo", REPO), clock=lambda: T)
    feature_store.apply()
    return feature_store


@pytest.fixture
def server(store: FeatureStore) -> Iterator[str]:
    with running(create_app(store, enable_push=True)) as address:
        yield address


def post(address: str, path: str, raw: bytes | str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(address, timeout=10)
    try:
        body = raw.encode() if isinstance(raw, str) else raw
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def push(address: str, df: dict[str, Any] | str, to: str = "both") -> tuple[int, Any]:
    text = df if isinstance(df, str) else json.dumps(df)
    return post(address, "/push", f'{{"push_source_name": "typed", "df": {text}, "to": "{to}"}}')


def read(address: str, names: list[str]) -> dict[str, tuple[list[Any], list[str]]]:
    request = {"features": [f"typed_stats:{n}" for n in names], "entities": {"account_id": [1, 2]}}
    status, body = post(address, "/get-online-features", json.dumps(request))
    assert status == 200, body
    found = dict(zip(body["metadata"]["feature_names"], body["results"], strict=True))
    return {n: (found[n]["values"], found[n]["statuses"]) for n in names}


PUSHED = {
    "account_id": [1, 2],
    "event_timestamp": [WHEN, WHEN],
    "rate": [0.25, -3.5],
    "n": [2**40, -1],
    "i32": [2**31 - 1, -(2**31)],
    "f32": [1.5, -0.125],
    "by": ["aGVsbG8=", "AAH/"],
    "emb": [[0.5, 2], []],
}


def test_what_a_json_client_pushes_is_what_it_reads_back(server: str, store: FeatureStore) -> None:
    assert push(server, PUSHED) == (200, {"pushed": 2})
    answer = read(server, FEATURES)
    for name in FEATURES:
        assert answer[name] == (PUSHED[name], ["PRESENT", "PRESENT"]), name
    # The offline copy holds the same values, as the declared types.
    import pandas as pd

    entity = pd.DataFrame({"account_id": [1, 2], "event_timestamp": [T, T]})
    refs = [f"typed_stats:{n}" for n in FEATURES]
    table = store.get_historical_features(entity, refs).to_arrow()
    assert table.column("by").to_pylist() == [b"hello", b"\x00\x01\xff"]
    assert table.column("i32").to_pylist() == PUSHED["i32"]
    assert str(table.schema.field("i32").type) == "int32"
    assert str(table.schema.field("f32").type) == "float"


def test_nan_is_a_null_value_and_infinity_is_refused(server: str) -> None:
    text = json.dumps({**PUSHED, "rate": ["@"]}).replace('["@"]', "[0.5, NaN]")
    assert push(server, text) == (200, {"pushed": 2})
    assert read(server, ["rate"])["rate"] == ([0.5, None], ["PRESENT", "NULL_VALUE"])
    for literal in ("1e400", "Infinity", "-Infinity"):
        text = json.dumps({**PUSHED, "f32": ["@"]}).replace('["@"]', f"[1.0, {literal}]")
        status, body = push(server, text)
        assert status == 400, (literal, body)
        assert body["error"]["code"] == "invalid_push"
        assert "'f32' row 1" in body["error"]["message"]
    assert read(server, ["f32"])["f32"][0] == PUSHED["f32"]  # the first push's values stay


@pytest.mark.parametrize(
    ("column", "values", "said"),
    [
        ("i32", [1, 2**31], "'i32' row 1: 2147483648 is outside Int32"),
        ("f32", [1.0, 1e39], "'f32' row 1"),
        ("by", ["aGVsbG8=", "not base64!"], "'by' row 1"),
        ("zzz", [1, 2], "'zzz'"),
    ],
)
def test_values_that_do_not_fit_are_refused_naming_column_and_row(
    server: str, column: str, values: list[Any], said: str
) -> None:
    status, body = push(server, {**PUSHED, column: values})
    assert status == 400, body
    assert body["error"]["code"] == "invalid_push"
    assert said in body["error"]["message"]
    assert read(server, ["rate"])["rate"] == ([None, None], ["NOT_FOUND", "NOT_FOUND"])


def test_a_push_of_no_rows_answers_pushed_0(server: str) -> None:
    assert push(server, {name: [] for name in PUSHED}) == (200, {"pushed": 0})
    status, body = push(server, {"account_id": []})
    assert status == 400 and "lack column" in body["error"]["message"], body
