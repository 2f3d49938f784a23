"""`parity predict batch | stream`: the serving patterns besides request/response. `batch` is
here; `stream` is in cli/predict_stream.py and registers itself on `predict_app`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from parity.cli.common import RepoOption, command, console, err, store_at

if TYPE_CHECKING:
    from parity.jobs.batch_predict import BatchPredictionResult

predict_app = typer.Typer(help="Batch and streaming predictions (docs/lifecycle.md).")


@predict_app.command("batch")
@command
def predict_batch(
    model: Annotated[
        str, typer.Option(help="Model ref: name@alias, name/VERSION or name (the latest).")
    ],
    entities: Annotated[
        str,
        typer.Option(
            help="Entity rows: a Parquet file/glob or a SQL query (SELECT ...), with the entity "
            "keys, the model's request-time inputs and event_timestamp (or --as-of)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Parquet file to write the scores to.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Score every row as of this time (ISO 8601 or 'now'); the entities must then "
            "have no event_timestamp column.",
        ),
    ] = None,
    to_online: Annotated[
        str | None,
        typer.Option(
            "--to-online",
            help="Also write the scores to the online store as this feature view (one whose "
            "FileSource reads --out).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    batch_size: Annotated[
        int | None, typer.Option(help="Entity rows per Arrow batch (default 65,536).")
    ] = None,
    repo: RepoOption = Path("."),
) -> None:
    """Score entities with point-in-time features from the offline store; write Parquet."""
    store = store_at(repo)
    with _progress_bar() as advance:
        result = store.jobs.predict_batch(
            model,
            entities,
            out=str(out),
            as_of=as_of,
            to_online=to_online,
            progress=advance,
            batch_size=batch_size,
        )
    _render(result, as_json)


@contextmanager
def _progress_bar() -> Iterator[Callable[[int, int | None], None]]:
    """A bar on stderr fed with (rows done, total or None while unknown), gone when done."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.fields[count]:>24}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("scoring", total=None, count="")

        def advance(done: int, total: int | None) -> None:
            bar.update(task, total=total, completed=done, count=f"{done:,} rows")

        yield advance


def _render(result: BatchPredictionResult, as_json: bool) -> None:
    import dataclasses
    import json

    if as_json:
        summary = dataclasses.asdict(result)
        summary["as_of"] = None if result.as_of is None else result.as_of.isoformat()
        console.print_json(json.dumps(summary))
        return
    when = "each row's event_timestamp" if result.as_of is None else result.as_of.isoformat()
    console.print(
        f"Scored {result.rows:,} rows with {result.model}/{result.version} as of {when} in "
        f"{result.seconds:.1f} s -> {result.path}",
        soft_wrap=True,
    )
    if result.rows_without_features:
        err.print(
            f"[yellow]Note[/] {result.rows_without_features:,} rows had no feature values at "
            "their time (every feature null): their scores are the model's answer for missing "
            "features, as the model server's would be",
            soft_wrap=True,
        )
    if result.online_view is not None:
        console.print(
            f"Wrote {result.online_rows:,} entities to online view '{result.online_view}'",
            soft_wrap=True,
        )
