"""The UI's scope matrix, generated from its route table as the servers' is (tests/serving/auth/
test_scope_matrix.py, whose cases and checks it reuses): every rule over real HTTP (uvicorn, the
fraud world's registry with auth on, real tokens) with no token, a wrong, a revoked and an
expired token, one lacking the scope, one narrowed to another name, and the right one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from parity import FeatureStore
from parity.serving.auth.rules import RouteRule
from parity.ui.app import create_ui_app
from parity.ui.routes import UI_ROUTES
from tests.inference.serving_helpers import running
from tests.serving.auth.test_scope_matrix import Clock, Example, Minted, _check, _ok
from tests.ui.world import World

API = "/ui/api"
_ACTION = _ok(200, 404, 409)  # the rollout's state decides (the loop's rollout is over)
UI_EXAMPLES = {
    ("GET", "/"): Example("/", ok=_ok(307)),
    ("GET", "/ui"): Example("/ui", ok=_ok(200)),
    ("GET", "/ui/static/{file}"): Example("/ui/static/app.js"),
    ("GET", f"{API}/health"): Example(f"{API}/health"),
    ("GET", f"{API}/openapi.json"): Example(f"{API}/openapi.json"),
    ("GET", f"{API}/whoami"): Example(f"{API}/whoami"),
    ("GET", f"{API}/overview"): Example(f"{API}/overview"),
    ("GET", f"{API}/search"): Example(f"{API}/search?q=txn_stats", name="account_txn_stats"),
    ("GET", f"{API}/entities/{{name}}"): Example(f"{API}/entities/account"),
    ("GET", f"{API}/views/{{name}}"): Example(
        f"{API}/views/account_txn_stats", name="account_txn_stats"
    ),
    ("GET", f"{API}/services/{{name}}"): Example(
        f"{API}/services/fraud_model_v1", name="fraud_model_v1"
    ),
    ("GET", f"{API}/features/{{view}}/{{feature}}"): Example(
        f"{API}/features/account_txn_stats/txn_count_7d", name="account_txn_stats"
    ),
    ("GET", f"{API}/lineage"): Example(f"{API}/lineage"),
    ("GET", f"{API}/registry/versions"): Example(f"{API}/registry/versions"),
    ("GET", f"{API}/registry/versions/{{version}}"): Example(f"{API}/registry/versions/1"),
    ("GET", f"{API}/duplicates"): Example(f"{API}/duplicates"),
    ("POST", f"{API}/duplicates"): Example(f"{API}/duplicates", {}, ok=_ok(200, 202)),
    ("GET", f"{API}/models"): Example(f"{API}/models", name="fraud"),
    ("GET", f"{API}/models/{{model}}"): Example(f"{API}/models/fraud", name="fraud"),
    ("GET", f"{API}/models/{{model}}/aliases"): Example(
        f"{API}/models/fraud/aliases", name="fraud"
    ),
    ("GET", f"{API}/rollouts"): Example(f"{API}/rollouts", name="fraud"),
    ("GET", f"{API}/rollouts/{{model}}"): Example(f"{API}/rollouts/fraud", name="fraud"),
    **{
        ("POST", f"{API}/rollouts/{{model}}/{action}"): Example(
            f"{API}/rollouts/fraud/{action}", {"reason": "matrix"}, "fraud", _ACTION
        )
        for action in ("pause", "resume", "promote", "abort")
    },
    ("GET", f"{API}/monitoring"): Example(f"{API}/monitoring", name="fraud"),
    ("GET", f"{API}/monitoring/{{model}}/drift"): Example(
        f"{API}/monitoring/fraud/drift", name="fraud"
    ),
    ("GET", f"{API}/monitoring/{{model}}/performance"): Example(
        f"{API}/monitoring/fraud/performance", name="fraud"
    ),
    ("GET", f"{API}/monitoring/{{model}}/triggers"): Example(
        f"{API}/monitoring/fraud/triggers", name="fraud"
    ),
    ("GET", f"{API}/alerts"): Example(f"{API}/alerts", name="fraud"),
    ("GET", f"{API}/consistency/{{service}}"): Example(
        f"{API}/consistency/fraud_model_v1", name="fraud_model_v1"
    ),
    ("POST", f"{API}/consistency/{{service}}"): Example(
        f"{API}/consistency/fraud_model_v1", {}, "fraud_model_v1", _ok(200, 202)
    ),
}


@dataclass
class Ui:
    url: str
    mint: Minted


@pytest.fixture(scope="module")
def ui(fraud_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("ui-matrix") / "fraud_detection"
    shutil.copytree(fraud_world.root, root)
    config = root / "parity.yaml"
    config.write_text(config.read_text() + "auth: {enabled: true}\n")
    clock = Clock()
    owner, served = FeatureStore(root, clock=clock), FeatureStore(root, clock=clock)
    try:
        with running(create_ui_app(served)) as address:
            yield Ui(f"http://{address}", Minted(owner, clock))
    finally:
        owner.close()
        served.close()


@pytest.mark.parametrize("rule", UI_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_the_ui_enforces_its_route_table(ui: Ui, rule: RouteRule) -> None:
    example = UI_EXAMPLES[(rule.method, rule.path)]  # a new rule needs its example here
    _check(ui.url, rule, example, ui.mint)


def test_every_ui_rule_has_an_example_and_every_example_a_rule() -> None:
    assert set(UI_EXAMPLES) == {(r.method, r.path) for r in UI_ROUTES}
