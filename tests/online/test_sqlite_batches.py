"""SQLite writes bind many rows per statement (_ROWS_PER_UPSERT): the outcome must be that of
writing the rows one by one, in order, through write-if-newer (a plain-Python oracle)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from parity.online.encoding import OnlineRow
from parity.online.sqlite import _ROWS_PER_UPSERT, SqliteOnlineStore


def oracle(rows: list[OnlineRow]) -> tuple[dict[bytes, OnlineRow], int]:
    """Row by row: a row replaces the stored one when its version is >= (ties: the later)."""
    stored: dict[bytes, OnlineRow] = {}
    applied = 0
    for row in rows:
        if row.entity_key not in stored or row.version >= stored[row.entity_key].version:
            stored[row.entity_key] = row
            applied += 1
    return stored, applied


@pytest.mark.parametrize("count", [0, 1, _ROWS_PER_UPSERT - 1, _ROWS_PER_UPSERT, 3 * 128 + 5])
def test_batched_upserts_equal_row_by_row_writes(tmp_path: Path, count: int) -> None:
    rng = random.Random(count)
    store = SqliteOnlineStore(tmp_path / "online.db")
    batches = []
    for batch in range(3):
        rows = [
            OnlineRow(
                "v",
                b"\x01k" + bytes([rng.randrange(40)]),  # repeated keys within a batch
                rng.randrange(4),  # crowded versions: ties and older rows
                rng.randrange(3),
                {"x": float(i), "batch": batch},
            )
            for i in range(count)
        ]
        batches.append(rows)
    applied = [store.write("p", rows) for rows in batches]
    everything = [row for rows in batches for row in rows]
    expected, _ = oracle(everything)
    keys = sorted(expected)
    got = store.read("p", [("v", key) for key in keys])
    assert got == [expected[key] for key in keys]
    assert sum(applied) == oracle(everything)[1]
    store.close()
