"""Redis Cluster routing for the online store: the slot map, a client per node, and grouped calls
(one pipeline per node, a script's keys in one slot) that follow MOVED/ASK and name a node down.
Imports redis when used."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from binascii import crc_hqx
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from parity.errors import ConfigError, OnlineStoreUnavailable
from parity.online.redis_store import redis_module
from parity.redaction import redact
from parity.store_urls import redis_url_problem

SLOTS = 16384
# Redirections (MOVED, ASK, TRYAGAIN, NOSCRIPT) one call follows before giving up: a slot moves
# at most once or twice while one call runs, even during a resharding.
MAX_ROUNDS = 8
# How long writes keep trying while a node is down: Redis's default cluster-node-timeout is 15 s,
# and a replica is promoted a few seconds after that, so 20 s rides out one failover.
FAILOVER_WAIT_SECONDS = 20.0
# Writes' per-command socket timeout: a node silent this long counts as down (then the slot map is
# reloaded and the write retried), rather than blocking a materialization forever.
WRITE_TIMEOUT_SECONDS = 5.0
# The slot map is reloaded after a node fails at most this often (a failover is seen this soon).
REFRESH_SECONDS = 0.5


def cluster_urls(connection_string: str) -> list[str]:
    """The node URLs of `online.connection_string` for a cluster: one or more, comma-separated,
    each `redis://[user[:password]@]host[:port]` (or rediss://); ConfigError otherwise."""
    urls = [part.strip() for part in connection_string.split(",") if part.strip()]
    if not urls:
        raise ConfigError("online.connection_string: name at least one Redis Cluster node URL")
    for url in urls:
        problem = redis_url_problem(url)
        if problem is None and urlsplit(url).scheme not in ("redis", "rediss"):
            problem = f"{redact(url)!r}: a cluster node is reached over TCP (redis:// or rediss://)"
        if problem is None and urlsplit(url).path.strip("/") not in ("", "0"):
            problem = f"{redact(url)!r}: Redis Cluster has only database 0; remove '/<db>'"
        if problem is not None:
            raise ConfigError(f"online.connection_string: {problem}")
    return urls


def _node_options(url: str) -> dict[str, Any]:
    """What every node connection takes from the first URL: credentials, TLS, options."""
    options = dict(redis_module().connection.parse_url(url))
    for name in ("host", "port", "db", "path", "connection_class"):
        options.pop(name, None)
    if urlsplit(url).scheme == "rediss":
        options["ssl"] = True
    return options


def cluster_client(connection_string: str, **options: Any) -> Any:
    """A redis-py RedisCluster of the connection string's nodes (stream workers and single-key
    commands use it: it follows MOVED/ASK itself). Connects on first use."""
    from redis.cluster import ClusterNode, RedisCluster

    urls = cluster_urls(connection_string)
    nodes = [ClusterNode(urlsplit(u).hostname, urlsplit(u).port or 6379) for u in urls]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, **_node_options(urls[0]), **options)


@dataclass
class Call:
    """One command for the slot its keys share: a script (with its body, for NOSCRIPT) or not."""

    slot: int
    args: tuple[Any, ...]
    script: str | None = None


def script_call(slot: int, body: str, keys: Sequence[Any], args: Sequence[Any]) -> Call:
    sha = _sha(body)
    return Call(slot, ("EVALSHA", sha, len(keys), *keys, *args), body)


_SHAS: dict[str, str] = {}


def _sha(body: str) -> str:
    sha = _SHAS.get(body)
    if sha is None:
        sha = _SHAS[body] = hashlib.sha1(body.encode()).hexdigest()
    return sha


class NodeDown(Exception):
    """A node failed (connection or timeout) during a grouped call."""

    def __init__(self, node: str, error: BaseException, batch: _Batch) -> None:
        super().__init__(f"{node}: {type(error).__name__}: {error}")
        self.node, self.error, self.batch = node, error, batch


