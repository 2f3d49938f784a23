"""API tokens on real SQLite and PostgreSQL registries: create, authenticate, revoke, expire; only
the secret's hash stored; timing-safe comparison; names unique among live tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from parity.errors import TokenError, Unauthenticated
from parity.feature_store import FeatureStore
from parity.registry.audit import AuditTrail
from parity.serving.auth import tokens as fmt
from parity.serving.auth.scopes import Grant
from parity.serving.auth.service import Tokens
from parity.serving.auth.token_store import tokens_table
from tests.registry.access_support import T0, Clock, open_store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, project_name: str, clock: Clock
) -> Iterator[FeatureStore]:
    yield from open_store(request.param, request, tmp_path, project_name, clock)


def _other_secret(text: str, position: int) -> str:
    """The token's text with one character of its secret changed (position 0 or -1)."""
    head, secret = text[: -len(text.split("_", 2)[2])], text.split("_", 2)[2]
    chars = list(secret)
    chars[position] = "A" if chars[position] != "A" else "B"
    return head + "".join(chars)


def test_a_created_token_authenticates_as_its_principal(store: FeatureStore) -> None:
    record, text = store.access.tokens.create(
        "ci-bot",
        "features:read:driver_service models:predict",
        expires_in=timedelta(days=30),
        rate_per_second=100,
        burst=200,
        max_in_flight=8,
    )
    assert re.fullmatch(r"parity_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}", text)
    assert text.split("_")[1] == record.id
    assert len(base64.urlsafe_b64decode(text.split("_", 2)[2] + "=")) == 32

    principal = store.access.tokens.authenticate(text, T0 + timedelta(days=1))

    assert principal.name == "ci-bot"
    assert principal.kind == "token"
    assert principal.key == f"token:{record.id}"
    assert principal.grants == (
        Grant("features:read", frozenset({"driver_service"})),
        Grant("models:predict"),
    )
    assert principal.expires_at == 1772366400.0 + 30 * 86400  # 2026-03-01T12:00Z + 30 days
    assert (principal.rate_per_second, principal.burst, principal.max_in_flight) == (100, 200, 8)
    assert principal.allows("features:read", "driver_service")
    assert not principal.allows("features:read", "other_service")


def test_a_token_without_limits_or_expiry_uses_the_defaults(store: FeatureStore) -> None:
    record, text = store.access.tokens.create("reader", ["models:read"])
    principal = store.access.tokens.authenticate(text, T0 + timedelta(days=3650))
    assert record.expires_at is None
    assert principal.expires_at is None
    assert (principal.rate_per_second, principal.burst, principal.max_in_flight) == (None,) * 3


@pytest.mark.parametrize("position", [0, -1])
def test_a_secret_changed_in_its_first_or_last_character_is_refused(
    store: FeatureStore, position: int
) -> None:
    _, text = store.access.tokens.create("ci-bot", "admin")
    wrong = _other_secret(text, position)
    assert wrong != text and len(wrong) == len(text)
    with pytest.raises(Unauthenticated, match="unknown token") as caught:
        store.access.tokens.authenticate(wrong, T0)
    assert wrong.split("_", 2)[2] not in str(caught.value)
    assert text.split("_", 2)[2] not in str(caught.value)


def test_the_secret_is_compared_with_hmac_compare_digest(
    store: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, text = store.access.tokens.create("ci-bot", "admin")
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(fmt.hmac, "compare_digest", recording)
    store.access.tokens.authenticate(text, T0)
    with pytest.raises(Unauthenticated):
        store.access.tokens.authenticate(_other_secret(text, -1), T0)
    secret = text.split("_", 2)[2]
    expected = hashlib.sha256(secret.encode()).hexdigest().encode()
    assert len(seen) == 2
    assert seen[0] == (expected, expected)


def test_an_unknown_id_is_refused_as_unknown(store: FeatureStore) -> None:
    store.access.tokens.create("ci-bot", "admin")
    stranger = f"parity_{'0' * 12}_{'x' * 43}"
    with pytest.raises(Unauthenticated, match="unknown token"):
        store.access.tokens.authenticate(stranger, T0)


class _NoDatabase:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a malformed token reached the database ({name})")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Bearer parity_0123456789ab_" + "x" * 43,
        "parity_0123456789ab",
        "parity_0123456789AB_" + "x" * 43,  # upper-case id
        "parity_0123456789a_" + "x" * 43,  # 11 hex
        "parity_0123456789ab_" + "x" * 42,
        "parity_0123456789ab_" + "x" * 44,
        "parity_0123456789ab_" + "x" * 42 + "!",
        "token_0123456789ab_" + "x" * 43,
        "parity_0123456789ab_" + "x" * 43 + "\n",
    ],
)
def test_malformed_text_is_refused_without_touching_the_database(text: str) -> None:
    tokens = Tokens(_NoDatabase(), AuditTrail(None, "p", lambda: T0), lambda: T0)  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated, match="malformed token") as caught:
        tokens.authenticate(text, T0)
    if text.strip():
        assert text.strip() not in str(caught.value)


