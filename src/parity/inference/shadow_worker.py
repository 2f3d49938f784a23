"""The shadow process's side (`main`, the spawned child's entry): opens the repo's FeatureStore,
loads shadow versions through its model registry, drains mirrored tasks in batches (one model call
per shadow version per batch), reads features the champion's cannot stand in for, and writes rows
(role "shadow") through its own Parquet prediction log. Never answers a client; no HTTP, no deploy.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from parity.inference.deployment import BatchSettings, Deployment, Item
from parity.inference.metrics import ModelMetrics
from parity.inference.predlog import log_rows
from parity.inference.request_fields import request_schema
from parity.inference.server import (
    _predictions,
    _row_count,
    _row_dicts,
    _rows_of,
    _tensor_rows,
    utc_now,
)
from parity.inference.shadow_process import ShadowSettings, ShadowTask

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    import numpy as np

    from parity.feature_store import FeatureStore
    from parity.inference.predlog import PredictionLogger

logger = logging.getLogger(__name__)

Report = Callable[[tuple[Any, ...]], None]


@dataclass
class _Prepared:
    """A task ready for its model call: its input, and what its log rows need."""

    task: ShadowTask
    item: Item
    rows: int
    entities: list[dict[str, Any]]
    features: list[dict[str, Any]]
    read_seconds: float  # the champion's read (reused) or the child's own
    own_seconds: float  # the child's own work so far (its read), counted in the time limit


class ShadowWorker:
    """Predicts batches of tasks: per shadow version one model call for all its tasks (a failing
    call is retried task by task, so one bad request does not fail the others), statuses ok /
    error / timeout (own read + model call past `timeout_s`), rows logged; once the batch's rows
    are written (flushed), its counts are reported, so a counted shadow is a logged one."""

    def __init__(
        self,
        store: FeatureStore,
        log: PredictionLogger | None,
        report: Report,
        timeout_s: float,
    ) -> None:
        self.store = store
        self.log = log
        self.report = report
        self.timeout_s = timeout_s
        self._metrics = ModelMetrics()
        self._loaded: dict[tuple[str, int], Deployment] = {}
        self._counts: dict[tuple[str, int, str], int] = {}

    def run(self, tasks: Sequence[ShadowTask]) -> None:
        """Predict and log `tasks`, then report their counts (after the log's flush)."""
        self._predict(tasks)
        if self.log is not None:
            self.log.flush(timeout=10.0)
        counts, self._counts = self._counts, {}
        for (model, version, status), count in counts.items():
            self.report(("done", model, version, status, count))

    def _count(self, task: ShadowTask, status: str) -> None:
        key = (task.model, task.version, status)
        self._counts[key] = self._counts.get(key, 0) + 1

    def _predict(self, tasks: Sequence[ShadowTask]) -> None:
        groups: dict[tuple[str, int], list[ShadowTask]] = {}
        for task in tasks:
            groups.setdefault((task.model, task.version), []).append(task)
        for (model, version), group in groups.items():
            try:
                deployment = self._deployment(model, version)
            except Exception:
                logger.exception("could not load shadow %s v%d", model, version)
                for task in group:
                    self._failed(task, "error", 0.0)
                continue
            self._run_group(deployment, group)

    def _run_group(self, deployment: Deployment, group: list[ShadowTask]) -> None:
        ready: list[_Prepared] = []
        for task in group:
            started = time.perf_counter()
            try:
                ready.append(self._prepare(deployment, task))
            except Exception:
                logger.debug("shadow task %s failed", task.request_id, exc_info=True)
                self._failed(task, "error", time.perf_counter() - started)
        if not ready:
            return
        started = time.perf_counter()
        try:
            results = deployment.predict_now([p.item for p in ready])
        except Exception:
            if len(ready) > 1:  # one bad request must not fail the batch: each alone
                for prepared in ready:
                    self._predict_one(deployment, prepared)
                return
            self._failed(ready[0].task, "error", ready[0].own_seconds)
            return
        seconds = time.perf_counter() - started
        for prepared, result in zip(ready, results, strict=True):
            self._logged(prepared, result, seconds)

    def _predict_one(self, deployment: Deployment, prepared: _Prepared) -> None:
        started = time.perf_counter()
        try:
            (result,) = deployment.predict_now([prepared.item])
        except Exception:
            seconds = prepared.own_seconds + time.perf_counter() - started
            self._failed(prepared.task, "error", seconds)
            return
        self._logged(prepared, result, time.perf_counter() - started)

    def _prepare(self, deployment: Deployment, task: ShadowTask) -> _Prepared:
        if task.tensors is not None:
            item, rows = deployment.assemble_tensors(task.tensors)
            return _Prepared(task, item, rows, [], _row_dicts(item, rows), 0.0, 0.0)
        columns = task.columns or {}
        service = deployment.version.feature_service
        if service is not None and service == task.service and task.values is not None:
            given, values, read = task.given or columns, task.values, task.read_seconds
            own = 0.0
        else:
            started = time.perf_counter()
            given, values = self._read(deployment, columns)
            read = own = time.perf_counter() - started
        item, rows = deployment.assemble_features(values, given)
        entities, features = _rows_of(given, rows), _rows_of(values, rows)
        return _Prepared(task, item, rows, entities, features, read, own)

    def _read(
        self, deployment: Deployment, columns: Mapping[str, Sequence[Any]]
    ) -> tuple[Mapping[str, Sequence[Any]], Mapping[str, Sequence[Any]]]:
        """The shadow's own online read of the request's entities (its feature service)."""
        from parity.errors import BadRequest
        from parity.offline.request import resolve

        version = deployment.version
        if version.feature_service is None:
            raise BadRequest(f"model {version.ref} was registered without a feature service")
        service = version.feature_service
        resolved = resolve(self.store.registry.catalog, service)
        schema = request_schema(version.ref, resolved, deployment.model.signature)
        schema.check(columns)
        read = self.store.get_online_features(service, schema.for_read(columns))
        given = {n: read.entities.get(n, list(columns[n])) for n in columns}
        return given, read.values

    def _logged(
        self, prepared: _Prepared, result: Mapping[str, np.ndarray[Any, Any]], seconds: float
    ) -> None:
        task = prepared.task
        if prepared.own_seconds + seconds > self.timeout_s:
            self._failed(task, "timeout", prepared.own_seconds + seconds)
            return
        ref = (task.request_id, task.model, task.version, task.alias)
        latency = prepared.read_seconds + seconds
        log_rows(
            self.log,
            ref,
            prepared.entities,
            prepared.features,
            _predictions(result),
            latency,
            task.at,
            task.role,
            "ok",
        )
        self._count(task, "ok")

    def _failed(self, task: ShadowTask, status: str, seconds: float) -> None:
        """One row per entity row with no prediction: `status` "error" or "timeout"."""
        if task.tensors is not None:
            rows: list[dict[str, Any]] = [{}] * _tensor_rows(task.tensors)
        else:
            given = task.given or task.columns or {}
            rows = _rows_of(given, _row_count(given))
        ref = (task.request_id, task.model, task.version, task.alias)
        nothing = [None] * len(rows)
        log_rows(self.log, ref, rows, [], nothing, seconds, task.at, task.role, status)
        self._count(task, status)

    def _deployment(self, model: str, version: int) -> Deployment:
        key = (model, version)
        found = self._loaded.get(key)
        if found is None:
            registry = self.store.models
            record = registry.get_version(model, version)
            loaded = registry.load(record)
            metrics = self._metrics.for_version(model, version)
            found = Deployment(record, loaded, BatchSettings(max_batch_size=1), metrics)
            self._loaded[key] = found
            self.report(("service", model, version, record.feature_service))
            logger.info("shadow process loaded %s v%d (%s)", model, version, record.flavor)
        return found


def take(jobs: Queue[list[ShadowTask] | None], limit: int, wait: float) -> list[ShadowTask] | None:
    """Queued tasks (the server sends them in lists), about `limit` at most unless one list
    holds more (waiting at most `wait` seconds for the first); None once the stop sentinel comes
    (what came before it is returned first)."""
    try:
        first = jobs.get(timeout=wait)
    except queue.Empty:
        return []
    if first is None:
        return None
    found = list(first)
    while len(found) < limit:
        try:
            tasks = jobs.get_nowait()
        except queue.Empty:
            break
        if tasks is None:
            jobs.put(None)  # seen again by the next take, after this batch
            break
        found.extend(tasks)
    return found


def main(
    settings: ShadowSettings,
    jobs: Queue[list[ShadowTask] | None],
    results: Queue[tuple[Any, ...]],
    parent: int,
) -> None:
    """The child process: predict every task until the stop sentinel, or the parent is gone."""
    from parity.feature_store import FeatureStore

    _lower_priority(settings.nice)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s shadow %(levelname)s %(message)s"
    )
    offset = timedelta(seconds=settings.clock_offset_s)

    def clock() -> datetime:
        return utc_now() + offset

    store = FeatureStore(settings.repo, clock=clock)
    log = _logger(settings)
    worker = ShadowWorker(store, log, results.put, settings.timeout_s)
    try:
        while True:
            tasks = take(jobs, settings.max_batch_jobs, 0.5)
            if tasks is None:
                break
            if tasks:
                started = time.monotonic()
                worker.run(tasks)
                # one batch per cycle: its model call, log flush and report serve more tasks, and
                # the server's reader thread wakes less often
                time.sleep(max(0.0, settings.cycle_s - (time.monotonic() - started)))
            elif os.getppid() != parent:  # the server died without stopping us
                break
    finally:
        if log is not None:
            log.close()
        store.close()


def _lower_priority(nice: int) -> None:
    """Linux's idle scheduling class (the child runs only on CPU nothing else wants: mirrored
    work takes the server's idle time), else `nice` steps lower; 0 keeps the server's priority.
    The parent already did this right after the spawn (`lower_priority_of`); here it covers a
    parent that could not."""
    if nice <= 0:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(nice)


def _logger(settings: ShadowSettings) -> PredictionLogger | None:
    if settings.log_dir is None:
        return None
    from parity.inference.predlog import ParquetLogSink, PredictionLogger

    sink = ParquetLogSink(settings.log_dir)
    return PredictionLogger(sink, flush_interval_s=settings.flush_seconds)
