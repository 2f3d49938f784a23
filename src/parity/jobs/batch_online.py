"""`--to-online VIEW` of batch predictions: check that the user's score view reads the batch's
output file, then write exactly that file's rows (the newest per entity, the retrieval tie rule)
to the online store, write-if-newer. No model code here; the output file is the only input."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from parity.definitions import FeatureView, FileSource
from parity.errors import ScoreViewMismatch
from parity.jobs.batch_rows import TIMESTAMP
from parity.offline.sources import resolve_path

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore

log = logging.getLogger(__name__)

_LOWEST_US, _HIGHEST_US = -(2**62), 2**62  # every row of the file, whatever its time


def score_view(
    store: FeatureStore,
    name: str,
    out: Path,
    keys: Sequence[str],
    outputs: Sequence[str] | None,
    types: Mapping[str, pa.DataType] | None = None,
) -> FeatureView:
    """The applied feature view `name`, checked to hold this batch's scores: a plain online view
    whose FileSource reads `out`, keyed by the model's entity keys, timed by event_timestamp,
    with features among the model's `outputs` (not checked while None: the model is not loaded
    yet), each typed as the model's output when `types` knows it (a Float64 score in an Int64
    view would be truncated, online and offline alike). Refused (ScoreViewMismatch) before any
    scoring."""
    view = store.get_feature_view(name)
    where = f"feature view '{name}' (--to-online)"
    source = view.batch_source
    if view.is_aggregated or not view.online or not isinstance(source, FileSource):
        raise ScoreViewMismatch(
            f"{where} must be a plain online view with a FileSource reading the batch output "
            "(docs/lifecycle.md, Batch predictions)"
        )
    if not reads_file(source, store.repo_path, out):
        raise ScoreViewMismatch(
            f"{where} reads '{source.path}', which does not include --out '{out}'; write the "
            "batch there or point the view's FileSource at it, so its offline and online values "
            "are the same rows"
        )
    if source.timestamp_field != TIMESTAMP:
        raise ScoreViewMismatch(
            f"{where}: its timestamp_field is '{source.timestamp_field}'; the batch output's "
            f"time column is '{TIMESTAMP}'"
        )
    for key in view.join_keys:
        if source.column_for(key) not in keys:
            raise ScoreViewMismatch(
                f"{where}: join key '{key}' is not an entity key of the model ({list(keys)})"
            )
    known = list(outputs or ())
    unknown = [f for f in view.feature_names if source.column_for(f) not in known]
    if outputs is not None and unknown:
        raise ScoreViewMismatch(
            f"{where}: feature '{unknown[0]}' is not an output of the model; its outputs are "
            f"{known} (name the view's field after one)"
        )
    for feature in view.features:
        wanted = (types or {}).get(source.column_for(feature.name))
        if wanted is not None and feature.dtype.to_arrow() != wanted:
            raise ScoreViewMismatch(
                f"{where}: feature '{feature.name}' is declared {feature.dtype}, but the model's "
                f"output is {wanted}; declare the field with the output's type, so the scores "
                "are stored unchanged"
            )
    return view


def reads_file(source: FileSource, repo_root: Path, out: Path) -> bool:
    """Whether the source's path (a file, a folder or a glob) takes in the file `out`."""
    if "://" in source.path:
        return False
    declared = Path(resolve_path(source, repo_root))
    target = out.resolve()
    if declared.is_dir():
        return declared.resolve() in target.parents
    if declared.resolve() == target:
        return True
    return fnmatch.fnmatch(str(target), str(declared.resolve()))


def write_online(store: FeatureStore, view: FeatureView, out: Path) -> int:
    """Write the newest row per entity of the file `out` (the same tie rule as retrieval and
    materialization) to the online store; an older row never replaces a newer one. Returns the
    entities written."""
    from parity.offline.duckdb_engine import DuckDBEngine
    from parity.offline.duckdb_sql import SourceScan, latest_sql
    from parity.online.encoding import rows_from_columns

    engine = DuckDBEngine(store.repo_path, store.config.offline)
    sql = latest_sql(view, SourceScan((str(out.resolve()),)), _LOWEST_US, _HIGHEST_US)
    online, written = store.online_store, 0
    with engine.connect() as connection:
        for batch in connection.sql(sql).to_arrow_reader(50_000):
            if batch.num_rows:
                rows = rows_from_columns(view, batch.to_pydict())
                online.write(store.project, rows)
                written += len(rows)
    log.info("wrote %d batch scores to online view %s", written, view.name)
    return written
