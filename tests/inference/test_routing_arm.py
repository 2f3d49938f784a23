"""Routing decisions, pure: the canary share over 100,000 keys, stickiness, monotone ramps, shadow
fractions; the routes view's failure handling; the shadow queue's drops, errors and timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.inference.routes_view import RoutesView
from parity.inference.routing import Routes, Shadow, arm, key_text, mirrored
from parity.inference.shadow import LiveRequests, ShadowJob, ShadowQueue

KEYS = [f"user-{n}" for n in range(100_000)]


def routes(weight: float, rollout: str = "fraud-1", **options: object) -> Routes:
    return Routes(
        model="fraud",
        rollout=rollout,
        champion_alias="champion",
        champion=1,
        candidate=2,
        weight=weight,
        key="user_id",
        **options,  # type: ignore[arg-type]
    )


def oracle_bucket(salt: str, key: str) -> int:
    """The documented hash, computed here independently: blake2b-64 keyed by the salt, mod 10,000."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=salt.encode()).digest()
    return int.from_bytes(digest, "big") % 10_000


@pytest.mark.parametrize("weight", [1.0, 5.0, 25.0, 50.0, 100.0])
def test_canary_share_over_100000_keys_is_within_half_a_point_of_the_weight(weight: float) -> None:
    chosen = [arm(routes(weight), key) for key in KEYS]
    share = 100 * chosen.count("candidate") / len(KEYS)
    assert abs(share - weight) <= 0.5, share
    # every key is sticky: asked again (a fresh Routes, as another worker holds) it gets its arm
    assert [arm(routes(weight), key) for key in KEYS] == chosen
    # and its arm is the documented one: bucket below weight x 100
    assert chosen == [
        "candidate" if oracle_bucket("fraud-1", k) < weight * 100 else "champion" for k in KEYS
    ]


def test_each_rollout_draws_its_own_slice() -> None:
    first = {k for k in KEYS[:20_000] if arm(routes(10.0, "fraud-1"), k) == "candidate"}
    second = {k for k in KEYS[:20_000] if arm(routes(10.0, "fraud-2"), k) == "candidate"}
    assert abs(len(first & second) - len(first) * 0.1) < len(first) * 0.05  # independent slices


def test_no_key_and_zero_weight_stay_with_the_champion_full_weight_goes_to_the_candidate() -> None:
    assert arm(routes(50.0), None) == "champion"
    assert {arm(routes(0.0), k) for k in KEYS[:1000]} == {"champion"}
    assert {arm(routes(100.0), k) for k in KEYS[:1000]} == {"candidate"}


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(
        st.floats(min_value=0, max_value=100, allow_nan=False), min_size=2, max_size=6
    ),
    keys=st.lists(st.text(max_size=20) | st.integers().map(str), min_size=1, max_size=50),
)
def test_raising_the_weight_never_moves_a_key_back(weights: list[float], keys: list[str]) -> None:
    ramp = sorted(weights)
    for key in keys:
        arms = [arm(routes(w), key) for w in ramp]
        first_candidate = arms.index("candidate") if "candidate" in arms else len(arms)
        assert arms == ["champion"] * first_candidate + ["candidate"] * (
            len(arms) - first_candidate
        )


def test_key_text_makes_numbers_and_their_header_text_share_a_bucket() -> None:
    assert key_text(42) == key_text("42") == key_text(42.0) == key_text(b"42") == "42"
    assert key_text(4.5) == "4.5"
    assert arm(routes(50.0), key_text(7)) == arm(routes(50.0), "7")


def test_mirrored_fraction_by_key_and_by_request_id() -> None:
    half = Shadow(version=3, fraction=0.5)
    full = Shadow(version=3)
    by_key = [mirrored(routes(0.0), half, key, "r") for key in KEYS[:20_000]]
    assert abs(sum(by_key) / 20_000 - 0.5) < 0.02
    assert [mirrored(routes(0.0), half, k, "other") for k in KEYS[:20_000]] == by_key  # sticky
    by_request = [mirrored(routes(0.0), half, None, f"req-{n}") for n in range(20_000)]
    assert abs(sum(by_request) / 20_000 - 0.5) < 0.02
    assert all(mirrored(routes(0.0), full, k, "r") for k in KEYS[:1000])
    none = Shadow(version=3, fraction=0.0)
    assert not any(mirrored(routes(0.0), none, k, "r") for k in KEYS[:1000])


# --- the routes view ------------------------------------------------------------------------------


def run_now(target: object) -> None:
    target()  # type: ignore[operator]


def test_routes_view_without_control_logs_once_and_routes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def unsupported() -> Mapping[str, Routes]:
        calls.append(1)
        raise NotImplementedError

    times = iter(range(100))
    view = RoutesView(unsupported, refresh_seconds=1, clock=lambda: next(times), spawn=run_now)
    with caplog.at_level(logging.WARNING, "parity.inference.routes_view"):
        answers = [view.current() for _ in range(5)]
    assert answers == [{}] * 5
    assert len(calls) == 1  # never asked again
    assert len([r for r in caplog.records if "not available" in r.message]) == 1


