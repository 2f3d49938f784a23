"""A rollout of the fraud model on simulated time, through the real parts: the model server
(in-process, routing and shadowing as in production), its prediction log (Parquet), the
controller and its gates. Only the clock and the payments are simulated.

A rollout lasts minutes to hours; the demo cannot wait for it. Here each simulated minute sends
`--rate` payments, resampled from the example's recorded payments of the last week (an
account, one of its devices, an amount), one payment per request, to `fraud@champion` on a
`ModelServer` whose log timestamps come from the simulated clock. At the end of each minute
the shadow queue is drained, the log is written to Parquet, and one controller tick
(`Rollouts.step(now=...)`) checks the gates over that log, advancing, promoting or aborting.
`python -m parity.examples.fraud.rollout_sim` runs the applied rollout `fraud_rollout` for the
version behind `fraud@challenger` and prints its timeline. Needs the `ml` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from parity.deploy.state import RolloutEvent, RolloutState
    from parity.feature_store import FeatureStore
    from parity.inference.predlog import PredictionRecord

OWNER = "rollout-sim"  # the controller's lease owner and the actor of the rollout's events
POOL_DAYS = 7  # payments are resampled from the last week of recorded ones
CHUNK = 50  # payments in flight at once (they batch like live traffic)


@dataclass(frozen=True)
class PaymentPool:
    """The recorded payments traffic is drawn from, as columns."""

    account_id: np.ndarray[Any, Any]
    device_id: np.ndarray[Any, Any]
    amount: np.ndarray[Any, Any]

    def __len__(self) -> int:
        return int(self.account_id.size)

    def draw(self, rng: np.random.Generator, count: int) -> list[dict[str, Any]]:
        """`count` payments drawn with replacement: busy accounts pay more often, as they do."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        picked = rng.integers(0, len(self), size=count)
        return [
            {
                "account_id": int(self.account_id[i]),
                "device_id": int(self.device_id[i]),
                "amount": float(self.amount[i]),
            }
            for i in picked
        ]


def payment_pool(path: str | Path, *, days: int = POOL_DAYS) -> PaymentPool:
    """The payments of the last `days` days of the transactions file at `path`."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    table = pq.read_table(path, columns=["account_id", "device_id", "event_timestamp", "amount"])
    if table.num_rows == 0:
        raise ValueError(f"{path} holds no payments to simulate traffic from")
    end = pc.max(table["event_timestamp"]).as_py()
    recent = table.filter(pc.greater(table["event_timestamp"], end - timedelta(days=days)))
    return PaymentPool(
        account_id=recent["account_id"].to_numpy(),
        device_id=recent["device_id"].to_numpy(),
        amount=recent["amount"].to_numpy(),
    )


class SimClock:
    """Simulated UTC time: moves only when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs a timezone-aware start")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, at: datetime) -> None:
        with self._lock:
            if at < self._now:
                raise ValueError(f"simulated time cannot go back from {self._now} to {at}")
            self._now = at


