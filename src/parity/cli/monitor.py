"""`parity monitor ...`: drift, delayed-label performance, quality, freshness, consistency and
alerts over what the servers logged. Each command reads through `store.monitoring` and prints;
the statistics live in parity.monitoring.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.common import RepoOption, command, console, store_at
from parity.errors import InvalidOption
from parity.timeutil import SPAN_EXAMPLES, format_span, parse_span

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.monitoring.alert_store import AlertEvent
    from parity.monitoring.drift import DriftReport, WindowDrift
    from parity.monitoring.quality_store import QualityRecord

monitor_app = typer.Typer(
    help="Monitoring: drift, delayed-label performance, data quality, freshness, consistency."
)


@monitor_app.command("list")
@command
def monitor_list(repo: RepoOption = Path(".")) -> None:
    """List the applied monitors: the model each watches, its window and its alert rules."""
    store = store_at(repo)
    table = Table("monitor", "model", "window", "min samples", "labels", "alerts")
    for monitor in store.monitoring.monitors():
        labels = monitor.labels
        table.add_row(
            monitor.name,
            monitor.model,
            str(monitor.window),
            str(monitor.min_samples),
            "-" if labels is None else (labels.path or "query"),
            ", ".join(rule.name for rule in monitor.alerts) or "-",
        )
    console.print(table)


# --- performance ---------------------------------------------------------------------------------

_SHOWN_METRICS = (
    ("auc", "AUC"),
    ("average_precision", "AP"),
    ("precision_at_k", "P@k"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("brier", "Brier"),
    ("log_loss", "log loss"),
    ("ece", "ECE"),
)


def _duration(text: str | None) -> timedelta | None:
    """'90s', '30m', '1h', '1d', '2w' as a timedelta; InvalidOption for anything else."""
    if text is None:
        return None
    span = parse_span(text)
    if span is None or span < timedelta(seconds=1):
        raise InvalidOption(
            f"--window {text!r}: give a whole number and a unit, e.g. {SPAN_EXAMPLES}"
        )
    return span


_span = format_span


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@monitor_app.command("performance")
@command
def monitor_performance(
    model: Annotated[str, typer.Option("--model", help="Model ref: fraud@champion, fraud/3.")],
    since: Annotated[str, typer.Option("--since", help="First prediction time (ISO 8601).")],
    until: Annotated[
        str | None, typer.Option("--until", help="End of prediction time (default: now).")
    ] = None,
    window: Annotated[
        str | None, typer.Option("--window", help="Window: 1h, 1d... (default: the monitor's).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Evaluate with the labels known then.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="Store the windows in the history.")
    ] = True,
    repo: RepoOption = Path("."),
) -> None:
    """Delayed-label performance per window of prediction time: status (final once the
    monitor's label_delay has passed, else provisional), label coverage and the metrics over
    the labelled predictions only."""
    width = _duration(window)
    store = store_at(repo)
    report = store.monitoring.performance(
        model, since=since, until=until, window=width, as_of=as_of, record=record
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), sort_keys=True))
        return
    custom = [m.name for m in store.monitoring.get_monitor(report.monitor).metrics]
    table = Table("window start", "status", "predictions", "labelled", "coverage")
    for _, title in _SHOWN_METRICS:
        table.add_column(title, justify="right")
    for name in custom:
        table.add_column(name, justify="right")
    for w in report.windows:
        coverage = "-" if w.coverage is None else f"{w.coverage:.1%}"
        status = w.status + (" (few labels)" if w.insufficient and w.labelled else "")
        values = [_number(w.metrics.get(key)) for key, _ in _SHOWN_METRICS]
        values += [_number(w.metrics.get(name)) for name in custom]
        table.add_row(
            w.start.isoformat(), status, f"{w.predictions:,}", f"{w.labelled:,}", coverage, *values
        )
    console.print(
        f"{report.model}/{report.version} as of {report.as_of.isoformat()}: windows of "
        f"{_span(report.window)}, label delay {_span(report.label_delay)}, threshold "
        f"{report.decision_threshold}, k = {report.top_k}"
    )
    console.print(table)
    console.print("- : undefined for the window (--json gives each reason)")
    failed = {
        (n, w.reasons[n]) for w in report.windows for n in custom if w.labelled and n in w.reasons
    }
    for name, reason in sorted(failed):
        console.print(f"[yellow]Note[/] {name}: {reason}", soft_wrap=True)
    for warning in report.warnings:
        console.print(f"[yellow]Note[/] {warning}", soft_wrap=True)


# --- end performance ---


# --- drift ------------------------------------------------------------------------------------


@monitor_app.command("profile")
@command
def monitor_profile(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Compute the reference profiles of this recorded dataset."),
    ] = None,
    models: Annotated[
        bool,
        typer.Option(
            "--models/--no-models",
            help="Also profile the outputs of the model versions trained on it.",
        ),
    ] = True,
    repo: RepoOption = Path("."),
) -> None:
    """Compute a dataset's reference profiles (features, and each model version trained on it);
    without --dataset, list the stored profiles. A computed profile is immutable and kept."""
    store = store_at(repo)
    if dataset is not None:
        outcomes = store.monitoring.profile_dataset(dataset, models=models)
        stored = [outcome.stored for outcome in outcomes]
    else:
        stored = store.monitoring.profiles()
    table = Table("dataset", "fingerprint", "subject", "status", "rows", "created", "error")
    for row in stored:
        table.add_row(
            row.dataset,
            row.fingerprint[:12],
            row.subject,
            "[green]ok[/]" if row.ok else "[red]failed[/]",
            f"{row.rows:,}",
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(row.error),
        )
    console.print(table)
    if any(not row.ok for row in stored):
        raise typer.Exit(1)


_VERDICT = {"drift": "[red]DRIFT[/]", "no_drift": "[green]no drift[/]"}


def _drift_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _drift_threshold(threshold: float | None, p_value: float | None) -> str:
    """With its direction: a p-value test drifts at p <= threshold (its statistic column is
    the test's own statistic, not p), a distance at statistic >= threshold."""
    if threshold is None:
        return "-"
    return f"p <= {threshold:.4g}" if p_value is not None else f">= {threshold:.4g}"


@monitor_app.command("drift")
@command
def monitor_drift(
    model: Annotated[
        str, typer.Option("--model", help="fraud@champion, fraud/3, or fraud (every version).")
    ],
    window: Annotated[
        str | None,
        typer.Option(
            "--window", help="Window width (1h, 30m, 7d, PT1H); default: the Monitor's, else 1h."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Start (ISO 8601 or a date); default: 24 windows before --until."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="End, excluded (default: now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the self-contained HTML report to this file."),
    ] = None,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", help="Store the run in the drift history."),
    ] = True,
    every_window: Annotated[
        bool,
        typer.Option(
            "--all", help="A column table for every window (default: drifted and latest ones)."
        ),
    ] = False,
    repo: RepoOption = Path("."),
) -> None:
    """Drift of a model's logged features and outputs against its training set's reference
    profile, per version and window of the prediction log. Prints one line per window, then
    the columns of each drifted window and of the latest judged one (--json: every reason)."""

    if html is not None:
        _check_page_path("--html", html)  # before the run is recorded
    store = store_at(repo)
    report = _drift_run(store, model, since, until, window, record)
    if html is not None:  # written first: --json output stays pure JSON
        _write_page("--html", html, store.monitoring.drift_report_html(report))
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    console.print(_windows_table(report.model, report.windows))
    for result in _detailed(report.windows, every_window):
        console.print(_window_table(report.model, result))
    if html is not None:
        console.print(f"wrote {escape(str(html))}")


def _check_page_path(option: str, path: Path) -> None:
    """Refuse, before any run, a page path that cannot be a file (a folder, a missing folder)."""
    if path.is_dir() or not path.parent.is_dir():
        raise InvalidOption(
            f"{option} {path}: give a file path in a folder that exists (it is "
            f"{'a folder' if path.is_dir() else 'in a missing folder'})"
        )


def _write_page(option: str, path: Path, page: str) -> None:
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise InvalidOption(f"{option} {path}: cannot write it: {error.strerror}") from None


def _drift_run(
    store: FeatureStore,
    model: str,
    since: str | None,
    until: str | None,
    window: str | None,
    record: bool,
) -> DriftReport:
    """The drift run both `drift` and `report` print or draw."""
    from parity.monitoring.drift import parse_window

    width = None if window is None else parse_window(window)
    return store.monitoring.drift(model, since=since, until=until, window=width, persist=record)


def _windows_table(model: str, windows: Sequence[WindowDrift]) -> Table:
    table = Table("version", "window (UTC)", "rows", "drift share", "verdict", "drifted columns")
    table.title = f"Drift of {model}: one line per window"
    for w in windows:
        drifted = [c.column for c in w.columns if c.status == "drift"]
        table.add_row(
            f"{model}/{w.version}",
            f"{w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M}",
            f"{w.rows:,}",
            "-" if w.share is None else f"{w.share:.0%}",
            _VERDICT.get(w.status, w.status.replace("_", " ")),
            escape(", ".join(drifted)) or "-",
        )
    return table


def _detailed(windows: Sequence[WindowDrift], every: bool) -> list[WindowDrift]:
    """The windows whose columns are printed: all, or each drifted one and each version's latest
    judged one."""
    if every:
        return list(windows)
    latest: dict[int, WindowDrift] = {}
    for w in windows:
        if w.status in ("drift", "no_drift"):
            latest[w.version] = w
    return [w for w in windows if w.status == "drift" or latest.get(w.version) is w]


def _window_table(model: str, result: WindowDrift) -> Table:
    share = "-" if result.share is None else f"{result.share:.0%}"
    title = (
        f"{model}/{result.version}  {result.start:%Y-%m-%d %H:%M} to "
        f"{result.end:%Y-%m-%d %H:%M} UTC  {result.rows:,} rows  drift share {share}: "
        f"{_VERDICT.get(result.status, result.status)}"
    )
    table = Table(
        "column", "kind", "test", "statistic", "p-value", "threshold", "verdict", "values tested"
    )
    table.title = title
    for column in result.columns:
        tested = max(column.count - column.nulls, 0)
        dropped = f" ({column.nulls:,} null dropped)" if column.nulls else ""
        table.add_row(
            column.column,
            column.kind,
            column.test,
            _drift_number(column.statistic),
            _drift_number(column.p_value),
            _drift_threshold(column.threshold, column.p_value),
            _VERDICT.get(column.status, column.status.replace("_", " ")),
            f"{tested:,}{dropped}",
        )
    return table


# --- quality and freshness ---------------------------------------------------------------------


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


@monitor_app.command("quality")
@command
def monitor_quality(
    name: Annotated[str, typer.Argument(help="A feature view, or a model (its served features).")],
    repo: RepoOption = Path("."),
    since: Annotated[
        str, typer.Option(help="From this time (ISO 8601 or now); default a day ago.")
    ] = "",
    until: Annotated[str, typer.Option(help="Served traffic up to this time; default now.")] = "",
    window: Annotated[str, typer.Option(help="Served traffic per window (e.g. 1h, 1d).")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
) -> None:
    """Data quality per feature: rows, null rate, ±inf, out of range and unseen categories
    (against the reference profile), with a verdict per check (docs/monitoring.md)."""
    from parity.monitoring.quality import signals

    store = store_at(repo)
    start = since or (store.now() - timedelta(days=1)).isoformat()
    records = store.monitoring.quality(
        name, since=start, until=until or None, window=_duration(window)
    )
    newest = {r.feature: r.quality for r in records}  # records come oldest first
    events = store.monitoring.step_alerts(signals(list(newest.values())))
    if as_json:
        console.print_json(json.dumps([_quality_json(r) for r in records]))
        return
    if not records:
        console.print(
            f"No quality records for '{escape(name)}' from {start} to {until or 'now'}: a view "
            "records on materialization, pushes and stream ingestion; a model's windows need "
            "logged predictions in that time.",
            soft_wrap=True,
        )
        _print_events(events)
        return
    table = Table(
        "source", "version", "window end", "feature", "rows", "null rate", "±inf",
        "out of range", "unseen", "verdict",
    )  # fmt: skip
    for r in records:
        q = r.quality
        table.add_row(
            r.source,
            "-" if r.version is None else str(r.version),
            r.window_end.isoformat(timespec="seconds"),
            r.feature,
            f"{q.rows:,}",
            _share(q.null_rate),
            f"{q.counts.infinite:,}",
            _share(q.out_of_range_share),
            _share(q.unseen_share),
            q.verdict,
        )
    console.print(table)
    _print_events(events)


def _print_events(events: Sequence[AlertEvent]) -> None:
    """The alert rules these signals fired or cleared (see `parity monitor alerts`)."""
    for e in events:
        mark = "[red]fired[/]" if e.state == "fired" else "[green]cleared[/]"
        console.print(
            f"alert {escape(e.monitor)}/{escape(e.rule)} {mark}: {escape(e.signal)} = {e.value:.4g}"
        )


def _quality_json(record: QualityRecord) -> dict[str, Any]:
    q = record.quality
    return {
        "source": record.source,
        "subject": record.subject,
        "version": record.version,
        "feature": record.feature,
        "window_start": record.window_start.isoformat(),
        "window_end": record.window_end.isoformat(),
        "rows": q.rows,
        "null_rate": q.null_rate,
        "infinite": q.counts.infinite,
        "below_min": q.counts.below,
        "above_max": q.counts.above,
        "out_of_range_share": q.out_of_range_share,
        "unseen": q.counts.unseen,
        "unseen_share": q.unseen_share,
        "unseen_examples": dict(q.counts.examples),
        "checks": dict(q.checks),
        "limits": dict(q.limits),
        "verdict": q.verdict,
    }


@monitor_app.command("freshness")
@command
def monitor_freshness(
    repo: RepoOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per online view: the newest write known (materialization END or a recorded push), its age,
    the view's freshness_slo and ok / breached / unknown / no_slo."""
    store = store_at(repo)
    results = store.monitoring.freshness_slo()
    events = store.monitoring.step_alerts(store.monitoring.freshness_signals())
    if as_json:
        rows = [
            {
                "view": r.view,
                "newest": None if r.newest is None else r.newest.isoformat(),
                "age_seconds": r.age_seconds,
                "slo_seconds": r.slo_seconds,
                "status": r.status,
            }
            for r in results
        ]
        console.print_json(json.dumps(rows))
        return
    table = Table("view", "newest write", "age", "SLO", "status")
    for r in results:
        table.add_row(
            r.view,
            "-" if r.newest is None else r.newest.isoformat(timespec="seconds"),
            "-" if r.age_seconds is None else str(timedelta(seconds=round(r.age_seconds))),
            "-" if r.slo_seconds is None else str(timedelta(seconds=r.slo_seconds)),
            r.status,
        )
    console.print(table)
    _print_events(events)


# --- consistency ---------------------------------------------------------------------------------

from parity.monitoring.consistency import ConsistencyReport  # noqa: E402 (light: no pyarrow)


@monitor_app.command("consistency")
@command
def monitor_consistency(
    service: str = typer.Option(..., "--service", help="The feature service to check."),
    since: str | None = typer.Option(
        None, help="Request times from (ISO 8601, or 'now'); default: the start of the logs."
    ),
    until: str | None = typer.Option(None, help="Request times before (default: now)."),
    sample_percent: float | None = typer.Option(
        None, "--sample-percent", help="Replay only this share of entity keys (0-100]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
    hourly: bool = typer.Option(False, "--hourly", help="Also print the hourly buckets."),
    repo: RepoOption = Path("."),
) -> None:
    """Replay logged served features through point-in-time retrieval and compare them, per
    feature (and hour): mismatches, one-sided nulls, SMAPE, lag, example rows."""
    from parity.timeutil import parse_time

    store = store_at(repo)
    report = store.monitoring.consistency(
        service,
        since=None if since is None else parse_time(since, "--since", now=store.now),
        until=None if until is None else parse_time(until, "--until", now=store.now),
        sample_percent=sample_percent,
    )
    from parity.monitoring.consistency import signals

    events = store.monitoring.step_alerts(signals(report)) if report.rows else []
    if as_json:
        import json

        console.print_json(json.dumps(report.to_dict(), default=str))
        return
    console.print(report.message)
    _open_segments_note(store)
    if report.rows:
        _consistency_tables(report, hourly)
    _print_events(events)


def _open_segments_note(store: Any) -> None:
    """Rows of a log segment still being written (hidden `.*.inprogress`) are not read yet."""
    from parity.monitoring.consistency import log_folders

    folders = [f for f in log_folders(store).values() if f is not None and f.is_dir()]
    count = sum(1 for folder in folders for _ in folder.glob("date=*/.*.inprogress"))
    if count:
        console.print(
            f"[yellow]Note[/] {count} log segment{'' if count == 1 else 's'} still being "
            "written: their rows are replayed once they become Parquet (within "
            "max_seconds_per_file, 5 minutes, or when the server stops)",
            soft_wrap=True,
        )


def _consistency_tables(report: ConsistencyReport, hourly: bool) -> None:
    table = Table(
        "feature",
        "total",
        "mismatch",
        "rate",
        "online null",
        "offline null",
        "both null",
        "stale (lag)",
        "SMAPE",
    )
    for result in report.features:
        c = result.counts
        smape = "-" if c.smape is None else f"{c.smape:.4g}"
        table.add_row(
            result.feature,
            str(c.total),
            str(c.mismatch),
            f"{c.mismatch_rate:.2%}",
            str(c.online_only_null),
            str(c.offline_only_null),
            str(c.both_null),
            str(c.stale),
            smape,
        )
    console.print(table)
    if hourly:
        hours = Table("hour (UTC)", "feature", "total", "mismatch", "rate", "stale", "SMAPE")
        for b in report.buckets:
            c = b.counts
            smape = "-" if c.smape is None else f"{c.smape:.4g}"
            hours.add_row(
                b.hour.strftime("%Y-%m-%d %H:00"),
                b.feature,
                str(c.total),
                str(c.mismatch),
                f"{c.mismatch_rate:.2%}",
                str(c.stale),
                smape,
            )
        console.print(hours)
    examples = Table("feature", "at", "keys", "online", "offline", "outcome", "stale", "log")
    for result in report.features:
        for e in result.examples:
            examples.add_row(
                e.feature,
                e.at.isoformat(),
                str(e.keys),
                repr(e.online),
                repr(e.offline),
                e.outcome,
                "yes" if e.stale else "no",
                e.source,
            )
    if examples.row_count:
        console.print("Example mismatching rows:")
        console.print(examples)


# --- alerts ----------------------------------------------------------------------------------


@monitor_app.command("alerts")
@command
def monitor_alerts(
    repo: RepoOption = Path("."),
    monitor: Annotated[str | None, typer.Option(help="Only this monitor's alerts.")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only the alerts firing now.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many events.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The alerts firing now, then the latest fire/clear events (newest first)."""
    monitoring = store_at(repo).monitoring
    firing = monitoring.alerts(active_only=True, monitor=monitor)
    events = [] if active else monitoring.alerts(monitor=monitor, limit=limit)
    if as_json:
        import dataclasses

        shown = {
            "firing": [dataclasses.asdict(e) for e in firing],
            "events": [dataclasses.asdict(e) for e in events],
        }
        console.print_json(json.dumps(shown, default=str))
        return
    _alerts_table("firing now", firing, "no alert is firing")
    if not active:
        _alerts_table(f"latest {limit} events", events, "no alert event yet")


def _alerts_table(title: str, events: list[AlertEvent], empty: str) -> None:
    if not events:
        console.print(f"{title}: {empty}")
        return
    table = Table("at", "monitor", "rule", "state", "signal", "value", "fire / clear", title=title)
    for e in events:
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(e.monitor),
            escape(e.rule),
            e.state,
            escape(e.signal),
            f"{e.value:.4g}",
            f"{'>=' if e.direction == 'above' else '<='} {e.fire_at:g} / {e.clear_at:g}"
            f" x{e.sustain}",
        )
    console.print(table)


@monitor_app.command("report")
@command
def monitor_report(
    model: Annotated[
        str, typer.Option("--model", help="fraud@champion, fraud/3, or fraud (newest version).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the HTML page.")] = Path(
        "drift_report.html"
    ),
    window: Annotated[
        str | None, typer.Option("--window", help="Window width (1h, 7d); default: the Monitor's.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Start (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End, excluded (now).")] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="The version shown (default: newest).")
    ] = None,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="Store the run in the drift history.")
    ] = True,
    repo: RepoOption = Path("."),
) -> None:
    """Run drift like `parity monitor drift` and write it as one self-contained HTML page (inline
    SVG plots, no script, opens offline): distributions overlaid, scores over time."""

    _check_page_path("--out", out)  # before the run is recorded
    store = store_at(repo)
    report = _drift_run(store, model, since, until, window, record)
    _write_page("--out", out, store.monitoring.drift_report_html(report, version=version))
    console.print(f"wrote {escape(str(out))} ({len(report.windows)} windows of {report.target})")


# --- evaluate and run: the monitors, then the retrain triggers (cli/triggers.py prints) ------


@monitor_app.command("evaluate")
@command
def monitor_evaluate(
    repo: RepoOption = Path("."),
    now: Annotated[
        str | None, typer.Option(help="Evaluate as of this time (ISO 8601; default: now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One pass, for cron or Airflow: drift of each monitor's newest window ended (recorded,
    alerts stepped), performance where labels are declared, then every retrain policy decided
    and recorded (a fire queues its training job)."""
    from parity.cli.triggers import evaluate_once

    evaluate_once(repo, now, as_json)


@monitor_app.command("run")
@command
def monitor_run(
    repo: RepoOption = Path("."),
    interval: Annotated[str, typer.Option(help="Time between passes: 30s, 5m, 1h.")] = "5m",
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many passes (default: never).")
    ] = None,
) -> None:
    """`parity monitor evaluate` every --interval, until stopped (Ctrl-C)."""
    from parity.cli.triggers import run_loop

    run_loop(repo, interval, count)
