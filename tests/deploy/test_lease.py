"""The controller lease and the one-running-rollout rule under concurrency, on SQLite and
PostgreSQL: two controllers (threads, then processes) -> exactly one acts per tick; two concurrent
starts of one model -> exactly one wins, the other is RolloutActive."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from parity import FeatureStore
from parity.deploy.controller import DEFAULT_LEASE, lease_seconds
from parity.deploy.service import Rollouts
from parity.deploy.state import RolloutEvent
from parity.deploy.store import RolloutStore
from parity.errors import RolloutActive
from tests.conftest import DRIVER_REPO, write_repo
from tests.deploy.control_support import (
    MINUTE,
    T0,
    Clock,
    Scripted,
    short_rollout,
)


@pytest.fixture
def db(fraud_store: FeatureStore) -> RolloutStore:
    return fraud_store.rollouts.db


def test_the_lease_is_held_by_one_owner_until_it_expires(db: RolloutStore) -> None:
    first = db.acquire("a", T0, 180)
    assert (first.held, first.owner, first.expires_at, first.taken_from) == (
        True,
        "a",
        T0 + timedelta(seconds=180),
        None,
    )
    other = db.acquire("b", T0 + timedelta(seconds=179), 180)
    assert (other.held, other.owner) == (False, "a")
    renewed = db.acquire("a", T0 + MINUTE, 180)  # renewing does not count as a take-over
    assert renewed.held and renewed.taken_from is None
    assert renewed.expires_at == T0 + MINUTE + timedelta(seconds=180)
    assert not db.acquire("b", T0 + timedelta(seconds=239), 180).held
    taken = db.acquire("b", T0 + timedelta(seconds=240), 180)  # a's lease ran out
    assert (taken.held, taken.taken_from) == (True, "a")
    assert db.lease() == ("b", T0 + timedelta(seconds=420))


def test_a_released_lease_is_free_at_once_and_only_its_owner_releases_it(db: RolloutStore) -> None:
    assert db.acquire("a", T0, 180).held
    assert not db.release("b")
    assert db.release("a")
    assert db.lease() is None
    assert db.acquire("b", T0, 180).taken_from is None  # not a crash: nothing to resume


def test_lease_length_is_three_intervals_of_the_shortest_running_rollout(
    fraud_store: FeatureStore, clock: Clock
) -> None:
    rollouts = Rollouts(fraud_store, clock=clock, checker=Scripted())
    assert lease_seconds([]) == DEFAULT_LEASE.total_seconds() == 180.0
    rollouts.start(short_rollout(interval=timedelta(seconds=20)))
    assert lease_seconds(rollouts.db.list(running_only=True)) == 60.0
    rollouts.step(now=T0 + MINUTE, owner="a")
    assert rollouts.db.lease() == ("a", T0 + 2 * MINUTE)


def test_two_controller_threads_exactly_one_acts_per_tick(
    repo: Path, fraud_store: FeatureStore, clock: Clock
) -> None:
    fraud_store.rollouts.start(short_rollout(), actor="ann")
    stores = [FeatureStore(repo, clock=clock) for _ in range(2)]
    controllers = [Rollouts(s, clock=clock, checker=Scripted()) for s in stores]
    ticks = 12
    recorded: list[list[RolloutEvent]] = [[], []]
    barrier = threading.Barrier(2)

    def work(index: int) -> None:
        for tick in range(1, ticks + 1):
            barrier.wait()
            now = T0 + tick * MINUTE
            recorded[index] += controllers[index].step(now=now, owner=f"c{index}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    checks = [e for e in fraud_store.rollouts.history("fraud") if e.kind == "check"]
    per_tick = Counter(e.at for e in checks)
    assert sorted(per_tick) == [T0 + t * MINUTE for t in range(1, len(per_tick) + 1)]
    assert set(per_tick.values()) == {1}  # one check per tick, never two
    actors = {e.actor for e in checks}
    assert len(actors) == 1  # the lease holder renewed every tick; the other never acted
    assert sum(len(r) for r in recorded) == len(fraud_store.rollouts.history("fraud")) - 1
    assert fraud_store.rollouts.status("fraud").status == "promoted"


CONTROLLER = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime, timedelta
    from parity import FeatureStore
    from parity.deploy.service import Rollouts
    from parity.deploy.state import CheckOutcome, GateResult

    repo, owner, start = sys.argv[1:4]
    def checker(store, state, now):
        results = tuple(GateResult(g.metric, "pass") for g in state.definition.gates)
        return CheckOutcome(results, {"candidate": 1000, "champion": 1000})
    store = FeatureStore(repo)
    rollouts = Rollouts(store, checker=checker)
    rollouts.routes()  # tables open before the first tick
    for line in sys.stdin:  # one tick per line: the minute to step at
        now = datetime.fromisoformat(start) + timedelta(minutes=int(line))
        print(json.dumps([e.kind for e in rollouts.step(now=now, owner=owner)]), flush=True)
    store.close()
    """
)


