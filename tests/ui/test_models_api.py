"""GET /ui/api/models, /models/{model} and /models/{model}/aliases on the fraud world: the list,
each version's metrics, signature and lineage (checked against the training sets' Parquet files
and the loop's job), and the alias timeline against a hand-worked list of the loop's moves and
the registry's own `alias_at` at many instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from parity.examples.fraud.model import FEATURES, REQUEST_INPUTS
from parity.ui.app import create_ui_app
from tests.ui.world import END, ROLLBACK_REASON, World

API = "/ui/api"
# The loop's moves (lifecycle_sim with seed 5): the training job registers fraud/2 as
# fraud@candidate on 2026-04-18 07:00, the rollout promotes it (the alias move is recorded at the
# loop's clock, 07:00, while the rollout's own clock says 07:48), and the world rolls the
# champion back one hour after the loop ends.
RETRAIN_AT = datetime(2026, 4, 18, 7, 0, tzinfo=UTC)
ROLLBACK_AT = datetime(2026, 4, 21, 8, 48, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(fraud_world: World) -> TestClient:
    return TestClient(create_ui_app(fraud_world.store))


def get(client: TestClient, path: str, status: int = 200) -> Any:
    response = client.get(API + path)
    assert response.status_code == status, response.text
    return response.json()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_the_world_is_the_one_these_tests_assume(fraud_world: World) -> None:
    assert fraud_world.result.end + timedelta(hours=1) == ROLLBACK_AT
    assert fraud_world.result.candidate is not None
    assert fraud_world.result.candidate.version == 2
    assert fraud_world.rolled_back == 1


def test_models_list_has_fraud_with_its_versions_aliases_and_no_active_rollout(
    client: TestClient, fraud_world: World
) -> None:
    body = get(client, "/models")
    assert body == {
        "models": [
            {
                "name": "fraud",
                "versions": 2,
                "latest": 2,
                "aliases": {"candidate": 2, "champion": 1},
                "active_rollout": None,
                "updated_at": body["models"][0]["updated_at"],
                "url": "#/model/fraud",
            }
        ]
    }
    # the newest change: fraud/1's registration (recorded on the wall clock, after the loop's
    # simulated weeks) or the rollback, whichever is later
    first = fraud_world.result.champion.created_at
    updated = datetime.fromisoformat(body["models"][0]["updated_at"])
    assert updated >= max(first, ROLLBACK_AT)
    assert updated - max(first, ROLLBACK_AT) < timedelta(minutes=1)


def test_model_versions_newest_first_with_metrics_signature_and_aliases(
    client: TestClient, fraud_world: World
) -> None:
    body = get(client, "/models/fraud")
    assert body["name"] == "fraud"
    assert body["aliases"] == {"candidate": 2, "champion": 1}
    assert body["url"] == "#/model/fraud"
    two, one = body["versions"]
    assert (two["version"], one["version"]) == (2, 1)
    assert (two["aliases"], one["aliases"]) == (["candidate"], ["champion"])
    assert not two["deleted"] and not one["deleted"]
    assert two["registered_at"] == iso(RETRAIN_AT)
    assert one["metrics"] == fraud_world.result.champion.metrics
    job = fraud_world.result.jobs[0]
    assert two["metrics"] == pytest.approx(job.result["metrics"])
    for version in (one, two):
        assert version["flavor"] == "pyfunc"
        assert [f["name"] for f in version["signature"]["inputs"]] == [*FEATURES, *REQUEST_INPUTS]
        assert {f["dtype"] for f in version["signature"]["inputs"]} == {"float64"}
        assert version["signature"]["outputs"] == [{"name": "output", "dtype": "float64"}]
        assert version["url"] == f"#/model/fraud?version={version['version']}"


def parquet_facts(root: Path, path: str) -> tuple[int, list[str]]:
    file = Path(path) if Path(path).is_absolute() else root / path
    return pq.read_metadata(file).num_rows, pq.read_schema(file).names


def test_lineage_names_the_training_set_its_features_fingerprint_code_and_job(
    client: TestClient, fraud_world: World
) -> None:
    two, one = get(client, "/models/fraud")["versions"]
    job = fraud_world.result.jobs[0]
    expected = {1: ("fraud_train_v1", None), 2: (f"fraud_training_{job.id}", job)}
    for version in (one, two):
        dataset, made_by = expected[version["version"]]
        lineage = version["lineage"]
        assert lineage["dataset"] == dataset
        assert lineage["feature_service"] == "fraud_model_v1"
        assert lineage["feature_service_url"] == "#/service/fraud_model_v1"
        record = fraud_world.store.datasets.get(dataset)
        rows, columns = parquet_facts(fraud_world.root, record.path)
        assert lineage["dataset_rows"] == rows
        # each feature is a column of the training set's file, named view:feature
        assert [ref.split(":")[1] for ref in lineage["features"]] == [
            c for c in columns if c in FEATURES
        ]
        assert all(ref.count(":") == 1 for ref in lineage["features"])
        assert lineage["training_fingerprint"] == record.fingerprint
        assert lineage["registry_version"] == 1
        assert lineage["code"] is None or len(lineage["code"].removesuffix("-dirty")) == 40
        if made_by is None:
            assert lineage["job"] is None
        else:
            assert lineage["job"] == {"id": made_by.id, "name": "fraud_training"}


def hand_worked_moves(fraud_world: World) -> list[dict[str, Any]]:
    registered = fraud_world.result.champion.created_at  # fraud/1, on the wall clock
    return [
        ("champion", 1, None, registered, "set", "registered fraud/1"),
        ("candidate", 2, None, RETRAIN_AT, "set", "registered fraud/2"),
        ("champion", 2, 1, RETRAIN_AT, "moved", "rollout fraud-1"),
        ("champion", 1, 2, ROLLBACK_AT, "rollback", ROLLBACK_REASON),
    ]


def test_alias_events_are_the_loops_moves_with_their_kinds(
    client: TestClient, fraud_world: World
) -> None:
    events = get(client, "/models/fraud/aliases")["events"]
    expected = hand_worked_moves(fraud_world)
    assert len(events) == len(expected)
    for event, (alias, version, previous, moment, kind, reason) in zip(
        events, expected, strict=True
    ):
        assert (event["alias"], event["version"], event["previous"]) == (alias, version, previous)
        assert event["kind"] == kind
        assert event["reason"].startswith(reason)
        got = datetime.fromisoformat(event["at"])
        assert moment <= got < moment + timedelta(seconds=5)
    assert events[2]["actor"] == "controller:rollout-sim"


def test_alias_timeline_segments_run_from_move_to_move_in_time_order(
    client: TestClient, fraud_world: World
) -> None:
    body = get(client, "/models/fraud/aliases")
    registered = datetime.fromisoformat(body["events"][0]["at"])
    # champion's three moves, by time: each holds until the next. The world registers fraud/1
    # before opening its simulated clock, so that move carries the wall clock's time (after the
    # simulated weeks today; before them if the world is ever built on its simulated clock).
    moves = sorted(
        [
            (registered, 1, "registered fraud/1"),
            (RETRAIN_AT, 2, "rollout fraud-1"),
            (ROLLBACK_AT, 1, ROLLBACK_REASON),
        ]
    )
    ends: list[datetime | None] = [m[0] for m in moves[1:]]
    champion = [(v, t, end, why) for (t, v, why), end in zip(moves, [*ends, None], strict=True)]
    timeline = body["timeline"]
    assert [s["alias"] for s in timeline] == ["candidate", "champion", "champion", "champion"]
    assert (timeline[0]["version"], timeline[0]["start"], timeline[0]["end"]) == (
        2,
        iso(RETRAIN_AT),
        None,
    )
    for segment, (version, start, end, reason) in zip(timeline[1:], champion, strict=True):
        assert segment["version"] == version
        assert datetime.fromisoformat(segment["start"]) == start
        if end is None:
            assert segment["end"] is None
        else:
            assert datetime.fromisoformat(segment["end"]) == end
        assert segment["reason"].startswith(reason)


def instants(fraud_world: World, body: dict[str, Any]) -> list[datetime]:
    moves = [datetime.fromisoformat(e["at"]) for e in body["events"]]
    near = [m + d for m in moves for d in (timedelta(microseconds=-1), timedelta(0))]
    near += [m + timedelta(seconds=1) for m in moves]
    daily = [END - timedelta(days=70) + timedelta(days=d) for d in range(0, 300, 3)]
    return sorted(set(near + daily))


def test_at_answers_which_version_each_alias_named_as_alias_at_does(
    client: TestClient, fraud_world: World
) -> None:
    body = get(client, "/models/fraud/aliases")
    for moment in instants(fraud_world, body):
        answer = get(client, f"/models/fraud/aliases?at={iso(moment).replace('+', '%2B')}")
        assert datetime.fromisoformat(answer["at"]) == moment
        for alias in ("champion", "candidate"):
            found = fraud_world.store.models.alias_at("fraud", alias, moment)
            assert answer["at_versions"][alias] == (None if found is None else found.version)


def test_at_on_hand_picked_dates(client: TestClient, fraud_world: World) -> None:
    def at(text: str) -> dict[str, Any]:
        return get(client, f"/models/fraud/aliases?at={text}")["at_versions"]  # type: ignore[no-any-return]

    # mid-March, during the loop: champion is 1 only if fraud/1's registration is recorded
    # before it (the world registers it on the wall clock)
    registered = fraud_world.result.champion.created_at
    early = 1 if registered <= datetime(2026, 3, 15, tzinfo=UTC) else None
    assert at("2026-03-15") == {"champion": early, "candidate": None}
    assert at("2026-04-19T12:00:00Z") == {"champion": 2, "candidate": 2}  # after the promotion
    assert at("2026-04-21T08:47:59Z") == {"champion": 2, "candidate": 2}
    assert at("2026-04-21T08:48:00Z") == {"champion": 1, "candidate": 2}  # the rollback
    assert at("2026-05-01") == {"champion": 1, "candidate": 2}


def test_at_defaults_to_the_stores_clock(client: TestClient, fraud_world: World) -> None:
    body = get(client, "/models/fraud/aliases")
    assert datetime.fromisoformat(body["at"]) == fraud_world.store.now()
    assert get(client, "/models/fraud/aliases?at=now")["at"] == body["at"]


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2026-13-01", "1767268800", "", "nan", "inf", "2026-01-01T25:00", "x" * 5000],
)
def test_a_bad_at_is_a_422_naming_the_field(client: TestClient, value: str) -> None:
    body = get(client, f"/models/fraud/aliases?at={value}", 422)
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"].startswith("query.at: ")


@pytest.mark.parametrize(
    "path", ["/models/nope", "/models/nope/aliases", "/models/%00", "/models/" + "m" * 5000]
)
def test_an_unknown_model_is_a_404(client: TestClient, path: str) -> None:
    body = get(client, path, 404)
    assert body["error"]["code"] == "model_not_found"
    assert "parity models list" in body["error"]["message"]


def test_every_models_route_is_in_the_openapi_spec_with_its_response_model(
    client: TestClient,
) -> None:
    spec = get(client, "/openapi.json")
    paths = spec["paths"]
    expected = {
        "/ui/api/models": "Models",
        "/ui/api/models/{model}": "ModelDetail",
        "/ui/api/models/{model}/aliases": "AliasTimeline",
        "/ui/api/rollouts": "Rollouts",
        "/ui/api/rollouts/{model}": "RolloutView",
    }
    for path, schema in expected.items():
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{schema}"}
    for action in ("pause", "resume", "promote", "abort"):
        post = paths[f"/ui/api/rollouts/{{model}}/{action}"]["post"]
        ok = post["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/RolloutView"}
        assert {"403", "404", "409", "422"} <= set(post["responses"])
