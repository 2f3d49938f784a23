"""The feature server under overload (issue 12, items 14 and 15): closed-loop load at 256 and 1,024
connections on loopback, and one big read next to small ones. One command:

    .venv/bin/python benchmarks/bench_overload.py [--connections 256,1024] [--seconds 8]
        [--timeout 15] [--big 60000,5000] [--clients hostile,polite]
        [--setting read_threads=4 ...] [--server-arg=--workers=1 ...]

Builds a repo under benchmarks/.work/overload/ (one `driver` entity, 5 views of 10 Float64
features, 10,000 drivers, SQLite online store, materialized), starts `parity serve` with its
defaults, then:

1. overload: N connections (opened and used once before the clock starts), each POSTing
   /get-online-features (100 entities x 50 features, the 100x50 shape of bench_online.py) again
   as soon as its previous answer arrives, for `--seconds`; a request unanswered after
   `--timeout` s counts as a timeout (its connection is reopened).
   Hostile clients send again at once after a 503; polite ones first wait its Retry-After.
   Prints, per N: answers by status, errors, timeouts, p50/p99/max of the admitted (200) requests
   and of the 503s, and admitted requests per second (from the first request sent to the last
   answer, which comes after `--seconds` when answers lag).
2. isolation: 4 connections of small requests (1 entity x 10 features) while one big request of
   `--big` entities is in flight: the big request's status, time and size, and the small
   requests' p50/p99/max during it.

Bounded in count and time: each phase stops sending after `--seconds` and waits at most
`--timeout` more. Standard library only (plus the server it starts); no wrk needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import online_http as http

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / ".work" / "overload"
PARITY = Path(sys.executable).parent / "parity"
VIEWS = [f"stats_{i}" for i in range(5)]
FEATURES = [f"f{j}" for j in range(10)]
DRIVERS = 10_000
SMALL_CONNECTIONS = 4

VIEW = """
{name} = FeatureView(
    name="{name}",
    entities=[driver],
    schema=[Field(name=f, dtype=Float64) for f in {features!r}],
    source=FileSource(path="data/stats.parquet"),
)
"""
HEADER = """from parity import Entity, FeatureView, Field, FileSource, Float64

driver = Entity(name="driver", join_keys=["driver_id"])
"""


def build_repo(root: Path) -> Path:
    """The repo, applied and materialized (reused when its online store exists)."""
    if (root / "data" / "online.db").exists():
        return root
    from datetime import UTC, datetime, timedelta

    import pyarrow as pa
    import pyarrow.parquet as pq

    from parity import FeatureStore

    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "parity.yaml").write_text("project: overload\n")
    views = "".join(VIEW.format(name=name, features=FEATURES) for name in VIEWS)
    (root / "definitions.py").write_text(HEADER + views)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    columns: dict[str, object] = {
        "driver_id": pa.array(range(1, DRIVERS + 1), pa.int64()),
        "event_timestamp": pa.array(
            [start + timedelta(seconds=i) for i in range(DRIVERS)], pa.timestamp("us", tz="UTC")
        ),
    }
    columns.update({f: pa.array([i * 0.5 for i in range(DRIVERS)]) for f in FEATURES})
    pq.write_table(pa.table(columns), root / "data" / "stats.parquet")
    with FeatureStore(root) as store:
        store.apply()
        store.materialize(start, start + timedelta(days=1))
    return root


def body(entities: list[int], views: list[str]) -> bytes:
    refs = [f"{view}:{feature}" for view in views for feature in FEATURES]
    return json.dumps(
        {"features": refs, "entities": {"driver_id": entities}, "full_feature_names": True}
    ).encode()


def request_bytes(payload: bytes) -> bytes:
    head = (
        "POST /get-online-features HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    admitted: list[float] = field(default_factory=list)  # seconds, status 200
    refused: list[float] = field(default_factory=list)  # seconds, status 503
    errors: int = 0
    timeouts: int = 0
    retry_after: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # from the first request sent to the last answer


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], int]:
    """Send one request on a keep-alive connection; (status, headers, body size)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    size = int(headers.get("content-length", "0"))
    await reader.readexactly(size)
    return status, headers, size


