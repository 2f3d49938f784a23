"""The model server's rollout routes (`/v1/rollouts...`): list, inspect, start and steer rollouts
through a duck-typed control object (`store.rollouts`, passed in by inference/app.py), and the
controller loop's thread. Must not import `parity.deploy` (inference sits below it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from parity.definitions.base import Definition
from parity.definitions.rollout import FailurePolicy, Gate, Phase, Rollout, RoutingKey
from parity.errors import (
    InvalidDefinition,
    InvalidRollout,
    ParityError,
    RolloutControlDisabled,
    RolloutNotFound,
)
from parity.serving.auth.scopes import Principal
from parity.timeutil import SPAN_EXAMPLES, parse_span

logger = logging.getLogger(__name__)

ACTIONS = ("pause", "resume", "promote", "abort")
# The fields of POST /v1/rollouts (the CLI's `parity rollout start` options, by their names).
START_FIELDS = (
    "rollout",
    "model",
    "candidate",
    "champion_alias",
    "shadow",
    "shadow_fraction",
    "steps",
    "routing_key",
    "gates",
    "failure_policy",
    "interval",
    "also_shadow",
)
Loc = tuple[str | int, ...]


class RolloutControl(Protocol):
    """What the routes call: `parity.deploy.service.Rollouts` (`store.rollouts`) has it."""

    def start(
        self,
        rollout: Any = None,
        *,
        model: str | None = None,
        candidate: int | str | None = None,
        actor: str = "",
    ) -> Any: ...

    def status(self, model: str) -> Any: ...

    def list(self, *, active_only: bool = False) -> Any: ...

    def pause(self, model: str, *, reason: str = "", actor: str = "") -> Any: ...

    def resume(self, model: str, *, reason: str = "", actor: str = "") -> Any: ...

    def promote(self, model: str, *, reason: str = "", actor: str = "") -> Any: ...

    def abort(self, model: str, *, reason: str = "", actor: str = "") -> Any: ...

    def history(self, model: str, rollout: str | None = None) -> Any: ...


class RunsRollouts(Protocol):
    def run(self, *, stop: threading.Event, owner: str | None = None) -> None: ...


# --- JSON shapes (the CLI's --json prints the same) -----------------------------------------


def plain(value: Any) -> Any:
    """`value` as JSON-ready data: dataclasses and definitions as objects, times as ISO text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rollout_json(state: Any) -> dict[str, Any]:
    """A rollout's state with what follows from it: its weight now, phase count, shadow or not."""
    body: dict[str, Any] = plain(state)
    body["weight"] = state.weight
    body["in_shadow"] = state.in_shadow
    body["phases"] = len(state.phases)
    return body


def rollout_detail(state: Any, events: Sequence[Any]) -> dict[str, Any]:
    """GET /v1/rollouts/{model} and `parity rollout history --json`: the state and its events."""
    return {"rollout": rollout_json(state), "events": [plain(e) for e in events]}


# --- POST /v1/rollouts: the body as a Rollout --------------------------------------------------


