from __future__ import annotations

import pytest

from parity import (
    Array,
    Catalog,
    DuplicateDefinition,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewNotFound,
    Field,
    FileSource,
    Float32,
    Int64,
    InvalidDefinition,
    String,
)

account = Entity(name="account", join_keys=["account_id"], tags={"team": "risk"})
card = Entity(name="card", value_type=String)
emb = FeatureView(
    name="emb",
    entities=[account, card],
    schema=[Field(name="vec", dtype=Array(Float32)), Field(name="n", dtype=Int64)],
    source=FileSource(path="d/*.parquet", field_mapping={"num": "n"}, created_timestamp_column="c"),
    ttl=None,
    tags={"tier": "1"},
)
service = FeatureService(name="svc", features=[emb[["vec"]]], owner="me")


def test_catalog_json_round_trip_is_exact() -> None:
    catalog = Catalog.build("p", [account, card, emb, service])
    again = Catalog.from_json(catalog.to_json())
    assert again == catalog
    assert again.fingerprint() == catalog.fingerprint()
    assert again.feature_views["emb"].entities == (account, card)


def test_fingerprint_changes_with_content() -> None:
    a = Catalog.build("p", [account])
    b = Catalog.build("p", [Entity(name="account", join_keys=["account_id"])])
    assert a.fingerprint() != b.fingerprint()


def test_service_naming_a_missing_feature_is_rejected() -> None:
    other = FeatureView(
        name="emb",
        entities=[account, card],
        schema=[Field(name="n", dtype=Int64)],
        source=FileSource(path="d"),
    )
    with pytest.raises(InvalidDefinition, match=r"'emb:vec'.*has no such feature"):
        Catalog.build("p", [account, card, other, service])


def test_service_naming_a_missing_view_is_rejected() -> None:
    with pytest.raises(
        InvalidDefinition, match="uses feature view 'emb', which is not in the repo"
    ):
        Catalog.build("p", [service])


def test_two_different_objects_with_one_name_are_rejected() -> None:
    with pytest.raises(DuplicateDefinition):
        Catalog.build("p", [account, Entity(name="account")])


def test_unknown_name_lists_the_known_ones() -> None:
    catalog = Catalog.build("p", [account, card, emb])
    with pytest.raises(FeatureViewNotFound, match=r"no feature_view named 'x'.*known: emb"):
        catalog.get("feature_view", "x")


def test_newer_catalog_format_is_refused_with_upgrade_advice() -> None:
    text = Catalog.build("p", [account]).to_json().replace('"format":1', '"format":99')
    with pytest.raises(InvalidDefinition, match="upgrade parity"):
        Catalog.from_json(text)