async def client(
    port: int,
    requests: list[bytes],
    stop_at: float,
    timeout: float,
    tally: Tally,
    polite: bool = False,
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None,
) -> None:
    """One connection, closed loop: the next request as soon as the answer arrives (`polite`:
    after a 503, once its Retry-After has passed). A request's time includes reconnecting
    when its connection was dropped."""
    loop = asyncio.get_running_loop()
    index = 0
    while loop.time() < stop_at:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                if connection is None:
                    connection = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
                status, headers, _ = await exchange(*connection, requests[index % len(requests)])
        except TimeoutError:
            tally.timeouts += 1
            connection = await _drop(connection)
            continue
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.errors += 1
            connection = await _drop(connection)
            await asyncio.sleep(0.01)
            continue
        elapsed = time.perf_counter() - started
        index += 1
        tally.statuses[status] += 1
        if status == 200:
            tally.admitted.append(elapsed)
        elif status == 503:
            tally.refused.append(elapsed)
            tally.retry_after[headers.get("retry-after", "-")] += 1
            if polite:
                pause = float(headers.get("retry-after", "1"))
                await asyncio.sleep(max(0.0, min(pause, stop_at - loop.time())))
        if headers.get("connection", "").lower() == "close":
            connection = await _drop(connection)
    await _drop(connection)


async def _drop(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
) -> None:
    if connection is not None:
        connection[1].close()
    return None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{pct(values, 0.5):.1f} / {pct(values, 0.99):.1f} / {max(values) * 1000:.1f}"


async def overload(
    port: int, connections: int, seconds: float, timeout: float, polite: bool = False
) -> Tally:
    tally = Tally()
    requests = [
        request_bytes(body([1 + (c * 100 + k * 37) % DRIVERS for k in range(100)], VIEWS))
        for c in range(64)
    ]
    # Connect them all first, and send one request on each (not counted), so the rows measure
    # steady overload, not connections waiting to be accepted (the server accepts them late
    # while the first ones keep it busy: seconds at 1,024 hostile connections).
    async with asyncio.timeout(timeout * 4):
        opened = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port, limit=1 << 26) for _ in range(connections))
        )
        await asyncio.gather(*(exchange(*pair, requests[0]) for pair in opened))
    stop_at = asyncio.get_running_loop().time() + seconds
    started = time.perf_counter()
    await asyncio.gather(
        *(
            client(
                port,
                requests[c % 64 :] + requests[: c % 64],
                stop_at,
                timeout,
                tally,
                polite,
                opened[c],
            )
            for c in range(connections)
        )
    )
    tally.seconds = time.perf_counter() - started
    return tally


async def isolation(
    port: int, entities: int, timeout: float
) -> tuple[tuple[int, float, int] | str, Tally]:
    """One big request while SMALL_CONNECTIONS connections send small ones."""
    loop = asyncio.get_running_loop()
    small = [request_bytes(body([1 + i % DRIVERS], VIEWS[:1])) for i in range(50)]
    big = request_bytes(body([1 + i % DRIVERS for i in range(entities)], VIEWS))
    tally = Tally()
    stop_at = loop.time() + timeout
    small_tasks = [
        asyncio.create_task(client(port, small, stop_at, timeout, tally))
        for _ in range(SMALL_CONNECTIONS)
    ]
    await asyncio.sleep(0.5)  # the small clients are connected and running
    tally.statuses.clear()
    tally.admitted.clear()
    started = time.perf_counter()
    outcome: tuple[int, float, int] | str
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 28)
        async with asyncio.timeout(timeout):
            status, _, size = await exchange(reader, writer, big)
        writer.close()
        outcome = (status, time.perf_counter() - started, size)
    except TimeoutError:
        outcome = f"timeout after {timeout:g} s"
    during = Tally(tally.statuses.copy(), list(tally.admitted))
    for task in small_tasks:
        task.cancel()
    await asyncio.gather(*small_tasks, return_exceptions=True)
    return outcome, during


