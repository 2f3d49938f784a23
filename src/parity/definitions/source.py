"""Data sources that feature views read from.

Declarations only: reading them is the offline layer's job.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field as PydanticField
from pydantic import field_validator, model_validator

from parity.definitions.base import Definition, check_identifier


class _TableSource(Definition):
    """What every offline table source declares: where it is, its time columns, its renames."""

    type: str
    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str | None = None
    field_mapping: dict[str, str] = PydanticField(default_factory=dict)
    name: str = ""
    description: str = ""

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "path is empty: give a Parquet file, directory or glob, or a Delta table folder"
            )
        return value

    @field_validator("timestamp_field")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        if not value:
            raise ValueError("timestamp_field is empty: name the event-time column of the source")
        return value

    @field_validator("field_mapping")
    @classmethod
    def _mapping(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value.values():
            check_identifier(target, "field_mapping target")
        if len(set(value.values())) != len(value):
            raise ValueError("field_mapping maps two source columns to the same name")
        return value

    @model_validator(mode="after")
    def _distinct_time_columns(self) -> _TableSource:
        if self.created_timestamp_column == self.timestamp_field:
            raise ValueError(
                "created_timestamp_column must differ from timestamp_field (it breaks ties "
                "between rows with the same event time); leave it unset if the data has none"
            )
        return self

    def column_for(self, name: str) -> str:
        """The source column a (mapped) field name reads from."""
        for source_column, target in self.field_mapping.items():
            if target == name:
                return source_column
        return name


class FileSource(_TableSource):
    """Parquet data: a file, a directory of files, or a glob; relative paths start at the repo.

    `field_mapping` renames source columns to feature names (`{"amt": "amount"}`).
    """

    kind = "file_source"

    type: Literal["file"] = "file"


class DeltaSource(_TableSource):
    """A Delta Lake table (its folder, holding `_delta_log`); relative paths start at the repo.

    Read as its snapshot's Parquet files (parity.offline.delta): the latest version, or `version`
    to pin one (time travel). Rows ingested later win ties in the log's order of adds; a rewrite
    (OPTIMIZE, DELETE) re-adds rows in new files, so give tied rows a `created_timestamp_column`.
    """

    kind = "delta_source"

    type: Literal["delta"] = "delta"
    version: int | None = None

    @field_validator("version")
    @classmethod
    def _version(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError(
                f"version must be a table version >= 0, got {value}; leave it out for the latest"
            )
        return value


class PushSource(Definition):
    """Rows pushed by applications (`store.push(name, rows)`), kept offline in `batch_source`.

    The batch source must be a folder or a glob, since each push appends one Parquet file.
    """

    kind = "push_source"

    type: Literal["push"] = "push"
    name: str
    batch_source: FileSource
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_identifier(value, "push source name")


class StreamSource(Definition):
    """Events arriving on a Redis Stream (`parity ingest --source NAME` consumes them), kept
    offline in `batch_source` (a folder: each applied batch appends one Parquet file).

    `stream` is the Redis Stream key (default `parity:<project>:stream:<name>`); events older than
    `lateness` behind the ingesting worker's clock are dropped and counted, never applied.
    """

    kind = "stream_source"

    type: Literal["stream"] = "stream"
    name: str
    batch_source: FileSource
    stream: str = ""
    lateness: timedelta = timedelta(hours=1)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_identifier(value, "stream source name")

    @field_validator("lateness")
    @classmethod
    def _lateness(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"lateness must not be negative, got {value}")
        return value

    def stream_key(self, project: str) -> str:
        """The Redis Stream key in `project`: `stream` if set, else `parity:<project>:stream:<name>`
        (per project, so two projects with a source of the same name on one Redis never read
        each other's events; producers and `parity ingest` both call this)."""
        return self.stream or f"parity:{project}:stream:{self.name}"


DataSource = FileSource | DeltaSource | PushSource | StreamSource
# Where a view's rows are offline: a table source read by the offline engines.
BatchSource = FileSource | DeltaSource
# Sources whose rows arrive at run time and land offline in a batch folder.
ArrivingSource = PushSource | StreamSource
