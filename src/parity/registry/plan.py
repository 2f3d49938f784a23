"""Plan: the pure, field-level diff between the registered catalog and the repo's catalog.

Decides which changes are breaking. Takes values, returns values; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from parity.registry.catalog import OBJECT_TYPES, Catalog, ObjectType

ChangeKind = Literal["add", "delete", "update"]

# Top-level fields whose change alters the meaning of stored data or of keys.
_BREAKING_FIELDS: dict[ObjectType, dict[str, str]] = {
    "entity": {
        "join_keys": "changing an entity's join keys re-keys every view that uses it",
        "value_type": "changing an entity's key type re-keys every view that uses it",
    },
    "feature_view": {
        "source": "changing a view's source changes the meaning of its stored values",
        "ttl": "changing a view's ttl changes which values training sets and serving see",
        "entities": "changing a view's entities changes its keys",
        "aggregations": "changing a view's aggregations changes what its stored tiles mean",
        "tile_interval": "changing a view's tile interval invalidates its stored tiles",
    },
    "feature_service": {},
    # Values are computed on every read, but training sets built before the change hold the
    # old function's values: a model trained on them would be served different ones.
    "on_demand_feature_view": {
        "code_hash": "changing an on-demand function's code changes its values",
        "mode": "changing an on-demand function's mode changes how its values are computed",
        "sources": "changing an on-demand view's sources changes its function's inputs",
        "source_features": "changing an on-demand view's source features changes its inputs",
    },
    # A monitor only reads; its history stays valid under any change of thresholds or tests.
    "monitor": {},
    # A rollout definition is a plan for future runs; a running rollout keeps its own copy.
    "rollout": {},
    # A training job and a retrain policy say what happens next time; past runs keep their records.
    "training_job": {},
    "retrain_policy": {},
}
_ADVICE = (
    "create a new feature view version (e.g. 'txn_stats_v2') instead, or pass --allow-breaking"
)


@dataclass(frozen=True)
class FieldChange:
    """One changed attribute: `path` is dotted, e.g. `schema.amount.dtype`."""

    path: str
    old: Any
    new: Any
    breaking: bool = False
    reason: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "old": self.old,
            "new": self.new,
            "breaking": self.breaking,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ObjectChange:
    kind: ChangeKind
    object_type: ObjectType
    name: str
    fields: tuple[FieldChange, ...] = ()

    @property
    def breaking(self) -> bool:
        return any(f.breaking for f in self.fields)

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "object_type": self.object_type,
            "name": self.name,
            "fields": [f.to_record() for f in self.fields],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ObjectChange:
        fields = tuple(FieldChange(**f) for f in record["fields"])
        return cls(record["kind"], record["object_type"], record["name"], fields)


@dataclass(frozen=True)
class Plan:
    """What apply would do, against `base_version` of the registry (0: nothing registered yet)."""

    project: str
    base_version: int
    changes: tuple[ObjectChange, ...]

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def breaking(self) -> tuple[ObjectChange, ...]:
        return tuple(c for c in self.changes if c.breaking)

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    def summary(self) -> str:
        if not self.changes:
            return "no changes"
        parts = [f"{self.count(k)} to {k}" for k in ("add", "update", "delete") if self.count(k)]
        if self.breaking:
            parts.append(f"{len(self.breaking)} breaking")
        return ", ".join(parts)

    def breaking_message(self) -> str:
        lines = [
            f"{c.object_type} '{c.name}': {f.path}: {f.reason}"
            for c in self.breaking
            for f in c.fields
            if f.breaking
        ]
        return (
            "breaking changes refused: " + "; ".join(lines) + f". To keep old data valid, {_ADVICE}"
        )


def plan(current: Catalog, desired: Catalog, base_version: int) -> Plan:
    """Diff `desired` (the repo) against `current` (the registry at `base_version`)."""
    old_records, new_records = current.to_records(), desired.to_records()
    changes: list[ObjectChange] = []
    for object_type in OBJECT_TYPES:
        old, new = old_records[object_type], new_records[object_type]
        for name in sorted(new.keys() - old.keys()):
            changes.append(ObjectChange("add", object_type, name))
        for name in sorted(old.keys() & new.keys()):
            fields = diff_records(object_type, old[name], new[name])
            if fields:
                changes.append(ObjectChange("update", object_type, name, fields))
        for name in sorted(old.keys() - new.keys()):
            changes.append(ObjectChange("delete", object_type, name))
    return Plan(desired.project, base_version, tuple(changes))


def diff_records(
    object_type: ObjectType, old: dict[str, Any], new: dict[str, Any]
) -> tuple[FieldChange, ...]:
    """Field-level changes between two records of one object; schemas are diffed per field."""
    changes: list[FieldChange] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "schema":
            changes.extend(_diff_schema(before or [], after or []))
            continue
        reason = _BREAKING_FIELDS[object_type].get(key, "")
        changes.append(FieldChange(key, before, after, bool(reason), reason))
    return tuple(changes)


def _diff_schema(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[FieldChange]:
    before = {f["name"]: f for f in old}
    after = {f["name"]: f for f in new}
    changes: list[FieldChange] = []
    for name in [f["name"] for f in new if f["name"] not in before]:
        changes.append(FieldChange(f"schema.{name}", None, after[name]["dtype"]))
    for name in [f["name"] for f in old if f["name"] not in after]:
        changes.append(FieldChange(f"schema.{name}", before[name]["dtype"], None))
    for name in [f["name"] for f in new if f["name"] in before]:
        for attr in sorted(before[name].keys() | after[name].keys()):
            was, now = before[name].get(attr), after[name].get(attr)
            if was == now:
                continue
            reason = (
                "changing a feature's dtype invalidates stored values" if attr == "dtype" else ""
            )
            changes.append(FieldChange(f"schema.{name}.{attr}", was, now, bool(reason), reason))
    return changes
