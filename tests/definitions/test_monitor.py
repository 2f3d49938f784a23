"""The Monitor definition: validation, loading from a repo, plan/apply and the registry round trip."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from parity import AlertRule, FeatureStore, InvalidDefinition, LabelSource, Monitor
from parity.errors import MonitorNotFound
from parity.registry.catalog import Catalog
from parity.repo.loader import load_repo
from tests.conftest import DRIVER_REPO, write_repo

MONITOR_FILE = """
    from datetime import timedelta

    import numpy as np

    from parity import AlertRule, LabelSource, Monitor


    def caught_share(labels, scores, rows):
        return float(np.mean(scores[labels == 1] >= 0.5))


    driver_monitor = Monitor(
        name="driver_monitor",
        model="driver_model",
        window=timedelta(hours=6),
        tests={"trips": "psi"},
        thresholds={"trips": 0.25},
        labels=LabelSource(path="data/labels.parquet", label="churned"),
        label_delay=timedelta(days=3),
        metrics=[caught_share],
        alerts=[AlertRule(name="drifting", signal="drift_share", fire_at=0.5, clear_at=0.3)],
    )
"""


def test_a_monitor_in_the_repo_is_planned_applied_and_read_back(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {**DRIVER_REPO, "monitors.py": MONITOR_FILE})
    with FeatureStore(repo) as store:
        plan = store.plan()
        added = [(c.object_type, c.name) for c in plan.changes if c.kind == "add"]
        assert ("monitor", "driver_monitor") in added
        store.apply()
        applied = store.monitoring.get_monitor("driver_monitor")
        assert applied.model == "driver_model"
        assert applied.window == timedelta(hours=6)
        assert applied.labels == LabelSource(path="data/labels.parquet", label="churned")
        assert [m.name for m in applied.metrics] == ["caught_share"]
        assert len(applied.metrics[0].code_hash) == 64
        assert store.monitoring.monitor_for("driver_model") == applied
        assert store.monitoring.monitor_for("other") is None
        assert not store.plan().has_changes
        with pytest.raises(MonitorNotFound, match="driver_monitor"):
            store.monitoring.get_monitor("nope")


def test_changing_a_threshold_is_a_non_breaking_update(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {**DRIVER_REPO, "monitors.py": MONITOR_FILE})
    with FeatureStore(repo) as store:
        store.apply()
    (repo / "monitors.py").write_text(
        (repo / "monitors.py").read_text().replace('"trips": 0.25', '"trips": 0.3')
    )
    with FeatureStore(repo) as store:
        plan = store.plan()
        (change,) = plan.changes
        assert (change.kind, change.object_type, change.name) == (
            "update",
            "monitor",
            "driver_monitor",
        )
        assert [f.path for f in change.fields] == ["thresholds"]
        assert not plan.breaking


def test_a_catalog_without_monitors_keeps_its_json_and_freshness_slo_is_optional(
    tmp_path: Path,
) -> None:
    repo = write_repo(tmp_path / "repo", DRIVER_REPO)
    with FeatureStore(repo) as store:
        catalog = load_repo(store.repo_path, store.project).catalog
    text = catalog.to_json()
    assert '"monitor"' not in text and "freshness_slo" not in text
    assert Catalog.from_json(text) == catalog


def test_two_monitors_of_one_model_are_refused() -> None:
    first = Monitor(name="a", model="fraud")
    second = Monitor(name="b", model="fraud")
    with pytest.raises(InvalidDefinition, match="both watch model 'fraud'"):
        Catalog.build("p", [first, second])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "fraud@champion"}, "no '@alias'"),
        ({"tests": {"amount": "t_test"}}, "use one of auto"),
        ({"drift_share": 0}, "drift_share must be in"),
        ({"min_samples": 0}, "min_samples must be at least 1"),
        ({"window": timedelta(0)}, "window must be at least 1 second"),
        ({"label_delay": timedelta(days=-1)}, "label_delay cannot be negative"),
        ({"metrics": [lambda labels, scores, rows: 0.0]}, "not a lambda"),
        ({"metrics": ["recall"]}, "list functions"),
    ],
)
def test_bad_monitor_fields_are_refused_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidDefinition, match=message):
        Monitor(name="m", **{"model": "fraud", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fire_at": 0.3, "clear_at": 0.5}, "at or below fire_at"),
        ({"direction": "below", "fire_at": 0.7, "clear_at": 0.6}, "at or above fire_at"),
        ({"signal": "accuracy"}, "is not known"),
        ({"signal": "drift:"}, "is not known"),
        ({"sustain": 0}, "sustain must be at least 1"),
    ],
)
def test_bad_alert_rules_are_refused(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"name": "r", "signal": "drift_share", "fire_at": 0.5}
    values["clear_at"] = 0.3
    with pytest.raises(InvalidDefinition, match=message):
        AlertRule(**{**values, **fields})


def test_a_label_source_needs_exactly_one_origin() -> None:
    with pytest.raises(InvalidDefinition, match="exactly one of path"):
        LabelSource(label="y")
    with pytest.raises(InvalidDefinition, match="exactly one of path"):
        LabelSource(label="y", path="a.parquet", query="SELECT 1")
    assert LabelSource(label="y", query="SELECT 1 AS y").join_keys == ("request_id",)
