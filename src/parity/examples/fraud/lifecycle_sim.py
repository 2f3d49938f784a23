"""The closed loop of the fraud example on simulated time, through the real parts: monitoring
(drift runs, delayed-label performance, alerts), the retrain triggers, the training-job runner,
the model registry and the rollout controller. Only the clock, the world and its payments are
simulated.

Simulated days pass one at a time from the store's clock. Each day the payments of the day (the
recorded world continued by world.py, with a bust-out ring from `shift_at`) are scored by
fraud@champion and logged as the model server logs them; when a monitoring week ends, drift is run
on it; when a week's labels are final (the monitor's label delay after it), its performance is
computed; then `store.triggers.evaluate(now=day)` decides and `store.jobs.run_pending` runs what
it submitted. A started rollout is driven minute by minute by rollout_sim's machinery (a real
in-process model server, its prediction log, the controller's gates). The loop ends a few days
after the candidate is promoted (or when the world ends), and fails loudly unless exactly one
retrain fired. `python -m parity.examples.fraud.lifecycle_sim --html loop.html` runs it. Needs
the `ml` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parity.examples.fraud import world
from parity.examples.fraud.rollout_sim import PaymentPool, SimClock, SimResult, TickSink

if TYPE_CHECKING:
    import pandas as pd

    from parity.deploy.retrain_state import RetrainDecision
    from parity.feature_store import FeatureStore
    from parity.jobs.state import JobRecord
    from parity.models.store import ModelVersion

DAY = timedelta(days=1)
WEEK = timedelta(days=7)  # the fraud monitor's window: drift and performance are weekly
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OWNER = "lifecycle-sim"
ROLLOUT_RATE = 200  # payments per simulated minute while a rollout runs (rollout_sim's default)
ROLLOUT_MINUTES = 120  # a rollout still running after this is aborted, saying so
AFTER_DAYS = 3  # simulated days after the promotion: the loop shows it does not retrain again
VIEWS = ("account_profile", "device_profile", "account_txn_stats")  # what fraud_model_v1 reads


class LoopFailed(RuntimeError):
    """The loop did not close as it must: not exactly one retrain, or no promotion. `result`
    holds what it did (for the report), when it got that far."""

    def __init__(self, message: str, result: LoopResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class LoopEvent:
    """One line of the loop's narrative: what happened at simulated time `at`."""

    at: datetime
    kind: str  # start shift drift alert labels decision job registered rollout promoted ...
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoopResult:
    """What the loop did, for the narrative, the report and the checks."""

    model: str
    start: datetime
    shift_at: datetime
    end: datetime
    champion: ModelVersion
    world: world.WorldSummary
    events: list[LoopEvent] = field(default_factory=list)
    drift_weeks: list[dict[str, Any]] = field(default_factory=list)
    final_weeks: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[RetrainDecision] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    rollout: SimResult | None = None
    candidate: ModelVersion | None = None
    promoted: bool = False
    pattern: dict[str, dict[str, float]] = field(default_factory=dict)
    drift_html: str | None = None

    @property
    def retrains(self) -> int:
        """Retrains fired in the loop: decisions that fired (each submits one job)."""
        return sum(1 for d in self.decisions if d.action == "fire")


