"""QA-B: a whole rollout driven as a user would, on the real gates (`check_gates` over a Parquet log
written by the real `ParquetLogSink`, labels matured through a Monitor with a dollar-weighted recall
metric), routed with the real `arm()` and ticked with `store.rollouts.step(now=...)`. Every check's
numbers and the controller's decision are compared with expectations computed here with numpy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from parity import FeatureStore
from parity.definitions.rollout import FailurePolicy, Gate, Phase, Rollout
from parity.deploy.state import RolloutEvent, RolloutState
from parity.inference.predlog import ParquetLogSink, PredictionRecord
from parity.inference.routing import arm
from tests.deploy.control_support import MINUTE, T0, Clock, cleanup, make_repo, register_versions

MONITOR = '''
from datetime import timedelta

import numpy as np

from parity import LabelSource, Monitor


def dollar_recall(labels, scores, rows):
    """Share of the fraud amount scored at or above 0.5."""
    amount = np.asarray(rows.column("amount").to_numpy(), dtype=float)
    fraud = amount[labels].sum()
    return float(amount[labels & (scores >= 0.5)].sum() / fraud) if fraud else None


fraud_monitor = Monitor(
    name="fraud_monitor",
    model="fraud",
    labels=LabelSource(
        path="data/labels.parquet",
        label="is_fraud",
        join_keys=("request_id",),
        label_timestamp_field="label_timestamp",
    ),
    label_delay=timedelta(minutes=20),
    metrics=[dollar_recall],
)
'''
DELAY = timedelta(minutes=20)
PER_MINUTE = 40  # requests a minute, 1.5 s apart: the first at the exact minute
MINUTES = 150


@dataclass(frozen=True)
class Request:
    id: str
    at: datetime
    key: str
    fraud: bool
    amount: float
    labelled_at: datetime | None  # None: never labelled
    champion: float  # the champion's score
    candidate: float  # the candidate's score
    failed: bool  # both versions fail it (status error)


@dataclass
class Row:
    request: Request
    version: int
    role: str

    @property
    def ok(self) -> bool:
        return not self.request.failed

    @property
    def score(self) -> float:
        return self.request.candidate if self.version == 2 else self.request.champion

    @property
    def latency(self) -> float:
        return 10.0 + (int(self.request.id[1:]) % 10) * 0.5 + (0.3 if self.version == 2 else 0.0)


def traffic(seed: int, bad: bool) -> list[Request]:
    rng = np.random.default_rng(seed)
    out = []
    for n in range(MINUTES * PER_MINUTE):
        at = T0 + timedelta(seconds=1.5 * n)
        fraud = bool(rng.random() < 0.3)
        champion = float(np.clip(0.5 * fraud + 0.5 * rng.random(), 0, 1))
        candidate = float(np.clip(0.5 * fraud + 0.5 * rng.random(), 0, 1))
        if bad:  # not informative: the label gates must catch it
            candidate = float(rng.random())
        never = n % 33 == 5
        if never:
            candidate = 0.999  # unlabelled and top-scored: counted as negatives, it would fail
        late = n % 17 == 3  # labelled after the delay: unknown until then
        out.append(
            Request(
                id=f"r{n}",
                at=at,
                key=f"d{int(rng.integers(0, 5000))}",
                fraud=fraud,
                amount=float(rng.uniform(10, 1000)),
                labelled_at=None if never else at + (45 if late else 15) * MINUTE,
                champion=champion,
                candidate=candidate,
                failed=n % 100 == 7,
            )
        )
    return out


def write_labels(repo: Path, requests: list[Request]) -> None:
    known = [r for r in requests if r.labelled_at is not None]
    table = pa.table(
        {
            "request_id": [r.id for r in known],
            "is_fraud": [r.fraud for r in known],
            "amount": [r.amount for r in known],
            "label_timestamp": pa.array([r.labelled_at for r in known], pa.timestamp("us", "UTC")),
        }
    )
    pq.write_table(table, repo / "data" / "labels.parquet")


def ramp(**changes: Any) -> Rollout:
    fields: dict[str, Any] = {
        "name": "fraud_rollout",
        "model": "fraud",
        "candidate": 2,
        "shadow": Phase(weight=0, duration=10 * MINUTE, min_samples=200),
        "steps": (
            Phase(weight=25, duration=10 * MINUTE, min_samples=30),
            Phase(weight=100, duration=5 * MINUTE, min_samples=100),
        ),
        "gates": (
            Gate(metric="error_rate", threshold=0.02, min_samples=30),
            Gate(metric="latency_p99", threshold=0.1, min_samples=30),
            Gate(metric="prediction_drift"),  # its default min_samples: 500 for psi
            Gate(metric="label:dollar_recall", min_samples=40),
            Gate(metric="label:precision_at_k", k=20, min_samples=40),
        ),
        "interval": MINUTE,
    }
    fields.update(changes)
    return Rollout(**fields)


@pytest.fixture
def store(tmp_path: Path, backend: str, project_name: str, request: Any) -> Iterator[FeatureStore]:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    repo = make_repo(tmp_path / "repo", backend, project_name, url)
    (repo / "monitors.py").write_text(MONITOR)
    with FeatureStore(repo, clock=Clock()) as opened:
        opened.apply()
        register_versions(opened)
        yield opened
        cleanup(opened)


# --- independent expectations ------------------------------------------------------------------


def p99(values: list[float]) -> float:
    return float(np.percentile(np.array(values), 99, method="inverted_cdf"))


def p99_proven(cand: list[float], champ: list[float], limit: float) -> bool:
    """The candidate's one-sided 95 % lower bound of its p99 above the champion's upper bound
    * (1 + limit): order statistics at binomial ranks (scipy), none for the champion below 299."""
    n, m = np.arange(1, len(cand) + 1), np.arange(1, len(champ) + 1)
    lower = n[stats.binom.sf(n - 1, len(cand), 0.99) >= 0.95]
    upper = m[stats.binom.cdf(m - 1, len(champ), 0.99) >= 0.95]
    if not lower.size or not upper.size:
        return False
    return sorted(cand)[lower.max() - 1] > sorted(champ)[upper.min() - 1] * (1 + limit)


def errors_proven(c_err: int, n: int, h_err: int, m: int, limit: float) -> bool:
    """Newcombe's one-sided 95 % lower bound of the error-rate difference above the limit."""
    ci_c = stats.binomtest(c_err, n).proportion_ci(confidence_level=0.9, method="wilson")
    ci_h = stats.binomtest(h_err, m).proportion_ci(confidence_level=0.9, method="wilson")
    low = c_err / n - h_err / m - float(np.hypot(c_err / n - ci_c.low, ci_h.high - h_err / m))
    return low > limit