def test_routes_view_keeps_the_last_routes_while_reads_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = {"fraud": routes(5.0)}
    answers: list[object] = [live, RuntimeError("db down"), RuntimeError("db down"), {}]

    def read() -> Mapping[str, Routes]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    times = iter(range(100))
    view = RoutesView(read, refresh_seconds=1, clock=lambda: next(times), spawn=run_now)
    with caplog.at_level(logging.WARNING, "parity.inference.routes_view"):
        seen = [dict(view.current()) for _ in range(4)]
    assert seen == [live, live, live, {}]
    assert len([r for r in caplog.records if "failed" in r.message]) == 1  # once per outage


def test_routes_view_refuses_routes_filed_under_another_model() -> None:
    answers = [{"fraud": routes(5.0)}, {"other": routes(5.0)}]
    times = iter(range(100))
    view = RoutesView(
        lambda: answers.pop(0), refresh_seconds=1, clock=lambda: next(times), spawn=run_now
    )
    assert dict(view.current()) == {"fraud": routes(5.0)}
    assert dict(view.current()) == {"fraud": routes(5.0)}  # the bad read is kept out


def test_routes_view_rereads_on_its_own_so_a_quiet_server_never_routes_by_old_routes() -> None:
    live: dict[str, Routes] = {"fraud": routes(5.0)}
    reads: list[int] = []
    broken: list[bool] = []

    def read() -> Mapping[str, Routes]:
        if broken:
            raise RuntimeError("database down")
        reads.append(1)
        return dict(live)

    view = RoutesView(read, refresh_seconds=0, spawn=run_now)
    view.refresh()  # start-up

    async def quiet_spell() -> None:
        task = asyncio.get_running_loop().create_task(view.keep_fresh())
        live.clear()  # the rollout is aborted while no request comes
        await asyncio.sleep(0.3)  # several periods of 0.05 s
        task.cancel()

    asyncio.run(quiet_spell())
    assert len(reads) >= 3
    broken.append(True)  # the next request's own read fails: it gets what keep_fresh read
    assert dict(view.current()) == {}


# --- the shadow queue -----------------------------------------------------------------------------


class Counters:
    def __init__(self) -> None:
        self.dropped: list[tuple[str, int]] = []
        self.requests: list[tuple[str, int, str]] = []

    def shadow_dropped(self, model: str, version: int) -> None:
        self.dropped.append((model, version))

    def shadow_request(self, model: str, version: int, status: str) -> None:
        self.requests.append((model, version, status))


def test_shadow_queue_counts_ok_errors_timeouts_and_drops() -> None:
    counters = Counters()
    failures: list[tuple[int, str]] = []

    async def scenario() -> None:
        queue = ShadowQueue(counters, size=2, timeout_s=0.05, workers=1)
        release = asyncio.Event()
        ran: list[int] = []

        def job(version: int, behaviour: str) -> ShadowJob:
            async def run() -> None:
                if behaviour == "block":
                    await release.wait()  # never set: past the time limit
                if behaviour == "raise":
                    raise ValueError("shadow broke")
                ran.append(version)

            def failed(status: str, seconds: float) -> None:
                failures.append((version, status))

            return ShadowJob("fraud", version, run, failed)

        accepted = [queue.submit(job(1, "block")), queue.submit(job(2, "raise"))]
        accepted.append(queue.submit(job(3, "ok")))  # the queue holds 2: dropped
        await queue.drain()
        accepted.append(queue.submit(job(4, "ok")))
        await queue.drain()
        await queue.close()
        assert accepted == [True, True, False, True]
        assert ran == [4]

    asyncio.run(scenario())
    assert counters.dropped == [("fraud", 3)]
    assert counters.requests == [
        ("fraud", 1, "timeout"),
        ("fraud", 2, "error"),
        ("fraud", 4, "ok"),
    ]
    assert failures == [(1, "timeout"), (2, "error")]


def test_shadow_work_waits_for_live_requests_unless_the_queue_backs_up() -> None:
    async def scenario() -> tuple[list[int], list[int], list[int]]:
        live = LiveRequests()
        queue = ShadowQueue(Counters(), size=4, workers=1, live=live)
        ran: list[int] = []

        def job(n: int) -> ShadowJob:
            async def run() -> None:
                ran.append(n)

            return ShadowJob("fraud", 2, run, lambda status, seconds: None)

        live.enter()  # a live request is in flight
        queue.submit(job(1))
        await asyncio.sleep(0.1)  # ten polls: the worker holds job 1, waiting for idle time
        while_busy = list(ran)
        for n in (2, 3, 4):  # half the queue (2) backs up: the shadow runs anyway
            queue.submit(job(n))
        await asyncio.sleep(0.1)
        backed_up = list(ran)
        live.leave()
        await queue.drain()
        await queue.close()
        return while_busy, backed_up, ran

    while_busy, backed_up, ran = asyncio.run(scenario())
    assert while_busy == []
    assert backed_up[:2] == [1, 2] and len(backed_up) < 4  # ran down to below the backlog
    assert ran == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "options",
    [{"size": 0}, {"size": True}, {"workers": 0}, {"timeout_s": 0}, {"timeout_s": float("nan")}],
)
def test_shadow_queue_refuses_bad_settings(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="shadow"):
        ShadowQueue(Counters(), **options)  # type: ignore[arg-type]
