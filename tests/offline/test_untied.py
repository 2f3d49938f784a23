"""The one-ASOF join for sources proven to have no ties (offline/ties.py) against the reference
join and the two-pass join it replaces; and that a proof never covers files it did not read."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parity import Catalog, Entity, FeatureStore, FeatureView, Field, FileSource, Float64, Int64
from parity.offline import ties
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.request import resolve
from parity.offline.retrieval import historical_features
from parity.testing import reference_historical_features
from tests.conftest import write_repo

T0 = datetime(2026, 2, 1, tzinfo=UTC)
US = pa.timestamp("us", tz="UTC")
account = Entity(name="account", join_keys=["account_id"])
REFS = ["stats:x", "stats:n"]


def moment(step: int, micro: int = 0) -> datetime:
    return T0 + timedelta(minutes=30 * step, microseconds=micro)


def stats_view(ttl: timedelta | None, created: bool = True) -> FeatureView:
    return FeatureView(
        name="stats",
        entities=[account],
        schema=[Field(name="x", dtype=Float64), Field(name="n", dtype=Int64)],
        source=FileSource(
            path="stats",
            timestamp_field="ts",
            created_timestamp_column="created" if created else None,
        ),
        ttl=ttl,
    )


def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "account_id": pa.array([r["account_id"] for r in rows], pa.int64()),
            "ts": pa.array([r["ts"] for r in rows], US),
            "created": pa.array([r.get("created") for r in rows], US),
            "x": pa.array([r.get("x") for r in rows], pa.float64()),
            "n": pa.array([r.get("n") for r in rows], pa.int64()),
        }
    )


def write_files(root: Path, parts: list[pa.Table]) -> None:
    folder = root / "stats"
    folder.mkdir(parents=True, exist_ok=True)
    for index, part in enumerate(parts):
        pq.write_table(part, folder / f"part-{index}.parquet")


def retrieve(root: Path, view: FeatureView, entity_df: Any) -> tuple[pd.DataFrame, str]:
    engine = DuckDBEngine(root)
    catalog = Catalog.build("p", [account, view])
    job = historical_features(engine, catalog, entity_df, REFS)
    return job.to_pandas(), job.sql  # type: ignore[attr-defined]


def comparable(frame: pd.DataFrame) -> list[list[object]]:
    return [
        [None if (not isinstance(v, str) and pd.isna(v)) else v for v in row]
        for row in frame.astype(object).itertuples(index=False)
    ]


def has_ties(rows: list[dict[str, Any]]) -> bool:
    """Independent of the engine: two rows with the same key and event time."""
    seen = [(r["account_id"], r["ts"]) for r in rows]
    return len(seen) != len(set(seen))


source_row = st.fixed_dictionaries(
    {
        "account_id": st.integers(1, 3),
        "ts": st.builds(moment, st.integers(0, 8), st.sampled_from([0, 0, 1])),
        "created": st.one_of(st.none(), st.builds(moment, st.integers(0, 9))),
        "x": st.one_of(st.none(), st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 2))),
        "n": st.one_of(st.none(), st.integers(-3, 3)),
    }
)
# Entity times on the same half-hour grid: exactly at a row's time and exactly at its ttl edge.
entity_row = st.tuples(
    st.integers(1, 4), st.builds(moment, st.integers(-1, 12), st.sampled_from([0, 0, 1]))
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(source_row, max_size=14),
    entity_rows=st.lists(entity_row, min_size=1, max_size=12),
    ttl=st.sampled_from([None, timedelta(hours=1), timedelta(minutes=90), timedelta(hours=2)]),
    split=st.integers(0, 14),
    created=st.booleans(),
)
def test_proven_sources_take_one_asof_join_and_equal_the_reference(
    rows: list[dict[str, Any]],
    entity_rows: list[tuple[int, datetime]],
    ttl: timedelta | None,
    split: int,
    created: bool,
) -> None:
    view = stats_view(ttl, created)
    entity_df = pd.DataFrame(entity_rows, columns=["account_id", "event_timestamp"])
    source = table(rows)
    expected = reference_historical_features(
        entity_df, resolve(Catalog.build("p", [account, view]), REFS), {"stats": source.to_pandas()}
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_files(root, [source.slice(0, split), source.slice(split)])
        two_pass, two_pass_sql = retrieve(root, view, entity_df)
        assert DuckDBEngine(root).prove_untied(view) is not has_ties(rows)
        proven, proven_sql = retrieve(root, view, entity_df)
    assert "QUALIFY" in two_pass_sql
    assert ("QUALIFY" in proven_sql) is has_ties(rows)  # the one-ASOF join only when proven
    assert list(proven.columns) == list(expected.columns)
    assert comparable(proven) == comparable(expected) == comparable(two_pass)
    assert list(proven.dtypes) == list(two_pass.dtypes)


def test_exact_ties_are_never_proven_and_break_by_created_then_ingestion(tmp_path: Path) -> None:
    view = stats_view(ttl=None)
    write_files(
        tmp_path,
        [
            table(
                [
                    # account 1: a tie on event time, the later created time wins
                    {"account_id": 1, "ts": moment(0), "created": moment(2), "x": 2.0, "n": 2},
                    {"account_id": 1, "ts": moment(0), "created": moment(1), "x": 1.0, "n": 1},
                    # account 2: a tie on event and created time, the last ingested row wins
                    {"account_id": 2, "ts": moment(0), "created": moment(1), "x": 3.0, "n": 3},
                    {"account_id": 2, "ts": moment(0), "created": moment(1), "x": 4.0, "n": 4},
                    # account 3: a null created time ranks below a real one
                    {"account_id": 3, "ts": moment(0), "created": moment(1), "x": 5.0, "n": 5},
                    {"account_id": 3, "ts": moment(0), "created": None, "x": 6.0, "n": 6},
                ]
            )
        ],
    )
    assert DuckDBEngine(tmp_path).prove_untied(view) is False
    assert not (tmp_path / ties.PROOF_DIRECTORY).exists()
    entity_df = pd.DataFrame({"account_id": [1, 2, 3], "event_timestamp": [moment(1)] * 3})
    result, sql = retrieve(tmp_path, view, entity_df)
    assert "QUALIFY" in sql
    assert result["x"].tolist() == [2.0, 4.0, 5.0]


def test_a_file_added_later_with_a_tie_is_not_missed(tmp_path: Path) -> None:
    view = stats_view(ttl=None)
    first = table([{"account_id": 1, "ts": moment(0), "created": moment(0), "x": 1.0, "n": 1}])
    write_files(tmp_path, [first])
    assert DuckDBEngine(tmp_path).prove_untied(view) is True
    entity_df = pd.DataFrame({"account_id": [1], "event_timestamp": [moment(1)]})
    assert "QUALIFY" not in retrieve(tmp_path, view, entity_df)[1]
    # A second file ties the first one's row with a later created time: it must win.
    later = table([{"account_id": 1, "ts": moment(0), "created": moment(1), "x": 9.0, "n": 9}])
    write_files(tmp_path, [first, later])
    result, sql = retrieve(tmp_path, view, entity_df)
    assert "QUALIFY" in sql
    assert result["x"].tolist() == [9.0]
    assert DuckDBEngine(tmp_path).prove_untied(view) is False


def test_a_file_rewritten_in_place_is_not_covered_by_its_old_proof(tmp_path: Path) -> None:
    view = stats_view(ttl=None)
    write_files(tmp_path, [table([{"account_id": 1, "ts": moment(0), "x": 1.0}])])
    assert DuckDBEngine(tmp_path).prove_untied(view) is True
    files = [str(tmp_path / "stats" / "part-0.parquet")]
    assert ties.is_proven(tmp_path, view, files)
    tied = table([{"account_id": 1, "ts": moment(0), "x": 1.0}, {"account_id": 1, "ts": moment(0)}])
    write_files(tmp_path, [tied])
    assert not ties.is_proven(tmp_path, view, files)
    os.remove(files[0])
    assert not ties.is_proven(tmp_path, view, files)  # a file gone proves nothing


def test_entity_frames_of_every_kind_agree_on_a_proven_source(tmp_path: Path) -> None:
    """Duplicate rows, row order, naive and aware times, Parquet path input, entity rows before
    any feature row and unknown keys, null features: the one-ASOF join equals the two-pass one."""
    view = stats_view(ttl=timedelta(hours=1))
    rows = [
        {"account_id": 1, "ts": moment(2), "created": None, "x": 1.5, "n": None},
        {"account_id": 1, "ts": moment(4), "created": moment(4), "x": None, "n": 4},
        {"account_id": 2, "ts": moment(3), "created": moment(3), "x": 2.5, "n": 2},
    ]
    write_files(tmp_path, [table(rows)])
    naive = [t.replace(tzinfo=None) for t in (moment(5), moment(0), moment(4), moment(6))]
    frames: dict[str, Any] = {
        "aware": pd.DataFrame(
            {
                "account_id": [2, 1, 1, 1, 9, 1],
                "event_timestamp": [
                    moment(5),
                    moment(0),
                    moment(4),
                    moment(4),
                    moment(4),
                    moment(6),
                ],
                "label": ["a", "b", "c", "c", "d", "e"],
            }
        ),
        "naive": pd.DataFrame({"account_id": [2, 1, 1, 1], "event_timestamp": naive}),
    }
    path = tmp_path / "entities.parquet"
    frames["aware"].to_parquet(path)
    frames["path"] = str(path)
    two_pass = {name: retrieve(tmp_path, view, frame) for name, frame in frames.items()}
    assert DuckDBEngine(tmp_path).prove_untied(view) is True
    for name, frame in frames.items():
        proven, sql = retrieve(tmp_path, view, frame)
        assert "QUALIFY" not in sql
        expected = two_pass[name][0]
        assert comparable(proven) == comparable(expected), name
        assert list(proven.dtypes) == list(expected.dtypes), name
    # rows before any feature row (1 at 0), at the ttl edge (2 at 5: 3 + 2 steps = 1 h), a null
    # feature (1 at 4), past the ttl (1 at 6), an unknown key (9)
    assert comparable(two_pass["aware"][0][["x", "n"]]) == [
        [2.5, 2],
        [None, None],
        [None, 4],
        [None, 4],
        [None, None],
        [None, 4],
    ]


def test_apply_keeps_a_proof_that_retrieval_uses(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path / "repo",
        {
            "defs.py": """
                from datetime import timedelta
                from parity import Entity, FeatureView, Field, FileSource, Float64, Int64

                account = Entity(name="account", join_keys=["account_id"])
                stats = FeatureView(
                    name="stats", entities=[account],
                    schema=[Field(name="x", dtype=Float64), Field(name="n", dtype=Int64)],
                    source=FileSource(path="stats", timestamp_field="ts",
                                      created_timestamp_column="created"),
                    ttl=timedelta(hours=3),
                )
            """
        },
    )
    write_files(root, [table([{"account_id": 1, "ts": moment(0), "x": 1.0, "n": 1}])])
    store = FeatureStore(root)
    store.apply()
    assert len(list((root / ties.PROOF_DIRECTORY).iterdir())) == 1
    entity_df = pd.DataFrame({"account_id": [1], "event_timestamp": [moment(1)]})
    job = store.get_historical_features(entity_df, REFS)
    assert "QUALIFY" not in job.sql  # type: ignore[attr-defined]
    assert job.to_pandas()["x"].tolist() == [1.0]
    # A tied file appended later: the old proof no longer applies, before or after an apply.
    tied = table([{"account_id": 1, "ts": moment(0), "created": moment(1), "x": 2.0, "n": 2}])
    pq.write_table(tied, root / "stats" / "part-1.parquet")
    job = store.get_historical_features(entity_df, REFS)
    assert "QUALIFY" in job.sql  # type: ignore[attr-defined]
    assert job.to_pandas()["x"].tolist() == [2.0]
    store.apply()
    assert len(list((root / ties.PROOF_DIRECTORY).iterdir())) == 1  # nothing new proven
    assert store.get_historical_features(entity_df, REFS).to_pandas()["x"].tolist() == [2.0]
