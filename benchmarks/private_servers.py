"""A benchmark's own redis-server on a free port (the shared Redis on 6379 is never loaded)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def free_port() -> int:
    """A free port from a random spot of 20000-29999 (others run servers here at the same time)."""
    start = random.randrange(20_000, 29_000)
    for port in range(start, start + 1_000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-29999")


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting")
        time.sleep(0.05)


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def private_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server without persistence on a free port, stopped afterwards."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen([*command, "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: redis_ping(port), 10)
        yield port, process
    finally:
        process.terminate()
        process.wait(10)
