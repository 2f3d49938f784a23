"""Per-client limits on an injected clock: hand-worked token-bucket arithmetic, in-flight caps,
per-token overrides over `auth.limits`, bounded state, and the bucket's bound as a property."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.errors import RateLimited
from parity.repo.config import ClientLimitsConfig
from parity.serving.auth.limits import SWEEP_SECONDS, ClientLimits, Limits
from parity.serving.auth.scopes import Grant, Principal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token(name: str = "ci-bot", kind: str = "token", **limits: float | int | None) -> Principal:
    return Principal(name, kind, (Grant("admin"),), key=f"{kind}:{name}", **limits)  # type: ignore[arg-type]


def make(
    clock: FakeClock, server_max_in_flight: int = 64, **defaults: float | int | None
) -> ClientLimits:
    return ClientLimits(ClientLimitsConfig(**defaults), server_max_in_flight, clock)  # type: ignore[arg-type]


def admit(limits: ClientLimits, principal: Principal) -> float | None:
    """None when admitted (and the request finishes at once), else the 429's retry-after."""
    try:
        limits.enter(principal)
    except RateLimited as refused:
        return refused.retry_after_seconds
    limits.leave(principal)
    return None


def test_bucket_admits_burst_then_refills_at_rate_worked_by_hand() -> None:
    clock = FakeClock()
    limits = make(clock)
    bot = token(rate_per_second=2.0, burst=3)
    # t=0: full bucket of 3; the 4th waits (1 - 0) / 2 = 0.5 s
    assert [admit(limits, bot) for _ in range(4)] == [None, None, None, 0.5]
    clock.now += 0.25  # 0.25 s x 2/s = 0.5 token: still short by 0.5 -> 0.25 s
    assert admit(limits, bot) == 0.25
    clock.now += 0.25  # 1.0 token
    assert [admit(limits, bot), admit(limits, bot)] == [None, 0.5]
    clock.now += 100.0  # refill stops at the burst
    assert [admit(limits, bot) for _ in range(4)] == [None, None, None, 0.5]


def test_client_at_exactly_its_rate_is_never_refused() -> None:
    clock = FakeClock()
    limits = make(clock)
    bot = token(rate_per_second=4.0, burst=1)
    results = []
    for _ in range(200):
        results.append(admit(limits, bot))
        clock.now += 0.25
    assert results == [None] * 200


def test_default_burst_is_one_seconds_worth_of_the_rate() -> None:
    clock = FakeClock()
    for rate, burst in [(2.5, 3), (10.0, 10), (0.2, 1), (1.0, 1)]:
        limits = make(clock, rate_per_second=rate)
        bot = token(f"bot-{rate}")
        admitted = sum(admit(limits, bot) is None for _ in range(20))
        assert admitted == burst, rate


def test_defaults_have_no_rate_limit_and_half_the_servers_in_flight() -> None:
    clock = FakeClock()
    limits = make(clock, server_max_in_flight=9)
    bot = token()
    assert [admit(limits, bot) for _ in range(1000)] == [None] * 1000
    assert limits.limits(bot) == Limits(rate_per_second=None, burst=1, max_in_flight=4)
    assert make(clock, server_max_in_flight=1).limits(bot).max_in_flight == 1


def test_in_flight_cap_refuses_with_retry_after_one_second_until_a_request_leaves() -> None:
    clock = FakeClock()
    limits = make(clock, server_max_in_flight=8)  # default cap: 4
    bot = token()
    for _ in range(4):
        limits.enter(bot)
    with pytest.raises(RateLimited) as refused:
        limits.enter(bot)
    assert refused.value.retry_after_seconds == 1.0
    message = str(refused.value)
    assert "token 'ci-bot'" in message and "4 requests in flight" in message
    assert "parity auth token create --max-in-flight" in message
    assert "auth.limits.max_in_flight" in message
    assert limits.in_flight(bot) == 4
    limits.leave(bot)
    limits.enter(bot)
    assert limits.in_flight(bot) == 4
    for _ in range(4):
        limits.leave(bot)
    assert limits.in_flight(bot) == 0
    limits.leave(bot)  # a stray leave never goes below zero
    assert limits.in_flight(bot) == 0


def test_refused_request_takes_neither_a_token_nor_a_slot() -> None:
    clock = FakeClock()
    limits = make(clock)
    bot = token(rate_per_second=1.0, burst=5, max_in_flight=2)
    limits.enter(bot)
    limits.enter(bot)
    refused = [admit(limits, bot) for _ in range(10)]
    assert refused == [1.0] * 10  # in-flight refusals: 1 s each, no tokens spent
    limits.leave(bot)
    limits.leave(bot)
    # 5 - 2 = 3 tokens remain at the same instant
    assert [admit(limits, bot) for _ in range(4)] == [None, None, None, 1.0]


def test_rate_refusal_names_the_token_the_limit_and_how_to_raise_it() -> None:
    clock = FakeClock()
    limits = make(clock)
    bot = token(rate_per_second=2.0, burst=1)
    limits.enter(bot)
    with pytest.raises(RateLimited) as refused:
        limits.enter(bot)
    message = str(refused.value)
    assert "token 'ci-bot'" in message
    assert "rate limit of 2 requests/s (burst 1)" in message
    assert "retry in 0.500 s" in message
    assert "parity auth token create --rate/--burst" in message
    assert "auth.limits.rate_per_second" in message
    assert refused.value.code == "rate_limited"