@dataclass
class _Batch:
    """One grouped call's progress: the calls still to send, and where each goes next."""

    calls: Sequence[Call]
    owner: Callable[[int], str | None]
    results: list[Any] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    asking: dict[int, str] = field(default_factory=dict)
    moved: bool = False
    load: dict[str, set[str]] = field(default_factory=dict)  # node -> script bodies to load
    last: str = ""  # the last redirection or refusal, for the message when they never end
    rounds: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.calls)
        self.pending = list(range(len(self.calls)))

    def targets(self) -> dict[str, list[int]]:
        by_node: dict[str, list[int]] = {}
        for index in self.pending:
            node = self.asking.get(index) or self.owner(self.calls[index].slot)
            if node is None:
                raise LookupError(self.calls[index].slot)
            by_node.setdefault(node, []).append(index)
        self.pending, self.moved, self.load = [], False, {}
        return by_node

    def commands(self, indexes: list[int]) -> list[tuple[Any, ...]]:
        """The node's pipeline: ASKING before a command redirected by ASK."""
        commands: list[tuple[Any, ...]] = []
        for index in indexes:
            if index in self.asking:
                commands.append(("ASKING",))
            commands.append(self.calls[index].args)
        return commands

    def absorb(self, node: str, indexes: list[int], replies: list[Any]) -> None:
        errors = redis_module().exceptions
        answers = iter(replies)
        for index in indexes:
            if self.asking.pop(index, None) is not None:
                next(answers)  # ASKING's OK
            reply = next(answers)
            if not isinstance(reply, errors.ResponseError):
                self.results[index] = reply
                continue
            self.pending.append(index)
            text = self.last = str(reply)
            if text.startswith("MOVED"):
                self.moved = True
            elif text.startswith("ASK"):
                self.asking[index] = text.split()[2]
            elif isinstance(reply, errors.NoScriptError) and self.calls[index].script:
                self.load.setdefault(node, set()).add(self.calls[index].script or "")
            elif not text.startswith(("TRYAGAIN", "CLUSTERDOWN")):
                raise reply


