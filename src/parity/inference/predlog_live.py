"""The prediction log's newest rows, not yet rotated into Parquet: the complete lines of live
segments (predlog_segment's format), read without their lock, and the SQL that turns them into the
log's columns, for readers that must not lag a rotation behind (rollout gates). Must not import
serving or deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from parity.errors import PredictionLogUnreadable
from parity.inference.predlog_segment import FIRST_US, LAST_US, final_name

if TYPE_CHECKING:
    import pyarrow as pa

_INT = "(regexp_full_match({x}, '-?[0-9]+') AND TRY_CAST({x} AS BIGINT) IS NOT NULL)"
_TEXT = "starts_with({x}, '\"')"  # an element's JSON text: a string starts with its quote
_TEXT_OR_NULL = "(coalesce({x}, 'null') = 'null' OR starts_with({x}, '\"'))"  # absent: null
_FLOAT = "(NOT regexp_full_match({x}, '-?[0-9]+') AND TRY_CAST({x} AS DOUBLE) IS NOT NULL)"
_NUMBER_OR_NULL = f"({{x}} = 'null' OR {_INT} OR {_FLOAT})"
# what each position of a line must hold, as `encode_lines` writes it (`_valid` in Python); the
# 11th (role) may be absent (lines written before it), a 12th must be
_TYPES: tuple[str, ...] = (_TEXT, _INT, _TEXT, _INT, _TEXT_OR_NULL, _TEXT, _TEXT, _TEXT)
_TYPES += (_NUMBER_OR_NULL, _TEXT, _TEXT_OR_NULL, "{x} IS NULL")
_NAMES: tuple[str, ...] = ("request_id", "event_timestamp", "model", "version", "alias")
_NAMES += ("entities", "features", "prediction", "latency_ms", "status", "role")


def live_lines(segment: Path) -> pa.Array:
    """The complete lines of a segment being written, newline included, over the bytes read
    (no lock taken): a line being appended right now has no newline yet and is left out.
    FileNotFoundError when the segment was converted (or removed) meanwhile."""
    import numpy as np
    import pyarrow as pa

    data = segment.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n")) + 1
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), ends.astype(np.int64)])
    lines = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:  # a torn multi-byte character: keep the lines that are text
        return pa.array(_texts(data.split(b"\n")[:-1]), pa.large_string())
    return lines


def _texts(lines: Sequence[bytes]) -> list[str]:
    kept = []
    for line in lines:
        try:
            kept.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return kept


def unrotated(segments: Sequence[Path], files: list[str]) -> tuple[list[str], pa.Array | None]:
    """`files` (complete Parquet files, listed after `segments`) and the lines of the segments not
    yet converted (None: none), each row once: a segment whose Parquet file is in `files` was
    converted between the two listings and is skipped; one converted since adds its file."""
    import pyarrow as pa

    listed, files, found = set(files), list(files), []
    for segment in segments:
        final = final_name(segment)
        if str(final) in listed:
            continue
        try:
            found.append(live_lines(segment))
        except FileNotFoundError:  # converted since (its Parquet file is renamed in first)
            if final.exists():
                files.append(str(final))
        except OSError as error:
            raise PredictionLogUnreadable(
                f"the prediction log segment {segment} could not be read: {error}; check the "
                "log folder's permissions"
            ) from error
    chunks = [lines for lines in found if len(lines)]
    return files, (pa.chunked_array(chunks).combine_chunks() if chunks else None)


def lines_sql(relation: str) -> str:
    """A DuckDB query (pure text) over the `line` column of `relation`: the rows of its lines as
    the log schema's columns (the time in UTC). A line that is not a row (torn, not JSON, wrong
    types or length) is left out, as recovery leaves it; no line makes the query fail. Each line
    is parsed once; its elements are checked on their JSON text."""
    paths = ", ".join(f"'$[{i}]'" for i in range(len(_TYPES)))
    checks = [t.format(x=f"j[{i + 1}]::VARCHAR") for i, t in enumerate(_TYPES)]
    micros = "TRY_CAST(j[2]::VARCHAR AS BIGINT)"
    columns = [f"j[{i + 1}] ->> '$' AS {name}" for i, name in enumerate(_NAMES)]
    columns[1] = (
        f"CASE WHEN {micros} BETWEEN {FIRST_US} AND {LAST_US} "
        f"THEN make_timestamptz({micros}) END AS event_timestamp"
    )
    columns[3] = "TRY_CAST(j[4]::VARCHAR AS BIGINT) AS version"
    columns[8] = "TRY_CAST(j[9]::VARCHAR AS DOUBLE) AS latency_ms"
    return (
        f"SELECT {', '.join(columns)} FROM (SELECT CASE WHEN json_valid(line) "
        f"THEN json_extract(line, [{paths}]) END AS j FROM {relation}) "
        f"WHERE {' AND '.join(checks)} AND {micros} BETWEEN {FIRST_US} AND {LAST_US}"
    )
