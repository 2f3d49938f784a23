"""`parity jobs run | list | status | cancel`: durable training jobs and their runner. Parses,
calls `store.jobs` (parity.jobs.service) and prints; the logic lives in the jobs layer."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.common import RepoOption, command, console, err, store_at
from parity.errors import InvalidOption, ParityError

if TYPE_CHECKING:
    from parity.jobs.state import JobRecord, JobStatus

jobs_app = typer.Typer(
    help="Training jobs: run, list, inspect and cancel durable jobs (docs/lifecycle.md)."
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
_COLOR = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


@jobs_app.command("run")
@command
def jobs_run(
    name: Annotated[
        str | None,
        typer.Argument(help="Training job to submit and run now (default: run queued jobs)."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="With NAME: wait for a free slot of the cap."),
    ] = True,
    loop: Annotated[
        bool, typer.Option("--loop", help="Without NAME: keep running queued jobs until Ctrl-C.")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the record).")] = "manual",
    repo: RepoOption = Path("."),
) -> None:
    """With NAME: queue a run of that training job and run it in this process, printing its
    outcome (exit 1 when it fails). Without: one runner pass over the queued jobs, or --loop."""
    jobs = store_at(repo).jobs
    if name is not None:
        if loop:
            raise InvalidOption("--loop runs the queue: give it without a job NAME")
        record = jobs.submit(name, reason=reason)
        err.print(f"Job {record.id} queued ({record.name}); running it.")
        try:
            final = jobs.run_job(record.id, wait=wait)
        except KeyboardInterrupt:
            _interrupted(jobs, record.id)
            # the abandoned fit may be inside native code (DuckDB, a C++ fit): a normal exit
            # would end its thread there and abort the process (SIGABRT) instead of exiting 130
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        _outcome(final)
        if final.status == "queued":
            err.print("The concurrency cap is full: the job stays queued for a runner.")
        if final.status in ("failed", "cancelled"):
            err.print(f"Its logs: parity jobs status {final.id} --logs")
            raise typer.Exit(1)
        return
    if loop:
        _run_loop(jobs)
        return
    finished = jobs.run_pending()
    if not finished:
        console.print("No job was due.")
    for record in finished:
        _outcome(record)
    if any(record.status == "failed" for record in finished):
        raise typer.Exit(1)


def _interrupted(jobs: Any, job_id: int) -> None:
    """Ctrl-C of `parity jobs run NAME`: cancel its job, which would otherwise stay running until
    stale and then be retried by some runner (registering what the user stopped)."""
    try:
        jobs.cancel(job_id)
    except ParityError as error:
        err.print(f"Interrupted; job {job_id} could not be cancelled: {escape(error.message)}")
        return
    err.print(f"Interrupted: job {job_id} cancelled; nothing was registered.")


def _run_loop(jobs: Any) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    err.print("Job runner running; Ctrl-C stops it.")
    try:
        jobs.run(until=stop.is_set, on_finish=_outcome)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    err.print("Job runner stopped.")


@jobs_app.command("list")
@command
def jobs_list(
    status: Annotated[
        str | None,
        typer.Option("--status", help=f"Only jobs in this status ({', '.join(_STATUSES)})."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only jobs of this model.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Jobs, newest first."""
    if status is not None and status not in _STATUSES:
        raise InvalidOption(f"--status {status!r}: give one of {', '.join(_STATUSES)}")
    records = store_at(repo).jobs.list(
        status=cast("JobStatus | None", status), model=model, limit=limit
    )
    if as_json:
        typer.echo(json.dumps({"jobs": [job_json(r, logs=False) for r in records]}, sort_keys=True))
        return
    if not records:
        console.print("No jobs.")
        return
    table = Table("id", "job", "model", "status", "attempt", "reason", "created", "took", "outcome")
    for record in records:
        table.add_row(
            str(record.id),
            escape(record.name),
            escape(record.model or ""),
            _status(record),
            f"{record.attempt}/{record.max_attempts}",
            escape(record.reason),
            _when(record.created_at),
            _took(record),
            escape(_short(record)),
        )
    console.print(table)


