"""Time helpers shared by the layers: UTC now, microseconds since the epoch, and the one parser
of time arguments (CLI and Python API). No I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeAlias

from parity.errors import InvalidTime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_CREATED = -(1 << 63)  # µs standing in for a missing created time: ranks below any real one

TimeLike: TypeAlias = datetime | date | str
"""What a time argument accepts: a datetime (naive is UTC), a date (its midnight, UTC), or text:
ISO 8601 (`2026-11-26`, `2026-11-26T12:00:00Z`, `...+01:00`) or `now`."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: object, argument: str, *, now: Callable[[], datetime] = utcnow) -> datetime:
    """`value` as an aware UTC-comparable datetime, or InvalidTime naming `argument`.

    Naive times are UTC (Parity's rule everywhere); `now` is read from the injected clock.
    Numbers are refused: an epoch integer is ambiguous (seconds? ms?) and is never guessed."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == "now":
            return now()
        try:
            return parse_time(datetime.fromisoformat(text), argument)
        except ValueError:
            pass
    raise InvalidTime(_advice(value, argument))


def _advice(value: object, argument: str) -> str:
    example = "such as 2026-11-26, 2026-11-26T12:00:00Z or now"
    shown = repr(value) if not isinstance(value, str) else f"'{value}'"
    if len(shown) > 80:  # a huge value is not echoed back whole
        shown = f"{shown[:60]}... ({len(shown)} characters)"
    if (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, str) and _numeric(value)
    ):
        return (
            f"{argument}: {shown} looks like an epoch number, which Parity does not guess (seconds "
            f"or milliseconds?); give an ISO 8601 time {example}"
        )
    return f"{argument}: {shown} is not a time; give an ISO 8601 time {example}"


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_micros(moment: datetime) -> int:
    """µs since the epoch, UTC; a naive datetime is read as UTC (Parity's rule everywhere)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


# Durations as the CLI (and the HTTP APIs mirroring it) write them: a whole number and a unit.
SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SPAN_EXAMPLES = "90s, 30m, 1h, 1d or 2w"
_MAX_SPAN_SECONDS = 100 * 365 * 86400  # a century: anything longer is a typo


def sortable_text(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds (naive read as UTC): one fixed width, so text order is time
    order where a database keeps times as text."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def from_sortable_text(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def parse_span(text: str) -> timedelta | None:
    """'90s', '30m', '1h', '1d', '2w' (also '0s') as a timedelta; None when `text` is not one."""
    text = text.strip()
    number, unit = text[:-1], text[-1:].lower()
    if unit not in SPAN_UNITS or not number.isascii() or not number.isdigit():
        return None
    seconds = int(number) * SPAN_UNITS[unit]
    return timedelta(seconds=seconds) if seconds <= _MAX_SPAN_SECONDS else None


def format_span(value: timedelta) -> str:
    """A timedelta in the largest unit that divides it: 30d, 6h, 90s."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % SPAN_UNITS[unit] == 0:
            return f"{seconds // SPAN_UNITS[unit]}{unit}"
    return f"{seconds}s"
