"""Seeded data for bench_online.py: one long driver-stats log and one wide snapshot.

    python online_data.py OUT_DIR SIZE      (SIZE: small | full)

Writes OUT_DIR/driver_stats.parquet and OUT_DIR/driver_extra.parquet, and OUT_DIR/spec.json last;
does nothing when spec.json already describes the same data and both files are there.

driver_stats.parquet, the materialization workload: `driver_id` int64, `event_timestamp` and
`created` timestamp[us, UTC], then STATS (10 float64 features). The log comes in rounds: in each
round every driver reports once, in a shuffled order, at a time of its own inside the round's
slice of the DAYS-day window, so the file is in event-time order and no (driver_id,
event_timestamp) pair repeats. `created` is event + 1..9 s. Rows = drivers x rounds.

driver_extra.parquet, for the 50-feature reads: one row per driver (the same columns' types),
with the 40 float64 features of EXTRA_VIEWS, stamped one hour before the window ends.

The constants are imported by the benchmark without numpy; numpy and pyarrow load only here.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA_VERSION = 1
SEED = 4_242
FIRST_DRIVER_ID = 5_000_000
WINDOW_END = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 60
WINDOW_START = WINDOW_END - timedelta(days=DAYS)
ROUNDS_PER_GROUP_ROWS = 1_000_000  # rows per Parquet row group (whole rounds)

SIZES: dict[str, dict[str, int]] = {
    "small": {"drivers": 10_000, "rows": 200_000},
    "full": {"drivers": 100_000, "rows": 10_000_000},
}

STATS_VIEW = "driver_stats"
STATS = [f"stat_{i:02d}" for i in range(10)]
EXTRA_VIEWS = {f"driver_extra_{v}": [f"x{v}_{i:02d}" for i in range(10)] for v in range(1, 5)}
STATS_FILE = "driver_stats.parquet"
EXTRA_FILE = "driver_extra.parquet"
SPEC_FILE = "spec.json"


def spec(size: str) -> dict[str, Any]:
    return {
        "data_version": DATA_VERSION,
        "seed": SEED,
        "size": size,
        **SIZES[size],
        "first_driver_id": FIRST_DRIVER_ID,
        "window_end": WINDOW_END.isoformat(),
        "days": DAYS,
    }


def up_to_date(out: Path, size: str) -> bool:
    try:
        written = json.loads((out / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return False
    return written == spec(size) and all((out / f).is_file() for f in (STATS_FILE, EXTRA_FILE))


def _micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def generate(out: Path, size: str) -> str:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    drivers, rows = SIZES[size]["drivers"], SIZES[size]["rows"]
    rounds = rows // drivers
    rng = np.random.default_rng(SEED)
    ids = np.arange(FIRST_DRIVER_ID, FIRST_DRIVER_ID + drivers, dtype=np.int64)
    start_s = _micros(WINDOW_START) // 1_000_000
    slice_s = DAYS * 86_400 // rounds
    stamp = pa.timestamp("us", tz="UTC")
    fields = [("driver_id", pa.int64()), ("event_timestamp", stamp), ("created", stamp)]

    def table(driver: Any, event_s: Any, features: dict[str, Any]) -> pa.Table:
        created_s = event_s + rng.integers(1, 10, size=len(event_s))
        columns = [
            pa.array(driver, pa.int64()),
            pa.array(event_s * 1_000_000, pa.int64()).cast(stamp),
            pa.array(created_s * 1_000_000, pa.int64()).cast(stamp),
            *(pa.array(values, pa.float64()) for values in features.values()),
        ]
        schema = pa.schema([*fields, *((name, pa.float64()) for name in features)])
        return pa.Table.from_arrays(columns, schema=schema)

    out.mkdir(parents=True, exist_ok=True)
    (out / SPEC_FILE).unlink(missing_ok=True)
    rounds_per_group = max(1, ROUNDS_PER_GROUP_ROWS // drivers)
    writer = None
    pending: list[pa.Table] = []
    try:
        for k in range(rounds):
            order = rng.permutation(drivers)
            offsets = np.sort(rng.integers(0, slice_s, size=drivers))
            event_s = start_s + k * slice_s + offsets
            values = rng.random((len(STATS), drivers)) * 100.0
            part = table(ids[order], event_s, dict(zip(STATS, values, strict=True)))
            pending.append(part)
            if len(pending) == rounds_per_group or k == rounds - 1:
                batch = pa.concat_tables(pending)
                pending = []
                if writer is None:
                    writer = pq.ParquetWriter(out / STATS_FILE, batch.schema, compression="zstd")
                writer.write_table(batch, row_group_size=batch.num_rows)
    finally:
        if writer is not None:
            writer.close()

    names = [name for features in EXTRA_VIEWS.values() for name in features]
    extra_s = np.full(drivers, _micros(WINDOW_END) // 1_000_000 - 3_600, dtype=np.int64)
    values = rng.random((len(names), drivers)) * 100.0
    extra = table(ids, extra_s, dict(zip(names, values, strict=True)))
    pq.write_table(extra, out / EXTRA_FILE, compression="zstd")
    (out / SPEC_FILE).write_text(json.dumps(spec(size), indent=1))
    return f"{rows:,} rows x {len(STATS)} features over {drivers:,} drivers ({rounds} rounds)"


def main(argv: list[str]) -> int:
    out, size = Path(argv[0]), argv[1]
    if up_to_date(out, size):
        print(f"data: reusing {out}")
        return 0
    started = time.perf_counter()
    what = generate(out, size)
    print(f"data: generated {what} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
