"""The OpenAPI 3.0 document served at ``/openapi.json``.

Built from the model's schema, so the document names the real feature columns and the one
model name served; clients can generate code from it and schemathesis fuzzes against it.
"""

from __future__ import annotations

from typing import Any

from mlops_workloads.serve import bundle as bundle_mod

_JSON_SCHEMA = {
    "float": {"type": "number"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "category": {"type": "string"},
    "string": {"type": "string"},
}

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The body is not JSON.",
        404: "Unknown model or path.",
        405: "Wrong method.",
        413: "Too many rows or too large a body.",
        422: "The input does not fit the model's schema; the message names the column and row.",
        503: "Not ready (loading or draining).",
    }
    return {str(c): _json(ERROR, text[c]) for c in codes}


def document(*, model_name: str, schema: bundle_mod.Schema, max_rows: int, version: str) -> dict[str, Any]:
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [model_name]},
        "description": "The served model's name.",
    }
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {
                "type": "string",
                "description": "A feature name, or any name for one [N, F] numeric tensor.",
            },
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {
                "type": "string",
                "enum": [
                    "BOOL",
                    "UINT8",
                    "UINT16",
                    "UINT32",
                    "UINT64",
                    "INT8",
                    "INT16",
                    "INT32",
                    "INT64",
                    "FP16",
                    "FP32",
                    "FP64",
                    "BYTES",
                ],
            },
            "parameters": {"type": "object"},
            "data": {"type": "array", "items": {}},
        },
    }
    row_object = {
        "type": "object",
        "properties": {f.name: _JSON_SCHEMA[f.dtype] for f in schema.features},
        "required": list(schema.names),
    }
    row_list = {"type": "array", "items": {}, "minItems": len(schema.names), "maxItems": len(schema.names)}
    v2_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
    }
    v2_response = {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "datatype", "shape", "data"],
                    "properties": {
                        "name": {"type": "string"},
                        "datatype": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "data": {"type": "array"},
                        "parameters": {"type": "object"},
                    },
                },
            },
        },
    }
    v1_request = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {"type": "array", "maxItems": max_rows, "items": {"oneOf": [row_list, row_object]}},
            "parameters": {"type": "object"},
        },
    }
    v1_response = {
        "type": "object",
        "required": ["predictions"],
        "properties": {
            "predictions": {"type": "array"},
            "probabilities": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "lowConfidence": {"type": "array", "items": {"type": "boolean"}},
            "classes": {"type": "array"},
            "warnings": {"type": "array", "items": {"type": "object"}},
        },
    }
    ready = {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}

    def get(summary: str, ok: dict[str, Any], *extra: int, params: bool = False) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(405, *extra)}}
        if params:
            op["parameters"] = [name_param]
        return {"get": op}

    request_id = {
        "X-Request-Id": {
            "description": "The request's id: its x-request-id header (printable ASCII, at most 200 "
            "characters), else the v2 body's id, else a new uuid4 hex. Captured rows are stored under it.",
            "schema": {"type": "string"},
        }
    }

    def post(summary: str, request: dict[str, Any], ok: dict[str, Any]) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "parameters": [name_param],
                "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                "responses": {"200": {**ok, "headers": request_id}, **_errors(400, 404, 405, 413, 422)},
            }
        }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"mlops-serve: {model_name}",
            "version": version,
            "description": "Open Inference Protocol v2 and KServe v1 endpoints of one scikit-learn "
            "model. Values outside the training range and unseen categories are accepted and reported "
            "in 'warnings'; missing, "
            "unknown or mistyped columns, bad shapes and batches over the row limit are refused with 4xx.",
        },
        "paths": {
            "/v2/health/live": get("Liveness", _json({"type": "object"}, "Live.")),
            "/v2/health/ready": get("Readiness (model loaded)", _json({"type": "object"}, "Ready."), 503),
            "/v2": get("Server metadata", _json({"type": "object"}, "Server metadata.")),
            "/v2/models/{name}": get(
                "Model metadata", _json({"type": "object"}, "Model metadata."), 404, params=True
            ),
            "/v2/models/{name}/ready": get("Model readiness", _json(ready, "Ready."), 404, 503, params=True),
            "/v2/models/{name}/infer": post(
                "Predict (OIP v2)", v2_request, _json(v2_response, "Predictions.")
            ),
            "/v1/models": get("Models served", _json({"type": "object"}, "The model list.")),
            "/v1/models/{name}": get("Model status (KServe v1)", _json(ready, "Status."), 404, params=True),
            "/v1/models/{name}:predict": post(
                "Predict (KServe v1)", v1_request, _json(v1_response, "Predictions.")
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(405),
                    },
                }
            },
            "/openapi.json": get("This document", _json({"type": "object"}, "OpenAPI 3.0 document.")),
        },
    }