def http_field(loc: Loc) -> str:
    """('steps', 1, 'weight') as `steps[1].weight`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "body"


def start_arguments(
    body: Mapping[str, Any],
    *,
    name: Callable[[Loc], str] = http_field,
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> Rollout | str:
    """What to pass to `start`: the declared rollout's name, or a Rollout built from `body` (the
    POST body's fields, or the CLI's options in the same shape). InvalidRollout names the field
    (`name` spells it: a JSON path, or the CLI option) and the fix. `functions` are the repo's
    custom gate functions by name."""
    unknown = [key for key in body if key not in START_FIELDS]
    if unknown:
        raise InvalidRollout(
            f"{name((unknown[0],))}: not a rollout field; use {', '.join(START_FIELDS)}"
        )
    declared = body.get("rollout")
    if declared is not None:
        return _declared(declared, body, name)
    for required in ("model", "candidate"):
        if body.get(required) is None:
            raise InvalidRollout(
                f"{name((required,))} is required: give the model and its candidate version (or "
                f"alias), or {name(('rollout',))} with the name of a rollout declared in the repo"
            )
    _check_numbers(body, name)
    data = _with_durations({k: v for k, v in body.items() if k != "rollout"}, name)
    _check_steps(data.get("steps"), name)
    built = {k: v for k, v in data.items() if k not in _PARTS}
    built["name"] = _name_for(data["model"])
    built["custom_gates"] = _custom_gates(data.get("gates"), functions or {}, name)
    for key, kind in _PARTS.items():
        value = data.get(key)
        if key in ("steps", "gates") and key in data:
            if not isinstance(value, list):
                raise InvalidRollout(f"{name((key,))}: give a list of objects ({_SHAPES[key]})")
            built[key] = tuple(_part(kind, item, (key, i), name) for i, item in enumerate(value))
        elif key == "shadow" and isinstance(value, dict):
            built[key] = _part(kind, {"weight": 0.0, **value}, (key,), name)
        elif value is not None:
            built[key] = _part(kind, value, (key,), name)
        elif key in data:
            built[key] = None  # no shadow; the model's first join key; ...
    rollout = _part(Rollout, built, (), name)
    assert isinstance(rollout, Rollout)
    rollout.bind({k: v for k, v in (functions or {}).items() if k in _customs(rollout)})
    return rollout


_PARTS: dict[str, type[Definition]] = {
    "shadow": Phase,
    "steps": Phase,
    "routing_key": RoutingKey,
    "gates": Gate,
    "failure_policy": FailurePolicy,
}
_SHAPES = {
    "shadow": "duration, min_samples",
    "steps": "weight, duration, min_samples",
    "routing_key": "name, source: entity or header",
    "gates": "metric, threshold, min_samples, test, k, output",
    "failure_policy": "mode: cumulative or consecutive, limit",
}
# Problems the Rollout states without a field, by the field they are about.
_ABOUT = (
    ("steps' weights", "steps"),
    ("the first canary step", "steps"),
    ("a rollout needs", "steps"),
    ("gate", "gates"),
    ("the shadow phase", "shadow"),
    ("shadow_fraction", "shadow_fraction"),
)


def _part(kind: type[Definition], value: object, loc: Loc, name: Callable[[Loc], str]) -> Any:
    """`kind(**value)`; its InvalidDefinition as an InvalidRollout naming the fields."""
    if not isinstance(value, dict):
        shape = _SHAPES.get(str(loc[0]), "") if loc else ""
        raise InvalidRollout(f"{name(loc)}: give an object ({shape})")
    try:
        return kind(**value)
    except InvalidDefinition as error:
        raise InvalidRollout(_reworded(error.message, loc, name)) from None


def _reworded(message: str, loc: Loc, name: Callable[[Loc], str]) -> str:
    """A definition's message (`Gate: field 'metric': ...`) with its fields named from `loc`."""
    _, colon, rest = message.partition(": ")
    rest = rest if colon else message

    def field(match: re.Match[str]) -> str:
        inner = tuple(int(p) if p.isdigit() else p for p in match.group(1).split("."))
        return f"{name((*loc, *inner))}: "

    if not rest.startswith("field '"):
        about = next((key for text, key in _ABOUT if rest.startswith(text)), None)
        rest = f"{name(loc if about is None or loc else (about,))}: {rest}"
    return re.sub(r"field '([\w.]+)': ", field, rest).replace(": is required", " is required")


def _declared(declared: object, body: Mapping[str, Any], name: Callable[[Loc], str]) -> str:
    if not isinstance(declared, str) or not declared:
        raise InvalidRollout(f"{name(('rollout',))}: give the name of a rollout in the repo")
    others = [key for key, value in body.items() if key != "rollout" and value is not None]
    if others:
        raise InvalidRollout(
            f"{name(('rollout',))} starts the rollout {declared!r} as declared in the repo; drop "
            f"{name((others[0],))} (or drop {name(('rollout',))} and give every option)"
        )
    return declared


def _with_durations(data: dict[str, Any], name: Callable[[Loc], str]) -> dict[str, Any]:
    """Durations written as the CLI writes them ('10m') as timedeltas (copies: the body is not
    changed); whole seconds and ISO 8601 durations ('PT10M') are left to pydantic."""
    data = dict(data)
    _span_at(data, "interval", ("interval",), name)
    shadow = data.get("shadow")
    if isinstance(shadow, dict):
        data["shadow"] = shadow = dict(shadow)
        _span_at(shadow, "duration", ("shadow", "duration"), name)
    steps = data.get("steps")
    if isinstance(steps, list):
        data["steps"] = steps = [dict(s) if isinstance(s, dict) else s for s in steps]
        for i, step in enumerate(steps):
            if isinstance(step, dict):
                _span_at(step, "duration", ("steps", i, "duration"), name)
    return data


