"""The facade end to end on a real repo: plan, apply, breaking changes, history, teardown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parity import BreakingChange, FeatureStore, FeatureViewNotFound
from parity.errors import ProjectNotFound
from tests.conftest import DRIVER_REPO, write_repo

T0 = datetime(2026, 5, 1, tzinfo=UTC)


class StepClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def edit(root: Path, old: str, new: str, file: str = "views.py") -> None:
    path = root / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_apply_then_reapply_creates_one_version(driver_repo: Path) -> None:
    store = FeatureStore(driver_repo, clock=StepClock())
    assert store.plan().summary() == "3 to add"
    first = store.apply(message="first", author="ann")
    assert first.version is not None and first.version.version == 1
    again = store.apply()
    assert again.version is None and not again.plan.has_changes
    assert [h.version for h in store.registry.history()] == [1]
    assert store.get_feature_view("driver_stats").feature_names == ("conv_rate", "trips", "city")
    assert [s.name for s in store.list_feature_services()] == ["driver_service"]


def test_breaking_change_is_refused_unless_allowed(driver_repo: Path) -> None:
    store = FeatureStore(driver_repo, clock=StepClock())
    store.apply(author="ann")
    edit(driver_repo, "ttl=timedelta(days=1)", "ttl=timedelta(days=2)")
    with pytest.raises(BreakingChange, match=r"feature_view 'driver_stats': ttl.*new feature view"):
        store.apply()
    assert store.registry.store.head("demo") == 1
    result = store.apply(allow_breaking=True, message="longer ttl", author="bob")
    assert result.version is not None and result.version.version == 2
    assert store.get_feature_view("driver_stats").ttl == timedelta(days=2)
    assert store.registry.describe("driver_stats", version=1).ttl == timedelta(days=1)  # type: ignore[union-attr]


def test_removed_view_is_deleted_and_history_keeps_who_and_when(driver_repo: Path) -> None:
    store = FeatureStore(driver_repo, clock=StepClock())
    store.apply(author="ann", message="v1")
    edit(driver_repo, "driver_service = FeatureService", "_unused = FeatureService")
    (driver_repo / "views.py").write_text(
        (driver_repo / "views.py").read_text().split("_unused")[0]
    )
    result = store.apply(author="bob", message="drop the service")
    assert [(c.kind, c.name) for c in result.plan.changes] == [("delete", "driver_service")]
    history = store.registry.history()
    assert [(h.version, h.author, h.message) for h in history] == [
        (1, "ann", "v1"),
        (2, "bob", "drop the service"),
    ]
    assert history[1].committed_at == T0 + timedelta(minutes=2)
    with pytest.raises(FeatureViewNotFound):
        store.registry.describe("driver_service")


def test_cached_reader_sees_another_writers_apply_after_refresh(driver_repo: Path) -> None:
    writer, reader = FeatureStore(driver_repo), FeatureStore(driver_repo)
    writer.apply()
    assert reader.registry.version == 1
    edit(
        driver_repo,
        'Field(name="city", dtype=String),',
        'Field(name="city", dtype=String, description="d"),',
    )
    writer.apply()
    assert reader.registry.refresh() is True
    assert reader.get_feature_view("driver_stats").fields[2].description == "d"


def test_teardown_removes_the_project(driver_repo: Path) -> None:
    store = FeatureStore(driver_repo)
    store.apply()
    assert store.registry.teardown() == 1
    assert store.registry.history() == []
    with pytest.raises(ProjectNotFound):
        store.registry.teardown()


MOVED_OUT = {
    # parity.repo.loader.load_repo(store.repo_path, store.project)
    "load_repo",
    # store.registry.teardown() (issue 17 made room for store.access)
    "teardown",
    # store.datasets.create / get / list
    "create_dataset",
    "get_dataset",
    "list_datasets",
    # store.registry.catalog / snapshot(version) / describe / history
    "catalog",
    "snapshot",
    "describe",
    "history",
    # store.registry.store (the backend); the offline engine is internal (get_historical_features)
    "registry_store",
    "offline_engine",
}


def test_feature_store_has_at_most_27_public_methods_and_properties() -> None:
    """STYLE: a class past ~20 public methods asks to be split; new abilities get their own
    entry point (`store.models`, `store.datasets`, `store.registry`), not facade methods."""
    public = {name for name in dir(FeatureStore) if not name.startswith("_")}
    assert len(public) <= 27, sorted(public)
    assert not public & MOVED_OUT
    assert {"datasets", "models", "registry", "get_feature_view", "list_entities"} <= public
    assert {"monitoring", "rollouts", "jobs", "triggers", "access"} <= public


def test_feature_store_keeps_no_public_state_beyond_path_and_config(driver_repo: Path) -> None:
    with FeatureStore(driver_repo) as store:
        state = {name for name in vars(store) if not name.startswith("_")}
    assert state == {"repo_path", "config"}


def test_schema_mismatch_with_data_stops_plan(driver_repo: Path) -> None:
    edit(driver_repo, 'Field(name="trips", dtype=Int64)', 'Field(name="trips", dtype=String)')
    store = FeatureStore(driver_repo)
    with pytest.raises(Exception, match="declared String but the source column is int64"):
        store.plan()
    assert store.plan(check_sources=False).summary() == "3 to add"


@pytest.mark.postgres
def test_repo_on_a_postgres_registry(tmp_path: Path, postgres_url: str, project_name: str) -> None:
    extra = f"registry:\n  type: postgres\n  url: {postgres_url}\n"
    root = write_repo(tmp_path / "r", DRIVER_REPO, project=project_name, extra=extra)
    store = FeatureStore(root)
    try:
        assert store.apply().version is not None
        with FeatureStore(root) as reader:
            service = reader.get_feature_service("driver_service")
        assert service.refs == ("driver_stats:trips",)
        assert not store.plan().has_changes
    finally:
        store.registry.teardown()
        store.close()
