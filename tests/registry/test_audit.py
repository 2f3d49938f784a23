"""The audit trail on real SQLite and PostgreSQL registries: every hooked write records who, when,
what and from where; the actor travels in a ContextVar (through asyncio.to_thread); queries
filter; each record is one JSON line on logger `parity.audit`; no token text is ever kept."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from parity.deploy.service import Rollouts
from parity.errors import InvalidOption, InvalidTime
from parity.feature_store import FeatureStore
from parity.registry.audit import (
    Actor,
    AuditRecord,
    acting_as,
    actor_for,
    audit_table,
    current_actor,
    local_actor,
)
from tests.conftest import DRIVER_REPO, write_repo
from tests.deploy.control_support import (
    MINUTE,
    Scripted,
    cleanup,
    register_versions,
    short_rollout,
)
from tests.registry.access_support import T0, Clock, forget, registry_yaml

HOST = socket.gethostname()
CI = Actor("ci-bot", "token", "10.0.0.7")
REPO = {
    **DRIVER_REPO,
    "push.py": """
        from datetime import timedelta
        from parity import Entity, FeatureView, Field, FileSource, Float64, Int64, PushSource

        account = Entity(name="account", join_keys=["account_id"])
        clicks = PushSource(name="clicks", batch_source=FileSource(path="data/clicks/"))
        click_stats = FeatureView(
            name="click_stats", entities=[account],
            schema=[Field(name="clicks_1h", dtype=Int64), Field(name="spend", dtype=Float64)],
            source=clicks, ttl=timedelta(days=1),
        )
    """,
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, project_name: str, clock: Clock
) -> Iterator[FeatureStore]:
    extra = registry_yaml(request.param, request)
    root = write_repo(tmp_path / "repo", REPO, project=project_name, extra=extra)
    opened = FeatureStore(root, clock=clock)
    yield opened
    forget(opened)
    opened.close()


def only(store: FeatureStore, action: str) -> AuditRecord:
    (record,) = store.access.audit.query(action=action)
    return record


def test_apply_is_recorded_with_its_version_and_change_count(store: FeatureStore) -> None:
    with acting_as(CI):
        store.apply()
    record = only(store, "registry.apply")
    # entities driver and account, views driver_stats and click_stats, service driver_service
    assert (record.action, record.target, record.detail) == (
        "registry.apply",
        store.project,
        {"version": 1, "changes": 5},
    )
    assert (record.actor, record.at, record.project) == (CI, T0, store.project)


def test_apply_without_an_actor_records_its_author_or_the_local_user(store: FeatureStore) -> None:
    store.apply(author="ann")
    assert only(store, "registry.apply").actor == Actor("ann", "user", HOST)
    (store.repo_path / "extra.py").write_text(
        "from parity import Entity\nrider = Entity(name='rider', join_keys=['rider_id'])\n"
    )
    store.apply()
    newest = store.access.audit.query(action="registry.apply")[0]
    assert newest.actor == local_actor() and newest.detail == {"version": 2, "changes": 1}


def test_a_no_op_apply_records_nothing(store: FeatureStore) -> None:
    store.apply()
    store.apply()
    assert len(store.access.audit.query(action="registry.apply")) == 1


def test_teardown_is_recorded_and_the_trail_outlives_it(store: FeatureStore) -> None:
    store.apply()
    with acting_as(CI):
        store.registry.teardown()
    record = only(store, "registry.teardown")
    assert (record.target, record.detail, record.actor) == (store.project, {"version": 1}, CI)
    assert len(store.access.audit.query(action="registry")) == 2


def test_push_is_recorded_with_rows_and_destination(store: FeatureStore) -> None:
    store.apply()
    rows = pd.DataFrame(
        {
            "account_id": [1, 2],
            "event_timestamp": [T0 - timedelta(hours=1)] * 2,
            "clicks_1h": [5, 7],
            "spend": [1.5, 0.0],
        }
    )
    with acting_as(CI):
        store.push("clicks", rows, to="both")
    store.push("clicks", rows.iloc[:0])  # nothing written: nothing recorded
    record = only(store, "features.push")
    assert (record.target, record.detail, record.actor) == ("clicks", {"rows": 2, "to": "both"}, CI)


def test_model_registration_and_alias_moves_are_recorded(store: FeatureStore) -> None:
    store.apply()
    with acting_as(CI):
        register_versions(store, count=2, champion=1)
        store.models.set_alias("fraud", "champion", 2, reason="better")
        store.models.rollback("fraud", "champion")
        store.models.delete_alias("fraud", "champion")
    registered = store.access.audit.query(action="models.register")
    assert [(r.target, r.detail["version"]) for r in registered] == [("fraud", 2), ("fraud", 1)]
    moves = [r.detail for r in store.access.audit.query(action="models.alias")]
    assert moves == [
        {"alias": "champion", "version": None, "previous": 1, "reason": ""},
        {"alias": "champion", "version": 1, "previous": 2, "reason": "rollback to 1"},
        {"alias": "champion", "version": 2, "previous": 1, "reason": "better"},
        {"alias": "champion", "version": 1, "previous": None, "reason": ""},
    ]
    assert {r.actor for r in store.access.audit.query(action="models")} == {CI}


def test_rollout_actions_and_controller_decisions_are_recorded(
    store: FeatureStore, clock: Clock
) -> None:
    store.apply()
    register_versions(store, count=3, champion=1)
    rollouts = Rollouts(store, clock=clock, checker=Scripted())
    rollouts.start(short_rollout(), actor="ann")
    rollouts.pause("fraud", actor="bob")
    rollouts.resume("fraud", actor="bob")
    clock.advance(2 * MINUTE)
    rollouts.step(owner="ctl-1")  # shadow done: advance to the first canary step
    with acting_as(CI):
        rollouts.promote("fraud", reason="looks good")
    rollouts.start(short_rollout(candidate=3), actor="ann")
    failing = Rollouts(store, clock=clock, checker=Scripted(verdict=lambda s, n: "fail"))
    clock.advance(MINUTE)
    failing.step(owner="ctl-1")  # a failed gate: the controller aborts

    seen = [
        (r.action, r.target, r.actor, r.detail["rollout"], r.detail["status"])
        for r in reversed(store.access.audit.query(action="rollouts"))
    ]
    controller = Actor("controller:ctl-1", "system", HOST)
    assert seen == [
        ("rollouts.start", "fraud", Actor("ann", "user", HOST), "fraud-1", "active"),
        ("rollouts.pause", "fraud", Actor("bob", "user", HOST), "fraud-1", "paused"),
        ("rollouts.resume", "fraud", Actor("bob", "user", HOST), "fraud-1", "active"),
        ("rollouts.advance", "fraud", controller, "fraud-1", "active"),
        ("rollouts.promote", "fraud", CI, "fraud-1", "promoted"),
        ("rollouts.start", "fraud", Actor("ann", "user", HOST), "fraud-2", "active"),
        ("rollouts.abort", "fraud", controller, "fraud-2", "aborted"),
    ]
    promotion = store.access.audit.query(action="models.alias", limit=1)[0]
    assert (promotion.actor, promotion.detail["version"]) == (CI, 2)  # the alias move: the caller's
    cleanup(store)


def test_token_create_and_revoke_are_recorded_without_the_token(store: FeatureStore) -> None:
    with acting_as(CI):
        record, text = store.access.tokens.create("reader", "models:read", expires_in="30d")
        store.access.tokens.revoke("reader")
    created, revoked = only(store, "auth.token.create"), only(store, "auth.token.revoke")
    assert (created.target, created.actor) == ("reader", CI)
    assert created.detail == {
        "id": record.id,
        "scopes": "models:read",
        "expires_at": (T0 + timedelta(days=30)).isoformat(),
    }
    assert (revoked.target, revoked.detail) == ("reader", {"id": record.id})
    engine = store.registry.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        stored = repr([tuple(r) for r in conn.execute(sa.select(audit_table))])
    assert text.split("_", 2)[2] not in stored


def test_a_token_text_in_a_detail_is_kept_as_its_id_only(store: FeatureStore) -> None:
    leaked = "parity_0123456789ab_" + "s" * 43
    record = store.access.audit.record("test.leak", "x", {"oops": f"Bearer {leaked}"})
    assert record.detail == {"oops": "Bearer parity_0123456789ab_***"}
    assert only(store, "test.leak").detail == record.detail


def test_acting_as_propagates_through_asyncio_to_thread(store: FeatureStore) -> None:
    async def request() -> AuditRecord:
        with acting_as(CI):
            return await asyncio.to_thread(store.access.audit.record, "test.thread", "x")

    assert asyncio.run(request()).actor == CI
    assert only(store, "test.thread").actor == CI
    assert current_actor() == local_actor()  # the block ended: back to the local user


def test_actor_for_prefers_the_context_then_the_name_then_the_local_user() -> None:
    assert actor_for("ann") == Actor("ann", "user", HOST)
    assert actor_for("controller:x", "system") == Actor("controller:x", "system", HOST)
    assert actor_for("") == local_actor() == actor_for(None)
    with acting_as(CI):
        assert actor_for("ann") == CI
        with acting_as(Actor("inner", "jwt", "10.0.0.8")):
            assert current_actor().name == "inner"
        assert current_actor() == CI


def test_query_filters_and_orders_newest_first(store: FeatureStore, clock: Clock) -> None:
    trail = store.access.audit
    plan = [
        ("models.register", "fraud", "ann"),
        ("models.alias", "fraud", "bob"),
        ("models.alias", "churn", "ann"),
        ("features.push", "clicks", "ann"),
        ("modelsx.other", "fraud", "ann"),
    ]
    for action, target, who in plan:
        trail.record(action, target, actor=Actor(who, "user", "h"))
        clock.advance(MINUTE)
    seqs = [r.seq for r in trail.query()]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == 5

    def shown(**filters: object) -> list[tuple[str, str, str]]:
        return [(r.action, r.target, r.actor.name) for r in trail.query(**filters)]  # type: ignore[arg-type]

    assert shown(action="models") == [plan[2], plan[1], plan[0]]  # not modelsx.other
    assert shown(action="models.alias", actor="ann") == [plan[2]]
    assert shown(target="fraud") == [plan[4], plan[1], plan[0]]
    assert shown(since=T0 + MINUTE, until=T0 + 3 * MINUTE) == [plan[2], plan[1]]
    assert shown(limit=2) == [plan[4], plan[3]]
    assert shown(actor="nobody") == []
    with pytest.raises(InvalidOption, match=r"^limit 0"):
        trail.query(limit=0)
    with pytest.raises(InvalidTime, match=r"^since"):
        trail.query(since=T0, until=T0)


def test_each_record_is_one_json_line_on_the_audit_logger(
    store: FeatureStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="parity.audit"):
        record = store.access.audit.record("test.log", "fraud", {"n": 1}, actor=CI)
    lines = [r.getMessage() for r in caplog.records if r.name == "parity.audit"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert json.loads(lines[0]) == {
        "seq": record.seq,
        "project": store.project,
        "at": "2026-03-01T12:00:00.000000+00:00",
        "actor": "ci-bot",
        "actor_kind": "token",
        "origin": "10.0.0.7",
        "action": "test.log",
        "target": "fraud",
        "detail": {"n": 1},
    }
    assert record.seq > 0


def test_records_survive_a_new_store_on_the_same_registry(store: FeatureStore) -> None:
    store.access.audit.record("test.keep", "x", actor=CI)
    again = FeatureStore(store.repo_path, clock=lambda: datetime(2027, 1, 1, tzinfo=UTC))
    try:
        assert [r.actor for r in again.access.audit.query(action="test.keep")] == [CI]
    finally:
        again.close()


def test_without_a_sql_registry_records_are_log_lines_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from parity.errors import BackendNotInstalled
    from parity.testing import InMemoryRegistryStore

    root = write_repo(tmp_path / "repo", DRIVER_REPO)
    store = FeatureStore(root, registry_store=InMemoryRegistryStore(), clock=lambda: T0)
    with caplog.at_level(logging.INFO, logger="parity.audit"):
        store.apply(author="ann")
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "parity.audit"]
    assert (line["action"], line["actor"], line["seq"]) == ("registry.apply", "ann", 0)
    with pytest.raises(BackendNotInstalled, match="SQL registry"):
        store.access.audit.query()


def test_a_row_the_database_refuses_is_logged_and_does_not_fail_the_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from parity.registry.audit import AuditTrail
    from parity.registry.sql import create_registry_engine

    engine = create_registry_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    trail = AuditTrail(engine, "p", lambda: T0)
    trail.record("test.first", "x", actor=CI)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE parity_audit"))  # the database loses the table
    with caplog.at_level(logging.INFO):
        record = trail.record("test.second", "x", {"n": 2}, actor=CI)
    assert (record.seq, record.action, record.detail) == (0, "test.second", {"n": 2})
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.name == "parity.registry.audit" and '"action": "test.second"' in error.getMessage()
    assert any(r.name == "parity.audit" for r in caplog.records)  # the JSON line still goes out
    engine.dispose()
