"""The registry: versioned catalog snapshots, plan (pure diff), apply (compare-and-swap), history.

Backends (registry/sql.py) are imported only when a store is opened, so this package stays light.
"""

from parity.registry.cache import CachedRegistry
from parity.registry.catalog import Catalog
from parity.registry.plan import FieldChange, ObjectChange, Plan, plan
from parity.registry.store import RegistryStore, Snapshot, VersionInfo

__all__ = [
    "CachedRegistry",
    "Catalog",
    "FieldChange",
    "ObjectChange",
    "Plan",
    "RegistryStore",
    "Snapshot",
    "VersionInfo",
    "plan",
]
