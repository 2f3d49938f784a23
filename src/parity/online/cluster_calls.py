"""Calls to a Redis Cluster's nodes: one command per slot (`Call`), many slots' script calls to one
node carried together by a wrapper around the shared script, and a grouped call's progress
through redirections (`_Batch`). Imports redis when used."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from parity.online.redis_store import redis_module

# Keys one script call carries to a node (many slots' calls together): as the single store's
# batch, so one call blocks a node no longer than a standalone write of a batch does.
TOGETHER_KEYS = 500


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
