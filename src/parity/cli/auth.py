"""`parity auth token create | list | revoke` and `parity audit`: API tokens (the text printed once,
alone on stdout) and the audit trail of every write. The work is `store.access`'s; the render
functions at the bottom are pure (values in, text and tables out).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.common import RepoOption, command, console, err, store_at
from parity.errors import InvalidOption, TokenError
from parity.serving.auth.scopes import SCOPES
from parity.timeutil import parse_span, parse_time, sortable_text

if TYPE_CHECKING:
    from parity.registry.audit import AuditRecord
    from parity.serving.auth.tokens import TokenRecord

auth_app = typer.Typer(help="Access control: API tokens for the servers (docs/security.md).")
token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.")
auth_app.add_typer(token_app, name="token")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
_SCOPE_HELP = "; ".join(f"{name}: {what}" for name, what in SCOPES.items())


@token_app.command("create")
@command
def token_create(
    name: Annotated[str, typer.Option("--name", help="A name for the token (e.g. ci-bot).")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            help="Space-separated scopes, narrowed to names with ':' "
            f"(e.g. 'features:read models:predict:fraud'). {_SCOPE_HELP}.",
        ),
    ],
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Expire after 30d, 12h, 90m, 1w... (default: never)."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="Requests per second (default: auth.limits in parity.yaml)."),
    ] = None,
    burst: Annotated[
        str | None, typer.Option("--burst", help="Requests at once above --rate (bucket size).")
    ] = None,
    max_in_flight: Annotated[
        str | None, typer.Option("--max-in-flight", help="Requests in flight per server process.")
    ] = None,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Create a token. Its text is printed once, alone on stdout (only its hash is kept), so
    `TOKEN=$(parity auth token create ...)` captures it; the summary goes to stderr."""
    tokens = store_at(repo).access.tokens
    try:
        record, text = tokens.create(
            name,
            scopes,
            expires_in=expires,
            rate_per_second=None if rate is None else _number(rate, "--rate"),
            burst=None if burst is None else _whole(burst, "--burst"),
            max_in_flight=None
            if max_in_flight is None
            else _whole(max_in_flight, "--max-in-flight"),
        )
    except TokenError as error:  # name the option: `--scopes: ...`, `--expires '0d': ...`
        raise TokenError(_as_option(error.message)) from None
    if as_json:
        typer.echo(json.dumps({"token": token_json(record), "text": text}, sort_keys=True))
        return
    err.print(escape(created_line(record)), soft_wrap=True)
    typer.echo(text)
    err.print(
        "This is the only time the token is shown: store it now (only its hash is kept). "
        "Send it as 'Authorization: Bearer <token>'.",
        soft_wrap=True,
    )


@token_app.command("list")
@command
def token_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="Revoked tokens too.")] = False,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """The project's tokens (never their text): id, name, scopes, created, expires, revoked,
    last used."""
    records = store_at(repo).access.tokens.list(include_revoked=include_revoked)
    if as_json:
        typer.echo(json.dumps({"tokens": [token_json(r) for r in records]}, sort_keys=True))
        return
    if not records:
        console.print("No tokens." if include_revoked else "No live tokens (--all shows revoked).")
        return
    console.print(tokens_table(records))


