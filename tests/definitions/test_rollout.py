"""The Rollout definition: validation naming the field, defaults, repo loading, plan/apply and the
registry round trip (custom gate functions kept by name and code hash)."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest

from parity import FailurePolicy, FeatureStore, Gate, InvalidDefinition, Phase, Rollout, RoutingKey
from parity.definitions.rollout import DEFAULT_STEPS, DEFAULT_THRESHOLDS
from parity.registry.catalog import Catalog
from parity.repo.loader import load_repo
from tests.conftest import DRIVER_REPO, write_repo

ROLLOUT_FILE = """
    from datetime import timedelta

    from parity import Gate, Phase, Rollout, RoutingKey


    def no_negative_scores(evidence):
        return True


    driver_rollout = Rollout(
        name="driver_rollout",
        model="driver_model",
        candidate="challenger",
        shadow=Phase(weight=0, duration=timedelta(hours=1), min_samples=1000),
        steps=[Phase(weight=w, duration=timedelta(minutes=20)) for w in (2, 10, 100)],
        routing_key=RoutingKey(name="driver_id"),
        gates=[
            Gate(metric="latency_p99", threshold=0.2),
            Gate(metric="label:precision_at_k", k=50),
            Gate(metric="custom:no_negative_scores"),
        ],
        custom_gates=[no_negative_scores],
    )
