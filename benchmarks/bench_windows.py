"""Windowed aggregations and streaming (issue 5): stream ingestion throughput into Redis,
freshness under load, online reads of windowed features, offline windowed retrieval against the
plain point-in-time join.

    .venv/bin/python benchmarks/bench_windows.py [--size small|full]
        [--parts ingest,fresh,reads,offline]

Repos and data live under benchmarks/.work/windows/<size>/ (recreated each run). Every part runs
alone. Redis keys (the run's streams and `parity:v1:<project>:*`) are deleted at the end.
Feast has no streaming aggregations, so there is no peer to compare with.

Prints figures per part, then one PASS/MISS line per target. Exits 0 even when a target is
missed; non-zero only when something failed to run. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import bench_registry  # noqa: E402
import bench_retrieval  # noqa: E402
from bench_online import delete_keys, finish, load_average, log  # noqa: E402
from bench_retrieval import GIB, PARITY_CLI, PARITY_PYTHON, checked, run_watched, verdict  # noqa: E402
from online_report import pct  # noqa: E402

WORK = BENCH_DIR / ".work" / "windows"
REDIS_URL = "redis://127.0.0.1:6379/0"
MEMORY_LIMIT = 16 * GIB
PARTS = ("ingest", "fresh", "reads", "offline")

SIZES: dict[str, dict[str, Any]] = {
    "small": {
        "ingest_events": 20_000,
        "fresh_seconds": 3.0,
        "read_budget_s": 3.0,
        "read_events": 100_000,
        "offline_events": 1_000_000,
        "offline_rows": 100_000,
        "offline_entities": 10_000,
    },
    "full": {
        "ingest_events": 200_000,
        "fresh_seconds": 10.0,
        "read_budget_s": 30.0,
        "read_events": 1_000_000,
        "offline_events": 10_000_000,
        "offline_rows": 1_000_000,
        "offline_entities": 100_000,
    },
}
ENTITIES = 10_000
FRESH_RATE = 10_000.0
MARKER_EVERY_S = 0.05
MARKER_TIMEOUT_S = 2.0
# How often the freshness part polls get_online_features for a marker: the latency it reports
# is late by at most this. (It polled every 0.5 ms before: at ~160 µs of CPU per read, plus
# Redis's, the poller took a fifth of a core from the worker it was timing, on 2 cores.)
POLL_S = 0.002
READ_CALLS, READ_WARMUP = 2_000, 200

MIN_INGEST_RATE = 50_000.0
MAX_FRESH_P99_MS = 50.0
MAX_READ_P99_MS = 1.0
MAX_WINDOWED_OVER_PLAIN = 3.0

HEADER = (
    "from datetime import timedelta\n"
    "from parity import (Aggregation, Entity, FeatureView, Field, FileSource, Float64, Int64,\n"
    "                    StreamSource)\n\n"
    "account = Entity(name='account', join_keys=['account_id'])\n"
    "SCHEMA = [Field(name='amount', dtype=Float64), Field(name='device', dtype=Int64)]\n"
)
# The four streaming features, on 1-minute tiles.
VELOCITY_AGGS = (
    "Aggregation(column='amount', function='count', window=timedelta(minutes=5)),\n"
    "Aggregation(column='amount', function='sum', window=timedelta(hours=1)),\n"
    "Aggregation(column='device', function='count_distinct', window=timedelta(minutes=10)),\n"
    "Aggregation(column='amount', function='mean', window=timedelta(days=30)),\n"
)
VELOCITY_REFS = [
    "velocity:amount_count_5m",
    "velocity:amount_sum_1h",
    "velocity:device_count_distinct_10m",
    "velocity:amount_mean_30d",
]
LONG_FUNCTIONS = ("count", "sum", "mean", "min", "max", "stddev", "last")
LONG_REFS = [f"history:amount_{f}_30d" for f in LONG_FUNCTIONS] + [
    "history:device_count_distinct_30d"
]


class BenchFailure(Exception):
    """Something the benchmark needs failed to run."""


FAILURES = (BenchFailure, bench_retrieval.BenchFailure, bench_registry.BenchFailure)


# --- repos and data -----------------------------------------------------------------------------


def write_repo(root: Path, project: str, defs: str, extra: str = "") -> Path:
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    (root / "parity.yaml").write_text(f"project: {project}\n{extra}")
    (root / "defs.py").write_text(HEADER + defs)
    from parity import FeatureStore

    FeatureStore(root).apply()
    return root


def redis_online() -> str:
    return f"online:\n  type: redis\n  connection_string: {REDIS_URL}\n"


def stream_defs(stream: str) -> str:
    return (
        f"txns = StreamSource(name='txns', stream={stream!r}, lateness=timedelta(hours=2),\n"
        "    batch_source=FileSource(path='data/events/'))\n"
        "velocity = FeatureView(name='velocity', entities=[account], schema=SCHEMA, source=txns,\n"
        "    tile_interval=timedelta(minutes=1), aggregations=[\n"
        f"{VELOCITY_AGGS}])\n"
    )


def events_table(count: int, entities: int, start: datetime, seconds: int, seed: int) -> Any:
    """Events in time order: account_id 1..entities, whole-second times in [start, +seconds),
    amount float64 with a few nulls, device int64 1..50."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, seconds, count))
    times = np.datetime64(start.replace(tzinfo=None), "us") + offsets.astype("timedelta64[s]")
    amount = rng.integers(1, 500, count).astype("float64")
    return pa.table(
        {
            "account_id": pa.array(rng.integers(1, entities + 1, count), pa.int64()),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "amount": pa.array(amount, mask=rng.random(count) < 0.01),
            "device": pa.array(rng.integers(1, 51, count), pa.int64()),
        }
    )


