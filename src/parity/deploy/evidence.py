"""What a rollout's gates judge, read at the edge: both arms' rows of the prediction log in the
current step's window (DuckDB over the Parquet files and the segments not yet rotated, union by
name: files from before the `role` column read as role null), matured labels (monitoring.labels),
the repo's gate functions; and `check_gates`, the controller's checker. The verdicts are
deploy/gates.py's; this module decides nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parity.definitions.rollout import LABEL_METRICS, Gate, GateFunction, Rollout
from parity.deploy import gates as g
from parity.deploy.state import CheckOutcome, GateResult, RolloutState
from parity.errors import GateError, ParityError, PredictionLogUnreadable

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from parity.definitions.monitor import LabelSource, MetricRef, Monitor
    from parity.feature_store import FeatureStore
    from parity.monitoring.performance_report import BoundMetrics

logger = logging.getLogger(__name__)

CANDIDATE_ROLES = ("shadow", "canary")  # the candidate's rows: mirrored or answering
CHAMPION_ROLES = ("champion",)  # the champion alias's traffic while the rollout runs
SCORED = ("prediction_drift", "custom")  # gate families that read the scores
DETAIL_COLUMNS = ("request_id", "event_timestamp", "status")  # read only for custom gates
FULL_STEP = "[at 100 % the champion answers nothing: its rows are from before this step]"
PARQUET = "read_parquet($files, union_by_name = true)"  # the log's complete files
LIVE = "parity_live_lines"  # the lines of its in-progress segments, registered for one read


# --- the step window ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowRead:
    """Both arms' logged rows in [start, end), in log order. `is_candidate` tells the arm apart;
    `scores` holds one column per gate output asked (key None: the default output); `detail`
    the request ids, times and statuses (custom gates only); `note` why nothing could be read."""

    start: datetime
    end: datetime
    is_candidate: np.ndarray[Any, np.dtype[np.bool_]]
    ok: np.ndarray[Any, np.dtype[np.bool_]]
    latency_ms: g.FloatArray
    scores: dict[str | None, g.FloatArray] = field(default_factory=dict)
    detail: pa.Table | None = None
    note: str = ""

    def masks(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(candidate rows, champion rows) as boolean masks."""
        return self.is_candidate, ~self.is_candidate

    def samples(self) -> dict[str, int]:
        candidate = int(np.count_nonzero(self.is_candidate))
        return {g.CANDIDATE: candidate, g.CHAMPION: int(self.is_candidate.size - candidate)}


def empty_read(start: datetime, end: datetime, note: str) -> WindowRead:
    nothing = np.zeros(0, dtype=bool)
    return WindowRead(start, end, nothing, nothing, np.zeros(0), note=note)


def score_sql(key: str | None) -> str:
    """The logged prediction as a number: the whole value (a one-output model logs a bare
    number) or output `key` of its JSON object; null when it is not a number (NaN, inf, text)."""
    if key is None:
        return "TRY_CAST(prediction AS DOUBLE)"
    path = "'$.\"" + key.replace("'", "''").replace('"', '\\"') + "\"'"
    return f"TRY_CAST(json_extract_string(prediction, {path}) AS DOUBLE)"


def log_source(files: bool, live: bool) -> str:
    """What a window read scans: the Parquet files ($files), the rows of the in-progress
    segments' lines (registered on the connection as LIVE), or both unioned by name."""
    from parity.inference.predlog_live import lines_sql

    rows = f"({lines_sql(LIVE)})"
    if files and live:
        return f"(SELECT * FROM {PARQUET} UNION ALL BY NAME SELECT * FROM {rows})"
    return PARQUET if files else rows


