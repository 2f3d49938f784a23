"""One loaded model version ready to serve: turns request tensors or feature columns into the rows
its signature expects, and predicts them alone or through its adaptive batcher.

Must not import HTTP code or any model library (pandas only for DataFrame-signature models).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from parity.errors import BadRequest, InferenceRequestError, ParityError, PredictFailed
from parity.inference.batching import AdaptiveBatcher

if TYPE_CHECKING:
    from parity.inference.metrics import VersionMetrics
    from parity.models.flavors import LoadedModel, Signature, TensorSpec
    from parity.models.store import ModelVersion

Array = np.ndarray[Any, Any]
Item = Array | dict[str, Array]  # one request's rows: a 2-D array, or named 1-D columns
Outputs = dict[str, Array]  # one request's answer: each output's rows, by output name


@dataclass(frozen=True)
class BatchSettings:
    """`max_batch_size=1` means no batching: each request calls the model on its own."""

    max_batch_size: int = 64
    max_latency_ms: float = 5.0


class Deployment:
    def __init__(
        self,
        version: ModelVersion,
        model: LoadedModel,
        settings: BatchSettings,
        metrics: VersionMetrics,
    ) -> None:
        self.version = version
        self.model = model
        self.metrics = metrics
        signature = model.signature
        self.kind = signature.input_kind if signature is not None else "any"
        self.input_names = tuple(s.name for s in signature.inputs) if signature else ()
        self.width = signature.inputs[0].shape[-1] if self.kind == "ndarray" and signature else -1
        self.output_names = model.output_names  # several when registration chose methods
        self.output_name = self.output_names[0]
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"predict-{version.name}")
        self.batcher: AdaptiveBatcher | None = None
        if settings.max_batch_size > 1:
            self.batcher = AdaptiveBatcher(
                self._predict_items,
                max_batch_size=settings.max_batch_size,
                max_latency_ms=settings.max_latency_ms,
                executor=self._executor,
                on_batch=metrics.on_batch,
            )

    async def predict(self, item: Item, rows: int) -> Outputs:
        """The model's output rows for `item`, by output name (batched with other requests when
        enabled). The model runs on this version's thread, so the event loop keeps accepting
        connections."""
        if self.batcher is not None:
            result: Outputs = await self.batcher.submit(item, rows)
            return result
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            (result,) = await loop.run_in_executor(self._executor, self._predict_items, [item])
        except ParityError:
            raise
        except Exception as error:
            failure = PredictFailed(f"predict raised {type(error).__name__}: {error}")
            raise failure from error
        self.metrics.on_batch(rows, 1, time.perf_counter() - started)
        return result

    def check_rows(self, rows: int) -> None:
        """Refuse a request of more rows than one batch holds (BatchItemTooLarge, what the batcher
        would answer) before any work is done for it, such as reading its features."""
        if self.batcher is not None and rows > self.batcher.max_batch_size:
            self.batcher.check_rows(rows)

    def predict_now(self, items: list[Item]) -> list[Outputs]:
        """Each item's outputs, on the calling thread: one model call per set of input names
        (the shadow process batches its tasks with it)."""
        return self._predict_items(items)

    def _predict_items(self, items: list[Item]) -> list[Outputs]:
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, item in enumerate(items):  # columns of different names cannot be stacked
            groups.setdefault(_names(item), []).append(index)
        results: list[Outputs] = [{}] * len(items)
        for indexes in groups.values():
            chosen = [items[i] for i in indexes]
            for index, result in zip(indexes, self._predict_group(chosen), strict=True):
                results[index] = result
        return results

    def _predict_group(self, items: list[Item]) -> list[Outputs]:
        sizes = [_rows(item) for item in items]
        batch = items[0] if len(items) == 1 else _concat(items)
        if isinstance(batch, dict):
            import pandas as pd

            batch = pd.DataFrame(batch, copy=False)
        outputs = self.model.predict_outputs(batch)
        for name, output in outputs.items():
            if output.ndim == 0 or output.shape[0] != sum(sizes):
                raise PredictFailed(
                    f"model {self.version.ref} returned shape {output.shape} for output '{name}' "
                    f"of {sum(sizes)} rows; predict must return one row per input row"
                )
        if len(items) == 1:
            return [outputs]
        cuts = np.cumsum(sizes)[:-1]
        parts = {name: np.split(output, cuts) for name, output in outputs.items()}
        return [{name: parts[name][i] for name in parts} for i in range(len(items))]

    def assemble_tensors(self, tensors: Mapping[str, Array]) -> tuple[Item, int]:
        """The rows an inference request's tensors carry, shaped for this model's signature.
        Refuses, naming the input, a name the signature does not have and a datatype that is not
        the signature's (as /v1 refuses an unknown field or a value of another type)."""
        if not tensors:
            raise InferenceRequestError("the request has no inputs")
        signature = self.model.signature
        if self.kind == "ndarray" or (self.kind == "any" and len(tensors) == 1):
            self._check_names(tensors)
            item, rows = self._one_matrix(tensors)
            if signature is not None:
                (name,) = tensors
                _check_type(f"input {name!r}", tensors[name], signature.inputs[0], self.version.ref)
            return item, rows
        if self.kind == "dataframe" and len(tensors) == 1:
            (only,) = tensors.values()
            if only.ndim == 2 and only.shape[1] == len(self.input_names) > 1:
                columns = {n: only[:, i] for i, n in enumerate(self.input_names)}
                within = f"input {next(iter(tensors))!r} "
                _check_types(columns, signature, self.version.ref, within)
                return columns, only.shape[0]
        self._check_names(tensors)
        names = self.input_names or tuple(tensors)
        missing = [name for name in names if name not in tensors]
        if missing:
            raise InferenceRequestError(
                f"model {self.version.ref} needs inputs {list(names)}; missing {missing}"
            )
        item, rows = _columns({name: tensors[name] for name in names})
        _check_types(item, signature, self.version.ref)
        return item, rows

    def _check_names(self, tensors: Mapping[str, Array]) -> None:
        if not self.input_names:
            return
        unknown = [name for name in tensors if name not in self.input_names]
        if unknown:
            raise InferenceRequestError(
                f"input {unknown[0]!r} is not one model {self.version.ref} takes; its inputs are "
                f"{list(self.input_names)} (see GET /v2/models/{self.version.name})"
            )

    def _one_matrix(self, tensors: Mapping[str, Array]) -> tuple[Item, int]:
        if len(tensors) != 1:
            raise InferenceRequestError(
                f"model {self.version.ref} takes one 2-D input tensor (rows x features); "
                f"got {len(tensors)} inputs {sorted(tensors)}"
            )
        (matrix,) = tensors.values()
        if matrix.ndim != 2 or self.width not in (-1, matrix.shape[1]):
            wanted = f"[rows, {self.width}]" if self.width != -1 else "[rows, features]"
            raise InferenceRequestError(
                f"model {self.version.ref} takes an input of shape {wanted}, "
                f"not {list(matrix.shape)}"
            )
        if matrix.shape[0] == 0:
            raise InferenceRequestError("the input has no rows")
        return matrix, matrix.shape[0]

    def assemble_features(
        self, values: Mapping[str, Sequence[Any]], request: Mapping[str, Sequence[Any]]
    ) -> tuple[Item, int]:
        """The rows of an entity request: the signature's columns from the fetched features, or
        from the request itself (request-time inputs such as the amount)."""
        names = self.input_names if self.kind == "dataframe" else tuple(values)
        missing = [n for n in names if n not in values and n not in request]
        if missing:
            raise BadRequest(
                f"model {self.version.ref} needs {missing}, which its feature service "
                f"'{self.version.feature_service}' does not provide; send them with the entities"
            )
        raw = {name: values[name] if name in values else request[name] for name in names}
        if self.kind == "ndarray":
            matrix = np.column_stack([np.asarray(raw[n], dtype=np.float64) for n in names])
            return self._one_matrix({"features": matrix})
        return _columns({name: np.asarray(column) for name, column in raw.items()})

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self._executor.shutdown(wait=False)