def _span_at(holder: dict[str, Any], key: str, loc: Loc, name: Callable[[Loc], str]) -> None:
    value = holder.get(key)
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise InvalidRollout(_duration_advice(name(loc), value))
    if isinstance(value, str):
        span = parse_span(value)
        if span is None and not value.startswith("P"):
            raise InvalidRollout(_duration_advice(name(loc), value))
        holder[key] = span if span is not None else value


def _duration_advice(where: str, value: object) -> str:
    return (
        f"{where}: {value!r} is not a duration; give a whole number and a unit, e.g. "
        f"{SPAN_EXAMPLES} (or seconds as a number)"
    )


# The number fields of a start body, by part: JSON numbers only (the definition's lax parsing
# would read `true` as 1 and "5" as 5).
_NUMBERS: dict[str, tuple[str, ...]] = {
    "shadow": ("min_samples",),
    "steps": ("weight", "min_samples"),
    "gates": ("threshold", "min_samples", "k"),
    "failure_policy": ("limit",),
}


def _check_numbers(body: Mapping[str, Any], name: Callable[[Loc], str]) -> None:
    """InvalidRollout naming the first number field given as a bool or text."""
    found: list[tuple[Loc, object]] = [(("shadow_fraction",), body.get("shadow_fraction"))]
    for part, fields in _NUMBERS.items():
        value = body.get(part)
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            loc: Loc = (part,) if i is None else (part, i)
            if isinstance(item, dict):
                found += [((*loc, field), item.get(field)) for field in fields]
    for loc, value in found:
        if isinstance(value, bool | str):
            raise InvalidRollout(f"{name(loc)}: give a number, not {value!r}")


def _check_steps(steps: object, name: Callable[[Loc], str]) -> None:
    """Weights that do not increase, named on the steps (the definition says it without a
    field)."""
    if not isinstance(steps, list):
        return
    weights = [s.get("weight") for s in steps if isinstance(s, dict)]
    numbers = [w for w in weights if isinstance(w, int | float) and not isinstance(w, bool)]
    if len(numbers) != len(steps):
        return  # a missing or non-numeric weight: pydantic names that one
    for i in range(1, len(numbers)):
        if not numbers[i] > numbers[i - 1]:
            raise InvalidRollout(
                f"{name(('steps', i, 'weight'))}: the canary weights must increase (got "
                f"{', '.join(f'{w:g}' for w in numbers)}); give increasing percentages, e.g. "
                "1, 5, 25, 50, 100"
            )


def _custom_gates(
    gates: object, functions: Mapping[str, Callable[..., Any]], name: Callable[[Loc], str]
) -> list[Any]:
    """The repo's functions the `custom:<function>` gates name (the definition hashes them)."""
    wanted: list[Any] = []
    for i, gate in enumerate(gates if isinstance(gates, list) else []):
        metric = gate.get("metric") if isinstance(gate, dict) else None
        if not isinstance(metric, str) or not metric.startswith("custom:"):
            continue
        function = functions.get(metric.split(":", 1)[1])
        if function is None:
            raise InvalidRollout(
                f"{name(('gates', i, 'metric'))}: {metric!r} names no custom gate function of "
                "the repo; list it in a Rollout's custom_gates in the repo and run parity apply "
                "(or start that declared rollout by name)"
            )
        if function not in wanted:
            wanted.append(function)
    return wanted


def _customs(rollout: Rollout) -> set[str]:
    return {ref.name for ref in rollout.custom_gates}


def _name_for(model: object) -> str:
    text = re.sub(r"[^A-Za-z0-9_]", "_", str(model))
    return f"{text}_rollout" if text[:1].isalpha() or text[:1] == "_" else f"r_{text}_rollout"


# --- the routes --------------------------------------------------------------------------------


