"""`parity rollout ...`: start, inspect and steer rollouts, and run the controller loop. Options
become the POST /v1/rollouts body's fields, checked by the one builder both share
(inference/rollout_http.py); the lifecycle itself lives in `store.rollouts` (parity.deploy).
"""

from __future__ import annotations

import getpass
import json
import math
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from parity.cli import rollout_render as view
from parity.cli.common import RepoOption, command, console, err, store_at
from parity.definitions.rollout import DEFAULT_STEPS, MAX_COUNT, Rollout
from parity.errors import InvalidOption, InvalidRollout, RolloutNotFound
from parity.inference.rollout_http import Loc, rollout_detail, rollout_json, start_arguments
from parity.timeutil import SPAN_EXAMPLES, parse_span

if TYPE_CHECKING:
    from parity.deploy.state import RolloutEvent, RolloutState
    from parity.feature_store import FeatureStore

rollout_app = typer.Typer(
    help="Safe rollouts: shadow, sticky canary steps, gates decided in advance (docs/rollout.md)."
)

ModelArg = Annotated[str, typer.Argument(help="Model name.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why: kept in the rollout's history.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (as the HTTP API answers).")]
_OPTION_OF: dict[Loc, str] = {
    ("rollout",): "ROLLOUT",
    ("model",): "--model",
    ("candidate",): "--candidate",
    ("champion_alias",): "--champion-alias",
    ("steps",): "--steps",
    ("steps", "weight"): "--steps",
    ("steps", "duration"): "--step-duration",
    ("steps", "min_samples"): "--step-min-samples",
    ("shadow",): "--shadow",
    ("shadow", "duration"): "--shadow",
    ("shadow", "min_samples"): "--shadow-min-samples",
    ("shadow_fraction",): "--shadow-fraction",
    ("routing_key",): "--routing-key/--routing-header",
    ("failure_policy",): "--failure-mode/--failure-limit",
    ("failure_policy", "mode"): "--failure-mode",
    ("failure_policy", "limit"): "--failure-limit",
    ("interval",): "--interval",
}


