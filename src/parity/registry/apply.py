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


def plan_against(store: RegistryStore, desired: Catalog) -> Plan:
    """Diff `desired` against the head; an unchanged catalog is recognized by its fingerprint
    alone, without reading or parsing the stored one."""
    head = store.head_info(desired.project)
    if head is not None and head.fingerprint == desired.fingerprint():
        return Plan(desired.project, head.version, ())
    if head is None:
        return plan(Catalog(desired.project), desired, 0)
    return plan(store.read(desired.project, head.version).catalog, desired, head.version)


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
    return commit_plan(
        store,
        desired,
        the_plan,
        allow_breaking=allow_breaking,
        author=author,
        message=message,
        now=now,
    )


def commit_plan(
    store: RegistryStore,
    desired: Catalog,
    the_plan: Plan,
    *,
    allow_breaking: bool,
    author: str,
    message: str,
    now: datetime,
) -> ApplyResult:
    """Commit a plan made by `plan_against` (compare-and-swap on its base version)."""
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
