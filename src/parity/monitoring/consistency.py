"""Online/offline consistency on real traffic: the served rows the feature server (served log) and
the model server (prediction log) logged are read with DuckDB, replayed through
`get_historical_features` at their request time, and compared per feature and hour
(consistency_compare). Reads logs and the offline store; writes nothing; imports no server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.errors import ConsistencyError, FeatureServiceNotFound
from parity.monitoring.consistency_compare import (
    Bucket,
    Comparison,
    Counts,
    compare,
    counts,
    hourly,
    hours_of,
    is_mismatch,
)
from parity.monitoring.served_log import is_sampled, key_text

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa

    from parity.definitions.types import DType
    from parity.feature_store import FeatureStore
    from parity.offline.request import RetrievalRequest, ViewRequest

MAX_EXAMPLES = 5  # example rows kept per mismatching feature: enough to see a pattern, short
ONLINE = "online:"  # prefix of the served values' columns in the logged table
SERVED_AT = "served_at:"  # prefix of the served values' event times (feature server log only)
SOURCE = "parity_log_source"
FEATURE_SERVER, MODEL_SERVER = "feature_server", "model_server"


@dataclass(frozen=True)
class Example:
    """One mismatching row: its keys, request time, the two values and the log it came from."""

    feature: str
    at: datetime
    keys: dict[str, Any]
    online: Any
    offline: Any
    outcome: str  # "value", "online_only_null" or "offline_only_null"
    stale: bool
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "at": self.at.isoformat(),
            "keys": self.keys,
            "online": _jsonable(self.online),
            "offline": _jsonable(self.offline),
            "outcome": self.outcome,
            "stale": self.stale,
            "source": self.source,
        }


@dataclass(frozen=True)
class FeatureResult:
    feature: str
    counts: Counts
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class ConsistencyReport:
    """Per feature (overall and per hour of request time) how served values compare with the
    point-in-time replay of the same (keys, time). `rows` 0: nothing was logged in the window."""

    service: str
    since: datetime | None
    until: datetime
    sample_percent: float | None
    rows: int
    rows_by_source: dict[str, int]
    features: tuple[FeatureResult, ...] = ()
    buckets: tuple[Bucket, ...] = field(default=())
    rows_without_keys: int = 0  # logged without an entity key (e.g. V2 tensors): not replayable

    @property
    def mismatches(self) -> int:
        return sum(f.counts.mismatch for f in self.features)

    @property
    def message(self) -> str:
        skipped = ""
        if self.rows_without_keys:
            n = self.rows_without_keys
            skipped = (
                f" ({n} logged row{'' if n == 1 else 's'} without entity keys skipped: "
                "a prediction sent as tensors had no lookup to replay)"
            )
        if self.rows == 0:
            window = f"{self.since.isoformat() if self.since else 'the start'} .. {self.until}"
            return (
                f"no logged rows for feature service '{self.service}' in {window}: turn the "
                f"served log on (feature_server.log_sample_percent) or widen --since{skipped}"
            )
        return f"{self.rows} rows replayed, {self.mismatches} mismatching values{skipped}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "since": None if self.since is None else self.since.isoformat(),
            "until": self.until.isoformat(),
            "sample_percent": self.sample_percent,
            "rows": self.rows,
            "rows_by_source": self.rows_by_source,
            "rows_without_keys": self.rows_without_keys,
            "message": self.message,
            "features": [
                {
                    "feature": f.feature,
                    **f.counts.to_dict(),
                    "examples": [e.to_dict() for e in f.examples],
                }
                for f in self.features
            ],
            "buckets": [
                {"feature": b.feature, "hour": b.hour.isoformat(), **b.counts.to_dict()}
                for b in self.buckets
            ],
        }


def signals(report: ConsistencyReport) -> dict[str, float]:
    """`consistency:<feature>` -> the rate of mismatches lag does not explain (`mismatch` less
    `stale`, over `total`), for alert rules: a view that is merely behind catches up by itself
    and must not page anyone as skew (none without logged rows)."""
    return {
        f"consistency:{f.feature}": (f.counts.mismatch - f.counts.stale) / f.counts.total
        if f.counts.total
        else 0.0
        for f in report.features
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        from base64 import b64encode

        return b64encode(value).decode("ascii")
    return value


# --- the replay -------------------------------------------------------------------------------


def consistency(
    store: FeatureStore,
    service: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    sample_percent: float | None = None,
) -> ConsistencyReport:
    """Replay the rows logged for `service` with request time in [since, until) (until: the
    store's clock) through get_historical_features and compare. `sample_percent` keeps only the
    keys in that share of the key-hash space (None: every logged row)."""
    catalog = store.registry.catalog
    if service not in catalog.feature_services:
        known = ", ".join(sorted(catalog.feature_services)) or "none; run 'parity apply'"
        raise FeatureServiceNotFound(
            f"no feature service '{service}' to check consistency of (registered: {known})"
        )
    until = store.now() if until is None else until
    _check_window(since, until, sample_percent)
    from parity.offline.request import resolve

    request = resolve(catalog, service)
    logged, keyless = with_keys(read_logged(store, service, request, since, until), request)
    if sample_percent is not None:
        logged = keep_sampled(logged, request.join_keys, sample_percent)
    report = ConsistencyReport(
        service, since, until, sample_percent, logged.num_rows, {}, rows_without_keys=keyless
    )
    if logged.num_rows == 0:
        return report
    sources = logged[SOURCE].value_counts().to_pylist()
    by_source = {str(s["values"]): int(s["counts"]) for s in sources}
    offline = replay(store, service, request, logged)
    features, buckets = _compare_all(store, request, logged, offline)
    return ConsistencyReport(
        service,
        since,
        until,
        sample_percent,
        logged.num_rows,
        by_source,
        features,
        buckets,
        rows_without_keys=keyless,
    )


def with_keys(logged: pa.Table, request: RetrievalRequest) -> tuple[pa.Table, int]:
    """The logged rows whose join keys are all present, and how many were not: a prediction
    sent as tensors (the model server logs `entities: {}`) had no lookup, so nothing to replay."""
    import pyarrow.compute as pc

    if not request.join_keys or logged.num_rows == 0:
        return logged, 0
    present = pc.is_valid(logged[request.join_keys[0]])
    for key in request.join_keys[1:]:
        present = pc.and_(present, pc.is_valid(logged[key]))
    kept = logged.filter(present)
    return kept, logged.num_rows - kept.num_rows


def _check_window(since: datetime | None, until: datetime, percent: float | None) -> None:
    if since is not None and since >= until:
        raise ConsistencyError(
            f"since ({since.isoformat()}) is not before until ({until.isoformat()}); "
            "give an earlier --since"
        )
    if percent is not None and not 0 < percent <= 100:
        raise ConsistencyError(f"sample_percent must be in (0, 100], got {percent!r}")


def replay(
    store: FeatureStore, service: str, request: RetrievalRequest, logged: pa.Table
) -> pa.Table:
    """The offline values of the logged rows: the entity frame is their keys, request fields and
    event_timestamp = request time; answered in the frame's order."""
    columns = [*request.join_keys, *_request_fields(request), "event_timestamp"]
    frame = logged.select(columns)
    return store.get_historical_features(entity_df=frame, features=service).to_arrow()


def _request_fields(request: RetrievalRequest) -> dict[str, DType]:
    return {i.column: i.dtype for demand in request.on_demand for i in demand.inputs if i.request}


def _compare_all(
    store: FeatureStore, request: RetrievalRequest, logged: pa.Table, offline: pa.Table
) -> tuple[tuple[FeatureResult, ...], tuple[Bucket, ...]]:
    import pyarrow as pa

    hours = hours_of(logged["event_timestamp"].cast(pa.int64()).to_numpy())
    comparisons = {
        name: compare(logged[ONLINE + name], offline[name]) for name in _output_types(request)
    }
    stale = stale_rows(store, request, logged, comparisons)
    features, buckets = [], []
    for name, comparison in comparisons.items():
        late = stale.get(name)
        found = counts(comparison, late)
        examples = _examples(name, request, logged, offline, comparison, late)
        features.append(FeatureResult(name, found, examples))
        buckets.extend(hourly(name, hours, comparison, late))
    return tuple(features), tuple(buckets)


def stale_rows(
    store: FeatureStore,
    request: RetrievalRequest,
    logged: pa.Table,
    comparisons: dict[str, Comparison],
) -> dict[str, np.ndarray[Any, Any]]:
    """Per feature of a plain (not windowed) view, the mismatching rows explained by lag: the
    served value carries an event time older than the request, and the offline value at that
    event time equals it (online had not yet seen the newer row offline answers with)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    found: dict[str, np.ndarray[Any, Any]] = {}
    for view in request.views:
        stamped = _stamp_column(view, request.hidden)
        if stamped is None:
            continue
        stamp = logged[SERVED_AT + stamped]
        older = _bools(pc.less(stamp, logged["event_timestamp"]))
        wrong = np.zeros(logged.num_rows, dtype=bool)
        shown = [
            (f, n)
            for f, n in zip(view.features, view.output_names, strict=True)
            if n in comparisons
        ]
        for _, name in shown:
            wrong |= is_mismatch(comparisons[name].codes)
        rows = np.flatnonzero(wrong & older)
        if len(rows) == 0:
            continue
        picked = logged.take(pa.array(rows))
        frame = picked.select(list(view.view.join_keys)).append_column(
            "event_timestamp", picked[SERVED_AT + stamped]
        )
        refs = [f"{view.view.name}:{f}" for f, _ in shown]
        then = store.get_historical_features(entity_df=frame, features=refs).to_arrow()
        for feature, name in shown:
            again = compare(picked[ONLINE + name], then[feature]).codes
            mask = np.zeros(logged.num_rows, dtype=bool)
            mask[rows] = ~is_mismatch(again)
            found[name] = mask
    return found


def _stamp_column(view: ViewRequest, hidden: Sequence[str]) -> str | None:
    """The output whose logged event time stands for the view's row (None: a windowed view,
    whose values have no single event time, or a view read only for on-demand inputs)."""
    if view.view.is_aggregated:
        return None
    return next((n for n in view.output_names if n not in hidden), None)


def _bools(values: pa.ChunkedArray | pa.Array) -> np.ndarray[Any, Any]:
    import numpy as np

    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _examples(
    name: str,
    request: RetrievalRequest,
    logged: pa.Table,
    offline: pa.Table,
    comparison: Comparison,
    stale: np.ndarray[Any, Any] | None,
) -> tuple[Example, ...]:
    import numpy as np

    from parity.monitoring.consistency_compare import OFFLINE_NULL, ONLINE_NULL

    rows = np.flatnonzero(is_mismatch(comparison.codes))[:MAX_EXAMPLES]
    outcome = {ONLINE_NULL: "online_only_null", OFFLINE_NULL: "offline_only_null"}
    examples = []
    for row in (int(r) for r in rows):
        keys = {k: logged[k][row].as_py() for k in request.join_keys}
        examples.append(
            Example(
                feature=name,
                at=logged["event_timestamp"][row].as_py(),
                keys=keys,
                online=logged[ONLINE + name][row].as_py(),
                offline=offline[name][row].as_py(),
                outcome=outcome.get(int(comparison.codes[row]), "value"),
                stale=bool(stale is not None and stale[row]),
                source=str(logged[SOURCE][row].as_py()),
            )
        )
    return tuple(examples)


# --- reading the logs -------------------------------------------------------------------------


def log_folders(store: FeatureStore) -> dict[str, Path | None]:
    """The served log's and the prediction log's folders (None: that log is off)."""
    settings = store.config
    folders = {
        FEATURE_SERVER: settings.feature_server.served_log,
        MODEL_SERVER: settings.models.serving.prediction_log,
    }
    return {
        source: None if folder is None else _absolute(store.repo_path, folder)
        for source, folder in folders.items()
    }


def _absolute(root: Path, folder: str) -> Path:
    path = Path(folder)
    return path if path.is_absolute() else root / path


def log_files(folder: Path | None, since: datetime | None, until: datetime) -> list[str]:
    """Finished Parquet files of a log in the date partitions the window touches."""
    if folder is None or not folder.is_dir():
        return []
    first = None if since is None else since.date()
    files = []
    for part in sorted(folder.glob("date=*")):
        try:
            day = date.fromisoformat(part.name.removeprefix("date="))
        except ValueError:
            continue
        if (first is None or day >= first) and day <= until.date():
            files += [str(p) for p in sorted(part.glob("*.parquet")) if not p.name.startswith(".")]
    return files


def read_logged(
    store: FeatureStore,
    service: str,
    request: RetrievalRequest,
    since: datetime | None,
    until: datetime,
) -> pa.Table:
    """The logged rows of `service` in the window, one column per key, request field, served
    value (`online:<name>`) and served event time (`served_at:<name>`), typed as declared."""
    from parity.monitoring.logs import connect_duckdb

    folders = log_folders(store)
    connection = connect_duckdb()
    try:
        parts = []
        served = log_files(folders[FEATURE_SERVER], since, until)
        if served:
            parts.append(_select(FEATURE_SERVER, served, request, "model = $service", since))
        predicted = log_files(folders[MODEL_SERVER], since, until)
        versions = _versions_of(store, connection, predicted, service) if predicted else []
        if versions:
            connection.register("parity_versions", _pairs(versions))
            where = "(model, version) IN (SELECT (m, v) FROM parity_versions)"
            if "role" in _columns(connection, predicted):  # a shadow's row repeats the champion's
                where += " AND role IS DISTINCT FROM 'shadow'"  # read (or one made after it)
            parts.append(_select(MODEL_SERVER, predicted, request, where, since))
        if not parts:
            return _empty(request)
        sql = " UNION ALL ".join(parts)  # in log order: each writer's files are in time order
        params = {"service": service, "since": since, "until": until}
        used = {k: v for k, v in params.items() if f"${k}" in sql}
        return connection.sql(sql, params=used).to_arrow_table()
    finally:
        connection.close()


def _columns(connection: duckdb.DuckDBPyConnection, files: list[str]) -> set[str]:
    """The columns of the log files read together (files written before `role` lack it)."""
    found = connection.execute(
        "SELECT * FROM read_parquet($files, union_by_name = true) LIMIT 0", {"files": files}
    )
    return {str(column[0]) for column in found.description or ()}


def _select(
    source: str, files: list[str], request: RetrievalRequest, where: str, since: datetime | None
) -> str:
    from parity.offline.duckdb_sql import literal

    keys = {k: _key_type(request, k) for k in request.join_keys} | _request_fields(request)
    outputs = _output_types(request)
    entity_json = _struct(keys)
    feature_json = _struct(outputs)
    # The model server stamps a record after predicting: its request started latency_ms before.
    at = (
        "event_timestamp"
        if source == FEATURE_SERVER
        else "event_timestamp - to_microseconds(CAST(coalesce(latency_ms, 0) * 1000 AS BIGINT))"
    )
    stamped = [n for r in request.views if (n := _stamp_column(r, request.hidden)) is not None]
    times = literal(_struct_text({n: "TIMESTAMPTZ" for n in stamped}))
    columns = [f"{literal(source)} AS {SOURCE}", f"{at} AS event_timestamp"]
    columns += [f"{_typed(f'e.{_quote(k)}', d)} AS {_quote(k)}" for k, d in keys.items()]
    columns += [f'{_typed(f"f.{_quote(n)}", d)} AS "{ONLINE}{n}"' for n, d in outputs.items()]
    for name in stamped:
        value = f't."{name}"' if source == FEATURE_SERVER else "NULL::TIMESTAMPTZ"
        columns.append(f'{value} AS "{SERVED_AT}{name}"')
    times_sql = (
        f"from_json(json_extract(prediction, '$.event_timestamps'), {times}) AS t"
        if source == FEATURE_SERVER and stamped
        else "NULL AS t"
    )
    window = "event_timestamp < $until" + (
        "" if since is None else " AND event_timestamp >= $since"
    )
    file_list = "[" + ", ".join(literal(f) for f in files) + "]"
    return (
        f"SELECT {', '.join(columns)} FROM (SELECT event_timestamp, latency_ms, "
        f"from_json(entities, {entity_json}) AS e, from_json(features, {feature_json}) AS f, "
        f"{times_sql} FROM read_parquet({file_list}, hive_partitioning = false, "
        "union_by_name = true) "
        f"WHERE {where} AND {window})"
    )


def _key_type(request: RetrievalRequest, key: str) -> DType:
    for view in request.views:
        for entity in view.view.entities:
            if key in entity.join_keys:
                return entity.value_type
    raise ConsistencyError(f"join key '{key}' has no declared type")


def _output_types(request: RetrievalRequest) -> dict[str, DType]:
    """The served features of `request` (what a response holds, in order) and their dtypes."""
    types = {
        name: r.view.feature(feature).dtype
        for r in request.views
        for feature, name in zip(r.features, r.output_names, strict=True)
        if name not in request.hidden
    }
    for demand in request.on_demand:
        declared = {f.name: f.dtype for f in demand.view.fields}
        for feature, name in zip(demand.features, demand.output_names, strict=True):
            types[name] = declared[feature]
    return types


_DUCK = {
    "Int32": "INTEGER",
    "Int64": "BIGINT",
    "Float32": "DOUBLE",
    "Float64": "DOUBLE",
    "String": "VARCHAR",
    "Bool": "BOOLEAN",
    "Bytes": "VARCHAR",  # logged as base64 text
    "UnixTimestamp": "VARCHAR",  # epoch microseconds as served online, or ISO text: see _typed
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _typed(column: str, dtype: DType) -> str:
    """A parsed JSON value as its dtype: UnixTimestamp values are served as epoch microseconds
    (online reads) or ISO text (a datetime the log's encoder wrote); other types parse as is."""
    if dtype.kind == "UnixTimestamp":
        return (
            f"CASE WHEN TRY_CAST({column} AS BIGINT) IS NOT NULL "
            f"THEN make_timestamp(CAST({column} AS BIGINT))::TIMESTAMPTZ "
            f"ELSE TRY_CAST({column} AS TIMESTAMPTZ) END"
        )
    return column


def _struct(types: dict[str, DType]) -> str:
    """The from_json structure of an object with these typed fields, as a SQL string literal."""
    text = _struct_text(
        {
            name: [_DUCK[d.element.kind]] if d.element is not None else _DUCK[d.kind]
            for name, d in types.items()
        }
    )
    return "'" + text.replace("'", "''") + "'"


def _struct_text(fields: dict[str, Any]) -> str:
    import json

    return json.dumps(fields)


def _versions_of(
    store: FeatureStore, connection: duckdb.DuckDBPyConnection, files: list[str], service: str
) -> list[tuple[str, int]]:
    """(model, version) pairs in the prediction log files whose version was registered with
    `service` as its feature service."""
    from parity.errors import ParityError
    from parity.offline.duckdb_sql import literal

    listed = "[" + ", ".join(literal(f) for f in files) + "]"
    pairs = connection.execute(
        "SELECT DISTINCT model, version FROM "
        f"read_parquet({listed}, hive_partitioning = false, union_by_name = true)"
    ).fetchall()
    kept = []
    for model, version in pairs:
        try:
            registered = store.models.get_version(str(model), int(version))
        except ParityError:  # a deleted model or version: its rows cannot be attributed
            continue
        if registered.feature_service == service:
            kept.append((str(model), int(version)))
    return kept


def _pairs(versions: Sequence[tuple[str, int]]) -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {"m": [m for m, _ in versions], "v": pa.array([v for _, v in versions], pa.int64())}
    )


