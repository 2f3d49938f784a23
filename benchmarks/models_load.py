"""Load generator for bench_models.py: N keep-alive HTTP/1.1 connections, each POSTing JSON bodies
back to back; after a warm-up on the same connections, a timed phase; writes requests/s, latency
percentiles and errors as JSON.

    python models_load.py CONFIG.json RESULT.json

CONFIG: {"host", "port", "path", "bodies": [str, ...], "clients", "seconds", "warmup",
"max_warmup", "metrics_path" (optional), "headers" (optional: {name: value} sent with every
request, e.g. Authorization)}. Each connection starts at its own offset in `bodies` and
sends them in turn. The warm-up lasts `warmup` seconds and until every connection has had an
answer (at most `max_warmup` seconds; `ramp_s` in the result says how long that took). Timed: the
requests sent in the `seconds` after the warm-up. With `metrics_path`, that page is fetched when
the timed phase starts and after it ends (both texts are in the result).

Raw sockets through asyncio protocols (uvloop when installed), so the client costs as little CPU
as it can: it shares the machine with the server under test. Standard library only (uvloop
optional); runs in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import urllib.request
from typing import Any, cast

ERROR_SAMPLES = 3


class Load:
    """Shared state of one run: the latencies, the statuses that were not 200, the phases."""

    def __init__(self, config: dict[str, Any]) -> None:
        host, port, path = config["host"], int(config["port"]), config["path"]
        extra = "".join(f"{k}: {v}\r\n" for k, v in (config.get("headers") or {}).items())
        self.requests = [
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
                f"Content-Type: application/json\r\nContent-Length: {len(body.encode())}\r\n\r\n"
            ).encode()
            + body.encode()
            for body in config["bodies"]
        ]
        self.latencies_ns: list[int] = []
        self.errors: dict[str, int] = {}
        self.samples: list[str] = []
        self.timed_from_ns = math.inf  # requests sent from then on are timed
        self.deadline = math.inf  # no request is sent after it (perf_counter seconds)
        self.last_ns = 0  # when the last timed answer arrived
        self.answered = 0  # every whole answer, warm-up included (server work per request)

    def error(self, what: str, sample: str, timed: bool) -> None:
        what = what if timed else f"{what} (warm-up)"
        self.errors[what] = self.errors.get(what, 0) + 1
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(f"{what}: {sample[:500]}")


class Connection(asyncio.Protocol):
    """One client: sends a request, waits for the whole answer, sends the next one."""

    def __init__(self, load: Load, offset: int, done: asyncio.Future[None]) -> None:
        self.load = load
        self.index = offset
        self.done = done
        self.buffer = bytearray()
        self.sent_ns = 0
        self.answered = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        self.send()

    def send(self) -> None:
        requests = self.load.requests
        self.index = (self.index + 1) % len(requests)
        self.sent_ns = time.perf_counter_ns()
        if self.transport is not None:
            self.transport.write(requests[self.index])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.fail("answer without Content-Length", bytes(self.buffer[:end]).decode())
            return
        line_end = head.find(b"\r\n", at + 2)
        total = end + 4 + int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < total:
            return
        now = time.perf_counter_ns()
        self.answered = True
        self.load.answered += 1
        timed = self.sent_ns >= self.load.timed_from_ns
        status = int(self.buffer[9:12])
        if status != 200:
            body = bytes(self.buffer[end + 4 : total]).decode(errors="replace")
            self.load.error(f"HTTP {status}", body, timed)
        elif timed:
            self.load.latencies_ns.append(now - self.sent_ns)
            self.load.last_ns = now
        del self.buffer[:total]
        if time.perf_counter() < self.load.deadline:
            self.send()
        elif not self.done.done():
            self.done.set_result(None)

    def fail(self, what: str, sample: str) -> None:
        self.load.error(what, sample, self.sent_ns >= self.load.timed_from_ns)
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.load.error("connection closed", repr(exc), self.sent_ns >= self.load.timed_from_ns)
            self.done.set_result(None)


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return str(answer.read().decode())
    except OSError as error:
        return f"# could not fetch {url}: {error}"


async def run(config: dict[str, Any]) -> dict[str, Any]:
    load = Load(config)
    loop = asyncio.get_running_loop()
    clients, seconds = int(config["clients"]), float(config["seconds"])
    metrics_url = None
    if config.get("metrics_path"):
        metrics_url = f"http://{config['host']}:{config['port']}{config['metrics_path']}"
    started = time.perf_counter()
    futures: list[asyncio.Future[None]] = []
    connections: list[Connection] = []
    for client in range(clients):
        done: asyncio.Future[None] = loop.create_future()
        connection = Connection(load, client * len(load.requests) // clients, done)
        await loop.create_connection(lambda c=connection: c, config["host"], int(config["port"]))  # type: ignore[misc]
        futures.append(done)
        connections.append(connection)
    warmup, max_warmup = float(config["warmup"]), float(config["max_warmup"])
    while time.perf_counter() - started < max_warmup and not all(f.done() for f in futures):
        if time.perf_counter() - started >= warmup and all(c.answered for c in connections):
            break
        await asyncio.sleep(0.02)
    ramp = time.perf_counter() - started
    silent = sum(not c.answered for c in connections)
    load.timed_from_ns = time.perf_counter_ns()
    load.deadline = time.perf_counter() + seconds
    before = await asyncio.to_thread(fetch, metrics_url) if metrics_url else None
    await asyncio.wait_for(asyncio.gather(*futures), timeout=seconds + 120)
    after = await asyncio.to_thread(fetch, metrics_url) if metrics_url else None
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    elapsed = (load.last_ns - load.timed_from_ns) / 1e9 if load.latencies_ns else seconds
    return summary(load, elapsed) | {
        "ramp_s": ramp,
        "silent_at_start": silent,
        "metrics_before": before,
        "metrics_after": after,
    }


def summary(load: Load, seconds: float) -> dict[str, Any]:
    latencies = sorted(load.latencies_ns)

    def pct(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6

    return {
        "ok": len(latencies),
        "seconds": seconds,
        "rps": len(latencies) / seconds if seconds > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        "errors": load.errors,
        "error_samples": load.samples,
        "answered": load.answered,
    }


def main(argv: list[str]) -> int:
    with open(argv[0]) as source:
        config = json.load(source)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(config)) | {"loop": "asyncio"}
    else:
        result = uvloop.run(run(config)) | {"loop": "uvloop"}
    with open(argv[1], "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
