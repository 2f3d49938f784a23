"""Per-core throughput for docs/scale.md's plan (issue 16): the feature server, the model server,
stream ingestion and a single Redis, each as requests (or events) per CPU-second of its process.

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--repeats N] [--seconds S]
        [--clients N] [--entities N] [--events N]

Everything runs against a private redis-server on a free port (the shared one is never loaded).
A repo under benchmarks/.work/scale/repo: one `driver` entity, 5 views x 10 Float64 features (50
features, service `all50`) materialized for --entities drivers, a LogisticRegression over those
50 features registered as scale@champion, and a windowed stream view (count 5 min, sum and mean
1 h, 1-minute tiles). Each repeat measures:

1. store API: `get_online_features` of 1 entity x 50 features in a loop in this process;
2. HTTP feature server: `parity serve` (1 worker), models_load.py with --clients connections,
   POST /get-online-features of 1 entity x 50 features;
3. model server: `parity serve-models -m scale@champion` (1 worker), POST
   /v1/models/scale/predict of 1 entity (its 50 features read online, prediction log on);
4. stream ingestion: --events events published to the stream, then a StreamWorker drains them;
5. redis-benchmark: GET and HSET, 50 clients, unpipelined and pipelined (-P 16).

Per core = work / CPU-seconds of the process under test (its whole process tree, from /proc), so
the client's share of the 2 cores does not count against the server; Redis's CPU per request is
printed beside it. `uptime` before and after each repeat; the report gives the median and range.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from private_servers import free_port, private_redis, wait_until
from proc_cpu import tree_cpu

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "scale"
VIEWS, PER_VIEW = 5, 10  # 50 features per request, the plan's unit

DEFS = """
from datetime import timedelta
from parity import (Aggregation, Entity, FeatureService, FeatureView, Field, FileSource,
                    Float64, StreamSource)

driver = Entity(name="driver", join_keys=["driver_id"])
views = [
    FeatureView(
        name=f"v{{i}}", entities=[driver],
        schema=[Field(name=f"f{{i}}_{{j}}", dtype=Float64) for j in range({per_view})],
        source=FileSource(path=f"data/v{{i}}.parquet"),
    )
    for i in range({views})
]
v0, v1, v2, v3, v4 = views
all50 = FeatureService(name="all50", features=views)

account = Entity(name="account", join_keys=["account_id"])
txns = StreamSource(name="txns", stream="scale_txns", lateness=timedelta(hours=1),
                    batch_source=FileSource(path="data/txns/"))
velocity = FeatureView(
    name="velocity", entities=[account], schema=[Field(name="amount", dtype=Float64)],
    source=txns, tile_interval=timedelta(minutes=1),
    aggregations=[
        Aggregation(column="amount", function="count", window=timedelta(minutes=5)),
        Aggregation(column="amount", function="sum", window=timedelta(hours=1)),
        Aggregation(column="amount", function="mean", window=timedelta(hours=1)),
    ],
)
"""


def feature_refs() -> list[str]:
    return [f"v{i}:f{i}_{j}" for i in range(VIEWS) for j in range(PER_VIEW)]


def load_average() -> str:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"{one} {five} {fifteen}"


def make_repo(folder: Path, redis_port: int, entities: int) -> Any:
    """The repo, applied and materialized, with scale@champion registered."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression

    from parity import FeatureStore

    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    (folder / "defs.py").write_text(DEFS.format(views=VIEWS, per_view=PER_VIEW))
    (folder / "parity.yaml").write_text(
        f"project: scale{uuid.uuid4().hex[:8]}\n"
        f"online: {{type: redis, connection_string: 'redis://127.0.0.1:{redis_port}/0'}}\n"
        "models: {trusted: true}\n"
    )
    rng = np.random.default_rng(16)
    now = datetime.now(UTC)
    ids = np.arange(1, entities + 1, dtype=np.int64)
    stamp = pa.array([now - timedelta(hours=1)] * entities, pa.timestamp("us", tz="UTC"))
    for i in range(VIEWS):
        columns = {f"f{i}_{j}": rng.normal(size=entities) for j in range(PER_VIEW)}
        table = pa.table({"driver_id": ids, "event_timestamp": stamp, **columns})
        pq.write_table(table, folder / "data" / f"v{i}.parquet")
    store = FeatureStore(folder)
    store.apply()
    store.materialize(now - timedelta(days=1), now, [f"v{i}" for i in range(VIEWS)])
    names = [ref.split(":")[1] for ref in feature_refs()]
    frame = pd.DataFrame(rng.normal(size=(2_000, len(names))), columns=names)
    target = (frame.iloc[:, :5].sum(axis=1) > 0).astype(int)
    model = LogisticRegression(max_iter=200).fit(frame, target)
    store.models.register_model(
        "scale", model, feature_service="all50", sample_input=frame.head(5), alias="champion"
    )
    return store