def redis_client() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        raise BenchFailure(f"Redis at {REDIS_URL} does not answer: {error}") from None
    return client


@dataclass
class Results:
    lines: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)


# --- 1. ingestion throughput --------------------------------------------------------------------


def ingest_once(root: Path, label: str) -> tuple[bench_registry.Run, str]:
    command: list[str | Path] = [PARITY_CLI, "ingest", "--source", "txns", "--repo", root]
    command += ["--until-idle", "--batch-size", "1000", "--consumer", "bench"]
    run = bench_registry.run_timed(command, root, 1_800)
    if run.rc != 0 or run.timed_out:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
        raise BenchFailure(f"parity ingest ({label}) failed (exit {run.rc}):\n{tail}")
    summary = next((x for x in run.stderr.splitlines() if x.startswith("applied")), "")
    return run, summary


def part_ingest(base: Path, size: dict[str, Any], res: Results, tag: str) -> Path:
    from parity import FeatureStore
    from parity.ingest.stream import publish

    count = size["ingest_events"]
    stream = f"parity:bench:windows:{tag}"
    project = f"bench_windows_{tag}"
    res.projects.append(project)
    res.streams.append(stream)
    root = write_repo(base / "stream_repo", project, stream_defs(stream), redis_online())
    log(
        f"ingest: {count:,} events over {ENTITIES:,} accounts, 4 windowed features; "
        + load_average()
    )
    empty, _ = ingest_once(root, "empty stream")
    log(f"  parity ingest --until-idle on an empty stream: {empty.seconds:.2f} s (start + idle)")
    store = FeatureStore(root)
    source = store.get_feature_view("velocity").source
    now = datetime.now(UTC).replace(microsecond=0)
    table = events_table(count, ENTITIES, now - timedelta(minutes=59), 3_540, seed=1)
    rows = table.to_pylist()
    client = redis_client()
    started = time.perf_counter()
    for offset in range(0, count, 5_000):
        publish(client, source, rows[offset : offset + 5_000], project=store.project)  # type: ignore[arg-type]
    published = time.perf_counter() - started
    log(f"  published {count:,} events in {published:.2f} s ({count / published:,.0f} events/s)")
    full, summary = ingest_once(root, f"{count:,} events")
    drain = max(full.seconds - empty.seconds, 1e-9)
    log(
        f"  parity ingest --until-idle: {full.seconds:.2f} s wall, CPU {full.cpu_s:.2f} s, "
        f"peak RSS {full.peak_rss_mib:.0f} MiB; {summary}"
    )
    applied = int(m.group(1)) if (m := re.search(r"applied (\d+)", summary)) else -1
    limit = read_limit(client, source.stream_key(store.project), count)
    with_start, net = count / full.seconds, count / drain
    files = list((root / "data" / "events").glob("*.parquet"))
    res.lines += [
        f"ingest, one `parity ingest --until-idle --batch-size 1000` process, {count:,} events:",
        f"  wall {full.seconds:.2f} s (CPU {full.cpu_s:.2f} s), empty-stream run "
        f"{empty.seconds:.2f} s, drain {drain:.2f} s; peak RSS {full.peak_rss_mib:.0f} MiB",
        f"  {net:,.0f} events/s net of start-up, {with_start:,.0f} events/s including it; "
        f"applied {applied:,}, {len(files)} Parquet files",
        f"  practical limit, the same stream only read, decoded and acknowledged in batches of "
        f"1,000 by one Python consumer (no fold, no writes): {limit:,.0f} events/s "
        f"(the worker at {net / limit:.0%} of it); {load_average()}",
    ]
    res.targets.append(
        verdict(
            net >= MIN_INGEST_RATE and applied == count,
            f"ingest into Redis, 4 windowed features: {net:,.0f} events/s per worker "
            f"(target >= {MIN_INGEST_RATE:,.0f}, x{net / MIN_INGEST_RATE:.2f}; "
            f"{with_start:,.0f} with start-up); applied {applied:,}/{count:,}",
        )
    )
    client.close()
    return root


