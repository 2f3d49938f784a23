"""Review of the sqlite3 reader of a SQLite registry: it reads the same file, and the same
committed state, as the SQLAlchemy store, whatever the path or the file's journal mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from parity.registry.sql import SqlRegistryStore
from tests.registry.test_sqlite_read import catalog_with, commit, reader


def test_a_percent_escape_in_the_path_names_the_file_sqlalchemy_opens(tmp_path: Path) -> None:
    """SQLAlchemy unquotes %XX in a sqlite URL's path: the reader must read that same file,
    not a file whose name holds the escape literally."""
    (tmp_path / "a b").mkdir()
    (tmp_path / "a%20b").mkdir()
    literal = SqlRegistryStore(f"sqlite:///{tmp_path / 'a%2520b' / 'registry.db'}")
    commit(literal, catalog_with("p", "a"), 0)
    commit(literal, catalog_with("p", "a", "b"), 1)  # head 2 in the file named 'a%20b'
    url = f"sqlite:///{tmp_path / 'a%20b' / 'registry.db'}"
    writer = SqlRegistryStore(url)
    commit(writer, catalog_with("p", "c"), 0)  # head 1 in the file named 'a b'
    assert (tmp_path / "a b" / "registry.db").is_file()
    fast = reader(url)
    assert fast.head("p") == writer.head("p") == 1
    assert sorted(fast.read("p").catalog.feature_views) == ["c"]
    writer.close()
    literal.close()


def test_a_write_in_progress_is_not_seen_and_does_not_block_a_wal_read(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    url = f"sqlite:///{path}"
    writer = SqlRegistryStore(url)
    commit(writer, catalog_with("p", "a"), 0)
    writer.close()
    other = sqlite3.connect(path, isolation_level=None)
    assert other.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE parity_registry_projects SET head = 7 WHERE project = 'p'")
    fast = reader(url)
    assert fast.head("p") == 1  # the half-done apply is invisible
    assert sorted(fast.read("p").catalog.feature_views) == ["a"]
    other.execute("ROLLBACK")
    other.close()
    commit(SqlRegistryStore(url), catalog_with("p", "a", "b"), 1)
    assert fast.head("p") == 2
    assert fast._sql is None
