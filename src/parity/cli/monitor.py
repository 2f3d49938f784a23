"""`parity monitor ...`: drift, delayed-label performance, quality, freshness, consistency and
alerts over what the servers logged. Each command reads through `store.monitoring` and prints;
the statistics live in parity.monitoring.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from parity.cli.common import RepoOption, command, console, store_at
from parity.errors import InvalidOption

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

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
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
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in _UNITS or not number.isdigit() or int(number) < 1:
        raise InvalidOption(
            f"--window {text!r}: give a whole number and a unit, e.g. 90s, 30m, 1h, 1d or 2w"
        )
    return timedelta(seconds=int(number) * _UNITS[unit])


def _span(value: timedelta) -> str:
    """A timedelta in the largest unit that divides it: 30d, 6h, 90s."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


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