def test_a_revoked_token_is_refused_and_its_name_is_free_again(store: FeatureStore) -> None:
    first, text = store.access.tokens.create("ci-bot", "admin")
    revoked = store.access.tokens.revoke("ci-bot")
    assert revoked.id == first.id and revoked.revoked_at == T0
    with pytest.raises(Unauthenticated, match="revoked") as caught:
        store.access.tokens.authenticate(text, T0)
    assert text.split("_", 2)[2] not in str(caught.value)
    second, other = store.access.tokens.create("ci-bot", "models:read")
    assert store.access.tokens.authenticate(other, T0).key == f"token:{second.id}"
    assert [t.id for t in store.access.tokens.list()] == [second.id]
    everything = store.access.tokens.list(include_revoked=True)
    assert sorted(t.id for t in everything) == sorted([first.id, second.id])


def test_revoke_by_id_and_twice(store: FeatureStore) -> None:
    record, text = store.access.tokens.create("ci-bot", "admin")
    store.access.tokens.revoke(record.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        store.access.tokens.authenticate(text, T0)
    with pytest.raises(TokenError, match="already revoked"):
        store.access.tokens.revoke(record.id)
    with pytest.raises(TokenError, match="'ci-bot'"):
        store.access.tokens.revoke("ci-bot")  # no live token of that name


def test_a_token_expires_at_its_expiry(store: FeatureStore) -> None:
    _, text = store.access.tokens.create("short", "admin", expires_in="1h")
    store.access.tokens.authenticate(text, T0 + timedelta(minutes=59, seconds=59))
    with pytest.raises(Unauthenticated, match="expired at 2026-03-01T13:00:00") as caught:
        store.access.tokens.authenticate(text, T0 + timedelta(hours=1))
    assert text.split("_", 2)[2] not in str(caught.value)


def test_a_name_is_unique_among_live_tokens(store: FeatureStore) -> None:
    store.access.tokens.create("ci-bot", "admin")
    with pytest.raises(TokenError, match=r"^name 'ci-bot': a token of that name exists"):
        store.access.tokens.create("ci-bot", "models:read")
    assert len(store.access.tokens.list(include_revoked=True)) == 1


def test_scopes_round_trip_in_their_normal_form(store: FeatureStore) -> None:
    record, text = store.access.tokens.create(
        "mixed", "models:predict:fraud,churn   features:push rollouts:admin:fraud"
    )
    assert record.scopes == "models:predict:churn,fraud features:push rollouts:admin:fraud"
    (listed,) = store.access.tokens.list()
    assert listed.scopes == record.scopes
    principal = store.access.tokens.authenticate(text, T0)
    assert principal.allows("models:predict", "churn")
    assert not principal.allows("models:predict", "other")
    assert principal.allows("features:push", "anything")
    assert not principal.allows("admin")


def test_only_the_hash_of_the_secret_is_stored(store: FeatureStore) -> None:
    _, text = store.access.tokens.create("ci-bot", "admin")
    secret = text.split("_", 2)[2]
    engine = store.registry.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(tokens_table))]
    mine = [r for r in rows if r["project"] == store.project]
    assert len(mine) == 1
    dumped = repr(rows)
    assert text not in dumped and secret not in dumped
    assert mine[0]["secret_hash"] == hashlib.sha256(secret.encode("ascii")).hexdigest()


