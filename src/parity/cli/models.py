"""`parity models ...` (the model registry) and `parity serve-models` (the model server)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from parity.cli.common import (
    RepoOption,
    TlsCertOption,
    TlsKeyOption,
    base_url,
    check_port,
    check_tls,
    command,
    console,
    err,
    push_note,
    run_server,
    store_at,
)
from parity.cli.serve_notes import open_warning
from parity.errors import BackendNotInstalled, InvalidOption
from parity.timeutil import parse_time

if TYPE_CHECKING:
    from parity.models.registry import ModelRegistry
    from parity.models.store import AliasEvent

models_app = typer.Typer(help="The model registry: versions, aliases and their history.")
alias_app = typer.Typer(help="Move, delete or roll back an alias (champion, candidate, ...).")
models_app.add_typer(alias_app, name="alias")

ModelArg = Annotated[str, typer.Argument(help="Model name.")]
AliasArg = Annotated[str, typer.Argument(help="Alias name, such as champion.")]
ReasonOption = Annotated[str, typer.Option(help="Why: kept in the alias history.")]


def _registry(repo: Path) -> ModelRegistry:
    return store_at(repo).models


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@models_app.command("list")
@command
def models_list(repo: RepoOption = Path(".")) -> None:
    """List registered models with their latest version and aliases."""
    registry = _registry(repo)
    table = Table("model", "versions", "latest", "aliases", "feature service")
    for name in registry.models():
        versions = registry.versions(name)
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(registry.aliases(name).items()))
        latest = versions[-1]
        table.add_row(
            name,
            str(len(versions)),
            str(latest.version),
            aliases or "-",
            latest.feature_service or "-",
        )
    console.print(table)


@models_app.command("versions")
@command
def models_versions(name: ModelArg, repo: RepoOption = Path(".")) -> None:
    """List a model's versions: when, by whom, flavor, metrics, training set."""
    registry = _registry(repo)
    pointing: dict[int, list[str]] = {}
    for alias, version in registry.aliases(name).items():
        pointing.setdefault(version, []).append(alias)
    table = Table("version", "registered", "author", "flavor", "metrics", "dataset", "aliases")
    for item in registry.versions(name):
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(item.metrics.items()))
        table.add_row(
            str(item.version),
            _when(item.created_at),
            item.author,
            item.flavor,
            metrics or "-",
            item.training_dataset or "-",
            ", ".join(sorted(pointing.get(item.version, []))) or "-",
        )
    console.print(table)


@models_app.command("describe")
@command
def models_describe(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME/VERSION.")],
    repo: RepoOption = Path("."),
) -> None:
    """Show one version with its lineage, signature, metrics and parameters, as JSON."""
    import dataclasses
    import json

    version = _registry(repo).resolve(ref)
    console.print_json(json.dumps(dataclasses.asdict(version), default=str))


@models_app.command("history")
@command
def models_history(
    name: ModelArg,
    repo: RepoOption = Path("."),
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Show the version each alias held at this time (ISO 8601 or now)."),
    ] = None,
) -> None:
    """Every alias move of a model (or which version each alias held at --at)."""
    registry = _registry(repo)
    if at is not None:
        moment = parse_time(at, "--at", now=registry.now)
        names = [alias] if alias else sorted({e.alias for e in registry.history(name)})
        for each in names:
            held = registry.alias_at(name, each, moment)
            shown = f"version {held.version}" if held else "(not set)"
            console.print(f"{name}@{each} at {_when(moment)}: {shown}")
        return
    _render_events(registry.history(name, alias))


def _render_events(events: list[AliasEvent]) -> None:
    table = Table("moved at", "alias", "from", "to", "author", "reason")
    for event in events:
        table.add_row(
            _when(event.moved_at),
            event.alias,
            "-" if event.previous is None else str(event.previous),
            "(deleted)" if event.version is None else str(event.version),
            event.author,
            escape(event.reason) or "-",
        )
    console.print(table)


@models_app.command("delete")
@command
def models_delete(
    name: ModelArg,
    version: Annotated[int, typer.Argument(help="Version to delete.")],
    repo: RepoOption = Path("."),
) -> None:
    """Delete one version (refused while an alias points at it)."""
    _registry(repo).delete_version(name, version)
    console.print(f"Deleted {name}/{version}")


@alias_app.command("set")
@command
def alias_set(
    name: ModelArg,
    alias: AliasArg,
    version: Annotated[int, typer.Argument(help="Version the alias should point at.")],
    repo: RepoOption = Path("."),
    reason: ReasonOption = "",
    expected: Annotated[
        int | None,
        typer.Option(
            "--from",
            min=1,
            help="Move only if the alias still points at this version (else alias_moved, "
            "nothing changed).",
        ),
    ] = None,
) -> None:
    """Point an alias at a version (servers follow within alias_refresh_seconds)."""
    registry = _registry(repo)
    if expected is None:
        event = registry.set_alias(name, alias, version, reason=reason)
    else:
        event = registry.set_alias(name, alias, version, reason=reason, expected=expected)
    _moved(name, event)


