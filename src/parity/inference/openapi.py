"""The model server's OpenAPI 3.1 description: Open Inference Protocol v2 routes, entity-based
`/v1` prediction, `/metrics` as text, and every 4xx/5xx answer in the `{"error", "code"}` shape.

Pure data: it must describe what `inference/http.py` really answers (a schemathesis run in the
test suite checks that it does). Must not import HTTP code.
"""

from __future__ import annotations

from typing import Any

from parity.inference.oip import DATATYPES, MAX_DIMS
from parity.inference.openapi_aliases import ALIAS_SCHEMAS, alias_paths
from parity.inference.server import MAX_VERSION

_NAME = "[A-Za-z][A-Za-z0-9_-]{0,199}"  # a model or alias name (models/registry.py)

_ERROR_TEXT = {
    400: "The request is malformed or impossible for this model (see `code` and `error`).",
    404: "No such model, version or alias.",
    413: "The request body is over the server's `--max-body-bytes` (`body_too_large`), or it has "
    "more rows than `models.serving.max_entities` (`too_many_entities`: `/v1` entity rows, the "
    "first dimension of a `/v2` input tensor).",
    503: "Over `--max-in-flight` requests at once, or a store the answer needs is unreachable.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), _ERROR_TEXT[s]) for s in statuses}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STR: dict[str, Any] = {"type": "string"}
_NULLABLE_STR: dict[str, Any] = {"type": ["string", "null"]}
_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": ["boolean", "integer", "number", "string"]},
    "description": "Extensions: `binary_data_size` on an input, `binary_data` on an output, "
    "`binary_data_output` on the request.",
}
_DIMS: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_TENSOR_META = _obj(
    {"name": _STR, "datatype": _STR, "shape": {"type": "array", "items": {"type": "integer"}}},
    ("name", "datatype", "shape"),
)

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": {"type": "string", "description": "What went wrong and what to do."},
            "code": {"type": "string", "description": "A stable machine-readable code."},
        },
        ("error", "code"),
    ),
    "ServerMetadata": _obj(
        {"name": _STR, "version": _STR, "extensions": {"type": "array", "items": _STR}},
        ("name", "version", "extensions"),
    ),
    "ModelMetadata": _obj(
        {
            "name": _STR,
            "versions": {"type": "array", "items": _STR},
            "platform": _STR,
            "inputs": {"type": "array", "items": _TENSOR_META},
            "outputs": {"type": "array", "items": _TENSOR_META},
        },
        ("name", "platform", "inputs", "outputs"),
    ),
    "InferenceRequest": _obj(
        {
            "id": _STR,
            "parameters": _PARAMETERS,
            "inputs": {
                "type": "array",
                "items": _obj(
                    {
                        "name": _STR,
                        "shape": {**_DIMS, "maxItems": MAX_DIMS},
                        "datatype": {"enum": sorted(DATATYPES)},
                        "parameters": _PARAMETERS,
                        "data": {
                            "type": "array",
                            "description": "Row-major, flat or nested; null stands for NaN.",
                        },
                    },
                    ("name", "shape", "datatype"),
                ),
            },
            "outputs": {
                "type": "array",
                "items": _obj({"name": _STR, "parameters": _PARAMETERS}, ("name",)),
            },
        },
        ("inputs",),
    ),
    "InferenceResponse": _obj(
        {
            "model_name": _STR,
            "model_version": _STR,
            "id": _STR,
            "parameters": _PARAMETERS,
            "outputs": {
                "type": "array",
                "items": _obj(
                    {
                        "name": _STR,
                        "shape": _DIMS,
                        "datatype": {"enum": sorted(DATATYPES)},
                        "parameters": _PARAMETERS,
                        "data": {"type": "array"},
                    },
                    ("name", "shape", "datatype"),
                ),
            },
        },
        ("model_name", "outputs"),
    ),
    "PredictRequest": _obj(
        {
            "entities": {
                "description": "Entity keys and request-time inputs: columns, or a list of rows.",
                "oneOf": [
                    {"type": "object", "additionalProperties": {"type": "array"}},
                    {"type": "array", "items": {"type": "object"}},
                ],
            },
            "request_context": {
                "description": "Columns of request-time values, joined to the entity rows.",
                "type": ["object", "null"],
                "additionalProperties": {"type": "array"},
            },
            "id": _NULLABLE_STR,
            "return_features": {"type": "boolean"},
        },
        ("entities",),
    ),
    "PredictResponse": _obj(
        {
            "id": _STR,
            "model_name": _STR,
            "model_version": {"type": "integer"},
            "alias": _NULLABLE_STR,
            "predictions": {"type": "array", "description": "The first output, row by row."},
            "outputs": {
                "description": "Every output (one per predict method) by name, row by row.",
                "type": "object",
                "additionalProperties": {"type": "array"},
            },
            "features": {"type": "object", "additionalProperties": {"type": "array"}},
            "route": {
                "type": ["string", "null"],
                "enum": ["champion", "canary", None],
                "description": "The rollout arm that answered (null when no rollout routes it).",
            },
        },
        ("id", "model_name", "model_version", "alias", "predictions", "outputs"),
    ),
    "ModelList": _obj(
        {
            "models": {
                "type": "array",
                "items": _obj(
                    {
                        "name": _STR,
                        "versions": {"type": "array", "items": {"type": "integer"}},
                        "aliases": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                    ("name", "versions", "aliases"),
                ),
            }
        },
        ("models",),
    ),
    "ModelVersion": {
        "type": "object",
        "description": "A registered version with its signature and lineage.",
        "properties": {
            "project": _STR,
            "name": _STR,
            "version": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "author": _STR,
            "flavor": _STR,
            "artifact": _STR,
            "artifact_size": {"type": "integer"},
            "signature": {"type": ["object", "null"]},
            "feature_service": _NULLABLE_STR,
            "training_dataset": _NULLABLE_STR,
            "dataset_fingerprint": _NULLABLE_STR,
            "dataset_registry_version": {"type": ["integer", "null"]},
            "registry_version": {"type": ["integer", "null"]},
            "code_version": _NULLABLE_STR,
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "params": {"type": "object"},
            "tags": {"type": "object", "additionalProperties": _STR},
            "description": _STR,
        },
        "required": ["project", "name", "version", "created_at", "flavor", "artifact"],
    },
}