"""


def test_defaults_are_the_issues_ramp_and_abort_on_the_first_failure() -> None:
    rollout = Rollout(name="r", model="fraud", candidate=2)
    assert [step.weight for step in rollout.steps] == list(DEFAULT_STEPS) == [1, 5, 25, 50, 100]
    assert rollout.shadow is not None and rollout.shadow.weight == 0
    assert rollout.champion_alias == "champion"
    assert rollout.failure_policy == FailurePolicy(mode="cumulative", limit=1)
    assert rollout.final_weight == 100


def test_a_gate_without_threshold_uses_its_metrics_default() -> None:
    assert Gate(metric="latency_p99").limit == DEFAULT_THRESHOLDS["latency_p99"] == 0.10
    assert Gate(metric="label:precision_at_k").limit == DEFAULT_THRESHOLDS["label"] == 0.05
    assert Gate(metric="label:precision_at_k").family == "label"
    assert Gate(metric="label:precision_at_k").argument == "precision_at_k"
    assert Gate(metric="error_rate", threshold=0.0).limit == 0.0


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"steps": [Phase(weight=5), Phase(weight=5)]}, "weights must increase"),
        ({"steps": [Phase(weight=25), Phase(weight=5)]}, "weights must increase"),
        ({"steps": [Phase(weight=0), Phase(weight=5)]}, "first canary step"),
        ({"gates": [Gate(metric="latency_p99"), Gate(metric="latency_p99")]}, "repeat"),
        ({"gates": [Gate(metric="custom:nowhere")]}, "custom_gates"),
        ({"shadow": Phase(weight=3)}, "weight must be 0"),
        ({"shadow_fraction": 0.0}, "shadow_fraction"),
        ({"shadow_fraction": math.nan}, "shadow_fraction"),
        ({"shadow": None, "steps": []}, "shadow phase or at least one canary step"),
        ({"candidate": 0}, "candidate"),
        ({"candidate": True}, "candidate"),
        ({"candidate": "not an alias"}, "candidate"),
        ({"model": "fraud@champion"}, "model"),
        ({"champion_alias": "bad alias"}, "champion_alias"),
        ({"interval": timedelta(0)}, "interval"),
    ],
)
def test_bad_rollouts_are_refused_naming_the_field(fields: dict[str, object], named: str) -> None:
    data: dict[str, object] = {"name": "r", "model": "fraud", "candidate": 2, **fields}
    with pytest.raises(InvalidDefinition, match=named):
        Rollout(**data)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"metric": "p99"}, "not known"),
        ({"metric": "label:"}, "not known"),
        ({"metric": "latency_p99", "threshold": -1.0}, "threshold"),
        ({"metric": "latency_p99", "threshold": math.inf}, "threshold"),
        ({"metric": "latency_p99", "threshold": math.nan}, "threshold"),
        ({"metric": "prediction_drift", "test": "chi2"}, "test"),
        ({"metric": "error_rate", "min_samples": 0}, "min_samples"),
        ({"metric": "label:precision_at_k", "k": 0}, "k"),
    ],
)
def test_bad_gates_are_refused_naming_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidDefinition, match=named):
        Gate(**fields)


@pytest.mark.parametrize(
    ("cls", "fields", "named"),
    [
        (Phase, {"weight": 101}, "weight"),
        (Phase, {"weight": -1}, "weight"),
        (Phase, {"weight": math.nan}, "weight"),
        (Phase, {"weight": 5, "duration": timedelta(seconds=-1)}, "duration"),
        (Phase, {"weight": 5, "min_samples": -1}, "min_samples"),
        (RoutingKey, {"name": "1bad"}, "routing key"),
        (RoutingKey, {"name": "x user", "source": "header"}, "header"),
        (FailurePolicy, {"limit": 0}, "limit"),
        (FailurePolicy, {"mode": "forever"}, "mode"),
    ],
)
def test_bad_parts_are_refused_naming_the_field(
    cls: type[Phase | RoutingKey | FailurePolicy], fields: dict[str, object], named: str
) -> None:
    with pytest.raises(InvalidDefinition, match=named):
        cls(**fields)


def test_a_lambda_is_not_a_custom_gate() -> None:
    with pytest.raises(InvalidDefinition, match="def in the repo"):
        Rollout(name="r", model="fraud", candidate=2, custom_gates=[lambda evidence: True])


def test_a_rollout_in_the_repo_is_planned_applied_and_read_back(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {**DRIVER_REPO, "rollouts.py": ROLLOUT_FILE})
    loaded = load_repo(repo, "driver_project")
    declared = loaded.catalog.rollouts["driver_rollout"]
    assert set(declared.gate_functions) == {"no_negative_scores"}
    with FeatureStore(repo) as store:
        added = [(c.object_type, c.name) for c in store.plan().changes if c.kind == "add"]
        assert ("rollout", "driver_rollout") in added
        store.apply()
        applied = store.registry.catalog.rollouts["driver_rollout"]
        assert applied == declared  # equal as values (functions are not part of the value)
        assert applied.candidate == "challenger"
        assert [s.weight for s in applied.steps] == [2, 10, 100]
        assert applied.gates[1].k == 50
        assert applied.custom_gates[0].name == "no_negative_scores"
        assert len(applied.custom_gates[0].code_hash) == 64
        assert not store.plan().has_changes


def test_catalogs_without_rollouts_keep_their_json_and_fingerprint() -> None:
    empty = Catalog("p")
    assert '"rollout"' not in empty.to_json()
    with_one = Catalog("p", rollouts={"r": Rollout(name="r", model="m", candidate=2)})
    assert '"rollout"' in with_one.to_json()
    assert Catalog.from_json(with_one.to_json()) == with_one
    assert Catalog.from_json(with_one.to_json()).fingerprint() == with_one.fingerprint()


def test_changing_a_step_is_a_non_breaking_update(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {**DRIVER_REPO, "rollouts.py": ROLLOUT_FILE})
    with FeatureStore(repo) as store:
        store.apply()
    text = (repo / "rollouts.py").read_text().replace("(2, 10, 100)", "(2, 20, 100)")
    (repo / "rollouts.py").write_text(text)
    with FeatureStore(repo) as store:
        plan = store.plan()
        (change,) = plan.changes
        assert (change.kind, change.object_type, change.name) == (
            "update",
            "rollout",
            "driver_rollout",
        )
        assert not plan.breaking


def test_a_drift_gate_defaults_to_its_tests_monitoring_threshold() -> None:
    from parity.monitoring.stats import DEFAULT_THRESHOLDS as MONITORING

    for test in ("psi", "jensen_shannon", "wasserstein", "ks"):
        gate = Gate(metric="prediction_drift", test=test)
        assert gate.limit == MONITORING[test]
    assert Gate(metric="prediction_drift", test="ks", threshold=0.01).limit == 0.01