def read_limit(client: Any, stream: str, count: int) -> float:
    """Events/s of a consumer that only reads the stream (XREADGROUP of 1,000, as the worker),
    decodes each message's msgpack and acknowledges the batch: what any Python worker on this
    machine pays before it folds or writes anything."""
    import msgpack

    group = "parity:bench-limit"
    client.xgroup_create(stream, group, id="0")
    started, seen = time.perf_counter(), 0
    while seen < count:
        reply = client.xreadgroup(group, "limit", {stream: ">"}, count=1_000, block=100)
        entries = [e for _, batch in (reply or []) for e in batch]
        if not entries:
            break
        for _, fields in entries:
            msgpack.unpackb(fields[b"e"], raw=False)
        client.xack(stream, group, *[i for i, _ in entries])
        seen += len(entries)
    elapsed = time.perf_counter() - started
    client.xgroup_destroy(stream, group)
    return seen / elapsed


# --- 2. freshness -------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, pause: float = POLL_S) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if condition():
            return True
        time.sleep(pause)
    return False


def part_fresh(root: Path, base: Path, size: dict[str, Any], res: Results) -> None:
    from parity import FeatureStore
    from parity.ingest.stream import publish

    seconds = size["fresh_seconds"]
    log(f"freshness: {FRESH_RATE:,.0f} events/s for {seconds:g} s; {load_average()}")
    store = FeatureStore(root)
    source = store.get_feature_view("velocity").source
    ref = ["velocity:amount_count_5m"]
    client = redis_client()

    def count() -> int:
        value = store.get_online_features(ref, {"account_id": [0]}).values["amount_count_5m"][0]
        return int(value or 0)

    def marker(device: int) -> float:
        row = {"account_id": 0, "event_timestamp": datetime.now(UTC), "amount": 1.0}
        appended = time.perf_counter()
        publish(client, source, [row | {"device": device}], project=store.project)  # type: ignore[arg-type]
        return appended

    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    worker_log = open(logs / "fresh-worker.log", "wb")  # noqa: SIM115
    command = [str(PARITY_CLI), "ingest", "--source", "txns", "--repo", str(root)]
    worker = subprocess.Popen(
        [*command, "--consumer", "fresh"], stdout=worker_log, stderr=worker_log
    )
    producer = None
    latencies: list[float] = []
    lost = 0
    try:
        seen = count()
        marker(0)
        if not wait_for(lambda: count() > seen, 60.0, 0.01):
            raise BenchFailure(f"the ingest worker applied nothing in 60 s; log {logs}")
        seen = count()
        result = logs / "producer.json"
        result.unlink(missing_ok=True)
        producer = subprocess.Popen(
            [
                *(PARITY_PYTHON, BENCH_DIR / "windows_producer.py", root, "txns"),
                *(str(FRESH_RATE), str(seconds + 0.5), str(ENTITIES), result),
            ],
            stdout=worker_log,
            stderr=worker_log,
        )
        time.sleep(1.0)  # the producer's start-up; its load runs from here on
        end = time.perf_counter() + seconds - 0.6
        index = 0
        while time.perf_counter() < end:
            index += 1
            appended = marker(index)
            if wait_for(lambda target=seen + 1: count() >= target, MARKER_TIMEOUT_S):
                latencies.append((time.perf_counter() - appended) * 1e3)
            else:
                lost += 1
            seen = count()
            time.sleep(max(0.0, appended + MARKER_EVERY_S - time.perf_counter()))
        if producer.wait(timeout=60) != 0:
            raise BenchFailure(f"the producer failed; log {logs / 'fresh-worker.log'}")
        load = json.loads(result.read_text())
        info = client.xinfo_groups(source.stream_key(store.project))  # type: ignore[attr-defined]
        lag = next(
            (g.get("lag") for g in info if g["name"] == f"parity:{store.project}".encode()), None
        )
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        worker_log.close()
        client.close()
    summary = next(
        (x for x in (logs / "fresh-worker.log").read_text().splitlines() if "applied" in x), ""
    )
    latencies.sort()
    p50 = pct(latencies, 0.5) if latencies else float("nan")
    p99 = pct(latencies, 0.99) if latencies else float("nan")
    res.lines += [
        f"freshness, one `parity ingest` worker under {load['rate']:,.0f} events/s of background "
        f"load ({load['sent']:,} events in {load['seconds']:.1f} s):",
        f"  {len(latencies)} markers every {MARKER_EVERY_S * 1e3:.0f} ms, append -> visible in "
        f"get_online_features: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max "
        f"{(latencies[-1] if latencies else float('nan')):.1f} ms; {lost} not visible within "
        f"{MARKER_TIMEOUT_S:g} s",
        f"  consumer-group lag at the end: {lag}; worker: {summary.strip()}",
    ]
    res.targets.append(
        verdict(
            p99 < MAX_FRESH_P99_MS and lost == 0 and load["rate"] >= 0.95 * FRESH_RATE,
            f"freshness at {load['rate']:,.0f} events/s: p99 {p99:.1f} ms (target < "
            f"{MAX_FRESH_P99_MS:g} ms, x{p99 / MAX_FRESH_P99_MS:.2f}); p50 {p50:.1f} ms; "
            f"{lost} markers lost",
        )
    )


