"""Consistency replay against plain point-in-time retrieval of the same rows, in one run.

    .venv/bin/python benchmarks/bench_consistency.py [--rows 1000000] [--accounts 3000]
        [--service fraud_model_v2] [--repeat 2] [--skew 0.001] [--keep]

Builds the fraud example's repo (its seeded generator) under benchmarks/.work/consistency/,
draws `--rows` served rows (account, device, amount of real transactions, request times over the
last day), takes their true values from a point-in-time retrieval, skews `--skew` of them, and
writes them with the real sink (ParquetLogSink, as the feature server's served log). Then it times
`store.monitoring.consistency(service)` (read the log with DuckDB, replay, compare) against
`store.get_historical_features(rows, service).to_arrow()` of the same rows, alternating, best of
`--repeat`, and prints the ratio against the target (replay <= 2x retrieval) and `uptime`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / ".work" / "consistency"
END = datetime(
    2026, 11, 1, tzinfo=UTC
)  # the generated data ends here; requests are in the last day
TARGET = 2.0
SKEWED = "credit_limit"


def main() -> int:
    args = _arguments()
    import numpy as np

    from parity import FeatureStore
    from parity.examples.fraud.scaffold import scaffold

    repo = WORK / f"fraud_{args.accounts}"
    if repo.exists():
        shutil.rmtree(repo)
    started = time.perf_counter()
    scaffold(repo, accounts=args.accounts, days=30, end=END)
    store = FeatureStore(repo, clock=lambda: END)
    store.apply()
    frame = _entity_rows(repo, args.rows, np.random.default_rng(11))
    truth = store.get_historical_features(entity_df=frame, features=args.service).to_arrow()
    skewed = _write_log(repo, args.service, frame, truth, args.skew)
    setup = time.perf_counter() - started
    print(f"setup: {args.rows:,} logged rows, {skewed:,} skewed ({SKEWED}), {setup:.1f} s")

    pit: list[float] = []
    replay: list[float] = []
    report: Any = None
    since = END - timedelta(days=2)
    for turn in range(args.repeat):  # alternate which goes first: neither always gets warm caches
        for step in ("pit", "replay") if turn % 2 == 0 else ("replay", "pit"):
            started = time.perf_counter()
            if step == "pit":
                table = store.get_historical_features(entity_df=frame, features=args.service)
                table.to_arrow()
                pit.append(time.perf_counter() - started)
            else:
                report = store.monitoring.consistency(args.service, since=since, until=END)
                replay.append(time.perf_counter() - started)
    _print(args, report, skewed, min(pit), min(replay))
    if not args.keep:
        shutil.rmtree(repo)
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=3_000)
    parser.add_argument("--service", default="fraud_model_v2")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skew", type=float, default=0.001, help="share of rows skewed online")
    parser.add_argument("--keep", action="store_true", help="keep the generated repo")
    return parser.parse_args()


def _entity_rows(repo: Path, rows: int, rng: Any) -> Any:
    """`rows` (account, device, amount) of real transactions at request times in the last day."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.read_table(repo / "data" / "transactions.parquet")
    picks = rng.integers(0, source.num_rows, rows)
    offsets = np.sort(rng.integers(0, 86_400_000_000, rows))
    times = pa.array((END - timedelta(days=1)).timestamp() * 1_000_000 + offsets, pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )
    columns = {k: source[k].take(pa.array(picks)) for k in ("account_id", "device_id", "amount")}
    return pa.table({**columns, "event_timestamp": times})


def _write_log(repo: Path, service: str, frame: Any, truth: Any, skew: float) -> int:
    """The served log: one record per row with the true values, `skew` of them with a doubled
    credit limit. Written through the real sink in batches, as the server's writer thread does."""
    from parity.inference.predlog import ParquetLogSink, PredictionRecord
    from parity.monitoring.served_log import SERVED_VERSION

    keys = ["account_id", "device_id", "amount"]
    names = [n for n in truth.column_names if n not in (*keys, "event_timestamp")]
    sink = ParquetLogSink(repo / "data" / "served_log", max_rows_per_file=250_000)
    skewed = 0
    step = 100_000
    every = max(1, round(1 / skew)) if skew > 0 else 0
    for start in range(0, truth.num_rows, step):
        chunk = truth.slice(start, step)
        entities = chunk.select(keys).to_pylist()
        features = chunk.select(names).to_pylist()
        times = chunk["event_timestamp"].to_pylist()
        records = []
        for i, (entity, values, at) in enumerate(zip(entities, features, times, strict=True)):
            if every and (start + i) % every == 0 and values.get(SKEWED) is not None:
                values[SKEWED] = values[SKEWED] * 2 + 1
                skewed += 1
            statuses = {n: "PRESENT" if v is not None else "NOT_FOUND" for n, v in values.items()}
            prediction = {"statuses": statuses, "event_timestamps": {}}
            records.append(
                PredictionRecord(
                    "bench", at, service, SERVED_VERSION, entity, values, prediction, 0.0
                )
            )
        sink.write(records)
    sink.close()
    return skewed


def _print(args: argparse.Namespace, report: Any, skewed: int, pit: float, replay: float) -> None:
    found = next((f.counts.mismatch for f in report.features if f.feature == SKEWED), None)
    others = sum(f.counts.mismatch for f in report.features if f.feature != SKEWED)
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    ratio = replay / pit
    print(f"service {args.service}: {report.rows:,} rows replayed, {len(report.features)} features")
    print(f"mismatches found in {SKEWED}: {found:,} (skewed: {skewed:,})")
    print(f"mismatches found in the other features: {others:,}")
    print(f"point-in-time retrieval (to_arrow):             {pit:8.2f} s (best of {args.repeat})")
    print(
        f"consistency replay (log + retrieval + compare): {replay:8.2f} s (best of {args.repeat})"
    )
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"{verdict}: replay / retrieval = {ratio:.2f}x (target <= {TARGET:.0f}x)")
    print(f"machine load: {load}")


if __name__ == "__main__":
    sys.exit(main())