def week_floor(at: datetime) -> datetime:
    """The start of the epoch-aligned week holding `at` (monitoring's weekly windows)."""
    return EPOCH + ((at - EPOCH) // WEEK) * WEEK


def plan_shift(start: datetime) -> datetime:
    """Where the new pattern starts: the first monitoring week starting a week or more after
    `start`, so one whole ordinary week is logged first (the reference of the drop)."""
    floor = week_floor(start + WEEK)
    return floor if floor == start + WEEK else floor + WEEK


# --- the loop ---------------------------------------------------------------------------------


class Loop:
    """The simulated-time driver. `narrate` gets each event as it happens."""

    def __init__(
        self,
        store: FeatureStore,
        clock: SimClock,
        *,
        model: str = "fraud",
        shift: world.Shift | None = None,
        seed: int = 11,
        rate: int = ROLLOUT_RATE,
        narrate: Callable[[LoopEvent], None] | None = None,
    ) -> None:
        self.store, self.clock, self.model = store, clock, model
        self.shift, self.seed, self.rate = shift or world.Shift(), seed, rate
        self.narrate = narrate or (lambda event: None)
        self.monitor = store.monitoring.monitor_for(model)
        if self.monitor is None:
            raise LoopFailed(f"no applied Monitor watches model '{model}': apply the repo first")
        self.label_delay: timedelta = self.monitor.label_delay or timedelta(0)
        self._monitor_name: str = self.monitor.name
        self._seen: set[tuple[str, str, datetime]] = set()
        self._scored: tuple[int, pd.DataFrame] | None = None
        self._sink = TickSink(store.monitoring.prediction_log_folder())

    def run(self, *, max_days: int | None = None, after_days: int = AFTER_DAYS) -> LoopResult:
        """Extend the world, then pass simulated days until `after_days` after a promotion (or
        the world's end); the result. Raises LoopFailed unless exactly one retrain fired."""
        result = self._begin()
        days = max_days or int((result.world.end - result.start) / DAY)
        remaining: int | None = None
        for _ in range(days):
            self._day(result)
            if result.promoted and remaining is None:
                remaining = after_days
            if remaining is not None:
                if remaining == 0:
                    break
                remaining -= 1
            if result.rollout is not None and not result.promoted:
                break  # the candidate was rolled back: the loop did not close
        self._sink.close()
        result.end = self.clock.now()
        result.decisions = self._decisions(result.start)
        result.jobs = self._jobs(result.start)
        try:
            self._check(result)
        except LoopFailed as error:
            raise LoopFailed(str(error), result) from None
        return result

    def _emit(self, result: LoopResult, kind: str, text: str, **data: Any) -> None:
        event = LoopEvent(self.clock.now(), kind, text, data)
        result.events.append(event)
        self.narrate(event)

    def _begin(self) -> LoopResult:
        store, start = self.store, self.clock.now()
        recorded = world.data_end(store.repo_path / "data")
        if recorded > start:
            raise LoopFailed(
                f"the repo's payments already run to {recorded.isoformat()}, after the loop's "
                f"start {start.isoformat()}: the loop continues a recorded world once; run it "
                "on a fresh repo (parity init fraud_detection)"
            )
        shift_at = plan_shift(start)
        until = shift_at + 3 * WEEK + self.label_delay
        summary = world.extend(
            store.repo_path / "data",
            until=until,
            shift_at=shift_at,
            shift=self.shift,
            seed=self.seed,
        )
        champion = store.models.resolve(f"{self.model}@champion")
        result = LoopResult(self.model, start, shift_at, until, champion, summary)
        self._emit(
            result,
            "start",
            f"the loop starts: {self.model}@champion is {champion.ref}; the world goes on "
            f"until {until:%Y-%m-%d} ({summary.rows['transactions']:,} payments ahead)",
        )
        return result

    def _day(self, result: LoopResult) -> None:
        """One simulated day: traffic, then monitoring, triggers and jobs as of its end."""
        begin = self.clock.now()
        end = begin + DAY
        self._log_traffic(begin, end)
        self.clock.set(end)
        if begin < result.shift_at <= end:
            text = _shift_text(result.world.shift)
            self._emit(result, "shift", text, at=result.shift_at.isoformat())
        for week_end in _boundaries(begin, end):
            self._drift(result, week_end)
        for week_end in _boundaries(begin - self.label_delay, end - self.label_delay):
            self._labels(result, week_end)
        self._trigger(result)

    # --- traffic ------------------------------------------------------------------------------

    def _scores(self, version: ModelVersion) -> pd.DataFrame:
        """Every payment of the extended world from now on, with point-in-time features and
        `version`'s score (scored once per champion: the features are the same every day)."""
        if self._scored is not None and self._scored[0] == version.version:
            return self._scored[1]
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from parity.examples.fraud.model import inputs

        path = self.store.repo_path / "data" / "transactions.parquet"
        columns = ["transaction_id", "account_id", "device_id", "event_timestamp", "amount"]
        table = pq.read_table(path, columns=columns)
        table = table.filter(pc.greater_equal(table["event_timestamp"], self.clock.now()))
        service = version.feature_service or "fraud_model_v1"
        frame = self.store.get_historical_features(table.to_pandas(), service).to_pandas()
        frame = frame.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
        loaded = self.store.models.load(version)
        frame["score"] = np.asarray(loaded.predict(inputs(frame)), dtype=np.float64)
        self._scored = (version.version, frame)
        return frame

    def _log_traffic(self, begin: datetime, end: datetime) -> int:
        """Log the payments in [begin, end) as fraud@champion scored them, request id
        `txn-<transaction_id>` (the monitor's label join), then close the day's log file."""
        from parity.inference.predlog import PredictionRecord

        version = self.store.models.resolve(f"{self.model}@champion")
        frame = self._scores(version)
        day = frame[(frame["event_timestamp"] >= begin) & (frame["event_timestamp"] < end)]
        keys = ("account_id", "device_id", "amount")
        features = [c for c in day.columns if c not in (*keys, "transaction_id", "score")]
        features.remove("event_timestamp")
        records = [
            PredictionRecord(
                request_id=f"txn-{row['transaction_id']}",
                at=row["event_timestamp"].to_pydatetime(),
                model=version.name,
                version=version.version,
                alias="champion",
                entities={k: _json_ready(row[k]) for k in keys},
                features={k: _json_ready(row[k]) for k in features},
                prediction=float(row["score"]),
                latency_ms=0.0,
            )
            for row in day.to_dict("records")
        ]
        self._sink.write(records)
        self._sink.rotate()
        return len(records)

    # --- monitoring ---------------------------------------------------------------------------

    def _drift(self, result: LoopResult, week_end: datetime) -> None:
        """Drift of the week that just ended, recorded (it steps the monitor's drift alerts)."""
        start = week_end - WEEK
        report = self.store.monitoring.drift(
            f"{self.model}@champion", since=start, until=week_end, window=WEEK
        )
        weeks = [w for w in report.windows if w.start == start and w.end == week_end]
        if not weeks:
            return
        week = weeks[-1]
        drifted = [c.column for c in week.columns if c.drifted]
        row: dict[str, Any] = {"start": start, "end": week_end, "share": week.share}
        row |= {"drifted": week.drifted, "columns": drifted}
        result.drift_weeks.append(row)
        verdict = "DRIFT" if week.drifted else "no drift"
        share = "n/a" if week.share is None else f"{week.share:.0%}"
        text = f"drift of the week {start:%m-%d}..{week_end:%m-%d}: {share} of columns ({verdict})"
        if week.drifted:
            text += ": " + ", ".join(drifted[:6]) + ("..." if len(drifted) > 6 else "")
            if result.drift_html is None:
                result.drift_html = self.store.monitoring.drift_report_html(report)
        self._emit(result, "drift", text, **_plain_row(row))
        self._alerts(result, week_end)

    def _alerts(self, result: LoopResult, at: datetime) -> None:
        """Narrate the monitor's alert transitions evaluated at `at` (each once)."""
        for event in self.store.monitoring.alerts(monitor=self._monitor_name, limit=20):
            key = (event.rule, event.state, event.at)
            if event.at == at and key not in self._seen:
                self._seen.add(key)
                self._emit(
                    result,
                    "alert",
                    f"alert {event.rule} {event.state} ({event.signal} = {event.value:.3g})",
                    rule=event.rule,
                    state=event.state,
                    value=event.value,
                )

    def _labels(self, result: LoopResult, week_end: datetime) -> None:
        """The week whose labels just matured: its performance, final, recorded."""
        start = week_end - WEEK
        if start < result.start:
            return  # before the loop: it measures the weeks it logged
        report = self.store.monitoring.performance(
            f"{self.model}@champion", since=start, until=week_end, window=WEEK
        )
        windows = [w for w in report.windows if w.start == start and w.status == "final"]
        if not windows:
            return
        metrics = windows[-1].metrics
        row = {"start": start, "end": week_end, "version": report.version}
        row |= {k: metrics.get(k) for k in ("precision", "recall", "dollar_weighted_recall")}
        row["labelled"] = windows[-1].labelled
        result.final_weeks.append(row)
        shown = ", ".join(
            f"{k} {_pct(row[k])}" for k in ("dollar_weighted_recall", "recall", "precision")
        )
        self._emit(
            result,
            "labels",
            f"labels final for the week {start:%m-%d}..{week_end:%m-%d}: {shown}",
            **_plain_row(row),
        )
        self._alerts(result, week_end)

    # --- triggers, jobs, rollout ----------------------------------------------------------------

    def _trigger(self, result: LoopResult) -> None:
        now = self.clock.now()
        decisions = self.store.triggers.evaluate(now=now)
        for decision in decisions:
            if decision.model != self.model or decision.action == "hold":
                continue
            why = "; ".join(decision.reasons)
            queued = f" -> job #{decision.job_id}" if decision.job_id is not None else ""
            self._emit(
                result,
                "decision",
                f"retrain decision #{decision.id}: {decision.action.upper()}{queued}: {why}",
                action=decision.action,
                decision=decision.id,
            )
        for job in self.store.jobs.run_pending(now=self.clock.now):
            self._job_done(result, job)

    def _job_done(self, result: LoopResult, job: JobRecord) -> None:
        took = f" in {job.seconds:.1f} simulated s" if job.seconds else ""
        self._emit(
            result,
            "job",
            f"job #{job.id} ({job.name}, {job.reason}) {job.status}{took}"
            + (f": {job.error}" if job.error else ""),
            job=job.id,
            status=job.status,
        )
        if job.status != "succeeded":
            return
        candidate = self.store.models.resolve(f"{self.model}@candidate")
        result.candidate = candidate
        fingerprint = str(candidate.dataset_fingerprint)[:12]
        self._emit(
            result,
            "registered",
            f"registered {candidate.ref} as {self.model}@candidate: dataset "
            f"{candidate.training_dataset} (fingerprint {fingerprint}), service "
            f"{candidate.feature_service}, registry v{candidate.registry_version}",
            version=candidate.version,
        )
        result.pattern = self._pattern(result, candidate)
        active = [s for s in self.store.rollouts.list(active_only=True) if s.model == self.model]
        if active:
            self._drive(result, active[0])

    def _drive(self, result: LoopResult, state: Any) -> None:
        """Drive the started rollout on simulated minutes, through a real model server."""
        from parity.examples.fraud.rollout_sim import simulate

        now = self.clock.now()
        self.store.materialize_incremental(now, views=list(VIEWS))
        pool = self._pool(now)
        self._emit(
            result,
            "rollout",
            f"rollout {state.id} started: {state.candidate} against "
            f"champion {state.champion}, on {len(pool):,} payments of the last week",
        )
        sim = asyncio.run(
            simulate(
                self.store,
                started=state,
                rate=self.rate,
                max_minutes=ROLLOUT_MINUTES,
                seed=self.seed,
                pool=pool,
                stop_at_end=True,
            )
        )
        result.rollout = sim
        result.promoted = sim.state.status == "promoted"
        self.clock.set(max(self.clock.now(), sim.state.updated_at))
        outcome = "PROMOTED" if result.promoted else sim.state.status.upper()
        self._emit(
            result,
            "promoted" if result.promoted else "rollout",
            f"{outcome}: rollout {sim.state.id} after {sim.minutes} simulated minutes "
            f"({sim.requests:,} payments, {sim.shadows:,} shadow predictions)"
            + (
                f"; {self.model}@champion is now version {sim.state.candidate}"
                if result.promoted
                else f": {sim.state.reason}"
            ),
            rollout=sim.state.id,
            status=sim.state.status,
        )

    def _pool(self, now: datetime) -> PaymentPool:
        """The payments of the week before `now`: what the rollout's traffic is drawn from."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = self.store.repo_path / "data" / "transactions.parquet"
        table = pq.read_table(
            path, columns=["account_id", "device_id", "event_timestamp", "amount"]
        )
        times = table["event_timestamp"]
        keep = pc.and_(pc.greater_equal(times, now - WEEK), pc.less(times, now))
        recent = table.filter(keep)
        return PaymentPool(
            account_id=recent["account_id"].to_numpy(),
            device_id=recent["device_id"].to_numpy(),
            amount=recent["amount"].to_numpy(),
        )

    def _pattern(self, result: LoopResult, candidate: ModelVersion) -> dict[str, dict[str, float]]:
        """Champion and candidate on the last week's payments (point-in-time features, labels
        as they will be known): what each catches of the ring's fraud and of the rest."""
        from parity.examples.fraud.model import inputs

        now = self.clock.now()
        frame = self._scores(self.store.models.resolve(f"{self.model}@champion"))
        week = frame[(frame["event_timestamp"] >= now - WEEK) & (frame["event_timestamp"] < now)]
        week = week.copy()
        week["candidate"] = np.asarray(
            self.store.models.load(candidate).predict(inputs(week)), dtype=np.float64
        )
        labels = world.fraud_labels(self.store.repo_path / "data", week["transaction_id"])
        ring = week["account_id"].isin(set(result.world.ring_accounts)).to_numpy()
        return {
            who: world.catch_rates(week[column].to_numpy(), labels, ring, week["amount"].to_numpy())
            for who, column in (("champion", "score"), ("candidate", "candidate"))
        }

    def _decisions(self, since: datetime) -> list[RetrainDecision]:
        found = self.store.triggers.history(self.model, limit=10_000)
        return sorted((d for d in found if d.at >= since), key=lambda d: d.at)

    def _jobs(self, since: datetime) -> list[JobRecord]:
        found = self.store.jobs.list(model=self.model, limit=1_000)
        return sorted((j for j in found if j.created_at >= since), key=lambda j: j.id)

    def _check(self, result: LoopResult) -> None:
        training = [j for j in result.jobs if j.kind == "training"]
        if result.retrains != 1 or len(training) != 1:
            raise LoopFailed(
                f"the loop must retrain exactly once; it fired {result.retrains} retrain(s) and "
                f"ran {len(training)} training job(s): see the decisions "
                f"(parity triggers history {self.model})"
            )
        fired = next(d for d in result.decisions if d.action == "fire")
        matured = result.shift_at + WEEK + self.label_delay
        if fired.at < matured:
            raise LoopFailed(
                f"the retrain fired at {fired.at.isoformat()}, before the first week of the new "
                f"pattern had matured labels ({matured.isoformat()}): it could not learn it; "
                "see its evidence (parity triggers history)"
            )
        if not result.promoted:
            raise LoopFailed(
                "the retrained candidate was not promoted: "
                + (result.rollout.state.reason if result.rollout else "no rollout ran")
            )