# --- 3. online reads ----------------------------------------------------------------------------


def long_defs(path: Path) -> str:
    aggs = "".join(
        f"Aggregation(column='amount', function={f!r}, window=timedelta(days=30)),\n"
        for f in LONG_FUNCTIONS
    )
    aggs += "Aggregation(column='device', function='count_distinct', window=timedelta(days=30)),\n"
    return (
        "history = FeatureView(name='history', entities=[account], schema=SCHEMA,\n"
        f"    source=FileSource(path={str(path)!r}), tile_interval=timedelta(hours=1),\n"
        f"    aggregations=[\n{aggs}])\n"
    )


def tile_fetch(store: Any, now: datetime) -> Callable[[int], Any]:
    """The practical limit of a windowed read: one fetch of the tiles the read needs (the
    store's own read_tiles: one HMGET on Redis, one SELECT on SQLite), without decoding or
    merging them."""
    from parity.aggregation.tiles import read_plan
    from parity.online.encoding import entity_key
    from parity.timeutil import to_micros

    view = store.get_feature_view("history")
    outputs = [ref.split(":")[1] for ref in LONG_REFS]
    plan = read_plan(view, outputs, to_micros(now))
    online, project = store.online_store, store.project
    return lambda key: online.read_tiles(
        project, "history", [entity_key(["account_id"], [key])], plan
    )


