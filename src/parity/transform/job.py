"""A RetrievalJob that adds on-demand features to another job's rows, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.offline.engine import RetrievalJob
from parity.offline.request import RetrievalRequest
from parity.transform.run import apply_table

if TYPE_CHECKING:
    import pyarrow as pa


class OnDemandJob:
    def __init__(self, inner: RetrievalJob, request: RetrievalRequest) -> None:
        self.inner = inner
        self.request = request

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def to_arrow(self) -> pa.Table:
        return apply_table(self.request, self.inner.to_arrow())

    def to_batches(self, batch_size: int = 131_072) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        for batch in self.inner.to_batches(batch_size):
            yield from apply_table(self.request, pa.Table.from_batches([batch])).to_batches()

    def to_parquet(self, path: str | Path, progress: Callable[[float], None] | None = None) -> int:
        import pyarrow.parquet as pq

        rows = 0
        writer = None
        try:
            for batch in self.to_batches():
                if writer is None:
                    writer = pq.ParquetWriter(str(path), batch.schema)
                writer.write_batch(batch)
                rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        if progress is not None:
            progress(1.0)
        return rows
