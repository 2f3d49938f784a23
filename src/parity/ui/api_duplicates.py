"""/ui/api/duplicates: start a duplicate-feature scan in the background (POST) and read where it
stands or what it found (GET). Wiring only: the statistics and the reads are in ui/duplicates.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field

from parity.ui import duplicates
from parity.ui.api_session import ERRORS, context
from parity.ui.tasks import TaskState

router = APIRouter(tags=["duplicates"])
KIND = "duplicates"


class ScanRequest(BaseModel):
    """`sample_rows`: entity rows drawn per group of views sharing join keys. `min_correlation`:
    the |correlation| from which a pair is flagged "correlated"."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sample_rows: Annotated[int, Field(strict=True, ge=100, le=100_000)] = 5000
    min_correlation: Annotated[float, Field(strict=True, ge=0.5, le=1.0)] = 0.98


class DuplicatePair(BaseModel):
    a: str
    b: str
    a_url: str
    b_url: str
    entity: str
    rows: int
    correlation: float | None
    equal_share: float
    slope: float | None
    intercept: float | None
    relation: str
    evidence: str
    sample: list[list[Any]]


class DuplicateScan(BaseModel):
    """`state` "none": no scan yet in this process. `registry_version`: the registry the scan
    read; older than the overview's, the result is stale. `skipped`: views left out and why."""

    state: str
    id: str | None = None
    phase: str | None = None
    done: int = 0
    total: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    registry_version: int | None = None
    features: int | None = None
    pairs: list[DuplicatePair] = []
    skipped: list[str] = []


@router.get("/duplicates", response_model=DuplicateScan, responses=ERRORS)
def latest_scan(request: Request) -> DuplicateScan:
    ui = context(request)
    return _view(request, ui.tasks.latest(KIND))


@router.post("/duplicates", response_model=DuplicateScan, status_code=202, responses=ERRORS)
def start_scan(
    request: Request, body: Annotated[ScanRequest | None, Body()] = None
) -> DuplicateScan:
    """Starts a scan, or answers the one running (its settings, not these)."""
    ui = context(request)
    settings = body or ScanRequest()
    store = ui.store

    def work(progress: duplicates.Progress) -> duplicates.ScanResult:
        return duplicates.scan(
            store,
            sample_rows=settings.sample_rows,
            min_correlation=settings.min_correlation,
            progress=progress,
        )

    return _view(request, ui.tasks.start(KIND, "", work))


def _view(request: Request, task: TaskState | None) -> DuplicateScan:
    if task is None:
        return DuplicateScan(state="none")
    result: duplicates.ScanResult | None = task.result
    scan = DuplicateScan(
        state=task.state,
        id=task.id,
        phase=task.phase,
        done=task.done,
        total=task.total,
        started_at=task.started_at,
        finished_at=task.finished_at,
        error=task.error,
    )
    if result is None:
        return scan
    ui = context(request)
    readable = [
        p
        for p in result.pairs
        if all(ui.can(request, "features:read", _view_of(n)) for n in (p.a, p.b))
    ]
    scan.registry_version = result.registry_version
    scan.features = result.features
    scan.pairs = [_pair(p) for p in readable]
    scan.skipped = [s for s in result.skipped if ui.can(request, "features:read", _view_of(s))]
    return scan


def _view_of(name: str) -> str:
    return name.split(":", 1)[0]


def _url(name: str) -> str:
    view, feature = name.split(":", 1)
    return f"#/feature/{view}/{feature}"


def _pair(pair: duplicates.Pair) -> DuplicatePair:
    return DuplicatePair(
        a=pair.a,
        b=pair.b,
        a_url=_url(pair.a),
        b_url=_url(pair.b),
        entity=pair.entity,
        rows=pair.rows,
        correlation=pair.correlation,
        equal_share=pair.equal_share,
        slope=pair.slope,
        intercept=pair.intercept,
        relation=pair.relation,
        evidence=pair.evidence,
        sample=pair.sample,
    )
