"""`parity monitor ...`: drift, delayed-label performance, quality, freshness, consistency and
alerts over what the servers logged. Each command reads through `store.monitoring` and prints;
the statistics live in parity.monitoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.common import RepoOption, command, console, store_at

if TYPE_CHECKING:
    from parity.monitoring.alert_store import AlertEvent

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
        import json

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
