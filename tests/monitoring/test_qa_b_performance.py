"""QA (issue 13, helper B): delayed-label performance edges found by replaying the issue as a
user would, each a regression test of a fixed defect."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from parity import FeatureStore
from parity.errors import InvalidTime, ScoreOutputNotFound
from parity.inference.predlog import ParquetLogSink
from tests.monitoring.test_perf_labels import DAY, SCORES, T0, _record
from tests.monitoring.test_perf_service import FRAUD, fraud_repo, register


def test_a_range_of_millions_of_windows_is_refused_not_an_out_of_memory(tmp_path: Path) -> None:
    # `--since 2000-01-01 --window 1m` asked for ~14 million windows: MemoryError traceback
    # after minutes; drift refuses over 100,000 windows (InvalidWindow), performance must too
    with FeatureStore(fraud_repo(tmp_path / "repo")) as store:
        store.apply()
        register(store)
        with pytest.raises(InvalidTime, match=r"windows of 0:01:00.*at most 100,000"):
            store.monitoring.performance(
                "fraud@champion",
                since=T0 - timedelta(minutes=200_000),
                until=T0,
                window=timedelta(minutes=1),
                record=False,
            )


def _register_with_signature(store: FeatureStore) -> list[str]:
    """fraud/1 as champion, with a signature (sample input): its output names."""
    from sklearn.linear_model import LogisticRegression

    x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    version = store.models.register_model(
        "fraud", LogisticRegression().fit(x, y), alias="champion", sample_input=x
    )
    assert version.signature is not None
    return [str(o["name"]) for o in version.signature["outputs"]]


def _with_score_output(repo: Path, name: str) -> None:
    text = (repo / "monitors.py").read_text()
    (repo / "monitors.py").write_text(
        text.replace("top_k=100,", f"top_k=100, score_output={name!r},")
    )


def test_a_score_output_the_model_does_not_have_is_a_typed_error(tmp_path: Path) -> None:
    # Monitor(score_output="nope") read every score as null: all metrics "-", every window
    # "final (few labels)" with the reason "no labelled predictions", and no warning at all.
    repo = fraud_repo(tmp_path / "repo")
    _with_score_output(repo, "nope")
    with FeatureStore(repo) as store:
        store.apply()
        outputs = _register_with_signature(store)
        with pytest.raises(ScoreOutputNotFound, match=rf"'nope'.*fraud/1.*{outputs}"):
            store.monitoring.performance(
                "fraud@champion",
                since=T0,
                until=T0 + DAY,
                window=DAY,
                as_of=T0 + 40 * DAY,
                record=False,
            )


def test_naming_the_only_output_of_a_one_output_model_reads_its_logged_number(
    tmp_path: Path,
) -> None:
    # A one-output model logs a bare number: score_output=<its one output> read null scores.
    repo = fraud_repo(tmp_path / "repo")
    with FeatureStore(repo) as store:
        store.apply()
        (only,) = _register_with_signature(store)
    _with_score_output(repo, only)
    with FeatureStore(repo) as store:
        store.apply()
        report = store.monitoring.performance(
            "fraud@champion",
            since=T0,
            until=T0 + DAY,
            window=DAY,
            as_of=T0 + 40 * DAY,
            record=False,
        )
    (day1,) = report.windows
    y = [FRAUD[i] for i in range(6)]
    assert (day1.labelled, day1.dropped_scores) == (6, 0)
    assert day1.metrics["auc"] == pytest.approx(roc_auc_score(y, SCORES[:6]))


def test_labelled_rows_whose_scores_were_all_dropped_say_so(tmp_path: Path) -> None:
    # The reason read "no labelled predictions in the window" next to labelled = 2.
    repo = fraud_repo(tmp_path / "repo")
    sink = ParquetLogSink(repo / "data" / "prediction_log")
    late = T0 + 3 * DAY
    sink.write([_record(i, request_id=f"txn-{i}", prediction=None, at=late) for i in (0, 1)])
    sink.close()
    with FeatureStore(repo) as store:
        store.apply()
        register(store)
        report = store.monitoring.performance(
            "fraud@champion",
            since=late,
            until=late + DAY,
            window=DAY,
            as_of=T0 + 40 * DAY,
            record=False,
        )
    (day,) = report.windows
    assert (day.predictions, day.labelled, day.dropped_scores) == (2, 2, 2)
    assert day.metrics["auc"] is None
    assert "2 labelled predictions" in day.reasons["auc"] and "score" in day.reasons["auc"]
    assert "score" in day.reasons["dollar_weighted_recall"]


def test_an_as_of_after_now_is_refused_and_records_nothing(tmp_path: Path) -> None:
    # `--as-of 2027-06-01` reported every window "final" with labels "known" in the future and
    # stored them: performance_history (newest as_of wins) then hid every real run until 2027.
    with FeatureStore(fraud_repo(tmp_path / "repo"), clock=lambda: T0 + 10 * DAY) as store:
        store.apply()
        register(store)
        with pytest.raises(InvalidTime, match=r"as_of .* is after now"):
            store.monitoring.performance(
                "fraud@champion", since=T0, until=T0 + DAY, as_of=T0 + 40 * DAY
            )
        assert store.monitoring.performance_history("fraud") == []
        report = store.monitoring.performance("fraud@champion", since=T0, as_of="now")
        assert report.as_of == T0 + 10 * DAY


def test_windows_align_to_utc_whatever_offset_since_was_written_in() -> None:
    # --since 2026-11-01T00:00:00+05:00 made day windows start at 00:00+05:00 (19:00 UTC), so the
    # history held overlapping "days" depending on how a user typed the time.
    from datetime import UTC, datetime
    from datetime import timezone as tz

    from parity.monitoring.performance import windows

    plus5 = tz(timedelta(hours=5))
    spans = windows(
        datetime(2026, 11, 1, tzinfo=plus5), datetime(2026, 11, 2, tzinfo=plus5), timedelta(days=1)
    )
    assert [(w.start, w.end) for w in spans] == [
        (datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
        (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)),
    ]
    assert all(w.start.utcoffset() == timedelta(0) for w in spans)
