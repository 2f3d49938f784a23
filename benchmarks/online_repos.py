"""Feature repos for bench_online.py: the same entity and views for Parity and for Feast.

One `driver` entity (join key `driver_id`, int64), the `driver_stats` view over the long log and
four `driver_extra_N` views over the wide snapshot (online_data.py), 10 Float64 features each and
no ttl. A Parity repo per online store (SQLite or Redis) and a Feast repo per online store
(SQLite, Redis, or `remote`: Feast's HTTP client pointed at a running feature server, sharing the
Redis repo's registry). Standard library only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import online_data as data

REDIS_URL = "redis://127.0.0.1:6379/0"
FEAST_REDIS = "127.0.0.1:6379"  # db 0


def views(data_dir: Path) -> list[tuple[str, Path, list[str]]]:
    """(view, source Parquet file, features) for every view."""
    return [
        (data.STATS_VIEW, data_dir / data.STATS_FILE, data.STATS),
        *((name, data_dir / data.EXTRA_FILE, fs) for name, fs in data.EXTRA_VIEWS.items()),
    ]


def refs(view_names: list[str]) -> list[str]:
    """'view:feature' for every feature of the named views, in order."""
    features = {name: fs for name, _, fs in views(Path("."))}
    return [f"{view}:{feature}" for view in view_names for feature in features[view]]


REFS_10 = refs([data.STATS_VIEW])
REFS_50 = refs([data.STATS_VIEW, *data.EXTRA_VIEWS])


def _fresh(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    (root / "data").mkdir(parents=True)


def _call(function: str, arguments: dict[str, str]) -> str:
    """Source text of `function(key=value, ...)`, one argument per line (values are code)."""
    lines = "".join(f"    {key}={value},\n" for key, value in arguments.items())
    return f"{function}(\n{lines})"


def _view_source(imports: str, entity: str, view_args: dict[str, str], data_dir: Path) -> str:
    """A definitions module: the entity, then one FeatureView(...) per view."""
    blocks = [imports, entity]
    for name, path, features in views(data_dir):
        source = {
            "path": json.dumps(str(path)),
            "timestamp_field": '"event_timestamp"',
            "created_timestamp_column": '"created"',
        }
        if "feast" in imports:
            source = {"name": json.dumps(f"{name}_source"), **source}  # Feast wants unique names
        fields = ", ".join(f'Field(name="{feature}", dtype=Float64)' for feature in features)
        view = {
            "name": json.dumps(name),
            "entities": "[driver]",
            "schema": f"[{fields}]",
            "source": _call("FileSource", source).replace("\n", "\n    "),
            **view_args,
        }
        blocks.append(f"{name} = {_call('FeatureView', view)}\n")
    return "\n\n".join(blocks)


def parity_repo(root: Path, project: str, store: str, data_dir: Path) -> None:
    _fresh(root)
    online = (
        f"  type: redis\n  connection_string: {REDIS_URL}\n"
        if store == "redis"
        else "  type: sqlite\n  path: data/online.db\n"
    )
    (root / "parity.yaml").write_text(
        f"project: {project}\n"
        "registry:\n  type: sqlite\n  path: data/registry.db\n  cache_ttl_seconds: 600\n"
        "offline:\n  type: duckdb\n"
        f"online:\n{online}"
    )
    (root / "drivers.py").write_text(
        _view_source(
            "from parity import Entity, FeatureView, Field, FileSource, Float64, Int64\n",
            'driver = Entity(name="driver", join_keys=["driver_id"], value_type=Int64)\n',
            {"ttl": "None"},
            data_dir,
        )
    )


def feast_repo(
    root: Path,
    project: str,
    store: str,
    data_dir: Path,
    *,
    offline: str = "duckdb",
    registry: Path | None = None,
    server: str = "",
) -> None:
    """store: redis | sqlite | remote (then `server` is its URL and `registry` the shared one)."""
    _fresh(root)
    online = {
        "redis": f'  type: redis\n  connection_string: "{FEAST_REDIS}"\n',
        "sqlite": "  type: sqlite\n  path: data/online_store.db\n",
        "remote": f"  type: remote\n  path: {server}\n",
    }[store]
    (root / "feature_store.yaml").write_text(
        f"project: {project}\n"
        "provider: local\n"
        f"registry:\n  registry_type: file\n  path: {registry or 'data/registry.db'}\n"
        "  cache_ttl_seconds: 600\n"
        f"online_store:\n{online}"
        f"offline_store:\n  type: {offline}\n"
        "entity_key_serialization_version: 3\n"
    )
    if store == "remote":
        return  # the registry is the Redis repo's: nothing to apply
    (root / "definitions.py").write_text(
        _view_source(
            "from feast import Entity, FeatureView, Field, FileSource, ValueType\n"
            "from feast.types import Float64\n",
            'driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)\n',
            {"online": "True"},
            data_dir,
        )
    )