_MODEL = {
    "name": "model_name",
    "in": "path",
    "required": True,
    "description": "`NAME` (its default alias, else its latest version) or `NAME@ALIAS`.",
    "schema": {"type": "string", "pattern": f"^{_NAME}(@{_NAME})?$"},
}
_MODEL_NAME = {
    **_MODEL,
    "description": "The model's name (a version is named by the path, so no `@ALIAS`).",
    "schema": {"type": "string", "pattern": f"^{_NAME}$"},
}
_VERSION = {
    "name": "model_version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
}
_BINARY_LENGTH = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "description": "The length of the JSON part when binary tensor data follows it.",
    "schema": {"type": "integer", "minimum": 0},
}


_INFER = {
    "id": "req-1",
    "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [25.0, 3.0]}],
}
_PREDICT = {
    "entities": {"account_id": [1, 2], "device_id": [7, 9]},
    "request_context": {"amount": [25.0, 480.0]},
    "return_features": True,
    "id": "req-1",
}


def _get(summary: str, ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": ok, **_errors(*errors, 503)}}}


def _model_paths(prefix: str, params: list[dict[str, Any]], pinned: bool) -> dict[str, Any]:
    """The per-model routes under `prefix` (with or without /versions/{model_version})."""
    which = "that version" if pinned else "the version the reference resolves to"
    infer_ok = _json(_ref("InferenceResponse"), "The outputs.")
    infer_ok["content"]["application/octet-stream"] = {
        "schema": {"type": "string", "format": "binary"}
    }
    infer_ok["headers"] = {"Inference-Header-Content-Length": {"schema": {"type": "integer"}}}
    body = {
        "required": True,
        "content": {"application/json": {"schema": _ref("InferenceRequest"), "example": _INFER}},
    }
    predict = {
        "required": True,
        "content": {"application/json": {"schema": _ref("PredictRequest"), "example": _PREDICT}},
    }
    ready = _obj({"name": _STR, "ready": {"type": "boolean"}}, ("name", "ready"))
    v2, v1 = f"/v2/models/{prefix}", f"/v1/models/{prefix}"
    return {
        v2: {
            "parameters": params,
            **_get(f"Metadata of {which}", _json(_ref("ModelMetadata"), "Metadata."), 400, 404),
        },
        f"{v2}/ready": {
            "parameters": params,
            **_get(f"Whether {which} is loaded", _json(ready, "Loaded."), 400, 404),
        },
        f"{v2}/infer": {
            "parameters": params,
            "post": {
                "summary": f"Predict with {which} from tensors (JSON or binary data)",
                "parameters": [_BINARY_LENGTH],
                "requestBody": body,
                "responses": {"200": infer_ok, **_errors(400, 404, 413, 503)},
            },
        },
        v1: {
            "parameters": params,
            **_get(f"Describe {which}", _json(_ref("ModelVersion"), "The version."), 400, 404),
        },
        f"{v1}/predict": {
            "parameters": params,
            "post": {
                "summary": f"Predict with {which} from entity keys (features from the store)",
                "requestBody": predict,
                "responses": {
                    "200": _json(_ref("PredictResponse"), "One prediction per entity row."),
                    **_errors(400, 404, 413, 503),
                },
            },
        },
    }


# --- /v1/rollouts (inference/rollout_http.py) ---------------------------------------------------

_ROLLOUT_ERRORS = {
    400: "The body is not a valid rollout (`invalid_rollout`: the message names the field and "
    "the fix): no champion, candidate equal to the champion, unknown gate metric, weights that "
    "do not increase, ...",
    403: "The server was started without `--enable-rollout-control` (`rollout_control_disabled`).",
    404: "No such model, version, alias, declared rollout, or no rollout of this model.",
    409: "The model already has an active rollout (`rollout_active`), or the rollout is not in a "
    "state that allows this action (`rollout_state`).",
    413: "The request body is over the server's `--max-body-bytes`.",
    503: "Over `--max-in-flight` requests at once, or the registry database is unreachable.",
}
_DURATION: dict[str, Any] = {
    "description": "A whole number and a unit (`90s`, `10m`, `1h`, `1d`, `2w`), seconds as a "
    "number, or ISO 8601 (`PT10M`).",
    "type": ["string", "number"],
}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_PHASE = _obj({"weight": {"type": "number"}, "duration": _DURATION, "min_samples": _COUNT})
_ROLLOUT_SCHEMAS: dict[str, Any] = {
    "RolloutStart": {
        **_obj(
            {
                "rollout": {"type": "string", "description": "Start this declared rollout."},
                "model": _STR,
                "candidate": {"type": ["integer", "string"], "description": "Version or alias."},
                "champion_alias": _STR,
                "shadow": {
                    "description": "The shadow phase; null for none (absent: 30m, 500 samples).",
                    "oneOf": [
                        _obj({"duration": _DURATION, "min_samples": _COUNT}),
                        {"type": "null"},
                    ],
                },
                "shadow_fraction": {"type": "number"},
                "steps": {"type": "array", "items": _PHASE, "description": "Canary steps."},
                "routing_key": _obj(
                    {"name": _STR, "source": {"enum": ["entity", "header"]}}, ("name",)
                ),
                "gates": {
                    "type": "array",
                    "items": _obj(
                        {
                            "metric": _STR,
                            "threshold": {"type": ["number", "null"]},
                            "min_samples": _COUNT,
                            "test": _STR,
                            "k": _COUNT,
                            "output": _NULLABLE_STR,
                        },
                        ("metric",),
                    ),
                },
                "failure_policy": _obj(
                    {"mode": {"enum": ["cumulative", "consecutive"]}, "limit": _COUNT}
                ),
                "interval": _DURATION,
                "also_shadow": {"type": "array", "items": {"type": ["integer", "string"]}},
            }
        ),
        "description": "A declared rollout's name, or the model, its candidate and options.",
    },
    "RolloutAction": _obj({"reason": {"type": ["string", "null"], "maxLength": 1000}}),
    "GateResult": {
        "type": "object",
        "properties": {
            "gate": _STR,
            "verdict": {"enum": ["pass", "fail", "inconclusive"]},
            "candidate": {"type": ["number", "null"]},
            "champion": {"type": ["number", "null"]},
            "limit": {"type": ["number", "null"]},
            "samples": {"type": "object", "additionalProperties": {"type": "integer"}},
            "reason": _STR,
        },
        "required": ["gate", "verdict"],
    },
    "RolloutState": {
        "type": "object",
        "properties": {
            "id": _STR,
            "project": _STR,
            "model": _STR,
            "definition": {"type": "object", "description": "The Rollout it started with."},
            "candidate": {"type": "integer"},
            "champion": {"type": "integer"},
            "status": {"enum": ["active", "paused", "promoted", "aborted"]},
            "step": {"type": "integer", "description": "Index into the phases (0: shadow)."},
            "step_started": {"type": "string", "format": "date-time"},
            "failures": {"type": "integer"},
            "started_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "shadows": {"type": "array", "items": {"type": "integer"}},
            "reason": _STR,
            "weight": {"type": "number", "description": "The candidate's share now (percent)."},
            "in_shadow": {"type": "boolean"},
            "phases": {"type": "integer"},
        },
        "required": ["id", "model", "candidate", "champion", "status", "step", "weight"],
    },
    "RolloutEvent": {
        "type": "object",
        "properties": {
            "rollout": _STR,
            "at": {"type": "string", "format": "date-time"},
            "kind": _STR,
            "step": {"type": "integer"},
            "weight": {"type": "number"},
            "results": {"type": "array", "items": _ref("GateResult")},
            "reason": _STR,
            "actor": _STR,
        },
        "required": ["rollout", "at", "kind", "step", "weight", "results"],
    },
    "RolloutList": _obj(
        {"rollouts": {"type": "array", "items": _ref("RolloutState")}}, ("rollouts",)
    ),
    "RolloutAnswer": _obj({"rollout": _ref("RolloutState")}, ("rollout",)),
    "RolloutDetail": _obj(
        {
            "rollout": _ref("RolloutState"),
            "events": {"type": "array", "items": _ref("RolloutEvent")},
        },
        ("rollout", "events"),
    ),
}
_ROLLOUT_MODEL = {**_MODEL_NAME, "description": "The model's name."}


def _rollout_errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), _ROLLOUT_ERRORS[s]) for s in statuses}