def command_calls() -> dict[str, int]:
    """Redis's calls per command so far (`INFO commandstats`)."""
    client = redis_client()
    stats = client.info("commandstats")
    client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def part_reads(base: Path, size: dict[str, Any], res: Results, tag: str) -> None:
    import random

    import pyarrow.parquet as pq

    from parity import FeatureStore

    count = size["read_events"]
    now = datetime(2026, 5, 1, tzinfo=UTC)
    path = base / "reads_events.parquet"
    pq.write_table(events_table(count, ENTITIES, now - timedelta(days=30), 30 * 86_400, 2), path)
    log(
        f"reads: 1 entity x 8 features (30-day windows, 1-hour tiles) over {count:,} events of "
        f"{ENTITIES:,} accounts; {load_average()}"
    )
    res.lines.append(
        f"online reads, in-process get_online_features(1 entity x 8 windowed features), "
        f"{READ_CALLS:,} calls after {READ_WARMUP}; {count:,} events over 30 days:"
    )
    for store_kind in ("sqlite", "redis"):
        project = f"bench_windows_reads_{tag}"
        extra = redis_online() if store_kind == "redis" else ""
        if store_kind == "redis":
            res.projects.append(project)
        root = write_repo(base / f"reads_{store_kind}", project, long_defs(path), extra)
        store = FeatureStore(root, clock=lambda: now)
        started = time.perf_counter()
        store.materialize(now - timedelta(days=31), now)
        materialized = time.perf_counter() - started
        rng = random.Random(3)
        probe = store.get_online_features(LONG_REFS, {"account_id": [1]}).values
        if any(probe[r.split(":")[1]][0] is None for r in LONG_REFS[:2]):
            raise BenchFailure(f"reads ({store_kind}): no value after materialize: {probe}")
        timings: list[float] = []
        limits: list[float] = []  # the practical limit: the same tiles fetched, nothing decoded
        fetch = tile_fetch(store, now)
        stats = command_calls() if store_kind == "redis" else {}
        cpu0 = time.process_time()
        budget_end = time.perf_counter() + size["read_budget_s"]
        for index in range(READ_WARMUP + READ_CALLS):
            key = rng.randint(1, ENTITIES)
            t0 = time.perf_counter_ns()
            store.get_online_features(LONG_REFS, {"account_id": [key]})
            t1 = time.perf_counter_ns()
            fetch(key)
            t2 = time.perf_counter_ns()
            if index >= READ_WARMUP or time.perf_counter() > budget_end - size["read_budget_s"] / 2:
                timings.append((t1 - t0) / 1e6)
                limits.append((t2 - t1) / 1e6)
            if time.perf_counter() > budget_end and len(timings) >= 20:
                break  # a slow store: stop at the time budget, say how many calls were timed
        calls = index + 1
        cpu_ms = (time.process_time() - cpu0) * 1e3 / calls  # both reads of an iteration
        if store_kind == "redis":
            after = command_calls()
            per_read = {c: (after.get(c, 0) - stats.get(c, 0)) / calls for c in after}
            commands = ", ".join(f"{c} {n:.2f}" for c, n in sorted(per_read.items()) if n > 0)
            res.lines.append(
                f"  redis commands per iteration (the read, then the limit): {commands}"
            )
        timings.sort()
        limits.sort()
        if len(timings) < READ_CALLS:
            res.lines.append(
                f"  {store_kind}: stopped at the {size['read_budget_s']:g} s budget after "
                f"{len(timings):,} timed calls"
            )
        p50, p99 = pct(timings, 0.5), pct(timings, 0.99)
        log(f"  {store_kind}: materialize {materialized:.2f} s; p50 {p50:.3f} ms p99 {p99:.3f} ms")
        res.lines.append(
            f"  {store_kind:6} p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {timings[-1]:.3f} ms  "
            f"(materialize {materialized:.2f} s); {load_average()}"
        )
        res.lines.append(
            f"  {'limit':6} p50 {pct(limits, 0.5):.3f} ms  p99 {pct(limits, 0.99):.3f} ms  "
            f"max {limits[-1]:.3f} ms  (the same tiles fetched by the store, not decoded or "
            f"merged); CPU {cpu_ms:.3f} ms per read + fetch"
        )
        res.targets.append(
            verdict(
                p99 < MAX_READ_P99_MS,
                f"online read 1x8 windowed on {store_kind}: p99 {p99:.3f} ms (target < "
                f"{MAX_READ_P99_MS:g} ms, x{p99 / MAX_READ_P99_MS:.2f}); p50 {p50:.3f} ms",
            )
        )
        store.close()


