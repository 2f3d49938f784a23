"""`parity monitor ...`: drift, delayed-label performance, quality, freshness, consistency and
alerts over what the servers logged. Each command reads through `store.monitoring` and prints;
the statistics live in parity.monitoring.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from parity.cli.common import RepoOption, command, console, store_at

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
    if as_json:
        import json

        console.print_json(json.dumps(report.to_dict(), default=str))
        return
    console.print(report.message)
    if report.rows:
        _consistency_tables(report, hourly)


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