def dollar_recall(rows: list[Row]) -> float:
    fraud = sum(r.request.amount for r in rows if r.request.fraud)
    caught = sum(r.request.amount for r in rows if r.request.fraud and r.score >= 0.5)
    return caught / fraud


def precision_at(rows: list[Row], k: int) -> float:
    ranked = sorted(rows, key=lambda r: -r.score)[: min(k, len(rows))]
    return sum(r.request.fraud for r in ranked) / len(ranked)


def expected_check(
    state: RolloutState, log: list[Row], now: datetime
) -> tuple[dict[str, tuple[str, float | None, float | None]], dict[str, int]]:
    """Each gate's (verdict, candidate value, champion value) and the window's rows per arm."""
    window = [r for r in log if state.step_started <= r.request.at < now]
    cand = [r for r in window if r.version == 2]
    champ = [r for r in window if r.version == 1]
    if not state.in_shadow and state.weight == 100:  # the champion's rows from before the step
        champ = [
            r
            for r in log
            if r.version == 1 and state.started_at <= r.request.at < state.step_started
        ]
    samples = {"candidate": len(cand), "champion": len(champ)}
    found: dict[str, tuple[str, float | None, float | None]] = {}
    for gate in state.definition.gates:
        if gate.family == "label":
            found[gate.metric] = label_expectation(gate, state, log, now)
            continue
        if min(len(cand), len(champ)) < gate.min_samples:
            found[gate.metric] = ("inconclusive", None, None)
        elif gate.metric == "error_rate":
            c_err, h_err = sum(not r.ok for r in cand), sum(not r.ok for r in champ)
            c, h = c_err / len(cand), h_err / len(champ)
            over = c - h > gate.limit + 1e-12
            sure = over and errors_proven(c_err, len(cand), h_err, len(champ), gate.limit)
            found[gate.metric] = ("fail" if sure else "inconclusive" if over else "pass", c, h)
        elif gate.metric == "latency_p99":
            c_ms, h_ms = [r.latency for r in cand if r.ok], [r.latency for r in champ if r.ok]
            c, h = p99(c_ms), p99(h_ms)
            over = c > h * (1 + gate.limit)
            sure = over and p99_proven(c_ms, h_ms, gate.limit)
            found[gate.metric] = ("fail" if sure else "inconclusive" if over else "pass", c, h)
        else:
            found[gate.metric] = ("?", None, None)  # drift: its verdict is checked by scenario
    return found, samples


