"""Alias moves over HTTP (uvicorn, a real SQLite or PostgreSQL registry): `GET
/v1/models/{m}/aliases`, `PUT` and `DELETE /v1/models/{m}/aliases/{alias}`. Writes answer 403
without auth unless the server has rollout control; `expected` is a compare-and-swap; every bad
input is a 4xx naming the field; servers follow a move within `alias_refresh_seconds`; a move of
a rollout's champion alias aborts the rollout at its next check, as a move from the CLI does."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pandas as pd
import pytest

from parity import FeatureStore, __version__
from parity.inference.app import create_model_app
from parity.inference.openapi import model_server_spec
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import TripsModel, running

SAMPLE = pd.DataFrame({"trips": [1.0, 2.0], "bonus": [0.0, 1.0]})
SCALES = {1: 10.0, 2: 11.0, 3: 12.0}  # ranker's versions: TripsModel(scale)
REFRESH = 0.5  # models.serving.alias_refresh_seconds of these servers


def alias_store(
    root: Path, *, auth: bool = False, registry: str = "", project: str = "demo"
) -> FeatureStore:
    """`ranker` versions 1-3 (champion at 1), `lonely` versions 1-2 without aliases."""
    extra = f"models: {{trusted: true, serving: {{alias_refresh_seconds: {REFRESH}}}}}\n"
    extra += "auth: {enabled: true}\n" if auth else ""
    path = write_repo(root / "repo", DRIVER_REPO, project=project, extra=extra + registry)
    store = FeatureStore(path)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    for name, versions in (("ranker", (1, 2, 3)), ("lonely", (1, 2))):
        for version in versions:
            store.models.register_model(
                name,
                TripsModel(SCALES[version]),
                flavor="pyfunc",
                feature_service="driver_service",
                sample_input=SAMPLE,
                alias="champion" if (name, version) == ("ranker", 1) else None,
            )
    return store


@dataclass
class Server:
    url: str
    store: FeatureStore
    token: str | None = None

    def call(self, method: str, path: str, body: Any = None, **options: Any) -> httpx.Response:
        headers = {} if self.token is None else {"authorization": f"Bearer {self.token}"}
        headers.update(options.pop("headers", {}))
        if "content" in options:
            return httpx.request(
                method, f"{self.url}{path}", headers=headers, timeout=30, **options
            )
        return httpx.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=30)

    def put(self, alias: str, body: Any, model: str = "ranker") -> httpx.Response:
        return self.call("PUT", f"/v1/models/{model}/aliases/{alias}", body)


@pytest.fixture
def control(tmp_path: Path) -> Iterator[Server]:
    """Auth off, started with rollout control (which also lets aliases move)."""
    store = alias_store(tmp_path)
    try:
        with running(create_model_app(store, enable_rollout_control=True)) as address:
            yield Server(f"http://{address}", store)
    finally:
        store.close()


@pytest.fixture
def readonly(tmp_path: Path) -> Iterator[Server]:
    store = alias_store(tmp_path)
    try:
        with running(create_model_app(store)) as address:
            yield Server(f"http://{address}", store)
    finally:
        store.close()


def assert_error(reply: httpx.Response, status: int, code: str, *named: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "code"} and body["code"] == code, body
    for text in named:
        assert text in body["error"], body


# --- reading -----------------------------------------------------------------------------------


def test_get_lists_each_alias_with_its_last_ten_moves(readonly: Server) -> None:
    models = readonly.store.models
    for i in range(12):  # champion: 1 (registered), then 12 moves alternating 2, 3
        models.set_alias("ranker", "champion", 2 + i % 2, reason=f"move {i}")
    models.set_alias("ranker", "staging", 3, reason="try it")
    models.set_alias("lonely", "champion", 1)  # another model's alias: not listed
    reply = readonly.call("GET", "/v1/models/ranker/aliases")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "ranker"
    assert [(a["alias"], a["version"]) for a in body["aliases"]] == [
        ("champion", 3),
        ("staging", 3),
    ]
    champion = body["aliases"][0]["history"]
    assert [e["reason"] for e in champion] == [f"move {i}" for i in range(2, 12)]
    assert [e["version"] for e in champion] == [2 + i % 2 for i in range(2, 12)]
    assert [e["previous"] for e in champion] == [2 + (i - 1) % 2 for i in range(2, 12)]
    assert body["aliases"][1]["history"][0] | {"moved_at": None} == {
        "project": "demo", "name": "ranker", "alias": "staging", "version": 3,
        "previous": None, "moved_at": None, "author": models.author, "reason": "try it",
    }  # fmt: skip


def test_get_of_a_model_without_aliases_and_of_an_unknown_model(readonly: Server) -> None:
    assert readonly.call("GET", "/v1/models/lonely/aliases").json() == {
        "model": "lonely",
        "aliases": [],
    }
    assert_error(readonly.call("GET", "/v1/models/nobody/aliases"), 404, "model_not_found")
    assert_error(
        readonly.call("GET", "/v1/models/ranker@champion/aliases"), 400, "invalid_model_ref"
    )


# --- moving and deleting -----------------------------------------------------------------------


def test_put_moves_the_alias_and_answers_the_move(control: Server) -> None:
    reply = control.put("champion", {"version": 2, "reason": "better AUC"})
    assert reply.status_code == 200, reply.text
    event = reply.json()
    assert {k: event[k] for k in ("name", "alias", "version", "previous", "reason")} == {
        "name": "ranker",
        "alias": "champion",
        "version": 2,
        "previous": 1,
        "reason": "better AUC",
    }
    assert control.store.models.aliases("ranker") == {"champion": 2}
    again = control.put("champion", {"version": 3.0, "expected": 2.0, "reason": "same number"})
    assert again.status_code == 200 and again.json()["version"] == 3, again.text  # JSON: 3.0 == 3
    last = control.store.models.history("ranker", "champion")[-2]
    assert (last.version, last.previous, last.reason) == (2, 1, "better AUC")
    assert event["moved_at"] == last.moved_at.isoformat()


def test_expected_is_a_compare_and_swap(control: Server) -> None:
    moved = control.put("champion", {"version": 2, "expected": 1, "reason": "r"})
    assert moved.status_code == 200, moved.text
    stale = control.put("champion", {"version": 3, "expected": 1, "reason": "r"})
    assert_error(stale, 409, "alias_moved")
    absent = control.put("champion", {"version": 3, "expected": None, "reason": "r"})
    assert_error(absent, 409, "alias_moved")
    assert control.store.models.aliases("ranker") == {"champion": 2}  # neither changed it
    missing = control.put("staging", {"version": 3, "expected": 2, "reason": "r"})
    assert_error(missing, 409, "alias_moved")  # expected 2, but there is no staging yet
    new = control.put("staging", {"version": 3, "expected": None, "reason": "first"})
    assert new.status_code == 200 and new.json()["previous"] is None, new.text
    assert control.store.models.aliases("ranker") == {"champion": 2, "staging": 3}


def test_delete_removes_the_alias_and_keeps_its_history(control: Server) -> None:
    reply = control.call("DELETE", "/v1/models/ranker/aliases/champion", {"reason": "retired"})
    assert reply.status_code == 200, reply.text
    assert (reply.json()["version"], reply.json()["previous"]) == (None, 1)
    assert control.store.models.aliases("ranker") == {}
    assert [e.version for e in control.store.models.history("ranker", "champion")] == [1, None]
    again = control.call("DELETE", "/v1/models/ranker/aliases/champion")  # no body: no reason
    assert_error(again, 404, "alias_not_found", "champion")


def test_unknown_models_and_versions_are_404(control: Server) -> None:
    for reply in (
        control.put("champion", {"version": 9, "reason": "r"}),
        control.put("champion", {"version": 1, "reason": "r"}, model="nobody"),
        control.call("DELETE", "/v1/models/nobody/aliases/champion"),
        control.call("DELETE", "/v1/models/lonely/aliases/champion"),
    ):
        assert reply.status_code == 404, reply.text
    codes = [
        control.put("champion", {"version": 9, "reason": "r"}).json()["code"],
        control.call("DELETE", "/v1/models/lonely/aliases/champion").json()["code"],
    ]
    assert codes == ["model_version_not_found", "alias_not_found"]
    assert control.store.models.aliases("ranker") == {"champion": 1}


GOOD = {"version": 2, "reason": "r"}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"version": "2", "reason": "r"}, "version"),  # text is refused, not read as 2
        ({"version": True, "reason": "r"}, "version"),  # a bool is not a version
        ({"version": 2.5, "reason": "r"}, "version"),
        ({"version": 1e300, "reason": "r"}, "version"),
        ({"version": 0, "reason": "r"}, "version"),
        ({"version": -1, "reason": "r"}, "version"),
        ({"version": 2**31, "reason": "r"}, "version"),
        ({"version": None, "reason": "r"}, "version"),
        ({"reason": "r"}, "version is required"),
        ({"version": 2, "expected": "1", "reason": "r"}, "expected"),
        ({"version": 2, "expected": False, "reason": "r"}, "expected"),
        ({"version": 2, "expected": 0, "reason": "r"}, "expected"),
        ({"version": 2}, "reason is required"),
        ({"version": 2, "reason": ""}, "reason"),
        ({"version": 2, "reason": 5}, "reason"),
        ({"version": 2, "reason": "x" * 1001}, "reason"),
        ({"version": 2, "reason": "a\x00b"}, "NUL"),
        ({**GOOD, "alias": "prod"}, "alias: not a field"),
        ({**GOOD, "Version": 3}, "Version: not a field"),
        ([GOOD], "body"),
        ("2", "body"),
        (None, "version is required"),  # null body: no fields
    ],
)
def test_bad_put_bodies_are_400_naming_the_field(control: Server, body: Any, named: str) -> None:
    assert_error(control.put("champion", body), 400, "bad_request", named)
    assert control.store.models.aliases("ranker") == {"champion": 1}


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v1/models/ranker/aliases/latest", "'latest' is reserved"),
        ("/v1/models/ranker/aliases/bad%20alias", "alias 'bad alias'"),
        ("/v1/models/ranker/aliases/9lives", "alias '9lives'"),
        ("/v1/models/ranker@champion/aliases/staging", "model name"),
    ],
)
def test_bad_names_in_the_path_are_400(control: Server, path: str, named: str) -> None:
    assert_error(control.call("PUT", path, GOOD), 400, "invalid_model_ref", named)


def test_bodies_that_are_not_json_are_400(control: Server) -> None:
    path = "/v1/models/ranker/aliases/champion"
    for raw in (b"{", b"\xff\xfe", b"[" * 100_000):
        reply = control.call("PUT", path, content=raw)
        assert_error(reply, 400, "bad_request", "body")
    lone = control.call("PUT", path, content=b'{"version": 2, "reason": "\\ud800"}')
    assert_error(lone, 400, "bad_request", "reason", "surrogates")  # JSON allows it; SQL does not
    reply = control.call("DELETE", path, content=b'{"reason": "r", "version": 1}')
    assert_error(reply, 400, "bad_request", "version: not a field")


def test_writes_answer_403_without_rollout_control_and_reads_still_work(
    readonly: Server,
) -> None:
    for reply in (
        readonly.put("champion", GOOD),
        readonly.call("DELETE", "/v1/models/ranker/aliases/champion"),
    ):
        assert_error(reply, 403, "rollout_control_disabled", "--enable-rollout-control")
    assert readonly.store.models.aliases("ranker") == {"champion": 1}
    assert readonly.call("GET", "/v1/models/ranker/aliases").status_code == 200


def test_wrong_methods_answer_405_with_allow(readonly: Server) -> None:
    reply = readonly.call("GET", "/v1/models/ranker/aliases/champion")
    assert_error(reply, 405, "method_not_allowed")
    assert reply.headers["allow"] == "PUT, DELETE"
    reply = readonly.call("POST", "/v1/models/ranker/aliases", GOOD)
    assert reply.headers["allow"] == "GET"


# --- concurrency, serving, rollouts ------------------------------------------------------------


def _race(server: Server, rounds: int = 4) -> None:
    """Two PUTs with the same `expected`, released together: exactly one moves the alias."""
    current = server.store.models.aliases("ranker")["champion"]
    for _ in range(rounds):
        targets = [v for v in (1, 2, 3) if v != current]
        start = threading.Barrier(2)
        replies: dict[int, httpx.Response] = {}

        def move(
            version: int, expected: int, start: threading.Barrier, replies: dict[int, Any]
        ) -> None:
            start.wait()
            body = {"version": version, "expected": expected, "reason": "race"}
            replies[version] = server.put("champion", body)

        threads = [
            threading.Thread(target=move, args=(v, current, start, replies)) for v in targets
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = sorted(r.status_code for r in replies.values())
        assert statuses == [200, 409], [r.text for r in replies.values()]
        winner = next(v for v, r in replies.items() if r.status_code == 200)
        loser = next(r for r in replies.values() if r.status_code == 409)
        assert loser.json()["code"] == "alias_moved"
        assert server.store.models.aliases("ranker")["champion"] == winner
        current = winner


def test_two_puts_with_the_same_expected_one_wins_one_gets_409(control: Server) -> None:
    _race(control)


def _served(server: Server) -> tuple[int, float]:
    body = {"entities": [{"driver_id": 99}], "request_context": {"bonus": [0.5]}}
    reply = server.call("POST", "/v1/models/ranker@champion/predict", body)
    assert reply.status_code == 200, reply.text
    return int(reply.headers["x-parity-model-version"]), reply.json()["predictions"][0]


def test_the_served_version_follows_the_move_within_the_refresh(control: Server) -> None:
    assert _served(control) == (1, -1 * SCALES[1] + 0.5)  # driver 99 is unknown: trips -1
    assert control.put("champion", {"version": 3, "reason": "r"}).status_code == 200
    moved = time.monotonic()
    while (served := _served(control))[0] != 3:
        assert time.monotonic() - moved < REFRESH + 2.0, "the move was not seen in time"
        time.sleep(0.05)
    assert served == (3, -1 * SCALES[3] + 0.5)


@pytest.mark.parametrize("how", ["http", "python"])
def test_moving_a_rollouts_champion_aborts_it_at_its_next_check_as_the_python_api_does(
    control: Server, how: str
) -> None:
    rollouts = control.store.rollouts
    rollouts.start(model="ranker", candidate=2, actor="test")
    if how == "http":
        assert control.put("champion", {"version": 3, "reason": "hotfix"}).status_code == 200
    else:
        control.store.models.set_alias("ranker", "champion", 3, reason="hotfix")
    rollouts.step(now=datetime.now(UTC) + timedelta(days=1))
    state = rollouts.status("ranker")
    assert state.status == "aborted", state
    assert "moved during the rollout" in state.reason and "version 3" in state.reason
    assert control.store.models.aliases("ranker") == {"champion": 3}  # left where it was put


# --- the audit trail and auth ------------------------------------------------------------------


def test_without_auth_a_move_is_audited_as_the_callers_address(control: Server) -> None:
    assert control.put("champion", {"version": 2, "reason": "audited"}).status_code == 200
    records = control.store.access.audit.query(action="models.alias", actor="http:127.0.0.1")
    assert len(records) == 1
    assert records[0].target == "ranker" and records[0].actor.origin == "127.0.0.1"
    assert records[0].detail == {
        "alias": "champion",
        "version": 2,
        "previous": 1,
        "reason": "audited",
    }


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Server]:
    """Auth on, no rollout control flag: the scopes decide."""
    store = alias_store(tmp_path, auth=True)
    try:
        with running(create_model_app(store)) as address:
            yield Server(f"http://{address}", store)
    finally:
        store.close()


def test_with_auth_models_write_on_the_model_decides_and_the_token_is_the_actor(
    secured: Server,
) -> None:
    tokens = secured.store.access.tokens

    def as_token(scopes: str) -> Server:
        _, text = tokens.create(f"t-{uuid.uuid4().hex[:8]}", scopes)
        return Server(secured.url, secured.store, text)

    assert_error(secured.put("champion", GOOD), 401, "unauthenticated")
    for scopes in ("models:read:ranker", "models:write:lonely", "rollouts:admin:ranker"):
        assert_error(as_token(scopes).put("champion", GOOD), 403, "forbidden", "models:write")
    reader = as_token("models:read:ranker")
    assert reader.call("GET", "/v1/models/ranker/aliases").status_code == 200
    assert_error(reader.call("GET", "/v1/models/lonely/aliases"), 403, "forbidden")
    assert secured.store.models.aliases("ranker") == {"champion": 1}
    bot = Server(secured.url, secured.store, tokens.create("ci-bot", "models:write:ranker")[1])
    assert bot.put("champion", {"version": 2, "reason": "ci"}).status_code == 200
    assert bot.call("DELETE", "/v1/models/ranker/aliases/champion").status_code == 200
    records = secured.store.access.audit.query(action="models.alias", target="ranker")
    assert [(r.actor.name, r.actor.kind, r.detail["version"]) for r in records] == [
        ("ci-bot", "token", None),  # newest first
        ("ci-bot", "token", 2),
        (secured.store.access.audit.query(action="models.register")[0].actor.name, "user", 1),
    ]  # the last: set by register_model in this process, as its local user
    # The alias's own history names the token too, not the server process's user.
    moves = secured.store.models.history("ranker", "champion")
    assert [(m.version, m.author) for m in moves[-2:]] == [(2, "ci-bot"), (None, "ci-bot")]


def test_the_spec_declares_the_alias_routes() -> None:
    spec = model_server_spec(__version__)
    item = spec["paths"]["/v1/models/{model_name}/aliases/{alias}"]
    assert set(item) == {"parameters", "put", "delete"}
    assert {"200", "400", "403", "404", "409"} <= set(item["put"]["responses"])
    assert "get" in spec["paths"]["/v1/models/{model_name}/aliases"]
    secured = model_server_spec(__version__, secured=True)
    put = secured["paths"]["/v1/models/{model_name}/aliases/{alias}"]["put"]
    assert put["security"] == [{"bearer": []}] and "401" in put["responses"]


@pytest.mark.postgres
def test_moves_and_the_race_on_postgresql(
    tmp_path: Path, postgres_url: str, project_name: str
) -> None:
    registry = f"registry:\n  type: postgres\n  url: {postgres_url}\n"
    store = alias_store(tmp_path, registry=registry, project=project_name)
    try:
        with running(create_model_app(store, enable_rollout_control=True)) as address:
            server = Server(f"http://{address}", store)
            assert server.put("staging", {"version": 2, "reason": "pg"}).status_code == 200
            nul = server.put("staging", {"version": 3, "reason": "a\x00b"})
            assert_error(nul, 400, "bad_request", "NUL")  # refused before PostgreSQL sees it
            _race(server)
            listed = server.call("GET", "/v1/models/ranker/aliases").json()["aliases"]
            assert {a["alias"]: a["version"] for a in listed} == store.models.aliases("ranker")
            assert len(listed[0]["history"]) == 5  # registered, then four races won
            deleted = server.call("DELETE", "/v1/models/ranker/aliases/staging")
            assert deleted.status_code == 200, deleted.text
            assert store.models.aliases("ranker").keys() == {"champion"}
    finally:
        store.close()


def test_a_ci_bot_promotes_through_parity_serve_models_with_auth_on(tmp_path: Path) -> None:
    """The whole story in a real `parity serve-models` process: a token with models:write:ranker
    moves the champion (no --enable-rollout-control), the server then serves the new version, and
    the audit trail names the bot."""
    from tests.inference.test_rollout_http_serve import _serve_models, _stop

    store = alias_store(tmp_path, auth=True)
    _, bot = store.access.tokens.create("ci-bot", "models:write:ranker models:predict:ranker")
    server, line, url = _serve_models(store.repo_path, "--no-rollout-controller")
    try:
        assert "auth on" in line, line
        client = Server(url, store, bot)
        assert _served(client) == (1, -1 * SCALES[1] + 0.5)
        moved = client.put("champion", {"version": 2, "expected": 1, "reason": "nightly eval"})
        assert moved.status_code == 200, moved.text
        assert_error(
            client.put("champion", {"version": 3, "reason": "r"}, "lonely"), 403, "forbidden"
        )
        start = time.monotonic()
        while _served(client)[0] != 2:
            assert time.monotonic() - start < REFRESH + 2.0, "the move was not seen in time"
            time.sleep(0.05)
        assert _served(client) == (2, -1 * SCALES[2] + 0.5)
    finally:
        _stop(server)
    (record,) = store.access.audit.query(action="models.alias", actor="ci-bot")
    assert record.detail == {
        "alias": "champion",
        "version": 2,
        "previous": 1,
        "reason": "nightly eval",
    }
    assert store.models.aliases("ranker") == {"champion": 2}
    store.close()
