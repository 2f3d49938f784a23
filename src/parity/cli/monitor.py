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
