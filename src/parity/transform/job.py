"""A RetrievalJob that adds on-demand features to another job's rows, batch by batch."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.offline.engine import RetrievalJob
from parity.offline.request import RetrievalRequest
from parity.transform.run import apply_table

if TYPE_CHECKING:
    import pyarrow as pa

JOIN_SHARE = 0.5  # of a dataset's progress bar: the join; the on-demand columns are the rest


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

    def to_parquet(
        self,
        path: str | Path,
        progress: Callable[[float], None] | None = None,
        *,
        batch_size: int = 131_072,
    ) -> int:
        """Write the rows with their on-demand columns to one Parquet file (creating its folder),
        never holding them all in memory: the inner job writes its join to a temporary file
        beside `path` (`progress` 0 to JOIN_SHARE, as the engine reports it), then its batches
        get the on-demand columns (JOIN_SHARE to 1.0, by rows)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        report = progress or (lambda share: None)
        with tempfile.TemporaryDirectory(prefix=".parity-", dir=target.parent) as folder:
            joined = Path(folder) / "joined.parquet"
            self.inner.to_parquet(joined, lambda share: report(JOIN_SHARE * share))
            report(JOIN_SHARE)
            source = pq.ParquetFile(joined)
            total, rows = source.metadata.num_rows, 0
            writer = None
            try:
                for batch in source.iter_batches(batch_size):
                    table = apply_table(self.request, pa.Table.from_batches([batch]))
                    if writer is None:
                        writer = pq.ParquetWriter(str(target), table.schema)
                    writer.write_table(table)
                    rows += batch.num_rows
                    report(JOIN_SHARE + (1 - JOIN_SHARE) * rows / max(total, 1))
                if writer is None:  # no rows: still a file, with the columns
                    empty = apply_table(self.request, source.schema_arrow.empty_table())
                    pq.write_table(empty, str(target))
            finally:
                if writer is not None:
                    writer.close()
                source.close()
        report(1.0)
        return rows