def label_expectation(
    gate: Gate, state: RolloutState, log: list[Row], now: datetime
) -> tuple[str, float | None, float | None]:
    until = now - DELAY
    matured = [
        r
        for r in log
        if state.started_at <= r.request.at < until
        and r.ok
        and r.request.labelled_at is not None
        and r.request.labelled_at <= now
    ]
    cand = [r for r in matured if r.version == 2]
    champ = [r for r in matured if r.version == 1]
    if until <= state.started_at or min(len(cand), len(champ)) < gate.min_samples:
        return ("inconclusive", None, None)
    if gate.argument == "dollar_recall":
        c, h = dollar_recall(cand), dollar_recall(champ)
    else:  # the same share of each arm: k of the smaller, scaled for the larger
        small = min(len(cand), len(champ))
        k = min(gate.k, small)
        c = precision_at(cand, max(1, round(k * len(cand) / small)))
        h = precision_at(champ, max(1, round(k * len(champ) / small)))
    return ("fail" if c < h * (1 - gate.limit) else "pass", c, h)


# --- the driver ----------------------------------------------------------------------------------


def serve_minute(store: FeatureStore, requests: list[Request], minute: int, log: list[Row]) -> None:
    """One minute of traffic routed as the model server routes it, logged by ParquetLogSink."""
    routes = store.rollouts.routes().get("fraud")
    state = store.rollouts.status("fraud")
    rows: list[Row] = []
    for request in requests[minute * PER_MINUTE : (minute + 1) * PER_MINUTE]:
        if routes is None:
            continue
        if state.in_shadow:
            rows += [Row(request, 1, "champion"), Row(request, 2, "shadow")]
        elif arm(routes, request.key) == "candidate":
            rows.append(Row(request, 2, "canary"))
        else:
            rows.append(Row(request, 1, "champion"))
    sink = ParquetLogSink(store.repo_path / "data" / "prediction_log")
    sink.write([record(r) for r in rows])
    sink.close()
    log += rows


def record(row: Row) -> PredictionRecord:
    r = row.request
    return PredictionRecord(
        request_id=r.id,
        at=r.at,
        model="fraud",
        version=row.version,
        entities={"driver_id": r.key},
        features={},
        prediction=None if r.failed else row.score,
        latency_ms=row.latency,
        alias="champion",
        status="error" if r.failed else "ok",
        role=row.role,
    )


def drive(
    store: FeatureStore, definition: Rollout, requests: list[Request]
) -> list[tuple[RolloutState, datetime, list[RolloutEvent], list[Row]]]:
    """Start at T0, serve each minute, tick at each minute's end; (state before, now, events)."""
    store.rollouts.start(definition)
    log: list[Row] = []
    trail = []
    for minute in range(MINUTES):
        serve_minute(store, requests, minute, log)
        before = store.rollouts.status("fraud")
        if before.status not in ("active", "paused"):
            break
        now = T0 + (minute + 1) * MINUTE
        trail.append((before, now, store.rollouts.step(now=now), list(log)))
    return trail


