"""The model server's alias routes (`/v1/models/{model}/aliases[/{alias}]`): read a model's
aliases with their recent moves, move one (compare-and-swap) or delete it, through the model
registry. Must not import `parity.deploy` (a rollout reacts to the move on its own)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from parity.errors import BadRequest, InvalidModelRef, RolloutControlDisabled
from parity.inference.rollout_http import json_object, plain
from parity.inference.server import MAX_VERSION
from parity.models.registry import ModelRegistry, check_alias, check_name
from parity.models.store import UNCHECKED, AliasEvent, Expected
from parity.serving.auth.scopes import Principal

HISTORY = 10  # moves shown per alias by GET: enough to see the last promotions and rollbacks
MAX_REASON = 1000  # characters, as a rollout action's reason
PUT_FIELDS = ("version", "expected", "reason")


class AliasRoutes:
    """`/v1/models/{model}/aliases...` over `registry`. Without auth, PUT and DELETE answer 403
    unless `enabled` (the server's `--enable-rollout-control`: whoever may steer a rollout may
    already move its champion alias); with auth (a `principal` per request) the gate has
    checked `models:write` on the model and the move is audited as the token."""

    def __init__(self, registry: ModelRegistry, *, enabled: bool = False) -> None:
        self.registry = registry
        self.enabled = enabled

    async def handle(
        self,
        method: str,
        parts: list[str],
        body: bytes,
        *,
        principal: Principal | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON body) for `method` on `/v1/models/` + `parts`, where `parts` is
        `[model, "aliases"]` or `[model, "aliases", alias]` (a route of the table)."""
        model = check_name(parts[0], "model name", InvalidModelRef)
        if method == "GET":
            return 200, await asyncio.to_thread(self._read, model)
        if not self.enabled and principal is None:
            raise RolloutControlDisabled(
                "moving aliases over HTTP is off on this server: start it with parity "
                "serve-models --enable-rollout-control, or turn auth on in parity.yaml (then the "
                "models:write scope guards it), or use parity models alias on the command line"
            )
        alias = check_alias(parts[2])
        payload = json_object(body, BadRequest)
        # the caller runs as the audit actor (serving.auth.gate.as_caller, set by the server)
        if method == "PUT":
            version, expected, reason = put_arguments(payload)
            event = await asyncio.to_thread(
                self.registry.set_alias, model, alias, version, reason=reason, expected=expected
            )
        else:
            reason = delete_reason(payload)
            event = await asyncio.to_thread(self.registry.delete_alias, model, alias, reason=reason)
        return 200, event_json(event)

    def _read(self, model: str) -> dict[str, Any]:
        events = self.registry.history(model)  # ModelNotFound for a model never registered
        current = self.registry.aliases(model)
        moves: dict[str, list[AliasEvent]] = {alias: [] for alias in current}
        for event in events:
            if event.alias in moves:
                moves[event.alias].append(event)
        return {
            "model": model,
            "aliases": [
                {
                    "alias": alias,
                    "version": version,
                    "history": [event_json(e) for e in moves[alias][-HISTORY:]],
                }
                for alias, version in current.items()
            ],
        }


def event_json(event: AliasEvent) -> dict[str, Any]:
    """An alias move as JSON (`version` null: deleted; `previous` null: newly set)."""
    body: dict[str, Any] = plain(event)
    return body


def put_arguments(payload: Mapping[str, Any]) -> tuple[int, Expected, str]:
    """(version, expected, reason) of a PUT body; BadRequest naming the field otherwise. JSON
    integers only: `"3"`, `true` and `2.5` are refused, not read as 3, 1 and 2."""
    unknown = [key for key in payload if key not in PUT_FIELDS]
    if unknown:
        raise BadRequest(
            f"{unknown[0]}: not a field of an alias move; send {', '.join(PUT_FIELDS)}"
        )
    if "version" not in payload:
        raise BadRequest("version is required: the version the alias should point at")
    version = _version(payload["version"], "version")
    expected: Expected = UNCHECKED
    if "expected" in payload:
        value = payload["expected"]
        expected = None if value is None else _version(value, "expected")
    if "reason" not in payload:
        raise BadRequest("reason is required: say why the alias moves (it is kept in its history)")
    return version, expected, _reason(payload["reason"], required=True)


def delete_reason(payload: Mapping[str, Any]) -> str:
    extra = [key for key in payload if key != "reason"]
    if extra:
        raise BadRequest(f"{extra[0]}: not a field of an alias deletion; send only reason")
    return _reason(payload.get("reason", ""), required=False)


def _version(value: object, field: str) -> int:
    """A JSON integer (`3`, or `3.0`: the same number in JSON and to JSON Schema); never text
    or a bool."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise BadRequest(
            f"{field}: give a version number (a JSON integer from 1 to {MAX_VERSION}), "
            f"not {json.dumps(value)[:40]}"
        )
    return value


def _reason(value: object, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > MAX_REASON or (required and not value):
        need = "a non-empty text" if required else "a text"
        raise BadRequest(f"reason: give {need} of at most {MAX_REASON} characters")
    if "\x00" in value or not _encodable(value):  # PostgreSQL text holds neither
        raise BadRequest("reason: NUL characters and unpaired surrogates cannot be stored")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