# --- 4. offline windowed retrieval --------------------------------------------------------------


def part_offline(
    base: Path, size: dict[str, Any], res: Results, tag: str, repeats: int = 1
) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    events, rows, entities = size["offline_events"], size["offline_rows"], size["offline_entities"]
    now = datetime(2026, 5, 1, tzinfo=UTC)
    start = now - timedelta(days=30)
    path = base / "offline_events.parquet"
    entity_path = base / "offline_entities.parquet"
    log(f"offline: {rows:,} entity rows over {events:,} events ({entities:,} accounts) ...")
    table = events_table(events, entities, start, 30 * 86_400, seed=4)
    pq.write_table(table, path, row_group_size=max(events // 10, 1))
    del table
    rng = np.random.default_rng(9)
    times = np.datetime64(start.replace(tzinfo=None), "us") + rng.integers(
        0, 30 * 86_400 + 3_600, rows
    ).astype("timedelta64[s]")
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array(rng.integers(1, entities + 1, rows), pa.int64()),
                "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            }
        ),
        entity_path,
    )
    defs = (
        "velocity = FeatureView(name='velocity', entities=[account], schema=SCHEMA,\n"
        f"    source=FileSource(path={str(path)!r}), tile_interval=timedelta(minutes=1),\n"
        f"    aggregations=[\n{VELOCITY_AGGS}])\n"
        "plain = FeatureView(name='plain', entities=[account], schema=SCHEMA,\n"
        f"    source=FileSource(path={str(path)!r}), ttl=timedelta(days=30))\n"
    )
    root = write_repo(
        base / "offline_repo",
        f"bench_windows_offline_{tag}",
        defs,
        'offline:\n  memory_limit: "8GB"\n',
    )
    log(f"  {load_average()}")
    engines = {
        "windowed": ("velocity", [r.split(":")[1] for r in VELOCITY_REFS]),
        "plain": ("plain", ["amount", "device"]),
    }
    runs: list[dict[str, dict[str, Any]]] = []
    for repeat in range(repeats):
        figures: dict[str, dict[str, Any]] = {}
        for name, (view, features) in engines.items():
            config = base / f"offline-{name}.json"
            out = base / f"offline-{name}-result.json"
            out.unlink(missing_ok=True)
            config.write_text(
                json.dumps(
                    {
                        "view": view,
                        "features": features,
                        "entity_path": str(entity_path),
                        "parity_repo": str(root),
                    }
                )
            )
            print(f"  {name} ({repeat + 1}/{repeats}) ...", end=" ", flush=True)
            run = run_watched(
                [PARITY_PYTHON, BENCH_DIR / "retrieval_worker.py", config, "parity-warm", out],
                base / "logs" / f"offline-{name}.log",
                limit_bytes=MEMORY_LIMIT,
                timeout=1_800,
            )
            checked(run, f"offline retrieval ({name})")
            figures[name] = json.loads(out.read_text())
            f = figures[name]
            log(
                f"{f['seconds']:.2f} s (CPU {f['cpu_s']:.2f} s), {f['rows']:,} rows, peak RSS "
                f"{f['peak_rss_kib'] / 1024**2:.2f} GB; {load_average()}"
            )
        runs.append(figures)
    res.lines.append(
        f"offline get_historical_features, {rows:,} entity rows over {events:,} events "
        f"(second call in the process, retrieval_worker.py parity-warm), {repeats} run(s):"
    )
    ratios = []
    for number, figures in enumerate(runs, 1):
        windowed, plain = figures["windowed"], figures["plain"]
        ratios.append(windowed["seconds"] / plain["seconds"])
        res.lines += [
            *(
                f"  {number}: {n:8} {f['seconds']:7.2f} s  CPU {f['cpu_s']:7.2f} s  "
                f"{f['rows']:,} rows  peak RSS {f['peak_rss_kib'] / 1024**2:.2f} GB"
                for n, f in figures.items()
            ),
            f"  {number}: windowed / plain {ratios[-1]:.2f} (CPU "
            f"{windowed['cpu_s'] / plain['cpu_s']:.2f})",
        ]
    worst = max(ratios)
    same_rows = all(f["rows"] == rows for figures in runs for f in figures.values())
    res.targets.append(
        verdict(
            worst <= MAX_WINDOWED_OVER_PLAIN and same_rows,
            f"offline windowed (4 aggregations) / plain point-in-time join: "
            f"{', '.join(f'{r:.2f}' for r in ratios)} (worst {worst:.2f}; target <= "
            f"{MAX_WINDOWED_OVER_PLAIN:g} in every run, x{worst / MAX_WINDOWED_OVER_PLAIN:.2f})"
            + ("" if same_rows else "; ROW COUNTS DIFFER"),
        )
    )