class RolloutRoutes:
    """`/v1/rollouts...` over `control`. Without auth, POSTs answer 403 unless `enabled`; with
    auth (a `principal` per request) the scopes decide: `rollouts:admin` for the model a start
    body names (the gate checks the model in the path of the other POSTs), and the list shows
    the rollouts of the models the caller may read. `check_model(name)` raises ModelNotFound
    (404) for a model the registry does not have; `declared_model(name)` is the model of a
    rollout declared in the repo (RolloutNotFound for none)."""

    def __init__(
        self,
        control: RolloutControl | None,
        *,
        enabled: bool = False,
        check_model: Callable[[str], object] | None = None,
        declared_model: Callable[[str], str] | None = None,
    ) -> None:
        self.control = control
        self.enabled = enabled
        self.check_model = check_model
        self.declared_model = declared_model

    async def handle(
        self,
        method: str,
        parts: list[str],
        body: bytes,
        actor: str,
        principal: Principal | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON body) for `method` on `/v1/rollouts/` + `parts` (a known route)."""
        if method == "GET":
            return 200, await self._get(parts, principal)
        if (not self.enabled and principal is None) or self.control is None:
            raise RolloutControlDisabled(
                "rollout control is off on this server: start it with parity serve-models "
                "--enable-rollout-control, or turn auth on in parity.yaml (then the "
                "rollouts:admin scope guards it), or use parity rollout on the command line"
            )
        control = self.control
        payload = json_object(body)
        if not parts:
            target = start_arguments(payload)

            def start() -> Any:
                if principal is not None:
                    principal.require(("rollouts:admin",), self._model_of(target), "model")
                if isinstance(target, Rollout) and self.check_model is not None:
                    self.check_model(target.model)
                return control.start(target, actor=actor)

            state = await asyncio.to_thread(start)
            return 201, {"rollout": rollout_json(state)}
        reason = _reason(payload)
        act = getattr(control, parts[1])
        state = await asyncio.to_thread(act, parts[0], reason=reason, actor=actor)
        return 200, {"rollout": rollout_json(state)}

    def _model_of(self, target: Rollout | str) -> str:
        if isinstance(target, Rollout):
            return target.model
        try:
            if self.declared_model is not None:
                return self.declared_model(target)
        except RolloutNotFound:
            pass  # start() says so, if the token may start a rollout of that name at all
        return target

    async def _get(self, parts: list[str], principal: Principal | None) -> dict[str, Any]:
        control = self.control
        if not parts:
            if control is None:
                return {"rollouts": []}
            states = await asyncio.to_thread(control.list, active_only=True)
            if principal is not None:
                states = [s for s in states if principal.allows("models:read", s.model)]
            return {"rollouts": [rollout_json(s) for s in states]}
        if control is None:
            raise RolloutNotFound(f"model {parts[0]!r} has no rollout on this server")
        model = parts[0]

        def read() -> dict[str, Any]:
            state = control.status(model)
            return rollout_detail(state, control.history(model, state.id))

        return await asyncio.to_thread(read)


def json_object(body: bytes, error: type[ParityError] = InvalidRollout) -> dict[str, Any]:
    """A request body as a JSON object ({} for none); `error` (400) naming what is wrong."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
        raise error("body: not JSON; send a JSON object") from None
    if not isinstance(value, dict):
        raise error(f"body: a JSON object is expected, got {type(value).__name__}")
    return value


def _reason(payload: Mapping[str, Any]) -> str:
    extra = [key for key in payload if key != "reason"]
    if extra:
        raise InvalidRollout(f"{extra[0]}: not a field of this action; send only reason")
    reason = payload.get("reason", "")
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > 1000:
        raise InvalidRollout("reason: give a text of at most 1000 characters")
    return reason


# --- the controller loop of a server process ---------------------------------------------------


class ControllerLoop:
    """Runs `control.run(stop=...)` in a daemon thread (every `parity serve-models` process does,
    unless --no-rollout-controller; the lease lets one act); `stop` ends it."""

    def __init__(self, control: RunsRollouts) -> None:
        self.control = control
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="parity-rollout-controller", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.control.run(stop=self._stop)
        except Exception:  # the server keeps serving; the next start (or parity rollout run) acts
            logger.exception("the rollout controller stopped")
