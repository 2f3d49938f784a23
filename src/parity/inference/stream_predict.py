"""Streaming predictions (`parity predict stream`): score a stream source's events with a model and
publish each score to an output Redis stream, exactly once.

A worker reads the source's stream in its own consumer group (not `parity ingest`'s, so both see
every event) and handles micro-batches:

1. decode and check each event (stream_predict_rules.check_event): bad ones become dead letters;
2. wait (up to `ingest_wait_ms`) for `parity ingest` to apply the batch (stream_predict_ingest;
   events it had not applied are marked `ingest_behind`), read the good ones' online features at
   each event's own time, itself included, as a training row at that time (read_at), run the
   on-demand transforms with the event's fields as request data, and predict them in one call
   of the model (loaded once, rows built as `/v1` builds them: Deployment);
3. publish the scores and dead letters and acknowledge their source messages in ONE Lua script,
   which first checks that each message is still pending in the group: a message is published
   iff it is acknowledged, atomically. A worker killed before the script redoes the batch; after
   it, the messages are no longer pending and nothing is redelivered. A message that a claimer
   and a slow owner both handle is published by whichever script runs first only;
4. log the published scores to the prediction log (role "stream", request id
   `stream-<message id>`).

A restarted worker first re-reads its own pending messages; one under a new name claims messages
another consumer left pending for `claim_idle_ms`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from parity.definitions import StreamSource
from parity.errors import AliasNotFound, BadRequest, PushError
from parity.inference.deployment import BatchSettings, Deployment
from parity.inference.predlog import PredictionRecord
from parity.inference.stream_predict_features import read_at
from parity.inference.stream_predict_ingest import wait_for_ingest
from parity.inference.stream_predict_rules import (
    Event,
    EventSpec,
    Limits,
    Rejection,
    StreamStats,
    check_keys,
    dead_letter_fields,
    entry_args,
    late_rows,
    late_windows,
    redis_location,
    reject,
    request_id,
    score_fields,
    take_rows,
    transformed,
    unknown_key,
)
from parity.ingest.stream import EVENT_FIELD, decode_event, read_group
from parity.online.reads import OnlineResponse, key_types
from parity.timeutil import to_micros

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore
    from parity.inference.predlog import PredictionLogger
    from parity.inference.request_fields import RequestSchema
    from parity.models.store import ModelVersion
    from parity.offline.request import RetrievalRequest
    from parity.online.store import TileStore

log = logging.getLogger(__name__)
CLAIM_EVERY_S = 10.0  # how often a worker looks for messages a dead consumer left
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0  # waits for an unreachable store, doubling
SINK, DEAD = 2, 3  # KEYS index of the score stream and of the dead-letter stream in the script

# KEYS: source stream, score stream, dead-letter stream. ARGV: group, then per message its id,
# its target (a KEYS index) and its field count, then the fields. Publishes and acknowledges each
# message still pending in the group; returns the ids it published.
PUBLISH_SCRIPT = """
local group = ARGV[1]
local done = {}
local i = 2
while i <= #ARGV do
  local id, target, n = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  if #redis.call('XPENDING', KEYS[1], group, id, id, 1) > 0 then
    local args = {'XADD', target, '*'}
    for j = 1, n do args[#args + 1] = ARGV[i + 2 + j] end
    redis.call(unpack(args))
    redis.call('XACK', KEYS[1], group, id)
    done[#done + 1] = id
  end
  i = i + 3 + n
end
return done
"""


@dataclass
class Scored:
    event: Event
    outputs: dict[str, Any]
    entities: dict[str, Any]
    features: dict[str, Any]


Message = tuple[str, dict[bytes, bytes]]


class StreamPredictor:
    """One consumer of the prediction group of a stream source; `run_once` handles one batch."""

    def __init__(
        self,
        store: FeatureStore,
        model: str,
        source: str,
        sink: str,
        *,
        group: str | None = None,
        consumer: str | None = None,
        dead_letter: str | None = None,
        batch_size: int = 256,
        block_ms: int = 100,
        claim_idle_ms: int = 60_000,
        ingest_wait_ms: int = 1_000,
        score_unknown: bool = False,
        prediction_log: PredictionLogger | None = None,
        client: Any = None,
    ) -> None:
        from parity.ingest.push import views_of
        from parity.ingest.stream import _redis_client
        from parity.online.cluster_router import one_slot_keys

        _check_positive("batch_size", batch_size)
        _check_positive("block_ms", block_ms)
        _check_positive("claim_idle_ms", claim_idle_ms, least=0)  # 0: claim at once
        _check_positive("ingest_wait_ms", ingest_wait_ms, least=0)  # 0: never wait
        self.store = store
        stream_source = views_of(store.registry.catalog, source)[0].source
        if not isinstance(stream_source, StreamSource):
            raise PushError(f"'{source}' is a push source, not a stream source")
        self.source = stream_source
        self.key = stream_source.stream_key(store.project)
        self.sink = sink
        self.dead_letter = f"{sink}:dead" if dead_letter is None else dead_letter
        check_keys(self.key, sink, self.dead_letter)
        if group == "" or consumer == "":
            raise BadRequest("group and consumer, when given, must not be empty")
        self.group = group or f"parity:{store.project}:predict:{sink}"
        self.ingest_group = f"parity:{store.project}"  # `parity ingest`'s (StreamWorker)
        self.ingest_wait_ms = ingest_wait_ms
        if self.group == self.ingest_group:
            raise BadRequest(
                f"group '{self.group}' is `parity ingest`'s: the scores would take events from "
                "it; choose another --group"
            )
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size, self.block_ms, self.claim_idle_ms = batch_size, block_ms, claim_idle_ms
        self.score_unknown = score_unknown
        self.prediction_log = prediction_log
        self.client = client if client is not None else _redis_client(store)
        one_slot_keys(self.client, source=self.key, sink=sink, dead_letter=self.dead_letter)
        self.version, self.deployment = load_model(store, model)
        self.alias = _alias_of(store, model)
        self.request, self.schema = _retrieval(store, self.version, self.deployment)
        self.spec = _spec(self.version.ref, self.source, self.request, self.schema)
        self.waits_for_ingest = any(  # the model reads windows `parity ingest` updates
            r.view.is_aggregated and r.view.source.name == self.source.name
            for r in self.request.views
        )
        self.stats = StreamStats()
        self._script = self.client.register_script(PUBLISH_SCRIPT)
        self._own_pending = True
        self._next_claim = 0.0
        self._ensure_group()

    def _ensure_group(self) -> None:
        from parity.errors import OnlineStoreUnavailable

        try:
            self.client.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except _unreachable() as error:  # Redis down, or refusing the credentials, at start
            where = redis_location(self.client)
            raise OnlineStoreUnavailable(
                f"the Redis holding stream '{self.key}' at {where} did not answer: "
                f"{type(error).__name__}: {error}; start it, or pass --redis-url"
            ) from None
        except Exception as error:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(error):
                raise

    # --- reading ------------------------------------------------------------------------------

    def _read(self) -> list[Message]:
        if not self._own_pending and time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + CLAIM_EVERY_S
            self._claim_abandoned()
        read = read_group(
            self.client,
            self.key,
            self.group,
            self.consumer,
            own_pending=self._own_pending,
            count=self.batch_size,
            block_ms=self.block_ms,
        )
        messages = [(i, fields or {}) for i, fields in read]  # deleted: undecodable, dead-lettered
        if self._own_pending and not messages:
            self._own_pending = False  # caught up with what this consumer was given
            return self._read()
        return messages

    def _claim_abandoned(self) -> None:
        """Take over messages other consumers left pending for `claim_idle_ms` (XCLAIM checks
        the idle time atomically). No marker is needed: the publish script skips a message no
        longer pending, so a claimed message that its owner did publish is not published twice."""
        entries = self.client.xpending_range(
            self.key, self.group, min="-", max="+", count=self.batch_size, idle=self.claim_idle_ms
        )
        ids = [e["message_id"] for e in entries if _text(e["consumer"]) != self.consumer]
        if ids:
            claimed = self.client.xclaim(
                self.key, self.group, self.consumer, self.claim_idle_ms, ids, justid=True
            )
            log.info("predict stream %s: claimed %d messages", self.source.name, len(claimed))
            self._own_pending = self._own_pending or bool(claimed)

    # --- one batch ----------------------------------------------------------------------------

    def run_once(self) -> int:
        """Read, score and publish one batch; the number of messages handled (0 when idle)."""
        messages = self._read()
        if not messages:
            return 0
        now_us = to_micros(self.store.now())
        events, rejected = self._checked(messages, now_us)
        started = time.perf_counter()
        behind = self._wait_for_ingest(events)
        scored, failed = self._score(events) if events else ([], [])
        rejected += failed
        seconds = time.perf_counter() - started
        _crash_point("before_publish")
        published = self._publish(messages, scored, rejected, behind)
        _crash_point("after_publish")
        self._log(scored, published, seconds)
        self.stats.batches += 1
        return len(messages)

    def _checked(self, messages: list[Message], now_us: int) -> tuple[list[Event], list[Rejection]]:
        from parity.inference.stream_predict_rules import check_event

        skew = self.store.config.ingest.max_future_skew
        limits = Limits(now_us, _us(self.source.lateness), _us(skew))
        events: list[Event] = []
        rejected: list[Rejection] = []
        for message_id, fields in messages:
            try:
                row = decode_event(fields, self.spec.timestamp_field)
            except PushError as error:
                rejected.append(reject(message_id, "undecodable", "e", f"message: {error}"))
                continue
            checked = check_event(message_id, row, self.spec, limits)
            (rejected if isinstance(checked, Rejection) else events).append(checked)  # type: ignore[arg-type]
        return events, rejected

    def _wait_for_ingest(self, events: list[Event]) -> frozenset[str]:
        """The events `parity ingest` had still not applied after waiting up to
        `ingest_wait_ms` (all of them at once when its group does not exist): their scores may
        miss their own event and recent ones. Marked `ingest_behind` in the output."""
        if not events or not self.waits_for_ingest:
            return frozenset()
        ids = [e.message_id for e in events]
        wait = self.ingest_wait_ms
        return frozenset(wait_for_ingest(self.client, self.key, self.ingest_group, ids, wait))

    def _score(self, events: list[Event]) -> tuple[list[Scored], list[Rejection]]:
        columns: dict[str, list[Any]] = {k: [e.keys[k] for e in events] for k in self.spec.keys}
        columns.update({n: [e.inputs[n] for e in events] for n in self.spec.inputs})
        times = [e.event_us for e in events]  # the event's own time: it counts itself
        response = read_at(
            self.store.online_store,
            self.store.project,
            self.request,
            self.schema.for_read(columns),
            times,
        )
        rejected: list[Rejection] = []
        checks = [self._answered] + ([] if self.score_unknown else [self._known])
        for check in checks:
            keep, refused = check(events, response)
            if refused:
                rejected += refused
                events = [events[i] for i in keep]
                columns = {n: [c[i] for i in keep] for n, c in columns.items()}
                response = take_rows(response, keep)
        if not events:
            return [], rejected
        ids = [e.message_id for e in events]
        response, keep, refused = transformed(response, self.request, ids)
        if refused:
            rejected += refused
            events = [events[i] for i in keep]
            columns = {n: [c[i] for i in keep] for n, c in columns.items()}
            if not events:
                return [], rejected
        outputs, failed = self._predict(events, columns, response)
        scored = [
            Scored(
                event,
                {name: values[row] for name, values in outputs.items()},
                {**event.keys},
                {name: values[row] for name, values in response.values.items()},
            )
            for row, event in enumerate(events)
            if row not in failed
        ]
        return scored, rejected + list(failed.values())

    def _answered(
        self, events: list[Event], response: OnlineResponse
    ) -> tuple[list[int], list[Rejection]]:
        """Events stamped before a materialization of a windowed view (its tiles answer reads
        from the run's end on) or before the stored row of a plain view (only the newest is
        kept): refused (null) features, a silent guess if scored. Dead-lettered `late`."""
        views = [(v.view, v.output_names) for v in self.request.views]
        found = {str(s) for _, names in views for n in names for s in response.statuses[n]}
        if "OUTSIDE_MAX_AGE" not in found:
            return list(range(len(events))), []
        windowed = [(view.name, names) for view, names in views if view.is_aggregated]
        plain = [(view.name, names) for view, names in views if not view.is_aggregated]
        online = cast("TileStore", self.store.online_store)
        before = {}
        for name, _ in windowed:
            prepared = online.materialized(self.store.project, name)
            if prepared is not None:
                before[name] = prepared[1]
        field = self.spec.timestamp_field
        kept, rejected = late_windows(events, windowed, response.statuses, before, field)
        rows, stale = late_rows(events, plain, response.statuses, response.event_timestamps, field)
        gone = {r.message_id for r in rejected}
        rejected += [r for r in stale if r.message_id not in gone]
        return sorted(set(kept) & set(rows)), rejected

    def _known(
        self, events: list[Event], response: OnlineResponse
    ) -> tuple[list[int], list[Rejection]]:
        views = [(v.view.join_keys, v.output_names) for v in self.request.views]
        keep: list[int] = []
        rejected: list[Rejection] = []
        for row, event in enumerate(events):
            key = unknown_key(views, response.statuses, row)
            if key is None:
                keep.append(row)
                continue
            text = (
                f"stream event {event.message_id}: entity {key}={event.keys[key]!r} is unknown "
                f"to every feature view of '{self.version.feature_service}' that it keys; its "
                "features would all be null (run with --score-unknown to score it anyway)"
            )
            rejected.append(reject(event.message_id, "unknown_entity", key, text))
        return keep, rejected

    def _predict(
        self, events: list[Event], columns: dict[str, list[Any]], response: OnlineResponse
    ) -> tuple[dict[str, list[Any]], dict[int, Rejection]]:
        """Every row's outputs (None for a failed row), and the rows the model refused: if the
        whole batch fails, each row is predicted alone, so one bad row fails only itself."""
        given = {n: response.entities.get(n, columns[n]) for n in columns}
        try:
            return self._predict_rows(response.values, given), {}
        except Exception as batch_error:  # any model failure, as the model server: never a crash
            log.warning("predict stream: batch failed (%r); scoring row by row", batch_error)
        outputs: dict[str, list[Any]] = {n: [None] * len(events) for n in self.output_names}
        failed: dict[int, Rejection] = {}
        for row, event in enumerate(events):
            one = {n: [v[row]] for n, v in response.values.items()}
            try:
                result = self._predict_rows(one, {n: [v[row]] for n, v in given.items()})
            except Exception as error:
                why = f"{type(error).__name__}: {error}"
                text = f"stream event {event.message_id}: model {self.version.ref}: {why}"
                failed[row] = reject(event.message_id, "predict_failed", "model", text)
                continue
            for name, values in result.items():
                outputs[name][row] = values[0]
        return outputs, failed

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.deployment.output_names)

    def _predict_rows(
        self, values: dict[str, list[Any]], given: dict[str, list[Any]]
    ) -> dict[str, list[Any]]:
        item, _ = self.deployment.assemble_features(values, given)
        (result,) = self.deployment.predict_now([item])
        return {name: output.tolist() for name, output in result.items()}

    # --- publishing ---------------------------------------------------------------------------

    def _publish(
        self,
        messages: list[Message],
        scored: list[Scored],
        rejected: list[Rejection],
        behind: frozenset[str] = frozenset(),
    ) -> set[str]:
        """One script: publish every score and dead letter still pending, acknowledge them."""
        raw = {message_id: fields.get(EVENT_FIELD) for message_id, fields in messages}
        args: list[Any] = [self.group]
        first = self.deployment.output_name
        version = self.version.version
        for item in scored:
            unapplied = item.event.message_id in behind
            fields = score_fields(
                item.event, self.version.name, version, item.outputs, first, unapplied
            )
            args += entry_args(item.event.message_id, SINK, fields)
        for rejection in rejected:
            letter = dead_letter_fields(rejection, raw[rejection.message_id])
            args += entry_args(rejection.message_id, DEAD, letter)
        handled = {item.event.message_id for item in scored} | {r.message_id for r in rejected}
        for message_id, _ in messages:  # e.g. trimmed from the source: nothing to score
            if message_id not in handled:
                text = f"stream message {message_id} has no fields (trimmed from the stream?)"
                gone = reject(message_id, "undecodable", "e", text)
                rejected.append(gone)
                args += entry_args(message_id, DEAD, dead_letter_fields(gone, None))
        keys = [self.key, self.sink, self.dead_letter]
        published = {_text(i) for i in self._script(keys=keys, args=args)}
        self.stats.scored += sum(1 for s in scored if s.event.message_id in published)
        self.stats.ingest_behind += sum(
            1 for s in scored if s.event.message_id in behind and s.event.message_id in published
        )
        for rejection in rejected:
            if rejection.message_id in published:
                self.stats.dead_lettered += 1
                self.stats.count(rejection.reason)
                log.warning("predict stream: dead letter %s", rejection.error)
        self.stats.duplicates += len(messages) - len(published)
        return published

    def _log(self, scored: list[Scored], published: set[str], seconds: float) -> None:
        if self.prediction_log is None or not scored:
            return
        at = self.store.now()
        latency = seconds * 1000 / max(1, len(scored))
        first = self.deployment.output_name
        for item in scored:
            if item.event.message_id not in published:
                continue  # a previous run published (and logged) it
            outputs = item.outputs
            prediction = outputs[first] if len(outputs) == 1 else outputs
            self.prediction_log.log(
                PredictionRecord(
                    request_id=request_id(item.event.message_id),
                    at=at,
                    model=self.version.name,
                    version=self.version.version,
                    entities=item.entities,
                    features=item.features,
                    prediction=prediction,
                    latency_ms=latency,
                    alias=self.alias,
                    role="stream",
                )
            )

    def run(
        self, stop: Callable[[], bool] = lambda: False, until_idle: bool = False
    ) -> StreamStats:
        """Batches until `stop()` (or, `until_idle`, a read that finds nothing). A store that
        cannot be reached (Redis down, the online store unavailable) is waited for: the batch
        in hand stays pending and is re-read, from this consumer's pending list, once it is back."""
        pause = RETRY_FIRST_S
        while not stop():
            try:
                handled = self.run_once()
            except _unreachable() as error:
                self.stats.retries += 1
                log.warning("predict stream: %s; retrying in %.1f s", error, pause)
                self._own_pending = True  # the batch in hand was not acknowledged
                deadline = time.monotonic() + pause  # waited in steps: a stop is not delayed
                while not stop() and time.monotonic() < deadline:
                    time.sleep(min(0.1, pause))
                pause = min(pause * 2, RETRY_MAX_S)
                continue
            except _response_error() as error:
                if "NOGROUP" not in str(error):
                    raise
                log.warning(  # Redis restarted without its data, or the group was deleted
                    "predict stream: group '%s' of '%s' is gone; created again at the stream's "
                    "start, as a new worker would",
                    self.group,
                    self.key,
                )
                self.stats.retries += 1
                self._ensure_group()
                self._own_pending = True
                continue
            pause = RETRY_FIRST_S
            if handled == 0 and until_idle:
                break
        return self.stats


def load_model(store: FeatureStore, ref: str) -> tuple[ModelVersion, Deployment]:
    """The version `ref` names now (an alias, a version, or the default alias), loaded once."""
    from parity.inference.metrics import ModelMetrics
    from parity.inference.server import ModelTarget

    target = ModelTarget.parse(ref)
    registry = store.models
    default = store.config.models.serving.default_alias
    if target.version is not None:
        version = registry.get_version(target.name, target.version)
    elif target.alias is not None:
        version = registry.get_alias(target.name, target.alias)
    elif default is not None:
        try:
            version = registry.get_alias(target.name, default)
        except AliasNotFound:
            version = registry.resolve(target.name)
    else:
        version = registry.resolve(target.name)
    model = registry.load(version)
    metrics = ModelMetrics().for_version(version.name, version.version)
    return version, Deployment(version, model, BatchSettings(max_batch_size=1), metrics)


def _alias_of(store: FeatureStore, ref: str) -> str | None:
    """The alias the log records: the ref's, or the default alias when it names none."""
    from parity.inference.server import ModelTarget

    target = ModelTarget.parse(ref)
    if target.alias is not None or target.version is not None:
        return target.alias
    return store.config.models.serving.default_alias


def _retrieval(
    store: FeatureStore, version: ModelVersion, deployment: Deployment
) -> tuple[RetrievalRequest, RequestSchema]:
    from parity.inference.request_fields import request_schema
    from parity.offline.request import resolve

    service = version.feature_service
    if service is None:
        raise BadRequest(
            f"model {version.ref} was registered without a feature service, so a stream cannot "
            "fetch its features; register it with feature_service="
        )
    request = store._online_request(service, False)  # resolved, on-demand functions bound
    schema = request_schema(
        version.ref, resolve(store.registry.catalog, service), deployment.model.signature
    )
    return request, schema


def _spec(
    model: str, source: StreamSource, request: RetrievalRequest, schema: RequestSchema
) -> EventSpec:
    keys: dict[str, str] = {}
    for view_request in request.views:
        view = view_request.view
        keys.update(zip(view.join_keys, key_types(view), strict=True))
    return EventSpec(model, source.batch_source.timestamp_field, keys, dict(schema.inputs))


def _unreachable() -> tuple[type[BaseException], ...]:
    """Errors of a store that is down or unreachable: retried, not fatal."""
    from redis.exceptions import BusyLoadingError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from parity.errors import OnlineStoreUnavailable

    return (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OnlineStoreUnavailable)


def _response_error() -> type[BaseException]:
    from redis.exceptions import ResponseError

    return ResponseError


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _us(span: Any) -> int:
    return int(span.total_seconds() * 1_000_000)


def _check_positive(name: str, value: int, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise BadRequest(f"{name} must be a whole number of at least {least}, not {value!r}")


def _crash_point(name: str) -> None:
    """Tests of crash safety set PARITY_STREAM_PREDICT_CRASH=<point> to SIGKILL the worker."""
    if os.environ.get("PARITY_STREAM_PREDICT_CRASH") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