# --- main ---------------------------------------------------------------------------------------


def cleanup(res: Results) -> int:
    client = redis_client()
    deleted = int(client.delete(*res.streams)) if res.streams else 0
    client.close()
    return deleted + sum(delete_keys(f"parity:v1:{p}:*".encode()) for p in res.projects)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument("--parts", default=",".join(PARTS), help="a subset of " + ",".join(PARTS))
    parser.add_argument(
        "--offline-repeats",
        type=int,
        default=1,
        help="run the offline pair (windowed, then plain) this many times; every ratio is shown",
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if set(parts) - set(PARTS):
        parser.error("--parts takes " + ",".join(PARTS))
    size = SIZES[args.size]
    base = WORK / args.size
    base.mkdir(parents=True, exist_ok=True)
    tag = f"{args.size}_{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    log(f"bench_windows: size {args.size}; {os.cpu_count()} CPUs; {load_average()}")
    res = Results()
    failures: list[str] = []
    try:
        redis_client().close()
        root = None
        if "ingest" in parts or "fresh" in parts:
            root = part_ingest(base, size, res, tag)
        if "fresh" in parts and root is not None:
            part_fresh(root, base, size, res)
        if "reads" in parts:
            part_reads(base, size, res, tag)
        if "offline" in parts:
            part_offline(base, size, res, tag, args.offline_repeats)
    except FAILURES as error:
        failures.append(str(error))
    finally:
        with contextlib.suppress(*FAILURES, OSError):
            res.lines.append(f"cleanup: deleted {cleanup(res):,} Redis keys of the benchmark")
    print()
    for line in res.lines:
        print(line)
    print("\ntargets (issue 5; no peer: Feast has no streaming aggregations):")
    for line in res.targets:
        print("  " + line)
    return finish(started, failures)


if __name__ == "__main__":
    sys.exit(main())
