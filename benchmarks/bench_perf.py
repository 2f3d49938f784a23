"""Delayed-label performance over a large prediction log (issue 13): join + metrics per window.

    .venv/bin/python benchmarks/bench_perf.py [--rows 1000000] [--days 30]

Writes a prediction log of `--rows` predictions (the model server's Parquet schema, one file per
day) and a label file covering 60 % of them (request-id join, label times spread over 20 days)
under benchmarks/.work/perf/, then times one run of 1-day windows as of the end of the data plus
10 days: the DuckDB join (labels known by then, latest per key) and every metric per window.
Prints the seconds of each phase, the peak memory, and, as the peer measured in the same run,
scikit-learn computing the same ranking and probability metrics on the same per-window arrays
(AUC, average precision, Brier, log loss, calibration curve), with the largest difference.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from parity import LabelSource, Monitor
from parity.inference.predlog import log_schema
from parity.monitoring import labels
from parity.monitoring.performance import LOG_LOSS_EPS, windows
from parity.monitoring.performance_report import BoundMetrics, evaluate

WORK = Path(__file__).resolve().parent / ".work" / "perf"
START = datetime(2026, 1, 1, tzinfo=UTC)


def write_data(rows: int, days: int, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    shutil.rmtree(WORK, ignore_errors=True)
    offsets = np.sort(rng.integers(0, days * 86_400_000_000, rows))
    fraud = rng.random(rows) < 0.02
    score = np.clip(rng.beta(1, 12, rows) + 0.5 * fraud * rng.random(rows), 0, 1)
    ids = np.char.add("r", np.arange(rows).astype(str))
    at = np.datetime64(START.replace(tzinfo=None), "us") + offsets.astype("timedelta64[us]")
    day = offsets // 86_400_000_000
    for d in range(days):
        pick = day == d
        folder = WORK / "log" / f"date={(START + timedelta(days=d)).date()}"
        folder.mkdir(parents=True)
        n = int(pick.sum())
        table = pa.table(
            {
                "request_id": ids[pick],
                "event_timestamp": pa.array(at[pick], pa.timestamp("us", tz="UTC")),
                "model": ["fraud"] * n,
                "version": pa.array(np.ones(n, dtype=np.int64)),
                "alias": ["champion"] * n,
                "entities": ['{"account_id":1}'] * n,
                "features": ["{}"] * n,
                "prediction": np.char.mod("%.6f", score[pick]),
                "latency_ms": np.ones(n),
                "status": ["ok"] * n,
            },
            schema=log_schema(),
        )
        pq.write_table(table, folder / "predictions.parquet")
    labelled = rng.random(rows) < 0.6
    known = offsets + rng.integers(0, 20 * 86_400_000_000, rows)
    pq.write_table(
        pa.table(
            {
                "request_id": ids[labelled],
                "is_fraud": fraud[labelled],
                "amount": rng.gamma(2.0, 40.0, int(labelled.sum())),
                "label_timestamp": pa.array(
                    np.datetime64(START.replace(tzinfo=None), "us")
                    + known[labelled].astype("timedelta64[us]"),
                    pa.timestamp("us", tz="UTC"),
                ),
            }
        ),
        WORK / "labels.parquet",
    )


def sklearn_peer(joined: labels.Joined, count: int) -> tuple[float, list[dict[str, float]]]:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    started = time.perf_counter()
    order = joined.rows.column("__window").to_numpy()
    out = []
    for index in range(count):
        first, stop = np.searchsorted(order, [index, index + 1])
        part = joined.rows.slice(int(first), int(stop - first))
        y = part.column("__label").to_numpy(zero_copy_only=False).astype(bool)
        s = part.column("__score").to_numpy()
        calibration_curve(y, s, n_bins=10)
        out.append(
            {
                "auc": roc_auc_score(y, s),
                "average_precision": average_precision_score(y, s),
                "brier": brier_score_loss(y, s),
                "log_loss": log_loss(y, np.clip(s, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)),
            }
        )
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    started = time.perf_counter()
    write_data(args.rows, args.days)
    print(f"wrote {args.rows:,} predictions in {time.perf_counter() - started:.1f} s")
    source = LabelSource(
        path=str(WORK / "labels.parquet"), label="is_fraud", label_timestamp_field="label_timestamp"
    )
    monitor = Monitor(name="m", model="fraud", window=timedelta(days=1), labels=source)
    spans = windows(START, START + timedelta(days=args.days), timedelta(days=1))
    as_of = START + timedelta(days=args.days + 10)
    connection = labels.connect(WORK)
    started = time.perf_counter()
    joined = labels.join(
        connection,
        labels.LogScope(WORK / "log", "fraud", 1),
        source,
        labels.source_sql(source, WORK),
        spans,
        as_of,
    )
    joined_s = time.perf_counter() - started
    started = time.perf_counter()
    found = evaluate(monitor, joined, spans, as_of, BoundMetrics())
    metrics_s = time.perf_counter() - started
    peer_s, peer = sklearn_peer(joined, len(spans))
    worst = max(
        abs((w.metrics[k] or 0.0) - p[k]) for w, p in zip(found, peer, strict=True) for k in p
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(spans)} windows, {sum(joined.labelled):,} labelled of {sum(joined.predictions):,}")
    print(f"join (DuckDB)          {joined_s:6.2f} s")
    print(f"metrics, all windows   {metrics_s:6.2f} s  (every metric and the reliability curve)")
    print(f"scikit-learn (peer)    {peer_s:6.2f} s  (AUC, AP, Brier, log loss, calibration curve)")
    print(f"largest difference from scikit-learn: {worst:.2e}; peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
