"""Redis Cluster routing for the online store: the slot map, a client per node, and grouped calls
(one pipeline per node, a script's keys in one slot) that follow MOVED/ASK and name a node down.
Imports redis when used."""

from __future__ import annotations

import asyncio
import threading
import time
from binascii import crc_hqx
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from parity.errors import ConfigError, OnlineStoreUnavailable
from parity.online.cluster_calls import Call, NodeDown, _Batch
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


class ClusterRouter:
    """The slot map (from CLUSTER SLOTS) and a client per node; sends grouped calls, one pipeline
    per node, following MOVED/ASK. `timeout` bounds each command. Grouped calls are never
    retried within redis-py (a failed node is NodeDown at once: the caller decides); with
    `retries` false the node clients' own commands (CLUSTER SLOTS, SCRIPT LOAD) are not either."""

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
        self.refresh_error: str | None = None  # why the last reload of the slot map failed
        self.redirects = 0  # MOVED and ASK replies followed (for tests and metrics)

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
                except redis_module().exceptions.RedisError as error:
                    self.refresh_error = f"{node}: {type(error).__name__}: {redact(str(error))}"
                    continue
                self._load(reply, node)
                self.refresh_error = None
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
            planned = {node: batch.commands(indexes) for node, indexes in targets.items()}
            outcomes = self._send_all({node: plan[0] for node, plan in planned.items()})
            failed: NodeDown | None = None
            for node, outcome in outcomes.items():
                if isinstance(outcome, BaseException):
                    failed = failed or NodeDown(node, outcome, batch)
                    batch.pending.extend(targets[node])
                else:
                    batch.absorb(node, planned[node][1], outcome)
            if failed is not None:
                self.after_failure(failed)
                continue
            if not batch.pending:
                return batch.results
            self._prepare_retry(batch)
        raise _unsettled(batch)

    def after_failure(self, failed: NodeDown) -> None:
        """A node failed: reload the slot map; raise `failed` (naming the slots the node had)
        unless another node serves them now (a failover happened): then the caller goes on."""
        failed.slots = self.describe(failed.node)
        self.refresh()
        if failed.node in self.ranges or failed.batch.rounds >= MAX_ROUNDS - 1:
            raise failed
        failed.batch.rounds += 1

    def _targets(self, batch: _Batch) -> dict[str, list[int]]:
        try:
            return batch.targets()
        except LookupError as missing:
            if self.refresh_error is not None:
                raise OnlineStoreUnavailable(
                    f"no node of the Redis Cluster ({', '.join(self.seeds)}) answered CLUSTER "
                    f"SLOTS; last: {self.refresh_error}"
                ) from None
            raise OnlineStoreUnavailable(
                f"Redis Cluster slot {missing.args[0]} is served by no node (cluster down?)"
            ) from None

    def _prepare_retry(self, batch: _Batch) -> None:
        """Before the next round: load missing scripts, reload a moved slot map, or wait a
        little (TRYAGAIN: a slot's keys are half migrated; CLUSTERDOWN: a failover)."""
        self.redirects += batch.redirected
        batch.redirected = 0
        batch.rounds += 1
        for node, bodies in batch.load.items():
            for body in bodies:
                self.client(node).script_load(body)
        if batch.moved:
            self.refresh(force=True)
        elif not batch.load and not batch.asking:
            time.sleep(min(0.025 * 2**batch.rounds, 0.5))

    def _send_all(
        self, plans: dict[str, list[tuple[Any, ...]]]
    ) -> dict[str, list[Any] | BaseException]:
        """Each node's commands as one pipeline, written to every node before any reply is
        read (the nodes work at the same time); per node its replies (error replies in place)
        or the connection error or timeout that ended it."""
        errors = redis_module().exceptions
        opened: dict[str, tuple[Any, Any]] = {}
        outcomes: dict[str, list[Any] | BaseException] = {}
        try:
            for node, commands in plans.items():
                try:
                    pool = self.client(node).connection_pool
                    opened[node] = (pool, pool.get_connection())
                    opened[node][1].send_packed_command(_packed(opened[node][1], commands))
                except _node_errors() as error:
                    outcomes[node] = error
            for node, (_, connection) in opened.items():
                if node in outcomes:
                    continue
                replies: list[Any] = []
                try:
                    for _ in plans[node]:
                        try:
                            replies.append(connection.read_response())
                        except errors.ResponseError as error:
                            replies.append(error)
                except _node_errors() as error:
                    outcomes[node] = error
                    continue
                outcomes[node] = replies
        finally:
            for node, (pool, connection) in opened.items():
                if not isinstance(outcomes.get(node), list):  # replies left unread: drop it
                    connection.disconnect()
                pool.release(connection)
        return {node: outcomes[node] for node in plans}

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
            planned = [batch.commands(indexes) for indexes in targets.values()]
            sent = [self._pipeline(node, c) for node, (c, _) in zip(targets, planned, strict=True)]
            outcomes = await asyncio.gather(*sent, return_exceptions=True)
            failed: NodeDown | None = None
            for (node, indexes), (_, carried), outcome in zip(
                targets.items(), planned, outcomes, strict=True
            ):
                if isinstance(outcome, _node_errors()):
                    failed = failed or NodeDown(node, outcome, batch)
                    batch.pending.extend(indexes)
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    batch.absorb(node, carried, outcome)
            if failed is not None:
                await asyncio.to_thread(self.router.after_failure, failed)
                continue
            if not batch.pending:
                return batch.results
            await asyncio.to_thread(self.router._prepare_retry, batch)
        raise _unsettled(batch)

    async def _pipeline(self, node: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The node's commands as one pipeline on a pooled connection: replies in order, error
        replies in place (redis.asyncio's own pipeline packs in pure Python: 3x slower here)."""
        errors = redis_module().exceptions
        pool = self.client(node).connection_pool
        connection = await pool.get_connection()
        replies: list[Any] = []
        try:
            await connection.send_packed_command(_packed(connection, commands))
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except errors.ResponseError as error:
                    replies.append(error)
        except BaseException:
            await connection.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            await pool.release(connection)
        return replies

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.clients = {}


def _packed(connection: Any, commands: list[tuple[Any, ...]]) -> Any:
    """RESP bytes of the commands: hiredis's packer where installed, else the connection's."""
    try:
        from hiredis import pack_command
    except ModuleNotFoundError:
        return connection.pack_commands(commands)
    return [b"".join([pack_command(command) for command in commands])]  # one write


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
        start = key.find(b"{")  # key_slot, inlined: this runs once per row written or read
        end = key.find(b"}", start + 1) if start >= 0 else -1
        tag = key[start + 1 : end] if end > start + 1 else key
        slot = crc_hqx(tag, 0) % SLOTS
        group = groups.get(slot)
        if group is None:
            groups[slot] = [index]
        else:
            group.append(index)
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