def _rollout_post(summary: str, body: str, ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    return {
        "summary": summary,
        "requestBody": {
            "required": body == "RolloutStart",
            "content": {"application/json": {"schema": _ref(body)}},
        },
        "responses": {**ok, **_rollout_errors(*errors, 403, 413, 503)},
    }


def _rollout_paths() -> dict[str, Any]:
    answer = _json(_ref("RolloutAnswer"), "The rollout's state after the action.")
    paths: dict[str, Any] = {
        "/v1/rollouts": {
            "get": {
                "summary": "Every active rollout",
                "responses": {
                    "200": _json(_ref("RolloutList"), "Active and paused rollouts."),
                    **_rollout_errors(503),
                },
            },
            "post": _rollout_post(
                "Start a rollout (needs --enable-rollout-control)",
                "RolloutStart",
                {"201": _json(_ref("RolloutAnswer"), "Started.")},
                400,
                404,
                409,
            ),
        },
        "/v1/rollouts/{model_name}": {
            "parameters": [_ROLLOUT_MODEL],
            "get": {
                "summary": "The model's latest rollout and its events (the timeline)",
                "responses": {
                    "200": _json(_ref("RolloutDetail"), "State and events, oldest first."),
                    **_rollout_errors(404, 503),
                },
            },
        },
    }
    for action in ("pause", "resume", "promote", "abort"):
        paths[f"/v1/rollouts/{{model_name}}/{action}"] = {
            "parameters": [_ROLLOUT_MODEL],
            "post": _rollout_post(
                f"{action.capitalize()} the model's rollout (needs --enable-rollout-control)",
                "RolloutAction",
                {"200": answer},
                400,
                404,
                409,
            ),
        }
    return paths


def model_server_spec(version: str, *, secured: bool = False) -> dict[str, Any]:
    """The OpenAPI document of the model server (served at GET /openapi.json); `secured` (auth
    on): with the bearer scheme and the 401/403/429 answers of inference/routes.py's table."""
    text = {"description": "Prometheus text format.", "content": {"text/plain": {"schema": _STR}}}
    live = _obj({"live": {"type": "boolean"}}, ("live",))
    ready = _obj({"ready": {"type": "boolean"}}, ("ready",))
    paths: dict[str, Any] = {
        "/v2": _get("Server metadata", _json(_ref("ServerMetadata"), "Metadata.")),
        "/v2/health/live": _get("Liveness", _json(live, "Live.")),
        "/v2/health/ready": _get(
            "Readiness (400 `not_ready` while loading models)", _json(ready, "Ready."), 400
        ),
        "/v1/models": _get(
            "Models with their versions and aliases", _json(_ref("ModelList"), "Models.")
        ),
        "/metrics": _get("Prometheus metrics", text),
        "/openapi.json": _get("This document", _json({"type": "object"}, "OpenAPI 3.1.")),
        **_model_paths("{model_name}", [_MODEL], pinned=False),
        **_model_paths(
            "{model_name}/versions/{model_version}", [_MODEL_NAME, _VERSION], pinned=True
        ),
        **alias_paths(),
        **_rollout_paths(),
    }
    spec = {
        "openapi": "3.1.0",
        "info": {
            "title": "Parity model server",
            "version": version,
            "description": "Open Inference Protocol v2 (KServe v2, Triton) REST, entity-based "
            "prediction, alias moves (`/v1/models/{model}/aliases`) and rollouts "
            '(`/v1/rollouts`). Every error is a JSON body {"error": message, "code": code}.',
        },
        "paths": paths,
        "components": {"schemas": {**SCHEMAS, **_ROLLOUT_SCHEMAS, **ALIAS_SCHEMAS}},
    }
    if not secured:
        return spec
    from parity.inference.routes import MODEL_ROUTES
    from parity.serving.routes import secure_openapi

    return secure_openapi(spec, MODEL_ROUTES, "#/components/schemas/Error")
