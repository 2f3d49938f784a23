"""Content fingerprint of a Parquet dataset: SHA-256 of its rows, independent of file layout.

Rows are re-batched into fixed-size Arrow record batches, each hashed as Arrow IPC bytes, so the
same rows in the same order give the same fingerprint however the file's row groups fall.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_ROWS = 65_536


def fingerprint_parquet(path: str | Path) -> str:
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    digest = hashlib.sha256()
    for batch in _fixed_batches(source.iter_batches(batch_size=BATCH_ROWS)):
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, source.schema_arrow) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def _fixed_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly BATCH_ROWS rows (the last may be less)."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= BATCH_ROWS:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield table.slice(0, BATCH_ROWS).combine_chunks().to_batches()[0]
            rest = table.slice(BATCH_ROWS)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
