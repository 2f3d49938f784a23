"""Reference profiles: computed from a recorded dataset (its feature columns) and from a model
version run on that dataset's rows (its outputs and request-time inputs), stored by fingerprint.

Computation and the registration hook; storage is profile_store. Must not import cli or serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity.errors import ParityError, ProfileFailed
from parity.monitoring.profile_store import (
    FAILED,
    FEATURES,
    OK,
    ProfileStore,
    StoredProfile,
    model_subject,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.models.flavors import LoadedModel
    from parity.models.registry import ModelRegistry
    from parity.models.store import ModelVersion
    from parity.registry.datasets import DatasetRecord

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000  # rows per model call when profiling outputs: bounded memory, few calls
FULL_NAME_SEPARATOR = "__"


@dataclass(frozen=True)
class ProfileOutcome:
    """What one profiling attempt stored (or found already stored)."""

    subject: str
    stored: StoredProfile


def feature_columns(record: DatasetRecord, names: Sequence[str]) -> list[str]:
    """The dataset's feature columns among the file's column `names`: each feature ref's plain
    name, or its full `view__feature` name (entity keys, timestamps and labels are not refs)."""
    found = []
    for ref in record.feature_refs:
        view, _, feature = ref.partition(":")
        for column in (feature, f"{view}{FULL_NAME_SEPARATOR}{feature}"):
            if column in names:
                found.append(column)
                break
    return found


def _read(record: DatasetRecord, columns: Sequence[str] | None = None) -> pa.Table:
    import pyarrow.parquet as pq

    path = Path(record.path)
    if not path.exists():
        raise ProfileFailed(
            f"dataset '{record.name}' is recorded at {path}, which no longer exists; restore the "
            "file (its fingerprint must match) to profile it"
        )
    return pq.read_table(path, columns=list(columns) if columns is not None else None)


def _schema_names(record: DatasetRecord) -> list[str]:
    import pyarrow.parquet as pq

    path = Path(record.path)
    if not path.exists():
        _read(record)  # raises ProfileFailed naming the file
    return list(pq.read_schema(path).names)


def profile_features(record: DatasetRecord) -> tuple[str, int]:
    """(profile JSON, rows) of the dataset's feature columns."""
    columns = feature_columns(record, _schema_names(record))
    if not columns:
        raise ProfileFailed(
            f"dataset '{record.name}' has none of its feature refs {list(record.feature_refs)} "
            "as columns; it cannot be profiled"
        )
    table = _read(record, columns)
    return _profile_json(table), table.num_rows


def model_inputs(model: LoadedModel) -> tuple[str, ...]:
    """The input columns a model's signature names (empty for an ndarray or unsigned model)."""
    signature = model.signature
    if signature is None or signature.input_kind != "dataframe":
        return ()
    return tuple(spec.name for spec in signature.inputs)


def profile_model(
    record: DatasetRecord, version: ModelVersion, model: LoadedModel
) -> dict[str, tuple[str, int]]:
    """Per subject, (profile JSON, rows): the model's outputs over the dataset's rows, and its
    request-time inputs (signature inputs that are dataset columns but not features)."""
    import pyarrow as pa

    names = _schema_names(record)
    features = set(feature_columns(record, names))
    wanted = model_inputs(model) or tuple(feature_columns(record, names))
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ProfileFailed(
            f"model {version.ref} takes {missing}, which dataset '{record.name}' does not have "
            "as columns; its outputs cannot be computed on the dataset"
        )
    table = _read(record, wanted)
    if table.num_rows == 0:
        raise ProfileFailed(f"dataset '{record.name}' has no rows to run model {version.ref} on")
    outputs = [
        pa.table(chunk_outputs) for chunk_outputs in _predict_chunks(model, version, table, wanted)
    ]
    result = {model_subject(version.name, version.version): _concat_profile(outputs)}
    extra = [name for name in wanted if name not in features]
    if extra:
        inputs = table.select(extra)
        result[model_subject(version.name, version.version, "inputs")] = (
            _profile_json(inputs),
            inputs.num_rows,
        )
    return result


def _concat_profile(tables: list[pa.Table]) -> tuple[str, int]:
    import pyarrow as pa

    table = pa.concat_tables(tables)
    return _profile_json(table), table.num_rows


