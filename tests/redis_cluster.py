"""A local Redis Cluster of a test's own: six redis-server processes (3 masters, 3 replicas) on
free ports of a range, created with `redis-cli --cluster create`, stopped afterwards. Other tests
(and other checkouts) run clusters at the same time, so ports are probed, never fixed."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import _unreachable

# Node ports come from here; each node also binds its cluster bus on port + 10000.
PORTS = range(21000, 23000)
BUS_OFFSET = 10000
# A short node timeout so failover tests are quick: a replica takes over about this long after
# its master stops answering.
NODE_TIMEOUT_MS = 1500


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int, taken: set[int]) -> list[int]:
    """`count` ports of PORTS whose bus ports are free too, from a random place in the range so
    that concurrent clusters rarely race for the same ports."""
    ports = list(PORTS)
    start = random.randrange(len(ports))
    found: list[int] = []
    for port in ports[start:] + ports[:start]:
        if port in taken or port + BUS_OFFSET in taken:
            continue
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            found.append(port)
            if len(found) == count:
                return found
    _unreachable("a local Redis Cluster", OSError(f"no {count} free ports in {PORTS}"))
    raise AssertionError("unreachable")  # _unreachable skips or fails


def _command(port: int, *args: str, timeout: float = 5) -> str:
    """One redis-cli command against a node; its reply as text ('' when the node is down)."""
    try:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout if done.returncode == 0 else ""


@dataclass
class LocalRedisCluster:
    """The running cluster: node ports, URLs, and helpers to stop, freeze or inspect nodes."""

    ports: list[int]
    directory: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        """A connection string naming every node (comma-separated), as parity.yaml takes it."""
        return ",".join(self.urls)

    def command(self, port: int, *args: str, timeout: float = 5) -> str:
        return _command(port, *args, timeout=timeout)

    def nodes(self) -> list[dict[str, str | list[str]]]:
        """CLUSTER NODES as seen from a live node: id, port, flags, master id, slot ranges."""
        for port in self.live_ports():
            text = _command(port, "cluster", "nodes")
            if text:
                return [_parse_node(line) for line in text.splitlines() if line.strip()]
        raise RuntimeError("no cluster node answers")

    def masters(self) -> list[int]:
        """Ports of the nodes that are masters now (and not failed), by their first slot."""
        masters = [
            node
            for node in self.nodes()
            if "master" in node["flags"] and "fail" not in node["flags"] and node["slots"]
        ]
        masters.sort(key=lambda node: int(str(node["slots"][0]).split("-")[0]))
        return [int(str(node["port"])) for node in masters]

    def replicas(self) -> list[int]:
        return [int(str(n["port"])) for n in self.nodes() if "slave" in n["flags"]]

    def slots_of(self, port: int) -> list[tuple[int, int]]:
        """The slot ranges a node serves (from CLUSTER NODES)."""
        for node in self.nodes():
            if int(str(node["port"])) == port:
                return [_slot_range(text) for text in node["slots"]]
        return []

    def master_of_slot(self, slot: int) -> int:
        for port in self.masters():
            if any(low <= slot <= high for low, high in self.slots_of(port)):
                return port
        raise LookupError(f"no master serves slot {slot}")

    def live_ports(self) -> list[int]:
        return [port for port in self.ports if port not in self.stopped]

    def kill(self, port: int) -> None:
        """SIGKILL a node: it is gone for good (its replica may take over)."""
        process = self.processes[port]
        process.kill()
        process.wait(10)
        self.stopped.add(port)

    def pause(self, port: int) -> None:
        """SIGSTOP a node: it holds connections but answers nothing until `resume`."""
        os.kill(self.processes[port].pid, signal.SIGSTOP)
        self.stopped.add(port)

    def resume(self, port: int) -> None:
        os.kill(self.processes[port].pid, signal.SIGCONT)
        self.stopped.discard(port)

    def wait_ok(self, seconds: float = 30) -> None:
        """Until every live node reports cluster_state:ok with all 16384 slots assigned."""
        deadline = time.monotonic() + seconds
        while True:
            infos = [_command(port, "cluster", "info") for port in self.live_ports()]
            if all("cluster_state:ok" in i and "cluster_slots_ok:16384" in i for i in infos):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster is not ok after {seconds} s: {infos}")
            time.sleep(0.1)

    def wait_failover(self, old_master: int, seconds: float = 30) -> int:
        """Until another node serves `old_master`'s first slot; answers its port."""
        deadline = time.monotonic() + seconds
        slot = self.slots_of(old_master)[0][0]  # a failed master is listed until replaced
        while True:
            try:
                port = self.master_of_slot(slot)
                if port != old_master:
                    return port
            except (RuntimeError, LookupError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no replica took over from {old_master} in {seconds} s")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _parse_node(line: str) -> dict[str, str | list[str]]:
    parts = line.split()
    address = parts[1].split("@")[0]
    return {
        "id": parts[0],
        "port": address.rsplit(":", 1)[1],
        "flags": parts[2].split(","),
        "master": parts[3],
        "slots": [part for part in parts[8:] if not part.startswith("[")],
    }


def _slot_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _start_node(
    port: int, directory: Path, node_timeout_ms: int, options: Sequence[str]
) -> subprocess.Popen[bytes]:
    node_dir = directory / str(port)
    node_dir.mkdir()
    return subprocess.Popen(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(node_dir),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--save", "",
            "--appendonly", "no",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_ping(port: int, process: subprocess.Popen[bytes], seconds: float = 10) -> bool:
    """True once the node answers PONG; False if it exited (its port was taken meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def _start_nodes(
    cluster: LocalRedisCluster, count: int, node_timeout_ms: int, options: Sequence[str]
) -> None:
    """Start `count` nodes, probing again for any whose port another process took first."""
    tried: set[int] = set()
    for _attempt in range(10):
        missing = count - len(cluster.ports)
        if missing == 0:
            return
        for port in _free_ports(missing, tried):
            tried.update((port, port + BUS_OFFSET))
            process = _start_node(port, cluster.directory, node_timeout_ms, options)
            if _wait_ping(port, process):
                cluster.ports.append(port)
                cluster.processes[port] = process
            else:
                process.kill()
                process.wait(10)
    raise OSError(f"could not start {count} cluster nodes on free ports of {PORTS}")


@contextmanager
def local_redis_cluster(
    masters: int = 3,
    replicas: int = 1,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
    options: Sequence[str] = (),
) -> Iterator[LocalRedisCluster]:
    """A fresh cluster of `masters` masters with `replicas` replicas each (six nodes by
    default), keeping nothing on disk; every process stopped at the end. `options` go to every
    redis-server (e.g. `--cluster-require-full-coverage no`). With CI=true a missing
    redis-server or redis-cli fails the test instead of skipping."""
    for program in ("redis-server", "redis-cli"):
        if shutil.which(program) is None:
            _unreachable(program, FileNotFoundError("not installed"))
    directory = Path(tempfile.mkdtemp(prefix="parity-redis-cluster-"))
    cluster = LocalRedisCluster(ports=[], directory=directory)
    try:
        _start_nodes(cluster, masters * (1 + replicas), node_timeout_ms, options)
        addresses = [f"127.0.0.1:{port}" for port in cluster.ports]
        created = subprocess.run(
            [
                *("redis-cli", "--cluster", "create", *addresses),
                *("--cluster-replicas", str(replicas), "--cluster-yes"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
        cluster.wait_ok()
        _wait_replicas(cluster, masters * replicas)
        yield cluster
    finally:
        cluster.stop()


def _wait_replicas(cluster: LocalRedisCluster, count: int, seconds: float = 30) -> None:
    """Until every replica has finished its first sync (so a failover has a replica to use)."""
    deadline = time.monotonic() + seconds
    while True:
        synced = 0
        for port in cluster.replicas():
            info = _command(port, "info", "replication")
            if "master_link_status:up" in info:
                synced += 1
        if synced >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {synced} of {count} replicas synced in {seconds} s")
        time.sleep(0.1)
