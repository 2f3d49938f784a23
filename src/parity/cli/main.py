"""`parity` command: init, plan, apply, teardown, registry, dataset, materialize, ingest, serve;
the model commands live in cli/models.py, the rollout commands in cli/rollout.py.

User errors print one line and exit 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from parity.cli import render
from parity.cli.auth import audit, auth_app
from parity.cli.common import (
    ClaimIdleOption,
    ConsumerOption,
    RedisUrlOption,
    RepoOption,
    TlsCertOption,
    TlsKeyOption,
    UntilIdleOption,
    base_url,
    check_port,
    check_tls,
    command,
    console,
    err,
    run_server,
    state,
    store_at,
)
from parity.cli.jobs import jobs_app
from parity.cli.models import models_app, serve_models
from parity.cli.monitor import monitor_app
from parity.cli.predict_stream import predict_app
from parity.cli.rollout import rollout_app
from parity.cli.serve_notes import access_note, open_warning
from parity.cli.triggers import triggers_app
from parity.cli.ui import ui
from parity.errors import BackendNotInstalled, InvalidOption
from parity.timeutil import parse_time

if TYPE_CHECKING:
    pass

app = typer.Typer(
    name="parity",
    help="Parity: feature store and model serving. One definition, one value, never the future.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
registry_app = typer.Typer(help="Read the registry: what is registered, and its history.")
app.add_typer(registry_app, name="registry")
dataset_app = typer.Typer(help="Training sets: build point-in-time-correct datasets, with lineage.")
app.add_typer(dataset_app, name="dataset")
app.add_typer(models_app, name="models")
app.add_typer(monitor_app, name="monitor")
app.add_typer(rollout_app, name="rollout")
app.add_typer(jobs_app, name="jobs")
app.add_typer(triggers_app, name="triggers")
app.add_typer(predict_app, name="predict")
app.command("serve-models")(command(serve_models))
app.add_typer(auth_app, name="auth")
app.command("ui")(ui)
app.command("audit")(audit)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Parity: feature store and model serving."""
    state["debug"] = debug


@app.command()
@command
def init(
    name: Annotated[str, typer.Argument(help="Folder to create; its name is the project name.")],
    accounts: Annotated[int, typer.Option(help="Accounts in the synthetic data.", min=1)] = 1_000,
    days: Annotated[int, typer.Option(help="Days of transactions.", min=1)] = 60,
    seed: Annotated[int, typer.Option(help="Random seed of the data generator.")] = 7,
    no_data: Annotated[bool, typer.Option("--no-data", help="Skip generating data.")] = False,
    data_only: Annotated[
        bool, typer.Option("--data-only", help="Only (re)generate data/ in an existing repo.")
    ] = False,
    end: Annotated[
        str,
        typer.Option(
            help="End of the data's time window: ISO 8601 (UTC if naive) or 'now'. Pass a fixed "
            "time for the same data on every run."
        ),
    ] = "now",
) -> None:
    """Scaffold the fraud-detection example repo, with seeded synthetic data ending now."""
    from parity.examples.fraud.scaffold import scaffold

    until = parse_time(end, "--end").replace(microsecond=0)

    result = scaffold(
        Path(name),
        accounts=accounts,
        days=days,
        seed=seed,
        with_data=not no_data,
        data_only=data_only,
        end=until,
    )
    if result.files:
        console.print(
            f"Created feature repo {result.repo}/ ({', '.join(f.name for f in result.files)})"
        )
    for table, count in result.rows.items():
        console.print(f"  data/{table}.parquet: {count:,} rows")
    if result.rows:
        console.print(f"  the data's {days} days end at {until:%Y-%m-%d %H:%M:%S} UTC")
    if not data_only:
        console.print(f"Next: cd {name} && parity plan && parity apply")


