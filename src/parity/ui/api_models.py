"""/ui/api routes of the models part: models, versions, the alias timeline, rollouts and their
actions (pause, resume, promote, abort: the UI's only writes). Wiring and response shapes only:
models_view and rollouts_view compute. Must not read Parquet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from parity.errors import InvalidTime, RolloutControlDisabled
from parity.serving.auth.gate import as_caller
from parity.timeutil import parse_time
from parity.ui import models_view, rollouts_view
from parity.ui.api_session import ERRORS, Error, context

router = APIRouter(tags=["models"])

ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": Error, "description": "Actions are off, or the token lacks rollouts:admin"},
    409: {"model": Error, "description": "The rollout's state does not allow the action"},
}


# --- response shapes ---------------------------------------------------------------------------


class ModelRow(BaseModel):
    name: str
    versions: int
    latest: int | None
    aliases: dict[str, int]
    active_rollout: str | None
    updated_at: datetime | None
    url: str


class Models(BaseModel):
    models: list[ModelRow]


class Field_(BaseModel):
    name: str
    dtype: str


class Signature(BaseModel):
    inputs: list[Field_]
    outputs: list[Field_]


class JobRef(BaseModel):
    id: int | None
    name: str | None


class Lineage(BaseModel):
    """`features`: the training set's columns as built (`view:feature`); without a training
    set, the feature service's features now."""

    dataset: str | None
    dataset_rows: int | None
    dataset_created_at: datetime | None
    feature_service: str | None
    feature_service_url: str | None
    features: list[str]
    training_fingerprint: str | None
    dataset_registry_version: int | None
    registry_version: int | None
    code: str | None
    job: JobRef | None


class Version(BaseModel):
    """A deleted version (`deleted`: its number is never reused) carries only its number."""

    version: int
    registered_at: datetime | None
    author: str | None
    flavor: str | None
    description: str
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, str]
    signature: Signature | None
    lineage: Lineage | None
    artifact: str | None
    artifact_size: int | None
    aliases: list[str]
    deleted: bool
    url: str


class ModelDetail(BaseModel):
    name: str
    aliases: dict[str, int]
    versions: list[Version]
    url: str


class AliasMove(BaseModel):
    alias: str
    version: int | None
    previous: int | None
    at: datetime
    actor: str
    reason: str
    kind: Literal["set", "moved", "rollback", "deleted"]


class AliasSegment(BaseModel):
    """The alias named `version` from `start` until `end` (exclusive; null: still does)."""

    alias: str
    version: int
    start: datetime
    end: datetime | None
    reason: str
    actor: str


class AliasTimeline(BaseModel):
    """`at_versions`: the version each alias named at `at` (null: it did not exist then)."""

    model: str
    events: list[AliasMove]
    timeline: list[AliasSegment]
    at: datetime
    at_versions: dict[str, int | None]
    url: str


class RolloutRow(BaseModel):
    id: str
    model: str
    definition: str
    status: Literal["active", "paused", "promoted", "aborted"]
    phase: Literal["shadow", "canary", "done"]
    step: int
    steps: int
    candidate: int
    champion: int
    candidate_weight: float
    started_at: datetime
    updated_at: datetime
    reason: str
    url: str


class Rollouts(BaseModel):
    rollouts: list[RolloutRow]


class Step(BaseModel):
    """`mirror`: percent of requests also sent to shadow versions during the step."""

    index: int
    kind: Literal["shadow", "canary"]
    weight: float
    mirror: float
    min_seconds: float
    min_samples: int
    current: bool
    done: bool


class GateRow(BaseModel):
    """`value`/`champion_value`: the metric of each arm in the checked window; `passed` null:
    inconclusive or not checked yet; `samples`: rows per arm."""

    name: str
    metric: str
    op: str
    threshold: float | None
    min_samples: int | None
    value: float | None
    champion_value: float | None
    samples: dict[str, int]
    verdict: Literal["pass", "fail", "inconclusive"] | None
    passed: bool | None
    reason: str


class Decision(BaseModel):
    at: datetime
    kind: str
    action: str
    step: int
    weight: float
    actor: str
    reason: str
    gates: list[GateRow]


class Actions(BaseModel):
    pause: bool
    resume: bool
    promote: bool
    abort: bool


class RolloutView(BaseModel):
    """A rollout now: `gates` hold the newest check's results (at `checked_at`); `actions` what
    the state allows and the caller may."""

    id: str
    model: str
    definition: str
    status: Literal["active", "paused", "promoted", "aborted"]
    reason: str
    candidate: int
    champion: int
    champion_alias: str
    shadows: list[int]
    phase: Literal["shadow", "canary", "done"]
    step: int
    step_started: datetime
    steps: list[Step]
    candidate_weight: float
    champion_weight: float
    mirror_percent: float
    failures: int
    failure_limit: int
    failure_mode: str
    started_at: datetime
    updated_at: datetime
    checked_at: datetime | None
    gates: list[GateRow]
    history: list[Decision]
    actions: Actions
    url: str


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