def check_numbers(
    trail: list[tuple[RolloutState, datetime, list[RolloutEvent], list[Row]]],
) -> None:
    for before, now, events, log in trail:
        (check,) = [e for e in events if e.kind == "check"]
        expected, samples = expected_check(before, log, now)
        for result in check.results:
            if result.gate == "error_rate":  # rows in [step_started, now): at, not after
                assert result.samples == samples, (now, result)
            verdict, cand, champ = expected[result.gate]
            if verdict == "?":
                continue
            assert result.verdict == verdict, (now, result)
            if cand is not None:
                assert result.candidate == pytest.approx(cand, rel=1e-9), (now, result)
                assert result.champion == pytest.approx(champ, rel=1e-9), (now, result)


def test_a_good_candidate_is_promoted_step_by_step_with_the_numbers_right(
    store: FeatureStore,
) -> None:
    requests = traffic(seed=11, bad=False)
    write_labels(store.repo_path, requests)
    trail = drive(store, ramp(), requests)
    check_numbers(trail)
    moves = [(e.kind, e.step, e.at) for _, _, events, _ in trail for e in events]
    moves = [m for m in moves if m[0] != "check"]
    assert [m[:2] for m in moves] == [("advanced", 1), ("advanced", 2), ("promoted", 2)]
    # the shadow waits for its labels to mature (20 min delay, 40 labelled rows per arm): the
    # first check with every gate conclusive advances it, never one before
    for (before, now, events, log), index in zip(trail, range(len(trail)), strict=True):
        expected, samples = expected_check(before, log, now)
        conclusive = all(v[0] in ("pass", "?") for v in expected.values())
        elapsed = now - before.step_started >= before.phase.duration
        enough = samples["candidate"] >= before.phase.min_samples
        moved = any(e.kind in ("advanced", "promoted") for e in events)
        assert moved == (conclusive and elapsed and enough), (index, now, expected, samples)
    assert store.models.aliases("fraud")["champion"] == 2
    history = store.models.history("fraud", "champion")
    assert history[-1].reason.startswith("rollout fraud-1: ")


@pytest.mark.parametrize(
    ("mode", "limit"), [("cumulative", 1), ("cumulative", 3), ("consecutive", 3)]
)
def test_a_candidate_that_ranks_at_random_is_rolled_back_in_the_shadow(
    store: FeatureStore, mode: str, limit: int
) -> None:
    requests = traffic(seed=11, bad=True)
    write_labels(store.repo_path, requests)
    policy = FailurePolicy(mode=mode, limit=limit)  # type: ignore[arg-type]
    trail = drive(store, ramp(failure_policy=policy), requests)
    check_numbers(trail)
    kinds = [(e.kind, e.step) for _, _, events, _ in trail for e in events if e.kind != "check"]
    assert kinds == [("aborted", 0)]
    failing = [
        now
        for _, now, events, _ in trail
        for e in events
        if e.kind == "check" and any(r.verdict == "fail" for r in e.results)
    ]
    # aborted on the limit-th failing check, (limit - 1) intervals after the first: within
    # interval x limit of the gate starting to fail
    assert len(failing) == limit and failing[-1] - failing[0] == (limit - 1) * MINUTE
    (aborted,) = [e for _, _, events, _ in trail for e in events if e.kind == "aborted"]
    assert aborted.at == failing[-1] and aborted.weight == 0.0
    assert [r.gate for r in aborted.results] == ["prediction_drift"]  # the evidence kept
    assert f"failed check {limit} of {limit} ({mode})" in aborted.reason
    assert store.rollouts.status("fraud").status == "aborted"
    assert store.models.aliases("fraud")["champion"] == 1
    assert store.rollouts.routes() == {}
