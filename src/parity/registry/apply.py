"""Apply and teardown: commit a plan to a RegistryStore with compare-and-swap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from parity.errors import BreakingChange, ProjectNotFound
from parity.registry.catalog import Catalog
from parity.registry.plan import Plan, plan
from parity.registry.store import RegistryStore, VersionInfo


@dataclass(frozen=True)
class ApplyResult:
    """The plan that was applied, and the version it created (None when there was nothing to do)."""

    plan: Plan
    version: VersionInfo | None


def current_catalog(store: RegistryStore, project: str) -> tuple[Catalog, int]:
    """The registered catalog and its version (an empty catalog at version 0 if none)."""
    head = store.head(project)
    if head == 0:
        return Catalog(project), 0
    return store.read(project, head).catalog, head


def plan_against(store: RegistryStore, desired: Catalog) -> Plan:
    current, head = current_catalog(store, desired.project)
    return plan(current, desired, head)


def apply_catalog(
    store: RegistryStore,
    desired: Catalog,
    *,
    allow_breaking: bool,
    author: str,
    message: str,
    now: datetime,
) -> ApplyResult:
    """Commit `desired` as a new version if it differs from the head; refuse breaking changes
    unless allowed. Raises RegistryConflict if another apply committed first."""
    the_plan = plan_against(store, desired)
    if not the_plan.has_changes:
        return ApplyResult(the_plan, None)
    if the_plan.breaking and not allow_breaking:
        raise BreakingChange(the_plan.breaking_message())
    info = store.commit(
        desired,
        expected_version=the_plan.base_version,
        changes=the_plan.changes,
        author=author,
        message=message,
        committed_at=now,
    )
    return ApplyResult(the_plan, info)


def teardown(store: RegistryStore, project: str) -> int:
    """Remove the project from the registry; returns the version it had."""
    head = store.head(project)
    if head == 0:
        raise ProjectNotFound(f"project '{project}' is not in the registry; nothing to tear down")
    store.delete_project(project, expected_version=head)
    return head
