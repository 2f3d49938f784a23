"""The fraud loop as told: its narrative lines and closing summary (what lifecycle_sim prints),
and its report, read back from the registry (decisions, the job, the version, the rollout) and
shaped for deploy/lifecycle_report.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from parity.deploy.lifecycle_report import (
    Decision,
    LifecycleView,
    Series,
    Step,
    render_lifecycle_report,
)

if TYPE_CHECKING:
    from parity.examples.fraud.lifecycle_sim import LoopEvent, LoopResult
    from parity.feature_store import FeatureStore
    from parity.jobs.state import JobRecord
    from parity.models.store import ModelVersion

DRIFT_ALERT = 0.5  # the monitor's fraud_drift rule fires at half the columns (monitors.py)


def line(event: LoopEvent, start: datetime) -> str:
    """One narrative line: simulated day since the start, the date, what happened."""
    day = (event.at - start) / timedelta(days=1)
    return f"  day {day:5.1f}  {event.at:%Y-%m-%d %H:%M}  {event.text}"


def summary(result: LoopResult) -> list[str]:
    """The closing lines: the retrain count, the promoted version, and the new pattern."""
    lines = [f"retrains fired: {result.retrains} (decisions recorded: {len(result.decisions)})"]
    if result.candidate is not None:
        lines.append(f"promoted: {result.candidate.ref}" if result.promoted else "not promoted")
    for who, numbers in result.pattern.items():
        lines.append(
            f"  {who:<9} on the last week before the retrain: catches "
            f"{_pct(numbers['ring_recall'])} of the ring's fraud payments, "
            f"{_pct(numbers['other_recall'])} of the other fraud "
            f"({int(numbers['blocked']):,} blocked)"
        )
    return lines


def loop_report(store: FeatureStore, result: LoopResult) -> str:
    """The whole page of one loop."""
    return render_lifecycle_report(loop_view(store, result))


def loop_view(store: FeatureStore, result: LoopResult) -> LifecycleView:
    from parity.deploy.timeline import render_timeline_html

    job = _training_job(result)
    rollout = result.rollout
    return LifecycleView(
        title=f"The closed loop of model '{result.model}' on simulated time",
        summary=_summary(result, job),
        steps=[Step(e.at, e.kind, e.text) for e in result.events],
        series=_series(result),
        markers=_markers(result),
        decisions=[
            Decision(d.id, d.at, d.action, d.reasons, d.signals, d.job_id) for d in result.decisions
        ],
        lineage=lineage(store, result.candidate, job, result) if result.candidate else (),
        drift_page=result.drift_html,
        rollout_page=render_timeline_html(rollout.events, rollout.state) if rollout else None,
        generated_at=result.end,
        span=(result.start, result.end),
        notes=(
            "Simulated time: the world (world.py) and the clock are simulated; monitoring, the "
            "retrain triggers, the training job, the registry and the rollout are the real parts.",
        ),
    )


def lineage(
    store: FeatureStore, version: ModelVersion, job: JobRecord | None, result: LoopResult
) -> list[tuple[str, str]]:
    """Where the retrained version came from: the registry's record of it, its training set,
    the job that trained it and the decision that fired the job."""
    dataset = store.datasets.get(version.training_dataset) if version.training_dataset else None
    rows = [
        ("version", version.ref),
        ("registered at", _time(version.created_at)),
        ("feature service", str(version.feature_service)),
        ("training dataset", str(version.training_dataset)),
        ("dataset fingerprint", str(version.dataset_fingerprint)),
        ("feature registry version", str(version.registry_version)),
        ("training job", f"{version.tags.get('job', '?')} #{version.tags.get('job_id', '?')}"),
        ("code version", str(version.code_version)),
    ]
    if dataset is not None:
        rows.append(("dataset rows", f"{dataset.row_count:,}"))
    if job is not None:
        rows.append(("job reason", job.reason))
        rows.append(("trigger decision", f"#{job.trigger_decision}"))
        cutoff = job.result.get("labels") or {}
        if cutoff:
            rows.append(("labels", ", ".join(f"{k} {v}" for k, v in cutoff.items())))
    fired = [d for d in result.decisions if d.action == "fire"]
    if fired:
        rows.append(("why it was trained", "; ".join(fired[0].reasons)))
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(version.metrics.items()))
    rows.append(("metrics at registration", shown))
    return rows


def _training_job(result: LoopResult) -> JobRecord | None:
    jobs = [j for j in result.jobs if j.kind == "training"]
    return jobs[0] if jobs else None


def _summary(result: LoopResult, job: JobRecord | None) -> list[tuple[str, str]]:
    rows = [
        ("Simulated time", f"{_time(result.start)} to {_time(result.end)}"),
        ("Champion at the start", result.champion.ref),
        ("New fraud pattern from", _time(result.shift_at)),
        ("Retrains fired", str(result.retrains)),
        ("Decisions recorded", str(len(result.decisions))),
    ]
    if job is not None:
        rows.append(("Training job", f"#{job.id} {job.name}: {job.status}"))
    if result.candidate is not None:
        state = "promoted to champion" if result.promoted else "not promoted"
        rows.append(("Retrained version", f"{result.candidate.ref}, {state}"))
    for who, numbers in result.pattern.items():
        rows.append(
            (
                f"{who.capitalize()} on the week before the retrain",
                f"catches {_pct(numbers.get('ring_recall'))} of the ring's fraud payments and "
                f"{_pct(numbers.get('other_recall'))} of the other fraud",
            )
        )
    return rows


def _series(result: LoopResult) -> list[Series]:
    drift = Series(
        "share of drifted columns (weekly)",
        "drift",
        [(w["end"], w["share"]) for w in result.drift_weeks],
        DRIFT_ALERT,
    )
    recall = Series(
        "recall of the champion, final weeks (at the week's end)",
        "perf",
        [(w["end"], w.get("recall")) for w in result.final_weeks],
    )
    return [drift, recall]


def _markers(result: LoopResult) -> list[tuple[datetime, str]]:
    marks: list[tuple[datetime, str]] = [(result.shift_at, "new pattern")]
    for kind, label in (
        ("alert", "drift flagged"),
        ("decision", "retrain"),
        ("promoted", "promoted"),
    ):
        found = [e for e in result.events if e.kind == kind and _first_of(e, kind)]
        if found:
            marks.append((found[0].at, label))
    return marks


def _first_of(event: Any, kind: str) -> bool:
    if kind == "alert":
        return bool(event.data.get("state") == "fired" and "drift" in str(event.data.get("rule")))
    if kind == "decision":
        return bool(event.data.get("action") == "fire")
    return True


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")