def _predict_chunks(
    model: LoadedModel, version: ModelVersion, table: pa.Table, names: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """The model's outputs chunk by chunk, its rows built as the model server builds them: a
    DataFrame of the signature's columns, or one float64 matrix of the features in order."""
    import numpy as np

    for start in range(0, max(table.num_rows, 1), CHUNK_ROWS):
        chunk = table.slice(start, CHUNK_ROWS)
        if chunk.num_rows == 0:
            return
        if model.signature is not None and model.signature.input_kind == "ndarray":
            batch: Any = np.column_stack(
                [chunk.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names]
            )
        else:
            batch = chunk.to_pandas()[list(names)]
        try:
            outputs = model.predict_outputs(batch)
        except ParityError:
            raise
        except Exception as error:
            raise ProfileFailed(
                f"model {version.ref} failed on the rows of dataset "
                f"'{version.training_dataset}': {type(error).__name__}: {error}"
            ) from error
        yield _one_value_outputs(outputs, version)


def _one_value_outputs(outputs: Mapping[str, Any], version: ModelVersion) -> dict[str, Any]:
    """The outputs of one value per row (a row of class probabilities is logged as a list and
    has no single distribution to test); ProfileFailed if there are none."""
    import numpy as np

    chosen = {}
    for name, values in outputs.items():
        array = np.asarray(values)
        if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
            chosen[name] = array.reshape(-1)
    if not chosen:
        raise ProfileFailed(
            f"model {version.ref} has no output of one value per row ({list(outputs)} are "
            "arrays per row); register a method that returns one, such as a class's probability"
        )
    return chosen


def _profile_json(table: pa.Table) -> str:
    """The stats helper's profile of an Arrow table, as its JSON (the one call into it)."""
    from parity.monitoring.profile import profile_table

    text: str = profile_table(table).to_json()
    return text


class ReferenceProfiles:
    """Computes and stores the profiles of datasets and model versions (`store.monitoring`'s
    `profile_dataset`, and the hook run when a version is registered with a training set)."""

    def __init__(
        self,
        profiles: ProfileStore,
        project: str,
        *,
        dataset: Callable[[str], DatasetRecord],
        models: Callable[[], ModelRegistry],
        clock: Callable[[], datetime],
    ) -> None:
        self.profiles = profiles
        self.project = project
        self._dataset = dataset
        self._models = models
        self._clock = clock

    def profile_dataset(self, name: str, *, models: bool = True) -> list[ProfileOutcome]:
        """Profile dataset `name`'s features and (with `models`) the outputs of every model
        version registered with it; an already computed profile is kept (immutable)."""
        record = self._dataset(name)
        outcomes = [self._store(record, FEATURES, lambda: {FEATURES: profile_features(record)})]
        if models:
            for version in self._versions_trained_on(record):
                outcomes += self.profile_version(version, record)
        return outcomes

    def profile_version(
        self, version: ModelVersion, record: DatasetRecord | None = None
    ) -> list[ProfileOutcome]:
        """The model subjects of `version` on its training dataset (nothing without one)."""
        if version.training_dataset is None:
            return []
        record = record or self._dataset(version.training_dataset)
        subject = model_subject(version.name, version.version)

        def compute() -> dict[str, tuple[str, int]]:
            return profile_model(record, version, self._models().load(version))

        return [self._store(record, subject, compute)]

    def on_register(self, version: ModelVersion) -> None:
        """The registration hook: profile the training set's features and the version's
        outputs. Never raises: a failure is logged and recorded as a failed profile, and
        'parity monitor profile --dataset NAME' computes it again."""
        if version.training_dataset is None:
            return
        try:
            record = self._dataset(version.training_dataset)
            self._store(record, FEATURES, lambda: {FEATURES: profile_features(record)})
            self.profile_version(version, record)
        except Exception as error:  # the version is registered already; keep it
            log.warning(
                "reference profile of %s on dataset %s failed: %s; run 'parity monitor profile "
                "--dataset %s' to compute it",
                version.ref,
                version.training_dataset,
                error,
                version.training_dataset,
            )

    def _versions_trained_on(self, record: DatasetRecord) -> list[ModelVersion]:
        registry = self._models()
        return [
            version
            for name in registry.models()
            for version in registry.versions(name)
            if version.training_dataset == record.name
            and version.dataset_fingerprint == record.fingerprint
        ]

    def _store(
        self,
        record: DatasetRecord,
        subject: str,
        compute: Callable[[], dict[str, tuple[str, int]]],
    ) -> ProfileOutcome:
        """Compute unless a profile of `subject` is stored; store every subject computed, or the
        failure (logged) for `subject`."""
        found = self.profiles.find(self.project, record.fingerprint, subject)
        if found is not None and found.ok:
            return ProfileOutcome(subject, found)
        try:
            computed = compute()
        except Exception as error:
            message = str(error) if isinstance(error, ParityError) else repr(error)
            log.warning("profile %s of dataset %s failed: %s", subject, record.name, message)
            failed = self._row(record, subject, FAILED, None, 0, message)
            return ProfileOutcome(subject, self.profiles.put(failed))
        stored = None
        for name, (text, rows) in computed.items():
            row = self.profiles.put(self._row(record, name, OK, text, rows, ""))
            if name == subject:
                stored = row
        if stored is None:
            raise ProfileFailed(f"profiling {record.name} did not produce subject {subject}")
        return ProfileOutcome(subject, stored)

    def _row(
        self,
        record: DatasetRecord,
        subject: str,
        status: str,
        text: str | None,
        rows: int,
        error: str,
    ) -> StoredProfile:
        return StoredProfile(
            project=self.project,
            fingerprint=record.fingerprint,
            subject=subject,
            dataset=record.name,
            created_at=self._clock(),
            status=status,
            rows=rows,
            profile=text,
            error=error,
        )