def _empty(request: RetrievalRequest) -> pa.Table:
    import pyarrow as pa

    keys = {k: _key_type(request, k) for k in request.join_keys} | _request_fields(request)
    fields = [pa.field(SOURCE, pa.string()), pa.field("event_timestamp", pa.timestamp("us", "UTC"))]
    fields += [pa.field(k, d.to_arrow()) for k, d in keys.items()]
    fields += [pa.field(ONLINE + n, d.to_arrow()) for n, d in _output_types(request).items()]
    return pa.schema(fields).empty_table()


def keep_sampled(logged: pa.Table, join_keys: Sequence[str], percent: float) -> pa.Table:
    """Only the rows whose entity key falls in the `percent` sample (the served log's hash),
    in their order. Each distinct key is hashed once."""
    import numpy as np
    import pyarrow as pa

    if logged.num_rows == 0:
        return logged
    keys = logged.select(list(join_keys))
    distinct = keys.group_by(list(join_keys)).aggregate([])
    keep = [is_sampled(key_text(row), percent) for row in distinct.to_pylist()]
    chosen = distinct.filter(pa.array(keep, pa.bool_()))
    numbered = keys.append_column("parity_row", pa.array(np.arange(logged.num_rows)))
    rows = numbered.join(chosen, list(join_keys), join_type="inner")["parity_row"]
    return logged.take(pa.array(np.sort(rows.to_numpy())))
