"""Per-client limits: a token bucket and an in-flight cap per principal (429 beyond them), on an
injected clock, keyed by `Principal.key`, with bounded state. Pure logic: no I/O, no threads;
safe to call from several threads (one lock, held for a few attribute updates)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from parity.errors import RateLimited
from parity.repo.config import ClientLimitsConfig
from parity.serving.auth.scopes import Principal

# At most this many clients' state is kept. Past it, the least recently seen client that has no
# request in flight is forgotten (it starts again with a full bucket): 10,000 entries are ~2 MB,
# and more distinct clients than that active within one refill time is an attack, not a workload.
MAX_CLIENTS = 10_000
# Every this many seconds (of the injected clock) entries that are idle (nothing in flight, the
# bucket refilled to full) are dropped: forgetting them changes nothing a client can observe.
SWEEP_SECONDS = 60.0
IN_FLIGHT_RETRY_SECONDS = 1.0  # a slot frees when a request finishes: no way to know when
_T = TypeVar("_T")


@dataclass(frozen=True)
class Limits:
    """The limits in effect for one principal: `rate_per_second` (None: no rate limit) refilling
    a bucket of `burst` requests, and at most `max_in_flight` requests at once."""

    rate_per_second: float | None
    burst: int
    max_in_flight: int


def default_in_flight(server_max_in_flight: int) -> int:
    """Half the server's max in flight, at least 1: one client can never hold every slot, so
    the others always find room while it is at its cap."""
    return max(1, server_max_in_flight // 2)


def default_burst(rate_per_second: float) -> int:
    """One second's worth of the rate, at least 1: a client may send a second's requests at
    once after a pause, and never more than that above its rate."""
    return max(1, math.ceil(rate_per_second))


def limits_for(principal: Principal, defaults: ClientLimitsConfig, server_in_flight: int) -> Limits:
    """The principal's own values (from its token) win, field by field, over `auth.limits`;
    a burst with no rate in effect has nothing to bound."""
    rate = _first(principal.rate_per_second, defaults.rate_per_second)
    burst = _first(principal.burst, defaults.burst)
    if burst is None:
        burst = default_burst(rate) if rate is not None else 1
    in_flight = _first(principal.max_in_flight, defaults.max_in_flight)
    return Limits(rate, burst, in_flight or default_in_flight(server_in_flight))


def _first(own: _T | None, default: _T | None) -> _T | None:
    return own if own is not None else default


class _Client:
    """One client's state: its bucket (`tokens` as of `updated`), requests in flight, and the
    limits in effect, resolved once per Principal object (the gate caches those)."""

    __slots__ = ("in_flight", "limits", "principal", "tokens", "updated")

    def __init__(self, principal: Principal, limits: Limits, now: float) -> None:
        self.principal = principal
        self.limits = limits
        self.tokens = float(limits.burst)
        self.updated = now
        self.in_flight = 0

    def refill(self, now: float) -> None:
        rate = self.limits.rate_per_second
        if rate is not None and now > self.updated:
            self.tokens = min(float(self.limits.burst), self.tokens + (now - self.updated) * rate)
        self.updated = max(self.updated, now)

    def idle(self, now: float) -> bool:
        """Nothing in flight and a full bucket: forgetting it changes nothing observable."""
        if self.in_flight:
            return False
        rate = self.limits.rate_per_second
        if rate is None:
            return True
        return self.tokens + max(0.0, now - self.updated) * rate >= self.limits.burst


class ClientLimits:
    """`enter(principal)` before a request (RateLimited when over a limit), `leave(principal)`
    after every admitted one. A rejected request takes neither a token nor a slot."""

    def __init__(
        self,
        defaults: ClientLimitsConfig,
        server_max_in_flight: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.defaults = defaults
        self.server_max_in_flight = server_max_in_flight
        self._clock = clock
        self._max_clients = max(1, max_clients)
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()
        self._swept = clock()

    def limits(self, principal: Principal) -> Limits:
        return limits_for(principal, self.defaults, self.server_max_in_flight)

    def enter(self, principal: Principal) -> None:
        with self._lock:
            now = self._clock()
            client = self._client(principal, now)
            limits = client.limits
            if client.in_flight >= limits.max_in_flight:
                raise RateLimited(_in_flight_message(principal, limits), IN_FLIGHT_RETRY_SECONDS)
            if limits.rate_per_second is not None:
                client.refill(now)
                if client.tokens < 1.0:
                    wait = (1.0 - client.tokens) / limits.rate_per_second
                    raise RateLimited(_rate_message(principal, limits, wait), wait)
                client.tokens -= 1.0
            client.in_flight += 1

    def leave(self, principal: Principal) -> None:
        with self._lock:
            client = self._clients.get(principal.key)
            if client is not None and client.in_flight > 0:
                client.in_flight -= 1

    def in_flight(self, principal: Principal) -> int:
        with self._lock:
            client = self._clients.get(principal.key)
            return 0 if client is None else client.in_flight

    def __len__(self) -> int:
        """How many clients' state is kept (for tests and metrics)."""
        return len(self._clients)

    def _client(self, principal: Principal, now: float) -> _Client:
        client = self._clients.get(principal.key)
        if client is not None:
            self._clients.move_to_end(principal.key)
            if client.principal is not principal:  # a new Principal object: resolve again
                client.refill(now)
                client.principal, client.limits = principal, self.limits(principal)
                client.tokens = min(client.tokens, float(client.limits.burst))
            return client
        if now - self._swept >= SWEEP_SECONDS:
            self._sweep(now)
        if len(self._clients) >= self._max_clients:
            self._evict()
        client = _Client(principal, self.limits(principal), now)
        self._clients[principal.key] = client
        return client

    def _sweep(self, now: float) -> None:
        self._swept = now
        for key in [key for key, client in self._clients.items() if client.idle(now)]:
            del self._clients[key]

    def _evict(self) -> None:
        """Forget the least recently seen client with nothing in flight (it starts again with a
        full bucket: the price of a bound on memory when more clients than that are active)."""
        for key, client in self._clients.items():
            if client.in_flight == 0:
                del self._clients[key]
                return


def _who(principal: Principal) -> str:
    kind = {"token": "token", "jwt": "JWT subject"}.get(principal.kind, principal.kind)
    return f"{kind} '{principal.name}'"


def _how_to_raise(principal: Principal, option: str, setting: str) -> str:
    if principal.kind == "token":
        return (
            f"create a token with a higher limit (parity auth token create {option} ...), or raise "
            f"auth.limits.{setting} in parity.yaml"
        )
    return f"raise auth.limits.{setting} in parity.yaml"


def _rate_message(principal: Principal, limits: Limits, wait: float) -> str:
    return (
        f"{_who(principal)} is over its rate limit of {limits.rate_per_second:g} requests/s "
        f"(burst {limits.burst}); retry in {wait:.3f} s, or "
        f"{_how_to_raise(principal, '--rate/--burst', 'rate_per_second and burst')}"
    )


def _in_flight_message(principal: Principal, limits: Limits) -> str:
    return (
        f"{_who(principal)} already has {limits.max_in_flight} requests in flight, its limit; "
        f"retry when one finishes, or "
        f"{_how_to_raise(principal, '--max-in-flight', 'max_in_flight')}"
    )
