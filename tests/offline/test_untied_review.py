"""Review of the one-ASOF join for proven sources (offline/ties.py): inputs where a proof made
on the source's own values could miss ties the join sees, against the two-pass join and pandas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from parity import Catalog, Entity, FeatureStore, FeatureView, String
from parity.offline.duckdb_engine import DuckDBEngine
from parity.offline.retrieval import historical_features
from tests.conftest import write_repo
from tests.offline.test_untied import REFS, US, moment, retrieve, stats_view


def test_text_keys_cast_to_an_integer_entity_key_tie_and_break_as_the_two_pass_join(
    tmp_path: Path,
) -> None:
    """'1', '01' and ' 1' differ as text (the proof's view) but all equal the entity key 1
    once DuckDB casts the text to BIGINT for the join: a tie, which the newest created breaks."""
    view = stats_view(ttl=None)
    (tmp_path / "stats").mkdir()
    source = pa.table(
        {
            "account_id": pa.array(["1", "01", " 1"]),
            "ts": pa.array([moment(0)] * 3, US),
            "created": pa.array([moment(0), moment(2), moment(1)], US),
            "x": pa.array([1.0, 2.0, 3.0]),
            "n": pa.array([1, 2, 3]),
        }
    )
    pq.write_table(source, tmp_path / "stats" / "part-0.parquet")
    entity_df = pd.DataFrame({"account_id": [1], "event_timestamp": [moment(1)]})
    two_pass, _ = retrieve(tmp_path, view, entity_df)
    # Oracle: every text key equal to 1 as a number ties at moment(0); the newest created wins.
    frame = source.to_pandas()
    matching = frame[frame["account_id"].str.strip().astype(int) == 1]
    expected = matching.sort_values("created").iloc[-1]
    assert two_pass["x"].tolist() == [expected["x"]] == [2.0]
    DuckDBEngine(tmp_path).prove_untied(view)
    proven, _ = retrieve(tmp_path, view, entity_df)
    assert proven["x"].tolist() == [2.0]
    assert proven["n"].tolist() == [2]


def test_text_keys_against_text_entity_keys_keep_the_one_asof_join(tmp_path: Path) -> None:
    text_account = Entity(name="account", join_keys=["account_id"], value_type=String)
    view = FeatureView(**{**stats_view(ttl=None).model_dump(), "entities": [text_account]})
    (tmp_path / "stats").mkdir()
    source = pa.table(
        {
            "account_id": pa.array(["1", "01"]),
            "ts": pa.array([moment(0)] * 2, US),
            "created": pa.array([moment(0), moment(2)], US),
            "x": pa.array([1.0, 2.0]),
            "n": pa.array([1, 2]),
        }
    )
    pq.write_table(source, tmp_path / "stats" / "part-0.parquet")
    keys = ["1", "01", "2"]
    assert DuckDBEngine(tmp_path).prove_untied(view) is True
    for column in (keys, pd.Categorical(keys)):  # pandas' category is text too
        entity_df = pd.DataFrame({"account_id": column, "event_timestamp": [moment(1)] * 3})
        job = historical_features(
            DuckDBEngine(tmp_path), Catalog.build("p", [text_account, view]), entity_df, REFS
        )
        proven, sql = job.to_pandas(), job.sql  # type: ignore[attr-defined]
        assert "QUALIFY" not in sql
        assert proven["x"].tolist()[:2] == [1.0, 2.0]
        assert pd.isna(proven["x"].tolist()[2])


def test_a_coarser_key_over_proven_files_is_not_covered_and_mixed_requests_agree(
    tmp_path: Path,
) -> None:
    """The same files under a view keyed by account (no ties) and one keyed by region (ties),
    with null keys and null times beside them: only the first is proven, the same name
    redefined with the coarser key is not, and one request over both (full feature names)
    equals the two-pass join and pandas."""
    region = Entity(name="region", join_keys=["region_id"])
    schema = list(stats_view(ttl=None).fields)

    def keyed(name: str, entity: Entity) -> FeatureView:
        source = stats_view(ttl=None).batch_source
        return FeatureView(name=name, entities=[entity], schema=schema, source=source)

    fine = stats_view(ttl=None)
    coarse = keyed("by_region", region)
    (tmp_path / "stats").mkdir()
    source = pa.table(
        {
            "account_id": pa.array([1, 2, None, 3], pa.int64()),
            "region_id": pa.array([7, 7, 7, None], pa.int64()),
            "ts": pa.array([moment(0), moment(0), moment(0), None], US),
            "created": pa.array([moment(1), moment(2), moment(3), moment(4)], US),
            "x": pa.array([1.0, 2.0, 3.0, 4.0]),
            "n": pa.array([1, 2, 3, 4]),
        }
    )
    pq.write_table(source, tmp_path / "stats" / "part-0.parquet")
    entity_df = pd.DataFrame(
        {"account_id": [1, 2, 3], "region_id": [7, 7, 7], "event_timestamp": [moment(1)] * 3}
    )
    catalog = Catalog.build("p", [account_entity(), region, fine, coarse])
    refs = ["stats:x", "by_region:x"]

    def run() -> tuple[pd.DataFrame, str]:
        job = historical_features(
            DuckDBEngine(tmp_path), catalog, entity_df, refs, full_feature_names=True
        )
        return job.to_pandas(), job.sql  # type: ignore[attr-defined]

    two_pass, sql = run()
    assert sql.count("QUALIFY") == 2
    engine = DuckDBEngine(tmp_path)
    assert engine.prove_untied(fine) is True
    assert engine.prove_untied(coarse) is False  # 1 and 2 tie in region 7 (the null key aside)
    assert engine.prove_untied(keyed("stats", region)) is False  # same name, coarser key
    proven, sql = run()
    assert sql.count("QUALIFY") == 1
    # pandas: account rows by key at moment(0); region 7's tie broken by the newest created
    # among rows with a key and a time (the null-account row counts for the region).
    assert proven["stats__x"].tolist()[:2] == [1.0, 2.0]
    assert pd.isna(proven["stats__x"].tolist()[2])  # account 3's only row has no time
    newest = source.to_pandas().dropna(subset=["region_id", "ts"]).sort_values("created")
    assert proven["by_region__x"].tolist() == [newest["x"].iloc[-1]] * 3 == [3.0] * 3
    assert proven.equals(two_pass)


def account_entity() -> Entity:
    return Entity(name="account", join_keys=["account_id"])


def test_apply_then_retrieval_breaks_a_cast_key_tie_by_the_newest_created(tmp_path: Path) -> None:
    """The public flow: apply accepts text account ids under an Int64 entity (the key is not a
    schema field, so its type is not checked) and proves them untied as text."""
    root = write_repo(
        tmp_path / "repo",
        {
            "defs.py": """
                from parity import Entity, FeatureView, Field, FileSource, Float64, Int64

                account = Entity(name="account", join_keys=["account_id"])
                stats = FeatureView(
                    name="stats", entities=[account],
                    schema=[Field(name="x", dtype=Float64), Field(name="n", dtype=Int64)],
                    source=FileSource(path="stats", timestamp_field="ts",
                                      created_timestamp_column="created"),
                    ttl=None,
                )
            """
        },
    )
    (root / "stats").mkdir()
    source = pa.table(
        {
            "account_id": pa.array(["07", "7"]),
            "ts": pa.array([moment(0)] * 2, US),
            "created": pa.array([moment(1), moment(3)], US),
            "x": pa.array([2.0, 1.0]),
            "n": pa.array([2, 1]),
        }
    )
    pq.write_table(source, root / "stats" / "part-0.parquet")
    store = FeatureStore(root)
    store.apply()
    entity_df = pd.DataFrame({"account_id": [7], "event_timestamp": [moment(1)]})
    result = store.get_historical_features(entity_df, REFS).to_pandas()
    assert result[["x", "n"]].values.tolist() == [[1.0, 1]]  # created moment(3) beats moment(1)
