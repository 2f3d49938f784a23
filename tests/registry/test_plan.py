"""The plan is a pure diff: hand-built catalogs in, hand-worked changes out."""

from __future__ import annotations

from datetime import timedelta

from parity import Catalog, Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64
from parity.registry.plan import FieldChange, ObjectChange, plan

account = Entity(name="account", join_keys=["account_id"])
source = FileSource(path="data/a.parquet")


def stats(**overrides: object) -> FeatureView:
    args: dict[str, object] = {
        "name": "stats",
        "entities": [account],
        "schema": [Field(name="amount", dtype=Float64), Field(name="n", dtype=Int64)],
        "source": source,
        "ttl": timedelta(days=1),
    }
    args.update(overrides)
    return FeatureView(**args)  # type: ignore[arg-type]


def catalog(*items: object) -> Catalog:
    return Catalog.build("p", items)  # type: ignore[arg-type]


def test_first_plan_adds_everything_in_type_order() -> None:
    desired = catalog(account, stats(), FeatureService(name="svc", features=[stats()]))
    result = plan(Catalog("p"), desired, 0)
    assert [(c.kind, c.object_type, c.name) for c in result.changes] == [
        ("add", "entity", "account"),
        ("add", "feature_view", "stats"),
        ("add", "feature_service", "svc"),
    ]
    assert result.summary() == "3 to add"


def test_identical_catalogs_have_no_changes() -> None:
    result = plan(catalog(account, stats()), catalog(account, stats()), 4)
    assert not result.has_changes
    assert result.base_version == 4


def test_description_change_is_a_non_breaking_update() -> None:
    result = plan(catalog(account, stats()), catalog(account, stats(description="new")), 1)
    assert result.changes == (
        ObjectChange("update", "feature_view", "stats", (FieldChange("description", "", "new"),)),
    )
    assert result.breaking == ()


def test_adding_and_removing_features_is_field_level_and_not_breaking() -> None:
    new_schema = [Field(name="amount", dtype=Float64), Field(name="z", dtype=Float64)]
    result = plan(catalog(account, stats()), catalog(account, stats(schema=new_schema)), 1)
    (change,) = result.changes
    assert change.fields == (
        FieldChange("schema.z", None, "Float64"),
        FieldChange("schema.n", "Int64", None),
    )
    assert not change.breaking


def test_dtype_change_is_breaking_and_the_message_says_to_version_the_view() -> None:
    new_schema = [Field(name="amount", dtype=Float64), Field(name="n", dtype=Float64)]
    result = plan(catalog(account, stats()), catalog(account, stats(schema=new_schema)), 1)
    (change,) = result.breaking
    (field,) = change.fields
    assert (field.path, field.old, field.new, field.breaking) == (
        "schema.n.dtype",
        "Int64",
        "Float64",
        True,
    )
    assert "new feature view version" in result.breaking_message()


def test_ttl_and_source_changes_are_breaking() -> None:
    changed = stats(ttl=timedelta(days=2), source=FileSource(path="data/b.parquet"))
    result = plan(catalog(account, stats()), catalog(account, changed), 1)
    assert [(f.path, f.breaking) for f in result.changes[0].fields] == [
        ("source", True),
        ("ttl", True),
    ]


def test_entity_join_key_change_is_breaking() -> None:
    renamed = Entity(name="account", join_keys=["acct"])
    result = plan(catalog(account), catalog(renamed), 1)
    (change,) = result.breaking
    assert change.fields[0] == FieldChange(
        "join_keys",
        ["account_id"],
        ["acct"],
        True,
        "changing an entity's join keys re-keys every view that uses it",
    )


def test_removed_objects_are_deleted() -> None:
    result = plan(catalog(account, stats()), catalog(account), 2)
    assert [(c.kind, c.name) for c in result.changes] == [("delete", "stats")]
    assert result.summary() == "1 to delete"


def test_change_records_round_trip() -> None:
    result = plan(catalog(account), catalog(Entity(name="account", join_keys=["a"])), 1)
    (change,) = result.changes
    assert ObjectChange.from_record(change.to_record()) == change