@jobs_app.command("status")
@command
def jobs_status(
    job_id: Annotated[int, typer.Argument(help="Job id (see parity jobs list).")],
    logs: Annotated[bool, typer.Option("--logs", help="Print the job's logs too.")] = False,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """One job: status, timing, its result or error (and its logs with --logs)."""
    record = store_at(repo).jobs.get(job_id)
    if as_json:
        typer.echo(json.dumps({"job": job_json(record, logs=logs)}, sort_keys=True))
        return
    _outcome(record)
    rows = [
        ("reason", record.reason),
        ("attempt", f"{record.attempt} of {record.max_attempts}"),
        ("created", _when(record.created_at)),
        ("due", _when(record.not_before)),
        ("started", _when(record.started_at)),
        ("finished", _when(record.finished_at)),
        ("heartbeat", _when(record.heartbeat_at)),
        ("runner", record.runner or ""),
        ("stage", record.stage or ""),
        ("retry of", "" if record.retry_of is None else str(record.retry_of)),
        (
            "trigger decision",
            "" if record.trigger_decision is None else str(record.trigger_decision),
        ),
    ]
    for key, value in rows:
        if value:
            console.print(f"  {key}: {escape(value)}", soft_wrap=True)
    for key, value in sorted(record.result.items()):
        console.print(f"  result.{key}: {escape(json.dumps(value, default=str))}", soft_wrap=True)
    if logs:
        console.print("--- logs ---")
        console.print(escape(record.logs or "(none)"), soft_wrap=True, markup=False)


@jobs_app.command("cancel")
@command
def jobs_cancel(
    job_id: Annotated[int, typer.Argument(help="Job id (see parity jobs list).")],
    repo: RepoOption = Path("."),
) -> None:
    """Cancel a queued job (it never runs) or a running one (it registers nothing)."""
    record = store_at(repo).jobs.cancel(job_id)
    console.print(f"Job {record.id} ({escape(record.name)}) cancelled.")


# --- rendering ----------------------------------------------------------------------------------


def job_json(record: JobRecord, *, logs: bool) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat()

    data: dict[str, Any] = {
        "id": record.id,
        "project": record.project,
        "kind": record.kind,
        "name": record.name,
        "model": record.model,
        "status": record.status,
        "stage": record.stage,
        "reason": record.reason,
        "attempt": record.attempt,
        "max_attempts": record.max_attempts,
        "created_at": moment(record.created_at),
        "not_before": moment(record.not_before),
        "started_at": moment(record.started_at),
        "finished_at": moment(record.finished_at),
        "heartbeat_at": moment(record.heartbeat_at),
        "seconds": record.seconds,
        "runner": record.runner,
        "error": record.error,
        "spec": record.spec,
        "result": record.result,
        "trigger_decision": record.trigger_decision,
        "retry_of": record.retry_of,
    }
    if logs:
        data["logs"] = record.logs
    return data


def _outcome(record: JobRecord) -> None:
    line = f"Job {record.id} ({escape(record.name)}): {_status(record)}"
    took = _took(record)
    if took:
        line += f" in {took}"
    short = _short(record)
    if short:
        line += f": {escape(short)}"
    console.print(line, soft_wrap=True)


def _short(record: JobRecord) -> str:
    result = record.result
    if record.status == "succeeded" and "version" in result:
        text = f"registered {result.get('model')}/{result['version']} as @{result.get('alias')}"
        if "rollout" in result:
            text += f", rollout {result['rollout']} started"
        if "rollout_error" in result:
            text += f"; rollout not started: {result['rollout_error']}"
        profile = result.get("reference_profile") or {}
        missing = sorted(subject for subject, state in profile.items() if state != "ok")
        if missing:
            text += f"; reference profile missing for {', '.join(missing)} (see its logs)"
        return text
    text = record.error or ""
    if "retry" in result:
        text += f" (retry: job {result['retry']})"
    return text


def _status(record: JobRecord) -> str:
    return f"[{_COLOR.get(record.status, 'white')}]{record.status}[/]"


def _took(record: JobRecord) -> str:
    seconds = record.seconds
    return "" if seconds is None else f"{seconds:.1f}s"


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