def window_sql(
    candidate: int,
    champion: int,
    scores: Mapping[str | None, tuple[str | None, str | None]],
    detail: bool,
    source: str = PARQUET,
) -> str:
    """The one query of a check (pure text; $model, $start, $end and, for the Parquet files,
    $files are parameters): each row of either arm in `source` with its arm, ok flag, latency and
    the asked scores, each score column read with the key of its arm's version."""
    columns = [
        f"version = {int(candidate)} AS is_candidate",
        "coalesce(status = 'ok', false) AS ok",
    ]
    columns.append("latency_ms")
    for index, (cand_key, champ_key) in enumerate(scores.values()):
        if cand_key == champ_key:
            columns.append(f"{score_sql(cand_key)} AS s{index}")
        else:
            columns.append(
                f"CASE WHEN version = {int(candidate)} THEN {score_sql(cand_key)} "
                f"ELSE {score_sql(champ_key)} END AS s{index}"
            )
    if detail:
        columns += list(DETAIL_COLUMNS)
    arms = (
        f"(version = {int(candidate)} AND role IN {_roles(CANDIDATE_ROLES)}) OR "
        f"(version = {int(champion)} AND role IN {_roles(CHAMPION_ROLES)})"
    )
    return (
        f"SELECT {', '.join(columns)} FROM {source} "
        f"WHERE model = $model AND event_timestamp >= $start AND event_timestamp < $end "
        f"AND ({arms})"
    )


def _roles(roles: Sequence[str]) -> str:
    return "(" + ", ".join("'" + r.replace("'", "''") + "'" for r in roles) + ")"


def log_columns(connection: duckdb.DuckDBPyConnection, files: Sequence[str]) -> set[str]:
    """The columns of the files read together (union by name)."""
    found = connection.execute(
        "SELECT * FROM read_parquet($files, union_by_name = true) LIMIT 0", {"files": list(files)}
    )
    names = {str(column[0]) for column in found.description or ()}
    found.fetchall()  # no rows: finishes the result, so the connection takes the next query
    return names