def _columns(columns: dict[str, Array]) -> tuple[dict[str, Array], int]:
    flat: dict[str, Array] = {}
    for name, column in columns.items():
        if column.ndim == 2 and column.shape[1] == 1:
            column = column[:, 0]
        if column.ndim != 1:
            raise InferenceRequestError(
                f"input '{name}' must be one column of shape [rows] or [rows, 1], "
                f"not {list(column.shape)}"
            )
        flat[name] = column
    lengths = {len(column) for column in flat.values()}
    if len(lengths) != 1 or 0 in lengths:
        shown = {name: len(column) for name, column in flat.items()}
        raise InferenceRequestError(f"inputs must have the same number of rows (>0): {shown}")
    return flat, lengths.pop()


def _check_types(
    columns: Mapping[str, Array], signature: Signature | None, ref: str, within: str = ""
) -> None:
    """Refuse, before the request joins a batch, a column the model's signature does not take.
    (In a batch it would fail the whole batch, and every request of it would be retried alone.)"""
    if signature is None:
        return
    for spec in signature.inputs:
        column = columns.get(spec.name)
        if column is not None:
            label = f"{within}column '{spec.name}'" if within else f"input '{spec.name}'"
            _check_type(label, column, spec, ref)


def _check_type(label: str, tensor: Array, spec: TensorSpec, ref: str) -> None:
    """Refuse a tensor whose datatype is not the signature's: numbers for a float input, integers
    (in range) for an integer one, BOOL for bool, BYTES for text (the same kinds /v1 checks)."""
    try:
        target = np.dtype(spec.dtype)
    except TypeError:  # a pandas-only dtype (category, string[python]): converted as before
        return
    given, wanted = tensor.dtype.kind, _ACCEPTS.get(target.kind)
    if wanted is not None and given not in wanted:
        example = f" (first value {tensor.reshape(-1)[0]!r})" if tensor.size else ""
        raise InferenceRequestError(
            f"{label} is {_oip(tensor.dtype)}{example}, but model {ref} takes "
            f"{_oip(target)} ({spec.dtype}) there; send it as {_oip(target)}"
        )
    if given in "iu" and target.kind in "iu" and tensor.size:
        info = np.iinfo(target)
        if tensor.min() < info.min or tensor.max() > info.max:
            raise InferenceRequestError(
                f"{label} has values outside the model's {spec.dtype} range "
                f"[{info.min}, {info.max}]"
            )


# Tensor kinds each signature kind takes (numpy kinds: f float, i/u integer, b bool, O/U/S text).
_ACCEPTS = {"f": "iuf", "i": "iu", "u": "iu", "b": "b", "O": "OUS", "U": "OUS", "S": "OUS"}


def _oip(dtype: np.dtype[Any]) -> str:
    """The Open Inference Protocol datatype of a numpy dtype (object and text are BYTES)."""
    prefix = {"f": "FP", "i": "INT", "u": "UINT"}.get(dtype.kind)
    if prefix is None:
        return {"b": "BOOL"}.get(dtype.kind, "BYTES")
    return f"{prefix}{dtype.itemsize * 8}"


def _names(item: Item) -> tuple[str, ...]:
    return () if isinstance(item, np.ndarray) else tuple(item)


def _rows(item: Item) -> int:
    if isinstance(item, np.ndarray):
        return int(item.shape[0])
    return len(next(iter(item.values())))


def _concat(items: list[Item]) -> Item:
    arrays = [item for item in items if isinstance(item, np.ndarray)]
    if arrays:
        return np.concatenate(arrays)
    columns = [item for item in items if isinstance(item, dict)]
    return {name: np.concatenate([item[name] for item in columns]) for name in columns[0]}
