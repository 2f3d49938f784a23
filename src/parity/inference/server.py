"""The model server's core, without HTTP: resolves model references (aliases re-read every
`alias_refresh_seconds`, so a move needs no restart), loads and batches each version once, predicts
from Open Inference Protocol tensors or from entity keys with online features, and logs each row.
During a rollout it routes champion-alias requests (canary) and mirrors them (shadow). No deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from parity.errors import (
    AliasNotFound,
    BadRequest,
    EntityKeyTypeError,
    InferenceRequestError,
    InvalidModelRef,
    TooManyEntities,
)
from parity.inference.deployment import BatchSettings, Deployment, Item
from parity.inference.oip import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    TensorMetadata,
    encode_output,
)
from parity.inference.predlog import LogRef, log_rows
from parity.inference.request_fields import RequestSchema, request_schema
from parity.inference.routes_view import RoutesReader, RoutesView
from parity.inference.routing import Routes, arm, mirrored_versions, request_key, tensor_key
from parity.inference.shadow import DEFAULT_QUEUE_SIZE, DEFAULT_TIMEOUT_S, ShadowJob, ShadowQueue
from parity.inference.shadow_process import ShadowProcess, ShadowTask
from parity.models.registry import parse_ref

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.inference.metrics import ModelMetrics
    from parity.inference.predlog import PredictionLogger
    from parity.models.registry import ModelRegistry
    from parity.models.store import ModelVersion
    from parity.online.reads import OnlineResponse

Columns = Mapping[str, Sequence[Any]]
RouteHook = Callable[[int, str], None]  # (version, "champion" or "canary"): the arm chosen

logger = logging.getLogger(__name__)

_OIP_DATATYPES = {"bool": "BOOL", "str": "BYTES", "bytes": "BYTES", "object": "BYTES"}


DEFAULT_MAX_ENTITIES = 10_000  # models.serving.max_entities (the feature server's default)
MAX_VERSION = 2**31 - 1  # the registry stores versions as SQL INTEGER (32-bit in PostgreSQL)


def _version_number(text: str) -> int:
    """A version in a path: ASCII digits only (`str.isdigit` also accepts '²' and '٣'), 1 to
    MAX_VERSION, so no lookup ever reaches the database with a number it cannot hold."""
    number = int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else 0
    if not 1 <= number <= MAX_VERSION:
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        raise InvalidModelRef(
            f"model version must be a whole number from 1 to {MAX_VERSION}, not '{shown}'"
        )
    return number


@dataclass(frozen=True)
class ModelTarget:
    """What a request addressed: a version, an alias, or (neither) the model's default."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str, version: str | None = None) -> ModelTarget:
        name, number, alias = parse_ref(text)
        if version is None:
            return cls(name, None if number is None else _version_number(str(number)), alias)
        if number is not None or alias is not None:
            raise InvalidModelRef(f"'{text}' already names a version or alias; drop /versions/")
        return cls(name, _version_number(version), None)


@dataclass(frozen=True)
class EntityPrediction:
    """The answer of an entity-based prediction: one prediction per entity row."""

    request_id: str
    version: ModelVersion
    alias: str | None
    predictions: list[Any]  # the first output's rows
    features: dict[str, list[Any]] = field(default_factory=dict)
    outputs: dict[str, list[Any]] = field(default_factory=dict)  # every output's rows, by name
    route: str | None = None  # "champion" or "canary" while a rollout routes the request


@dataclass(frozen=True)
class _Served:
    """What one entity prediction used, kept so a shadow can predict the same rows off the hot
    path: the request's columns, the features read (by `service`) and how long the read took."""

    request_id: str
    alias: str | None
    at: datetime
    service: str
    columns: Columns
    given: Columns
    values: Mapping[str, Sequence[Any]]
    read_seconds: float


def utc_now() -> datetime:
    return datetime.now(UTC)


