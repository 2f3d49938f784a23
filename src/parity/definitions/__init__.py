"""Declarative definitions: entities, sources, feature views, feature services and value types.

Frozen, validated value objects with no I/O and no runtime state.
"""

from parity.definitions.aggregation import Aggregation
from parity.definitions.entity import Entity
from parity.definitions.feature_service import FeatureService
from parity.definitions.feature_view import FeatureView, FeatureViewProjection, Field
from parity.definitions.source import BatchSource, DeltaSource, FileSource, PushSource, StreamSource
from parity.definitions.types import (
    Array,
    Bool,
    Bytes,
    DType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)

__all__ = [
    "Aggregation",
    "Array",
    "BatchSource",
    "Bool",
    "Bytes",
    "DType",
    "DeltaSource",
    "Entity",
    "FeatureService",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "PushSource",
    "StreamSource",
    "String",
    "UnixTimestamp",
]