def measure_store_api(
    store: Any, redis_pid: int, seconds: float, entities: int
) -> dict[str, float]:
    refs = feature_refs()
    rng = random.Random(1)
    for _ in range(200):  # warm: registry cache, request plan, connections
        store.get_online_features(refs, [{"driver_id": rng.randint(1, entities)}])
    cpu0, redis0, wall0, n = time.process_time(), tree_cpu(redis_pid), time.perf_counter(), 0
    while time.perf_counter() - wall0 < seconds:
        store.get_online_features(refs, [{"driver_id": rng.randint(1, entities)}])
        n += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return per_core(n, wall, cpu, tree_cpu(redis_pid) - redis0)


def per_core(n: int, wall: float, cpu: float, redis_cpu: float) -> dict[str, float]:
    return {
        "per_s": n / wall,
        "per_cpu_s": n / cpu if cpu > 0 else float("nan"),
        "cpu_share": cpu / wall,
        "redis_us": redis_cpu / n * 1e6,
    }


def start_server(command: list[str], health: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=sink
        )
    import urllib.request

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    wait_until(ready, 120)
    return process, port


def measure_http(
    process: subprocess.Popen[bytes],
    port: int,
    path: str,
    bodies: list[str],
    redis_pid: int,
    clients: int,
    seconds: float,
) -> dict[str, float]:
    """Closed-loop load (models_load.py) of `seconds` after a 2 s warm-up; the server's and Redis's
    CPU are read over a window inside the timed phase, so start-up and drain do not count."""
    with tempfile.TemporaryDirectory() as tmp:
        config, result = Path(tmp) / "config.json", Path(tmp) / "result.json"
        spec = {
            "host": "127.0.0.1",
            "port": port,
            "path": path,
            "bodies": bodies,
            "clients": clients,
            "seconds": seconds,
            "warmup": 2.0,
            "max_warmup": 30.0,
        }
        config.write_text(json.dumps(spec))
        load = subprocess.Popen(
            [sys.executable, str(HERE / "models_load.py"), str(config), str(result)]
        )
        time.sleep(3.0)  # interpreter start + the 2 s warm-up
        window = max(seconds - 2.0, 1.0)
        cpu0, redis0, wall0 = tree_cpu(process.pid), tree_cpu(redis_pid), time.perf_counter()
        time.sleep(window)
        cpu, redis_cpu = tree_cpu(process.pid) - cpu0, tree_cpu(redis_pid) - redis0
        wall = time.perf_counter() - wall0
        if load.wait(seconds + 60) != 0:
            raise RuntimeError("models_load.py failed")
        answer = json.loads(result.read_text())
    rate = float(answer["rps"])
    timed_errors = {k: v for k, v in answer["errors"].items() if "warm-up" not in k}
    if answer["errors"]:
        print(f"  {path}: errors {answer['errors']} (timed: {sum(timed_errors.values())})")
    n = rate * wall  # requests in the CPU window, at the timed phase's rate
    return per_core(int(n), wall, cpu, redis_cpu)


def measure_ingest(store: Any, redis_port: int, redis_pid: int, events: int) -> dict[str, float]:
    import redis

    from parity.ingest.stream import StreamWorker, publish

    client = redis.Redis(port=redis_port)
    source = store.get_feature_view("velocity").source
    now = datetime.now(UTC)
    rows = [
        {
            "account_id": 1 + i % 10_000,
            "event_timestamp": now - timedelta(seconds=i % 600),
            "amount": float(10 + i % 90),
        }
        for i in range(events)
    ]
    for start in range(0, events, 10_000):
        publish(client, source, rows[start : start + 10_000], project=store.project)
    worker = StreamWorker(store, "txns", block_ms=1, client=client)
    cpu0, redis0, wall0 = time.process_time(), tree_cpu(redis_pid), time.perf_counter()
    while worker.run_once():
        pass
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    result = per_core(events, wall, cpu, tree_cpu(redis_pid) - redis0)
    client.delete(source.stream_key(store.project))
    client.close()
    return result


