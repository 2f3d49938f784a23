"""Generate the registry benchmark's feature repos: a Parity repo and the equivalent Feast repo.

Both declare one entity, `views` feature views of `features` Float64 features each (written out as
literal `FeatureView(...)` calls spread over `files` modules, like a hand-written repo), one
feature service over the first views, and one small Parquet file per view.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

SERVICE_VIEWS = 3
ROWS_PER_FILE = 4


@dataclass(frozen=True)
class RepoSpec:
    """Sizes of a generated repo."""

    views: int
    features: int
    files: int = 10

    @property
    def view_names(self) -> list[str]:
        width = max(3, len(str(self.views - 1)))
        return [f"v_{i:0{width}d}" for i in range(self.views)]

    @property
    def feature_names(self) -> list[str]:
        width = max(2, len(str(self.features - 1)))
        return [f"f_{i:0{width}d}" for i in range(self.features)]

    def chunks(self) -> list[list[str]]:
        """View names split evenly over at most `files` modules."""
        names, count = self.view_names, min(self.files, self.views)
        bounds = [round(i * len(names) / count) for i in range(count + 1)]
        return [names[bounds[i] : bounds[i + 1]] for i in range(count)]


@dataclass(frozen=True)
class Flavor:
    """What differs between the Parity and the Feast spelling of the same repo."""

    name: str
    imports: str


PARITY = Flavor("parity", "from parity import {names}")
FEAST = Flavor("feast", "from feast import {names}")


def _import_line(flavor: Flavor, names: list[str]) -> str:
    if flavor is FEAST:
        types = [n for n in names if n in ("Float64", "Int64")]
        core = [n for n in names if n not in types]
        lines = [FEAST.imports.format(names=", ".join(core))]
        if types:
            lines.append(f"from feast.types import {', '.join(types)}")
        return "\n".join(lines)
    return flavor.imports.format(names=", ".join(names))


def entities_module(flavor: Flavor) -> str:
    return (
        '"""The entity every generated feature view is keyed by."""\n\n'
        f"{_import_line(flavor, ['Entity'])}\n\n"
        'driver = Entity(name="driver", join_keys=["driver_id"])\n'
    )


def view_source(name: str, features: list[str]) -> str:
    """One literal FeatureView declaration (the same text in both flavors)."""
    fields = "".join(f'        Field(name="{f}", dtype=Float64),\n' for f in features)
    return (
        f"{name} = FeatureView(\n"
        f'    name="{name}",\n'
        "    entities=[driver],\n"
        f"    schema=[\n{fields}    ],\n"
        f'    source=FileSource(path="data/{name}.parquet", timestamp_field="event_timestamp"),\n'
        "    ttl=timedelta(days=1),\n"
        f'    description="Generated feature view {name}.",\n'
        ")\n"
    )


def views_module(flavor: Flavor, names: list[str], features: list[str]) -> str:
    header = (
        f'"""Generated feature views {names[0]} .. {names[-1]}."""\n\n'
        "from datetime import timedelta\n\n"
        "from entities import driver\n"
        f"{_import_line(flavor, ['FeatureView', 'Field', 'FileSource', 'Float64'])}\n"
    )
    return header + "".join(f"\n\n{view_source(n, features)}" for n in names)


def services_module(flavor: Flavor, spec: RepoSpec) -> str:
    names = spec.chunks()[0][:SERVICE_VIEWS]
    picked = ", ".join(f'"{f}"' for f in spec.feature_names[:2])
    items = [names[0], *(f"{n}[[{picked}]]" for n in names[1:])]
    return (
        '"""A feature service over the first views of views_00."""\n\n'
        f"from views_00 import {', '.join(names)}\n"
        f"{_import_line(flavor, ['FeatureService'])}\n\n"
        f'svc_bench = FeatureService(name="svc_bench", features=[{", ".join(items)}])\n'
    )


def write_parquet(path: Path, features: list[str]) -> None:
    """A few rows: driver_id int64, event_timestamp timestamp[us, UTC], features float64."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = datetime(2024, 1, 1, tzinfo=UTC)
    columns = {
        "driver_id": pa.array(range(1, ROWS_PER_FILE + 1), pa.int64()),
        "event_timestamp": pa.array(
            [start + timedelta(hours=i) for i in range(ROWS_PER_FILE)], pa.timestamp("us", "UTC")
        ),
    }
    for index, name in enumerate(features):
        values = [float(index + row) for row in range(ROWS_PER_FILE)]
        columns[name] = pa.array(values, pa.float64())
    pq.write_table(pa.table(columns), path)


def write_repo(root: Path, spec: RepoSpec, flavor: Flavor, config: str) -> None:
    """(Re)create `root` with the config file, the modules and the Parquet sources."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    config_name = "parity.yaml" if flavor is PARITY else "feature_store.yaml"
    (root / config_name).write_text(config)
    (root / "entities.py").write_text(entities_module(flavor))
    for index, names in enumerate(spec.chunks()):
        text = views_module(flavor, names, spec.feature_names)
        (root / f"views_{index:02d}.py").write_text(text)
    (root / "services.py").write_text(services_module(flavor, spec))
    for name in spec.view_names:
        write_parquet(root / "data" / f"{name}.parquet", spec.feature_names)


def parity_config(project: str, postgres_url: str | None) -> str:
    if postgres_url:
        registry = f"  type: postgres\n  url: {postgres_url}\n"
    else:
        registry = "  type: sqlite\n  path: data/registry.db\n"
    return f"project: {project}\nregistry:\n{registry}"


def feast_config(project: str, root: Path, registry_type: str) -> str:
    if registry_type == "sql":
        registry = (
            "  registry_type: sql\n"
            f"  path: sqlite:///{root.resolve() / 'data' / 'registry.db'}\n"
            "  cache_ttl_seconds: 600\n"
        )
    else:
        registry = "  registry_type: file\n  path: data/registry.db\n  cache_ttl_seconds: 600\n"
    return (
        f"project: {project}\n"
        "provider: local\n"
        f"registry:\n{registry}"
        "online_store:\n  type: sqlite\n  path: data/online_store.db\n"
        "offline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n"
    )


def change_description(root: Path, view: str, text: str) -> None:
    """Give `view` a new description in place (the one-update apply)."""
    marker = f'    name="{view}",\n'
    for path in sorted(root.glob("views_*.py")):
        source = path.read_text()
        if marker not in source:
            continue
        start = source.index(marker)
        begin = source.index('    description="', start)
        end = source.index('",\n', begin)
        path.write_text(f'{source[:begin]}    description="{text}{source[end:]}')
        return
    raise ValueError(f"feature view {view} not found under {root}")
