"""The UI's app shell, as its own parts: static files (only the package's own, with a strict CSP),
the redirect, errors in the standard shape, the session routes, the background tasks, and the UI
mounted in front of the feature server (`parity serve --ui`) and served alone (`parity ui`)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from parity import FeatureStore
from parity.errors import InvalidOption
from parity.ui.app import CSP, create_ui_app
from parity.ui.routes import UI_ROUTES
from parity.ui.tasks import DONE, FAILED, RUNNING, Tasks
from tests.conftest import DRIVER_REPO, write_repo
from tests.e2e.test_auth_servers import _serving
from tests.ui.world import World

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.fixture
def client(driver_repo: Path) -> TestClient:
    store = FeatureStore(driver_repo)
    store.apply()
    with TestClient(create_ui_app(store)) as test_client:
        yield test_client
    store.close()


def _static_file(tmp_name: str, text: str) -> Path:
    from importlib import resources

    path = Path(str(resources.files("parity.ui") / "static")) / tmp_name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_the_root_redirects_to_the_pages(client: TestClient) -> None:
    reply = client.get("/", follow_redirects=False)
    assert reply.status_code == 307 and reply.headers["location"] == "/ui/"


def test_static_files_come_with_their_type_and_a_csp_that_forbids_other_origins(
    client: TestClient,
) -> None:
    path = _static_file("zz_test_asset.js", "console.log('x');\n")
    try:
        reply = client.get("/ui/static/zz_test_asset.js")
        assert reply.status_code == 200 and reply.text == "console.log('x');\n"
        assert reply.headers["content-type"].startswith("text/javascript")
        assert reply.headers["content-security-policy"] == CSP
        assert "default-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert reply.headers["x-content-type-options"] == "nosniff"
    finally:
        path.unlink()


@pytest.mark.parametrize(
    "name",
    [
        "..%2F__init__.py",
        "%2E%2E%2Fapp.py",
        "..%2F..%2Fpyproject.toml",
        ".hidden.js",
        "app.py",
        "missing.js",
        "noext",
        # ("..": the client resolves /ui/static/.. to /ui/ before sending it: the page shell.)
    ],
)
def test_only_the_packages_own_assets_are_served(client: TestClient, name: str) -> None:
    reply = client.get(f"/ui/static/{name}")
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"]["code"] == "not_found"


def test_unknown_api_routes_and_methods_answer_in_the_error_shape(client: TestClient) -> None:
    reply = client.get("/ui/api/no-such-thing")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
    reply = client.delete("/ui/api/health")
    assert reply.status_code == 405 and reply.json()["error"]["code"] == "method_not_allowed"


def test_whoami_with_auth_off_says_so_and_that_actions_need_the_flag(driver_repo: Path) -> None:
    store = FeatureStore(driver_repo)
    store.apply()
    try:
        for enabled in (False, True):
            with TestClient(create_ui_app(store, enable_actions=enabled)) as test_client:
                body = test_client.get("/ui/api/whoami").json()
            assert body == {
                "secured": False,
                "name": None,
                "scopes": [],
                "actions": enabled,
                "project": "demo",
            }
    finally:
        store.close()


def test_whoami_with_auth_on_names_the_token_and_its_scopes(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", DRIVER_REPO, extra="auth: {enabled: true}\n")
    store = FeatureStore(repo)
    store.apply()
    _, reader = store.access.tokens.create("reader", "features:read models:read:fraud")
    _, admin = store.access.tokens.create("operator", "rollouts:admin:fraud")
    try:
        with TestClient(create_ui_app(store)) as test_client:
            assert test_client.get("/ui/api/whoami").status_code == 401
            assert test_client.get("/ui/api/health").status_code == 200
            body = test_client.get("/ui/api/whoami", headers=_bearer(reader)).json()
            assert body["secured"] and body["name"] == "reader" and not body["actions"]
            assert body["scopes"] == ["features:read", "models:read:fraud"]
            body = test_client.get("/ui/api/whoami", headers=_bearer(admin)).json()
            assert body["actions"] and body["name"] == "operator"
            # the pages themselves are open: they hold no data
            assert test_client.get("/", follow_redirects=False).status_code == 307
            assert test_client.get("/ui/static/missing.js").status_code == 404
    finally:
        store.close()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_the_overview_counts_what_the_registry_holds(fraud_world: World) -> None:
    store = fraud_world.store
    with TestClient(create_ui_app(store)) as test_client:
        body = test_client.get("/ui/api/overview").json()
    catalog = store.registry.catalog
    # on-demand views too: the tile links to the catalog's list of views, which holds them
    views, on_demand = catalog.feature_views.values(), catalog.on_demand_feature_views.values()
    assert body["project"] == store.project
    assert body["registry_version"] == store.registry.version
    assert (
        body["feature_views"] == len(views) + len(on_demand) == len(store.list_feature_views()) + 1
    )
    features = sum(len(v.features) for v in views) + sum(len(v.fields) for v in on_demand)
    assert body["features"] == features
    assert body["feature_services"] == len(store.list_feature_services())
    assert body["entities"] == 2 and body["models"] == 1  # account, device; fraud
    assert body["active_rollouts"] == 0  # the loop's rollout was promoted


def test_every_api_route_of_the_app_has_a_rule(client: TestClient) -> None:
    """Every operation of the spec (the JSON routes) and every page route has an access rule."""
    from parity.serving.auth.rules import find_rule

    spec = client.get("/ui/api/openapi.json").json()
    operations = [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    ]
    assert ("GET", "/ui/api/whoami") in operations and ("GET", "/ui/api/overview") in operations
    pages = [("GET", "/"), ("GET", "/ui"), ("GET", "/ui/"), ("GET", "/ui/static/app.js")]
    for method, path in operations + pages:
        assert find_rule(UI_ROUTES, method, path), f"{method} {path}: no rule"


# --- background tasks ---------------------------------------------------------------------------


def test_a_task_reports_progress_then_its_result() -> None:
    tasks = Tasks(lambda: NOW)
    release = threading.Event()
    seen = threading.Event()

    def work(progress):  # type: ignore[no-untyped-def]
        progress("reading", 1, 4)
        seen.set()
        release.wait(10)
        progress("comparing", 3, 4)
        return {"pairs": 2}

    started = tasks.start("scan", "", work)
    assert started.state == RUNNING and started.started_at == NOW
    assert seen.wait(10)
    now = tasks.latest("scan")
    assert now is not None and (now.phase, now.done, now.total) == ("reading", 1, 4)
    again = tasks.start("scan", "", lambda progress: 1 / 0)  # a second start: the running one
    assert again.id == started.id
    release.set()
    _until(lambda: tasks.latest("scan").state == DONE)  # type: ignore[union-attr]
    done = tasks.latest("scan")
    assert done is not None and done.result == {"pairs": 2} and done.finished_at == NOW
    assert done.phase == "done" and done.error is None
    assert tasks.latest("scan", "other") is None


def test_a_failed_task_says_why_and_a_new_start_runs_again() -> None:
    tasks = Tasks(lambda: NOW)
    tasks.start("scan", "k", lambda progress: _raise(InvalidOption("sample_rows: too many")))
    _until(lambda: tasks.latest("scan", "k").state == FAILED)  # type: ignore[union-attr]
    failed = tasks.latest("scan", "k")
    assert failed is not None and failed.error == "sample_rows: too many"
    tasks.start("scan", "k", lambda progress: 7)
    _until(lambda: tasks.latest("scan", "k").state == DONE)  # type: ignore[union-attr]
    assert tasks.latest("scan", "k").result == 7  # type: ignore[union-attr]


def _raise(error: Exception) -> None:
    raise error


def _until(condition, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


# --- as processes -------------------------------------------------------------------------------


@pytest.mark.slow
def test_parity_ui_serves_the_api_and_prints_the_pages(driver_repo: Path) -> None:
    FeatureStore(driver_repo).apply()
    with _serving("ui", driver_repo, "/ui/api/health") as served:
        overview = httpx.get(f"{served.url}/ui/api/overview", timeout=10)
        assert overview.status_code == 200 and overview.json()["feature_views"] == 1
        assert httpx.get(f"{served.url}/", timeout=10).status_code == 307
    assert "/ui/#/catalog" in served.said and "/ui/#/rollouts" in served.said
    assert "read-only, rollout actions refused" in served.said


@pytest.mark.slow
def test_parity_serve_with_ui_serves_both_on_one_port(driver_repo: Path) -> None:
    store = FeatureStore(driver_repo)
    store.apply()
    store.materialize(datetime(2025, 12, 31, tzinfo=UTC), NOW, ["driver_stats"])
    store.close()
    with _serving("serve", driver_repo, "/health", "--ui") as served:
        lookup = {"features": ["driver_stats:trips"], "entities": {"driver_id": [1]}}
        reply = httpx.post(f"{served.url}/get-online-features", json=lookup, timeout=10)
        assert reply.status_code == 200, reply.text
        ui = httpx.get(f"{served.url}/ui/api/overview", timeout=10)
        assert ui.status_code == 200 and ui.json()["project"] == "demo"
        assert httpx.get(f"{served.url}/ui/api/nothing", timeout=10).status_code == 404
    assert f"{served.url}/ui/" in served.said


def test_parity_serve_with_ui_refuses_several_workers(driver_repo: Path) -> None:
    from typer.testing import CliRunner

    from parity.cli.main import app

    result = CliRunner().invoke(
        app, ["serve", "--repo", str(driver_repo), "--ui", "--workers", "2"]
    )
    assert result.exit_code != 0
    assert "--ui" in result.output and "parity ui" in result.output


def test_the_api_answers_are_not_kept_by_caches_and_huge_values_are_not_echoed(
    client: TestClient,
) -> None:
    reply = client.get("/ui/api/overview")
    assert reply.headers["cache-control"] == "no-store"
    reply = client.post("/ui/api/consistency/driver_service", json={"since": "x" * 100_000})
    assert reply.status_code == 422, reply.text[:300]
    assert "since" in reply.json()["error"]["message"] and len(reply.text) < 2_000
