"""One timed point-in-time retrieval for bench_retrieval.py, in a process of its own.

    python retrieval_worker.py CONFIG.json ENGINE RESULT.json [SAVE.parquet]

ENGINE is one of ENGINES. CONFIG.json (written by the benchmark) names the data files, the
repos and the features. The entity frame is read into pandas before the timer for every
engine that takes a DataFrame (asof, parity, feast-*); the timer covers the retrieval only.
Right after it, the worker reads its own peak RSS (VmHWM from /proc/self/status: the high-water
mark of this process's memory, which starts afresh at exec) and its CPU time during the
retrieval, and writes RESULT.json. Only then,
outside the measurement, it saves the result to SAVE.parquet for the correctness check.

`parity-warm` first makes one small call (1,000 entity rows) before the timer, so the timed
call no longer pays the first call's fixed costs (imports, registry load).

Runs under Parity's venv (asof*, parity*) or Feast's venv (feast-*): imports are per engine.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENGINES = (
    "asof",
    "asof-parquet",
    "parity",
    "parity-warm",
    "parity-parquet",
    "feast-duckdb",
    "feast-file",
    "feast-file-chunked",
)
PARQUET_ENGINES = ("asof-parquet", "parity-parquet")


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB (VmHWM); ru_maxrss if /proc is not there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def asof_sql(config: dict[str, Any], entity: str) -> str:
    """The practical limit: one hand-written ASOF LEFT JOIN, features nulled past the ttl."""
    ttl_us = int(config["ttl_days"]) * 86_400 * 1_000_000
    fresh = f"epoch_us(f.event_timestamp) >= epoch_us(e.event_timestamp) - {ttl_us}"
    features = ", ".join(
        f"CASE WHEN {fresh} THEN f.{name} END AS {name}" for name in config["features"]
    )
    return (
        f"SELECT e.*, {features} FROM {entity} e "
        f"ASOF LEFT JOIN read_parquet('{config['feature_path']}') f "
        "ON e.driver_id = f.driver_id AND e.event_timestamp >= f.event_timestamp"
    )


def prepare(engine: str, config: dict[str, Any], out: str) -> Callable[[], Any]:
    """Everything before the timer; returns the retrieval to time (it returns a frame or rows)."""
    refs = [f"{config['view']}:{name}" for name in config["features"]]
    entity_path = config["entity_path"]
    if engine in PARQUET_ENGINES:
        entity_df = None
    else:
        import pyarrow.parquet as pq

        entity_df = pq.read_table(entity_path).to_pandas()

    if engine == "asof":
        import duckdb

        connection = duckdb.connect()
        connection.register("entity_df", entity_df)
        sql = asof_sql(config, "entity_df")
        return lambda: connection.sql(sql).df()
    if engine == "asof-parquet":
        import duckdb

        connection = duckdb.connect()
        sql = asof_sql(config, f"read_parquet('{entity_path}')")
        copy = f"COPY ({sql}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
        return lambda: connection.execute(copy).fetchone()[0]  # type: ignore[index]
    if engine in ("parity", "parity-warm", "parity-parquet"):
        from parity import FeatureStore

        store = FeatureStore(config["parity_repo"])
        if engine == "parity-warm":
            # The same call after a small one: imports, registry and DuckDB already warm.
            store.get_historical_features(entity_df.head(1000), refs).to_pandas()  # type: ignore[union-attr]
        if engine in ("parity", "parity-warm"):
            return lambda: store.get_historical_features(entity_df, refs).to_pandas()
        return lambda: store.get_historical_features(entity_path, refs).to_parquet(out)
    if engine.startswith("feast-"):
        from feast import FeatureStore as FeastStore

        store = FeastStore(repo_path=config["feast_repos"][engine.removesuffix("-chunked")])
        if not engine.endswith("-chunked"):
            return lambda: store.get_historical_features(entity_df=entity_df, features=refs).to_df()
        import pandas as pd

        assert entity_df is not None
        step = int(config["feast_chunk_rows"])

        def chunked() -> Any:
            parts = [
                store.get_historical_features(
                    entity_df=entity_df.iloc[i : i + step].reset_index(drop=True),
                    features=refs,
                ).to_df()
                for i in range(0, len(entity_df), step)
            ]
            return pd.concat(parts, ignore_index=True)

        return chunked
    raise SystemExit(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    engine, result_path = argv[1], Path(argv[2])
    save = argv[3] if len(argv) > 3 else None
    out = save or str(result_path.with_suffix(".parquet"))
    retrieval = prepare(engine, config, out)
    rss_before = peak_rss_kib()
    cpu_start = os.times()
    start = time.perf_counter()
    result = retrieval()
    seconds = time.perf_counter() - start
    cpu_end = os.times()
    peak = peak_rss_kib()
    rows = result if isinstance(result, int) else len(result)
    columns = None if isinstance(result, int) else [str(c) for c in result.columns]
    result_path.write_text(
        json.dumps(
            {
                "engine": engine,
                "seconds": seconds,
                "cpu_s": (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system),
                "rows": rows,
                "columns": columns,
                "peak_rss_kib": peak,
                "peak_rss_kib_before": rss_before,
            }
        )
    )
    if save and not isinstance(result, int):
        result.to_parquet(save, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