def test_two_controller_processes_exactly_one_acts_per_tick(
    repo: Path, fraud_store: FeatureStore, tmp_path: Path
) -> None:
    fraud_store.rollouts.start(short_rollout())
    script = tmp_path / "controller.py"
    script.write_text(CONTROLLER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(repo), f"p{i}", T0.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    acted: list[list[int]] = []  # per tick: how many events each process recorded
    for tick in range(1, 13):
        for proc in procs:  # both processes step the same tick at once
            assert proc.stdin is not None
            proc.stdin.write(f"{tick}\n")
            proc.stdin.flush()
        acted.append([len(json.loads(proc.stdout.readline())) for proc in procs])  # type: ignore[union-attr]
    for proc in procs:
        proc.communicate(timeout=60)
    assert [p.returncode for p in procs] == [0, 0]
    checks = [e for e in fraud_store.rollouts.history("fraud") if e.kind == "check"]
    assert set(Counter(e.at for e in checks).values()) == {1}
    assert len(checks) == 8  # 4 phases x 2 checks: nothing evaluated twice, nothing skipped
    assert all(0 in counts for counts in acted)  # never both in one tick
    assert sum(sum(counts) for counts in acted) == len(fraud_store.rollouts.history("fraud")) - 1
    assert len({e.actor for e in checks}) == 1
    assert fraud_store.rollouts.status("fraud").status == "promoted"


def race_starts(stores: list[FeatureStore]) -> list[str]:
    """Each store starts a rollout of 'fraud' at the same moment: the ids, or RolloutActive."""
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def start(store: FeatureStore, candidate: int) -> None:
        barrier.wait()
        try:
            outcomes.append(store.rollouts.start(short_rollout(candidate=candidate)).id)
        except RolloutActive:
            outcomes.append("RolloutActive")

    threads = [threading.Thread(target=start, args=(s, 2 + i)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_threads_starting_the_same_model_one_wins(
    repo: Path, fraud_store: FeatureStore, clock: Clock
) -> None:
    stores = [FeatureStore(repo, clock=clock) for _ in range(2)]
    for store in stores:
        store.rollouts.routes()  # tables and engines ready, so the race is on the insert
    for round_ in range(5):
        outcomes = race_starts(stores)
        assert sorted(outcomes) == sorted([f"fraud-{round_ + 1}", "RolloutActive"])
        assert len(fraud_store.rollouts.list(active_only=True)) == 1
        fraud_store.rollouts.abort("fraud")
    for store in stores:
        store.close()


STARTER = textwrap.dedent(
    """
    import os, sys, time
    from parity import FeatureStore
    from parity.errors import RolloutActive
    repo, candidate, go = sys.argv[1:4]
    store = FeatureStore(repo)
    store.rollouts.routes()
    while not os.path.exists(go):
        time.sleep(0.002)
    try:
        print(store.rollouts.start(model="fraud", candidate=int(candidate)).id)
    except RolloutActive:
        print("RolloutActive")
    store.close()
    """
)


def test_two_processes_starting_the_same_model_one_wins(
    repo: Path, fraud_store: FeatureStore, tmp_path: Path
) -> None:
    script = tmp_path / "starter.py"
    script.write_text(STARTER)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(repo), str(candidate), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for candidate in (2, 3)
    ]
    go.write_text("")
    outputs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outputs == ["RolloutActive", "fraud-1"]
    assert [s.id for s in fraud_store.rollouts.list()] == ["fraud-1"]


OPENER = textwrap.dedent(
    """
    import os, sys, time
    from parity import FeatureStore
    repo, go = sys.argv[1:3]
    store = FeatureStore(repo)
    while not os.path.exists(go):
        time.sleep(0.001)
    store.rollouts.routes()  # creates the rollout tables if missing
    store.models.models()
    store.monitoring.alert_gauges()
    print("ok")
    store.close()
    """
)


def test_processes_creating_the_tables_at_once_all_succeed(tmp_path: Path) -> None:
    """Workers of a fresh SQLite repo starting together each create the tables they need: none
    may fail with 'database is locked' (a deferred transaction that read the schema and then
    wrote was refused at once when another process had written in between)."""
    repo = write_repo(tmp_path / "repo", DRIVER_REPO)
    script = tmp_path / "opener.py"
    script.write_text(OPENER)
    go = tmp_path / "go"
    for _ in range(3):
        for leftover in (repo / "data").glob("registry.db*"):  # fresh tables each round
            leftover.unlink()
        with FeatureStore(repo) as store:
            store.apply()
        go.unlink(missing_ok=True)
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(repo), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        time.sleep(1.0)
        go.write_text("")
        results = [p.communicate(timeout=120) for p in procs]
        assert [out.strip() for out, _ in results] == ["ok"] * 6, [err for _, err in results]