def read_window(
    folder: Path,
    model: str,
    versions: tuple[int, int],
    start: datetime,
    end: datetime,
    *,
    scores: Mapping[str | None, tuple[str | None, str | None]] | None = None,
    detail: bool = False,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> WindowRead:
    """Rows of the candidate (`version = candidate AND role IN ('shadow', 'canary')`) and of the
    champion (`version = champion AND role = 'champion'`) of `model` logged in [start, end), from
    the Parquet files and the in-progress segments (not yet rotated), read on `connection` (left
    open) or on a connection of its own."""
    from parity.inference.predlog_live import unrotated
    from parity.monitoring.logs import connect_duckdb, log_files, log_segments

    scores = dict(scores or {})
    if end <= start:
        return empty_read(start, end, "the window is empty")
    segments = log_segments(folder, start, end)  # listed first: see `unrotated`
    files, live = unrotated(segments, log_files(folder, start, end))
    if not files and live is None:
        return empty_read(start, end, f"no prediction log files in {folder} for the window")
    sql = window_sql(*versions, scores, detail, log_source(bool(files), live is not None))
    params = {"model": model, "start": start, "end": end} | ({"files": files} if files else {})
    own = connection is None
    connection = connect_duckdb() if connection is None else connection
    try:
        table = _query(connection, folder, sql, params, live)
    finally:
        if own:
            connection.close()
    if table is None:
        return empty_read(start, end, "the log has no role column: no rollout was routed")
    return WindowRead(
        start=start,
        end=end,
        is_candidate=_bools(table.column("is_candidate")),
        ok=_bools(table.column("ok")),
        latency_ms=_floats(table.column("latency_ms")),
        scores={key: _floats(table.column(f"s{i}")) for i, key in enumerate(scores)},
        detail=table.select(list(DETAIL_COLUMNS)) if detail else None,
    )


def _query(
    connection: duckdb.DuckDBPyConnection,
    folder: Path,
    sql: str,
    params: dict[str, Any],
    live: pa.Array | None,
) -> pa.Table | None:
    """The rows `sql` selects, the live lines registered as LIVE for it; None when the files
    have no role column and there are no live lines (no rollout was routed)."""
    import duckdb
    import pyarrow as pa

    try:
        if live is None and "role" not in log_columns(connection, params["files"]):
            return None
        if live is not None:
            connection.register(LIVE, pa.table({"line": live}))
        return connection.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as error:  # truncated, not Parquet, or not the log's columns
        raise PredictionLogUnreadable(
            f"the prediction log under {folder} could not be read: {' '.join(str(error).split())}"
            "; move the damaged file out of the log folder"
        ) from error
    finally:
        if live is not None:
            connection.unregister(LIVE)


def _bools(column: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _floats(column: pa.ChunkedArray) -> g.FloatArray:
    import pyarrow as pa

    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


# --- which output is the score ------------------------------------------------------------------


def output_key(signature: Mapping[str, Any] | None, wanted: str | None, ref: str) -> str | None:
    """The JSON key of the logged prediction to read as the score: None for a one-output model
    (it logs a bare number), else `wanted` or the signature's first output. GateError naming the
    outputs when the model has no output `wanted`."""
    outputs = [str(o["name"]) for o in (signature or {}).get("outputs") or []]
    if wanted is not None and outputs and wanted not in outputs:
        raise GateError(
            f"gate output '{wanted}': model {ref} has the outputs {outputs}; fix Gate(output=...)"
        )
    if len(outputs) == 1:
        return None
    return wanted if wanted is not None or not outputs else outputs[0]


def _signature(store: FeatureStore, model: str, version: int) -> Mapping[str, Any] | None:
    try:
        return store.models.get_version(model, version).signature
    except ParityError:  # a deleted version: read the prediction as a bare number
        return None


def score_keys(
    store: FeatureStore, state: RolloutState, wanted: Iterable[str | None]
) -> tuple[dict[str | None, tuple[str | None, str | None]], dict[str | None, str]]:
    """Per gate output asked: (candidate key, champion key), or why it cannot be read."""
    signatures = [_signature(store, state.model, v) for v in (state.candidate, state.champion)]
    keys: dict[str | None, tuple[str | None, str | None]] = {}
    errors: dict[str | None, str] = {}
    for output in dict.fromkeys(wanted):
        try:
            cand, champ = (
                output_key(sig, output, f"{state.model}/{v}")
                for sig, v in zip(signatures, (state.candidate, state.champion), strict=True)
            )
            keys[output] = (cand, champ)
        except GateError as error:
            errors[output] = str(error)
    return keys, errors


# --- custom gate functions ----------------------------------------------------------------------


def match_functions(
    refs: Sequence[MetricRef], found: Iterable[Rollout], preferred: str
) -> tuple[dict[str, GateFunction], dict[str, str]]:
    """Each kept gate function (name + code hash) found in the repo's rollouts (the one named
    `preferred` first): the functions bound, and why the others are not."""
    ordered = sorted(found, key=lambda r: r.name != preferred)
    functions: dict[str, GateFunction] = {}
    errors: dict[str, str] = {}
    for ref in refs:
        hashes = set()
        for rollout in ordered:
            mine = {r.name: r for r in rollout.custom_gates}.get(ref.name)
            bound = rollout.gate_functions.get(ref.name)
            if mine is not None and bound is not None:
                hashes.add(mine.code_hash)
                if mine.code_hash == ref.code_hash:
                    functions[ref.name] = bound
                    break
        if ref.name in functions:
            continue
        errors[ref.name] = (
            f"gate function '{ref.name}' differs from the one the rollout started with; check "
            "out that version of it (a rollout keeps the gates it started with)"
            if hashes
            else f"gate function '{ref.name}' is not in the repo; restore it (a def listed in "
            "a Rollout's custom_gates)"
        )
    return functions, errors


def bind_gates(
    store: FeatureStore, definition: Rollout
) -> tuple[dict[str, GateFunction], dict[str, str]]:
    """The rollout's custom gate functions: already bound (the definition came from the repo in
    this process), else from the loaded repo, checked against the code hash kept at start."""
    refs = definition.custom_gates
    bound = definition.gate_functions
    if all(ref.name in bound for ref in refs):
        return bound, {}
    from parity.repo.loader import load_repo

    try:
        rollouts = load_repo(store.repo_path, store.project).catalog.rollouts
    except ParityError as error:
        why = f"the repo could not be loaded to find the gate functions: {error}"
        return {}, {ref.name: why for ref in refs}
    return match_functions(refs, rollouts.values(), definition.name)


def evidence_for(gate: Gate, read: WindowRead, state: RolloutState) -> g.Evidence:
    """The custom gate's view of the window: both arms' arrays and the declared threshold."""
    candidate, champion = read.masks()
    scores = read.scores.get(gate.output)
    arms = []
    for mask, version in ((candidate, state.candidate), (champion, state.champion)):
        detail = read.detail.filter(mask) if read.detail is not None else None
        arms.append(
            g.ArmEvidence(
                version=version,
                request_ids=_objects(detail, "request_id", mask),
                at=_objects(detail, "event_timestamp", mask),
                scores=scores[mask] if scores is not None else np.full(int(mask.sum()), np.nan),
                latency_ms=read.latency_ms[mask],
                status=_objects(detail, "status", mask),
            )
        )
    return g.Evidence(
        gate=gate.metric,
        limit=g.gate_limit(gate),
        start=read.start,
        end=read.end,
        phase="shadow" if state.in_shadow else "canary",
        weight=state.weight,
        candidate=arms[0],
        champion=arms[1],
    )


def _objects(
    detail: pa.Table | None, name: str, mask: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    if detail is None:
        return np.empty(int(mask.sum()), dtype=object)
    return np.asarray(detail.column(name).to_numpy(zero_copy_only=False))


# --- matured labels -----------------------------------------------------------------------------


class LabelEvidence:
    """Labels joined to both arms' predictions in [started_at, now - label_delay), as known at
    `now`; joined once per score output (both arms in one pass, on `connection`, a connection
    of `monitoring.labels.connect`) and shared by the label gates of one check."""

    def __init__(
        self,
        store: FeatureStore,
        state: RolloutState,
        folder: Path,
        now: datetime,
        connection: duckdb.DuckDBPyConnection,
    ):
        self.store, self.state, self.folder, self.now = store, state, folder, now
        self.connection = connection
        self.monitor: Monitor | None = store.monitoring.monitor_for(state.model)
        self.start = _utc(state.started_at)
        delay = self.monitor.label_delay if self.monitor is not None else None
        self.until = now - delay if delay is not None else now
        self._arms: dict[str | None, tuple[g.Labelled, g.Labelled] | str] = {}
        self._bound: BoundMetrics | None = None
        label_gates = [gate for gate in state.definition.gates if gate.family == "label"]
        # outputs a Monitor metric function reads: only those join the label source's columns
        self._columns = {gate.output for gate in label_gates if gate.argument not in LABEL_METRICS}

    def problem(self) -> str | None:
        """Why no label gate can be judged now, or None."""
        model = self.state.model
        if self.monitor is None:
            return (
                f"no Monitor watches model '{model}': declare Monitor(model='{model}', "
                "labels=LabelSource(...)) in the repo and run 'parity apply'"
            )
        if self.monitor.labels is None:
            return f"monitor '{self.monitor.name}' declares no labels (LabelSource)"
        if self.until <= self.start:
            return (
                f"no matured labels yet: predictions mature label_delay "
                f"({self.monitor.label_delay}) after they are made; the first at "
                f"{(self.start + self.monitor.label_delay).isoformat()}"
            )
        return None

    def result(self, gate: Gate) -> GateResult:
        problem, monitor = self.problem(), self.monitor
        if problem is not None or monitor is None or monitor.labels is None:
            return g.inconclusive(gate, problem or "no monitor")
        metric, function = gate.argument or "", None
        if metric not in LABEL_METRICS:
            function, why = self._function(monitor, metric)
            if function is None:
                return g.inconclusive(gate, why)
        arms = self._joined(monitor, monitor.labels, gate.output)
        if isinstance(arms, str):
            return g.inconclusive(gate, arms)
        threshold = monitor.decision_threshold
        result = g.label_gate(gate, arms[0], arms[1], threshold=threshold, function=function)
        span = f" [predictions {self.start.isoformat()} to {self.until.isoformat()}]"
        return replace(result, reason=result.reason + span)

    def _function(self, monitor: Monitor, metric: str) -> tuple[Any, str]:
        from parity.monitoring.performance_report import bind_metrics
        from parity.repo.loader import load_repo

        if self._bound is None:
            store = self.store
            try:
                self._bound = bind_metrics(
                    monitor, lambda: load_repo(store.repo_path, store.project).catalog.monitors
                )
            except ParityError as error:
                return None, f"the monitor's metric functions could not be loaded: {error}"
        if metric in self._bound.errors:
            return None, str(self._bound.errors[metric])
        function = self._bound.functions.get(metric)
        if function is None:
            return None, (
                f"label metric '{metric}' is neither built in ({', '.join(LABEL_METRICS)}) nor a "
                f"metric function of monitor '{monitor.name}'"
            )
        return function, ""

    def _joined(
        self, monitor: Monitor, source: LabelSource, output: str | None
    ) -> tuple[g.Labelled, g.Labelled] | str:
        import duckdb

        if output not in self._arms:
            try:
                self._arms[output] = self._join(monitor, source, output)
            except (ParityError, duckdb.Error) as error:
                self._arms[output] = f"the labels could not be joined: {error}"
        return self._arms[output]

    def _join(
        self, monitor: Monitor, source: LabelSource, output: str | None
    ) -> tuple[g.Labelled, g.Labelled] | str:
        from parity.monitoring import labels
        from parity.monitoring.performance import Window

        state = self.state
        wanted = output if output is not None else monitor.score_output
        arms = ((state.candidate, CANDIDATE_ROLES), (state.champion, CHAMPION_ROLES))
        scopes = []
        for version, roles in arms:
            key = output_key(
                _signature(self.store, state.model, version), wanted, f"{state.model}/{version}"
            )
            scopes.append(labels.LogScope(self.folder, state.model, version, key, roles=roles))
        connection = self.connection
        files = labels.log_files(self.folder, self.start.date(), self.until.date())
        if files and "role" not in log_columns(connection, files):
            return "the log has no role column: no rollout was routed"
        sql = labels.source_sql(source, self.store.repo_path)
        window = Window(self.start, self.until)
        both = labels.join_arms(
            connection, scopes, source, sql, window, self.now, columns=output in self._columns
        )
        return labelled(both[0], source.label), labelled(both[1], source.label)


def labelled(joined: Any, label_column: str) -> g.Labelled:
    """One arm's joined rows as the label gate reads them."""
    from parity.monitoring.labels import label_array

    rows = joined.rows
    scores = rows.column("__score").to_numpy(zero_copy_only=False)
    return g.Labelled(
        labels=label_array(rows.column("__label"), label_column),
        scores=np.asarray(scores, dtype=np.float64),
        rows=rows.drop_columns(["__window", "__label", "__score"]),
        dropped=int(sum(joined.dropped_scores)),
        predictions=int(sum(joined.predictions)),
    )


# --- the check ----------------------------------------------------------------------------------


def check_gates(store: FeatureStore, state: RolloutState, now: datetime) -> CheckOutcome:
    """Every gate of the rollout judged at `now`: latency, error rate, drift and custom gates on
    the current step's window [step_started, now), label gates on [started_at, now -
    label_delay) with the labels known at `now`. Never raises for missing evidence: a gate that
    cannot be judged is inconclusive, saying why."""
    from parity.monitoring.labels import connect

    connection = connect(store.repo_path)  # one DuckDB connection for the whole check
    try:
        return _check(store, state, _utc(now), connection)
    finally:
        connection.close()


def _check(
    store: FeatureStore, state: RolloutState, now: datetime, connection: duckdb.DuckDBPyConnection
) -> CheckOutcome:
    gates = state.definition.gates
    start = _utc(state.step_started)
    wanted = [gate.output for gate in gates if gate.family in SCORED]
    keys, key_errors = score_keys(store, state, wanted)
    custom = any(gate.family == "custom" for gate in gates)
    try:
        folder = store.monitoring.prediction_log_folder()
        versions = (state.candidate, state.champion)
        read = read_window(
            folder,
            state.model,
            versions,
            start,
            now,
            scores=keys,
            detail=custom,
            connection=connection,
        )
        if answers_all(state):
            started = _utc(state.started_at)
            before = read_window(
                folder,
                state.model,
                versions,
                started,
                start,
                scores=keys,
                detail=custom,
                connection=connection,
            )
            read = champion_from(read, before)
    except ParityError as error:  # no log folder, or a damaged file in it
        logger.warning("rollout %s: the prediction log cannot be read: %s", state.id, error)
        reason = f"the prediction log cannot be read: {error}"
        unread = tuple(g.inconclusive(gate, reason) for gate in gates)
        return CheckOutcome(unread, {g.CANDIDATE: 0, g.CHAMPION: 0})
    labels = LabelEvidence(store, state, folder, now, connection)
    functions, bind_errors = bind_gates(store, state.definition) if custom else ({}, {})
    results: list[GateResult] = []
    for gate in gates:
        problem = key_errors.get(gate.output) if gate.family in SCORED else None
        if problem is None and gate.family == "custom":
            problem = bind_errors.get(gate.argument or "")
        result = (
            judge(gate, read, state, labels, functions)
            if problem is None
            else g.inconclusive(gate, problem, read.samples())
        )
        if result.verdict == "inconclusive" and read.note and gate.family != "label":
            result = replace(result, reason=f"{result.reason} ({read.note})")
        if answers_all(state) and gate.family != "label":
            result = replace(result, reason=f"{result.reason} {FULL_STEP}")
        results.append(result)
    return CheckOutcome(tuple(results), read.samples())


def answers_all(state: RolloutState) -> bool:
    """A canary step at 100 %: the champion answers no routed request in the step's window, so
    its evidence comes from before the step (see `champion_from`)."""
    return not state.in_shadow and state.weight >= 100.0


def champion_from(current: WindowRead, before: WindowRead) -> WindowRead:
    """The candidate's rows of `current` (the step's window) with the champion's rows of `before`
    ([started_at, step_started): the rollout's champion traffic until the candidate took it all).
    Without it a 100 % step's comparing gates would wait forever on an empty champion arm."""
    import pyarrow as pa

    cand, champ = current.is_candidate, ~before.is_candidate

    def joined(now: np.ndarray[Any, Any], then: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.concatenate([now[cand], then[champ]])

    def scores(read: WindowRead, key: str | None) -> g.FloatArray:
        return read.scores.get(key, np.full(read.is_candidate.size, np.nan))

    detail = None
    if current.detail is not None or before.detail is not None:
        pairs = ((current, cand), (before, champ))
        parts = [r.detail.filter(m) for r, m in pairs if r.detail is not None]
        detail = pa.concat_tables(parts) if parts else None
    return WindowRead(
        start=current.start,
        end=current.end,
        is_candidate=joined(current.is_candidate, before.is_candidate),
        ok=joined(current.ok, before.ok),
        latency_ms=joined(current.latency_ms, before.latency_ms),
        scores={k: joined(scores(current, k), scores(before, k)) for k in current.scores},
        detail=detail,
        note="; ".join(n for n in (current.note, before.note) if n),
    )


def judge(
    gate: Gate,
    read: WindowRead,
    state: RolloutState,
    labels: LabelEvidence,
    functions: Mapping[str, GateFunction],
) -> GateResult:
    """One gate's result from the evidence read."""
    candidate, champion = read.masks()
    family = gate.family
    if family == "latency_p99":
        cand, champ = candidate & read.ok, champion & read.ok
        return g.latency_gate(gate, read.latency_ms[cand], read.latency_ms[champ])
    if family == "error_rate":
        return g.error_rate_gate(gate, read.ok[candidate], read.ok[champion])
    if family == "label":
        return labels.result(gate)
    if family == "prediction_drift":
        scores = read.scores[gate.output]
        return g.drift_gate(gate, scores[candidate & read.ok], scores[champion & read.ok])
    name = gate.argument or ""
    function = functions.get(name)
    if function is None:
        return g.inconclusive(gate, f"gate function '{name}' is not bound", read.samples())
    return g.custom_gate(gate, function, evidence_for(gate, read, state))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
