"""Batch predictions (`store.jobs.predict_batch`, `parity predict batch`): score every entity row
with point-in-time features from the offline store, out of core in Arrow record batches, with the
model loaded once and rows built by the model server's own code; write Parquet incrementally with
the model's lineage in the file metadata; optionally write the scores to an online view.

Imports no HTTP code; the model server's row building comes from inference/deployment.py.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from parity.definitions import FileSource
from parity.errors import InvalidPredictionInput, ParityError, PredictFailed
from parity.jobs import batch_rows
from parity.jobs.batch_prefetch import Prefetched
from parity.jobs.batch_rows import TIMESTAMP, Columns
from parity.timeutil import from_micros, parse_time, to_micros

if TYPE_CHECKING:
    from parity.definitions import FeatureView
    from parity.feature_store import FeatureStore
    from parity.inference.deployment import Deployment
    from parity.models.store import ModelVersion

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 65_536
"""Rows per Arrow batch: large enough that a model call's overhead is amortized, small enough
that a batch of a few hundred features stays well under a hundred MB."""

COMPRESSION = "snappy"
"""Of the output file: scores are random-looking floats that zstd barely shrinks (about 10 %
smaller, 40 % slower to write in the benchmark)."""

METADATA_KEY = b"parity"
Progress = Callable[[int, int | None], None]  # (entity rows done, total or None when unknown)


@dataclass(frozen=True)
class BatchPredictionResult:
    path: str
    rows: int
    model: str
    version: int
    seconds: float
    rows_without_features: int  # rows with every feature null: no feature row at their time
    as_of: datetime | None
    online_view: str | None = None
    online_rows: int = 0  # entities written to the online view


@dataclass(frozen=True)
class _Plan:
    """What one batch prediction runs: the model version, its columns and, once loaded, its
    deployment (the model server's row building and predict)."""

    version: ModelVersion
    columns: Columns
    deployment: Deployment | None = None

    @property
    def model(self) -> Deployment:
        if self.deployment is None:
            raise RuntimeError("the model is not loaded yet")  # a bug of this module, not input
        return self.deployment


def predict_batch(
    store: FeatureStore,
    model: str,
    entities: Any,
    *,
    out: str | Path,
    as_of: Any = None,
    to_online: str | None = None,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
) -> BatchPredictionResult:
    """Score `entities` with model ref `model` (name@alias, name/N or name) and write `out`.
    The join starts on a thread of its own while the model loads (a library import can take
    as long as the join of a million rows)."""
    started = time.perf_counter()
    if batch_size < 1:
        raise InvalidPredictionInput(f"batch_size must be at least 1, not {batch_size}")
    now = store.now()
    moment = None if as_of is None else _as_of(store, as_of, now)
    plan = _plan(store, model)
    target = Path(out)
    _check_out(store, target, entities, plan.version.feature_service or "", to_online)
    if to_online is not None:  # the view's path and keys, before any work
        from parity.jobs.batch_online import score_view

        score_view(store, to_online, target, plan.columns.keys, None)
    frame, total, schema = _entity_input(store, entities, plan, moment, progress is not None)
    job = store.get_historical_features(frame, plan.version.feature_service or "")
    limit_us = to_micros(now + store.config.ingest.max_future_skew)
    reader = Prefetched(job.to_batches(batch_size), name="parity-batch-read", cancel=_cancel(job))
    with reader as batches:
        plan = replace(plan, deployment=_load(store, plan.version))
        view = None
        if to_online is not None:  # and its features, once the model's outputs are known
            outputs = plan.model.output_names
            view = score_view(
                store, to_online, target, plan.columns.keys, outputs, _output_types(plan)
            )
        online: list[int] = []  # entities written to the view, from the complete file
        rows, empty = _write(
            target,
            _scored(plan, iter(batches), limit_us),
            _empty_schema(plan, schema),
            _metadata(store, plan.version, model, moment, now),
            lambda done: progress(done, total) if progress is not None else None,
            None if view is None else lambda path: online.append(_to_online(store, view, path)),
        )
    written = sum(online)
    seconds = time.perf_counter() - started
    log.info("batch prediction of %s: %d rows in %.1f s to %s", model, rows, seconds, target)
    version = plan.version
    return BatchPredictionResult(
        str(target), rows, version.name, version.version, seconds, empty, moment, to_online, written
    )


def _check_out(
    store: FeatureStore, target: Path, entities: Any, service: str, to_online: str | None
) -> None:
    """Refuse, before any work, an `out` that is a folder or that would replace data the run
    reads: an entity file (a path or a glob's match) or a file a view of the model's feature
    service reads (the rename at the end would destroy it), unless it is the --to-online view,
    whose checks (batch_online.score_view) decide."""
    if target.is_dir():
        raise InvalidPredictionInput(
            f"out '{target}' is a folder; give the path of a Parquet file, such as "
            f"'{target / 'scores.parquet'}'"
        )
    if target.is_file() and target.stat().st_size and not _is_parquet(target):
        raise InvalidPredictionInput(
            f"out '{target}' exists and is not a Parquet file (a database, a config?): the "
            "scores would replace it; remove it or write them to another file"
        )
    from parity.jobs.batch_online import reads_file
    from parity.offline import entity_frame
    from parity.offline.request import resolve

    resolved = target.resolve()
    if isinstance(entities, str | Path) and not entity_frame.is_sql(str(entities)):
        roots = (Path.cwd(), store.repo_path)
        matches = {Path(m).resolve() for r in roots for m in glob.glob(str(r / str(entities)))}
        if resolved in matches:
            raise InvalidPredictionInput(
                f"out '{target}' is the entities file itself: the scores would replace the "
                "input; write them to another file"
            )
    for request in resolve(store.registry.catalog, service).views:
        source = request.view.batch_source
        if request.view.name == to_online:
            continue
        if isinstance(source, FileSource) and reads_file(source, store.repo_path, target):
            raise InvalidPredictionInput(
                f"out '{target}' is read by feature view '{request.view.name}' of the model's "
                f"feature service '{service}' (its source '{source.path}'): the scores would "
                "become its data; write them to another file"
            )


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == b"PAR1"


def _to_online(store: FeatureStore, view: FeatureView, path: Path) -> int:
    from parity.jobs.batch_online import write_online

    return write_online(store, view, path)


def _cancel(job: Any) -> Callable[[], None] | None:
    """Interrupts the DuckDB query of a retrieval job (or of the one an on-demand job wraps), so
    a run that fails, or is stopped, while the join runs does not wait for the join to end."""
    connection = getattr(getattr(job, "inner", job), "_connection", None)
    interrupt = getattr(connection, "interrupt", None)
    return interrupt if callable(interrupt) else None


def _as_of(store: FeatureStore, as_of: Any, now: datetime) -> datetime:
    if as_of != as_of:  # pandas' NaT (a datetime that equals nothing): not a time
        raise InvalidPredictionInput(
            f"as_of is {as_of!r}, not a time; give an ISO 8601 time or 'now'"
        )
    moment = parse_time(as_of, "as_of", now=lambda: now)  # "now" is the run's clock reading
    if moment > now + store.config.ingest.max_future_skew:
        raise InvalidPredictionInput(
            f"as_of {moment.isoformat()} is after the store's clock {now.isoformat()} (more than "
            "ingest.max_future_skew): features of the future are not known yet; score as of now "
            "at the latest"
        )
    try:
        return from_micros(to_micros(moment))  # in UTC, to the µs the rows are stamped with
    except OverflowError:
        raise InvalidPredictionInput(
            f"as_of {moment.isoformat()} is before 0001-01-01 in UTC, which no timestamp holds"
        ) from None


def _plan(store: FeatureStore, model: str) -> _Plan:
    """Resolve the model ref and derive the columns it needs from its recorded signature (the
    model itself loads later, while the join runs)."""
    from parity.inference.request_fields import request_schema
    from parity.models.flavors import Signature
    from parity.offline.request import resolve

    version = store.models.resolve(model)
    if version.feature_service is None:
        raise InvalidPredictionInput(
            f"model {version.ref} was registered without a feature service, so its features "
            "cannot be retrieved; register it with feature_service="
        )
    signature = None if version.signature is None else Signature.from_dict(version.signature)
    request = resolve(store.registry.catalog, version.feature_service)
    schema = request_schema(version.ref, request, signature)
    return _Plan(version, batch_rows.columns_of(request, schema))


def _load(store: FeatureStore, version: ModelVersion) -> Deployment:
    """The version loaded once, as the model server holds it (no adaptive batcher: each Arrow
    batch is one model call)."""
    from parity.inference.deployment import BatchSettings, Deployment
    from parity.inference.metrics import ModelMetrics

    loaded = store.models.load(version)
    metrics = ModelMetrics().for_version(version.name, version.version)
    return Deployment(version, loaded, BatchSettings(max_batch_size=1), metrics)


def _entity_input(
    store: FeatureStore, entities: Any, plan: _Plan, as_of: datetime | None, count: bool
) -> tuple[Any, int | None, pa.Schema]:
    """The entity rows to retrieve for (only the columns the model needs, with the as_of time
    when given), the number of rows when known up front (a Parquet file's rows are counted only
    if `count`: for a progress bar), and the entities' schema."""
    if isinstance(entities, str | Path):
        if not str(entities).strip():  # Path("") is the working folder: every file in it
            raise InvalidPredictionInput(
                "entities is empty: give a Parquet file or glob, or a SQL query"
            )
        return _entity_query(store, entities, plan, as_of, count)
    from parity.offline import entity_frame

    table = entity_frame.from_memory(entities, TIMESTAMP).table
    if table is None:  # from_memory always sets it; kept for the type checker
        raise InvalidPredictionInput("entities could not be read as a table")
    _check_columns(table.schema, plan, as_of)
    table = table.select(list(plan.columns.entity) + ([] if as_of else [TIMESTAMP]))
    for index, field in enumerate(table.schema):  # DuckDB reads no half floats; float32 is exact
        if pa.types.is_float16(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(pa.float32()))
    if as_of is not None:
        micros = np.full(table.num_rows, to_micros(as_of), dtype=np.int64)
        moment = pa.array(micros).cast(pa.timestamp("us", tz="UTC"))
        table = table.append_column(TIMESTAMP, moment)
    return table, table.num_rows, table.schema


def _entity_query(
    store: FeatureStore, entities: str | Path, plan: _Plan, as_of: datetime | None, count: bool
) -> tuple[str, int | None, pa.Schema]:
    """A Parquet path or SQL query, wrapped in SQL that keeps the needed columns."""
    from parity.offline import entity_frame
    from parity.offline.duckdb_engine import DuckDBEngine
    from parity.offline.duckdb_sql import literal, quote

    text = str(entities)
    sql = isinstance(entities, str) and entity_frame.is_sql(text)
    if not sql and Path(text).exists():  # as retrieval does: from the working directory first
        text = str(Path(text).resolve())
    engine = DuckDBEngine(store.repo_path, store.config.offline)
    schema = engine.describe(text, sql=sql)
    _check_columns(schema, plan, as_of)
    base = f"({text})" if sql else f"read_parquet({literal(text)})"
    chosen = [quote(name) for name in plan.columns.entity]
    if as_of is None:
        chosen.append(quote(TIMESTAMP))
    else:
        chosen.append(f"TIMESTAMPTZ {literal(as_of.isoformat())} AS {quote(TIMESTAMP)}")
    total = None
    if count and not sql:
        with engine.connect() as connection:
            found = connection.execute(f"SELECT count(*) FROM {base}").fetchone()
            total = int(found[0]) if found else None
    return f"SELECT {', '.join(chosen)} FROM {base}", total, schema


def _check_columns(schema: pa.Schema, plan: _Plan, as_of: datetime | None) -> None:
    batch_rows.missing_columns(plan.columns, schema.names, plan.version.ref)
    for name in (*plan.columns.entity, TIMESTAMP):
        if schema.names.count(name) > 1:
            raise InvalidPredictionInput(
                f"the entities have {schema.names.count(name)} columns named '{name}': which one "
                "to read is ambiguous; rename or drop the others"
            )
    if as_of is not None and TIMESTAMP in schema.names:
        raise InvalidPredictionInput(
            f"the entities have an '{TIMESTAMP}' column and as_of was given: score each row at "
            f"its own time (drop as_of) or every row at as_of (drop the column), not both"
        )
    if as_of is None and TIMESTAMP not in schema.names:
        raise InvalidPredictionInput(
            f"the entities have no '{TIMESTAMP}' column: add one (each row is scored as of its "
            "time) or pass as_of (--as-of) to score every row as of one moment"
        )


def _scored(
    plan: _Plan, batches: Iterator[pa.RecordBatch], limit_us: int
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Each retrieved batch scored: (the output rows, rows without any feature)."""
    offset = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        late = batch_rows.first_after(batch.column(TIMESTAMP), limit_us)
        if late is not None:
            moment = batch.column(TIMESTAMP)[late].as_py()
            raise InvalidPredictionInput(
                f"entity row {offset + late} has {TIMESTAMP} {moment}, after the store's clock "
                "(more than ingest.max_future_skew): its features are not known yet; drop the row"
            )
        batch_rows.check_inputs(batch, plan.columns.rules, offset)
        outputs = _predict(plan, batch, offset)
        empty = batch_rows.without_features(batch, plan.columns.features)
        yield batch_rows.output_batch(batch, plan.columns.keys, outputs), empty
        offset += batch.num_rows


def _predict(plan: _Plan, batch: pa.RecordBatch, offset: int) -> dict[str, Any]:
    """The model's outputs for one batch, its rows built as the model server builds a `/v1`
    request's rows from an online read."""
    columns = plan.columns
    values = {name: batch_rows.as_sent(batch.column(name)) for name in columns.features}
    given = {name: batch_rows.as_sent(batch.column(name)) for name in columns.entity}
    item, rows = plan.model.assemble_features(values, given)
    try:
        (outputs,) = plan.model.predict_now([item])
    except Exception as error:
        why = f"[{error.code}] {error.message}" if isinstance(error, ParityError) else error
        raise PredictFailed(
            f"model {plan.version.ref} could not score entity rows {offset} to "
            f"{offset + rows - 1}: {type(error).__name__}: {why}; no output was written (the "
            "model server would refuse these rows too)"
        ) from error
    return outputs


def _output_types(plan: _Plan) -> dict[str, pa.DataType]:
    """The Arrow type of each output whose dtype the signature records, as the output file holds
    it: one value per row, or a list per row for a 2-D output (e.g. predict_proba)."""
    signature = plan.model.model.signature
    types = {}
    for spec in signature.outputs if signature is not None else ():
        wide = [n for n in spec.shape[1:] if n != 1]
        try:
            kind = pa.from_numpy_dtype(np.dtype(spec.dtype))
        except (TypeError, pa.ArrowNotImplementedError):
            continue
        if not wide:
            types[spec.name] = kind
        elif len(wide) == 1:
            types[spec.name] = pa.list_(kind)
    return types


def _empty_schema(plan: _Plan, entities: pa.Schema) -> pa.Schema:
    """The columns of an output without rows: what a run with rows writes (a list per row for a
    2-D output), float64 where the signature records no dtype."""
    types = _output_types(plan)
    outputs = {name: types.get(name, pa.float64()) for name in plan.model.output_names}
    return batch_rows.empty_output_schema(entities, plan.columns.keys, outputs)


def _write(
    target: Path,
    batches: Iterator[tuple[pa.RecordBatch, int]],
    empty_schema: pa.Schema,
    metadata: dict[str, Any],
    progress: Callable[[int], None],
    complete: Callable[[Path], None] | None = None,
) -> tuple[int, int]:
    """Write the batches to a temporary file beside `target`, renamed over it once complete (a
    failed run leaves no partial output) and once `complete` (the online write) has taken the
    complete file. Returns (rows, rows without features). Each batch is encoded on a writer
    thread while the next one is scored."""
    with _file_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    # unique per run, not only per process: two runs of one process may write the same out
    temporary = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    tags = {METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()}
    writer: pq.ParquetWriter | None = None
    rows = empty = 0
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="parity-batch-write") as pool:
            pending: Future[None] | None = None
            for batch, without in batches:
                with _file_errors(target):
                    if writer is None:
                        schema = batch.schema.with_metadata(tags)
                        writer = pq.ParquetWriter(temporary, schema, compression=COMPRESSION)
                    if pending is not None:
                        pending.result()
                pending = pool.submit(writer.write_batch, batch)
                rows, empty = rows + batch.num_rows, empty + without
                progress(rows)
        with _file_errors(target):
            if pending is not None:
                pending.result()
            if writer is None:  # no entity rows: an empty file with the columns, not a crash
                pq.write_table(empty_schema.with_metadata(tags).empty_table(), temporary)
            else:
                writer.close()
                writer = None
        if complete is not None:  # an online store that fails leaves the old output in place
            complete(temporary)
        with _file_errors(target):
            os.replace(temporary, target)
    finally:
        if writer is not None:
            writer.close()
        temporary.unlink(missing_ok=True)
    progress(rows)
    return rows, empty


@contextmanager
def _file_errors(target: Path) -> Iterator[None]:
    """An OS error while writing the output (no such folder, no permission, disk full) as a
    typed error naming `out`."""
    try:
        yield
    except OSError as error:
        why = error.strerror or str(error)
        raise InvalidPredictionInput(
            f"out '{target}' cannot be written: {why}; give a path in a folder you can write"
        ) from None


def _metadata(
    store: FeatureStore, version: ModelVersion, ref: str, as_of: datetime | None, now: datetime
) -> dict[str, Any]:
    """The output file's lineage, under the `parity` key of its Parquet metadata."""
    return {
        "model": version.name,
        "model_ref": ref,
        "version": version.version,
        "artifact_sha256": version.artifact,
        "flavor": version.flavor,
        "feature_service": version.feature_service,
        "training_dataset": version.training_dataset,
        "dataset_fingerprint": version.dataset_fingerprint,
        "model_registry_version": version.registry_version,
        "registry_version": store.registry.current()[1],
        "as_of": None if as_of is None else as_of.isoformat(),
        "created_at": now.isoformat(),
        "project": store.project,
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The lineage a batch prediction recorded in its output file."""
    raw = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in raw:
        raise InvalidPredictionInput(f"{path} was not written by a batch prediction")
    data: dict[str, Any] = json.loads(raw[METADATA_KEY])
    return data
