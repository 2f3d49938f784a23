"""Rich renderings of plans, catalogs and history for the CLI. Printing happens only in cli/."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from parity.materialize.batch import MaterializeResult
from parity.registry.catalog import Catalog, Definition, record_of
from parity.registry.datasets import DatasetRecord
from parity.registry.plan import Plan
from parity.registry.store import VersionInfo

LARGE_PLAN = 40
_MARK = {"add": "[green]+[/]", "delete": "[red]-[/]", "update": "[yellow]~[/]"}


def render_plan(console: Console, plan: Plan) -> None:
    if not plan.has_changes:
        console.print(f"No changes: the registry (version {plan.base_version}) matches the repo.")
        return
    if len(plan.changes) > LARGE_PLAN:
        _render_plain_plan(console, plan)
        return
    table = Table(title=f"Plan for project '{plan.project}' against version {plan.base_version}")
    for column in ("", "type", "name", "change"):
        table.add_column(column)
    for change in plan.changes:
        detail = "\n".join(
            ("[red]BREAKING[/] " if f.breaking else "")
            + escape(f"{f.path}: {_short(f.old)} -> {_short(f.new)}")
            for f in change.fields
        )
        table.add_row(_MARK[change.kind], change.object_type, change.name, detail or change.kind)
    console.print(table)
    console.print(f"Plan: {plan.summary()}.")


def _render_plain_plan(console: Console, plan: Plan) -> None:
    """Large plans as plain lines: a rich table of hundreds of rows takes most of a second."""
    lines = [f"Plan for project '{plan.project}' against version {plan.base_version}:"]
    marks = {"add": "+", "delete": "-", "update": "~"}
    for change in plan.changes:
        lines.append(f"  {marks[change.kind]} {change.object_type} {change.name}")
        lines.extend(
            f"      {'BREAKING ' if f.breaking else ''}{f.path}: {_short(f.old)} -> {_short(f.new)}"
            for f in change.fields
        )
    console.print("\n".join(lines), markup=False, highlight=False)
    console.print(f"Plan: {plan.summary()}.")


def render_catalog(console: Console, catalog: Catalog, version: int) -> None:
    console.print(f"Project '{catalog.project}', registry version {version}")
    entities = Table(title="Entities")
    for column in ("name", "join keys", "type", "description"):
        entities.add_column(column)
    for e in sorted(catalog.entities.values(), key=lambda e: e.name):
        entities.add_row(e.name, ", ".join(e.join_keys), str(e.value_type), Text(e.description))
    views = Table(title="Feature views")
    for column in ("name", "entities", "features", "ttl", "online", "source"):
        views.add_column(column)
    for v in sorted(catalog.feature_views.values(), key=lambda v: v.name):
        views.add_row(
            v.name,
            ", ".join(v.entity_names),
            str(len(v.features)),
            _ttl(v.ttl),
            "yes" if v.online else "no",
            Text(v.batch_source.path),
        )
    services = Table(title="Feature services")
    for column in ("name", "features", "views"):
        services.add_column(column)
    for s in sorted(catalog.feature_services.values(), key=lambda s: s.name):
        services.add_row(s.name, str(len(s.refs)), ", ".join(p.view for p in s.features))
    tables = [entities, views, services]
    if catalog.on_demand_feature_views:
        on_demand = Table(title="On-demand feature views")
        for column in ("name", "features", "sources", "request fields", "function"):
            on_demand.add_column(column)
        for o in sorted(catalog.on_demand_feature_views.values(), key=lambda o: o.name):
            on_demand.add_row(
                o.name,
                ", ".join(o.feature_names),
                escape(
                    ", ".join(
                        f"{v}[{', '.join(o.source_features[v])}]" if v in o.source_features else v
                        for v in o.sources
                    )
                ),
                ", ".join(o.request_fields),
                f"{o.function} ({o.mode} mode)",
            )
        tables.append(on_demand)
    if catalog.monitors:
        monitors = Table(title="Monitors")
        for column in ("name", "model", "window", "labels", "alerts"):
            monitors.add_column(column)
        for m in sorted(catalog.monitors.values(), key=lambda m: m.name):
            labels = "-" if m.labels is None else escape(m.labels.path or "SQL query")
            monitors.add_row(m.name, m.model, str(m.window), labels, str(len(m.alerts)))
        tables.append(monitors)
    for table in tables:
        console.print(table)


def render_definition(console: Console, item: Definition, version: int) -> None:
    console.print(f"{item.kind} '{item.name}' at registry version {version}")
    console.print_json(json.dumps(record_of(item)))


def render_history(console: Console, history: list[VersionInfo]) -> None:
    table = Table(title="Registry history")
    for column in ("version", "committed at (UTC)", "author", "message", "changes"):
        table.add_column(column)
    for info in history:
        counts = {
            k: sum(1 for c in info.changes if c.kind == k) for k in ("add", "update", "delete")
        }
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "none"
        when = info.committed_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(info.version), when, Text(info.author), Text(info.message), summary)
    console.print(table)


ViewProgress = Callable[[str, str, int, int | None], None]


@contextmanager
def view_progress(console: Console) -> Iterator[ViewProgress]:
    """One progress bar per view, as `materialize(progress=...)` reports it: a pulse and a count
    while the total is unknown, a moving bar once it is known, full when the view is done."""
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description:<24}"),
        BarColumn(),
        TextColumn("{task.fields[count]:>22}"),
        TimeElapsedColumn(),
    )
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console) as bars:

        def update(view: str, what: str, done: int, total: int | None) -> None:
            task = tasks.get(view)
            if task is None:
                tasks[view] = task = bars.add_task(view, total=None, count="")
            if what == "done":
                bars.update(task, total=max(done, 1), completed=max(done, 1))
                return
            bars.update(task, total=total, completed=done, count=f"{done:,} {what}")

        yield update


def render_materialized(console: Console, results: list[MaterializeResult]) -> None:
    table = Table(title="Materialized into the online store")
    for column in ("view", "from (UTC)", "to (UTC)", "entities", "tiles"):
        table.add_column(column, justify="right" if column in ("entities", "tiles") else "left")
    for r in results:
        table.add_row(
            r.view,
            f"{r.start:%Y-%m-%d %H:%M:%S}",
            f"{r.end:%Y-%m-%d %H:%M:%S}",
            f"{r.entities:,}",
            f"{r.tiles:,}" if r.tiles else "-",
        )
    console.print(table)


def render_dataset(console: Console, record: DatasetRecord) -> None:
    console.print(f"Dataset '{record.name}' of project '{record.project}'", markup=False)
    rows = [
        ("shape", _shape(record)),
        ("file", record.path),
        ("features", ", ".join(record.feature_refs)),
        ("feature service", record.feature_service or "-"),
        ("registry version", str(record.registry_version)),
        ("fingerprint", f"sha256:{record.fingerprint}"),
        ("entities from", record.entity_source),
        ("created", f"{record.created_at:%Y-%m-%d %H:%M:%S} UTC by {record.author}"),
    ]
    for key, value in rows:
        console.print(f"  {key:<17} {value}", markup=False, highlight=False)


def _shape(record: DatasetRecord) -> str:
    """(rows, columns), reading only the file's footer; the rows alone if the file is gone."""
    import pyarrow.parquet as pq

    try:
        columns = len(pq.read_schema(record.path).names)
    except OSError:
        return f"{record.row_count:,} rows (file missing)"
    return f"{record.row_count:,} rows x {columns} columns"


def render_datasets(console: Console, records: list[DatasetRecord]) -> None:
    table = Table(title="Datasets")
    for column in ("name", "rows", "features", "registry version", "created (UTC)", "fingerprint"):
        table.add_column(column)
    for r in records:
        table.add_row(
            Text(r.name),
            f"{r.row_count:,}",
            str(len(r.feature_refs)),
            str(r.registry_version),
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            r.fingerprint[:12],
        )
    console.print(table)


def _ttl(ttl: timedelta | None) -> str:
    if ttl is None:
        return "none"
    seconds = int(ttl.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(value: object) -> str:
    text = "none" if value is None else json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