class TickSink:
    """The prediction log's Parquet sink, closed (its open segment becomes a Parquet file) by
    `rotate()` and reopened on the next write: each controller tick reads complete files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sink: Any = None
        self._lock = threading.Lock()
        self.files = 0

    def write(self, records: Sequence[PredictionRecord]) -> None:
        from parity.inference.predlog import ParquetLogSink

        if not records:
            return
        with self._lock:
            if self._sink is None:
                self._sink = ParquetLogSink(self.directory)
            self._sink.write(records)

    def rotate(self) -> None:
        with self._lock:
            sink, self._sink = self._sink, None
            if sink is not None:
                sink.close()
                self.files += 1

    def close(self) -> None:
        self.rotate()


@dataclass
class SimResult:
    """How a simulated rollout went: its final state, its events, and the traffic it took."""

    state: RolloutState
    events: list[RolloutEvent]
    minutes: int
    requests: int = 0
    routes: dict[str, int] = field(default_factory=dict)  # 'champion', 'canary', 'unrouted'
    shadows: int = 0  # mirrored predictions finished
    wall_seconds: float = 0.0


def sim_start(now: datetime) -> datetime:
    """Where simulated time starts: the next whole minute after `now` (UTC)."""
    now = now.astimezone(UTC)
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


async def simulate(
    store: FeatureStore,
    rollout: str = "fraud_rollout",
    *,
    rate: int = 200,
    max_minutes: int = 90,
    seed: int = 7,
    start: datetime | None = None,
    pool: PaymentPool | None = None,
    stop_at_end: bool = False,
    started: RolloutState | None = None,
) -> SimResult:
    """Start the applied rollout `rollout` at `start` (the next minute by default) and run it
    minute by minute until it is promoted or aborted, or `max_minutes` have passed (then, with
    `stop_at_end`, abort it, saying so, rather than leave it running). With `started`, drive
    that already started rollout instead (e.g. one a training job started)."""
    if rate < 1 or max_minutes < 1:
        raise ValueError(f"rate and max_minutes must be at least 1, got {rate}, {max_minutes}")
    from parity.deploy.service import Rollouts
    from parity.deploy.state import ACTIVE

    began = time.perf_counter()
    clock = SimClock(start or sim_start(_after_last_rollout(store.now(), store.rollouts.list())))
    rollouts = Rollouts(store, clock=clock.now)
    state = started or rollouts.start(rollout, actor=OWNER)
    pool = pool or payment_pool(store.repo_path / "data" / "transactions.parquet")
    result = SimResult(state, [], 0)
    await _run(store, rollouts, clock, pool, np.random.default_rng(seed), rate, max_minutes, result)
    if stop_at_end and result.state.status in ACTIVE:
        result.state = rollouts.abort(
            state.model,
            reason=f"the simulation ended after {result.minutes} simulated minutes",
            actor=OWNER,
        )
    result.events = rollouts.history(state.model, state.id)
    result.wall_seconds = time.perf_counter() - began
    return result


async def _run(
    store: FeatureStore,
    rollouts: Any,
    clock: SimClock,
    pool: PaymentPool,
    rng: np.random.Generator,
    rate: int,
    max_minutes: int,
    result: SimResult,
) -> None:
    """The minutes: traffic, the shadow queue drained, the log written, one controller tick."""
    from parity.deploy.state import ACTIVE

    sink = TickSink(_log_dir(store))
    server, logger = _server(store, rollouts, clock, sink)
    state = result.state
    try:
        await _warm_up(server, state, pool)
        server.refresh_routes()
        minute_start = clock.now()
        while result.minutes < max_minutes and state.status in ACTIVE:
            payments = pool.draw(rng, rate)
            await _one_minute(server, _target(state), payments, clock, minute_start, result)
            await server.shadows.drain()
            logger.flush()
            sink.rotate()
            minute_start += timedelta(minutes=1)
            clock.set(minute_start)
            rollouts.step(now=minute_start, owner=OWNER)
            server.refresh_routes()
            state = rollouts.status(state.model)
            result.minutes += 1
        result.shadows = server.shadows.done
    finally:
        await server.close()
        logger.close()
    result.state = state


async def _one_minute(
    server: Any,
    target: Any,
    payments: list[dict[str, Any]],
    clock: SimClock,
    minute_start: datetime,
    result: SimResult,
) -> None:
    """Send the minute's payments, CHUNK at a time, spread over the simulated minute."""
    chunks = max(1, -(-len(payments) // CHUNK))
    for n in range(chunks):
        clock.set(minute_start + timedelta(seconds=60 * n / chunks))
        batch = payments[n * CHUNK : (n + 1) * CHUNK]
        answers = await asyncio.gather(
            *(
                server.predict_entities(
                    target,
                    {key: [value] for key, value in payment.items()},
                    request_id=f"{result.state.id}-{result.requests + i}",
                )
                for i, payment in enumerate(batch)
            )
        )
        result.requests += len(batch)
        for answer in answers:
            route = getattr(answer, "route", None) or "unrouted"
            result.routes[route] = result.routes.get(route, 0) + 1


def _after_last_rollout(now: datetime, states: Sequence[RolloutState]) -> datetime:
    """`now`, or the end of the latest simulated rollout if that is later: two simulations must
    not log into the same minutes, or one's rows would count in the other's windows."""
    ends = [state.updated_at for state in states]
    return max([now, *ends])


async def _warm_up(server: Any, state: RolloutState, pool: PaymentPool) -> None:
    """Load both versions and answer one payment with each, by version (never routed, and
    logged without a role, so no gate counts them): a long-running server is warm, and a
    first request's loading time is not what the latency gate compares."""
    from parity.inference.server import ModelTarget

    payment = {key: [value] for key, value in pool.draw(np.random.default_rng(0), 1)[0].items()}
    for version in (state.champion, state.candidate):
        await server.predict_entities(ModelTarget(state.model, version), payment)


def _log_dir(store: FeatureStore) -> Path:
    configured = store.config.models.serving.prediction_log
    path = Path(configured) if configured is not None else Path("data/prediction_log")
    return path if path.is_absolute() else store.repo_path / path


def _server(store: FeatureStore, rollouts: Any, clock: SimClock, sink: TickSink) -> Any:
    """A model server like `parity serve-models` builds, routed by `rollouts`, logging to
    `sink` with simulated timestamps."""
    from parity.inference.deployment import BatchSettings
    from parity.inference.metrics import ModelMetrics
    from parity.inference.predlog import PredictionLogger
    from parity.inference.server import ModelServer

    serving = store.config.models.serving
    logger = PredictionLogger(sink)
    server = ModelServer(
        store.models,
        metrics=ModelMetrics(None),
        features=store,
        prediction_log=logger,
        default_alias=serving.default_alias,
        batching=BatchSettings(serving.batching.max_batch_size, serving.batching.max_latency_ms),
        routes=rollouts.routes,
        now=clock.now,
    )
    return server, logger


def _target(state: RolloutState) -> Any:
    from parity.inference.server import ModelTarget

    return ModelTarget(state.model, None, state.definition.champion_alias)


# --- the command ------------------------------------------------------------------------------


def report(result: SimResult, *, width: int = 120) -> list[str]:
    """What the command prints: the outcome, the traffic, the timeline."""
    from parity.deploy.timeline import build_timeline, timeline_lines

    state = result.state
    routed = ", ".join(f"{k} {v:,}" for k, v in sorted(result.routes.items()))
    outcome = {
        "promoted": f"PROMOTED: fraud@{state.definition.champion_alias} is now version "
        f"{state.candidate}",
        "aborted": f"ROLLED BACK: version {state.candidate} answers nothing; the champion "
        f"(version {state.champion}) is untouched",
    }.get(state.status, f"still {state.status} at step {state.step} after {result.minutes} min")
    lines = [
        f"Rollout {state.id}: version {state.candidate} against champion version "
        f"{state.champion}, {result.minutes} simulated minutes "
        f"({result.wall_seconds:.1f} s of real time)",
        f"  {result.requests:,} payments ({routed}), {result.shadows:,} shadow predictions",
        f"  {outcome}",
    ]
    if state.reason:
        lines.append(f"  reason: {state.reason}")
    lines.append("  timeline (simulated time since the start):")
    lines.extend(timeline_lines(build_timeline(result.events, state), width=width))
    return lines


def main(argv: list[str] | None = None) -> None:
    import shutil

    from parity.errors import ParityError
    from parity.feature_store import FeatureStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".")
    parser.add_argument("--rollout", default="fraud_rollout", help="An applied Rollout's name.")
    parser.add_argument("--rate", type=int, default=200, help="Payments per simulated minute.")
    parser.add_argument(
        "--max-minutes", type=int, default=90, help="Simulated minutes before it stops."
    )
    parser.add_argument(
        "--leave-running",
        action="store_true",
        help="Leave a rollout still running after --max-minutes (default: abort it, saying why).",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--html", help="Also write the timeline as an HTML page here.")
    args = parser.parse_args(argv)
    if args.rate < 1 or args.max_minutes < 1:
        parser.error("--rate and --max-minutes must be at least 1")
    try:
        with FeatureStore(args.repo) as store:
            result = asyncio.run(
                simulate(
                    store,
                    args.rollout,
                    rate=args.rate,
                    max_minutes=args.max_minutes,
                    seed=args.seed,
                    stop_at_end=not args.leave_running,
                )
            )
    except ParityError as error:  # one line, as the CLI prints it
        print(f"Error [{error.code}]: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    width = shutil.get_terminal_size((120, 24)).columns
    print("\n".join(report(result, width=width)))
    if args.html:
        from parity.deploy.timeline import render_timeline_html

        Path(args.html).write_text(render_timeline_html(result.events, result.state))
        print(f"  wrote {args.html}: the timeline as a page (opens offline)")


if __name__ == "__main__":
    main()