def report_overload(connections: int, clients: str, tally: Tally) -> str:
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
    rate = len(tally.admitted) / tally.seconds
    useful = sum(1 for seconds in tally.admitted if seconds <= 1.0) / tally.seconds
    retry = ", ".join(f"{k}: {n}" for k, n in tally.retry_after.items()) or "-"
    return (
        f"  {connections:>5} conns, {clients:<7} | answers {statuses or '-'} | "
        f"errors {tally.errors} | timeouts {tally.timeouts}\n"
        f"        admitted (200) p50/p99/max ms: {spread(tally.admitted)}  ({rate:,.0f}/s, "
        f"{useful:,.0f}/s within 1 s)\n"
        f"        503 p50/p99/max ms: {spread(tally.refused)}  (Retry-After: {retry})"
    )


def report_isolation(entities: int, outcome: tuple[int, float, int] | str, small: Tally) -> str:
    if isinstance(outcome, str):
        big = outcome
    else:
        status, elapsed, size = outcome
        big = f"status {status} in {elapsed * 1000:,.0f} ms, {size / 1e6:.1f} MB"
    median = statistics.median(small.admitted) * 1000 if small.admitted else float("nan")
    return (
        f"  big read of {entities:,} entities: {big}\n"
        f"        small requests meanwhile: {len(small.admitted)} answered, "
        f"p50/p99/max ms {spread(small.admitted)} (median {median:.1f})"
    )


async def run(args: argparse.Namespace, port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status, _, _ = await exchange(reader, writer, request_bytes(body([1, 2], VIEWS)))
    writer.close()
    if status != 200:
        raise http.ServerError(f"a plain 1x50 request was answered {status}, not 200")
    for _ in range(20):  # warm-up
        await overload(port, 1, 0.05, args.timeout)
    print(
        f"overload: closed loop, 100 entities x 50 features, {args.seconds:g} s per row "
        "(hostile clients ignore Retry-After, polite ones wait it out)"
    )
    for connections in args.connections:
        for clients in args.clients:
            tally = await overload(
                port, connections, args.seconds, args.timeout, clients == "polite"
            )
            print(report_overload(connections, clients, tally), flush=True)
            await asyncio.sleep(2)  # let the server drain before the next row
    print(f"isolation: one big read while {SMALL_CONNECTIONS} connections send 1x10 requests")
    for entities in args.big:
        outcome, small = await isolation(port, entities, args.timeout)
        print(report_isolation(entities, outcome, small), flush=True)
        await asyncio.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="256,1024")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument("--big", default="60000,5000")
    parser.add_argument("--clients", default="hostile,polite")
    parser.add_argument("--server-arg", action="append", default=[])
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        help="KEY=VALUE under feature_server: in parity.yaml (default: none, the defaults)",
    )
    args = parser.parse_args()
    args.connections = [int(n) for n in args.connections.split(",")]
    args.big = [int(n) for n in args.big.split(",") if n]
    args.clients = [kind for kind in args.clients.split(",") if kind]
    root = build_repo(WORK / "repo")
    settings = "".join(f"  {k}: {v}\n" for k, v in (item.split("=", 1) for item in args.setting))
    (root / "parity.yaml").write_text(
        "project: overload\n" + (f"feature_server:\n{settings}" if settings else "")
    )
    port = http.free_port()
    command: list[str | Path] = [PARITY, "serve", "--repo", root, "--port", str(port)]
    server = http.start_server(
        "parity serve",
        [*command, *args.server_arg],
        port,
        WORK / "server.log",
        env={**os.environ},
    )
    print(f"server: {' '.join(str(c) for c in command[1:])} {' '.join(args.server_arg)}")
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    try:
        try:
            import uvloop

            uvloop.run(run(args, port))
        except ModuleNotFoundError:
            asyncio.run(run(args, port))
    finally:
        server.stop()
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
