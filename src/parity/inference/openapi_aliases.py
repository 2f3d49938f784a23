"""The OpenAPI description of the model server's alias routes (inference/alias_http.py): read a
model's aliases, move one (compare-and-swap), delete one. Pure data; must not import HTTP code."""

from __future__ import annotations

from typing import Any

from parity.inference.alias_http import HISTORY, MAX_REASON
from parity.inference.server import MAX_VERSION

_NAME = "[A-Za-z][A-Za-z0-9_-]{0,199}"  # a model or alias name (models/registry.py)
_ERRORS = {
    400: "The model or alias name is not valid (`invalid_model_ref`), or the body is not a valid "
    "move (`bad_request`: the message names the field).",
    403: "The server was started without `--enable-rollout-control` and auth is off "
    "(`rollout_control_disabled`).",
    404: "No such model, version or alias.",
    409: "The alias does not point at `expected` (`alias_moved`): another move came first; "
    "nothing changed.",
    413: "The request body is over the server's `--max-body-bytes`.",
    503: "Over `--max-in-flight` requests at once, or the registry database is unreachable.",
}
_VERSION: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}
_NULLABLE_VERSION: dict[str, Any] = {"type": ["integer", "null"], "minimum": 1}
_NULLABLE_VERSION["maximum"] = MAX_VERSION


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), _ERRORS[s]) for s in statuses}


# no NUL character (PostgreSQL text cannot hold one)
_REASON: dict[str, Any] = {"type": "string", "maxLength": MAX_REASON, "pattern": "^[^\\x00]*$"}
ALIAS_SCHEMAS: dict[str, Any] = {
    "AliasEvent": _obj(
        {
            "project": {"type": "string"},
            "name": {"type": "string", "description": "The model."},
            "alias": {"type": "string"},
            "version": {**_NULLABLE_VERSION, "description": "null: the alias was deleted."},
            "previous": {**_NULLABLE_VERSION, "description": "null: the alias was new."},
            "moved_at": {"type": "string", "format": "date-time"},
            "author": {"type": "string"},
            "reason": {"type": "string"},
        },
        ("project", "name", "alias", "version", "previous", "moved_at", "author", "reason"),
    ),
    "AliasList": _obj(
        {
            "model": {"type": "string"},
            "aliases": {
                "type": "array",
                "items": _obj(
                    {
                        "alias": {"type": "string"},
                        "version": _VERSION,
                        "history": {
                            "type": "array",
                            "items": _ref("AliasEvent"),
                            "description": f"Its last {HISTORY} moves, oldest first.",
                        },
                    },
                    ("alias", "version", "history"),
                ),
            },
        },
        ("model", "aliases"),
    ),
    "AliasMove": _obj(
        {
            "version": {**_VERSION, "description": "The version the alias should point at."},
            "expected": {
                **_NULLABLE_VERSION,
                "description": "Compare-and-swap: move only if the alias points at this version "
                "now (null: only if it does not exist). Absent: move from wherever it points.",
            },
            "reason": {**_REASON, "minLength": 1, "description": "Kept in the alias history."},
        },
        ("version", "reason"),
    ),
    "AliasDelete": _obj({"reason": {**_REASON, "type": ["string", "null"]}}, ()),
}

_MODEL = {
    "name": "model_name",
    "in": "path",
    "required": True,
    "description": "The model's name.",
    "schema": {"type": "string", "pattern": f"^{_NAME}$"},
}
_ALIAS = {
    "name": "alias",
    "in": "path",
    "required": True,
    "description": "The alias (any name but `latest`).",
    "schema": {"type": "string", "pattern": f"^{_NAME}$", "not": {"const": "latest"}},
}
_MOVE_EXAMPLE = {"version": 4, "expected": 3, "reason": "better AUC on November"}
_CONTROL = "needs --enable-rollout-control, or auth on and models:write on the model"


def alias_paths() -> dict[str, Any]:
    """`/v1/models/{model_name}/aliases` (GET) and `.../aliases/{alias}` (PUT, DELETE)."""
    moved = _json(_ref("AliasEvent"), "The move, as kept in the alias history.")
    move_body = {"application/json": {"schema": _ref("AliasMove"), "example": _MOVE_EXAMPLE}}
    return {
        "/v1/models/{model_name}/aliases": {
            "parameters": [_MODEL],
            "get": {
                "summary": "The model's aliases with their recent moves",
                "responses": {
                    "200": _json(_ref("AliasList"), "Aliases by name."),
                    **_errors(400, 404, 503),
                },
            },
        },
        "/v1/models/{model_name}/aliases/{alias}": {
            "parameters": [_MODEL, _ALIAS],
            "put": {
                "summary": f"Point the alias at a version ({_CONTROL})",
                "requestBody": {"required": True, "content": move_body},
                "responses": {"200": moved, **_errors(400, 403, 404, 409, 413, 503)},
            },
            "delete": {
                "summary": f"Delete the alias; its history is kept ({_CONTROL})",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("AliasDelete")}},
                },
                "responses": {"200": moved, **_errors(400, 403, 404, 413, 503)},
            },
        },
    }