class ClusterRouter:
    """The slot map (from CLUSTER SLOTS) and a client per node; sends grouped calls, one pipeline
    per node, following MOVED/ASK. `timeout` bounds each command; `attempts` of 0 never retries
    a node within redis-py (serving reads), else redis-py retries its own way (writes)."""

    def __init__(self, urls: list[str], *, timeout: float, retries: bool) -> None:
        self.seeds = [f"{urlsplit(u).hostname}:{urlsplit(u).port or 6379}" for u in urls]
        self.options = _node_options(urls[0])
        self.options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        if not retries:
            from redis.backoff import NoBackoff

            self.options["retry"] = redis_module().retry.Retry(NoBackoff(), 0)
        self.owners: list[str | None] = [None] * SLOTS
        self.ranges: dict[str, list[tuple[int, int]]] = {}
        self.clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._refreshed = -REFRESH_SECONDS
        self.redirects = 0  # commands sent again (MOVED, ASK, TRYAGAIN, ...): for tests, metrics

    def client(self, node: str) -> Any:
        found = self.clients.get(node)
        if found is None:
            host, _, port = node.rpartition(":")
            found = redis_module().Redis(host=host, port=int(port), **self.options)
            self.clients[node] = found
        return found

    def owner(self, slot: int) -> str | None:
        if self.owners[slot] is None:
            self.refresh()
        return self.owners[slot]

    def describe(self, node: str) -> str:
        """`Redis Cluster slots 0-5460 (127.0.0.1:7001)`: what a node down takes away."""
        ranges = self.ranges.get(node) or []
        text = ",".join(f"{low}-{high}" if low != high else str(low) for low, high in ranges)
        return f"Redis Cluster slots {text or '(none known)'} ({node})"

    def refresh(self, *, force: bool = False) -> None:
        """Reload the slot map from the first node that answers (at most every REFRESH_SECONDS
        unless forced: a failing node must not turn every call into a reload)."""
        with self._lock:
            if not force and time.monotonic() - self._refreshed < REFRESH_SECONDS:
                return
            self._refreshed = time.monotonic()
            known = [*self.ranges, *(s for s in self.seeds if s not in self.ranges)]
            for node in known:
                try:
                    reply = self.client(node).execute_command("CLUSTER SLOTS")
                except redis_module().exceptions.RedisError:
                    continue
                self._load(reply, node)
                return

    def _load(self, reply: Any, asked: str) -> None:
        owners: list[str | None] = [None] * SLOTS
        ranges: dict[str, list[tuple[int, int]]] = {}
        for (low, high), master in _slot_entries(reply):
            host, port = master[0], master[1]
            host = host.decode() if isinstance(host, bytes) else str(host)
            node = f"{host or asked.rpartition(':')[0]}:{int(port)}"
            ranges.setdefault(node, []).append((int(low), int(high)))
            owners[int(low) : int(high) + 1] = [node] * (int(high) - int(low) + 1)
        for spans in ranges.values():
            spans.sort()
        self.owners, self.ranges = owners, ranges

    def run(
        self,
        calls: Sequence[Call],
        on_node: Callable[[str], Any] | None = None,
        resume: _Batch | None = None,
    ) -> list[Any]:
        """Every call's reply, in order. NodeDown when a node fails, with the batch to `resume`
        (the calls other nodes answered are not sent again). `on_node(node)` is called once per
        node before a call goes to it (the caller's check, e.g. its circuit breaker)."""
        batch = resume or _Batch(calls, self.owner)
        for _ in range(MAX_ROUNDS):
            targets = self._targets(batch)
            if on_node is not None:
                for node in targets:
                    on_node(node)
            failed: NodeDown | None = None
            for node, indexes in targets.items():
                try:
                    replies = self._pipeline(node, batch.commands(indexes))
                except _node_errors() as error:
                    failed = failed or NodeDown(node, error, batch)
                    batch.pending.extend(indexes)
                    continue
                batch.absorb(node, indexes, replies)
            if failed is not None:
                self.refresh()
                raise failed
            if not batch.pending:
                return batch.results
            self._prepare_retry(batch)
        raise _unsettled(batch)

    def _targets(self, batch: _Batch) -> dict[str, list[int]]:
        try:
            return batch.targets()
        except LookupError as missing:
            raise OnlineStoreUnavailable(
                f"Redis Cluster slot {missing.args[0]} is served by no node (cluster down?)"
            ) from None

    def _prepare_retry(self, batch: _Batch) -> None:
        """Before the next round: load missing scripts, reload a moved slot map, or wait a
        little (TRYAGAIN: a slot's keys are half migrated; CLUSTERDOWN: a failover)."""
        self.redirects += len(batch.pending)
        batch.rounds += 1
        for node, bodies in batch.load.items():
            for body in bodies:
                self.client(node).script_load(body)
        if batch.moved:
            self.refresh(force=True)
        elif not batch.load and not batch.asking:
            time.sleep(min(0.025 * 2**batch.rounds, 0.5))

    def _pipeline(self, node: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client(node).pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients = {}


def _unsettled(batch: _Batch) -> OnlineStoreUnavailable:
    return OnlineStoreUnavailable(
        f"Redis Cluster still refused or redirected {len(batch.pending)} commands after "
        f"{MAX_ROUNDS} tries (last: {redact(batch.last)}); a resharding or failover is under "
        "way, or the cluster is down: try again"
    )


def _node_errors() -> tuple[type[BaseException], ...]:
    errors = redis_module().exceptions
    return (errors.ConnectionError, errors.TimeoutError)


def _slot_entries(reply: Any) -> Iterator[tuple[tuple[int, int], Any]]:
    """CLUSTER SLOTS as raw lists: [low, high, [host, port, id], replicas...]."""
    for entry in reply:
        yield (entry[0], entry[1]), entry[2]


class AsyncClusterRouter:
    """The async twin of ClusterRouter for serving reads: its own node clients on one event
    loop, the slot map shared with (and refreshed by) the sync router; nodes in parallel."""

    def __init__(self, router: ClusterRouter) -> None:
        self.router = router
        self.clients: dict[str, Any] = {}

    def client(self, node: str) -> Any:
        found = self.clients.get(node)
        if found is None:
            host, _, port = node.rpartition(":")
            module = redis_module().asyncio
            found = module.Redis(host=host, port=int(port), **self.router.options)
            self.clients[node] = found
        return found

    async def run(
        self, calls: Sequence[Call], on_node: Callable[[str], Any] | None = None
    ) -> list[Any]:
        batch = _Batch(calls, self.router.owner)
        for _ in range(MAX_ROUNDS):
            targets = self.router._targets(batch)
            if on_node is not None:
                for node in targets:
                    on_node(node)
            sent = [self._pipeline(node, batch.commands(idx)) for node, idx in targets.items()]
            outcomes = await asyncio.gather(*sent, return_exceptions=True)
            failed: NodeDown | None = None
            for (node, indexes), outcome in zip(targets.items(), outcomes, strict=True):
                if isinstance(outcome, _node_errors()):
                    failed = failed or NodeDown(node, outcome, batch)
                    batch.pending.extend(indexes)
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    batch.absorb(node, indexes, outcome)
            if failed is not None:
                await asyncio.to_thread(self.router.refresh)
                raise failed
            if not batch.pending:
                return batch.results
            await asyncio.to_thread(self.router._prepare_retry, batch)
        raise _unsettled(batch)

    async def _pipeline(self, node: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client(node).pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.clients = {}


def key_slot(key: bytes) -> int:
    """The hash slot of a key: CRC16 of its hash tag (the first non-empty `{...}`) or of it."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) % SLOTS


def by_slot(keys: Sequence[bytes]) -> dict[int, list[int]]:
    """Indexes of `keys` by slot, in order."""
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key_slot(key), []).append(index)
    return groups


def one_slot_keys(client: Any, **keys: str) -> None:
    """On a Redis Cluster client, refuse keys one script must touch that do not share a hash
    slot (the cluster would answer CROSSSLOT), suggesting names that do; no-op elsewhere."""
    if type(client).__name__ != "RedisCluster":
        return
    first_name, first = next(iter(keys.items()))
    for name, key in keys.items():
        if key_slot(key.encode()) != key_slot(first.encode()):
            from parity.errors import BadRequest

            raise BadRequest(
                f"on a Redis Cluster the {name.replace('_', '-')} stream '{key}' must share a hash "
                f"slot with the {first_name} stream '{first}' (one script writes both): give it "
                f"the same hash tag, e.g. '{{{_tag(first)}}}:{name}'"
            )


def _tag(key: str) -> str:
    """What a key hashes by: its hash tag if it has one, else the whole key."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key
