"""`store.access`: the entry point of access control — API tokens and the audit trail.

SKELETON (issue 17, lead): workstream A fills it in (see /work/wt/BRIEF.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore


class Access:
    """Tokens (`tokens`) and the audit trail (`audit`) of one project."""

    def __init__(self, store: FeatureStore) -> None:
        self._store = store