def test_last_use_is_recorded_at_most_once_a_minute(store: FeatureStore) -> None:
    record, text = store.access.tokens.create("ci-bot", "admin")
    tokens = store.access.tokens
    tokens.authenticate(text, T0 + timedelta(seconds=10))
    tokens.authenticate(text, T0 + timedelta(seconds=50))
    assert tokens.get("ci-bot").last_used_at == T0 + timedelta(seconds=10)
    tokens.authenticate(text, T0 + timedelta(seconds=75))
    assert tokens.get(record.id).last_used_at == T0 + timedelta(seconds=75)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("1w", timedelta(weeks=1)),
        ("3650d", timedelta(days=3650)),
    ],
)
def test_expiry_durations_parse(text: str, span: timedelta) -> None:
    assert fmt.parse_expiry(text) == span


@pytest.mark.parametrize("text", ["0d", "0h", "-1d", "3651d", "522w", "30", "d", "1.5h", "1y"])
def test_bad_expiry_is_refused_naming_expires(store: FeatureStore, text: str) -> None:
    with pytest.raises(TokenError, match=f"^expires '{re.escape(text)}'"):
        store.access.tokens.create("ci-bot", "admin", expires_in=text)
    with pytest.raises(TokenError, match=r"^expires"):
        store.access.tokens.create("ci-bot", "admin", expires_in=timedelta(seconds=-1))
    assert store.access.tokens.list(include_revoked=True) == []


@pytest.mark.parametrize(
    ("scopes", "named"),
    [("models:fly", "models:fly"), ("features:read admin:x", "admin"), ("", "at least one")],
)
def test_a_bad_scope_is_refused_naming_it(store: FeatureStore, scopes: str, named: str) -> None:
    with pytest.raises(TokenError, match=f"^scopes: .*{re.escape(named)}"):
        store.access.tokens.create("ci-bot", scopes)


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"rate_per_second": 0}, "rate_per_second"),
        ({"rate_per_second": float("nan")}, "rate_per_second"),
        ({"burst": 0}, "burst"),
        ({"max_in_flight": -1}, "max_in_flight"),
        ({"burst": 1.5}, "burst"),
    ],
)
def test_bad_limits_are_refused_naming_them(
    store: FeatureStore, limits: dict[str, Any], field: str
) -> None:
    with pytest.raises(TokenError, match=f"^{field} "):
        store.access.tokens.create("ci-bot", "admin", **limits)


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 101, "0123456789ab"])
def test_a_bad_name_is_refused_naming_it(store: FeatureStore, name: str) -> None:
    with pytest.raises(TokenError, match=r"^name "):
        store.access.tokens.create(name, "admin")


def test_of_concurrent_creates_of_one_name_exactly_one_wins(store: FeatureStore) -> None:
    tokens = store.access.tokens
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def create() -> None:
        start.wait()
        try:
            record, _ = tokens.create("ci-bot", "admin")
            outcomes.append(record.id)
        except TokenError as error:
            outcomes.append(error.message.split(":")[0])

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "name 'ci-bot'"]
    assert len(outcomes) == 6 and len(winners) == 1
    assert [t.id for t in tokens.list(include_revoked=True)] == winners


def test_an_expired_token_keeps_its_name_until_revoked(store: FeatureStore, clock: Clock) -> None:
    store.access.tokens.create("ci-bot", "admin", expires_in="1h")
    clock.advance(timedelta(hours=2))
    with pytest.raises(TokenError, match="revoke it first"):
        store.access.tokens.create("ci-bot", "admin")
    store.access.tokens.revoke("ci-bot")
    record, _ = store.access.tokens.create("ci-bot", "admin")
    assert record.created_at == T0 + timedelta(hours=2)


def test_a_token_of_another_project_is_unknown_here(
    store: FeatureStore, tmp_path: Path, clock: Clock
) -> None:
    _, text = store.access.tokens.create("ci-bot", "admin")
    other_root = tmp_path / "other"
    other_root.mkdir()
    config = (store.repo_path / "parity.yaml").read_text().replace(store.project, "other_proj")
    registry = store.config.registry.database_url(store.repo_path)
    if registry.startswith("sqlite"):  # the same database file, another project
        config += f"registry:\n  path: {registry.removeprefix('sqlite:///')}\n"
    (other_root / "parity.yaml").write_text(config)
    other = FeatureStore(other_root, clock=clock)
    assert other.config.registry.database_url(other_root) == registry  # one database
    try:
        with pytest.raises(Unauthenticated, match="unknown token"):
            other.access.tokens.authenticate(text, T0)
    finally:
        other.close()
