"""SQLite online store (embedded default): a WAL-mode file; write-if-newer by conditional upsert.

With `expire=True` each row keeps its expiry (event time + the view's ttl): reads skip expired
rows and every write transaction deletes the project's expired rows.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

from parity.online.encoding import (
    Latest,
    OnlineRow,
    decode_payload,
    decode_payloads,
    encode_payload,
    prepared_marker,
    tile_end,
)
from parity.online.store import PREPARED_CACHE_SECONDS, Prepared, Remembered, TileMerge

if TYPE_CHECKING:
    from parity.online.columns import EncodedRows

_SCHEMA = """
CREATE TABLE IF NOT EXISTS parity_online (
    project TEXT NOT NULL,
    view TEXT NOT NULL,
    entity_key BLOB NOT NULL,
    event_ts INTEGER NOT NULL,
    created_ts INTEGER NOT NULL,
    payload BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (project, view, entity_key)
) WITHOUT ROWID
"""
_TILES = """
CREATE TABLE IF NOT EXISTS parity_tiles (
    project TEXT NOT NULL,
    view TEXT NOT NULL,
    entity_key BLOB NOT NULL,
    name TEXT NOT NULL,
    tile_end INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (project, view, entity_key, name)
) WITHOUT ROWID
"""
_TILES_END_INDEX = """
CREATE INDEX IF NOT EXISTS parity_tiles_end ON parity_tiles (project, view, tile_end)
"""
_MARKERS = """
CREATE TABLE IF NOT EXISTS parity_markers (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    ids BLOB NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID
"""
_EXPIRY_INDEX = """
CREATE INDEX IF NOT EXISTS parity_online_expiry ON parity_online (project, expires_at)
WHERE expires_at IS NOT NULL
"""
# Ties on (event, created) go to the later write, as ingestion order does offline.
_UPSERT = """
INSERT INTO parity_online VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (project, view, entity_key) DO UPDATE SET
    event_ts = excluded.event_ts, created_ts = excluded.created_ts, payload = excluded.payload,
    expires_at = excluded.expires_at
WHERE (excluded.event_ts, excluded.created_ts) >= (parity_online.event_ts, parity_online.created_ts)
"""
_MAX_PARAMS = 900
# Writes bind this many rows per statement (7 parameters each, within _MAX_PARAMS): a quarter
# less CPU than a statement per row, from fewer statement steps.
_ROWS_PER_UPSERT = _MAX_PARAMS // 7
_MANY_UPSERT = _UPSERT.replace(
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * _ROWS_PER_UPSERT),
)


class SqliteOnlineStore:
    def __init__(
        self,
        path: str | Path,
        *,
        expire: bool = False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.expire = expire
        self._clock = clock
        self._local = threading.local()
        self._prepared: Remembered[tuple[str, str], Prepared | None] = Remembered(
            PREPARED_CACHE_SECONDS, monotonic
        )
        conn = self._connection()
        conn.execute(_SCHEMA)
        columns = {info[1] for info in conn.execute("PRAGMA table_info(parity_online)")}
        if "expires_at" not in columns:  # a file written before expiry existed
            conn.execute("ALTER TABLE parity_online ADD COLUMN expires_at INTEGER")
        conn.execute(_EXPIRY_INDEX)
        conn.execute(_TILES)
        conn.execute(_TILES_END_INDEX)
        conn.execute(_MARKERS)

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Reads are random B-tree lookups: map the file (no read() per page) and keep a
            # larger page cache.
            conn.execute("PRAGMA mmap_size=1073741824")
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
        return conn

    def write(self, project: str, rows: Sequence[OnlineRow]) -> int:
        # In key order (stable, so repeated keys keep their write order): B-tree pages are
        # visited once each instead of at random.
        params = sorted(
            (
                (
                    project,
                    r.view,
                    r.entity_key,
                    r.event_ts,
                    r.created_ts,
                    encode_payload(r.values),
                    r.expires_at if self.expire else None,
                )
                for r in rows
            ),
            key=itemgetter(1, 2),
        )
        return self._upsert(project, params)

    def _upsert(self, project: str, params: Sequence[tuple[object, ...]]) -> int:
        """Upsert rows (tuples in _UPSERT's column order) in one transaction; how many applied."""
        conn = self._connection()
        before = conn.total_changes
        conn.execute("BEGIN IMMEDIATE")
        try:
            whole = len(params) - len(params) % _ROWS_PER_UPSERT
            conn.executemany(
                _MANY_UPSERT,
                (
                    tuple(chain.from_iterable(params[i : i + _ROWS_PER_UPSERT]))
                    for i in range(0, whole, _ROWS_PER_UPSERT)
                ),
            )
            conn.executemany(_UPSERT, params[whole:])
            applied = conn.total_changes - before
            if self.expire:
                conn.execute(
                    "DELETE FROM parity_online WHERE project = ? AND expires_at <= ?",
                    (project, self._now_us()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return applied

    def write_encoded(self, project: str, rows: EncodedRows) -> int:
        """As `write`, for rows already encoded (materialization's batches)."""
        expires = rows.expires_at if self.expire else repeat(None)
        columns = (rows.entity_keys(), rows.event_ts, rows.created_ts, rows.payloads(), expires)
        params = list(zip(repeat(project), repeat(rows.view), *columns))
        params.sort(key=itemgetter(2))  # by entity key, stably: see `write`
        return self._upsert(project, params)

    def read(self, project: str, keys: Sequence[tuple[str, bytes]]) -> list[OnlineRow | None]:
        by_view: dict[str, list[bytes]] = defaultdict(list)
        for view, key in keys:
            by_view[view].append(key)
        found: dict[str, dict[bytes, OnlineRow]] = {}
        conn = self._connection()
        now = self._now_us()
        for view, view_keys in by_view.items():
            rows = found[view] = {}
            unique = list(dict.fromkeys(view_keys))
            for start in range(0, len(unique), _MAX_PARAMS):
                chunk = unique[start : start + _MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                cursor = conn.execute(
                    "SELECT entity_key, event_ts, created_ts, payload FROM parity_online "
                    f"WHERE project = ? AND view = ? AND entity_key IN ({marks}) "
                    "AND (expires_at IS NULL OR expires_at > ?)",
                    (project, view, *chunk, now),
                )
                for key, event, created, payload in cursor:
                    rows[key] = OnlineRow(view, key, event, created, decode_payload(payload))
        return [found[view].get(key) for view, key in keys]

    def read_views(
        self, project: str, plain: Sequence[tuple[str, Sequence[bytes]]]
    ) -> list[list[Latest | None]]:
        """Per view, the row of each of its keys (reads.ViewReads): one query per view (and
        per 900 distinct keys)."""
        conn = self._connection()
        now = self._now_us()
        out: list[list[Latest | None]] = []
        for view, keys in plain:
            unique = list(dict.fromkeys(keys))
            stored: list[tuple[bytes, int, bytes]] = []
            for start in range(0, len(unique), _MAX_PARAMS):
                chunk = unique[start : start + _MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                stored += conn.execute(
                    "SELECT entity_key, event_ts, payload FROM parity_online "
                    f"WHERE project = ? AND view = ? AND entity_key IN ({marks}) "
                    "AND (expires_at IS NULL OR expires_at > ?)",
                    (project, view, *chunk, now),
                ).fetchall()
            values = decode_payloads([payload for _, _, payload in stored])
            found = {key: (event, row) for (key, event, _), row in zip(stored, values, strict=True)}
            out.append([found.get(key) for key in keys])
        return out

    def write_tiles(
        self,
        project: str,
        view: str,
        tiles: Mapping[tuple[bytes, str], bytes],
        now_us: int,
        horizon_us: int,
    ) -> int:
        conn = self._connection()
        params = sorted(
            (project, view, key, name, tile_end(name), payload)
            for (key, name), payload in tiles.items()
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO parity_tiles VALUES (?, ?, ?, ?, ?, ?)", params
            )
            conn.execute(
                "DELETE FROM parity_tiles WHERE project = ? AND view = ? AND tile_end <= ?",
                (project, view, now_us - horizon_us),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(params)

    def read_tiles(
        self, project: str, view: str, keys: Sequence[bytes], names: Sequence[str]
    ) -> list[dict[str, bytes]]:
        found: dict[bytes, dict[str, bytes]] = {key: {} for key in keys}
        unique = list(found)
        if not names:
            return [{} for _ in keys]
        name_marks = ",".join("?" * len(names))
        conn = self._connection()
        step = max(1, _MAX_PARAMS - len(names))
        for start in range(0, len(unique), step):
            chunk = unique[start : start + step]
            marks = ",".join("?" * len(chunk))
            # Keys and names both listed, so SQLite probes the primary key (project, view,
            # entity_key, name) instead of range-scanning every entity's tiles by end time.
            cursor = conn.execute(
                "SELECT entity_key, name, payload FROM parity_tiles INDEXED BY "
                "sqlite_autoindex_parity_tiles_1 WHERE project = ? AND view = ? "
                f"AND entity_key IN ({marks}) AND name IN ({name_marks})",
                (project, view, *chunk, *names),
            )
            for key, name, payload in cursor:
                found[key][name] = payload
        return [found[key] for key in keys]

    def merge_tiles(
        self,
        project: str,
        merges: Sequence[TileMerge],
        marker: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")  # the write lock: merges serialize across processes
        try:
            for merge in merges:
                marks = ",".join("?" * len(merge.names))
                stored = dict(
                    conn.execute(
                        "SELECT name, payload FROM parity_tiles WHERE project = ? AND view = ? "
                        f"AND entity_key = ? AND name IN ({marks})",
                        (project, merge.view, merge.entity_key, *merge.names),
                    ).fetchall()
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO parity_tiles VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (project, merge.view, merge.entity_key, name, tile_end(name), payload)
                        for name, payload in merge.fold(stored).items()
                    ],
                )
                conn.execute(
                    "DELETE FROM parity_tiles WHERE project = ? AND view = ? AND entity_key = ? "
                    "AND tile_end <= ?",
                    (project, merge.view, merge.entity_key, merge.drop_before_us),
                )
            if marker is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO parity_markers VALUES (?, ?, ?)",
                    (project, marker[0], encode_payload({"ids": list(marker[1])})),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def read_marker(self, project: str, name: str) -> list[str]:
        row = (
            self._connection()
            .execute(
                "SELECT ids FROM parity_markers WHERE project = ? AND name = ?", (project, name)
            )
            .fetchone()
        )
        return [] if row is None else list(decode_payload(row[0])["ids"])

    def mark_materialized(self, project: str, view: str, prepared: Prepared) -> None:
        self._connection().execute(
            "INSERT OR REPLACE INTO parity_markers VALUES (?, ?, ?)",
            (project, prepared_marker(view), encode_payload(prepared._asdict())),
        )
        self._prepared.forget((project, view))

    def materialized(self, project: str, view: str) -> Prepared | None:
        return self._prepared.get((project, view), lambda: self._load_prepared(project, view))

    def _load_prepared(self, project: str, view: str) -> Prepared | None:
        row = (
            self._connection()
            .execute(
                "SELECT ids FROM parity_markers WHERE project = ? AND name = ?",
                (project, prepared_marker(view)),
            )
            .fetchone()
        )
        return None if row is None else Prepared(**decode_payload(row[0]))

    def delete_view(self, project: str, view: str) -> None:
        conn = self._connection()
        conn.execute("DELETE FROM parity_online WHERE project = ? AND view = ?", (project, view))
        conn.execute("DELETE FROM parity_tiles WHERE project = ? AND view = ?", (project, view))
        conn.execute(
            "DELETE FROM parity_markers WHERE project = ? AND name = ?",
            (project, prepared_marker(view)),
        )
        self._prepared.forget((project, view))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
