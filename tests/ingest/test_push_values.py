"""What push stores, value by value (QA findings 3, 4 and 10 after issue 12): NaN is a null
(NULL_VALUE online, null offline), infinities are refused naming the row, declared Int32, Float32
and Bytes features take safe casts, and a pushed column no view reads is refused."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from parity import FeatureStore
from parity.errors import PushError
from tests.conftest import write_repo

T = datetime(2026, 6, 1, tzinfo=UTC)
WHEN = (T - timedelta(hours=1)).isoformat()
REPO = {
    "defs.py": """
        from datetime import timedelta
        from parity import (
            Array, Bytes, Entity, FeatureView, Field, FileSource, Float32, Float64, Int32, Int64,
            PushSource,
        )

        account = Entity(name="account", join_keys=["account_id"])
        typed = PushSource(name="typed", batch_source=FileSource(path="data/typed/"))
        typed_stats = FeatureView(
            name="typed_stats", entities=[account],
            schema=[
                Field(name="rate", dtype=Float64), Field(name="n", dtype=Int64),
                Field(name="i32", dtype=Int32), Field(name="f32", dtype=Float32),
                Field(name="by", dtype=Bytes), Field(name="emb", dtype=Array(Float32)),
            ],
            source=typed, ttl=timedelta(days=1),
        )
    """
}
FEATURES = ["rate", "n", "i32", "f32", "by", "emb"]


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    feature_store = FeatureStore(write_repo(tmp_path / "repo", REPO), clock=lambda: T)
    feature_store.apply()
    return feature_store


def columns(rows: int = 2, **given: list[Any]) -> dict[str, list[Any]]:
    """A valid push of `rows` accounts (1, 2, ...), with `given` columns replaced."""
    base: dict[str, list[Any]] = {
        "account_id": list(range(1, rows + 1)),
        "event_timestamp": [WHEN] * rows,
        "rate": [0.5] * rows,
        "n": [1] * rows,
        "i32": [1] * rows,
        "f32": [1.5] * rows,
        "by": [b"x"] * rows,
        "emb": [[0.5, 1.0]] * rows,
    }
    return {**base, **given}


def online(store: FeatureStore, name: str, rows: int = 2) -> tuple[list[Any], list[str]]:
    answer = store.get_online_features([f"typed_stats:{name}"], {"account_id": [1, 2][:rows]})
    return answer.values[name], [str(s) for s in answer.statuses[name]]


def offline(store: FeatureStore, name: str, rows: int = 2) -> list[Any]:
    entity = pd.DataFrame({"account_id": [1, 2][:rows], "event_timestamp": [T] * rows})
    table = store.get_historical_features(entity, [f"typed_stats:{name}"]).to_arrow()
    return table.column(name).to_pylist()


def records(data: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]


def written(store: FeatureStore) -> bool:
    return (store.repo_path / "data" / "typed").exists()


# --- finding 3: NaN is missing, infinities are refused ----------------------------------------


@pytest.mark.parametrize("shape", ["dict", "records", "arrow", "pandas"])
def test_nan_is_stored_as_null_online_and_offline(store: FeatureStore, shape: str) -> None:
    data = columns(rate=[1.5, math.nan])
    rows: Any = {
        "dict": data,
        "records": records(data),
        "arrow": pa.table(data),
        "pandas": pd.DataFrame(data),
    }[shape]
    assert store.push("typed", rows, to="both") == 2
    assert online(store, "rate") == ([1.5, None], ["PRESENT", "NULL_VALUE"])
    assert offline(store, "rate") == [1.5, None]


def test_nan_inside_an_array_feature_is_a_null_element(store: FeatureStore) -> None:
    store.push("typed", columns(emb=[[0.5, math.nan], [1.0]]), to="both")
    assert online(store, "emb")[0] == [[0.5, None], [1.0]]
    assert offline(store, "emb") == [[0.5, None], [1.0]]


@pytest.mark.parametrize("value", [math.inf, -math.inf])
@pytest.mark.parametrize("column", ["rate", "f32"])
def test_an_infinite_value_is_refused_naming_column_and_row(
    store: FeatureStore, value: float, column: str
) -> None:
    with pytest.raises(PushError, match=rf"'{column}' row 1: .*infinite"):
        store.push("typed", columns(**{column: [1.0, value]}), to="both")
    assert online(store, column)[1] == ["NOT_FOUND", "NOT_FOUND"]
    assert not written(store)


def test_an_infinite_array_element_is_refused_naming_the_row(store: FeatureStore) -> None:
    with pytest.raises(PushError, match=r"'emb' row 1: .*infinite"):
        store.push("typed", columns(emb=[[0.5], [1.0, math.inf]]), to="both")
    assert not written(store)


# --- finding 4: safe casts for Int32, Float32 and (as base64 text, on request) Bytes ---------


def test_int32_and_float32_features_take_python_ints_and_floats(store: FeatureStore) -> None:
    data = columns(i32=[7, -(2**31)], f32=[2, -0.25], emb=[[1, 2], [0.5]])
    assert store.push("typed", records(data), to="both") == 2
    assert online(store, "i32")[0] == [7, -(2**31)]
    assert online(store, "f32")[0] == [2.0, -0.25]
    assert online(store, "emb")[0] == [[1.0, 2.0], [0.5]]
    assert offline(store, "i32") == [7, -(2**31)]
    assert offline(store, "f32") == [2.0, -0.25]


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1])
def test_an_int_outside_int32_is_refused_naming_the_row(store: FeatureStore, value: int) -> None:
    with pytest.raises(PushError, match=rf"'i32' row 1: {value} is outside Int32"):
        store.push("typed", columns(i32=[1, value]), to="both")
    assert not written(store)


def test_a_float_beyond_float32_is_refused_naming_the_row(store: FeatureStore) -> None:
    with pytest.raises(PushError, match=r"'f32' row 1: .*outside Float32"):
        store.push("typed", columns(f32=[1.0, 1e39]), to="both")
    assert not written(store)


def test_a_fractional_value_for_int32_is_still_refused(store: FeatureStore) -> None:
    with pytest.raises(PushError, match=r"'i32' is double"):
        store.push("typed", columns(i32=[1.5, 2.0]))


def test_bytes_as_base64_text_only_when_asked(store: FeatureStore) -> None:
    with pytest.raises(PushError, match=r"'by' is string"):
        store.push("typed", columns(by=["aGVsbG8=", "AA=="]))
    store.push("typed", columns(by=["aGVsbG8=", "AA=="]), to="both", bytes_as_base64=True)
    assert online(store, "by")[0] == [b"hello", b"\x00"]
    assert offline(store, "by") == [b"hello", b"\x00"]
    with pytest.raises(PushError, match=r"'by' row 1: .*not base64"):
        store.push("typed", columns(by=["aGVsbG8=", "h\u00e9"]), bytes_as_base64=True)


# --- finding 10: columns no view reads, and pushes of no rows ---------------------------------


def test_a_column_no_view_reads_is_refused_naming_it(store: FeatureStore) -> None:
    with pytest.raises(PushError, match=r"'zzz'.*no feature view reads"):
        store.push("typed", columns(zzz=[1, 2]), to="both")
    assert online(store, "rate")[1] == ["NOT_FOUND", "NOT_FOUND"]
    assert not written(store)


def test_a_push_of_no_rows_is_a_no_op(store: FeatureStore) -> None:
    empty = {name: [] for name in columns()}
    assert store.push("typed", empty, to="both") == 0
    assert store.push("typed", pd.DataFrame(columns(rows=0)), to="both") == 0
    assert not written(store)
    with pytest.raises(PushError, match="lack column 'rate'"):
        store.push("typed", {"account_id": [], "event_timestamp": []})
    with pytest.raises(PushError, match="'zzz'"):
        store.push("typed", {**empty, "zzz": []})
