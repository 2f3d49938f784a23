"""The HTML report's view-model from a drift run (DriftReport) and its stored history (DriftRow):
which window is shown, the reference vs current bins, each column's score over time.
Reads the drift types by their fields only (Protocols); numpy is imported where bins are counted."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from parity.errors import ReportError
from parity.monitoring.report import (
    DRIFT,
    NO_DRIFT,
    Bin,
    HistoryPoint,
    ReportColumn,
    ReportView,
    render_report,
)

P_VALUE_TESTS = frozenset({"ks", "chi_squared", "z_test"})  # drift when p <= threshold
DATASET = "__dataset__"  # drift_history's column name of a window's dataset-level row
MAX_CATEGORIES = 12  # categories drawn one by one; the rest (and new ones) are one "other" bar
_JUDGED = (DRIFT, NO_DRIFT)  # any other status (insufficient_data, no_data) is no evidence
OVERLAY_BINS = 30  # equal-width bins of a numeric overlay: the shape shows at 500 px
OTHER_LABEL = "other / new"
VALUE_BINS = 20  # a numeric column with at most this many reference values is drawn per value


class ColumnResultLike(Protocol):
    """drift.ColumnResult's fields the report reads."""

    @property
    def column(self) -> str: ...
    @property
    def test(self) -> str: ...
    @property
    def statistic(self) -> float | None: ...
    @property
    def p_value(self) -> float | None: ...
    @property
    def threshold(self) -> float | None: ...
    @property
    def status(self) -> str: ...
    @property
    def drifted(self) -> bool | None: ...
    @property
    def reason(self) -> str: ...


class WindowLike(Protocol):
    """drift.WindowDrift's fields the report reads (`values`: the window's rows, pyarrow)."""

    @property
    def version(self) -> int: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def rows(self) -> int: ...
    @property
    def columns(self) -> Sequence[ColumnResultLike]: ...
    @property
    def share(self) -> float | None: ...
    @property
    def drifted(self) -> bool | None: ...
    @property
    def status(self) -> str: ...
    @property
    def values(self) -> Any: ...


