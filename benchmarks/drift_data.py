"""Data for bench_drift.py: a reference training dataset (Parquet) and a current window written as
a real prediction log (ParquetLogSink), with a known mix of unshifted, slightly and clearly shifted
columns. Runs under Parity's venv; writes nothing outside the folder it is given.

    .venv/bin/python benchmarks/drift_data.py OUT_DIR --rows N --features F --reference-rows R
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MODEL = "drift_bench"
VERSION = 1
WINDOW_START = datetime(2026, 11, 20, tzinfo=UTC)  # fixed, so a cached data set stays valid
WINDOW = timedelta(days=1)
REFERENCE_ROWS = 100_000
SEED = 13
DATA_FORMAT = 3  # bump when the generated data changes: cached copies are then regenerated
CHUNK = 100_000  # records built and written per sink.write

Sampler = Callable[[np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class Spec:
    """One generated column: how reference and current values are drawn, and what a correct
    default drift test should say about it (with the reason)."""

    name: str
    kind: str  # "numeric", "discrete" (3-5 integer values), "binary", "categorical"
    reference: Sampler
    current: Sampler
    drift: bool
    note: str


def _normal(loc: float, scale: float) -> Sampler:
    return lambda rng, n: rng.normal(loc, scale, n)


def _lognormal(mean: float, sigma: float) -> Sampler:
    return lambda rng, n: rng.lognormal(mean, sigma, n)


def _uniform(low: float, high: float) -> Sampler:
    return lambda rng, n: rng.uniform(low, high, n)


def _ints(low: int, high: int) -> Sampler:
    return lambda rng, n: rng.integers(low, high, n, endpoint=True).astype(np.int64)


def _choice(values: list[Any], weights: list[float]) -> Sampler:
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    if isinstance(values[0], str):
        return lambda rng, n: np.asarray(values, dtype=object)[rng.choice(len(values), n, p=p)]
    return lambda rng, n: np.asarray(values, dtype=np.int64)[rng.choice(len(values), n, p=p)]


def _with_nulls(sampler: Sampler, share: float) -> Sampler:
    """Floats get NaN (logged and stored as null), strings None, at `share` of the rows."""

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        values = sampler(rng, n)
        mask = rng.random(n) < share
        if values.dtype == object:
            values[mask] = None
        else:
            values = values.astype(np.float64)
            values[mask] = np.nan
        return values

    return draw


def _with_inf(sampler: Sampler, count: int) -> Sampler:
    """`count` values become +inf and `count` -inf (the log stores them as null)."""

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        values = sampler(rng, n).astype(np.float64)
        at = rng.choice(n, min(n, 2 * count), replace=False)
        values[at[:count]] = math.inf
        values[at[count:]] = -math.inf
        return values

    return draw


_ZIPF50 = [1.0 / (rank + 1) for rank in range(50)]
_MERCHANTS = [f"m{rank:02d}" for rank in range(50)]
_COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "PL", "SE", "BR"]

# fmt: off
SPECS: tuple[Spec, ...] = (
    Spec("f01_num_stable", "numeric", _normal(0, 1), _normal(0, 1), False, "unshifted"),
    Spec(
        "f02_num_slight", "numeric", _normal(10, 2), _normal(10.06, 2), False,
        "mean +0.03 std (W1/std ~0.03 < 0.1)",
    ),
    Spec(
        "f03_num_clear", "numeric", _normal(0, 1), _normal(0.5, 1), True,
        "mean +0.5 std (W1/std ~0.5)",
    ),
    Spec(
        "f04_num_scale", "numeric", _normal(0, 1), _normal(0, 1.6), True,
        "std x1.6 (W1/std ~0.48)",
    ),
    Spec(
        "f05_amount", "numeric",
        _with_inf(_with_nulls(_lognormal(3, 1), 0.02), 5),
        _with_inf(_with_nulls(_lognormal(3, 1), 0.02), 50), False,
        "lognormal, 2% nulls, a few +-inf, unshifted",
    ),
    Spec(
        "f06_amount_shift", "numeric", _lognormal(3, 1), _lognormal(3.4, 1), True,
        "lognormal mu +0.4 (W1/std ~0.3)",
    ),
    Spec("f07_int_wide", "numeric", _ints(0, 999), _ints(0, 999), False, "0-999, unshifted"),
    Spec(
        "f08_num_nulls", "numeric", _with_nulls(_normal(5, 1), 0.05),
        _with_nulls(_normal(5, 1), 0.40), False,
        "nulls 5% -> 40%, values unshifted (nulls are dropped before testing)",
    ),
    Spec(
        "f09_children", "discrete", _choice([0, 1, 2, 3, 4], [30, 30, 20, 15, 5]),
        _choice([0, 1, 2, 3, 4], [30, 30, 20, 15, 5]), False, "5 values, unshifted",
    ),
    Spec(
        "f10_rating", "discrete", _choice([1, 2, 3, 4, 5], [10, 20, 40, 20, 10]),
        _choice([1, 2, 3, 4, 5], [8, 20, 40, 20, 12]), False, "5 values, slight (JS ~0.03)",
    ),
    Spec(
        "f11_tier", "discrete", _choice([1, 2, 3], [50, 30, 20]), _choice([1, 2, 3], [30, 35, 35]),
        True, "3 values, clear (JS ~0.15)",
    ),
    Spec(
        "f12_is_weekend", "binary", _choice([0, 1], [70, 30]), _choice([0, 1], [70, 30]), False,
        "0/1, unshifted",
    ),
    Spec(
        "f13_flag_slight", "binary", _choice([0, 1], [90, 10]), _choice([0, 1], [88, 12]), False,
        "0/1, 10% -> 12% (JS ~0.02)",
    ),
    Spec(
        "f14_flag_clear", "binary", _choice([0, 1], [90, 10]), _choice([0, 1], [65, 35]), True,
        "0/1, 10% -> 35% (JS ~0.23)",
    ),
    Spec(
        "f15_country", "categorical", _choice(_COUNTRIES, [30, 15, 12, 10, 8, 7, 6, 5, 4, 3]),
        _choice(_COUNTRIES, [30, 15, 12, 10, 8, 7, 6, 5, 4, 3]), False, "10 categories, unshifted",
    ),
    Spec(
        "f16_device", "categorical", _choice(["ios", "android", "web", "other"], [50, 30, 15, 5]),
        _choice(["ios", "android", "web", "other"], [40, 31, 19, 10]), False,
        "4 categories, near the threshold: JS 0.091 in nats (Evidently), 0.109 in bits",
    ),
    Spec(
        "f17_channel", "categorical",
        _choice(["app", "web", "pos", "phone", "mail", "partner"], [1, 1, 1, 1, 1, 1]),
        _choice(["app", "web", "pos", "phone", "mail", "partner"], [5, 3, 1, 1, 0.5, 0.5]), True,
        "6 categories, uniform -> skewed (JS ~0.2)",
    ),
    Spec(
        "f18_merchant", "categorical", _choice(_MERCHANTS, _ZIPF50),
        _choice([*_MERCHANTS, "m_new"], [*_ZIPF50, sum(_ZIPF50) * 0.25]), True,
        "50 categories (Zipf); a new category takes 20% of the current window",
    ),
    Spec(
        "f19_cat_nulls", "categorical",
        _with_nulls(_choice(["a", "b", "c", "d", "e"], [30, 25, 20, 15, 10]), 0.10),
        _with_nulls(_choice(["a", "b", "c", "d", "e"], [30, 25, 20, 15, 10]), 0.30), False,
        "5 categories, nulls 10% -> 30%, values unshifted",
    ),
    Spec(
        "f20_num_uniform", "numeric", _with_inf(_uniform(0, 100), 3), _uniform(20, 120), True,
        "uniform 0-100 -> 20-120, +-inf in the reference",
    ),
)
# fmt: on


def specs(features: int) -> list[Spec]:
    """`features` columns: the 20 above, repeated with a suffix when more are asked for."""
    out = []
    for index in range(features):
        base = SPECS[index % len(SPECS)]
        suffix = "" if index < len(SPECS) else f"_{index // len(SPECS)}"
        out.append(
            Spec(base.name + suffix, base.kind, base.reference, base.current, base.drift, base.note)
        )
    return out


def draw(columns: list[Spec], rows: int, rng: np.random.Generator, current: bool) -> dict[str, Any]:
    return {s.name: (s.current if current else s.reference)(rng, rows) for s in columns}


def to_arrow(values: np.ndarray) -> pa.Array:
    """NaN means null (like the log); +-inf stays a float."""
    if values.dtype == object:
        return pa.array(values.tolist(), type=pa.string())
    if values.dtype.kind == "f":
        return pa.array(values, mask=np.isnan(values), type=pa.float64())
    return pa.array(values, type=pa.int64())


def write_reference(path: Path, columns: list[Spec], rows: int, seed: int) -> None:
    rng = np.random.default_rng([seed, 0])
    data = draw(columns, rows, rng, current=False)
    start = WINDOW_START - timedelta(days=60)
    step_us = int(timedelta(days=59).total_seconds() * 1e6) // max(rows, 1)
    stamps = np.datetime64(start.replace(tzinfo=None), "us") + np.arange(rows) * step_us
    table = pa.table(
        {
            "account_id": pa.array(np.arange(rows, dtype=np.int64)),
            "event_timestamp": pa.array(stamps, type=pa.timestamp("us", tz="UTC")),
            **{name: to_arrow(values) for name, values in data.items()},
            "prediction": pa.array(rng.random(rows)),  # the model output's reference
        }
    )
    pq.write_table(table, path)


def _python(values: np.ndarray) -> list[Any]:
    """Column values for the JSON features: NaN stays NaN (the log writes null), ints as ints."""
    return values.tolist()


def write_log(directory: Path, columns: list[Spec], rows: int, seed: int) -> int:
    from parity.inference.predlog import ParquetLogSink, PredictionRecord

    rng = np.random.default_rng([seed, 1])
    names = [s.name for s in columns]
    step = WINDOW / rows
    sink = ParquetLogSink(
        directory, max_rows_per_file=CHUNK, row_group_size=CHUNK // 2, clock=lambda: 0.0
    )
    written = 0
    try:
        while written < rows:
            n = min(CHUNK, rows - written)
            data = draw(columns, n, rng, current=True)
            values = [_python(data[name]) for name in names]
            scores = rng.random(n).tolist()
            records = [
                PredictionRecord(
                    request_id=f"r{written + i}",
                    at=WINDOW_START + step * (written + i),
                    model=MODEL,
                    version=VERSION,
                    entities={"account_id": written + i},
                    features=dict(zip(names, row, strict=True)),
                    prediction=scores[i],
                    latency_ms=1.0,
                    alias="champion",
                )
                for i, row in enumerate(zip(*values, strict=True))
            ]
            sink.write(records)
            written += n
    finally:
        sink.close()
    return written


def generate(out: Path, rows: int, features: int, reference_rows: int, seed: int) -> dict[str, Any]:
    columns = specs(features)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_reference(out / "reference.parquet", columns, reference_rows, seed)
    write_log(out / "prediction_log", columns, rows, seed)
    manifest = {
        "format": DATA_FORMAT,
        "rows": rows,
        "features": features,
        "reference_rows": reference_rows,
        "seed": seed,
        "model": MODEL,
        "version": VERSION,
        "window_start": WINDOW_START.isoformat(),
        "window_end": (WINDOW_START + WINDOW).isoformat(),
        "columns": [
            {"name": s.name, "kind": s.kind, "drift": s.drift, "note": s.note} for s in columns
        ],
        "seconds": time.perf_counter() - started,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--reference-rows", type=int, default=REFERENCE_ROWS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    manifest = generate(args.out, args.rows, args.features, args.reference_rows, args.seed)
    print(f"  data: generated in {manifest['seconds']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
