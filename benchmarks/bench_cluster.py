"""Redis Cluster against a single Redis (issue 16): materialization of --keys entities over --rows
rows, and read p99 of 1 entity x 10 features and 100 entities x 50, on the same machine and data.

    .venv/bin/python benchmarks/bench_cluster.py [--rows N] [--keys N] [--repeats N]
        [--reads N] [--no-cluster]

Both stores are private servers on free ports, started and stopped here: a redis-server, and a
local cluster of 3 masters + 3 replicas from tests/redis_cluster.py (Part C's launcher; without
it, or with --no-cluster, only the single Redis is measured). The data comes from DuckDB, cached
under benchmarks/.work/cluster/<rows>x<keys>/: `stats.parquet` (--rows rows over --keys drivers,
10 Float64 features, one event a second) and `wide_<i>.parquet` (one row per driver, 10 Float64
features each, i = 1..4). The offline engine is DuckDB. Each repeat, single and cluster
alternately: the servers are flushed, `stats` is materialized (timed), then the four wide views
(untimed); then the reads, interleaved in blocks of 100 calls so both see the same load.

Targets: materialization time ratio cluster / single <= 1.0; read p99 cluster / single <= 1.5.
Exits 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from private_servers import private_redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "cluster"
WIDE_VIEWS, PER_VIEW = 4, 10  # stats + 4 wide views = 50 features
START = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_MATERIALIZE, TARGET_READ = 1.0, 1.5

DEFS = """
from parity import Entity, FeatureView, Field, FileSource, Float64

driver = Entity(name="driver", join_keys=["driver_id"])
stats = FeatureView(
    name="stats", entities=[driver],
    schema=[Field(name=f"s{{j}}", dtype=Float64) for j in range({per_view})],
    source=FileSource(path="{data}/stats.parquet"),
)
wide = [
    FeatureView(
        name=f"wide_{{i}}", entities=[driver],
        schema=[Field(name=f"w{{i}}_{{j}}", dtype=Float64) for j in range({per_view})],
        source=FileSource(path=f"{data}/wide_{{i}}.parquet"),
    )
    for i in range(1, {wide} + 1)
]
wide_1, wide_2, wide_3, wide_4 = wide
"""


def make_data(rows: int, keys: int) -> Path:
    """Parquet files from DuckDB, cached by size; returns their folder."""
    import duckdb

    folder = WORK / f"{rows}x{keys}"
    done = folder / "done"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    features = ", ".join(f"round(random() * 100, 3) AS s{j}" for j in range(PER_VIEW))
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SELECT setseed(0.16)")
    con.execute(
        f"COPY (SELECT i % {keys} + 1 AS driver_id, "
        f"TIMESTAMPTZ '{START.isoformat()}' + to_seconds(i) AS event_timestamp, {features} "
        f"FROM range({rows}) t(i)) TO '{folder}/stats.parquet' (FORMAT parquet)"
    )
    for v in range(1, WIDE_VIEWS + 1):
        wide = ", ".join(f"round(random() * 100, 3) AS w{v}_{j}" for j in range(PER_VIEW))
        con.execute(
            f"COPY (SELECT i + 1 AS driver_id, TIMESTAMPTZ '{START.isoformat()}' AS "
            f"event_timestamp, {wide} FROM range({keys}) t(i)) "
            f"TO '{folder}/wide_{v}.parquet' (FORMAT parquet)"
        )
    con.close()
    done.write_text("ok")
    return folder


def redis_cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=60
    )
    return done.stdout


class Target:
    """One online store under test: its repo's FeatureStore and how to empty it."""

    def __init__(self, name: str, store: Any, ports: list[int]) -> None:
        self.name, self.store, self.ports = name, store, ports
        self.materialize_s: list[float] = []
        self.reads: dict[str, list[float]] = {}

    def flush(self) -> None:
        """Empty this target's own servers (private: nobody else uses them)."""
        for port in self.ports:
            if "role:master" in redis_cli(port, "info", "replication"):
                redis_cli(port, "flushall")


@contextmanager
def single_redis() -> Iterator[tuple[str, list[int]]]:
    with private_redis() as (port, _):
        yield f"redis://127.0.0.1:{port}/0", [port]


@contextmanager
def cluster_redis() -> Iterator[tuple[str, list[int]]]:
    sys.path.insert(0, str(ROOT))
    from tests.redis_cluster import local_redis_cluster  # Part C's launcher

    with local_redis_cluster() as cluster:
        yield cluster.url, list(cluster.ports)


def make_store(name: str, online: str, data: Path) -> Any:
    from parity import FeatureStore

    folder = WORK / "repos" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "defs.py").write_text(DEFS.format(per_view=PER_VIEW, data=data, wide=WIDE_VIEWS))
    (folder / "parity.yaml").write_text(
        f"project: cluster{uuid.uuid4().hex[:8]}\nonline: {online}\n"
    )
    store = FeatureStore(folder)
    store.apply()
    return store


def materialize(target: Target, rows: int) -> None:
    end = START + timedelta(seconds=rows)
    target.flush()
    began = time.perf_counter()
    target.store.materialize(START - timedelta(seconds=1), end, ["stats"])
    target.materialize_s.append(time.perf_counter() - began)
    wide = [f"wide_{i}" for i in range(1, WIDE_VIEWS + 1)]
    target.store.materialize(START - timedelta(seconds=1), end, wide)


