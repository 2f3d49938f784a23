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
# Keys one script call carries to a node (many slots' calls together): as the single store's
# batch, so one call blocks a node no longer than a standalone write of a batch does.
TOGETHER_KEYS = 500
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
    """One command for the slot its keys share. A script call keeps its body (to load it on
    NOSCRIPT), keys and arguments: calls of one script bound for one node travel together."""

    slot: int
    command: tuple[Any, ...] = ()  # a plain command; a script call's is built when sent alone
    script: str | None = None
    keys: Sequence[Any] = ()
    argv: Sequence[Any] = ()
    writes: bool = True

    @property
    def args(self) -> tuple[Any, ...]:
        if self.script is None:
            return self.command
        return ("EVALSHA", _sha(self.script), len(self.keys), *self.keys, *self.argv)


def script_call(
    slot: int, body: str, keys: Sequence[Any], args: Sequence[Any], *, writes: bool = True
) -> Call:
    return Call(slot, (), body, keys, args, writes)


_SHAS: dict[str, str] = {}


def _sha(body: str) -> str:
    sha = _SHAS.get(body)
    if sha is None:
        sha = _SHAS[body] = hashlib.sha1(body.encode()).hexdigest()
    return sha


# Many slots' calls of one script on one node become one call of this wrapper around the shared
# script (run once per slot's part, replies in a list): a script's declared keys must share a slot,
# so the parts' keys go in ARGV (nparts, then per part: nkeys, nargs, keys, args), which Redis 7
# allows with `allow-cross-slot-keys` as long as every key is the node's own. A key that is not
# (its slot moved or is migrating) fails the call: its parts are then sent one per slot, with
# declared keys, to be redirected. A writing wrapper first touches every key, so that it fails
# before it writes anything.
_WRAPPER = """#!lua flags={flags}
local function part(KEYS, ARGV)
{body}
end
local parts, a = {{}}, 2
for i = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local keys, args = {{}}, {{}}
  for j = 1, nk do keys[j] = ARGV[a + 1 + j] end
  for j = 1, na do args[j] = ARGV[a + 1 + nk + j] end
  parts[i] = {{keys, args}}
  a = a + 2 + nk + na
end
{check}
local out = {{}}
for i = 1, #parts do out[i] = part(parts[i][1], parts[i][2]) end
return out
"""
_CHECK = "for i = 1, #parts do for _, k in ipairs(parts[i][1]) do redis.call('EXISTS', k) end end"
_WRAPPED: dict[tuple[str, bool], str] = {}


def wrapped(body: str, writes: bool) -> str:
    """The wrapper script carrying several slots' calls of `body` to one node."""
    found = _WRAPPED.get((body, writes))
    if found is None:
        flags = "allow-cross-slot-keys" if writes else "no-writes,allow-cross-slot-keys"
        text = _WRAPPER.format(flags=flags, body=body, check=_CHECK if writes else "")
        found = _WRAPPED[(body, writes)] = text
    return found


def _together(calls: Sequence[Call]) -> tuple[Any, ...]:
    """One EVALSHA of the wrapper for calls of one script (no declared keys)."""
    args: list[Any] = [len(calls)]
    for call in calls:
        args.extend((len(call.keys), len(call.argv), *call.keys, *call.argv))
    body = wrapped(calls[0].script or "", calls[0].writes)
    return ("EVALSHA", _sha(body), 0, *args)


class NodeDown(Exception):
    """A node failed (connection or timeout) during a grouped call."""

    def __init__(self, node: str, error: BaseException, batch: _Batch) -> None:
        super().__init__(f"{node}: {type(error).__name__}: {error}")
        self.node, self.error, self.batch = node, error, batch
        self.slots = node  # what the node served, as ClusterRouter.describe says it


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
    alone: set[int] = field(default_factory=set)  # calls sent one per slot from now on
    redirected: int = 0  # MOVED and ASK replies met
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

    def commands(self, indexes: list[int]) -> tuple[list[tuple[Any, ...]], list[list[int]]]:
        """The node's pipeline, and the calls each command carries: ASKING (none) before a
        call redirected by ASK, calls of one script together unless they failed so before."""
        commands: list[tuple[Any, ...]] = []
        carried: list[list[int]] = []
        scripts: dict[tuple[str, bool], list[int]] = {}
        for index in indexes:
            call = self.calls[index]
            if index in self.asking:
                commands.append(("ASKING",))
                carried.append([])
            elif call.script is not None and index not in self.alone:
                scripts.setdefault((call.script, call.writes), []).append(index)
                continue
            commands.append(call.args)
            carried.append([index])
        for members in scripts.values():
            for part in self._chunks(members):
                many = len(part) > 1
                commands.append(_together([self.calls[i] for i in part]) if many else
                                self.calls[part[0]].args)  # fmt: skip
                carried.append(part)
        return commands, carried

    def _chunks(self, members: list[int]) -> Iterator[list[int]]:
        """Calls of one script in runs of about TOGETHER_KEYS keys: one script call blocks its
        node while it runs, so a materialization's batch must not hold up serving reads."""
        part: list[int] = []
        keys = 0
        for index in members:
            part.append(index)
            keys += len(self.calls[index].keys)
            if keys >= TOGETHER_KEYS:
                yield part
                part, keys = [], 0
        if part:
            yield part

    def absorb(self, node: str, carried: list[list[int]], replies: list[Any]) -> None:
        for members, reply in zip(carried, replies, strict=True):
            if len(members) > 1:
                self._absorb_together(node, members, reply)
            elif members:
                self._absorb_one(node, members[0], reply)

    def _absorb_together(self, node: str, members: list[int], reply: Any) -> None:
        if not isinstance(reply, redis_module().exceptions.ResponseError):
            for index, answer in zip(members, reply, strict=True):
                self.results[index] = answer
            return
        self.pending.extend(members)
        first = self.calls[members[0]]
        if isinstance(reply, redis_module().exceptions.NoScriptError):
            self.load.setdefault(node, set()).add(wrapped(first.script or "", first.writes))
        else:  # a key not the node's own, or an error: one call per slot shows which
            self.alone.update(members)

    def _absorb_one(self, node: str, index: int, reply: Any) -> None:
        errors = redis_module().exceptions
        self.asking.pop(index, None)
        if not isinstance(reply, errors.ResponseError):
            self.results[index] = reply
            return
        self.pending.append(index)
        self.last = f"{type(reply).__name__}: {reply}"
        if isinstance(reply, errors.MovedError):  # (a subclass of AskError)
            self.moved = True
            self.redirected += 1
        elif isinstance(reply, errors.AskError):
            self.asking[index] = f"{reply.host}:{reply.port}"
            self.redirected += 1
        elif isinstance(reply, errors.NoScriptError) and self.calls[index].script:
            self.load.setdefault(node, set()).add(self.calls[index].script or "")
        elif not isinstance(reply, errors.TryAgainError | errors.ClusterDownError):
            raise reply


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
