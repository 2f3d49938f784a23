from __future__ import annotations

from datetime import timedelta

import pytest

from parity import (
    Array,
    DType,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Float64,
    Int64,
    InvalidDefinition,
    String,
)

account = Entity(name="account", join_keys=["account_id"])
card = Entity(name="card", join_keys=["card_id"], value_type=String)
source = FileSource(path="data/x.parquet", timestamp_field="ts", created_timestamp_column="created")


def view(**overrides: object) -> FeatureView:
    args: dict[str, object] = {
        "name": "stats",
        "entities": [account],
        "schema": [Field(name="amount", dtype=Float64), Field(name="n", dtype=Int64)],
        "source": source,
        "ttl": timedelta(days=1),
    }
    args.update(overrides)
    return FeatureView(**args)  # type: ignore[arg-type]


def test_entity_join_keys_default_to_its_name() -> None:
    assert Entity(name="driver").join_keys == ("driver",)


def test_entity_rejects_a_float_key_type_and_says_which_types_work() -> None:
    with pytest.raises(InvalidDefinition, match=r"Entity 'a'.*value_type.*Int64 or String"):
        Entity(name="a", value_type=Float64)


@pytest.mark.parametrize("bad", ["1abc", "has space", "dash-ed", ""])
def test_names_must_be_identifiers(bad: str) -> None:
    with pytest.raises(InvalidDefinition, match="not an identifier"):
        Entity(name=bad)


def test_unknown_keyword_is_named_in_the_error() -> None:
    with pytest.raises(InvalidDefinition, match=r"field 'join_key'.*not a known setting"):
        Entity(name="a", join_key=["x"])  # type: ignore[call-arg]


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-5)])
def test_view_ttl_must_be_positive_and_the_error_names_view_field_and_fix(ttl: timedelta) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        view(ttl=ttl)
    message = str(caught.value)
    assert "FeatureView 'stats'" in message
    assert "field 'ttl'" in message
    assert "ttl=None" in message


def test_view_ttl_none_means_no_expiry() -> None:
    assert view(ttl=None).ttl is None


def test_view_separates_typed_join_keys_from_features() -> None:
    v = view(schema=[Field(name="account_id", dtype=Int64), Field(name="amount", dtype=Float64)])
    assert v.join_keys == ("account_id",)
    assert v.feature_names == ("amount",)


def test_view_key_field_type_must_match_entity() -> None:
    with pytest.raises(InvalidDefinition, match="'account_id' is String but entity 'account'"):
        view(schema=[Field(name="account_id", dtype=String), Field(name="x", dtype=Float64)])


def test_view_with_only_keys_is_rejected() -> None:
    with pytest.raises(InvalidDefinition, match="no features"):
        view(schema=[Field(name="account_id", dtype=Int64)])


def test_view_rejects_repeated_fields() -> None:
    with pytest.raises(InvalidDefinition, match=r"repeats \['a'\]"):
        view(schema=[Field(name="a", dtype=Float64), Field(name="a", dtype=Int64)])


def test_composite_key_from_two_entities() -> None:
    v = view(entities=[account, card])
    assert v.join_keys == ("account_id", "card_id")
    assert v.entity_names == ("account", "card")


def test_entities_sharing_a_join_key_name_are_rejected() -> None:
    other = Entity(name="other", join_keys=["account_id"])
    with pytest.raises(InvalidDefinition, match="share a join key"):
        view(entities=[account, other])


def test_view_without_entities_is_rejected() -> None:
    with pytest.raises(InvalidDefinition, match="at least one Entity"):
        view(entities=[])


def test_definitions_are_frozen() -> None:
    v = view()
    with pytest.raises(Exception, match="frozen"):
        v.name = "other"  # type: ignore[misc]


def test_projection_selects_features_in_the_given_order() -> None:
    projection = view()[["n", "amount"]]
    assert (projection.view, projection.features) == ("stats", ("n", "amount"))


def test_projection_of_unknown_feature_names_the_view_and_its_features() -> None:
    with pytest.raises(KeyError, match=r"'stats' has no feature 'nope'.*\['amount', 'n'\]"):
        view()[["nope"]]


def test_feature_service_refs_cover_whole_views_and_projections() -> None:
    other = view(name="other", schema=[Field(name="z", dtype=Float32)])
    service = FeatureService(name="svc", features=[view()[["n"]], other])
    assert service.refs == ("stats:n", "other:z")


def test_feature_service_must_not_name_a_view_twice() -> None:
    with pytest.raises(InvalidDefinition, match="same view twice"):
        FeatureService(name="svc", features=[view(), view()[["n"]]])


def test_feature_service_needs_features() -> None:
    with pytest.raises(InvalidDefinition, match="non-empty"):
        FeatureService(name="svc", features=[])


def test_source_time_columns_must_differ() -> None:
    with pytest.raises(InvalidDefinition, match="must differ"):
        FileSource(path="p", timestamp_field="ts", created_timestamp_column="ts")


def test_source_field_mapping_resolves_source_columns() -> None:
    s = FileSource(path="p", field_mapping={"amt": "amount"})
    assert (s.column_for("amount"), s.column_for("other")) == ("amt", "other")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Int64", Int64), ("Array(Float32)", Array(Float32)), (" Array( String ) ", Array(String))],
)
def test_dtype_parses_its_string_form(text: str, expected: DType) -> None:
    assert DType.parse(text) == expected
    assert DType.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["Int128", "Array(Array(Int64))", "array(Int64)"])
def test_dtype_rejects_unknown_and_nested_types(text: str) -> None:
    with pytest.raises(InvalidDefinition):
        DType.parse(text)


def test_field_accepts_dtype_by_name() -> None:
    assert Field(name="f", dtype="Array(Int64)").dtype == Array(Int64)  # type: ignore[arg-type]