# --- pure helpers -----------------------------------------------------------------------------


def _boundaries(begin: datetime, end: datetime) -> list[datetime]:
    """The epoch-aligned week ends in (begin, end]."""
    first = week_floor(begin) + WEEK
    return [
        first + k * WEEK for k in range(int((end - first) / WEEK) + 1) if first + k * WEEK <= end
    ]


def _shift_text(shift: world.Shift) -> str:
    return (
        f"SHIFT: instant sign-up opens ({shift.signups_per_day:.0f} new customers a day, baskets "
        f"x{shift.amount_factor:g}), and a bust-out ring with it: {shift.ring_per_day:.0f} new "
        "accounts a day on clean-looking devices, spending fast until the chargebacks come"
    )


def _json_ready(value: Any) -> Any:
    """A logged value: NaN and pandas' missing values become None, numpy scalars Python's."""
    import pandas as pd

    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


# --- the command ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from parity.errors import ParityError
    from parity.examples.fraud.rollout_sim import _after_last_rollout
    from parity.feature_store import FeatureStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".")
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--ring-per-day",
        type=float,
        default=world.Shift().ring_per_day,
        help="The ring's new accounts a day, per 1,000 recorded accounts.",
    )
    parser.add_argument("--html", help="Write the loop's report (one self-contained page) here.")
    args = parser.parse_args(argv)
    try:
        shift = world.Shift(ring_per_day=args.ring_per_day)
    except ValueError as error:
        parser.error(str(error))
    try:
        with FeatureStore(args.repo) as probe:
            begin = _after_last_rollout(probe.now(), probe.rollouts.list())
        clock = SimClock(begin.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
        with FeatureStore(args.repo, clock=clock.now) as store:
            _run(store, clock, args, shift)
    except ParityError as error:
        print(f"Error [{error.code}]: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def _run(store: FeatureStore, clock: SimClock, args: argparse.Namespace, shift: Any) -> None:
    """Run the loop, print its narrative and summary, write the report (also when it failed)."""
    from parity.examples.fraud.loop_view import line, loop_report, summary

    start = clock.now()
    loop = Loop(
        store,
        clock,
        model=args.model,
        shift=shift,
        seed=args.seed,
        narrate=lambda event: print(line(event, start), flush=True),
    )
    result: LoopResult | None = None
    failure: LoopFailed | None = None
    try:
        result = loop.run()
    except LoopFailed as error:
        result, failure = error.result, error
    if result is not None:
        print("\n".join(summary(result)))
        if args.html:
            Path(args.html).write_text(loop_report(store, result))
            print(f"wrote {args.html}: the loop's report (one page, opens offline)")
    if failure is not None:
        print(f"LOOP FAILED: {failure}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
