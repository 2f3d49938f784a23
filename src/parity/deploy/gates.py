"""Gate evaluation, pure: one gate's per-arm arrays in (candidate vs champion, same window), a
`GateResult` out. Latency p99 (nearest rank) and error rate fail only at CONFIDENCE (bounds.py),
prediction drift (monitoring.stats), delayed-label metrics (monitoring.performance), custom gate
functions. No I/O, no store imports: deploy/evidence.py reads the prediction log and the labels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from parity.definitions.rollout import Gate
from parity.deploy import bounds
from parity.deploy.state import GateResult, Verdict

if TYPE_CHECKING:
    import pyarrow as pa

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]
CANDIDATE, CHAMPION = "candidate", "champion"
P99 = 99  # percent: the latency gate's quantile
CONFIDENCE = 0.95
"""One-sided confidence a latency_p99 or error_rate gate needs to FAIL. Each check judges a noisy
window every interval and one failed check aborts by default, so a point estimate over the limit
is not enough: judged that way a candidate identical to the champion was rolled back in 57 of 60
default rollouts. Over the limit but not significant at this level is inconclusive: it holds the
step and gathers rows. 95 % keeps such false fails rare while a clearly worse candidate (p99 50 %
slower, 5 points more errors) still fails within minutes of its shadow phase."""
SIGNIFICANT = "over the limit but not yet significant: "  # how an unproven excess's reason begins
LOWER_IS_BETTER = frozenset({"brier"})  # label metrics where a smaller value is the better model
GateOutcome = bool | None | tuple[bool | None, str]
"""What a custom gate function returns: True (pass), False (fail), None (inconclusive), or one
of those with a reason: `(False, "p95 above 80 ms")`."""
CustomGate = Callable[["Evidence"], Any]
LabelMetric = Callable[[Any, Any, Any], Any]


# --- results ------------------------------------------------------------------------------------


def inconclusive(gate: Gate, reason: str, samples: Mapping[str, int] | None = None) -> GateResult:
    """The verdict of a gate without enough evidence: it holds the step, it never passes it."""
    return GateResult(
        gate=gate.metric,
        verdict="inconclusive",
        limit=gate_limit(gate),
        samples=dict(samples or {}),
        reason=reason,
    )


def too_few(gate: Gate, counts: Mapping[str, int], what: str) -> GateResult | None:
    """Inconclusive when an arm has fewer than `gate.min_samples` rows of `what`; else None."""
    short = [f"{arm} {n:,}" for arm, n in counts.items() if n < gate.min_samples]
    if not short:
        return None
    return inconclusive(
        gate,
        f"too few {what}: {', '.join(short)} (min_samples {gate.min_samples:,} per arm)",
        counts,
    )


def gate_limit(gate: Gate) -> float:
    """The threshold a gate is held to. A drift gate without one takes its test's monitoring
    default (psi 0.2, jensen_shannon 0.1, wasserstein 0.1, ks p-value 0.05)."""
    return gate.limit


def finite(values: Any) -> tuple[FloatArray, int]:
    """The finite values as float64 and how many were null, NaN or infinite (dropped)."""
    x = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(x)
    return (x if keep.all() else x[keep]), int(x.size - np.count_nonzero(keep))


def _dropped(counts: Mapping[str, int]) -> str:
    parts = [f"{arm} {n:,}" for arm, n in counts.items() if n]
    return f"; null/NaN/inf dropped: {', '.join(parts)}" if parts else ""


# --- latency p99 --------------------------------------------------------------------------------


def nearest_rank(values: FloatArray, percent: int = P99) -> float:
    """The nearest-rank percentile: the smallest value with at least `percent` % of the values at
    or below it, i.e. the ceil(percent/100 * n)-th smallest (numpy's method="inverted_cdf"). Always
    a latency that was observed. `values` must be non-empty."""
    n = values.size
    rank = max(1, -(-percent * n // 100))  # ceil in integers: no float rounding at the boundary
    return float(np.partition(values, rank - 1)[rank - 1])


def latency_gate(gate: Gate, candidate_ms: Any, champion_ms: Any) -> GateResult:
    """Pass when the candidate's p99 latency is within the champion's by `limit` (relative):
    p99_candidate <= p99_champion * (1 + limit). Fail only when the excess holds at CONFIDENCE:
    the candidate's lower bound of its p99 above the champion's upper bound * (1 + limit)
    (order statistics, any distribution); else inconclusive. Answered (status 'ok') rows only."""
    cand, cand_bad = finite(candidate_ms)
    champ, champ_bad = finite(champion_ms)
    counts = {CANDIDATE: int(cand.size), CHAMPION: int(champ.size)}
    short = too_few(gate, counts, "answered requests with a latency")
    if short is not None:
        return short
    limit = gate_limit(gate)
    c99, h99 = nearest_rank(cand), nearest_rank(champ)
    bound = h99 * (1.0 + limit)
    over = c99 > bound
    reason = (
        f"candidate p99 {c99:.4g} ms {'>' if over else '<='} {bound:.4g} ms (champion p99 "
        f"{h99:.4g} ms + {limit * 100:g} %)"
    )
    dropped = _dropped({CANDIDATE: cand_bad, CHAMPION: champ_bad})
    if not over:
        return _judged(gate, "pass", c99, h99, limit, counts, reason + dropped)
    verdict, why = _p99_significance(cand, champ, limit)
    prefix = SIGNIFICANT if verdict == "inconclusive" else ""
    return _judged(gate, verdict, c99, h99, limit, counts, f"{prefix}{reason}; {why}{dropped}")


def p99_bounds(values: FloatArray) -> tuple[float | None, float | None]:
    """The observed latencies that bound the p99 from below and from above at CONFIDENCE (the
    binomial ranks of bounds.quantile_ranks); None where there are too few values."""
    lower, upper = bounds.quantile_ranks(values.size, P99 / 100, CONFIDENCE)
    ranks = [rank - 1 for rank in (lower, upper) if rank is not None]
    ordered = np.partition(values, ranks) if ranks else values
    return (
        None if lower is None else float(ordered[lower - 1]),
        None if upper is None else float(ordered[upper - 1]),
    )


def _p99_significance(cand: FloatArray, champ: FloatArray, limit: float) -> tuple[Verdict, str]:
    """'fail' when the candidate's p99 exceeds the champion's * (1 + limit) at CONFIDENCE."""
    level = f"{CONFIDENCE * 100:g} %"
    low, _ = p99_bounds(cand)
    _, high = p99_bounds(champ)
    if low is None or high is None:
        fewest = bounds.fewest_for_upper(P99 / 100, CONFIDENCE)
        return "inconclusive", (
            f"the champion's {champ.size:,} latencies bound its p99 from above at {level} "
            f"confidence only from {fewest:,}"
        )
    ceiling = high * (1.0 + limit)
    failed = low > ceiling
    return ("fail" if failed else "inconclusive"), (
        f"at {level} confidence candidate p99 >= {low:.4g} ms {'>' if failed else '<='} "
        f"{ceiling:.4g} ms (champion p99 <= {high:.4g} ms + {limit * 100:g} %)"
    )


def _result(
    gate: Gate,
    failed: bool,
    candidate: float | None,
    champion: float | None,
    limit: float,
    counts: Mapping[str, int],
    reason: str,
) -> GateResult:
    verdict: Verdict = "fail" if failed else "pass"
    return _judged(gate, verdict, candidate, champion, limit, counts, reason)


def _judged(
    gate: Gate,
    verdict: Verdict,
    candidate: float | None,
    champion: float | None,
    limit: float,
    counts: Mapping[str, int],
    reason: str,
) -> GateResult:
    return GateResult(gate.metric, verdict, candidate, champion, limit, dict(counts), reason)


# --- error rate ---------------------------------------------------------------------------------


def error_rate_gate(gate: Gate, candidate_ok: Any, champion_ok: Any) -> GateResult:
    """Pass when the candidate's share of failed rows (status other than 'ok': errors, shadow
    timeouts) is within the champion's + `limit` (absolute, a fraction of rows). Fail only when
    it exceeds that at CONFIDENCE (Newcombe's hybrid score bound of the difference); else
    inconclusive."""
    cand, champ = np.asarray(candidate_ok, dtype=bool), np.asarray(champion_ok, dtype=bool)
    counts = {CANDIDATE: int(cand.size), CHAMPION: int(champ.size)}
    short = too_few(gate, counts, "requests")
    if short is not None:
        return short
    cand_errors = int(cand.size - np.count_nonzero(cand))
    champ_errors = int(champ.size - np.count_nonzero(champ))
    c_rate, h_rate = cand_errors / cand.size, champ_errors / champ.size
    limit = gate_limit(gate)
    # In exact fractions, the limit as written: 7 % vs 6 % is exactly 1 point (0.07 - 0.06 in
    # floats is 0.010000000000000009 and failed a 0.01 limit it meets).
    excess = Fraction(cand_errors, cand.size) - Fraction(champ_errors, champ.size)
    over = excess > Fraction(repr(limit))
    reason = (
        f"candidate error rate {c_rate:.4%} ({cand_errors:,} of {cand.size:,}) "
        f"{'>' if over else '<='} champion {h_rate:.4%} ({champ_errors:,} of {champ.size:,}) "
        f"+ {limit * 100:g} percentage points"
    )
    if not over:
        return _judged(gate, "pass", c_rate, h_rate, limit, counts, reason)
    low = bounds.difference_lower(cand_errors, cand.size, champ_errors, champ.size, CONFIDENCE)
    failed = low > limit
    why = (
        f"at {CONFIDENCE * 100:g} % confidence the excess is >= {low * 100:.3g} points "
        f"{'>' if failed else '<='} {limit * 100:g} (Newcombe's score interval)"
    )
    if failed:
        return _judged(gate, "fail", c_rate, h_rate, limit, counts, f"{reason}; {why}")
    return _judged(
        gate, "inconclusive", c_rate, h_rate, limit, counts, f"{SIGNIFICANT}{reason}; {why}"
    )


# --- prediction drift ---------------------------------------------------------------------------


def drift_gate(gate: Gate, candidate_scores: Any, champion_scores: Any) -> GateResult:
    """The candidate's scores tested against the champion's (its reference profile) with
    `gate.test`, as `parity monitor drift` tests a window: fail when a distance (psi,
    jensen_shannon, wasserstein) is >= the limit, or the ks p-value is <= it."""
    from parity.monitoring.profile import profile_column
    from parity.monitoring.stats import P_VALUE_TESTS, column_drift

    cand, cand_bad = finite(candidate_scores)
    champ, champ_bad = finite(champion_scores)
    counts = {CANDIDATE: int(cand.size), CHAMPION: int(champ.size)}
    short = too_few(gate, counts, "finite scores")
    if short is not None:
        return short
    limit = gate_limit(gate)
    reference = profile_column("score", champ)
    found = column_drift(
        reference, cand, test=gate.test, threshold=limit, min_samples=gate.min_samples
    )
    value = found.p_value if gate.test in P_VALUE_TESTS else found.statistic
    if found.status not in ("drift", "no_drift") or value is None:
        return inconclusive(gate, found.reason, counts)
    reason = f"candidate scores vs champion's ({champ.size:,} values): {found.reason}" + _dropped(
        {CANDIDATE: cand_bad, CHAMPION: champ_bad}
    )
    return _result(gate, found.drifted, float(value), None, limit, counts, reason)


# --- delayed labels -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Labelled:
    """One arm's matured, labelled predictions: labels, finite scores, the label source's columns
    for user metrics, and labelled rows dropped for a null/NaN/inf score."""

    labels: BoolArray
    scores: FloatArray
    rows: pa.Table | None = None
    dropped: int = 0
    predictions: int = 0  # predictions in the window, labelled or not


def label_value(
    metric: str,
    arm: Labelled,
    *,
    k: int,
    threshold: float,
    function: LabelMetric | None = None,
) -> tuple[float | None, str]:
    """The arm's value of a built-in label metric, or of a Monitor's metric function; (None,
    why) when it is undefined for these rows."""
    from parity.monitoring import performance as perf

    y, s = arm.labels, arm.scores
    if function is not None:
        found = perf.custom_metrics({metric: function}, y, s, arm.rows)
        return found.values[metric], found.errors.get(metric, "")
    if metric == "brier" and s.size and (s.min() < 0.0 or s.max() > 1.0):
        return None, "scores outside [0, 1] are not probabilities"
    if metric == "brier":
        return perf.brier(y, s), ""
    values: dict[str, Callable[[], float | None]] = {
        "auc": lambda: perf.roc_auc(y, s),
        "average_precision": lambda: perf.average_precision(y, s),
        "precision_at_k": lambda: perf.precision_at_k(y, s, k),
        "precision": lambda: perf.precision_recall(y, s, threshold)[0],
        "recall": lambda: perf.precision_recall(y, s, threshold)[1],
    }
    value = values[metric]()
    if value is None:
        return None, _undefined(metric, y, threshold)
    return value, ""


def _undefined(metric: str, labels: BoolArray, threshold: float) -> str:
    if metric == "precision":
        return f"no score >= the decision threshold {threshold}"
    if labels.all():
        return "only positive labels"
    return "no positive labels" if metric != "auc" else "only negative labels: AUC needs both"


def label_gate(
    gate: Gate,
    candidate: Labelled,
    champion: Labelled,
    *,
    threshold: float,
    function: LabelMetric | None = None,
) -> GateResult:
    """Fail when the candidate's label metric is worse than the champion's by more than `limit`
    (relative): below champion - |champion| * limit, or for brier (lower is better) above
    champion + |champion| * limit. Labelled rows with a finite score only."""
    metric = gate.argument or ""
    counts = {CANDIDATE: int(candidate.labels.size), CHAMPION: int(champion.labels.size)}
    short = too_few(gate, counts, "labelled predictions")
    if short is not None:
        return short
    depths = equal_depth(gate.k, counts)
    values = {}
    for arm, rows in ((CANDIDATE, candidate), (CHAMPION, champion)):
        k = depths[arm]
        value, why = label_value(metric, rows, k=k, threshold=threshold, function=function)
        if value is None:
            return inconclusive(gate, f"{metric} is undefined for the {arm}: {why}", counts)
        values[arm] = value
    cand, champ, limit = values[CANDIDATE], values[CHAMPION], gate_limit(gate)
    # Relative to the champion's magnitude, so a metric below 0 (a Monitor's net dollars saved)
    # is held the same way: champion * (1 - limit) was above a negative champion, failing a
    # candidate equal to it.
    margin = abs(champ) * limit
    if metric in LOWER_IS_BETTER:
        bound, side = champ + margin, "+"
        failed = cand > bound
    else:
        bound, side = champ - margin, "-"
        failed = cand < bound
    op = (">" if failed else "<=") if metric in LOWER_IS_BETTER else ("<" if failed else ">=")
    reason = (
        f"candidate {metric} {cand:.4g} {op} {bound:.4g} (champion {champ:.4g} {side} "
        f"{limit * 100:g} %) on {counts[CANDIDATE]:,} and {counts[CHAMPION]:,} labelled rows"
        + _dropped({CANDIDATE: candidate.dropped, CHAMPION: champion.dropped})
    )
    if metric == "precision_at_k":
        reason += f"; top {depths[CANDIDATE]:,} and {depths[CHAMPION]:,} rows (the same share)"
    return _result(gate, failed, cand, champ, limit, counts, reason)


def equal_depth(k: int, counts: Mapping[str, int]) -> dict[str, int]:
    """precision@k's k per arm, at the same share of each arm's labelled rows: k (at most all)
    of the smaller arm, the same share of the larger. The top 100 of 3,000 champion rows and of
    300 candidate rows are the top 3 % and the top 33 %: a candidate as good as the champion
    failed a 1 % canary."""
    smallest = max(1, min(counts.values()))
    top = min(k, smallest)
    return {arm: max(1, round(top * n / smallest)) for arm, n in counts.items()}


# --- custom gates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmEvidence:
    """One arm's logged rows in the window, in log order: request ids, prediction times (UTC,
    datetime64[us]), scores (NaN where null or not a number), latencies, statuses."""

    version: int
    request_ids: np.ndarray[Any, Any]
    at: np.ndarray[Any, Any]
    scores: FloatArray
    latency_ms: FloatArray
    status: np.ndarray[Any, Any]

    @property
    def rows(self) -> int:
        return int(self.status.size)


@dataclass(frozen=True)
class Evidence:
    """What a custom gate function gets: both arms' rows in [start, end), the threshold it was
    declared with (`limit`), and where the rollout is (`phase` 'shadow' or 'canary', `weight`)."""

    gate: str
    limit: float
    start: datetime
    end: datetime
    phase: str
    weight: float
    candidate: ArmEvidence
    champion: ArmEvidence


def custom_gate(gate: Gate, function: CustomGate, evidence: Evidence) -> GateResult:
    """Call the repo's gate function on the evidence (only once both arms hold min_samples rows).
    It returns a `GateOutcome`; one that raises or returns anything else fails the gate, with
    the error as the reason: a broken gate must stop a rollout, not wave it through."""
    counts = {CANDIDATE: evidence.candidate.rows, CHAMPION: evidence.champion.rows}
    short = too_few(gate, counts, "requests")
    if short is not None:
        return short
    name = gate.argument
    try:
        outcome = function(evidence)
    except Exception as error:  # the user's code: any failure is the gate's failure
        return _custom(gate, "fail", counts, f"gate function {name} raised {_error(error)}")
    verdict, reason = read_outcome(outcome)
    if verdict is None:
        return _custom(gate, "fail", counts, f"gate function {name} {reason}")
    return _custom(gate, verdict, counts, reason or f"gate function {name}: {verdict}")


def read_outcome(outcome: object) -> tuple[Verdict | None, str]:
    """(verdict, reason) of a custom gate's return; (None, what was wrong) for a bad one."""
    verdict: object = outcome
    reason = ""
    if isinstance(outcome, tuple):
        if len(outcome) != 2 or not isinstance(outcome[1], str):
            return None, f"returned {_shown(outcome)}; return True, False, None or (that, 'why')"
        verdict, reason = outcome
    if verdict is None:
        return "inconclusive", reason
    if isinstance(verdict, bool | np.bool_):
        return ("pass" if verdict else "fail"), reason
    return None, f"returned {_shown(outcome)}; return True, False, None or (that, 'why')"


def _custom(gate: Gate, verdict: Verdict, counts: Mapping[str, int], reason: str) -> GateResult:
    return GateResult(gate.metric, verdict, None, None, gate_limit(gate), dict(counts), reason)


def _error(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
