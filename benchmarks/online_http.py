"""HTTP helpers for bench_online.py: start a feature server and wait for /health, load it with
wrk (a Lua script POSTs rotating JSON bodies), parse wrk's report. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRK = "wrk"
PATH = "/get-online-features"


class ServerError(RuntimeError):
    """A server did not come up, or answered a request with an error."""


def wrk_path() -> str | None:
    return shutil.which(WRK)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A feature server process in its own session (so stop() ends its workers too)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
            return "\n".join("      " + line for line in text)
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_server(
    name: str,
    command: list[str | Path],
    port: int,
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> Server:
    """Spawn the server and poll GET /health until it answers 200."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(c) for c in command],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    server = Server(name, port, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"{name} exited ({process.returncode}):\n{server.tail()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer,
        ):
            if answer.status == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise ServerError(f"{name}: no answer on /health after {timeout:.0f} s:\n{server.tail()}")


def post(
    url: str, body: dict[str, Any], timeout: float = 30.0, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """POST JSON (with `headers` too, e.g. Authorization); (status, body text) whatever the
    status."""
    request = urllib.request.Request(
        url + PATH,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def bodies(
    refs: list[str], entities: int, ids: tuple[int, int], count: int, seed: int
) -> list[str]:
    """`count` request bodies, each for `entities` random driver ids."""
    rng = random.Random(seed)
    first, size = ids
    return [
        json.dumps(
            {
                "features": refs,
                "entities": {"driver_id": [first + rng.randrange(size) for _ in range(entities)]},
            },
            separators=(",", ":"),
        )
        for _ in range(count)
    ]


def lua_script(path: Path, payloads: list[str], headers: dict[str, str] | None = None) -> Path:
    """A wrk script that POSTs the payloads in turn (each thread from its own offset), with
    `headers` on every request (e.g. Authorization)."""
    items = ",\n".join(f"[==[{p}]==]" for p in payloads)
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    path.write_text(
        f"local bodies = {{\n{items}\n}}\n"
        "local n = #bodies\n"
        "local i = 0\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"{extra}"
        "function setup(thread)\n"
        "  thread:set('offset', math.random(n))\n"
        "end\n"
        "function init(args)\n"
        "  i = offset or 0\n"
        "end\n"
        "function request()\n"
        "  i = i % n + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[i])\n"
        "end\n"
    )
    return path


@dataclass
class WrkRun:
    rps: float
    latency_ms: dict[str, float]  # "50", "75", "90", "99" -> ms
    requests: int
    errors: int  # non-2xx responses plus socket errors
    text: str = field(repr=False, default="")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(text: str) -> WrkRun:
    latency = {
        pct: _ms(value, unit)
        for pct, value, unit in re.findall(
            r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M
        )
    }
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s+(\d+) requests in", text, re.M)
    if rps is None or total is None or len(latency) != 4:
        raise ServerError(f"could not read wrk's report:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if sockets:
        errors += sum(int(g) for g in sockets.groups())
    return WrkRun(float(rps.group(1)), latency, int(total.group(1)), errors, text)


def run_wrk(
    url: str, script: Path, *, seconds: float, threads: int = 2, connections: int = 8
) -> WrkRun:
    command = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url + PATH,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise ServerError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return parse_wrk(done.stdout)
