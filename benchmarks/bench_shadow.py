"""Shadow traffic's cost to the champion (issue 14): one model server process (uvicorn, one
worker, real HTTP), a real scikit-learn model answering `/v1/models/bench/predict` with features
read from the online store, in one run:

    .venv/bin/python benchmarks/bench_shadow.py [--quick] [--seconds S] [--clients N]
        [--executor process|inline]

1. capacity: closed loop, N keep-alive connections back to back, no rollout (models_load.py),
   the median of three runs;
2. at a fixed rate of half that capacity (open loop: request i is due at i / rate, its latency
   counts from when it was due, so a stalled server cannot hide its queue), p50 and p99 with no
   rollout and with shadow mode (a second version mirrored 100 %, features reused), alternating
   for --rounds pairs on the same warm server; medians per mode, and the spread of the no-rollout
   runs alone (the machine's noise);
3. `arm()`, the routing decision, with timeit (and the whole decision for a /v1 request:
   routing key, arm, mirrored versions).

Prints the ratios against the issue's targets (shadow p50 and p99 within 10 % of no rollout; a
routing decision under 5 µs). Exits 0 even when a target is missed. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import timeit
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
WORK = BENCH_DIR / ".work" / "shadow"
USERS = 5_000
FEATURES = 8
TARGET_RATIO = 1.10  # shadow p50/p99 within 10 % of no rollout
TARGET_ROUTE_US = 5.0

ENTITIES = """
from parity import Entity
user = Entity(name="user", join_keys=["user_id"])
"""
VIEWS = """
from datetime import timedelta
from entities import user
from parity import FeatureService, FeatureView, Field, FileSource, Float64
stats = FeatureView(
    name="user_stats",
    entities=[user],
    schema=[Field(name=f"f{i}", dtype=Float64) for i in range(8)],
    source=FileSource(path="data/user_stats.parquet"),
    ttl=timedelta(days=3650),
)
user_service = FeatureService(name="user_service", features=[stats])
"""


def log(text: str) -> None:
    print(text, flush=True)


# --- the repo: features, two model versions ---------------------------------------------------


def build_repo(root: Path) -> None:
    """A repo with USERS users' 8 features materialized, `bench` v1 (champion) and v2: logistic
    regressions trained on them, v2 with another C (its predictions differ)."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from parity import FeatureStore

    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    (root / "parity.yaml").write_text(
        "project: bench_shadow\nmodels:\n  trusted: true\n  serving:\n"
        "    prediction_log: data/predictions\n    alias_refresh_seconds: 1\n"
    )
    (root / "entities.py").write_text(ENTITIES.lstrip())
    (root / "views.py").write_text(VIEWS.lstrip())
    rng = np.random.default_rng(14)
    values = rng.normal(size=(USERS, FEATURES))
    frame = pd.DataFrame({f"f{i}": values[:, i] for i in range(FEATURES)})
    frame.insert(0, "user_id", np.arange(USERS, dtype=np.int64))
    frame["event_timestamp"] = pd.Timestamp("2026-01-01", tz="UTC")
    frame.to_parquet(root / "data" / "user_stats.parquet")
    store = FeatureStore(root)
    try:
        store.apply()
        now = datetime(2026, 1, 2, tzinfo=UTC)
        store.materialize(now - timedelta(days=2), now)
        labels = (values @ rng.normal(size=FEATURES) > 0).astype(int)
        inputs = frame[[f"f{i}" for i in range(FEATURES)]]
        sample = inputs.head(5)
        for c, alias in ((1.0, "champion"), (0.01, None)):
            model = LogisticRegression(C=c).fit(inputs, labels)
            store.models.register_model(
                "bench", model, flavor="sklearn", feature_service="user_service",
                sample_input=sample, alias=alias,
            )  # fmt: skip
    finally:
        store.close()


ROLLOUT: dict[str, Any] = {
    "model": "bench",
    "rollout": "bench-1",
    "champion_alias": "champion",
    "champion": 1,
    "candidate": 2,
    "weight": 0.0,
    "key": "user_id",
    "shadows": [[2, 1.0]],
}