class ModelServer:
    """Every model of one project's registry, served on demand: a version is loaded the first
    time a request needs it and kept (least recently used beyond `max_loaded` are unloaded)."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        metrics: ModelMetrics,
        features: FeatureStore | None = None,
        prediction_log: PredictionLogger | None = None,
        default_alias: str | None = "champion",
        alias_refresh_seconds: float = 1.0,
        batching: BatchSettings = BatchSettings(),
        batching_by_model: Mapping[str, BatchSettings] | None = None,
        max_loaded: int = 16,
        max_entities: int = DEFAULT_MAX_ENTITIES,
        clock: Callable[[], float] = time.monotonic,
        routes: RoutesReader | None = None,
        now: Callable[[], datetime] = utc_now,
        shadow_queue_size: int = DEFAULT_QUEUE_SIZE,
        shadow_timeout_s: float = DEFAULT_TIMEOUT_S,
        shadow_process: ShadowProcess | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.features = features
        self.prediction_log = prediction_log
        self.default_alias = default_alias
        self.alias_refresh_seconds = alias_refresh_seconds
        self.batching = batching
        self.batching_by_model = dict(batching_by_model or {})
        self.max_loaded = max_loaded
        self.max_entities = max_entities
        self._clock = clock
        self._now = now
        self._routes = (
            None
            if routes is None
            else RoutesView(routes, refresh_seconds=alias_refresh_seconds, clock=clock)
        )
        self._routes_task: asyncio.Task[None] | None = None
        self.shadows = ShadowQueue(metrics, size=shadow_queue_size, timeout_s=shadow_timeout_s)
        self.shadow_process = shadow_process  # None: shadows run in this process (`shadows`)
        self._resolved: dict[ModelTarget, tuple[float, int]] = {}
        self._loaded: OrderedDict[tuple[str, int], Deployment] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Future[Deployment]] = {}
        self._schemas: dict[tuple[str, int], tuple[object, RequestSchema]] = {}

    # --- resolving and loading ----------------------------------------------------------------

    def version_of(self, target: ModelTarget) -> int:
        """The version `target` means now (an alias is re-read once its cache entry expires)."""
        if target.version is not None:
            return target.version
        now = self._clock()
        hit = self._resolved.get(target)
        if hit is not None and hit[0] > now:
            return hit[1]
        number = self._lookup(target).version
        self._resolved[target] = (now + self.alias_refresh_seconds, number)
        return number

    def _lookup(self, target: ModelTarget) -> ModelVersion:
        if target.alias is not None:
            return self.registry.get_alias(target.name, target.alias)
        if self.default_alias is not None:
            try:
                return self.registry.get_alias(target.name, self.default_alias)
            except AliasNotFound:
                pass
        return self.registry.resolve(target.name)

    async def deployment(self, target: ModelTarget) -> Deployment:
        key = (target.name, self.version_of(target))
        found = self._loaded.get(key)
        if found is not None:
            self._loaded.move_to_end(key)
            return found
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            try:
                pending.set_result(await asyncio.to_thread(self._load, *key))
            except BaseException as error:
                pending.set_exception(error)
                pending.exception()  # retrieved: a failed load is reported to every waiter
            finally:
                del self._loading[key]
            self._keep(key, pending.result())
        return await asyncio.shield(pending)

    def _load(self, name: str, number: int) -> Deployment:
        version = self.registry.get_version(name, number)
        model = self.registry.load(version)
        settings = self.batching_by_model.get(name, self.batching)
        logger.info("loaded model %s version %d (%s)", name, number, version.flavor)
        return Deployment(version, model, settings, self.metrics.for_version(name, number))

    def _keep(self, key: tuple[str, int], deployment: Deployment) -> None:
        self._loaded[key] = deployment
        while len(self._loaded) > self.max_loaded:
            _, evicted = self._loaded.popitem(last=False)
            asyncio.get_running_loop().create_task(evicted.close())

    async def preload(self, targets: Sequence[ModelTarget]) -> None:
        for target in targets:
            await self.deployment(target)

    def loaded(self) -> list[Deployment]:
        return list(self._loaded.values())

    async def close(self) -> None:
        task, self._routes_task = self._routes_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.shadows.close()
        if self.shadow_process is not None:
            await asyncio.to_thread(self.shadow_process.close)
        for deployment in list(self._loaded.values()):
            await deployment.close()
        self._loaded.clear()

    # --- Open Inference Protocol --------------------------------------------------------------

    def metadata(self, deployment: Deployment) -> ModelMetadata:
        version = deployment.version
        signature = deployment.model.signature
        versions = [str(v.version) for v in self.registry.versions(version.name)]
        inputs = [_tensor(s.name, s.dtype, s.shape) for s in signature.inputs] if signature else []
        outputs = (
            [_tensor(s.name, s.dtype, s.shape) for s in signature.outputs] if signature else []
        )
        return ModelMetadata(
            name=version.name,
            versions=versions,
            platform=f"parity_{version.flavor}",
            inputs=inputs,
            outputs=outputs,
        )

    async def infer(
        self,
        deployment: Deployment,
        request: InferenceRequest,
        tensors: dict[str, np.ndarray[Any, Any]],
        alias: str | None = None,
        role: str | None = None,
        logged: tuple[str, datetime] | None = None,
        champion: Deployment | None = None,
    ) -> InferenceResponse:
        """The model's answer to OIP tensors; `logged` is the (request id, time) its log rows get
        (a new id and now by default). During a rollout (`role`) a failure is logged for the
        error-rate gate unless `champion` refuses the same tensors (then it is the client's)."""
        started = time.perf_counter()
        wanted = [out.name for out in request.outputs or ()] or list(deployment.output_names)
        unknown = sorted(set(wanted) - set(deployment.output_names))
        if unknown:
            raise InferenceRequestError(
                f"model {deployment.version.ref} has no output {unknown}; its outputs are "
                f"{list(deployment.output_names)}"
            )
        request_id, at = logged or (request.id or uuid.uuid4().hex, self._now())
        version = deployment.version
        ref = (request_id, version.name, version.version, alias)
        try:
            item, rows = deployment.assemble_tensors(tensors)
            result = await deployment.predict(item, rows)
        except Exception as error:
            if role is not None and not _refused_by(champion, tensors, error):
                failed: list[dict[str, Any]] = [{}] * _tensor_rows(tensors)
                self._log_failed(ref, failed, time.perf_counter() - started, at, role, "error")
            raise
        seconds = time.perf_counter() - started
        deployment.metrics.infer.observe(seconds)
        self._log(ref, [], _row_dicts(item, rows), result, seconds, at, role)
        return InferenceResponse(
            model_name=version.name,
            model_version=str(version.version),
            id=request.id,
            outputs=[encode_output(name, result[name]) for name in dict.fromkeys(wanted)],
        )

    async def infer_target(
        self,
        target: ModelTarget,
        request: InferenceRequest,
        tensors: dict[str, np.ndarray[Any, Any]],
        headers: Mapping[str, str] | None = None,
        on_route: RouteHook | None = None,
    ) -> tuple[InferenceResponse, Deployment, str | None]:
        """`infer` for the version `target` means now, routed during a rollout like
        predict_entities (the key from a header, or from the input tensor named like it); also
        the deployment that answered and the route ("champion", "canary" or None)."""
        routes = self.routes_for(target)
        if routes is None:
            deployment = await self.deployment(target)
            return await self.infer(deployment, request, tensors, target.alias), deployment, None
        key = tensor_key(routes, tensors, headers)
        chosen = arm(routes, key)
        role = "canary" if chosen == "candidate" else "champion"
        version = routes.candidate if chosen == "candidate" else routes.champion
        if on_route is not None:
            on_route(version, role)
        request_id, at = request.id or uuid.uuid4().hex, self._now()
        alias = _alias_of(target, self.default_alias)
        rows: list[dict[str, Any]] = [{}] * _tensor_rows(tensors)
        deployment = await self._arm((request_id, target.name, version, alias), rows, at, role)
        champion = self._loaded.get((target.name, routes.champion))
        response = await self.infer(
            deployment, request, tensors, alias, role, (request_id, at), champion
        )
        if chosen == "champion":
            for shadow in mirrored_versions(routes, key, request_id):
                self._mirror_tensors((request_id, target.name, shadow, alias), tensors, at)
        return response, deployment, role

    # --- rollouts: which version answers ----------------------------------------------------------

    def refresh_routes(self) -> None:
        """Read the rollout routes now, on the calling thread (start-up; later reads are in the
        background, every `alias_refresh_seconds` once `keep_routes_fresh` runs)."""
        if self._routes is not None:
            self._routes.refresh()

    def keep_routes_fresh(self) -> None:
        """Start re-reading the routes every period on the running loop, requests or not."""
        if self._routes is not None and self._routes_task is None:
            self._routes_task = asyncio.get_running_loop().create_task(self._routes.keep_fresh())

    def start_shadow_process(self) -> None:
        """Start the shadow process now (start-up) when some routes mirror requests; otherwise
        it starts with the first mirrored request."""
        if self._routes is None or self.shadow_process is None:
            return
        if any(routes.shadows for routes in self._routes.current().values()):
            self.shadow_process.start()

    def routes_for(self, target: ModelTarget) -> Routes | None:
        """The routes splitting `target`'s traffic: only a request for the champion alias (or the
        bare name when the default alias is the champion alias), and only while the alias still
        names the routes' champion (stale routes after a promotion or a manual move never route)."""
        if self._routes is None or target.version is not None:
            return None
        routes = self._routes.current().get(target.name)
        if routes is None:
            return None
        alias = target.alias if target.alias is not None else self.default_alias
        if alias != routes.champion_alias or self.version_of(target) != routes.champion:
            return None
        return routes

    async def _arm(
        self, ref: LogRef, rows: list[dict[str, Any]], at: datetime, role: str
    ) -> Deployment:
        """The deployment of a rollout's arm (`ref` names its version); if it cannot be loaded
        (an artifact the server cannot import, say) the request's rows are logged as errors, so
        the error-rate gate sees a candidate that never answers instead of holding on no rows."""
        started = time.perf_counter()
        _, name, version, _ = ref
        try:
            return await self.deployment(ModelTarget(name, version))
        except Exception:
            self._log_failed(ref, rows, time.perf_counter() - started, at, role, "error")
            raise

    # --- entity-based prediction ----------------------------------------------------------------

    async def predict_entities(
        self,
        target: ModelTarget,
        entities: Columns | Sequence[Mapping[str, Any]],
        *,
        request_id: str | None = None,
        return_features: bool = False,
        headers: Mapping[str, str] | None = None,
        on_route: RouteHook | None = None,
    ) -> EntityPrediction:
        """Reads `entities`' features and predicts them; during a rollout the champion alias's
        requests go to the candidate or the champion by the routing key, and are mirrored.
        `on_route(version, route)` hears the arm chosen before it answers (or fails)."""
        check_entity_rows(_row_count(entities), self.max_entities)
        request_id = request_id or uuid.uuid4().hex
        alias = _alias_of(target, self.default_alias)
        columns = _columns_of(entities)
        routes = self.routes_for(target)
        if routes is None:
            answer, _ = await self._predict(target, columns, request_id, alias, return_features)
            return answer
        key = request_key(routes, columns, headers)
        chosen = arm(routes, key)
        role = "canary" if chosen == "candidate" else "champion"
        version = routes.candidate if chosen == "candidate" else routes.champion
        if on_route is not None:
            on_route(version, role)
        answer, served = await self._predict(
            ModelTarget(target.name, version), columns, request_id, alias, return_features, role
        )
        if chosen == "champion":
            for shadow in mirrored_versions(routes, key, request_id):
                self._mirror_entities(target.name, shadow, served)
        return dataclasses.replace(answer, route=role)

    async def _predict(
        self,
        target: ModelTarget,
        columns: Columns,
        request_id: str,
        alias: str | None,
        return_features: bool,
        role: str | None = None,
    ) -> tuple[EntityPrediction, _Served]:
        started = time.perf_counter()
        if role is None or target.version is None:
            deployment = await self.deployment(target)
        else:  # a rollout's arm: a version that cannot load fails its error-rate gate
            ref = (request_id, target.name, target.version, alias)
            entity_rows = _rows_of(columns, _row_count(columns))
            deployment = await self._arm(ref, entity_rows, self._now(), role)
        rows = _row_count(columns)
        deployment.check_rows(rows)
        features, service = self._feature_source(deployment, target.name)
        schema = self._request_schema(features, deployment, service)
        schema.check(columns)
        at = self._now()
        ref = (request_id, target.name, deployment.version.version, alias)
        try:
            response = await features.get_online_features_async(service, schema.for_read(columns))
            read_seconds = time.perf_counter() - started
            # The request's columns as the read echoed them, plus the model-only inputs it was
            # not sent
            given = {n: response.entities.get(n, list(columns[n])) for n in columns}
            item, rows = deployment.assemble_features(response.values, given)
            result = await deployment.predict(item, rows)
        except Exception as error:
            # a rollout's error-rate gate counts it; not a key of the wrong type, which every arm
            # refuses (a client retrying one would otherwise fail the arm its key sticks to)
            if role is not None and not isinstance(error, EntityKeyTypeError):
                seconds = time.perf_counter() - started
                self._log_failed(ref, _rows_of(columns, rows), seconds, at, role, "error")
            raise
        seconds = time.perf_counter() - started
        deployment.metrics.predict.observe(seconds)
        served = _Served(
            request_id, alias, at, service, columns, given, response.values, read_seconds
        )
        if self.prediction_log is not None:
            entities_used = _rows_of(given, rows)
            features_used = _rows_of(response.values, rows)
            self._log(ref, entities_used, features_used, result, seconds, at, role)
        answer = EntityPrediction(
            request_id=request_id,
            version=deployment.version,
            alias=alias,
            predictions=result[deployment.output_name].tolist(),
            features=_features_of(response) if return_features else {},
            outputs={name: output.tolist() for name, output in result.items()},
        )
        return answer, served

    def _feature_source(self, deployment: Deployment, name: str) -> tuple[FeatureStore, str]:
        service = deployment.version.feature_service
        if service is None:
            raise BadRequest(
                f"model {deployment.version.ref} was registered without a feature service, so "
                f"its features cannot be fetched; call /v2/models/{name}/infer with the "
                "feature values, or register the model with feature_service="
            )
        if self.features is None:
            raise BadRequest("this model server has no feature store to fetch features from")
        return self.features, service

    # --- shadows: mirrored copies, after the answer ------------------------------------------

    def _mirror_entities(self, name: str, version: int, served: _Served) -> None:
        process = self.shadow_process
        if process is not None:
            reuse = process.reuses(name, version, served.service)
            task = ShadowTask(
                name,
                version,
                served.request_id,
                served.at,
                served.alias,
                columns=served.columns,
                given=served.given,
                values=served.values if reuse else None,
                service=served.service,
                read_seconds=served.read_seconds,
            )
            process.submit(task)
            return

        async def run() -> None:
            await self._shadow_entities(name, version, served)

        def failed(status: str, seconds: float) -> None:
            rows = _rows_of(served.given, _row_count(served.given))
            ref = (served.request_id, name, version, served.alias)
            self._log_failed(ref, rows, seconds, served.at, "shadow", status)

        self.shadows.submit(ShadowJob(name, version, run, failed))

    async def _shadow_entities(self, name: str, version: int, served: _Served) -> None:
        """One shadow's prediction of a mirrored request: the champion's feature values when the
        shadow reads the same feature service, else its own read (off the hot path)."""
        deployment = await self._shadow_deployment(name, version)
        started = time.perf_counter()
        features, service = self._feature_source(deployment, name)
        if service == served.service:
            given, values, extra = served.given, served.values, served.read_seconds
        else:
            schema = self._request_schema(features, deployment, service)
            schema.check(served.columns)
            read = await features.get_online_features_async(
                service, schema.for_read(served.columns)
            )
            given = {n: read.entities.get(n, list(served.columns[n])) for n in served.columns}
            values, extra = read.values, 0.0
        item, rows = deployment.assemble_features(values, given)
        result = await deployment.predict(item, rows)
        seconds = extra + time.perf_counter() - started
        ref = (served.request_id, name, version, served.alias)
        features_used = _rows_of(values, rows)
        self._log(ref, _rows_of(given, rows), features_used, result, seconds, served.at, "shadow")

    def _request_schema(
        self, features: FeatureStore, deployment: Deployment, service: str
    ) -> RequestSchema:
        """The fields a predict request for `deployment` may carry (kept until the next apply)."""
        from parity.offline.request import resolve

        catalog = features.registry.catalog
        key = (deployment.version.name, deployment.version.version)
        hit = self._schemas.get(key)
        if hit is not None and hit[0] is catalog:
            return hit[1]
        version = deployment.version
        schema = request_schema(version.ref, resolve(catalog, service), deployment.model.signature)
        self._schemas[key] = (catalog, schema)
        return schema

    def _mirror_tensors(
        self, ref: LogRef, tensors: dict[str, np.ndarray[Any, Any]], at: datetime
    ) -> None:
        request_id, name, version, alias = ref
        if self.shadow_process is not None:
            task = ShadowTask(name, version, request_id, at, alias, tensors=tensors)
            self.shadow_process.submit(task)
            return

        async def run() -> None:
            deployment = await self._shadow_deployment(name, version)
            started = time.perf_counter()
            item, rows = deployment.assemble_tensors(tensors)
            result = await deployment.predict(item, rows)
            seconds = time.perf_counter() - started
            self._log(ref, [], _row_dicts(item, rows), result, seconds, at, "shadow")

        def failed(status: str, seconds: float) -> None:
            self._log_failed(ref, [{}] * _tensor_rows(tensors), seconds, at, "shadow", status)

        self.shadows.submit(ShadowJob(name, version, run, failed))

    async def _shadow_deployment(self, name: str, version: int) -> Deployment:
        """The shadow version, loaded once: a load outlives a shadow job cancelled past its time
        limit (the next job finds it loaded)."""
        found = self._loaded.get((name, version))
        if found is not None:
            return found
        return await _loaded(self.deployment(ModelTarget(name, version)))

    # --- the prediction log ---------------------------------------------------------------------

    def _log(
        self,
        ref: LogRef,
        entities: list[dict[str, Any]],
        features: list[dict[str, Any]],
        result: Mapping[str, np.ndarray[Any, Any]],
        seconds: float,
        at: datetime,
        role: str | None,
    ) -> None:
        if self.prediction_log is not None:
            predictions = _predictions(result)
            log_rows(
                self.prediction_log, ref, entities, features, predictions, seconds, at, role, "ok"
            )

    def _log_failed(
        self,
        ref: LogRef,
        entities: list[dict[str, Any]],
        seconds: float,
        at: datetime,
        role: str,
        status: str,
    ) -> None:
        """One row per entity row with no prediction: `status` "error" or "timeout"."""
        if self.prediction_log is not None:
            nothing = [None] * len(entities)
            log_rows(self.prediction_log, ref, entities, [], nothing, seconds, at, role, status)


async def _loaded(pending: Coroutine[Any, Any, Deployment]) -> Deployment:
    """`pending`, carried on if the caller gives up (a shadow past its time limit cancelled), so
    a version being loaded is loaded once and kept."""
    return await asyncio.shield(asyncio.ensure_future(pending))


def _refused_by(
    champion: Deployment | None, tensors: Mapping[str, np.ndarray[Any, Any]], error: Exception
) -> bool:
    """Whether a routed `/v2` request's failure is the client's: tensors the champion refuses
    too (a missing input, a wrong datatype), which every arm would refuse. Not counted against the
    arm the request's key sticks to, so one client retrying it cannot fail a rollout; a candidate
    refusing what the champion takes is the candidate's error and is counted."""
    if champion is None or not isinstance(error, InferenceRequestError):
        return False
    try:
        champion.assemble_tensors(tensors)
    except InferenceRequestError:
        return True
    return False


def _tensor_rows(tensors: Mapping[str, np.ndarray[Any, Any]]) -> int:
    """The rows of a `/v2` request (its first tensor's first dimension), at least 1."""
    for tensor in tensors.values():
        return max(1, int(tensor.shape[0]) if tensor.ndim else 1)
    return 1


def check_entity_rows(rows: int, limit: int) -> None:
    """TooManyEntities (413) for a `/v1` request of more than `limit` entity rows."""
    if rows > limit:
        raise TooManyEntities(
            f"{rows:,} entity rows in one request; the model server answers at most {limit:,} "
            "(models.serving.max_entities in parity.yaml): split the request"
        )


def _row_count(entities: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> int:
    """The rows of a request: its longest column, or its number of rows."""
    if isinstance(entities, Mapping):
        return max((len(column) for column in entities.values()), default=0)
    return len(entities)


def _predictions(result: Mapping[str, np.ndarray[Any, Any]]) -> list[Any]:
    """Each row's prediction: the output's value, or output name -> value for several outputs."""
    if len(result) == 1:
        (only,) = result.values()
        return list(only.tolist())
    columns = {name: output.tolist() for name, output in result.items()}
    rows = len(next(iter(columns.values())))
    return [{name: values[row] for name, values in columns.items()} for row in range(rows)]


def _alias_of(target: ModelTarget, default_alias: str | None) -> str | None:
    if target.alias is not None or target.version is not None:
        return target.alias
    return default_alias


def _tensor(name: str, dtype: str, shape: Sequence[int]) -> TensorMetadata:
    datatype = _OIP_DATATYPES.get(dtype)
    if datatype is None:
        kind = np.dtype(dtype)
        datatype = {"f": "FP", "i": "INT", "u": "UINT"}.get(kind.kind, "BYTES")
        datatype = datatype if datatype == "BYTES" else f"{datatype}{kind.itemsize * 8}"
    return TensorMetadata(name=name, datatype=datatype, shape=list(shape))


def _columns_of(
    entities: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> Mapping[str, Sequence[Any]]:
    """Entity rows as columns (a field a row lacks is None there)."""
    if isinstance(entities, Mapping):
        return entities
    names = dict.fromkeys(name for row in entities for name in row)
    return {name: [row.get(name) for row in entities] for name in names}


def _rows_of(columns: Mapping[str, Sequence[Any]], rows: int) -> list[dict[str, Any]]:
    names = list(columns)
    return [{name: columns[name][row] for name in names} for row in range(rows)]


def _row_dicts(item: Item, rows: int) -> list[dict[str, Any]]:
    if isinstance(item, np.ndarray):
        return [{"input": row} for row in item.tolist()]
    return _rows_of({name: column.tolist() for name, column in item.items()}, rows)


def _features_of(response: OnlineResponse) -> dict[str, list[Any]]:
    return {name: list(values) for name, values in response.values.items()}