@token_app.command("revoke")
@command
def token_revoke(
    name_or_id: Annotated[str, typer.Argument(help="The token's name or id.")],
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Revoke a token: every server refuses it within auth.cache_seconds."""
    store = store_at(repo)
    record = store.access.tokens.revoke(name_or_id)
    if as_json:
        typer.echo(json.dumps({"token": token_json(record)}, sort_keys=True))
        return
    console.print(
        escape(
            f"Revoked token '{record.name}' (id {record.id}): servers refuse it within "
            f"{store.config.auth.cache_seconds:g} s (auth.cache_seconds)."
        ),
        soft_wrap=True,
    )


@command
def audit(
    since: Annotated[
        str | None,
        typer.Option("--since", help="From this time (ISO 8601, 'now') or this long ago (1h, 7d)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this time, or this long ago.")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor's.")] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="An action (models.alias) or a prefix (models, rollouts)."),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Only writes to this (model, source...).")
    ] = None,
    limit: Annotated[str, typer.Option("--limit", help="At most this many, newest first.")] = "100",
    as_json: JsonOption = False,
    as_jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON line per record, as logged.")
    ] = False,
    repo: RepoOption = Path("."),
) -> None:
    """The audit trail: who wrote what, when and from where (apply, push, models, rollouts,
    tokens), newest first."""
    if as_json and as_jsonl:
        raise InvalidOption("--json and --jsonl both given: choose one")
    store = store_at(repo)
    now = store.now()
    records = store.access.audit.query(
        since=None if since is None else _moment(since, "--since", now),
        until=None if until is None else _moment(until, "--until", now),
        actor=actor,
        action=action,
        target=target,
        limit=_whole(limit, "--limit"),
    )
    if as_jsonl:
        for record in records:
            typer.echo(json.dumps(record.to_json(), sort_keys=True))
    elif as_json:
        typer.echo(json.dumps({"records": [r.to_json() for r in records]}, sort_keys=True))
    elif not records:
        console.print("No audit records match.")
    else:
        console.print(audit_table(records))


# --- option parsing: every bad value is one error naming the option ---------------------------


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidOption(f"{option} {text!r}: give a number above 0, e.g. 100")
    return value


def _whole(text: str, option: str) -> int:
    value = text.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 9 or int(value) < 1:
        raise InvalidOption(f"{option} {text!r}: give a whole number of at least 1")
    return int(value)


def _moment(text: str, option: str, now: datetime) -> datetime:
    ago = parse_span(text)
    return now - ago if ago is not None else parse_time(text, option, now=lambda: now)


def _as_option(message: str) -> str:
    field = message.split(" ", 1)[0].rstrip(":")
    return f"--{message}" if field in ("name", "scopes", "expires") else message


# --- rendering (pure) ---------------------------------------------------------------------------


def _when(moment: datetime | None, none: str = "") -> str:
    return none if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else sortable_text(moment)


def token_json(record: TokenRecord) -> dict[str, Any]:
    """A token's record as JSON (never its text: the record does not hold it)."""
    return {
        "id": record.id,
        "name": record.name,
        "scopes": record.scopes,
        "created_at": _iso(record.created_at),
        "created_by": record.created_by,
        "expires_at": _iso(record.expires_at),
        "revoked_at": _iso(record.revoked_at),
        "revoked_by": record.revoked_by,
        "rate_per_second": record.rate_per_second,
        "burst": record.burst,
        "max_in_flight": record.max_in_flight,
        "last_used_at": _iso(record.last_used_at),
    }


def created_line(record: TokenRecord) -> str:
    expiry = f"expires {_when(record.expires_at)} UTC" if record.expires_at else "never expires"
    return f"Created token '{record.name}' (id {record.id}) with scopes {record.scopes}; {expiry}."


def _limits(record: TokenRecord) -> str:
    parts = [
        f"{record.rate_per_second:g}/s" if record.rate_per_second is not None else "",
        f"burst {record.burst}" if record.burst is not None else "",
        f"{record.max_in_flight} in flight" if record.max_in_flight is not None else "",
    ]
    return ", ".join(p for p in parts if p) or "defaults"


def tokens_table(records: Sequence[TokenRecord]) -> Table:
    table = Table("id", "name", "scopes", "created", "expires", "revoked", "last used", "limits")
    for r in records:
        revoked = f"{_when(r.revoked_at)} by {r.revoked_by}" if r.revoked_at else ""
        table.add_row(
            r.id,
            escape(r.name),
            escape(r.scopes),
            escape(f"{_when(r.created_at)} by {r.created_by}"),
            _when(r.expires_at, "never"),
            escape(revoked),
            _when(r.last_used_at, "never"),
            _limits(r),
        )
    return table


def audit_table(records: Sequence[AuditRecord]) -> Table:
    table = Table("at (UTC)", "actor", "from", "action", "target", "detail")
    for r in records:
        detail = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(r.detail.items()))
        table.add_row(
            _when(r.at),
            escape(f"{r.actor.name} ({r.actor.kind})"),
            escape(r.actor.origin),
            escape(r.action),
            escape(r.target),
            escape(detail),
        )
    return table