@app.command()
@command
def plan(
    repo: RepoOption = Path("."),
    skip_source_check: Annotated[
        bool, typer.Option(help="Do not read source schemas (e.g. data not generated yet).")
    ] = False,
) -> None:
    """Show what apply would change in the registry (adds, deletes, field-level updates)."""
    the_plan = store_at(repo).plan(check_sources=not skip_source_check)
    render.render_plan(console, the_plan)
    if the_plan.breaking:
        err.print(
            "[yellow]Breaking changes[/]: apply refuses them unless --allow-breaking; "
            "prefer a new feature view version."
        )


@app.command()
@command
def apply(
    repo: RepoOption = Path("."),
    message: Annotated[str, typer.Option("--message", "-m", help="Why; kept in history.")] = "",
    allow_breaking: Annotated[
        bool, typer.Option(help="Commit breaking changes (dtype, join keys, source, ttl).")
    ] = False,
    skip_source_check: Annotated[bool, typer.Option(help="Do not read source schemas.")] = False,
) -> None:
    """Commit the repo's definitions as a new registry version (nothing if unchanged)."""
    author = os.environ.get("PARITY_USER") or None
    result = store_at(repo).apply(
        allow_breaking=allow_breaking,
        message=message,
        author=author,
        check_sources=not skip_source_check,
    )
    render.render_plan(console, result.plan)
    if result.version is not None:
        console.print(f"Applied: registry version {result.version.version}.")