class ReferenceLike(Protocol):
    @property
    def dataset(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def profiles(self) -> Mapping[str, Any]: ...  # column -> profile.ColumnProfile


class SettingsLike(Protocol):
    @property
    def drift_share(self) -> float: ...
    @property
    def window(self) -> timedelta: ...


class DriftReportLike(Protocol):
    """drift.DriftReport's fields the report reads."""

    @property
    def model(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def run_at(self) -> datetime: ...
    @property
    def versions(self) -> Sequence[int]: ...
    @property
    def settings(self) -> SettingsLike: ...
    @property
    def references(self) -> Mapping[int, ReferenceLike]: ...
    @property
    def windows(self) -> Sequence[WindowLike]: ...


class HistoryRowLike(Protocol):
    """drift_history.DriftRow's fields the report reads."""

    @property
    def run_at(self) -> datetime: ...
    @property
    def model(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def window_end(self) -> datetime: ...
    @property
    def column(self) -> str: ...
    @property
    def statistic(self) -> float | None: ...
    @property
    def p_value(self) -> float | None: ...
    @property
    def status(self) -> str: ...
    @property
    def drifted(self) -> bool | None: ...


def render_drift_report(
    report: DriftReportLike, history: Sequence[HistoryRowLike] = (), *, version: int | None = None
) -> str:
    """The HTML page of a drift run: its latest judged window of `version` (default: the
    newest version in the run), with each column's score over the run's windows and `history`."""
    return render_report(drift_view(report, history, version=version))


def drift_view(
    report: DriftReportLike, history: Sequence[HistoryRowLike] = (), *, version: int | None = None
) -> ReportView:
    chosen = max(report.versions) if version is None else version
    windows = sorted((w for w in report.windows if w.version == chosen), key=lambda w: w.end)
    if not windows:
        tested = ", ".join(str(v) for v in report.versions) or "none"
        raise ReportError(
            f"the drift run of {report.target} has no window of version {chosen} (it tested "
            f"versions: {tested}); run drift for that version or pick one of those"
        )
    judged = [w for w in windows if w.status in _JUDGED]
    current = (judged or windows)[-1]
    reference = report.references[chosen]
    past = [h for h in history if h.model == report.model and h.version == chosen]
    columns = [
        _column(result, reference.profiles.get(result.column), current, windows, past)
        for result in current.columns
    ]
    share_points = _points(
        DATASET,
        past,
        [(w.end, w.share if w.status in _JUDGED else None, w.drifted) for w in windows],
    )
    return ReportView(
        title=f"Drift of {report.model} version {chosen} ({report.target})",
        columns=columns,
        drift_share=report.settings.drift_share,
        dataset_drift=current.drifted if current.status in _JUDGED else None,
        window_start=current.start,
        window_end=current.end,
        reference=f"dataset {reference.dataset} (fingerprint {reference.fingerprint[:12]})",
        generated_at=report.run_at,
        details=[("Rows in the window", f"{current.rows:,}")],
        share_history=share_points if len(share_points) > 1 else (),
    )


def _column(
    result: ColumnResultLike,
    profile: Any,
    current: WindowLike,
    windows: Sequence[WindowLike],
    past: Sequence[HistoryRowLike],
) -> ReportColumn:
    p_test = result.test in P_VALUE_TESTS or (result.p_value is not None)
    runs = []
    for window in windows:
        same = [c for c in window.columns if c.column == result.column]
        if same:
            c = same[0]
            score = _score(c.statistic, c.p_value, p_test) if c.status in _JUDGED else None
            runs.append((window.end, score, c.drifted))
    values = None
    if current.values is not None and result.column in current.values.column_names:
        values = current.values.column(result.column)
    return ReportColumn(
        name=result.column,
        test=_test_name(result.test, p_test),
        statistic=_score(result.statistic, result.p_value, p_test),
        threshold=result.threshold if result.threshold is not None else math.nan,
        status=result.status,
        reason=result.reason,
        bins=bins(profile, values) if profile is not None else (),
        history=_points(result.column, past, runs, p_test),
        higher_is_drift=not p_test,
        reference_rows=getattr(profile, "valid", None),
        current_rows=current.rows,
    )


def _test_name(test: str | None, p_test: bool) -> str:
    if test in (None, "", "None"):  # a column that could not be tested has no test
        return "-"
    return f"{test} p-value" if p_test else str(test)


def _score(statistic: float | None, p_value: float | None, p_test: bool) -> float | None:
    value = p_value if p_test else statistic
    return None if value is None or not math.isfinite(value) else float(value)


def _points(
    column: str,
    past: Sequence[HistoryRowLike],
    runs: Sequence[tuple[datetime, float | None, bool | None]],
    p_test: bool = False,
) -> list[HistoryPoint]:
    """One point per window end: this run's windows over the stored history's, and among
    stored rows of the same window the newest run's."""
    by_end: dict[datetime, tuple[datetime, HistoryPoint]] = {}
    for row in past:
        if row.column != column:
            continue
        point = HistoryPoint(
            row.window_end, _score(row.statistic, row.p_value, p_test), row.drifted
        )
        if row.status not in _JUDGED:
            point = HistoryPoint(row.window_end, None, None)
        seen = by_end.get(row.window_end)
        if seen is None or seen[0] <= row.run_at:
            by_end[row.window_end] = (row.run_at, point)
    latest = {end: point for end, (_, point) in by_end.items()}
    for end, score, drifted in runs:
        latest[end] = HistoryPoint(end, score, drifted)
    return [latest[end] for end in sorted(latest)]


# --- bins --------------------------------------------------------------------------------------


def bins(profile: Any, values: Any) -> list[Bin]:
    """Reference vs current shares over common bins: the statistics' `overlay` (one bar per
    value for categories and few-valued numbers, else equal-width bins between the 0.1 % and
    99.9 % quantiles of both sides). Without current values (an empty window) or a profile the
    overlay cannot read: the reference's own bins (PSI deciles or top categories), and the
    current side where values are given."""
    found = _overlay(profile, values)
    if found is not None:
        return found
    frequencies = tuple(getattr(profile, "frequencies", ()) or ())
    counts = tuple(getattr(profile, "psi_counts", ()) or ())
    complete = bool(frequencies) and int(getattr(profile, "other", 0)) == 0
    if str(getattr(profile, "kind", "")) == "numeric":
        if complete and len(frequencies) <= VALUE_BINS:
            return _category_bins(frequencies, 0, values, by_value=True)
        if counts:
            return _numeric_bins(tuple(getattr(profile, "psi_edges", ())), counts, values)
    if frequencies:
        return _category_bins(frequencies, int(getattr(profile, "other", 0)), values)
    return []


def _overlay(profile: Any, values: Any) -> list[Bin] | None:
    if values is None:
        return None
    from parity.errors import ParityError
    from parity.monitoring.profile import ColumnProfile
    from parity.monitoring.samples import overlay

    if not isinstance(profile, ColumnProfile):
        return None
    try:
        found = overlay(profile, values, bins=OVERLAY_BINS)
    except ParityError:  # no values on one side, or values of another kind: fall back
        return None
    if not found.reference or not found.current:
        return None
    pairs = list(zip(found.reference, found.current, strict=True))
    if found.labels:
        labelled = [
            (OTHER_LABEL if label == "other" else str(label), r, c)
            for label, (r, c) in zip(found.labels, pairs, strict=True)
        ]
        if profile.kind != "numeric":  # categories: most frequent in the reference first
            labelled.sort(key=lambda x: (x[0] == OTHER_LABEL, -x[1], -x[2], x[0]))
        return _fold(labelled)
    edges = found.edges
    return [Bin(_edge_label(edges[1:-1], i), r, c) for i, (r, c) in enumerate(pairs)]


def _fold(labelled: list[tuple[str, float, float]]) -> list[Bin]:
    """At most MAX_CATEGORIES bars plus one "other / new" holding the rest."""
    if len(labelled) <= MAX_CATEGORIES + 1:
        return [Bin(label, r, c) for label, r, c in labelled]
    named = [x for x in labelled if x[0] != OTHER_LABEL]
    named.sort(key=lambda x: -x[1])
    kept, rest = named[:MAX_CATEGORIES], named[MAX_CATEGORIES:]
    rest += [x for x in labelled if x[0] == OTHER_LABEL]
    other = Bin(OTHER_LABEL, sum(x[1] for x in rest), sum(x[2] for x in rest))
    return [*(Bin(label, r, c) for label, r, c in kept), other]


def _numeric_bins(edges: Sequence[float], counts: Sequence[int], values: Any) -> list[Bin]:
    import numpy as np

    total = sum(counts)
    current: list[float | None] = [None] * len(counts)
    if values is not None:
        import pyarrow as pa

        array = values.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        array = array[np.isfinite(array)]
        if array.size:
            # bin i holds [edges[i-1], edges[i]): the first and last bins are open-ended.
            index = np.searchsorted(np.asarray(edges, dtype=np.float64), array, side="right")
            found = np.bincount(index, minlength=len(counts))
            current = [float(n) / array.size for n in found]
    return [
        Bin(_edge_label(edges, i), (n / total) if total else 0.0, current[i])
        for i, n in enumerate(counts)
    ]


def _edge_label(edges: Sequence[float], i: int) -> str:
    if not edges:
        return "all"
    if i == 0:
        return f"< {edges[0]:.4g}"
    if i == len(edges):
        return f"≥ {edges[-1]:.4g}"
    return f"[{edges[i - 1]:.4g}, {edges[i]:.4g})"


def _category_bins(
    frequencies: Sequence[tuple[Any, int]], other: int, values: Any, *, by_value: bool = False
) -> list[Bin]:
    if by_value:
        ordered = sorted(frequencies, key=lambda vc: float(vc[0]))
    else:
        ordered = sorted(frequencies, key=lambda vc: (-vc[1], str(vc[0])))
    shown, rest = ordered[:MAX_CATEGORIES], ordered[MAX_CATEGORIES:]
    total = sum(c for _, c in ordered) + other
    other_ref = other + sum(c for _, c in rest)
    keys = [_key(v) for v, _ in shown]
    current: dict[str, int] = {}
    seen = 0
    if values is not None:
        for value in values.to_pylist():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            current[_key(value)] = current.get(_key(value), 0) + 1
            seen += 1

    def share(n: int, of: int) -> float:
        return n / of if of else 0.0

    result = [
        Bin(
            str(v),
            share(c, total),
            share(current.get(k, 0), seen) if values is not None else None,
        )
        for (v, c), k in zip(shown, keys, strict=True)
    ]
    other_cur = seen - sum(current.get(k, 0) for k in keys)
    if other_ref or other_cur:
        result.append(
            Bin(
                OTHER_LABEL,
                share(other_ref, total),
                share(other_cur, seen) if values is not None else None,
            )
        )
    return result


def _key(value: Any) -> str:
    """Compare categories as text, so a logged 1 matches a profiled 1.0 or '1'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- alert signals -------------------------------------------------------------------------------


def drift_signals(
    report: DriftReportLike, *, version: int | None = None
) -> list[tuple[datetime, dict[str, float | None]]]:
    """Per window of `version` (default: the newest in the run), oldest first: its end and the
    alert signals it gives, `drift_share` and `drift:<column>` (the p-value for p-value tests,
    else the statistic); None where the window had insufficient data."""
    chosen = max(report.versions) if version is None and report.versions else version
    series = []
    for window in sorted((w for w in report.windows if w.version == chosen), key=lambda w: w.end):
        judged = window.status in _JUDGED
        signals: dict[str, float | None] = {"drift_share": window.share if judged else None}
        for c in window.columns:
            p_test = c.test in P_VALUE_TESTS or c.p_value is not None
            score = _score(c.statistic, c.p_value, p_test) if c.status in _JUDGED else None
            signals[f"drift:{c.column}"] = score
        series.append((window.end, signals))
    return series
