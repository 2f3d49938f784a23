"""A redis-server of a test's own, on a port from the test's own range, that the test may stop
(SIGSTOP) or kill; the shared Redis on 6379 is never touched. With CI=true a missing
redis-server or no free port fails the run instead of skipping."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from tests.conftest import _unreachable


def free_port(ports: Iterable[int]) -> int:
    """The first port of `ports` nothing listens on (bound as redis-server binds it)."""
    ports = list(ports)
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    _unreachable("a private redis-server", OSError(f"no free port in {ports}"))
    raise AssertionError("unreachable")  # _unreachable skips or fails


def wait_for_pong(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def private_redis_server(
    ports: Iterable[int], *options: str
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """(port, process) of a fresh redis-server that keeps nothing on disk; stopped at the end,
    resumed first if the test left it SIGSTOPped."""
    if shutil.which("redis-server") is None:
        _unreachable("redis-server", FileNotFoundError("not installed"))
    port = free_port(ports)
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    process = subprocess.Popen(
        [*command, "--appendonly", "no", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_pong(port)
        yield port, process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
        process.wait(10)