# --- routes ------------------------------------------------------------------------------------


@router.get("/models", response_model=Models, responses=ERRORS)
def models(request: Request) -> Any:
    ui = context(request)
    names = ui.visible(request, "models:read", ui.store.models.models())
    return {"models": models_view.models_list(ui.store, names)}


@router.get("/models/{model}", response_model=ModelDetail, responses=ERRORS)
def model(request: Request, model: str) -> Any:
    return models_view.model_detail(context(request).store, model)


@router.get("/models/{model}/aliases", response_model=AliasTimeline, responses=ERRORS)
def aliases(
    request: Request,
    model: str,
    at: Annotated[str | None, Query(description="ISO 8601 time or 'now' (default: now)")] = None,
) -> Any:
    store = context(request).store
    return models_view.alias_timeline(store, model, _moment(at, store.now))


@router.get("/rollouts", response_model=Rollouts, responses=ERRORS)
def rollouts(
    request: Request,
    active: Annotated[bool | None, Query(description="true: running ones; false: finished")] = None,
) -> Any:
    ui = context(request)
    states = rollouts_view.rollout_states(ui.store, active=active)
    seen = ui.visible(request, "models:read", [s.model for s in states])
    return {"rollouts": [rollouts_view.summary(s) for s in states if s.model in seen]}


@router.get("/rollouts/{model}", response_model=RolloutView, responses=ERRORS)
def rollout(
    request: Request,
    model: str,
    rollout_id: Annotated[
        str | None, Query(alias="id", max_length=300, description="a rollout id (default: latest)")
    ] = None,
) -> Any:
    return _view(request, model, rollout_id)


def _action(name: str) -> Any:
    def act(
        request: Request,
        model: str,
        body: Annotated[ActionBody | None, Body()] = None,
    ) -> Any:
        ui = context(request)
        _check_actions(request, model)
        reason = (body.reason if body is not None else None) or ""
        principal = ui.principal(request)
        client = (request.scope.get("client") or ("", 0))[0]
        actor = f"http:{client}" if principal is None else principal.name
        with as_caller(request.scope):  # the audit trail's actor and origin
            getattr(ui.store.rollouts, name)(model, reason=reason, actor=actor)
        return _view(request, model, None)

    act.__name__ = f"rollout_{name}"
    act.__doc__ = f"{name.capitalize()} the model's latest rollout (rollouts:admin)."
    return act


for _name in rollouts_view.ACTIONS:
    router.post(
        f"/rollouts/{{model}}/{_name}",
        response_model=RolloutView,
        responses=ACTION_ERRORS,
        name=f"rollout_{_name}",
    )(_action(_name))


# --- helpers -----------------------------------------------------------------------------------


def _moment(text: str | None, now: Any) -> datetime:
    """`at` as a time (default now), or a 422 naming the parameter."""
    if text is None:
        return now()  # type: ignore[no-any-return]
    try:
        return parse_time(text, "at", now=now).astimezone(UTC)  # answered in UTC, as every time
    except (InvalidTime, OverflowError) as error:
        message = (
            f"{text!r} is out of range in UTC"
            if isinstance(error, OverflowError)
            else error.message
        )
        raise RequestValidationError(
            [{"loc": ("query", "at"), "msg": message.removeprefix("at: "), "type": "value_error"}]
        ) from None


def _may_act(request: Request, model: str) -> bool:
    ui = context(request)
    if not ui.secured:
        return bool(ui.enable_actions)
    return bool(ui.can(request, "rollouts:admin", model))


def _check_actions(request: Request, model: str) -> None:
    """Auth off: refused unless the UI was started with --enable-actions; auth on: the gate
    already asked for rollouts:admin on the model (checked again here)."""
    ui = context(request)
    if not ui.secured and not ui.enable_actions:
        raise RolloutControlDisabled(
            "rollout actions are off in this UI: start it with parity ui --enable-actions, or "
            "turn auth on in parity.yaml (then the rollouts:admin scope guards them), or use "
            "parity rollout on the command line"
        )
    ui.require(request, "rollouts:admin", model, "model")


def _view(request: Request, model: str, rollout: str | None) -> Any:
    store = context(request).store
    state, events, latest = rollouts_view.read_rollout(store, model, rollout)
    may = _may_act(request, model)
    actions = rollouts_view.allowed_actions(state.status, latest=latest, may=may)
    return rollouts_view.rollout_view(state, events, actions)