def read_shapes(keys: int) -> dict[str, tuple[list[str], int]]:
    stats = [f"stats:s{j}" for j in range(PER_VIEW)]
    wide = [f"wide_{i}:w{i}_{j}" for i in range(1, WIDE_VIEWS + 1) for j in range(PER_VIEW)]
    return {"1 x 10": (stats, 1), "100 x 50": (stats + wide, min(100, keys))}


def read_block(target: Target, shape: str, refs: list[str], n: int, calls: int, keys: int) -> None:
    rng = random.Random(len(target.reads.get(shape, [])))
    timings = target.reads.setdefault(shape, [])
    for _ in range(calls):
        rows = {"driver_id": [rng.randint(1, keys) for _ in range(n)]}
        began = time.perf_counter()
        answer = target.store.get_online_features(refs, rows)
        timings.append(time.perf_counter() - began)
        if answer.to_dict()[refs[0].split(":")[1]][0] is None:
            raise RuntimeError(f"{target.name}: a materialized driver read back as missing")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def report(targets: list[Target], args: argparse.Namespace, loads: list[str]) -> None:
    print(f"\n{args.rows:,} rows over {args.keys:,} keys; {args.repeats} repeats; DuckDB engine")
    print(f"load average (1, 5, 15 min) at each phase: {'; '.join(loads)}")
    print("\n| measurement | " + " | ".join(t.name for t in targets) + " | ratio | target |")
    print("| --- |" + " --- |" * (len(targets) + 2))
    single = targets[0]
    cells = [f"{statistics.median(t.materialize_s):.2f} s" for t in targets]
    spread = [f"{min(t.materialize_s):.2f}-{max(t.materialize_s):.2f}" for t in targets]
    ratio = (
        statistics.median(targets[1].materialize_s) / statistics.median(single.materialize_s)
        if len(targets) > 1
        else float("nan")
    )
    verdicts = []
    print(f"| materialize stats (median; range {', '.join(spread)}) | " + " | ".join(cells)
          + f" | {ratio:.2f} | <= {TARGET_MATERIALIZE} |")  # fmt: skip
    verdicts.append(("materialization time cluster / single", ratio, TARGET_MATERIALIZE))
    for shape in single.reads:
        values = [p99(t.reads[shape]) * 1e3 for t in targets]
        medians = [statistics.median(t.reads[shape]) * 1e3 for t in targets]
        ratio = values[1] / values[0] if len(values) > 1 else float("nan")
        cells = [f"p99 {v:.2f} ms (p50 {m:.2f})" for v, m in zip(values, medians, strict=True)]
        print(f"| read {shape} ({len(single.reads[shape])} calls) | " + " | ".join(cells)
              + f" | {ratio:.2f} | <= {TARGET_READ} |")  # fmt: skip
        verdicts.append((f"read p99 {shape} cluster / single", ratio, TARGET_READ))
    print()
    for what, value, limit in verdicts:
        verdict = "not run" if value != value else ("PASS" if value <= limit else "MISS")
        print(f"{verdict}: {what} = {value:.2f} (target <= {limit})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="issue: 10,000,000")
    parser.add_argument("--keys", type=int, default=10_000, help="issue: 100,000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reads", type=int, default=1_000, help="read calls per shape per store")
    parser.add_argument("--no-cluster", action="store_true", help="only the single Redis")
    args = parser.parse_args()
    os.chdir(ROOT)
    began = time.perf_counter()
    data = make_data(args.rows, args.keys)
    print(f"data: {data} ({time.perf_counter() - began:.1f} s)", flush=True)
    loads = [load_average()]
    with ExitStack() as stack:
        url, ports = stack.enter_context(single_redis())
        online = f"{{type: redis, connection_string: '{url}'}}"
        targets = [Target("single Redis", make_store("single", online, data), ports)]
        if not args.no_cluster:
            cluster = open_cluster(stack, data)
            if cluster is not None:
                targets.append(cluster)
        for repeat in range(args.repeats):
            for target in targets if repeat % 2 == 0 else targets[::-1]:
                materialize(target, args.rows)
                print(
                    f"{target.name}: materialized in {target.materialize_s[-1]:.2f} s", flush=True
                )
        loads.append(load_average())
        for shape, (refs, n) in read_shapes(args.keys).items():
            for target in targets:  # warm: registry cache, request plan, connections
                read_block(target, shape, refs, n, 20, args.keys)
                target.reads[shape].clear()
            for _ in range(max(1, args.reads // 100)):
                for target in targets:
                    read_block(target, shape, refs, n, min(100, args.reads), args.keys)
        loads.append(load_average())
        for target in targets:
            target.store.close()
    report(targets, args, loads)


def open_cluster(stack: ExitStack, data: Path) -> Target | None:
    """The cluster target, or None (said why) where Part C's launcher or store is missing."""
    try:
        url, ports = stack.enter_context(cluster_redis())
    except ImportError as error:
        print(f"cluster: not measured, no launcher ({error}); run after Part C is merged")
        return None
    online = f"{{type: redis_cluster, connection_string: '{url}'}}"
    try:
        store = make_store("cluster", online, data)
        store.get_online_features(["stats:s0"], {"driver_id": [1]})  # opens the store
        return Target("Redis Cluster (3 masters)", store, ports)
    except Exception as error:  # the cluster store of this checkout is not there yet
        print(f"cluster: not measured, the store did not open: {error}")
        return None


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
