"""The catalog's pure pieces with hand-worked values: query parsing, freshness status, quality
sums and profile bins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parity.monitoring.profile import ColumnProfile
from parity.monitoring.quality import Counts, FeatureQuality
from parity.monitoring.quality_store import QualityRecord
from parity.ui.catalog import Query, freshness_json, parse_query, profile_json, quality_json

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_parse_query_splits_words_and_qualifiers() -> None:
    assert parse_query("  Txn owner:Risk tag:team tag:tier=Gold x:y  ") == Query(
        words=("txn", "x:y"), owners=("risk",), tags=(("team", None), ("tier", "gold"))
    )
    assert parse_query("owner: tag:") == Query(words=("owner:", "tag:"))
    assert parse_query("") == Query()


@pytest.mark.parametrize(
    ("newest", "slo", "status", "age"),
    [
        (NOW - timedelta(hours=2), timedelta(hours=3), "ok", 7200.0),
        (NOW - timedelta(hours=4), timedelta(hours=3), "late", 14400.0),
        (NOW - timedelta(hours=3), timedelta(hours=3), "ok", 10800.0),  # at the SLO: not late
        (None, timedelta(hours=3), "no_data", None),
        (NOW - timedelta(hours=4), None, "no_slo", 14400.0),
        (NOW + timedelta(minutes=5), timedelta(hours=3), "ok", 0.0),  # a writer's clock ahead
    ],
)
def test_freshness_status(
    newest: datetime | None, slo: timedelta | None, status: str, age: float | None
) -> None:
    found = freshness_json(newest, slo, NOW)
    assert found["status"] == status and found["age_seconds"] == age
    assert found["slo_seconds"] == (None if slo is None else slo.total_seconds())


def _record(feature: str, counts: Counts) -> QualityRecord:
    quality = FeatureQuality(feature, counts, {}, {})
    return QualityRecord("materialize", "v", feature, NOW, NOW, quality)


def test_quality_sums_the_features_records() -> None:
    records = [
        _record("f", Counts(rows=100, nulls=10, infinite=1, below=2, above=3, ranged=89)),
        _record("f", Counts(rows=300, nulls=30, ranged=270, unseen=0, categorized=0)),
        _record("g", Counts(rows=5, nulls=5)),
    ]
    found = quality_json(records, "f", NOW)
    assert found == {
        "since": NOW,
        "rows": 400,
        "null_rate": 40 / 400,
        "inf_rate": 1 / 400,
        "out_of_range_rate": 5 / 359,
        "unseen_rate": None,
    }
    assert quality_json(records, "h", NOW) is None


def test_profile_bins_from_deciles_drop_the_empty_first_bin() -> None:
    column = ColumnProfile(
        name="age",
        kind="numeric",
        count=12,
        nulls=2,
        infinite=0,
        distinct=5,
        min=0.0,
        max=200.0,
        quantiles=(0.0, 50.0, 200.0),
        psi_edges=(0.0, 150.0),
        psi_counts=(0, 6, 4),
        frequencies=((0.0, 5), (160.0, 3)),
        other=2,
    )
    found = profile_json(column, "train", [0.05, 0.5, 0.95])
    assert found["null_share"] == 2 / 12
    assert found["bins"] == [
        {"label": "0 to 150", "low": 0.0, "high": 150.0, "share": 0.6},
        {"label": "150 to 200", "low": 150.0, "high": 200.0, "share": 0.4},
    ]
    assert found["quantiles"] == {"0.05": 0.0, "0.5": 50.0, "0.95": 200.0}
    assert found["top"] == [{"value": 0.0, "share": 0.5}, {"value": 160.0, "share": 0.3}]