def _actor() -> str:
    try:
        return os.environ.get("PARITY_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- option parsing: every bad value is an InvalidOption naming the option and the fix --------


def _span(text: str, option: str, *, minimum_s: int = 0) -> str:
    span = parse_span(text)
    if span is None or span.total_seconds() < minimum_s:
        least = f" of at least {minimum_s}s" if minimum_s else ""
        raise InvalidOption(
            f"{option} {text!r}: give a duration{least}: a whole number and a unit, e.g. "
            f"{SPAN_EXAMPLES}"
        )
    return text


def _count(text: str, option: str, *, minimum: int = 0) -> int:
    value = text.strip()
    if (
        not value.isascii()
        or not value.isdigit()
        or len(value) > 12
        or not minimum <= int(value) <= MAX_COUNT
    ):
        raise InvalidOption(
            f"{option} {text!r}: give a whole number from {minimum} to {MAX_COUNT:,}"
        )
    return int(value)


def _number(text: str, option: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidOption(f"{option} {text!r}: give a finite number, e.g. {example}")
    return value


def _candidate(text: str) -> int | str:
    value = text.strip()
    if value.isascii() and value.isdigit():
        if len(value) > 10:
            raise InvalidOption(f"--candidate {text!r}: give a version number (1, 2, ...)")
        return int(value)
    return value


def _weights(text: str) -> list[float]:
    parts = [p.strip().removesuffix("%") for p in text.split(",")]
    if not text.strip() or not all(parts):
        raise InvalidOption(
            f"--steps {text!r}: give the canary weights in percent, comma-separated, e.g. "
            "1,5,25,50,100"
        )
    return [_number(p, "--steps", "1,5,25,50,100") for p in parts]


def _gate(text: str) -> dict[str, Any]:
    """`metric[:threshold][:key=value...]`; label: and custom: metrics keep their second part:
    `latency_p99:0.2`, `label:precision_at_k:0.05:k=100`, `custom:my_gate`."""
    parts = text.strip().split(":")
    take = 2 if parts[0] in ("label", "custom") else 1
    gate: dict[str, Any] = {"metric": ":".join(parts[:take])}
    for part in parts[take:]:
        key, equals, value = part.partition("=")
        if not equals and "threshold" not in gate:
            gate["threshold"] = _number(part, f"--gate {text!r}", "latency_p99:0.1")
        elif key in ("min_samples", "k"):
            gate[key] = _count(value, f"--gate {text!r} {key}", minimum=1)
        elif key in ("test", "output") and value:
            gate[key] = value
        else:
            raise InvalidOption(
                f"--gate {text!r}: write metric[:threshold][:min_samples=N][:k=N][:test=psi]"
                "[:output=NAME], e.g. latency_p99:0.1 or label:precision_at_k:0.05:k=100"
            )
    return gate


def _option_namer(gates: Sequence[str]) -> Callable[[Loc], str]:
    """Field paths of the start body as the CLI options that set them."""

    def name(loc: Loc) -> str:
        if not loc:
            return "the options"
        if loc[0] == "gates" and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(gates):
            return f"--gate {gates[loc[1]]!r}"
        if loc[0] == "gates":
            return "--gate"
        fields = tuple(p for p in loc if isinstance(p, str))
        return _OPTION_OF.get(fields[:2]) or _OPTION_OF.get(fields[:1]) or fields[0]

    return name


def _shadow(
    shadow: str | None, no_shadow: bool, min_samples: str | None
) -> tuple[bool, dict[str, Any] | None]:
    """(whether to send `shadow`, its value): the definition's default shadow when no option."""
    if no_shadow:
        given = "--shadow" if shadow is not None else "--shadow-min-samples" if min_samples else ""
        if given:
            raise InvalidOption(f"--no-shadow drops the shadow phase; drop {given} too")
        return True, None
    if shadow is None and min_samples is None:
        return False, None
    default = Rollout.model_fields["shadow"].default
    phase: dict[str, Any] = {"duration": default.duration, "min_samples": default.min_samples}
    if shadow is not None:
        phase["duration"] = _span(shadow, "--shadow")
    if min_samples is not None:
        phase["min_samples"] = _count(min_samples, "--shadow-min-samples")
    return True, phase


def _steps(
    steps: str | None, duration: str | None, min_samples: str | None
) -> list[dict[str, Any]] | None:
    if steps is None and duration is None and min_samples is None:
        return None
    weights = _weights(steps) if steps is not None else list(DEFAULT_STEPS)
    step: dict[str, Any] = {}
    if duration is not None:
        step["duration"] = _span(duration, "--step-duration")
    if min_samples is not None:
        step["min_samples"] = _count(min_samples, "--step-min-samples")
    return [{"weight": w, **step} for w in weights]


def _routing(key: str | None, header: str | None) -> dict[str, str] | None:
    if key is not None and header is not None:
        raise InvalidOption(
            "--routing-key and --routing-header both given: route by an entity join key or by "
            "a request header, not both"
        )
    if key is not None:
        return {"name": key, "source": "entity"}
    if header is not None:
        return {"name": header, "source": "header"}
    return None


def _failure(mode: str | None, limit: str | None) -> dict[str, Any] | None:
    policy: dict[str, Any] = {}
    if mode is not None:
        if mode not in ("cumulative", "consecutive"):
            raise InvalidOption(f"--failure-mode {mode!r}: use cumulative or consecutive")
        policy["mode"] = mode
    if limit is not None:
        policy["limit"] = _count(limit, "--failure-limit", minimum=1)
    return policy or None


def _as_options(message: str, gates: Sequence[str]) -> str:
    """'candidate: ...' as '--candidate: ...' (the start body's field as the CLI option)."""
    field, colon, rest = message.partition(": ")
    if not colon or not field.isidentifier():
        return message
    option = _option_namer(gates)((field,))
    return message if option == field else f"{option}: {rest}"


def _gate_functions(store: FeatureStore) -> dict[str, Callable[..., Any]]:
    """The custom gate functions of the repo's rollouts, by name (`--gate custom:NAME`)."""
    from parity.repo.loader import load_repo

    functions: dict[str, Callable[..., Any]] = {}
    for declared in load_repo(store.repo_path, store.project).catalog.rollouts.values():
        functions.update(declared.gate_functions)
    return functions


# --- commands ------------------------------------------------------------------------------


# The start command's options (module level, so the command reads as what it does)
RolloutArg = Annotated[
    str | None, typer.Argument(help="A rollout declared in the repo (applied), by name.")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="The model to roll out.")]
CandidateOpt = Annotated[
    str | None, typer.Option("--candidate", help="The new version: a number or an alias.")
]
ChampionOpt = Annotated[
    str | None,
    typer.Option("--champion-alias", help="The alias the candidate replaces (default champion)."),
]
StepsOpt = Annotated[
    str | None, typer.Option("--steps", help="Canary weights in percent (default 1,5,25,50,100).")
]
StepDurationOpt = Annotated[
    str | None, typer.Option("--step-duration", help="Least time per canary step (default 10m).")
]
StepSamplesOpt = Annotated[
    str | None,
    typer.Option("--step-min-samples", help="Candidate predictions a step needs (default 100)."),
]
ShadowOpt = Annotated[
    str | None,
    typer.Option("--shadow", help="Shadow phase duration before the canary (default 30m)."),
]
NoShadowOpt = Annotated[bool, typer.Option("--no-shadow", help="Start at the first canary step.")]
ShadowSamplesOpt = Annotated[
    str | None,
    typer.Option("--shadow-min-samples", help="Shadow predictions the shadow needs (default 500)."),
]
ShadowFractionOpt = Annotated[
    str | None,
    typer.Option("--shadow-fraction", help="Share of requests mirrored, (0, 1] (default 1)."),
]
RoutingKeyOpt = Annotated[
    str | None,
    typer.Option("--routing-key", help="Entity join key for sticky routing (default the first)."),
]
RoutingHeaderOpt = Annotated[
    str | None, typer.Option("--routing-header", help="Or a request header, e.g. x-user-id.")
]
GateOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--gate",
        help="A gate: metric[:threshold], e.g. latency_p99, error_rate:0.01, "
        "prediction_drift:0.2, label:precision_at_k:0.05, custom:my_gate; repeatable.",
    ),
]
FailureLimitOpt = Annotated[
    str | None, typer.Option("--failure-limit", help="Failed checks that abort (default 1).")
]
FailureModeOpt = Annotated[
    str | None,
    typer.Option("--failure-mode", help="cumulative or consecutive (default cumulative)."),
]
IntervalOpt = Annotated[
    str | None, typer.Option("--interval", help="How often gates are checked (default 1m).")
]