@alias_app.command("delete")
@command
def alias_delete(
    name: ModelArg, alias: AliasArg, repo: RepoOption = Path("."), reason: ReasonOption = ""
) -> None:
    """Remove an alias (its history is kept)."""
    event = _registry(repo).delete_alias(name, alias, reason=reason)
    _moved(name, event)


@alias_app.command("rollback")
@command
def alias_rollback(
    name: ModelArg, alias: AliasArg, repo: RepoOption = Path("."), reason: ReasonOption = ""
) -> None:
    """Move an alias back to the version it held before its latest move."""
    event = _registry(repo).rollback(name, alias, reason=reason)
    _moved(name, event)


def _moved(name: str, event: AliasEvent) -> None:
    before = "(unset)" if event.previous is None else f"version {event.previous}"
    after = "(deleted)" if event.version is None else f"version {event.version}"
    console.print(f"{name}@{event.alias}: {before} -> {after}")


def serve_models(
    repo: RepoOption = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    preload: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model to load before ready (NAME@ALIAS); repeatable."),
    ] = None,
    with_features: Annotated[
        bool, typer.Option("--with-features", help="Also serve the feature server's routes.")
    ] = False,
    enable_push: Annotated[
        bool,
        typer.Option(
            "--enable-push",
            help="With --with-features and auth off: accept POST /push (writes online and "
            "training data): only where trusted clients alone reach the port. Off: /push "
            "answers 403. With auth on (parity.yaml) it is not needed: tokens with "
            "features:push may push.",
        ),
    ] = False,
    max_in_flight: Annotated[
        int, typer.Option(min=1, help="Requests in flight per worker before answering 503.")
    ] = 512,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body accepted; larger ones get 413.")
    ] = 8 << 20,
    enable_rollout_control: Annotated[
        bool,
        typer.Option(
            "--enable-rollout-control",
            help="With auth off: accept POST /v1/rollouts... (start, pause, resume, promote, "
            "abort rollouts) and PUT/DELETE /v1/models/{m}/aliases/{alias} (move aliases): only "
            "where trusted clients alone reach the port. Off: they answer 403 and the GETs still "
            "read. With auth on (parity.yaml) it is not needed: tokens with rollouts:admin may "
            "steer rollouts, with models:write move aliases.",
        ),
    ] = False,
    no_rollout_controller: Annotated[
        bool,
        typer.Option(
            "--no-rollout-controller",
            help="Do not run the rollout controller loop in this server (run parity rollout run "
            "elsewhere). By default each worker runs it; a lease lets one act.",
        ),
    ] = False,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Serve the registry's models: Open Inference Protocol v2 and entity-based /v1 predict."""
    try:
        from parity.inference import app as model_app
    except ModuleNotFoundError as error:
        raise BackendNotInstalled(
            f"the model server needs {error.name}: pip install 'parity[serve]'"
        ) from None
    if enable_push and not with_features:
        raise InvalidOption(
            "--enable-push needs --with-features (the model server alone has no /push)"
        )
    tls = check_tls(tls_cert, tls_key)
    check_port(host, port)
    store = store_at(repo)
    for ref in preload or []:
        store.models.resolve(ref)  # an unknown model or alias: one line now, not a traceback
    secured = store.config.auth.enabled
    features = f" (and its features; {push_note(enable_push)})" if with_features else ""
    features = " (and its features)" if with_features and secured else features
    rollouts = _rollout_note(enable_rollout_control or secured, not no_rollout_controller, secured)
    err.print(
        f"Serving the models of project '{store.project}' on {base_url(host, port, tls)}{features}"
        f"; {rollouts}",
        soft_wrap=True,  # one line whatever the terminal's width
    )
    os.environ.update(
        PARITY_SERVE_REPO=str(store.repo_path),
        PARITY_SERVE_PRELOAD=",".join(preload or []),
        PARITY_SERVE_WITH_FEATURES="1" if with_features else "0",
        PARITY_SERVE_ENABLE_PUSH="1" if enable_push else "0",
        PARITY_SERVE_MAX_IN_FLIGHT=str(max_in_flight),
        PARITY_SERVE_MAX_BODY_BYTES=str(max_body_bytes),
        PARITY_SERVE_ENABLE_ROLLOUT_CONTROL="1" if enable_rollout_control else "0",
        PARITY_SERVE_ROLLOUT_CONTROLLER="0" if no_rollout_controller else "1",
    )
    warning = open_warning(secured, host, port)
    if warning is not None:
        err.print(warning, style="bold yellow", markup=False, soft_wrap=True)
    store.close()
    run_server(model_app.app_from_environment, host=host, port=port, workers=workers, tls=tls)


def _rollout_note(control: bool, controller: bool, secured: bool = False) -> str:
    """What a model server's start-up line says about auth and rollouts."""
    loop = "controller loop on" if controller else "controller loop off (--no-rollout-controller)"
    if secured:
        return (
            "auth on: every route but the health probes needs a token (rollout control: "
            f"rollouts:admin; alias moves: models:write; /push: features:push); {loop}"
        )
    if control:
        return (
            "auth off; rollout control on: anyone who reaches the port can start and stop "
            f"rollouts and move aliases; {loop}"
        )
    return f"auth off; rollout control off: --enable-rollout-control turns it on; {loop}"
