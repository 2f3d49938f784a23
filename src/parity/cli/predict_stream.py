"""`parity predict stream`: score a stream source's events and publish the scores."""

from __future__ import annotations

import gc
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from parity.cli.common import (
    ClaimIdleOption,
    ConsumerOption,
    RedisUrlOption,
    RepoOption,
    UntilIdleOption,
    command,
    err,
    store_at,
)
from parity.cli.predict import predict_app

if TYPE_CHECKING:
    from parity.inference.stream_predict_rules import StreamStats


@predict_app.command("stream")
@command
def stream(
    model: Annotated[str, typer.Option(help="The model: fraud@champion, fraud/3 or fraud.")],
    source: Annotated[str, typer.Option(help="The stream source whose events to score.")],
    sink: Annotated[str, typer.Option(help="The Redis stream key the scores are added to.")],
    repo: RepoOption = Path("."),
    group: Annotated[
        str | None,
        typer.Option(help="Consumer group (default parity:<project>:predict:<sink>)."),
    ] = None,
    consumer: ConsumerOption = None,
    batch: Annotated[int, typer.Option(min=1, help="Messages per micro-batch, at most.")] = 256,
    dead_letter: Annotated[
        str | None, typer.Option(help="Stream of refused events (default <sink>:dead).")
    ] = None,
    redis_url: RedisUrlOption = None,
    until_idle: UntilIdleOption = False,
    claim_idle_ms: ClaimIdleOption = 60_000,
    ingest_wait_ms: Annotated[
        int,
        typer.Option(
            min=0,
            help="Wait at most this long per batch for `parity ingest` to apply its events "
            "before reading features; then score them marked ingest_behind (0: never wait).",
        ),
    ] = 1_000,
    score_unknown: Annotated[
        bool,
        typer.Option(help="Score events of entities no feature view knows (default: dead letter)."),
    ] = False,
    model_threads: Annotated[
        int,
        typer.Option(min=1, help="Threads the model's library may use (OpenMP, BLAS)."),
    ] = 1,
) -> None:
    """Score each event of a stream source with a model, exactly once (docs/lifecycle.md)."""
    from parity.inference.app import prediction_logger
    from parity.inference.stream_predict import StreamPredictor

    store = store_at(repo)
    prediction_log = prediction_logger(store)
    worker = StreamPredictor(
        store,
        model,
        source,
        sink,
        group=group,
        consumer=consumer,
        dead_letter=dead_letter,
        batch_size=batch,
        block_ms=100 if until_idle else 1_000,
        claim_idle_ms=claim_idle_ms,
        ingest_wait_ms=ingest_wait_ms,
        score_unknown=score_unknown,
        prediction_log=prediction_log,
        client=_client(redis_url),
    )
    limit_threads(model_threads)
    err.print(
        f"Scoring stream source '{source}' with {worker.version.ref} into '{sink}' as consumer "
        f"'{worker.consumer}' of group '{worker.group}'"
    )
    gc.freeze()  # as `parity ingest`: keep start-up's objects out of the collector's passes
    gc.set_threshold(100_000, 50, 100)
    stop = threading.Event()  # SIGTERM (a process manager's stop) ends as Ctrl-C does: the
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # log is flushed, not lost
    try:
        worker.run(stop=stop.is_set, until_idle=until_idle)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if prediction_log is not None:
            prediction_log.close()
    err.print(summary(worker.stats))


def _client(redis_url: str | None) -> Any:
    """A client of `redis_url`, or None: the online store's Redis (or the local one)."""
    if not redis_url:
        return None
    from parity.errors import InvalidOption
    from parity.online.redis_store import redis_module
    from parity.redaction import redact

    try:
        return redis_module().Redis.from_url(redis_url)
    except ValueError as error:
        raise InvalidOption(f"--redis-url {redact(redis_url)!r}: {error}") from None


def summary(stats: StreamStats) -> str:
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(stats.by_reason.items())) or "none"
    return (
        f"published {stats.scored} scores in {stats.batches} batches; {stats.dead_lettered} "
        f"dead letters ({reasons}); {stats.duplicates} already published; "
        f"{stats.ingest_behind} scored before `parity ingest` had applied them (ingest_behind); "
        f"{stats.retries} retries"
    )


def limit_threads(count: int) -> None:
    """Cap the thread pools of the model's libraries (OpenMP, BLAS) for this process. A micro-batch
    is small: starting a pool's threads costs more than they save (a 50-tree scikit-learn HGB
    predicting 200 rows: 8.6 ms on its default pool, 1.1 ms on one thread, on 2 cores)."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # no library with a pool is installed, then
        return
    threadpool_limits(limits=count)


__all__ = ["predict_app", "stream"]