def set_routes(path: Path, shadow: bool) -> None:
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps([ROLLOUT] if shadow else []))
    temp.replace(path)


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(root: Path, routes: Path, port: int, executor: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PARITY_BENCH_SHADOW_EXECUTOR": executor,
        "PARITY_BENCH_REPO": str(root),
        "PARITY_BENCH_ROUTES": str(routes),
        "PARITY_BENCH_PRELOAD": "bench@champion,bench/2",
        "PYTHONPATH": str(BENCH_DIR),
    }
    command = [
        str(PYTHON), "-m", "uvicorn", "--factory", "shadow_app:app", "--port", str(port),
        "--workers", "1", "--log-level", "warning", "--no-access-log", "--http", "httptools",
        "--loop", "uvloop",
    ]  # fmt: skip
    output = (WORK / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ready(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the model server did not start; see {WORK / 'server.log'}")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(30)
        output.close()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family_cpu_seconds(pid: int) -> float:
    """CPU time of the server's child processes (the shadow process), living ones only."""
    total = 0.0
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread may end while we look
            children.update(int(c) for c in (task / "children").read_text().split())
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            total += cpu_seconds(child)
    return total


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        found = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if found and all(f'{k}="{v}"' in found.group(1) for k, v in labels.items()):
            total += float(found.group(2))
    return total


def bodies(count: int = 512) -> list[str]:
    step = max(1, USERS // count)
    return [json.dumps({"entities": {"user_id": [u]}}) for u in range(0, USERS, step)][:count]


# --- load: closed loop (capacity) and open loop (fixed rate) ----------------------------------


def capacity(port: int, clients: int, seconds: float) -> dict[str, Any]:
    config = {
        "host": "127.0.0.1", "port": port, "path": "/v1/models/bench/predict",
        "bodies": bodies(), "clients": clients, "seconds": seconds, "warmup": 1.0,
        "max_warmup": 30.0,
    }  # fmt: skip
    config_path, result_path = WORK / "capacity.json", WORK / "capacity-result.json"
    config_path.write_text(json.dumps(config))
    subprocess.run(
        [str(PYTHON), str(BENCH_DIR / "models_load.py"), str(config_path), str(result_path)],
        check=True,
    )
    return dict(json.loads(result_path.read_text()))


def fixed_rate(port: int, rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    """Runs this file's open-loop client in its own process (it must not share the server's
    CPU time slice accounting nor our interpreter)."""
    config = {"port": port, "rate": rate, "seconds": seconds, "warmup": warmup, "bodies": bodies()}
    config_path, result_path = WORK / "rate.json", WORK / "rate-result.json"
    config_path.write_text(json.dumps(config))
    subprocess.run(
        [str(PYTHON), __file__, "--load", str(config_path), str(result_path)], check=True
    )
    return dict(json.loads(result_path.read_text()))


async def open_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Request i is due at start + i / rate; it waits for a free connection (a pool of 64) and
    its latency runs from when it was due to its last byte."""
    port, rate = int(config["port"]), float(config["rate"])
    payloads = [
        (
            f"POST /v1/models/bench/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n{b}"
        ).encode()
        for b in config["bodies"]
    ]
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(64):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    loop = asyncio.get_running_loop()
    warm, total = int(rate * config["warmup"]), int(rate * (config["warmup"] + config["seconds"]))
    latencies: list[float] = []
    errors = 0
    start = loop.time() + 0.1

    async def fire(index: int, due: float) -> None:
        nonlocal errors
        reader, writer = await idle.get()
        writer.write(payloads[index % len(payloads)])
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        idle.put_nowait((reader, writer))
        if index >= warm:
            latencies.append(loop.time() - due)
            errors += head[9:12] != b"200"

    tasks = []
    for index in range(total):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(fire(index, due)))
    await asyncio.gather(*tasks)
    latencies.sort()

    def pct(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, math.ceil(q * len(latencies)) - 1)]

    achieved = len(latencies) / (loop.time() - start - config["warmup"])
    return {"p50_ms": pct(0.5), "p99_ms": pct(0.99), "requests": len(latencies),
            "errors": errors, "achieved_rps": achieved}  # fmt: skip


# --- CPU per request, in process -------------------------------------------------------------


def cpu_per_request(root: Path, requests: int, group: int = 16) -> dict[str, float]:
    """CPU time (every thread of this process: loop, model threads, log writer) per /v1
    prediction through a ModelServer without HTTP, `group` requests at a time, with no rollout
    and with shadow mode (shadows drained). Process CPU time barely moves with other jobs'
    load, unlike latency."""
    from shadow_app import read_routes

    from parity.feature_store import FeatureStore
    from parity.inference.metrics import ModelMetrics
    from parity.inference.predlog import MemoryLogSink, PredictionLogger
    from parity.inference.server import ModelServer, ModelTarget

    routes_file = WORK / "cpu-routes.json"
    store = FeatureStore(root)
    logger = PredictionLogger(MemoryLogSink())
    server = ModelServer(
        store.models, metrics=ModelMetrics(), features=store, prediction_log=logger,
        alias_refresh_seconds=1.0, routes=lambda: read_routes(routes_file),
    )  # fmt: skip
    target = ModelTarget.parse("bench")

    async def measure(shadow: bool) -> float:
        set_routes(routes_file, shadow)
        server.refresh_routes()
        started = time.process_time()
        for first in range(0, requests, group):
            users = [(first + n) % USERS for n in range(group)]
            await asyncio.gather(
                *(server.predict_entities(target, {"user_id": [u]}) for u in users)
            )
        await server.shadows.drain()
        logger.flush()
        return 1e6 * (time.process_time() - started) / requests

    async def run() -> dict[str, float]:
        await measure(False)  # warm-up: loads, caches
        await measure(True)
        found: dict[str, list[float]] = {"none": [], "shadow": []}
        for _ in range(3):
            for name in ("none", "shadow"):
                found[name].append(await measure(name == "shadow"))
        await server.close()
        return {name: min(values) for name, values in found.items()}

    try:
        return asyncio.run(run())
    finally:
        logger.close()
        store.close()


# --- the routing decision ----------------------------------------------------------------------


def routing_cost() -> tuple[float, float]:
    """Microseconds per `arm()` and per whole /v1 decision (key, arm, mirrored versions)."""
    sys.path.insert(0, str(ROOT / "src"))
    from parity.inference.routing import Routes, Shadow, arm, mirrored_versions, request_key

    routes = Routes("bench", "bench-1", "champion", 1, 2, 25.0, "user_id",
                    shadows=(Shadow(3, 0.5),))  # fmt: skip
    columns = {"user_id": [123456]}
    keys = [str(n) for n in range(1000)]

    def arms() -> None:
        for key in keys:
            arm(routes, key)

    def decisions() -> None:
        for _ in range(1000):
            key = request_key(routes, columns, None)
            if arm(routes, key) == "champion":
                mirrored_versions(routes, key, "request-id")

    arm_us = min(timeit.repeat(arms, number=20, repeat=5)) / 20_000 * 1e6
    whole_us = min(timeit.repeat(decisions, number=20, repeat=5)) / 20_000 * 1e6
    return arm_us, whole_us


# --- the run -------------------------------------------------------------------------------------


def phase(
    port: int, pid: int, routes: Path, name: str, rate: float, seconds: float
) -> dict[str, Any]:
    """One fixed-rate phase with (name "shadow") or without a rollout; prints and returns it."""
    set_routes(routes, name == "shadow")
    time.sleep(2.5)  # routes are re-read every second (alias_refresh_seconds)
    before, cpu, child = metrics(port), cpu_seconds(pid), family_cpu_seconds(pid)
    found = fixed_rate(port, rate, seconds, warmup=2.0)
    after, cpu = metrics(port), cpu_seconds(pid) - cpu
    child = family_cpu_seconds(pid) - child
    sent = rate * (seconds + 2.0)
    shadows = {
        what: counter(after, metric) - counter(before, metric)
        for what, metric in (
            ("ran", "parity_shadow_requests_total"),
            ("dropped", "parity_shadow_dropped_total"),
        )
    }
    log(
        f"  {name:<7} p50 {found['p50_ms']:7.2f} ms  p99 {found['p99_ms']:7.2f} ms  "
        f"({found['requests']:,} requests at {found['achieved_rps']:,.0f}/s, {found['errors']} "
        f"errors; shadow predictions {shadows['ran']:,.0f}, dropped {shadows['dropped']:,.0f}; "
        f"server CPU {1e6 * cpu / sent:,.0f} µs per request, its shadow process "
        f"{1e6 * max(0.0, child) / sent:,.0f} µs)"
    )
    return {**found, "cpu_us": 1e6 * cpu / sent}


def start_shadow_process(port: int, routes: Path) -> float:
    """Mirror a few requests until a shadow prediction is counted: the server's shadow process
    (started with the first mirrored request) is up before the measured phases. Its seconds."""
    started = time.monotonic()
    set_routes(routes, True)
    time.sleep(2.5)
    body = bodies(1)[0].encode()
    while counter(metrics(port), "parity_shadow_requests_total") == 0:
        if time.monotonic() - started > 120:
            raise RuntimeError("no shadow prediction within 120 s")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/bench/predict", body,
            {"Content-Type": "application/json"},
        )  # fmt: skip
        urllib.request.urlopen(request, timeout=10).read()
        time.sleep(0.2)
    set_routes(routes, False)
    return time.monotonic() - started


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (a smoke run)")
    parser.add_argument("--seconds", type=float, help="each fixed-rate phase (default 15, quick 4)")
    parser.add_argument("--clients", type=int, default=32, help="capacity connections")
    parser.add_argument("--rounds", type=int, help="no-rollout/shadow pairs (default 3, quick 2)")
    parser.add_argument(
        "--executor", choices=("process", "inline"), default="process",
        help="where shadow predictions run (models.serving.shadow_executor; default process)",
    )  # fmt: skip
    parser.add_argument("--load", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.load:
        config = json.loads(Path(options.load[0]).read_text())
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        Path(options.load[1]).write_text(json.dumps(asyncio.run(open_loop(config))))
        return 0
    seconds = options.seconds or (4.0 if options.quick else 15.0)
    rounds = options.rounds or (2 if options.quick else 3)
    WORK.mkdir(parents=True, exist_ok=True)
    repo, routes = WORK / "repo", WORK / "routes.json"
    log(f"building the repo ({USERS:,} users, 8 features, two LogisticRegression versions)")
    build_repo(repo)
    set_routes(routes, shadow=False)
    port = free_port()
    log(f"shadow executor: {options.executor}")
    with server(repo, routes, port, options.executor) as process:
        tries = [
            float(capacity(port, options.clients, 3.0 if options.quick else 8.0)["rps"])
            for _ in range(3)
        ]
        cap = statistics.median(tries)
        rate = cap / 2
        shown = ", ".join(f"{t:,.0f}" for t in tries)
        log(f"capacity, no rollout ({options.clients} connections): {cap:,.0f} req/s (median of "
            f"{shown})")  # fmt: skip
        log(f"fixed rate: {rate:,.0f} req/s (half), {seconds:g} s per phase, {rounds} rounds")
        warm = start_shadow_process(port, routes)
        log(f"first shadow prediction after {warm:.1f} s (the shadow process starts; not measured)")
        runs: dict[str, list[dict[str, Any]]] = {"none": [], "shadow": []}
        for round_ in range(rounds):
            for name in ("none", "shadow") if round_ % 2 == 0 else ("shadow", "none"):
                runs[name].append(phase(port, process.pid, routes, name, rate, seconds))
    summary = {
        name: {q: statistics.median(r[q] for r in found) for q in ("p50_ms", "p99_ms")}
        for name, found in runs.items()
    }
    cpu = {name: statistics.median(r["cpu_us"] for r in found) for name, found in runs.items()}
    log("")
    log(
        f"server CPU per request (medians): shadow {cpu['shadow']:,.0f} µs / no rollout "
        f"{cpu['none']:,.0f} µs = {cpu['shadow'] / cpu['none']:.3f} (the mirrored work's cost, "
        "less sensitive to other jobs on the machine than latency)"
    )
    for q in ("p50_ms", "p99_ms"):
        base, shadow = summary["none"][q], summary["shadow"][q]
        spread = max(r[q] for r in runs["none"]) / min(r[q] for r in runs["none"])
        log(
            f"shadow {q[:3]} / no rollout (medians of {rounds}): {shadow:.2f} / {base:.2f} ms = "
            f"{shadow / base:.3f} (target <= {TARGET_RATIO:.2f}; no-rollout runs alone spread "
            f"{spread:.2f}x)  {verdict(shadow / base <= TARGET_RATIO)}"
        )
    cpu_us = cpu_per_request(repo, 600 if options.quick else 2_000)
    log(
        f"CPU per /v1 prediction in process (no HTTP, 16 at a time, best of 3): no rollout "
        f"{cpu_us['none']:,.0f} µs, shadow {cpu_us['shadow']:,.0f} µs "
        f"(+{cpu_us['shadow'] / cpu_us['none'] - 1:.0%}: the mirrored copy's cost)"
    )
    arm_us, whole_us = routing_cost()
    log(f"arm(): {arm_us:.2f} µs per decision (target < {TARGET_ROUTE_US:g} µs)  "
        f"{verdict(arm_us < TARGET_ROUTE_US)}")  # fmt: skip
    log(f"whole /v1 decision (key, arm, shadows): {whole_us:.2f} µs")
    log(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