@rollout_app.command("start")
@command
def rollout_start(
    rollout: RolloutArg = None,
    model: ModelOpt = None,
    candidate: CandidateOpt = None,
    champion_alias: ChampionOpt = None,
    steps: StepsOpt = None,
    step_duration: StepDurationOpt = None,
    step_min_samples: StepSamplesOpt = None,
    shadow: ShadowOpt = None,
    no_shadow: NoShadowOpt = False,
    shadow_min_samples: ShadowSamplesOpt = None,
    shadow_fraction: ShadowFractionOpt = None,
    routing_key: RoutingKeyOpt = None,
    routing_header: RoutingHeaderOpt = None,
    gate: GateOpt = None,
    failure_limit: FailureLimitOpt = None,
    failure_mode: FailureModeOpt = None,
    interval: IntervalOpt = None,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Start a rollout: a declared one by name, or --model and --candidate with options."""
    gates = gate or []
    if rollout is not None and no_shadow:
        raise InvalidRollout(
            f"ROLLOUT starts the rollout {rollout!r} as declared in the repo; drop --no-shadow"
        )
    body: dict[str, Any] = {"rollout": rollout, "model": model}
    if candidate is not None:
        body["candidate"] = _candidate(candidate)
    send_shadow, shadow_phase = _shadow(shadow, no_shadow, shadow_min_samples)
    if send_shadow:
        body["shadow"] = shadow_phase
    optional: dict[str, Any] = {
        "champion_alias": champion_alias,
        "steps": _steps(steps, step_duration, step_min_samples),
        "shadow_fraction": None
        if shadow_fraction is None
        else _number(shadow_fraction, "--shadow-fraction", "0.5"),
        "routing_key": _routing(routing_key, routing_header),
        "gates": [_gate(g) for g in gates] or None,
        "failure_policy": _failure(failure_mode, failure_limit),
        "interval": None if interval is None else _span(interval, "--interval", minimum_s=1),
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    state = _start(store_at(repo), body, gates)
    if as_json:
        typer.echo(json.dumps({"rollout": rollout_json(state)}, sort_keys=True))
        return
    console.print(f"Started rollout {state.id}: {view.summary(state)}", soft_wrap=True)


def _start(store: FeatureStore, body: dict[str, Any], gates: list[str]) -> RolloutState:
    """Start what the options ask for; refusals name the options, not the fields."""
    customs = any(g.get("metric", "").startswith("custom:") for g in body.get("gates", []))
    target = start_arguments(
        {k: v for k, v in body.items() if v is not None or k == "shadow"},
        name=_option_namer(gates),
        functions=_gate_functions(store) if customs else None,
    )
    if isinstance(target, Rollout):
        store.models.versions(target.model)  # ModelNotFound names an unknown model
    try:
        return store.rollouts.start(target, actor=_actor())
    except InvalidRollout as error:  # the controller's checks name fields: name the options
        raise InvalidRollout(_as_options(error.message, gates)) from None


@rollout_app.command("status")
@command
def rollout_status(
    model: Annotated[
        str | None, typer.Argument(help="Model name (default: every active rollout).")
    ] = None,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Where a model's latest rollout is (or every active rollout): step, weight, failures."""
    rollouts = store_at(repo).rollouts
    if model is not None:
        state = rollouts.status(model)
        if as_json:
            typer.echo(json.dumps({"rollout": rollout_json(state)}, sort_keys=True))
            return
        console.print(f"Rollout {state.id}: {view.summary(state)}", soft_wrap=True)
        console.print(view.phases_table(state))
        console.print(view.settings_line(state), soft_wrap=True)
        return
    states = rollouts.list(active_only=True)
    if as_json:
        typer.echo(json.dumps({"rollouts": [rollout_json(s) for s in states]}, sort_keys=True))
        return
    if not states:
        console.print("No active rollout.")
        return
    console.print(view.status_table(states))


def _act(
    action: str, model: str, reason: str, repo: Path, verb: str, as_json: bool = False
) -> None:
    rollouts = store_at(repo).rollouts
    state = getattr(rollouts, action)(model, reason=reason, actor=_actor())
    if as_json:
        typer.echo(json.dumps({"rollout": rollout_json(state)}, sort_keys=True))
        return
    console.print(f"{verb} rollout {state.id}: {view.summary(state)}", soft_wrap=True)


_ACTIONS = (
    (
        "pause",
        "Paused",
        "Hold the rollout at its step: the weight stays, gates are not acted on until resume.",
    ),
    ("resume", "Resumed", "Resume a paused rollout at the step it was paused at."),
    (
        "promote",
        "Promoted",
        "Promote now: move the champion alias to the candidate (the reason goes to its history).",
    ),
    (
        "abort",
        "Aborted",
        "Abort: the candidate's weight back to 0; the champion alias is not touched.",
    ),
)


def _action_command(action: str, verb: str, doc: str) -> None:
    def run(
        model: ModelArg,
        reason: ReasonOption = "",
        as_json: JsonOption = False,
        repo: RepoOption = Path("."),
    ) -> None:
        _act(action, model, reason, repo, verb, as_json)

    run.__doc__ = doc
    run.__name__ = f"rollout_{action}"
    rollout_app.command(action)(command(run))


for _action, _verb, _doc in _ACTIONS:
    _action_command(_action, _verb, _doc)


@rollout_app.command("history")
@command
def rollout_history(
    model: ModelArg,
    rollout: Annotated[
        str | None, typer.Option("--rollout", help="A rollout id (default: the latest).")
    ] = None,
    as_json: JsonOption = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the timeline as a self-contained HTML page."),
    ] = None,
    repo: RepoOption = Path("."),
) -> None:
    """The timeline of a model's rollout: every check with its gates' numbers, every move."""
    if html is not None and (html.is_dir() or not html.parent.is_dir()):
        raise InvalidOption(f"--html {html}: give a file path in a folder that exists")
    rollouts = store_at(repo).rollouts
    events = rollouts.history(model, rollout)
    state = rollouts.status(model)
    if rollout is not None and state.id != rollout:
        found = [s for s in rollouts.list() if s.id == rollout and s.model == model]
        if not found:
            raise RolloutNotFound(
                f"model {model!r} has no rollout {rollout!r}; see parity rollout status {model}"
            )
        state = found[0]
    if html is not None:  # written first: --json output stays pure JSON
        _write_timeline(html, events, state)
    if as_json:
        typer.echo(json.dumps(rollout_detail(state, events), sort_keys=True))
        return
    console.print(f"Rollout {state.id}: {view.summary(state)}", soft_wrap=True)
    console.print(view.history_table(state, events))
    if html is not None:
        console.print(f"wrote {escape(str(html))}: the timeline as a page (opens offline)")