def test_jwt_refusal_points_at_parity_yaml_only() -> None:
    clock = FakeClock()
    limits = make(clock, rate_per_second=1.0)
    subject = token("alice@example.com", kind="jwt")
    limits.enter(subject)
    with pytest.raises(RateLimited) as refused:
        limits.enter(subject)
    message = str(refused.value)
    assert "JWT subject 'alice@example.com'" in message
    assert "auth.limits.rate_per_second" in message
    assert "parity auth token create" not in message


def test_tokens_own_limits_win_field_by_field_over_auth_limits() -> None:
    clock = FakeClock()
    limits = make(clock, rate_per_second=1.0, burst=2, max_in_flight=3)
    assert limits.limits(token()) == Limits(1.0, 2, 3)
    assert limits.limits(token(rate_per_second=50.0)) == Limits(50.0, 2, 3)
    assert limits.limits(token(burst=7)) == Limits(1.0, 7, 3)
    assert limits.limits(token(max_in_flight=1)) == Limits(1.0, 2, 1)
    own = token(rate_per_second=4.0, burst=6, max_in_flight=10)
    assert limits.limits(own) == Limits(4.0, 6, 10)
    # and the override is what is enforced: 6 at once, not the default 2
    assert sum(admit(limits, own) is None for _ in range(10)) == 6


def test_default_burst_follows_the_rate_in_effect() -> None:
    limits = make(FakeClock())  # no defaults at all
    assert limits.limits(token(rate_per_second=7.5)) == Limits(7.5, 8, 32)
    assert limits.limits(token(burst=5)) == Limits(None, 5, 32)  # a burst with no rate: no limit


def test_each_principal_has_its_own_bucket_and_slots() -> None:
    clock = FakeClock()
    limits = make(clock, rate_per_second=1.0, burst=2, max_in_flight=1)
    greedy, polite = token("greedy"), token("polite")
    assert [admit(limits, greedy) for _ in range(5)] == [None, None, 1.0, 1.0, 1.0]
    assert [admit(limits, polite) for _ in range(2)] == [None, None]
    clock.now += 1.0  # one token each
    limits.enter(greedy)
    limits.enter(polite)  # greedy's slot is its own: polite's is free
    assert limits.in_flight(polite) == 1 and limits.in_flight(greedy) == 1


def test_a_new_principal_object_for_the_same_key_shares_the_bucket() -> None:
    """The gate's cache hands out a fresh Principal after `cache_seconds`: same key, same state."""
    clock = FakeClock()
    limits = make(clock)
    first = token(rate_per_second=1.0, burst=3)
    again = token(rate_per_second=1.0, burst=3)
    assert first is not again
    assert [admit(limits, first), admit(limits, first)] == [None, None]
    assert [admit(limits, again), admit(limits, again)] == [None, 1.0]


def test_state_is_bounded_by_max_clients() -> None:
    clock = FakeClock()
    limits = ClientLimits(ClientLimitsConfig(rate_per_second=1.0), 64, clock, max_clients=100)
    for i in range(1000):
        assert admit(limits, token(f"sub-{i}", kind="jwt")) is None
    assert len(limits) == 100


def test_idle_clients_are_swept_and_busy_ones_kept() -> None:
    clock = FakeClock()
    limits = make(clock, rate_per_second=0.001, burst=1)  # refills a token in 1000 s
    busy = token("busy")
    limits.enter(busy)  # in flight across the sweep
    for i in range(50):
        admit(limits, token(f"idle-{i}"))
    clock.now += SWEEP_SECONDS
    admit(limits, token("newcomer"))
    # the 50 have spent their token and refill only 0.06 of it in 60 s: kept (forgetting one
    # would hand it a fresh token); the busy one is in flight: kept
    assert len(limits) == 52
    clock.now += 1000.0
    admit(limits, token("late"))
    assert len(limits) == 2  # busy (in flight) + late: everyone else refilled and was dropped
    assert limits.in_flight(busy) == 1


def test_eviction_never_forgets_a_client_with_requests_in_flight() -> None:
    clock = FakeClock()
    limits = ClientLimits(ClientLimitsConfig(), 64, clock, max_clients=3)
    busy = [token(f"busy-{i}") for i in range(5)]
    for principal in busy:
        limits.enter(principal)
    assert len(limits) == 5  # over the cap only by clients with requests in flight
    for principal in busy:
        assert limits.in_flight(principal) == 1
        limits.leave(principal)
        assert limits.in_flight(principal) == 0


def test_enter_and_leave_from_many_threads_lose_no_update() -> None:
    clock = FakeClock()  # frozen: no refill, so exactly `burst` are admitted in all
    limits = make(clock, rate_per_second=1.0, burst=1000, max_in_flight=100_000)
    bot = token()
    admitted = [0] * 8

    def worker(index: int) -> None:
        for _ in range(500):
            if admit(limits, bot) is None:
                admitted[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 1000
    assert limits.in_flight(bot) == 0


@settings(max_examples=300, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 2.0, 3.0, 10.0, 100.0]),
    burst=st.integers(1, 20),
    gaps_ms=st.lists(st.integers(0, 2000), min_size=1, max_size=200),
)
def test_admitted_in_any_window_never_exceed_burst_plus_rate_times_length(
    rate: float, burst: int, gaps_ms: list[int]
) -> None:
    clock = FakeClock()
    limits = make(clock)
    bot = token(rate_per_second=rate, burst=burst)
    admitted: list[float] = []
    for gap in gaps_ms:
        clock.now += gap / 1000
        if admit(limits, bot) is None:
            admitted.append(clock.now)
    # the tightest windows start and end at admitted requests
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            length = admitted[j] - start
            assert j - i + 1 <= burst + rate * length + 1e-6
