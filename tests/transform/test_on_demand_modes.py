"""Feast-style on-demand modes (row, pandas, python) and projection sources: the same values
online (Python and the feature server) and offline, and typed errors for bad functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import FeatureStore
from parity.errors import BreakingChange, EntityFrameError, OnDemandError
from parity.repo.loader import load_repo
from parity.serving.app import create_app
from tests.conftest import BASE_TIME, DRIVER_REPO, write_parquet, write_repo

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
DRIVERS = 10
# trips 0 and missing, conv_rate missing, city missing: the edge values each mode must handle.
TRIPS = [3, 0, None, 7, 1, 2, 5, None, 4, 9]
RATES = [0.5, 0.25, 0.75, None, 1.0, 0.1, 0.2, 0.3, None, 0.9]
CITIES = ["x", "y", None, "z", "x", None, "y", "z", "x", "w"]

MODES = """
    from typing import Any

    import pandas as pd

    from parity import Bool, Field, Float64, Int64, RequestSource, String, on_demand_feature_view
    from views import driver_stats

    trip = RequestSource(name="trip", schema=[Field(name="fare", dtype=Float64)])


    def outputs(suffix):
        return [
            Field(name="per_trip" + suffix, dtype=Float64),
            Field(name="trips_plus" + suffix, dtype=Int64),
            Field(name="tag" + suffix, dtype=String),
            Field(name="dear" + suffix, dtype=Bool),
        ]


    @on_demand_feature_view(sources=[driver_stats, trip], schema=outputs("_row"))
    def by_row(row):
        trips, fare, city = row["trips"], row["fare"], row["city"]
        return {
            "per_trip_row": fare / trips if trips and fare is not None else None,
            "trips_plus_row": None if trips is None else trips + 1,
            "tag_row": None if city is None else city + "!",
            "dear_row": None if fare is None else fare > 10,
        }


    @on_demand_feature_view(
        sources=[driver_stats, trip], schema=outputs("_pandas"), mode="pandas"
    )
    def by_pandas(inputs: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=inputs.index)
        out["per_trip_pandas"] = inputs["fare"] / inputs["trips"].where(inputs["trips"] != 0)
        out["trips_plus_pandas"] = inputs["trips"] + 1
        out["tag_pandas"] = inputs["city"] + "!"
        out["dear_pandas"] = (inputs["fare"] > 10).where(inputs["fare"].notna())
        return out


    @on_demand_feature_view(
        sources=[driver_stats, trip], schema=outputs("_python"), mode="python"
    )
    def by_python(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = list(zip(inputs["trips"], inputs["fare"], inputs["city"]))
        return {
            "per_trip_python": [f / t if t and f is not None else None for t, f, _ in rows],
            "trips_plus_python": [None if t is None else t + 1 for t, _, _ in rows],
            "tag_python": [None if c is None else c + "!" for _, _, c in rows],
            "dear_python": [None if f is None else f > 10 for _, f, _ in rows],
        }


    @on_demand_feature_view(
        sources=[driver_stats[["conv_rate"]], trip],
        schema=[Field(name="rate_fare", dtype=Float64)],
        mode="python",
    )
    def rate_fare(inputs):
        if set(inputs) != {"conv_rate", "fare"}:
            raise ValueError(f"inputs {sorted(inputs)}")
        return {
            "rate_fare": [
                None if c is None or f is None else c * f
                for c, f in zip(inputs["conv_rate"], inputs["fare"])
            ]
        }
"""

FEATURES = [f"{name}{suffix}" for suffix in ("_row", "_pandas", "_python") for name in
            ("per_trip", "trips_plus", "tag", "dear")]  # fmt: skip
REFS = [f"by_{f.rsplit('_', 1)[1]}:{f}" for f in FEATURES]


def driver_columns() -> dict[str, pa.Array | list[object]]:
    return {
        "driver_id": pa.array(range(1, DRIVERS + 1), pa.int64()),
        "event_timestamp": pa.array(
            [BASE_TIME + timedelta(hours=i) for i in range(DRIVERS)], pa.timestamp("us", tz="UTC")
        ),
        "conv_rate": pa.array(RATES, pa.float64()),
        "trips": pa.array(TRIPS, pa.int64()),
        "city": pa.array(CITIES, pa.string()),
    }


def build_store(root: Path, files: dict[str, str]) -> FeatureStore:
    write_repo(root, {**DRIVER_REPO, **files})
    write_parquet(root / "data" / "driver_stats.parquet", driver_columns())
    store = FeatureStore(root, clock=lambda: NOW)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW)
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    feature_store = build_store(tmp_path_factory.mktemp("modes") / "repo", {"modes.py": MODES})
    yield feature_store
    feature_store.close()


def offline(store: FeatureStore, rows: list[dict[str, Any]], refs: list[str]) -> dict[str, list]:
    frame = pd.DataFrame(
        {
            "driver_id": pd.Series([r["driver_id"] for r in rows], dtype="int64"),
            "fare": pd.Series([r["fare"] for r in rows], dtype="float64"),
            "event_timestamp": pd.Series([NOW] * len(rows), dtype="datetime64[us, UTC]"),
        }
    )
    table = store.get_historical_features(frame, refs).to_arrow()
    return {ref.split(":")[1]: table.column(ref.split(":")[1]).to_pylist() for ref in refs}


def over_http(client: TestClient, rows: list[dict[str, Any]], refs: list[str]) -> dict[str, list]:
    entities = {"driver_id": [r["driver_id"] for r in rows], "fare": [r["fare"] for r in rows]}
    reply = client.post("/get-online-features", json={"features": refs, "entities": entities})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    names = body["metadata"]["feature_names"]
    return {name: body["results"][names.index(name)]["values"] for name in FEATURES}


def expected(row: dict[str, Any]) -> dict[str, Any]:
    """The four features by hand, for one entity row."""
    known = 1 <= row["driver_id"] <= DRIVERS
    trips = TRIPS[row["driver_id"] - 1] if known else None
    city = CITIES[row["driver_id"] - 1] if known else None
    fare = row["fare"]
    return {
        "per_trip": fare / trips if trips and fare is not None else None,
        "trips_plus": None if trips is None else trips + 1,
        "tag": None if city is None else city + "!",
        "dear": None if fare is None else fare > 10,
    }


def test_each_mode_gives_the_hand_worked_values(store: FeatureStore) -> None:
    rows = [
        {"driver_id": 1, "fare": 12.0},  # 3 trips, city x
        {"driver_id": 2, "fare": 5.0},  # 0 trips: no ratio
        {"driver_id": 3, "fare": None},  # trips and city missing, no fare
        {"driver_id": 42, "fare": 20.0},  # unknown driver
    ]
    want = {
        "per_trip": [4.0, None, None, None],
        "trips_plus": [4, 1, None, None],
        "tag": ["x!", "y!", None, None],
        "dear": [True, False, None, True],
    }
    online = store.get_online_features(REFS, rows)
    got_offline = offline(store, rows, REFS)
    for feature in FEATURES:
        name = feature.rsplit("_", 1)[0]
        assert online.values[feature] == want[name], feature
        assert got_offline[feature] == want[name], feature
    assert online.statuses["per_trip_pandas"][1] == "NULL_VALUE"
    assert [type(v) for v in online.values["trips_plus_pandas"][:2]] == [int, int]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "driver_id": st.integers(min_value=0, max_value=DRIVERS + 2),
                "fare": st.none()
                | st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, width=64),
            }
        ),
        min_size=1,
        max_size=8,
    )
)
def test_every_mode_agrees_online_over_http_and_offline(
    store: FeatureStore, rows: list[dict[str, Any]]
) -> None:
    online = store.get_online_features(REFS, rows).values
    got_offline = offline(store, rows, REFS)
    http = over_http(TestClient(create_app(store)), rows, REFS)
    hand = [expected(row) for row in rows]
    for feature in FEATURES:
        want = [h[feature.rsplit("_", 1)[0]] for h in hand]
        assert online[feature] == want, feature
        assert got_offline[feature] == want, feature
        assert http[feature] == want, feature


def test_a_projection_source_reads_only_its_features(store: FeatureStore) -> None:
    record = store.registry.catalog.to_records()["on_demand_feature_view"]["rate_fare"]
    assert record["sources"] == ["driver_stats"]
    assert record["source_features"] == {"driver_stats": ["conv_rate"]}
    rows = [{"driver_id": 1, "fare": 10.0}, {"driver_id": 4, "fare": 3.0}]  # rates 0.5, None
    online = store.get_online_features(["rate_fare:rate_fare"], rows)
    assert online.values == {"rate_fare": [5.0, None]}
    assert offline(store, rows, ["rate_fare:rate_fare"]) == {"rate_fare": [5.0, None]}


def test_an_empty_entity_frame_gives_empty_typed_columns(store: FeatureStore) -> None:
    table = offline(store, [], REFS)
    assert all(values == [] for values in table.values())
    frame = pd.DataFrame(
        {
            "driver_id": pd.Series([], dtype="int64"),
            "fare": pd.Series([], dtype="float64"),
            "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
        }
    )
    schema = store.get_historical_features(frame, REFS).to_arrow().schema
    assert schema.field("per_trip_pandas").type == pa.float64()
    assert schema.field("trips_plus_python").type == pa.int64()
    assert schema.field("tag_row").type == pa.string()
    assert schema.field("dear_pandas").type == pa.bool_()
    assert store.get_online_features(REFS, {"driver_id": [], "fare": []}).values == {
        f: [] for f in FEATURES
    }


def test_a_request_field_of_the_wrong_type_is_refused(store: FeatureStore) -> None:
    with pytest.raises(EntityFrameError, match=r"request field 'fare'.*Float64"):
        store.get_online_features(["by_python:tag_python"], [{"driver_id": 1, "fare": "abc"}])
    frame = pd.DataFrame({"driver_id": [1], "fare": ["abc"], "event_timestamp": [NOW]})
    with pytest.raises(EntityFrameError, match=r"request field 'fare'.*Float64.*string"):
        store.get_historical_features(frame, ["by_pandas:tag_pandas"])  # before any join runs
    with pytest.raises(EntityFrameError, match=r"needs request field 'fare'"):
        store.get_historical_features(frame.drop(columns="fare"), ["by_row:tag_row"])
    nulls = pd.DataFrame({"driver_id": [1], "fare": [None], "event_timestamp": [NOW]})
    assert offline_frame(store, nulls, "by_python:dear_python") == [None]


def offline_frame(store: FeatureStore, frame: pd.DataFrame, ref: str) -> list[Any]:
    table = store.get_historical_features(frame, [ref]).to_arrow()
    return list(table.column(ref.split(":")[1]).to_pylist())


BAD = """
    import math

    import pandas as pd

    from parity import Field, Float64, Int64, RequestSource, on_demand_feature_view
    from views import driver_stats

    trip = RequestSource(name="trip", schema=[Field(name="fare", dtype=Float64)])
    BEHAVIOUR = {"how": "good"}


    def value(fare):
        how = BEHAVIOUR["how"]
        return {
            "string": "abc", "bool": True, "fraction": 1.5, "nan": math.nan, "inf": math.inf,
            "none": None,
        }.get(how, fare)


    @on_demand_feature_view(
        sources=[driver_stats, trip],
        schema=[Field(name="out", dtype=Float64), Field(name="count", dtype=Int64)],
    )
    def bad_row(row):
        if BEHAVIOUR["how"] == "missing":
            return {"out": 1.0}
        if BEHAVIOUR["how"] == "extra":
            return {"out": 1.0, "count": 1, "typo": 2}
        count = 1.5 if BEHAVIOUR["how"] == "fraction" else 1
        return {"out": value(row["fare"]), "count": count}


    @on_demand_feature_view(
        sources=[driver_stats, trip],
        schema=[Field(name="p_out", dtype=Float64), Field(name="p_count", dtype=Int64)],
        mode="pandas",
    )
    def bad_pandas(inputs):
        out = pd.DataFrame(index=inputs.index)
        out["p_out"] = [value(f) for f in inputs["fare"]]
        out["p_count"] = 1.5 if BEHAVIOUR["how"] == "fraction" else 1
        if BEHAVIOUR["how"] == "missing":
            return out[["p_out"]]
        if BEHAVIOUR["how"] == "short":
            return out.iloc[:-1]
        if BEHAVIOUR["how"] == "series":
            return out["p_out"]
        if BEHAVIOUR["how"] == "reversed":
            return out.iloc[::-1]
        return out


    @on_demand_feature_view(
        sources=[driver_stats, trip],
        schema=[Field(name="y_out", dtype=Float64), Field(name="y_count", dtype=Int64)],
        mode="python",
    )
    def bad_python(inputs):
        n = len(inputs["fare"])
        result = {"y_out": [value(f) for f in inputs["fare"]], "y_count": [1] * n}
        if BEHAVIOUR["how"] == "missing":
            del result["y_count"]
        if BEHAVIOUR["how"] == "short":
            result["y_out"] = result["y_out"][:-1]
        if BEHAVIOUR["how"] == "fraction":
            result["y_count"] = [1.5] * n
        if BEHAVIOUR["how"] == "scalar":
            result["y_out"] = 1.0
        if BEHAVIOUR["how"] == "rows":
            return [dict(zip(result, values)) for values in zip(*result.values())]
        return result
"""

BAD_VIEWS = {"bad_row": ("out", "count"), "bad_pandas": ("p_out", "p_count"),
             "bad_python": ("y_out", "y_count")}  # fmt: skip


@pytest.fixture(scope="module")
def bad_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    feature_store = build_store(tmp_path_factory.mktemp("bad") / "repo", {"bad.py": BAD})
    yield feature_store
    feature_store.close()


@contextmanager
def behaving(store: FeatureStore, view: str, how: str) -> Iterator[None]:
    """Switch the repo module's BEHAVIOUR (seen through the view's bound function)."""
    refs = [f"{view}:{f}" for f in BAD_VIEWS[view]]
    store.get_online_features(refs, [{"driver_id": 1, "fare": 1}])  # binds the function
    function = store.registry.catalog.on_demand_feature_views[view].udf
    assert function is not None
    behaviour = function.__globals__["BEHAVIOUR"]
    behaviour["how"] = how
    try:
        yield
    finally:
        behaviour["how"] = "good"


def both_paths(store: FeatureStore, view: str) -> list[Callable[[], dict[str, list[Any]]]]:
    refs = [f"{view}:{f}" for f in BAD_VIEWS[view]]
    rows = [{"driver_id": 1, "fare": 2.0}, {"driver_id": 2, "fare": 3.0}]
    return [
        lambda: store.get_online_features(refs, rows).values,
        lambda: offline(store, rows, refs),
    ]


@pytest.mark.parametrize("view", list(BAD_VIEWS))
@pytest.mark.parametrize(
    ("how", "feature", "problem"),
    [
        ("string", 0, "'abc'.*Float64"),
        ("bool", 0, "True.*Float64"),
        ("inf", 0, "infinite"),
        ("fraction", 1, "1.5.*Int64"),
        ("missing", 1, "no (column|value)"),
    ],
)
def test_bad_outputs_are_typed_errors_naming_view_and_feature(
    bad_store: FeatureStore, view: str, how: str, feature: int, problem: str
) -> None:
    name = BAD_VIEWS[view][feature]
    with behaving(bad_store, view, how):
        for read in both_paths(bad_store, view):
            with pytest.raises(OnDemandError, match=rf"'{view}'.*'{name}'.*{problem}"):
                read()


@pytest.mark.parametrize(
    ("view", "how", "problem"),
    [
        ("bad_pandas", "short", "1 rows? for 2"),
        ("bad_python", "short", "1 values? for 2"),
        ("bad_pandas", "series", "Series, not a DataFrame"),
        ("bad_pandas", "reversed", "another index"),
        ("bad_python", "scalar", "'y_out' is a float, not a list of 2 values"),
        ("bad_python", "rows", "returned list, not a dict of lists"),
        ("bad_row", "extra", "'typo'"),
    ],
)
def test_wrong_lengths_and_extra_columns_are_typed_errors(
    bad_store: FeatureStore, view: str, how: str, problem: str
) -> None:
    with behaving(bad_store, view, how):
        for read in both_paths(bad_store, view):
            with pytest.raises(OnDemandError, match=rf"'{view}'.*{problem}"):
                read()


@pytest.mark.parametrize("view", list(BAD_VIEWS))
@pytest.mark.parametrize("how", ["nan", "none"])
def test_nan_and_none_are_null_on_both_paths(bad_store: FeatureStore, view: str, how: str) -> None:
    out = BAD_VIEWS[view][0]
    with behaving(bad_store, view, how):
        online, got_offline = (read() for read in both_paths(bad_store, view))
    assert online[out] == got_offline[out] == [None, None]
    again = bad_store.get_online_features([f"{view}:{out}"], [{"driver_id": 1, "fare": 1.0}])
    assert (again.values[out], again.statuses[out]) == ([1.0], ["PRESENT"])
    with behaving(bad_store, view, how):
        missing = bad_store.get_online_features([f"{view}:{out}"], [{"driver_id": 1, "fare": 1}])
    assert missing.statuses[out] == ["NULL_VALUE"]


def test_a_changed_function_or_mode_is_a_breaking_change(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    store = build_store(root, {"modes.py": MODES})
    modes = root / "modes.py"
    modes.write_text(modes.read_text().replace("c * f", "c * f * 2"))
    plan = store.plan()
    (change,) = plan.breaking
    assert (change.object_type, change.name) == ("on_demand_feature_view", "rate_fare")
    assert [f.path for f in change.fields if f.breaking] == ["code_hash"]
    with pytest.raises(BreakingChange, match=r"rate_fare.*code_hash"):
        store.apply()
    store.apply(allow_breaking=True)
    doubled = store.get_online_features(["rate_fare:rate_fare"], [{"driver_id": 1, "fare": 1.0}])
    assert doubled.values["rate_fare"] == [1.0]
    store.close()


def test_catalogs_applied_before_modes_and_projections_plan_no_change(tmp_path: Path) -> None:
    import json

    from parity.registry.catalog import Catalog
    from parity.registry.plan import plan

    store = build_store(tmp_path / "repo", {"modes.py": MODES})
    body = json.loads(store.registry.catalog.to_json())
    for name, record in list(body["objects"]["on_demand_feature_view"].items()):
        if record["mode"] == "row" and not record["source_features"]:
            del record["mode"], record["source_features"]  # the format before them
        else:
            del body["objects"]["on_demand_feature_view"][name]
    old = Catalog.from_json(json.dumps(body))
    assert old.on_demand_feature_views["by_row"].mode == "row"
    desired = load_repo(store.repo_path, store.project).catalog
    changes = plan(old, desired, 1).changes
    assert {(c.kind, c.name) for c in changes} == {
        ("add", "by_pandas"),
        ("add", "by_python"),
        ("add", "rate_fare"),
    }
    store.close()


@pytest.mark.parametrize(
    ("sources", "problem"),
    [
        ("[driver_stats, twin]", "two inputs named 'trips'"),
        ("[driver_stats, driver_stats[['city']]]", "with a repeat"),
        ("[driver_stats, 'trips']", "not a FeatureView, a projection"),
    ],
)
def test_ambiguous_or_unknown_sources_are_refused(
    tmp_path: Path, sources: str, problem: str
) -> None:
    from parity.errors import InvalidDefinition, RepoError

    code = f"""
        from parity import Field, Float64, RequestSource, on_demand_feature_view
        from views import driver_stats

        trip = RequestSource(name="trip", schema=[Field(name="fare", dtype=Float64)])
        twin = RequestSource(name="twin", schema=[Field(name="trips", dtype=Float64)])

        @on_demand_feature_view(sources={sources}, schema=[Field(name="x", dtype=Float64)])
        def odd(row):
            return {{"x": 1.0}}
    """
    root = write_repo(tmp_path / "repo", {**DRIVER_REPO, "odd.py": code})
    store = FeatureStore(root)
    with pytest.raises((InvalidDefinition, RepoError), match=problem):
        store.plan()
    store.close()


def test_an_unknown_mode_is_refused() -> None:
    from parity import Field, Float64, on_demand_feature_view
    from parity.errors import InvalidDefinition

    decorate = on_demand_feature_view(
        sources=[], schema=[Field(name="x", dtype=Float64)], mode="substrait"
    )
    with pytest.raises(InvalidDefinition, match="'_odd': mode='substrait'"):
        decorate(_odd)


def _odd(row: dict[str, Any]) -> dict[str, Any]:
    return row


def test_an_interval_retrieval_of_on_demand_features_asks_for_an_entity_frame(
    store: FeatureStore,
) -> None:
    from parity.errors import RetrievalError

    with pytest.raises(RetrievalError, match=r"\(by_python\).*pass one instead of start="):
        store.get_historical_features(features=["by_python:tag_python"], start=BASE_TIME, end=NOW)


def test_registry_list_shows_modes_and_projected_sources(store: FeatureStore) -> None:
    from typer.testing import CliRunner

    from parity.cli.main import app

    result = CliRunner().invoke(
        app, ["registry", "list", "--repo", str(store.repo_path)], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert "driver_stats[conv_rate]" in result.output
    assert "by_pandas (pandas mode)" in result.output
    assert "rate_fare (python mode)" in result.output
