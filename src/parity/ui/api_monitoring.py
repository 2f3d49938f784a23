"""/ui/api routes of the monitoring pages: models under monitoring, drift per column over time,
delayed-label performance, retrain decisions, alerts, and consistency replays run in the
background. Reads the store and hands values to monitoring_view.py; computes nothing itself."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict

from parity.errors import FeatureServiceNotFound, InvalidTime, MonitorNotFound, ObjectNotFound
from parity.timeutil import parse_time
from parity.ui import monitoring_view as view
from parity.ui.api_session import ERRORS, context
from parity.ui.tasks import TaskState

router = APIRouter(tags=["monitoring"])
MODELS, FEATURES = "models:read", "features:read"
EVENTS = 200  # alert events shown: the newest
CONSISTENCY = "consistency"  # the background task's kind
DEFAULT_SPAN = timedelta(hours=24)
ROWS, MAX_ROWS = 20_000, 200_000  # drift rows read per page by default, and at most
WINDOWS = 100  # drift windows a page shows when it names no `since`


# --- response models -------------------------------------------------------------------------


class LatestWindow(BaseModel):
    window_start: str
    window_end: str
    version: int
    drift_share: float | None
    drifted: bool | None


class MonitoredModel(BaseModel):
    model: str
    monitor: str | None
    window_seconds: float | None
    latest_window: LatestWindow | None
    columns: int
    drifted_columns: int
    firing_alerts: int
    url: str


class MonitoredModels(BaseModel):
    models: list[MonitoredModel]


class DriftPoint(BaseModel):
    window_start: str
    window_end: str
    version: int
    statistic: float | None
    p_value: float | None
    drifted: bool | None
    status: str
    current_rows: int
    run_at: str


class DriftColumn(BaseModel):
    column: str
    role: str
    test: str
    threshold: float | None
    series: list[DriftPoint]


class DriftShare(BaseModel):
    threshold: float | None
    series: list[DriftPoint]


class Drift(BaseModel):
    """`columns`: each column's statistic per window against its test's threshold (the latest
    run's judgement of each window). `drift_share`: the share of columns drifted per window.
    Without `since`: the 100 windows up to the newest (or to `until`). `truncated`: only the
    newest `limit` stored rows were read (ask for a narrower since/until)."""

    model: str
    monitor: str | None
    truncated: bool
    columns: list[DriftColumn]
    drift_share: DriftShare


class PerformancePoint(BaseModel):
    window_start: str
    window_end: str
    version: int
    value: float | None
    coverage: float | None
    labelled: int
    predictions: int
    final: bool
    as_of: str
    reason: str | None


class MetricSeries(BaseModel):
    metric: str
    points: list[PerformancePoint]


class Performance(BaseModel):
    """One series per metric over the newest 100 windows (every version), each point with its
    label coverage and whether it is final."""

    model: str
    monitor: str | None
    series: list[MetricSeries]


class Decision(BaseModel):
    id: int | None
    at: str
    policy: str
    action: str
    reasons: list[str]
    signals: dict[str, Any]
    job: int | None
    job_status: str | None
    url: str


class Decisions(BaseModel):
    """The retrain policy deciding for the model and its newest 100 decisions, oldest first."""

    model: str
    policy: str | None
    decisions: list[Decision]


class AlertStatusView(BaseModel):
    monitor: str
    rule: str
    signal: str
    firing: bool
    streak: int
    last_value: float | None
    since: str | None
    last_at: str


class AlertEventView(BaseModel):
    at: str
    monitor: str
    rule: str
    signal: str
    kind: str
    value: float | None
    fire_at: float | None
    clear_at: float | None
    direction: str


class Alerts(BaseModel):
    """Where every evaluated rule stands, and the newest 200 fire/clear events, oldest first."""

    statuses: list[AlertStatusView]
    events: list[AlertEventView]


class FeatureMismatch(BaseModel):
    feature: str
    compared: int
    mismatches: int
    stale: int
    rate: float


class HourMismatch(BaseModel):
    hour: str
    feature: str
    rate: float


class Consistency(BaseModel):
    """A background replay of the served rows of one feature service (`state` none before the
    first POST); `features` and `hours` are filled once it is done."""

    service: str
    state: str
    id: str | None
    phase: str | None
    done: int
    total: int | None
    started_at: str | None
    finished_at: str | None
    error: str | None
    since: str | None
    until: str | None
    rows: int | None
    message: str | None
    features: list[FeatureMismatch]
    hours: list[HourMismatch]


class ConsistencyRequest(BaseModel):
    """The window of request time to replay; default: the last 24 hours of the store's clock."""

    model_config = ConfigDict(extra="forbid")
    since: str | None = None
    until: str | None = None


# --- routes ----------------------------------------------------------------------------------


@router.get("/monitoring", response_model=MonitoredModels, responses=ERRORS)
def monitoring(request: Request) -> MonitoredModels:
    ui = context(request)
    monitoring = ui.store.monitoring
    names = ui.visible(request, MODELS, ui.store.models.models())
    latest = monitoring.latest_drift() if names else []
    statuses = monitoring.alert_statuses() if names else []
    models = [
        view.model_summary(name, monitoring.monitor_for(name), latest, statuses) for name in names
    ]
    return MonitoredModels.model_validate({"models": models})


@router.get("/monitoring/{model}/drift", response_model=Drift, responses=ERRORS)
def drift(
    request: Request,
    model: str,
    since: str | None = None,
    until: str | None = None,
    column: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = ROWS,
) -> Drift:
    ui = context(request)
    monitoring = ui.store.monitoring
    start, end = window(ui.store.now, since, until)
    monitor = monitoring.monitor_for(model)
    if start is None:
        start = default_since(monitoring, model, monitor, end)
    rows = monitoring.drift_history(model, column=column, since=start, until=end, limit=limit)
    if column is not None and not rows:
        known_column(monitoring, model, column)
    shaped = view.drift_columns(rows)
    name = None if monitor is None else monitor.name
    truncated = len(rows) == limit
    return Drift.model_validate({"model": model, "monitor": name, "truncated": truncated, **shaped})


@router.get("/monitoring/{model}/performance", response_model=Performance, responses=ERRORS)
def performance(request: Request, model: str) -> Performance:
    ui = context(request)
    ui.store.models.versions(model)  # ModelNotFound (404) naming it
    monitoring = ui.store.monitoring
    monitor = monitoring.monitor_for(model)
    series = view.performance_series(monitoring.performance_history(model))
    name = None if monitor is None else monitor.name
    return Performance.model_validate({"model": model, "monitor": name, "series": series})


@router.get("/monitoring/{model}/triggers", response_model=Decisions, responses=ERRORS)
def triggers(request: Request, model: str) -> Decisions:
    store = context(request).store
    store.models.versions(model)  # ModelNotFound (404) naming it
    policy = next((p.name for p in store.triggers.policies() if p.model == model), None)
    found = store.triggers.history(model)[::-1] if policy is not None else []  # oldest first
    decisions = [view.decision(d, job_status(store, d.job_id)) for d in found]
    return Decisions.model_validate({"model": model, "policy": policy, "decisions": decisions})


def default_since(
    monitoring: Any, model: str, monitor: Any, until: datetime | None
) -> datetime | None:
    """`WINDOWS` windows of the model's monitor (else of its newest stored window) before
    `until`, or before the newest stored window's end: what a drift page shows unless asked."""
    newest = [r for r in monitoring.latest_drift() if r.model == model]
    if not newest:
        return None
    row = max(newest, key=lambda r: r.window_end)
    width: timedelta = row.window_end - row.window_start if monitor is None else monitor.window
    end: datetime = row.window_end if until is None else until
    try:
        return end - WINDOWS * width
    except OverflowError:
        return None


def job_status(store: Any, job: int | None) -> str | None:
    if job is None:
        return None
    try:
        return str(store.jobs.get(job).status)
    except ObjectNotFound:
        return None


@router.get("/alerts", response_model=Alerts, responses=ERRORS)
def alerts(request: Request, monitor: str | None = None) -> Alerts:
    ui = context(request)
    monitoring = ui.store.monitoring
    if monitor is not None:
        ui.require(request, MODELS, monitor_model(request, monitoring, monitor), "model")
    monitors = monitoring.monitors()
    readable = {m.name for m in monitors if ui.can(request, MODELS, m.model)}
    statuses = [s for s in monitoring.alert_statuses(monitor=monitor) if s.monitor in readable]
    limit = EVENTS if len(readable) == len(monitors) else None  # else: filtered, then cut
    found = monitoring.alerts(monitor=monitor, limit=limit)
    events = [e for e in found if e.monitor in readable][:EVENTS]
    return Alerts.model_validate(
        {
            "statuses": [view.alert_status(s) for s in statuses],
            "events": [view.alert_event(e) for e in events[::-1]],  # oldest first
        }
    )


@router.get("/consistency/{service}", response_model=Consistency, responses=ERRORS)
def consistency(request: Request, service: str) -> Consistency:
    ui = context(request)
    known_service(ui.store, service)
    task = ui.tasks.latest(CONSISTENCY, service)
    asked = None if task is None else task_window(request, task)
    return Consistency.model_validate({"service": service, **view.consistency_state(task, asked)})


@router.post(
    "/consistency/{service}", response_model=Consistency, responses=ERRORS, status_code=202
)
def start_consistency(
    request: Request, service: str, body: ConsistencyRequest | None = None
) -> Consistency:
    ui = context(request)
    store = ui.store
    known_service(store, service)
    asked = body or ConsistencyRequest()
    start, end = window(store.now, asked.since, asked.until, body=True)
    end = store.now() if end is None else end
    start = end - DEFAULT_SPAN if start is None else start
    problem = view.check_window(start, end)
    if problem is not None:
        raise invalid(("body", problem[0]), problem[1])

    def work(progress: Any) -> Any:
        progress("replaying", 0, 1)
        report = store.monitoring.consistency(service, since=start, until=end)
        progress("replayed", 1, 1)
        return report

    task = ui.tasks.start(CONSISTENCY, service, work)
    windows(request).setdefault(task.id, (start, end))
    shown = task_window(request, task) or (start, end)
    return Consistency.model_validate({"service": service, **view.consistency_state(task, shown)})


# --- helpers ---------------------------------------------------------------------------------


def windows(request: Request) -> dict[str, tuple[datetime, datetime]]:
    """Per consistency task id, the window it was asked for (kept with the app, like its tasks)."""
    state = request.app.state
    if not hasattr(state, "consistency_windows"):
        state.consistency_windows = {}
    found: dict[str, tuple[datetime, datetime]] = state.consistency_windows
    return found


def task_window(request: Request, task: TaskState) -> tuple[datetime, datetime] | None:
    if task.result is not None:
        return task.result.since, task.result.until
    return windows(request).get(task.id)


def monitor_model(request: Request, monitoring: Any, monitor: str) -> str:
    """The model `monitor` watches; unknown: 404 listing the monitors, but to a token narrowed
    to some models a 403 like a known one of another model's (no list of names it may not read)."""
    ui = context(request)
    try:
        return str(monitoring.get_monitor(monitor).model)
    except MonitorNotFound:
        if ui.can(request, MODELS):
            raise
    raise MonitorNotFound(f"no monitor named '{monitor}' watches a model this token may read")


def known_column(monitoring: Any, model: str, column: str) -> None:
    """422 naming `column` unless some drift run of `model` judged it (an unknown column must
    not read as a column that never drifted)."""
    known = sorted({r.column for r in monitoring.latest_drift() if r.model == model})
    if column not in known:
        columns = ", ".join(known) or "none yet (no drift run recorded)"
        raise invalid(
            ("query", "column"),
            f"model '{model}' has no drift column {column!r}; columns: {columns}",
        )


def known_service(store: Any, service: str) -> None:
    services = store.registry.catalog.feature_services
    if service not in services:
        known = ", ".join(sorted(services)) or "none"
        raise FeatureServiceNotFound(f"no feature service '{service}'; registered: {known}")


def window(
    clock: Any, since: str | None, until: str | None, *, body: bool = False
) -> tuple[datetime | None, datetime | None]:
    """`since` and `until` as times (ISO 8601, a date, or 'now'), checked: 422 naming the one
    that is not a time, is outside 1970..9000, or (since) is not before until."""
    where = "body" if body else "query"
    parsed: dict[str, datetime | None] = {}
    for name, text in (("since", since), ("until", until)):
        try:
            parsed[name] = None if text is None else parse_time(text, name, now=clock)
        except (InvalidTime, OverflowError) as failure:
            raise invalid((where, name), str(failure).removeprefix(f"{name}: ")) from None
    problem = view.check_window(parsed["since"], parsed["until"])
    if problem is not None:
        raise invalid((where, problem[0]), problem[1])
    return parsed["since"], parsed["until"]


def invalid(loc: tuple[str, str], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])
