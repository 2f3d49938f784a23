"""Seeded data for bench_retrieval.py: a driver-stats feature table and an entity frame.

    python retrieval_data.py OUT_DIR SIZE      (SIZE: small | large)

Writes OUT_DIR/driver_stats.parquet, OUT_DIR/entities.parquet and OUT_DIR/params.json, unless
params.json already holds the same parameters and both files are there (then it does nothing).

The constants at the top are imported by the benchmark without numpy; numpy and pyarrow are
imported only when data is generated.

driver_stats.parquet: `driver_id` int64, `event_timestamp` and `created` timestamp[us, UTC]
(created = event + 1..9 s), then 10 features: 8 float64 and 2 int64. Event times are whole
seconds spread over 60 days; rows are in event-time order (an append-only log) and written in
10 row groups. No (driver_id, event_timestamp) pair repeats, so every correct engine returns
the same values. `rating` (float64) and `completed_trips_30d` (int64) have ~1% and ~0.5% nulls.
One driver in ten churns: its rows stop after day 20, so entity rows after day 50 for it are
past the 30-day ttl and get nulls.

entities.parquet: `driver_id`, `event_timestamp` (whole seconds, uniform over the same 60 days
plus one day) and `label` int64 (0/1), in random order. ~2% of rows name drivers with no
feature rows at all. No (driver_id, event_timestamp) pair repeats either.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

GENERATOR_VERSION = 1
SEED = 20240601
START_EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY_S = 86_400
FEATURE_DAYS = 60
ENTITY_DAYS = 61
CHURN_DAYS = 20
TTL_DAYS = 30
FIRST_DRIVER_ID = 1_000_000

SIZES: dict[str, dict[str, int]] = {
    "small": {"feature_rows": 1_000_000, "drivers": 10_000, "entity_rows": 100_000},
    "large": {"feature_rows": 10_000_000, "drivers": 100_000, "entity_rows": 1_000_000},
}

# (name, "float64" | "int64"): 8 float64 and 2 int64, in this order in the file and the requests.
FEATURES: list[tuple[str, str]] = [
    ("conv_rate", "float64"),
    ("acc_rate", "float64"),
    ("avg_daily_trips", "int64"),
    ("rating", "float64"),
    ("earnings_per_hour", "float64"),
    ("cancel_rate", "float64"),
    ("idle_minutes_avg", "float64"),
    ("distance_km_avg", "float64"),
    ("online_hours", "float64"),
    ("completed_trips_30d", "int64"),
]
FEATURE_NAMES = [name for name, _ in FEATURES]
FEATURE_FILE = "driver_stats.parquet"
ENTITY_FILE = "entities.parquet"
PARAMS_FILE = "params.json"


def params(size: str) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": SEED,
        "size": size,
        **SIZES[size],
        "start_epoch_s": START_EPOCH_S,
        "feature_days": FEATURE_DAYS,
        "entity_days": ENTITY_DAYS,
        "churn_days": CHURN_DAYS,
        "features": FEATURES,
    }


def is_current(out: Path, size: str) -> bool:
    """True if OUT holds both files generated with today's parameters."""
    try:
        stored = json.loads((out / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return False
    expected = json.loads(json.dumps(params(size)))  # tuples -> lists, as stored
    return stored == expected and (out / FEATURE_FILE).is_file() and (out / ENTITY_FILE).is_file()


def _unique_pairs(rng: Any, drivers: Any, seconds: Any, draw: Any) -> None:
    """Redraw seconds (in place) of rows whose (driver, second) pair repeats until none does."""
    import numpy as np

    span = np.int64(ENTITY_DAYS * DAY_S + 1)
    while True:
        keys = drivers.astype(np.int64) * span + seconds
        order = np.argsort(keys, kind="stable")
        repeated = order[1:][keys[order[1:]] == keys[order[:-1]]]
        if repeated.size == 0:
            return
        seconds[repeated] = draw(rng, drivers[repeated])


def generate(out: Path, size: str) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    spec = SIZES[size]
    n, n_drivers, n_entities = spec["feature_rows"], spec["drivers"], spec["entity_rows"]
    rng = np.random.default_rng(SEED + (0 if size == "small" else 1))
    churned = rng.random(n_drivers) < 0.10
    window_s = np.where(churned, CHURN_DAYS * DAY_S, FEATURE_DAYS * DAY_S).astype(np.int64)

    def feature_seconds(gen: Any, drivers: Any) -> Any:
        return gen.integers(0, window_s[drivers])

    drivers = rng.integers(0, n_drivers, n, dtype=np.int64)
    seconds = feature_seconds(rng, drivers)
    _unique_pairs(rng, drivers, seconds, feature_seconds)
    order = np.lexsort((drivers, seconds))
    drivers, seconds = drivers[order], seconds[order]

    micros = (START_EPOCH_S + seconds) * 1_000_000
    created = micros + rng.integers(1, 10, n, dtype=np.int64) * 1_000_000
    ts_type = pa.timestamp("us", tz="UTC")
    columns: dict[str, Any] = {
        "driver_id": pa.array(drivers + FIRST_DRIVER_ID, pa.int64()),
        "event_timestamp": pa.array(micros, ts_type),
        "created": pa.array(created, ts_type),
    }
    rating_null = rng.random(n) < 0.01
    trips_null = rng.random(n) < 0.005
    values = {
        "conv_rate": rng.beta(2.0, 5.0, n),
        "acc_rate": rng.beta(8.0, 2.0, n),
        "avg_daily_trips": rng.poisson(12, n).astype(np.int64),
        "rating": np.round(rng.uniform(3.5, 5.0, n), 2),
        "earnings_per_hour": np.round(rng.gamma(9.0, 3.0, n), 2),
        "cancel_rate": rng.beta(1.0, 20.0, n),
        "idle_minutes_avg": rng.exponential(8.0, n),
        "distance_km_avg": rng.lognormal(2.0, 0.5, n),
        "online_hours": rng.uniform(0.0, 12.0, n),
        "completed_trips_30d": rng.poisson(300, n).astype(np.int64),
    }
    masks = {"rating": rating_null, "completed_trips_30d": trips_null}
    for name, kind in FEATURES:
        columns[name] = pa.array(values[name], getattr(pa, kind)(), mask=masks.get(name))
    table = pa.table(columns)
    del values, columns
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_FILE).unlink(missing_ok=True)
    pq.write_table(table, out / FEATURE_FILE, row_group_size=max(1, n // 10))
    del table

    def entity_seconds(gen: Any, drivers: Any) -> Any:
        return gen.integers(0, ENTITY_DAYS * DAY_S, drivers.shape[0])

    known = rng.random(n_entities) >= 0.02
    e_drivers = np.where(
        known,
        rng.integers(0, n_drivers, n_entities),
        n_drivers + rng.integers(0, max(1, n_drivers // 10), n_entities),
    ).astype(np.int64)
    e_seconds = entity_seconds(rng, e_drivers)
    _unique_pairs(rng, e_drivers, e_seconds, entity_seconds)
    entities = pa.table(
        {
            "driver_id": pa.array(e_drivers + FIRST_DRIVER_ID, pa.int64()),
            "event_timestamp": pa.array((START_EPOCH_S + e_seconds) * 1_000_000, ts_type),
            "label": pa.array(rng.integers(0, 2, n_entities), pa.int64()),
        }
    )
    pq.write_table(entities, out / ENTITY_FILE)
    (out / PARAMS_FILE).write_text(json.dumps(params(size), indent=1))


def main(argv: list[str]) -> int:
    out, size = Path(argv[0]), argv[1]
    if is_current(out, size):
        print(f"data: reusing {out}")
        return 0
    start = time.perf_counter()
    generate(out, size)
    print(f"data: generated {size} in {time.perf_counter() - start:.1f} s under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
