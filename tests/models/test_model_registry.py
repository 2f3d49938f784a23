"""ModelRegistry on a SQLite registry and a local artifact store, with real scikit-learn models."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parity.errors import (
    AliasNotFound,
    DatasetNotFound,
    FeatureServiceNotFound,
    InvalidModelRef,
    ModelNotFound,
    ModelRegistrationError,
    ModelVersionNotFound,
    NoRollbackTarget,
    UntrustedArtifact,
    VersionAliased,
)
from parity.models.artifacts import LocalArtifactStore
from parity.models.registry import ModelRegistry, git_code_version, parse_ref
from parity.models.sql import SqlModelStore
from parity.models.store import AliasEvent
from parity.registry.datasets import DatasetRecord
from parity.registry.sql import SqlRegistryStore, sqlite_url

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
X_TRAIN = np.array([[0.0, 1.0], [1.0, 0.0], [3.0, 2.0], [4.0, 0.5], [0.5, 0.5], [3.5, 1.0]])
Y_TRAIN = np.array([0, 0, 1, 1, 0, 1])
X_TEST = np.array([[0.2, 0.3], [3.8, 1.5], [2.0, 1.0], [1.9, 0.1]])


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


class Doubler:
    """A user model for the pyfunc flavor: twice the row sums."""

    def predict(self, inputs: Any) -> Any:
        return np.asarray(inputs).sum(axis=1) * 2


@dataclass
class Env:
    registry_store: SqlRegistryStore
    artifacts: LocalArtifactStore
    clock: Clock

    def open(self, **options: Any) -> ModelRegistry:
        defaults: dict[str, Any] = {
            "project": "shop",
            "datasets": self.registry_store,
            "trusted": True,
            "clock": self.clock,
            "author": "ann",
            "code_version": lambda: "c0ffee",
        }
        store = SqlModelStore(self.registry_store.engine)
        return ModelRegistry(store, self.artifacts, **{**defaults, **options})

    def blobs(self) -> list[Path]:
        return sorted(p for p in self.artifacts.root.rglob("*") if p.is_file())


@pytest.fixture
def env(tmp_path: Path) -> Env:
    registry_store = SqlRegistryStore(sqlite_url(tmp_path / "registry.db"))
    return Env(registry_store, LocalArtifactStore(tmp_path / "artifacts"), Clock(T0))


@pytest.fixture
def registry(env: Env) -> ModelRegistry:
    return env.open()


@pytest.fixture
def fit() -> Callable[..., Any]:
    linear_model = pytest.importorskip("sklearn.linear_model")

    def make(c: float = 1.0) -> Any:
        return linear_model.LogisticRegression(C=c).fit(X_TRAIN, Y_TRAIN)

    return make


def register_three(registry: ModelRegistry, fit: Callable[..., Any]) -> None:
    for c in (0.5, 1.0, 2.0):
        registry.register_model("fraud", fit(c))


def test_a_registered_model_predicts_like_the_original(
    registry: ModelRegistry, env: Env, fit: Callable[..., Any]
) -> None:
    model = fit()
    version = registry.register_model("fraud", model)
    (blob,) = env.blobs()
    assert (version.ref, version.flavor, version.author) == ("fraud/1", "sklearn", "ann")
    assert version.artifact == hashlib.sha256(blob.read_bytes()).hexdigest()
    assert version.artifact_size == blob.stat().st_size
    assert (version.created_at, version.code_version) == (T0, "c0ffee")
    np.testing.assert_array_equal(registry.load("fraud").predict(X_TEST), model.predict(X_TEST))


def test_versions_count_from_one_and_refs_pick_them(
    registry: ModelRegistry, fit: Callable[..., Any]
) -> None:
    register_three(registry, fit)
    assert [v.version for v in registry.versions("fraud")] == [1, 2, 3]
    assert registry.models() == ["fraud"]
    assert registry.resolve("fraud").version == 3
    assert registry.resolve("fraud@latest").version == 3
    assert registry.resolve("fraud/2").version == 2
    assert registry.resolve("fraud", version=1).version == 1
    assert registry.get_version("fraud", 2) == registry.resolve("fraud/2")


def test_the_same_model_bytes_are_stored_once(
    registry: ModelRegistry, env: Env, fit: Callable[..., Any]
) -> None:
    model = fit()
    first = registry.register_model("fraud", model)
    second = registry.register_model("fraud-copy", model)
    assert (first.version, second.version) == (1, 1)
    assert first.artifact == second.artifact
    assert len(env.blobs()) == 1


def test_signature_params_and_metrics_are_recorded_as_they_read_back(
    registry: ModelRegistry, fit: Callable[..., Any]
) -> None:
    version = registry.register_model(
        "fraud",
        fit(),
        sample_input=X_TRAIN,
        metrics={"auc": 1, "loss": np.float64(0.25)},
        params={"C": 1.0, "features": ("a", "b")},
        tags={"team": "risk"},
        description="baseline",
    )
    assert version.signature == {
        "input_kind": "ndarray",
        "inputs": [{"name": "input", "dtype": "float64", "shape": [-1, 2]}],
        "outputs": [{"name": "output", "dtype": "int64", "shape": [-1]}],
    }
    assert version.metrics == {"auc": 1.0, "loss": 0.25}
    assert version.params == {"C": 1.0, "features": ["a", "b"]}
    assert registry.get_version("fraud", 1) == version


def test_lineage_is_copied_from_the_training_dataset(env: Env, fit: Callable[..., Any]) -> None:
    env.registry_store.record_dataset(
        DatasetRecord(
            project="shop",
            name="train_march",
            created_at=T0 - timedelta(days=1),
            author="ann",
            registry_version=4,
            feature_refs=("txn:amount",),
            feature_service="fraud_features",
            row_count=6,
            fingerprint="f" * 64,
            path="data/train_march.parquet",
            entity_source="entities.parquet",
        )
    )
    services = {"fraud_features", "churn_features"}
    registry = env.open(registry_version=lambda: 7, feature_services=lambda: services)
    version = registry.register_model("fraud", fit(), training_dataset="train_march")
    lineage = (
        version.training_dataset,
        version.feature_service,
        version.dataset_fingerprint,
        version.dataset_registry_version,
        version.registry_version,
    )
    assert lineage == ("train_march", "fraud_features", "f" * 64, 4, 7)
    with pytest.raises(ModelRegistrationError, match="built from feature service"):
        registry.register_model(
            "fraud", fit(), training_dataset="train_march", feature_service="churn_features"
        )


def test_missing_datasets_and_feature_services_stop_registration(
    env: Env, fit: Callable[..., Any]
) -> None:
    registry = env.open(feature_services=lambda: {"fraud_features"})
    with pytest.raises(DatasetNotFound):
        registry.register_model("fraud", fit(), training_dataset="nope")
    with pytest.raises(FeatureServiceNotFound, match="registered: fraud_features"):
        registry.register_model("fraud", fit(), feature_service="nope")
    with pytest.raises(ModelRegistrationError, match="datasets="):
        env.open(datasets=None).register_model("fraud", fit(), training_dataset="train")
    assert registry.models() == []
    assert env.blobs() == []


def test_pickled_models_load_only_when_trusted(env: Env, fit: Callable[..., Any]) -> None:
    model = fit()
    trusting = env.open(trusted=True)
    trusting.register_model("fraud", model)
    loaded = trusting.load("fraud")
    assert trusting.load("fraud/1") is loaded  # kept after the first load
    with pytest.raises(UntrustedArtifact):  # a cached trusted load does not bypass the check
        trusting.load("fraud", trusted=False)
    careful = env.open(trusted=False)
    with pytest.raises(UntrustedArtifact):
        careful.load("fraud")
    again = careful.load("fraud", trusted=True)
    np.testing.assert_array_equal(again.predict(X_TEST), model.predict(X_TEST))


def test_a_user_class_registers_as_pyfunc(registry: ModelRegistry) -> None:
    version = registry.register_model("doubler", Doubler())
    loaded = registry.load(version)
    assert (version.flavor, loaded.flavor) == ("pyfunc", "pyfunc")
    np.testing.assert_array_equal(loaded.predict([[1.0, 2.0], [0.5, 0.0]]), [6.0, 1.0])


def test_aliases_move_roll_back_and_answer_for_past_moments(
    registry: ModelRegistry, env: Env, fit: Callable[..., Any]
) -> None:
    register_three(registry, fit)
    t1 = env.clock.now
    registry.set_alias("fraud", "prod", 1, reason="launch")
    t2 = env.clock.advance(timedelta(days=1))
    registry.set_alias("fraud", "prod", 2, reason="better auc")
    t3 = env.clock.advance(timedelta(days=1))
    back = registry.rollback("fraud", "prod", reason="alerts")
    assert back == AliasEvent("shop", "fraud", "prod", 1, 2, t3, "ann", "alerts")
    assert registry.get_alias("fraud", "prod").version == 1
    assert registry.resolve("fraud@prod").version == 1
    assert registry.resolve("fraud", alias="prod").version == 1
    t4 = env.clock.advance(timedelta(days=1))
    registry.delete_alias("fraud", "prod", reason="retired")
    moves = [(e.version, e.previous, e.moved_at, e.reason) for e in registry.history("fraud")]
    assert moves == [
        (1, None, t1, "launch"),
        (2, 1, t2, "better auc"),
        (1, 2, t3, "alerts"),
        (None, 1, t4, "retired"),
    ]

    def version_at(moment: datetime) -> int | None:
        found = registry.alias_at("fraud", "prod", moment)
        return None if found is None else found.version

    before = timedelta(microseconds=1)
    at = [version_at(t) for t in (t1 - before, t1, t2 - before, t2, t3, t4 - before, t4)]
    assert at == [None, 1, 1, 2, 1, 1, None]
    with pytest.raises(AliasNotFound):
        registry.get_alias("fraud", "prod")


def test_rollback_needs_an_earlier_live_version(
    registry: ModelRegistry, fit: Callable[..., Any]
) -> None:
    register_three(registry, fit)
    with pytest.raises(AliasNotFound, match="has no alias 'prod'"):  # never set (QA 13)
        registry.rollback("fraud", "prod")
    registry.set_alias("fraud", "prod", 1)
    with pytest.raises(NoRollbackTarget, match="no earlier version"):
        registry.rollback("fraud", "prod")
    registry.set_alias("fraud", "prod", 2)
    registry.delete_version("fraud", 1)
    with pytest.raises(NoRollbackTarget, match="deleted"):
        registry.rollback("fraud", "prod")
    assert registry.aliases("fraud") == {"prod": 2}


def test_an_aliased_version_is_deleted_only_after_its_alias(
    registry: ModelRegistry, env: Env, fit: Callable[..., Any]
) -> None:
    registry.register_model("fraud", fit(), alias="prod")
    registry.register_model("fraud", fit(2.0))
    assert registry.aliases("fraud") == {"prod": 1}
    with pytest.raises(VersionAliased, match="prod"):
        registry.delete_version("fraud", 1)
    registry.delete_alias("fraud", "prod")
    registry.delete_version("fraud", 1)
    assert [v.version for v in registry.versions("fraud")] == [2]
    with pytest.raises(ModelVersionNotFound):
        registry.resolve("fraud/1")
    assert len(env.blobs()) == 2  # the artifact stays: content addressed, possibly shared


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("fraud", ("fraud", None, None)),
        ("fraud@prod", ("fraud", None, "prod")),
        ("fraud/12", ("fraud", 12, None)),
        ("Fraud-v2_x@canary-1", ("Fraud-v2_x", None, "canary-1")),
        ("fraud@latest", ("fraud", None, None)),
    ],
)
def test_parse_ref_splits_name_version_and_alias(
    text: str, parsed: tuple[str, int | None, str | None]
) -> None:
    assert parse_ref(text) == parsed


@pytest.mark.parametrize(
    "text", ["", "a@", "a/", "a/x", "a@b/3", "a/3@b", "a/0", "a/-1", "@b", "1a", "a b", "a//3"]
)
def test_parse_ref_rejects_malformed_refs(text: str) -> None:
    with pytest.raises(InvalidModelRef, match="NAME@ALIAS"):
        parse_ref(text)


def test_bad_registrations_raise_typed_errors(
    registry: ModelRegistry, fit: Callable[..., Any]
) -> None:
    model = fit()
    bad: list[dict[str, Any]] = [
        {"name": "fraud/1"},
        {"name": "fraud@x"},
        {"name": "_fraud"},
        {"metrics": {"auc": float("nan")}},
        {"metrics": {"auc": "high"}},
        {"params": {"when": T0}},
        {"tags": {"round": 1}},
    ]
    for options in bad:
        with pytest.raises(ModelRegistrationError):
            registry.register_model(**{"name": "fraud", "model": model, **options})
    with pytest.raises(InvalidModelRef, match="reserved"):
        registry.register_model("fraud", model, alias="latest")
    assert registry.models() == []


def test_lookups_of_missing_things_raise_typed_errors(
    registry: ModelRegistry, fit: Callable[..., Any]
) -> None:
    registry.register_model("fraud", fit())
    with pytest.raises(ModelNotFound, match="parity models list"):
        registry.resolve("nothing")
    with pytest.raises(ModelNotFound):
        registry.versions("nothing")
    with pytest.raises(ModelVersionNotFound, match="parity models versions fraud"):
        registry.load("fraud/9")
    with pytest.raises(AliasNotFound):
        registry.resolve("fraud@prod")
    with pytest.raises(InvalidModelRef):
        registry.resolve("fraud/1", alias="prod")
    with pytest.raises(InvalidModelRef):
        registry.set_alias("fraud", "latest", 1)


def test_code_version_is_none_outside_a_git_checkout_or_without_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert git_code_version() is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    assert git_code_version() is None


def test_code_version_is_the_checked_out_commit_marked_dirty_by_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.chdir(tmp_path)
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "x"]):
        (tmp_path / "train.py").write_text("print('train')\n")
        subprocess.run(["git", *args], check=True, capture_output=True)
    branch = (tmp_path / ".git" / "HEAD").read_text().split("ref: ")[1].strip()
    commit = (tmp_path / ".git" / branch).read_text().strip()
    assert git_code_version() == commit
    (tmp_path / "train.py").write_text("print('changed')\n")
    assert git_code_version() == f"{commit}-dirty"
