"""Freshness SLOs (pure): per online view, the age of its newest write (materialization END or
a push this process saw) against the view's `freshness_slo` -> ok / breached / unknown, and the
alert signals `freshness:<view>`. Reads nothing itself; imports only definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from parity.definitions import FeatureView

Status = Literal["ok", "breached", "unknown", "no_slo"]


@dataclass(frozen=True)
class ViewFreshness:
    """One view: when it was last written online, how old that is at `now`, and its SLO."""

    view: str
    newest: datetime | None  # materialization watermark (END) or this process's last push
    age_seconds: float | None  # None when the view was never written (as far as known here)
    slo_seconds: float | None  # None when the view declares no freshness_slo

    @property
    def status(self) -> Status:
        """no_slo without an SLO; unknown when no write is known; breached past the SLO."""
        if self.slo_seconds is None:
            return "no_slo"
        if self.age_seconds is None:
            return "unknown"
        return "breached" if self.age_seconds > self.slo_seconds else "ok"

    @property
    def slo_ratio(self) -> float | None:
        """age / SLO: above 1 the SLO is breached (the alert signal's value)."""
        if self.slo_seconds is None or self.age_seconds is None:
            return None
        return self.age_seconds / self.slo_seconds


def evaluate(
    newest: Mapping[str, datetime | None],
    slos: Mapping[str, timedelta | None],
    now: datetime,
) -> list[ViewFreshness]:
    """Each view of `newest` (sorted by name) against its SLO in `slos` at `now`. A write
    stamped after `now` (a clock behind the writer's) counts as age 0, never negative."""
    results = []
    for view in sorted(newest):
        moment, slo = newest[view], slos.get(view)
        age = None if moment is None else max((now - moment).total_seconds(), 0.0)
        results.append(
            ViewFreshness(view, moment, age, None if slo is None else slo.total_seconds())
        )
    return results


def slos_of(views: Iterable[FeatureView]) -> dict[str, timedelta | None]:
    """Each view's declared `freshness_slo` (None where it declares none)."""
    return {view.name: view.freshness_slo for view in views}


def signals(results: Iterable[ViewFreshness]) -> dict[str, float]:
    """Alert signals (monitoring/alerts.py): `freshness:<view>` = age / SLO for each view with an
    SLO and a known write (fire at 1.0 = the SLO; unknown views give no signal)."""
    return {f"freshness:{r.view}": ratio for r in results if (ratio := r.slo_ratio) is not None}