def _write_timeline(path: Path, events: Sequence[RolloutEvent], state: RolloutState) -> None:
    """deploy/timeline.py's page of the rollout (demo workstream's one addition here)."""
    from parity.deploy.timeline import render_timeline_html

    try:
        path.write_text(render_timeline_html(events, state), encoding="utf-8")
    except OSError as error:
        raise InvalidOption(f"--html {path}: cannot write it: {error.strerror}") from None


@rollout_app.command("run")
@command
def rollout_run(
    once: Annotated[bool, typer.Option("--once", help="One controller tick, then exit.")] = False,
    interval: Annotated[
        str | None,
        typer.Option("--interval", help="Tick this often instead of each rollout's interval."),
    ] = None,
    repo: RepoOption = Path("."),
) -> None:
    """The rollout controller: checks gates, advances, promotes and aborts every interval until
    Ctrl-C or SIGTERM. Several may run: a lease lets one act at a time."""
    every = None if interval is None else parse_span(_span(interval, "--interval", minimum_s=1))
    rollouts = store_at(repo).rollouts
    if once:  # a clean stop: release the lease, or the next --once waits for it to expire
        try:
            events = rollouts.step()
        finally:
            rollouts.release()
        for event in events:
            console.print(view.event_line(event), soft_wrap=True)
        return
    stop = threading.Event()

    def loop() -> None:  # survives a failed tick and releases the lease on the way out
        rollouts.run(stop=stop, poll=None if every is None else every.total_seconds())

    failure: list[BaseException] = []

    def guarded() -> None:
        try:
            loop()
        except BaseException as error:  # shown by the main thread, as one line if a ParityError
            failure.append(error)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    worker = threading.Thread(target=guarded, name="parity-rollout-controller")
    err.print("Rollout controller running; Ctrl-C stops it.")
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        worker.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failure:
        raise failure[0]
    err.print("Rollout controller stopped.")