@app.command()
@command
def teardown(
    repo: RepoOption = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove the project and all its registry versions."""
    store = store_at(repo)
    if not yes and not typer.confirm(f"Remove project '{store.project}' from the registry?"):
        raise typer.Exit(1)
    version = store.registry.teardown()
    console.print(f"Removed project '{store.project}' (it was at registry version {version}).")


@registry_app.command("list")
@command
def registry_list(
    repo: RepoOption = Path("."),
    version: Annotated[int | None, typer.Option(help="Registry version (default: latest).")] = None,
) -> None:
    """List registered entities, feature views and feature services."""
    snapshot = store_at(repo).registry.snapshot(version)
    render.render_catalog(console, snapshot.catalog, snapshot.version)


@registry_app.command("describe")
@command
def registry_describe(
    name: Annotated[str, typer.Argument(help="Entity, feature view or feature service name.")],
    repo: RepoOption = Path("."),
    version: Annotated[int | None, typer.Option(help="Registry version (default: latest).")] = None,
) -> None:
    """Show one registered definition as JSON, at the latest or a given version."""
    snapshot = store_at(repo).registry.snapshot(version)
    render.render_definition(console, snapshot.catalog.find(name), snapshot.version)


@registry_app.command("history")
@command
def registry_history(repo: RepoOption = Path(".")) -> None:
    """List every registry version: who applied what, when and why."""
    render.render_history(console, store_at(repo).registry.history())


ViewsOption = Annotated[
    str | None, typer.Option("--views", help="Comma-separated views (default: all online views).")
]


TIMES_HELP = "Times: ISO 8601 (2026-11-26, 2026-11-26T12:00:00Z; UTC if naive) or 'now'."


# Help texts as one line per paragraph: rich keeps a docstring's line breaks after its first
# paragraph, which at 80 columns broke lines mid-sentence.
MATERIALIZE_HELP = (
    "Write to the online store what reads at END need, per online view.\n\n"
    "A view without a ttl gets each entity's newest row up to END, whatever START (so no "
    "entity is lost); a view with a ttl reads from the earlier of START and END - ttl; an "
    "aggregated view gets the tiles its windows read from END to materialize.read_slack (a "
    "day) after it: run again within it, else its longer windows answer OUTSIDE_MAX_AGE.\n\n"
    "END must not be after the store's clock by more than ingest.max_future_skew (use "
    "'now'); this run becomes each view's watermark, where materialize-incremental continues."
)
INCREMENTAL_HELP = (
    "Materialize each view from where its last run ended (else END - ttl, else every row) up "
    "to END.\n\n"
    "An aggregated view rebuilds the tiles used by reads from END to materialize.read_slack (a "
    "day) after it. END must "
    "not be after the store's clock by more than ingest.max_future_skew, nor before a view's "
    "last END (run 'parity materialize START END' over that interval instead)."
)


@app.command(help=MATERIALIZE_HELP, epilog=TIMES_HELP)
@command
def materialize(
    start: Annotated[
        str,
        typer.Argument(help="Start of the interval; it never cuts off a value still valid at END."),
    ],
    end: Annotated[str, typer.Argument(help="End of the interval, e.g. now.")],
    repo: RepoOption = Path("."),
    views: ViewsOption = None,
) -> None:
    names = views.split(",") if views else None
    with render.view_progress(err) as progress:
        results = store_at(repo).materialize(start, end, names, progress=progress)
    render.render_materialized(console, results)


@app.command()
@command
def ingest(
    source: Annotated[str, typer.Option(help="The stream source to consume.")],
    repo: RepoOption = Path("."),
    consumer: ConsumerOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Messages per batch.")] = 1_000,
    redis_url: RedisUrlOption = None,
    until_idle: UntilIdleOption = False,
    claim_idle_ms: ClaimIdleOption = 60_000,
) -> None:
    """Consume a stream source into its aggregated views' tiles (exactly once; see docs)."""
    from parity.ingest.stream import StreamWorker

    store = store_at(repo)
    client = None
    if redis_url:
        from parity.online.redis_store import redis_module

        client = redis_module().Redis.from_url(redis_url)
    # Waiting for new messages ends an --until-idle run: wait briefly.
    block_ms = 100 if until_idle else 1_000
    worker = StreamWorker(
        store,
        source,
        consumer=consumer,
        batch_size=batch_size,
        block_ms=block_ms,
        claim_idle_ms=claim_idle_ms,
        client=client,
    )
    err.print(f"Ingesting stream source '{source}' as consumer '{worker.consumer}'")
    # A batch allocates tens of thousands of short-lived containers without cycles: with the
    # default thresholds the cyclic collector runs every few hundred events and rescans
    # everything alive. Freeze what start-up made and collect young objects rarely.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        while True:
            handled = worker.run_once()
            if until_idle and handled == 0:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if worker.quality is not None:
            worker.quality.flush()  # this run's quality counts (as StreamWorker.run on exit)
    stats = worker.stats
    err.print(
        f"applied {stats.applied} events in {stats.batches} batches; dropped {stats.late} late, "
        f"{stats.future} too far in the future and {stats.invalid} invalid; "
        f"{stats.replayed} already applied"
    )


@app.command("materialize-incremental", help=INCREMENTAL_HELP, epilog=TIMES_HELP)
@command
def materialize_incremental(
    end: Annotated[str, typer.Argument(help="Materialize up to this time, e.g. now.")],
    repo: RepoOption = Path("."),
    views: ViewsOption = None,
) -> None:
    names = views.split(",") if views else None
    with render.view_progress(err) as progress:
        results = store_at(repo).materialize_incremental(end, names, progress=progress)
    render.render_materialized(console, results)


@app.command()
@command
def serve(
    repo: RepoOption = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 6566,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (one per core is a good start).")
    ] = 1,
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="Requests in flight per worker before answering 503.")
    ] = 256,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body accepted; larger ones get 413.")
    ] = 1 << 20,
    enable_push: Annotated[
        bool,
        typer.Option(
            "--enable-push",
            help="Accept POST /push (writes online and training data) with auth off: only "
            "where trusted clients alone reach the port. Off: /push answers 403. With auth on "
            "(parity.yaml) it is not needed: tokens with features:push may push.",
        ),
    ] = False,
    with_ui: Annotated[
        bool,
        typer.Option(
            "--ui",
            help="Also serve the web UI under /ui on the same port (docs/ui.md; one worker "
            "only: its background scans live in the process). `parity ui` serves it alone.",
        ),
    ] = False,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Serve online features over HTTP (Feast-compatible /get-online-features, /push)."""
    try:
        from parity.serving import app as serving
    except ModuleNotFoundError as error:
        raise BackendNotInstalled(
            f"the feature server needs {error.name}: pip install 'parity[serve]'"
        ) from None
    if with_ui and workers > 1:
        raise InvalidOption(
            "--ui: the UI runs in one process (its scans and their progress live there); "
            "drop --workers, or run `parity ui` beside `parity serve --workers N`"
        )
    tls = check_tls(tls_cert, tls_key)
    check_port(host, port)
    store = store_at(repo)
    secured = store.config.auth.enabled
    err.print(
        f"Serving project '{store.project}' on {base_url(host, port, tls)} "
        f"({workers} worker{'s' if workers > 1 else ''}; {access_note(secured, enable_push)})",
        soft_wrap=True,  # one line whatever the terminal's width
    )
    warning = open_warning(secured, host, port)
    if warning is not None:
        err.print(warning, style="bold yellow", markup=False, soft_wrap=True)
    os.environ.update(
        PARITY_SERVE_REPO=str(store.repo_path),
        PARITY_SERVE_MAX_IN_FLIGHT=str(max_in_flight),
        PARITY_SERVE_MAX_BODY_BYTES=str(max_body_bytes),
        PARITY_SERVE_ENABLE_PUSH="1" if enable_push else "0",
    )
    if with_ui:
        err.print(f"  web UI: {base_url(host, port, tls)}/ui/", soft_wrap=True, markup=False)
    store.close()
    factory: Callable[[], object] = serving.app_from_environment
    if with_ui:
        from parity.ui.server import features_with_ui_from_environment

        factory = features_with_ui_from_environment
    run_server(factory, host=host, port=port, workers=workers, tls=tls)


@dataset_app.command("create")
@command
def dataset_create(
    entities: Annotated[
        str, typer.Option(help="Entity frame: a Parquet file/glob, or a SQL query (SELECT ...).")
    ],
    features: Annotated[
        str, typer.Option(help="A feature service name, or comma-separated 'view:feature' refs.")
    ],
    out: Annotated[Path, typer.Option(help="Parquet file to write.")],
    name: Annotated[
        str | None, typer.Option(help="Dataset name in the registry (default: the file's stem).")
    ] = None,
    repo: RepoOption = Path("."),
    full_feature_names: Annotated[bool, typer.Option(help="Name columns 'view__feature'.")] = False,
    timestamp_column: Annotated[
        str, typer.Option(help="The entity frame's timestamp column.")
    ] = "event_timestamp",
) -> None:
    """Build a point-in-time-correct training set and record it in the registry."""
    from rich.progress import Progress

    store = store_at(repo)
    wanted: str | list[str] = features if ":" not in features else features.split(",")
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("building training set", total=1.0)
        record = store.datasets.create(
            name or out.stem,
            entities,
            wanted,
            out,
            full_feature_names=full_feature_names,
            event_timestamp_column=timestamp_column,
            author=os.environ.get("PARITY_USER") or None,
            progress=lambda done: bar.update(task, completed=done),
        )
    render.render_dataset(console, record)


@dataset_app.command("list")
@command
def dataset_list(repo: RepoOption = Path(".")) -> None:
    """List the training sets recorded in the registry."""
    render.render_datasets(console, store_at(repo).datasets.list())


@dataset_app.command("describe")
@command
def dataset_describe(
    name: Annotated[str, typer.Argument(help="Dataset name.")], repo: RepoOption = Path(".")
) -> None:
    """Show a training set's lineage: refs, registry version, rows, fingerprint, file."""
    render.render_dataset(console, store_at(repo).datasets.get(name))


@app.command()
def version() -> None:
    """Print the installed Parity version."""
    from parity import __version__

    console.print(f"parity {__version__}")


def run() -> None:
    app()


if __name__ == "__main__":
    run()
