"""Catalog: the full set of a project's definitions at one registry version, and its JSON form.

Checks cross-object consistency (views name known entities, services name known features).
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from parity.definitions import Entity, FeatureService, FeatureView, PushSource, StreamSource
from parity.definitions.monitor import Monitor
from parity.definitions.on_demand import OnDemandFeatureView
from parity.definitions.retrain import RetrainPolicy
from parity.definitions.rollout import Rollout
from parity.definitions.training import TrainingJob
from parity.errors import (
    DuplicateDefinition,
    EntityNotFound,
    FeatureServiceNotFound,
    FeatureViewNotFound,
    InvalidDefinition,
    MonitorNotFound,
    RetrainPolicyNotFound,
    RolloutNotFound,
    TrainingJobNotFound,
)

FORMAT = 1
ObjectType = Literal[
    "entity",
    "feature_view",
    "feature_service",
    "on_demand_feature_view",
    "monitor",
    "rollout",
    "training_job",
    "retrain_policy",
]
OBJECT_TYPES: tuple[ObjectType, ...] = (
    "entity",
    "feature_view",
    "feature_service",
    "on_demand_feature_view",
    "monitor",
    "rollout",
    "training_job",
    "retrain_policy",
)
OPTIONAL_TYPES = ("monitor", "rollout", "training_job", "retrain_policy")
Definition = (
    Entity
    | FeatureView
    | FeatureService
    | OnDemandFeatureView
    | Monitor
    | Rollout
    | TrainingJob
    | RetrainPolicy
)


@dataclass(frozen=True)
class Catalog:
    """Entities, feature views and feature services of one project, keyed by name."""

    project: str
    entities: Mapping[str, Entity] = field(default_factory=dict)
    feature_views: Mapping[str, FeatureView] = field(default_factory=dict)
    feature_services: Mapping[str, FeatureService] = field(default_factory=dict)
    on_demand_feature_views: Mapping[str, OnDemandFeatureView] = field(default_factory=dict)
    monitors: Mapping[str, Monitor] = field(default_factory=dict)
    rollouts: Mapping[str, Rollout] = field(default_factory=dict)
    training_jobs: Mapping[str, TrainingJob] = field(default_factory=dict)
    retrain_policies: Mapping[str, RetrainPolicy] = field(default_factory=dict)

    @classmethod
    def build(cls, project: str, definitions: Iterable[Definition]) -> Catalog:
        """Collect definitions; entities used by views are included even if not listed."""
        groups: dict[str, dict[str, Any]] = {t: {} for t in OBJECT_TYPES}
        for item in definitions:
            bucket = groups[item.kind]
            if item.name in bucket and bucket[item.name] != item:
                raise DuplicateDefinition(f"two different {item.kind}s are named '{item.name}'")
            bucket[item.name] = item
        catalog = cls(
            project,
            groups["entity"],
            groups["feature_view"],
            groups["feature_service"],
            groups["on_demand_feature_view"],
            groups["monitor"],
            groups["rollout"],
            groups["training_job"],
            groups["retrain_policy"],
        )
        catalog.check()
        return catalog

    def check(self) -> None:
        """Raise InvalidDefinition if objects refer to missing or different objects."""
        for view in self.feature_views.values():
            for entity in view.entities:
                known = self.entities.get(entity.name)
                if known is None:
                    raise InvalidDefinition(
                        f"feature view '{view.name}' uses entity '{entity.name}', which is not "
                        "declared in the repo; declare it at module level"
                    )
                if known != entity:
                    raise InvalidDefinition(
                        f"feature view '{view.name}' uses a different definition of entity "
                        f"'{entity.name}' than the repo declares; use the declared object"
                    )
        for on_demand in self.on_demand_feature_views.values():
            self._check_on_demand(on_demand)
        for service in self.feature_services.values():
            self._check_service(service)
        models: dict[str, str] = {}
        for monitor in self.monitors.values():
            other = models.setdefault(monitor.model, monitor.name)
            if other != monitor.name:
                raise InvalidDefinition(
                    f"monitors '{other}' and '{monitor.name}' both watch model "
                    f"'{monitor.model}'; declare one Monitor per model"
                )
        self._check_lifecycle()
        pushes: dict[str, tuple[str, object]] = {}
        for view in self.feature_views.values():
            if isinstance(view.source, PushSource | StreamSource):
                seen = pushes.setdefault(view.source.name, (view.name, view.source))
                if seen[1] != view.source:
                    raise InvalidDefinition(
                        f"feature views '{seen[0]}' and '{view.name}' declare push or stream "
                        f"source '{view.source.name}' differently; declare it once and share it"
                    )

    def _check_lifecycle(self) -> None:
        """Training jobs read a declared service and start a declared rollout of their model;
        a retrain policy runs a declared job of its model; one policy per model."""
        for job in self.training_jobs.values():
            if job.feature_service not in self.feature_services:
                raise InvalidDefinition(
                    f"training job '{job.name}' uses feature service '{job.feature_service}', "
                    "which is not in the repo; declare it"
                )
            rollout = self.rollouts.get(job.rollout) if job.rollout is not None else None
            if job.rollout is not None and rollout is None:
                raise InvalidDefinition(
                    f"training job '{job.name}' starts rollout '{job.rollout}', which is not in "
                    "the repo; declare it or leave rollout=None"
                )
            if rollout is not None and rollout.model != job.model:
                raise InvalidDefinition(
                    f"training job '{job.name}' trains model '{job.model}' but starts rollout "
                    f"'{rollout.name}' of model '{rollout.model}'; name a rollout of its model"
                )
        models: dict[str, str] = {}
        for policy in self.retrain_policies.values():
            trained = self.training_jobs.get(policy.job)
            if trained is None:
                raise InvalidDefinition(
                    f"retrain policy '{policy.name}' runs training job '{policy.job}', which is "
                    "not in the repo; declare it"
                )
            if trained.model != policy.model:
                raise InvalidDefinition(
                    f"retrain policy '{policy.name}' is for model '{policy.model}' but its job "
                    f"'{trained.name}' trains model '{trained.model}'"
                )
            other = models.setdefault(policy.model, policy.name)
            if other != policy.name:
                raise InvalidDefinition(
                    f"retrain policies '{other}' and '{policy.name}' both decide for model "
                    f"'{policy.model}'; declare one RetrainPolicy per model"
                )

    def _check_on_demand(self, on_demand: OnDemandFeatureView) -> None:
        """Its sources exist, projected features exist, and no two inputs share a name."""
        inputs: dict[str, str] = {}
        for source in on_demand.sources:
            view = self.feature_views.get(source)
            if view is None:
                raise InvalidDefinition(
                    f"on-demand feature view '{on_demand.name}' reads feature view "
                    f"'{source}', which is not in the repo; declare it"
                )
            for name in on_demand.source_inputs(source, view.feature_names):
                if name not in view.feature_names:
                    raise InvalidDefinition(
                        f"on-demand feature view '{on_demand.name}' reads '{source}:{name}', "
                        f"but that view has no such feature; it has {list(view.feature_names)}"
                    )
                _one_input(on_demand.name, inputs, name, f"feature view '{source}'")
        for name in on_demand.request_fields:
            _one_input(on_demand.name, inputs, name, "its request source")

    def _check_service(self, service: FeatureService) -> None:
        for projection in service.features:
            view: FeatureView | OnDemandFeatureView | None = self.feature_views.get(
                projection.view
            ) or self.on_demand_feature_views.get(projection.view)
            if view is None:
                raise InvalidDefinition(
                    f"feature service '{service.name}' uses feature view "
                    f"'{projection.view}', which is not in the repo"
                )
            for name in projection.features:
                if name not in view.feature_names:
                    raise InvalidDefinition(
                        f"feature service '{service.name}' uses '{view.name}:{name}', but "
                        f"that view has no such feature; it has {list(view.feature_names)}"
                    )

    def objects(self, object_type: ObjectType) -> Mapping[str, Definition]:
        if object_type == "entity":
            return self.entities
        if object_type == "feature_view":
            return self.feature_views
        if object_type == "on_demand_feature_view":
            return self.on_demand_feature_views
        if object_type == "monitor":
            return self.monitors
        if object_type == "rollout":
            return self.rollouts
        if object_type == "training_job":
            return self.training_jobs
        if object_type == "retrain_policy":
            return self.retrain_policies
        return self.feature_services

    def get(self, object_type: ObjectType, name: str) -> Definition:
        found = self.objects(object_type).get(name)
        if found is None:
            error = {
                "entity": EntityNotFound,
                "feature_view": FeatureViewNotFound,
                "feature_service": FeatureServiceNotFound,
                "on_demand_feature_view": FeatureViewNotFound,
                "monitor": MonitorNotFound,
                "rollout": RolloutNotFound,
                "training_job": TrainingJobNotFound,
                "retrain_policy": RetrainPolicyNotFound,
            }[object_type]
            known = ", ".join(sorted(self.objects(object_type))) or "none"
            raise error(
                f"no {object_type} named '{name}' in project '{self.project}' (known: {known})"
            )
        return found

    def find(self, name: str) -> Definition:
        """An object of any type by name (entities, then views, then services)."""
        for object_type in OBJECT_TYPES:
            if name in self.objects(object_type):
                return self.objects(object_type)[name]
        raise FeatureViewNotFound(f"nothing named '{name}' in project '{self.project}'")

    def __len__(self) -> int:
        return sum(len(self.objects(t)) for t in OBJECT_TYPES)

    # --- serialization -------------------------------------------------------------------------

    def to_records(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Plain JSON-ready records per type; views refer to entities by name."""
        records = {
            "entity": {n: record_of(e) for n, e in sorted(self.entities.items())},
            "feature_view": {n: record_of(v) for n, v in sorted(self.feature_views.items())},
            "feature_service": {n: record_of(s) for n, s in sorted(self.feature_services.items())},
            "on_demand_feature_view": {
                n: record_of(o) for n, o in sorted(self.on_demand_feature_views.items())
            },
            "monitor": {n: record_of(m) for n, m in sorted(self.monitors.items())},
            "rollout": {n: record_of(r) for n, r in sorted(self.rollouts.items())},
            "training_job": {n: record_of(j) for n, j in sorted(self.training_jobs.items())},
            "retrain_policy": {n: record_of(p) for n, p in sorted(self.retrain_policies.items())},
        }
        return records

    def to_json(self) -> str:
        return self._json

    @cached_property
    def _json(self) -> str:
        objects = self.to_records()
        for optional in OPTIONAL_TYPES:  # catalogs without them keep their JSON
            if not objects[optional]:  # (and fingerprint) from before these types existed
                del objects[optional]
        body = {"format": FORMAT, "project": self.project, "objects": objects}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Catalog:
        body = json.loads(text)
        if body.get("format") != FORMAT:
            raise InvalidDefinition(
                f"registry catalog format {body.get('format')} is not supported by this version "
                f"of parity (format {FORMAT}); upgrade parity"
            )
        objects = body["objects"]
        entities = {n: Entity.model_validate(r) for n, r in objects["entity"].items()}
        views = {
            n: FeatureView.model_validate({**r, "entities": [entities[e] for e in r["entities"]]})
            for n, r in objects["feature_view"].items()
        }
        services = {
            n: FeatureService.model_validate(r) for n, r in objects["feature_service"].items()
        }
        on_demand = {
            n: OnDemandFeatureView.model_validate(r)
            for n, r in objects.get("on_demand_feature_view", {}).items()
        }
        monitors = {n: Monitor.model_validate(r) for n, r in objects.get("monitor", {}).items()}
        rollouts = {n: Rollout.model_validate(r) for n, r in objects.get("rollout", {}).items()}
        jobs = {
            n: TrainingJob.model_validate(r) for n, r in objects.get("training_job", {}).items()
        }
        policies = {
            n: RetrainPolicy.model_validate(r) for n, r in objects.get("retrain_policy", {}).items()
        }
        views_etc = (entities, views, services, on_demand, monitors, rollouts, jobs, policies)
        return cls(body["project"], *views_etc)

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON: equal fingerprints mean equal catalogs."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def _one_input(view: str, inputs: dict[str, str], name: str, origin: str) -> None:
    """The function gets its inputs by name: two inputs of one name would hide one of them."""
    if name in inputs:
        raise InvalidDefinition(
            f"on-demand feature view '{view}' has two inputs named '{name}' (from "
            f"{inputs[name]} and {origin}); read one of them through a projection "
            "(view[['feature', ...]]) or rename it"
        )
    inputs[name] = origin


def record_of(item: Definition) -> dict[str, Any]:
    """The JSON record of one definition, as stored and diffed."""
    record = item.model_dump(mode="json", by_alias=True)
    if isinstance(item, FeatureView):
        record["entities"] = list(item.entity_names)
        if record.get("freshness_slo") is None:  # views stored before it existed stay the same
            record.pop("freshness_slo", None)
    return record
