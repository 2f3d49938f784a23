"""The sqlite3 reader of a SQLite registry answers exactly what the SQLAlchemy store answers."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parity import Catalog, Entity, FeatureView, Field, FileSource, Float64
from parity.errors import ProjectNotFound, RegistryVersionNotFound
from parity.registry.plan import plan
from parity.registry.sql import SqlRegistryStore
from parity.registry.sqlite_read import SqliteRegistryStore, open_registry_store
from parity.registry.store import RegistryStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def catalog_with(project: str, *views: str) -> Catalog:
    account = Entity(name="account")
    items: list[object] = [account]
    for name in views:
        schema = [Field(name="x", dtype=Float64)]
        source = FileSource(path=f"data/{name}.parquet")
        items.append(
            FeatureView(name=name, entities=[account], schema=schema, source=source, ttl=None)
        )
    return Catalog.build(project, items)  # type: ignore[arg-type]


def commit(store: RegistryStore, catalog: Catalog, expected: int, minutes: int = 0) -> None:
    store.commit(
        catalog,
        expected_version=expected,
        changes=plan(Catalog(catalog.project), catalog, expected).changes,
        author="ann",
        message=f"v{expected + 1}",
        committed_at=T0 + timedelta(minutes=minutes),
    )


def reader(url: str) -> SqliteRegistryStore:
    opened = open_registry_store(url)
    assert isinstance(opened, SqliteRegistryStore)
    return opened


def test_reads_equal_the_sqlalchemy_stores_and_load_no_sqlalchemy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    writer = SqlRegistryStore(url)
    commit(writer, catalog_with("p", "a"), 0)
    commit(writer, catalog_with("p", "a", "b"), 1, minutes=5)
    commit(writer, catalog_with("q", "c"), 0)
    fast = reader(url)
    for project in ("p", "q", "nobody"):
        assert fast.head(project) == writer.head(project)
        assert fast.head_info(project) == writer.head_info(project)
    for project, version in (("p", None), ("p", 1), ("p", 2), ("q", None)):
        mine, theirs = fast.read(project, version), writer.read(project, version)
        assert mine.info == theirs.info
        assert mine.catalog.to_json() == theirs.catalog.to_json()
    assert fast._sql is None  # all of it answered by sqlite3
    with pytest.raises(ProjectNotFound):
        fast.read("nobody")
    with pytest.raises(RegistryVersionNotFound):
        fast.read("p", 3)
    # A commit made by another store after this reader opened is seen at once.
    commit(writer, catalog_with("p", "a", "b", "c"), 2, minutes=9)
    assert fast.head("p") == 3
    assert sorted(fast.read("p").catalog.feature_views) == ["a", "b", "c"]
    writer.close()


def test_a_missing_file_or_table_is_created_by_the_sqlalchemy_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'registry.db'}"
    fast = reader(url)
    assert fast.head("p") == 0  # the file was not there: SQLAlchemy created it and its tables
    assert (tmp_path / "nested" / "registry.db").is_file()
    with pytest.raises(ProjectNotFound):
        fast.read("p")
    commit(fast, catalog_with("p", "a"), 0)
    assert fast.read("p").version == 1
    fast.close()
    empty = tmp_path / "empty.db"
    empty.touch()  # a file without the registry's tables
    assert reader(f"sqlite:///{empty}").head_info("p") is None


def test_other_urls_get_the_sqlalchemy_store(tmp_path: Path) -> None:
    assert isinstance(open_registry_store("sqlite:///:memory:"), SqlRegistryStore)
    with_arguments = f"sqlite:///{tmp_path / 'r.db'}?timeout=5"
    assert isinstance(open_registry_store(with_arguments), SqlRegistryStore)


def test_the_engine_and_writes_go_to_one_sqlalchemy_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    SqlRegistryStore(url).close()
    fast = reader(url)
    engine = fast.engine
    assert fast.engine is engine and fast.sql.engine is engine
    commit(fast, catalog_with("p", "a"), 0)
    assert fast.history("p")[0].message == "v1"
    assert fast.projects() == ["p"]
    fast.delete_project("p", expected_version=1)
    assert fast.head("p") == 0
    fast.close()


def test_loading_a_catalog_imports_no_sqlalchemy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    writer = SqlRegistryStore(url)
    commit(writer, catalog_with("p", "a"), 0)
    writer.close()
    code = (
        "import sys\n"
        "from parity.registry.cache import CachedRegistry\n"
        "from parity.registry.sqlite_read import open_registry_store\n"
        f"registry = CachedRegistry(open_registry_store({url!r}), 'p')\n"
        "assert list(registry.catalog.feature_views) == ['a']\n"
        "print('sqlalchemy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
