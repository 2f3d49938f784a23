"""Model registry records (versions, alias moves) and the `ModelStore` protocol backends implement.

Values and a contract only: must not import a storage backend, an ML library or the artifact store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal, Protocol, runtime_checkable

from parity.errors import ModelNotFound


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered model version and its lineage.

    A draft (what `ModelStore.add_version` takes) is the same record with `version=0`.
    """

    project: str
    name: str
    version: int
    created_at: datetime
    author: str
    flavor: str
    artifact: str  # sha256 hex digest of the artifact bytes
    artifact_size: int
    signature: dict[str, Any] | None = None  # Signature.to_dict() form
    feature_service: str | None = None
    training_dataset: str | None = None
    dataset_fingerprint: str | None = None
    dataset_registry_version: int | None = None
    registry_version: int | None = None  # the feature registry's head at registration
    code_version: str | None = None  # git commit, "-dirty" when the checkout had changes
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def ref(self) -> str:
        """`name/version`, the reference that always means exactly this version."""
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: `version` None means the alias was deleted, `previous` None that it
    did not exist before."""

    project: str
    name: str
    alias: str
    version: int | None
    previous: int | None
    moved_at: datetime
    author: str
    reason: str


class _Unchecked(Enum):
    UNCHECKED = "unchecked"


UNCHECKED: Final = _Unchecked.UNCHECKED
"""`expected=UNCHECKED`: move the alias from wherever it points (no compare-and-swap)."""
Expected = int | None | Literal[_Unchecked.UNCHECKED]
"""What an alias must point at for a move to happen: a version, None (absent) or UNCHECKED."""


def model_not_found(project: str, name: str) -> ModelNotFound:
    return ModelNotFound(
        f"no model '{name}' in project '{project}'; see 'parity models list' for the models "
        "registered, or register it with ModelRegistry.register_model"
    )


@runtime_checkable
class ModelStore(Protocol):
    """Where model versions, aliases and alias history live; tested by tests/conformance."""

    def add_version(self, draft: ModelVersion) -> ModelVersion:
        """Store the draft under the next version number of its model (numbers are never reused,
        concurrent writers never get the same one) and return it with that number."""
        ...

    def get_version(self, project: str, name: str, version: int) -> ModelVersion:
        """Raise ModelNotFound (no such model) or ModelVersionNotFound."""
        ...

    def latest_version(self, project: str, name: str) -> ModelVersion:
        """The highest live version; raise ModelNotFound if there is none."""
        ...

    def list_versions(self, project: str, name: str) -> list[ModelVersion]:
        """Live versions, oldest first; empty for an unknown model."""
        ...

    def list_models(self, project: str) -> list[str]:
        """Names of models with at least one live version, sorted."""
        ...

    def delete_version(self, project: str, name: str, version: int) -> None:
        """Delete one version; raise VersionAliased (naming the aliases) if an alias points at it,
        checked in the same write transaction as the delete."""
        ...

    def set_alias(
        self,
        project: str,
        name: str,
        alias: str,
        version: int,
        *,
        author: str,
        reason: str,
        at: datetime,
        expected: Expected = UNCHECKED,
        moves_seen: int | None = None,
    ) -> AliasEvent:
        """Point an alias at an existing version, recording the move in the same transaction.

        Compare-and-swap, checked while the transaction holds the alias: with `expected` (a
        version, or None for "absent") the alias must point there; with `moves_seen` its history
        must hold exactly that many moves (so A -> B -> A in between is caught too). Otherwise
        raise AliasMoved and change nothing."""
        ...

    def delete_alias(
        self, project: str, name: str, alias: str, *, author: str, reason: str, at: datetime
    ) -> AliasEvent:
        """Remove an alias (AliasNotFound if absent), recording the move."""
        ...

    def get_alias(self, project: str, name: str, alias: str) -> int:
        """The version an alias points at; raise AliasNotFound."""
        ...

    def aliases(self, project: str, name: str) -> dict[str, int]:
        """Every alias of a model and its version, sorted by alias."""
        ...

    def alias_history(self, project: str, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Moves of one alias, or of all aliases of the model, oldest first."""
        ...

    def alias_at(self, project: str, name: str, alias: str, moment: datetime) -> int | None:
        """The version the alias pointed at, at `moment` (None: it did not exist then)."""
        ...

    def close(self) -> None: ...