def measure_redis_benchmark(port: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for pipeline in (1, 16):
        done = subprocess.run(
            [
                "redis-benchmark",
                "-p",
                str(port),
                "-q",
                "-n",
                "200000",
                "-c",
                "50",
                "-P",
                str(pipeline),
                "-t",
                "get,hset",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        for name, value in re.findall(r"^(\w+): ([\d.]+) requests per second", done.stdout, re.M):
            figures[f"{name} -P {pipeline}"] = float(value)
    return figures


def measure_sizes(store: Any, port: int, entities: int) -> dict[str, float]:
    """Bytes behind one 1 x 50 read: the entity's Redis hash (its 5 view fields), Redis's memory
    per entity, and the feature server's JSON request and response bodies."""
    import redis

    from parity.serving.app import create_app

    client = redis.Redis(port=port)
    keys = [k for k in client.scan_iter(match=f"parity:v1:{store.project}:{{*", count=1000)]
    keys = [k for k in keys if b":tiles:" not in k][:200]
    values = [sum(len(v) for v in client.hgetall(k).values()) for k in keys]
    memory = [int(client.memory_usage(k) or 0) for k in keys]
    used = int(client.info("memory")["used_memory"]) - int(
        client.info("memory")["used_memory_startup"]
    )
    client.close()
    body = json.dumps({"features": feature_refs(), "entities": {"driver_id": [1]}})
    from fastapi.testclient import TestClient

    with TestClient(create_app(store)) as http:
        answer = http.post("/get-online-features", content=body)
    return {
        "redis value bytes per entity (5 views, 50 float64)": statistics.mean(values),
        "redis MEMORY USAGE per entity key": statistics.mean(memory),
        "redis used_memory per materialized entity": used / entities,
        "HTTP request body bytes (1 x 50)": len(body),
        "HTTP response body bytes (1 x 50)": len(answer.content),
    }


def measure_catalog(views: int = 500, per_view: int = 20) -> dict[str, float]:
    """A catalog of views x per_view Float64 features (10,000 by default, Michelangelo's count):
    its JSON in the registry, the time a server takes to parse it on a refresh, the memory."""
    import gzip
    import tracemalloc

    from parity import Entity, FeatureView, Field, FileSource, Float64
    from parity.registry.catalog import Catalog

    driver = Entity(name="driver", join_keys=["driver_id"])
    definitions = [
        FeatureView(  # type: ignore[call-arg]  # schema: a pydantic alias
            name=f"view_{i}",
            entities=[driver],
            schema=[Field(name=f"f_{i}_{j}", dtype=Float64) for j in range(per_view)],
            source=FileSource(path=f"data/view_{i}.parquet"),
        )
        for i in range(views)
    ]
    text = Catalog.build("scale", [driver, *definitions]).to_json()
    timings = []
    for _ in range(5):
        began = time.perf_counter()
        Catalog.from_json(text)
        timings.append(time.perf_counter() - began)
    tracemalloc.start()
    kept = Catalog.from_json(text)
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return {
        f"catalog of {views * per_view:,} features: JSON bytes": len(text),
        "catalog JSON bytes, gzip": len(gzip.compress(text.encode())),
        "catalog parse (refresh) ms, median of 5": statistics.median(timings) * 1e3,
        "catalog in memory, bytes (tracemalloc)": memory,
    }


def measure_breakdown(store: Any, entities: int, requests: int = 4_000) -> dict[str, float]:
    """Where a prediction's CPU goes, without HTTP: CPU per /v1 prediction through a ModelServer
    in this process (16 requests at a time, the prediction log on), and CPU per online read of
    the same 1 x 50 (`get_online_features_async`, 16 at a time). Best of 3."""
    import asyncio

    from parity.inference.app import prediction_logger
    from parity.inference.metrics import ModelMetrics
    from parity.inference.server import ModelServer, ModelTarget

    service = store.get_feature_service("all50")
    server = ModelServer(
        store.models,
        metrics=ModelMetrics(),
        features=store,
        prediction_log=prediction_logger(store),
        alias_refresh_seconds=1.0,
    )
    target = ModelTarget.parse("scale")

    async def cpu_per(call: Callable[[int], Any]) -> float:
        started = time.process_time()
        for first in range(0, requests, 16):
            await asyncio.gather(*(call(1 + (first + n) % entities) for n in range(16)))
        return 1e6 * (time.process_time() - started) / requests

    async def run() -> dict[str, float]:
        def predict(key: int) -> Any:
            return server.predict_entities(target, {"driver_id": [key]})

        def read(key: int) -> Any:
            return store.get_online_features_async(service, {"driver_id": [key]})

        await cpu_per(predict)  # warm-up: the model, caches, connections
        found = {
            "in-process prediction CPU µs (ModelServer, no HTTP)": min(
                [await cpu_per(predict) for _ in range(3)]
            ),
            "in-process online read CPU µs (1 x 50, async)": min(
                [await cpu_per(read) for _ in range(3)]
            ),
        }
        await server.close()
        return found

    return asyncio.run(run())


def one_repeat(args: argparse.Namespace, store: Any, redis: tuple[int, Any]) -> dict[str, float]:
    port, redis_process = redis
    rid = redis_process.pid
    figures: dict[str, float] = {}
    api = measure_store_api(store, rid, args.seconds, args.entities)
    figures |= {f"store API {k}": v for k, v in api.items()}
    cli = [sys.executable, "-m", "parity.cli.main"]
    rng = random.Random(2)
    ids = [rng.randint(1, args.entities) for _ in range(256)]
    refs = feature_refs()
    fs_bodies = [json.dumps({"features": refs, "entities": {"driver_id": [i]}}) for i in ids]
    ms_bodies = [json.dumps({"entities": {"driver_id": [i]}}) for i in ids]
    servers = [
        ("feature server", ["serve"], "/health", "/get-online-features", fs_bodies),
        (
            "model server",
            ["serve-models", "-m", "scale@champion"],
            "/v2/health/ready",
            "/v1/models/scale/predict",
            ms_bodies,
        ),
    ]
    for name, command, health, path, bodies in servers:
        log = WORK / f"{command[0]}.log"
        process, server_port = start_server(
            [*cli, *command, "--repo", str(store.repo_path)], health, log
        )
        try:
            got = measure_http(process, server_port, path, bodies, rid, args.clients, args.seconds)
        finally:
            process.terminate()
            process.wait(30)
        figures |= {f"{name} {k}": v for k, v in got.items()}
    ingest = measure_ingest(store, port, rid, args.events)
    figures |= {f"ingest {k}": v for k, v in ingest.items()}
    figures |= {f"redis {k}": v for k, v in measure_redis_benchmark(port).items()}
    return figures


UNITS = {
    "per_s": "req/s (wall, 2 shared cores)",
    "per_cpu_s": "req per CPU-second of the process = per core",
    "cpu_share": "cores the process used",
    "redis_us": "Redis CPU µs per request",
}


def report(runs: list[dict[str, float]], loads: list[tuple[str, str]]) -> None:
    print(f"\n{len(runs)} repeats; load average (1, 5, 15 min) before -> after each:")
    for i, (before, after) in enumerate(loads, 1):
        print(f"  repeat {i}: {before} -> {after}")
    print("\n| measurement | median | range | unit |\n| --- | --- | --- | --- |")
    for key in runs[0]:
        values = [run[key] for run in runs]
        unit = next((u for suffix, u in UNITS.items() if key.endswith(suffix)), "ops/s")
        median = statistics.median(values)
        print(f"| {key} | {median:,.1f} | {min(values):,.1f} - {max(values):,.1f} | {unit} |")
    for who in ("store API", "feature server"):
        core = statistics.median(run[f"{who} per_cpu_s"] for run in runs)
        print(
            f"{who}: {core:,.0f} requests x {VIEWS * PER_VIEW} = "
            f"{core * VIEWS * PER_VIEW:,.0f} feature values per core-second"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 4 s phases")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of each load phase")
    parser.add_argument("--clients", type=int, default=8, help="HTTP connections")
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=50_000, help="stream events per repeat")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds, args.events = 1, 4.0, 10_000
    os.chdir(HERE.parent)  # the CLI and models_load.py run from the repo root
    WORK.mkdir(parents=True, exist_ok=True)
    runs, loads = [], []
    with private_redis() as redis:
        store = make_repo(WORK / "repo", redis[0], args.entities)
        try:
            sizes = measure_sizes(store, redis[0], args.entities) | measure_catalog()
            sizes |= measure_breakdown(store, args.entities)
            for what, value in sizes.items():
                print(f"{what}: {value:,.0f}")
            for i in range(args.repeats):
                before = load_average()
                print(f"repeat {i + 1}/{args.repeats}, load average {before}", flush=True)
                runs.append(one_repeat(args, store, redis))
                loads.append((before, load_average()))
        finally:
            store.close()
    report(runs, loads)


if __name__ == "__main__":
    main()
