"""Parity: a feature store and model-serving platform. One definition, one value, never the future.

The public API is what `__all__` lists; heavy backends load only when used.
"""

from parity.definitions import (
    Aggregation,
    Array,
    Bool,
    Bytes,
    DeltaSource,
    DType,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
    Float32,
    Float64,
    Int32,
    Int64,
    PushSource,
    StreamSource,
    String,
    UnixTimestamp,
)
from parity.definitions.monitor import AlertRule, LabelSource, Monitor
from parity.definitions.on_demand import OnDemandFeatureView, RequestSource, on_demand_feature_view
from parity.definitions.retrain import RetrainPolicy
from parity.definitions.rollout import FailurePolicy, Gate, Phase, Rollout, RoutingKey
from parity.definitions.training import TrainedModel, TrainingJob
from parity.errors import (
    BreakingChange,
    ConfigError,
    DuplicateDefinition,
    FeatureServiceNotFound,
    FeatureViewNotFound,
    InvalidDefinition,
    ParityError,
    RegistryConflict,
)
from parity.feature_store import FeatureStore
from parity.registry import Catalog, Plan

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "AlertRule",
    "Array",
    "Bool",
    "BreakingChange",
    "Bytes",
    "Catalog",
    "ConfigError",
    "DType",
    "DeltaSource",
    "DuplicateDefinition",
    "Entity",
    "FailurePolicy",
    "FeatureService",
    "FeatureServiceNotFound",
    "FeatureStore",
    "FeatureView",
    "FeatureViewNotFound",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "Float32",
    "Float64",
    "Gate",
    "Int32",
    "Int64",
    "InvalidDefinition",
    "LabelSource",
    "Monitor",
    "OnDemandFeatureView",
    "ParityError",
    "Phase",
    "Plan",
    "PushSource",
    "RegistryConflict",
    "RequestSource",
    "RetrainPolicy",
    "Rollout",
    "RoutingKey",
    "StreamSource",
    "String",
    "TrainedModel",
    "TrainingJob",
    "UnixTimestamp",
    "__version__",
    "on_demand_feature_view",
]
