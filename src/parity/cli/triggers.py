"""`parity triggers history | request | status`: retrain decisions with their evidence; and the
bodies of `parity monitor evaluate | run` (cli/monitor.py registers them): one pass of the
monitors and the triggers, printed."""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.common import RepoOption, command, console, store_at
from parity.errors import InvalidOption

if TYPE_CHECKING:
    from parity.deploy.retrain import Tick
    from parity.deploy.retrain_state import RetrainDecision
    from parity.feature_store import FeatureStore

triggers_app = typer.Typer(
    help="Retrain triggers: each decision to retrain or not, with its evidence (docs/lifecycle.md)."
)


def decision_json(decision: RetrainDecision) -> dict[str, Any]:
    found = asdict(decision)
    found["at"] = decision.at.isoformat()
    found["reasons"] = list(decision.reasons)
    return found


def decisions_table(decisions: Sequence[RetrainDecision], title: str | None = None) -> Table:
    table = Table("id", "at", "model", "action", "job", "signals", "reasons", title=title)
    colour = {"fire": "green", "suppress": "yellow", "hold": "dim"}
    for d in decisions:
        table.add_row(
            "-" if d.id is None else str(d.id),
            d.at.isoformat(timespec="minutes"),
            d.model,
            f"[{colour.get(d.action, 'white')}]{d.action}[/]",
            "-" if d.job_id is None else f"#{d.job_id}",
            escape(_signals(d.signals)),
            escape("; ".join(d.reasons)),
        )
    return table


def _signals(evidence: dict[str, Any]) -> str:
    """drift and performance values with their state, compactly: `drift 0.62 firing`."""
    parts = []
    for name in ("drift", "performance"):
        entry = evidence.get(name)
        if not isinstance(entry, dict) or not entry.get("enabled", True):
            continue
        value = entry.get("value")
        shown = "n/a" if value is None else f"{value:.3g}"
        state = "firing" if entry.get("firing") else f"{entry.get('streak', 0)}/{entry['sustain']}"
        parts.append(f"{name} {shown} {state}")
    schedule = evidence.get("schedule")
    if isinstance(schedule, dict) and schedule.get("due"):
        parts.append("schedule due")
    if evidence.get("manual"):
        parts.append("manual")
    return ", ".join(parts) or "-"


@triggers_app.command("history")
@command
def triggers_history(
    model: Annotated[str | None, typer.Argument(help="Only this model's decisions.")] = None,
    repo: RepoOption = Path("."),
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (with the evidence).")
    ] = False,
) -> None:
    """Recorded retrain decisions, newest first: fire (a job was queued), suppress (a signal
    asked but a rule held it back, with the rule) and holds that changed a signal's state."""
    decisions = store_at(repo).triggers.history(model, limit=limit)
    if as_json:
        console.print_json(json.dumps([decision_json(d) for d in decisions], default=str))
        return
    if not decisions:
        console.print("no retrain decision recorded yet (run 'parity monitor evaluate')")
        return
    console.print(decisions_table(decisions))


@triggers_app.command("request")
@command
def triggers_request(
    model: Annotated[str, typer.Argument(help="The model to retrain.")],
    repo: RepoOption = Path("."),
    reason: Annotated[str, typer.Option(help="Why (kept with the decision).")] = "manual",
) -> None:
    """Ask for a retrain of MODEL: the next evaluation fires it, past the cooldown but within
    the caps (a retrain already active for the model, or the overall cap, defers it)."""
    store = store_at(repo)
    store.triggers.request(model, reason=reason)
    console.print(
        f"retrain of '{escape(model)}' requested; the next 'parity monitor evaluate' decides"
    )


@triggers_app.command("status")
@command
def triggers_status(
    repo: RepoOption = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per policy: its signals' states, the last retrain, a pending request or deferred fire."""
    rows = store_at(repo).triggers.status()
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table("policy", "model", "job", "drift", "performance", "last retrain", "pending")
    for row in rows:
        table.add_row(
            row["policy"],
            row["model"],
            row["job"],
            row["drift"],
            row["performance"],
            row["last_retrain"] or "-",
            escape(row["pending"] or "-"),
        )
    console.print(table)


# --- parity monitor evaluate | run ---------------------------------------------------------------


def store_with_clock(repo: Path, now: str | None) -> FeatureStore:
    """The repo's store; with `now`, one whose clock stands at that time (a replayed pass)."""
    from parity.feature_store import FeatureStore
    from parity.timeutil import parse_time

    if now is None:
        return store_at(repo)
    moment = parse_time(now, "--now")
    return FeatureStore(repo, clock=lambda: moment)


def print_tick(done: Tick, as_json: bool) -> None:
    if as_json:
        shown = {
            "at": done.at.isoformat(),
            "monitors": list(done.monitors),
            "decisions": [decision_json(d) for d in done.decisions],
        }
        console.print_json(json.dumps(shown, default=str))
        return
    console.print(f"[bold]pass at {done.at.isoformat()}[/]")
    for line in done.monitors:
        console.print(f"  {escape(line)}")
    if not done.monitors:
        console.print("  no monitor applied")
    if done.decisions:
        console.print(decisions_table(done.decisions, title="retrain decisions"))
    else:
        console.print("  no retrain policy applied")


def evaluate_once(repo: Path, now: str | None, as_json: bool) -> None:
    store = store_with_clock(repo, now)
    print_tick(store.triggers.tick(), as_json)


def run_loop(repo: Path, interval: str, count: int | None) -> None:
    from parity.timeutil import SPAN_EXAMPLES, parse_span

    span = parse_span(interval)
    if span is None or span.total_seconds() < 1:
        raise InvalidOption(
            f"--interval {interval!r}: give a whole number and a unit of at least 1s, e.g. "
            f"{SPAN_EXAMPLES}"
        )

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # a process manager's stop ends as Ctrl-C: the lease released

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        store_at(repo).triggers.run(
            interval=span.total_seconds(),
            passes=count,
            on_tick=lambda done: print_tick(done, False),
        )
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
