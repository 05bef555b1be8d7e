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


def document(
    *,
    model_name: str,
    schema: bundle_mod.Schema,
    max_rows: int,
    version: str,
    explain_max_rows: int | None = None,
    explain_unavailable: str = "",
) -> dict[str, Any]:
    """``explain_max_rows``: the explain endpoints' row limit (``explain.MAX_ROWS`` of the method);
    ``explain_unavailable``: why this model is not explainable (its explain endpoints answer 501)."""
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
    v2_response: dict[str, Any] = {
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
    v1_request: dict[str, Any] = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {"type": "array", "maxItems": max_rows, "items": {"oneOf": [row_list, row_object]}},
            "parameters": {"type": "object"},
        },
    }
    v1_response: dict[str, Any] = {
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
    explain_rows = explain_max_rows if explain_max_rows is not None else max_rows
    features_enum = {"type": "string", "enum": list(schema.names)}
    explanation_meta = {
        "method": {
            "type": "string",
            "enum": ["tree", "linear", "permutation"],
            "description": "tree: shap.TreeExplainer; linear: shap.LinearExplainer (both on the "
            "preprocessed columns, summed back to the original ones); permutation: "
            "shap.PermutationExplainer on the whole model (model-agnostic).",
        },
        "explainer": {"type": "string", "description": "shap's explainer class."},
        "outputSpace": {
            "type": "string",
            "enum": ["probability", "margin", "raw"],
            "description": "What attributions + base value add up to, per output: probability "
            "(predict_proba), margin (binary: each class's log-odds, sigmoid gives its probability; "
            "multiclass: softmax logits) or raw (a regressor's prediction).",
        },
        "features": {"type": "array", "items": features_enum, "description": "The original columns."},
        "outputs": {
            "type": "array",
            "description": "What each attribution list is for: the classes, or ['prediction'].",
        },
    }
    v1_explain_request = {**v1_request, "properties": {**v1_request["properties"]}}
    v1_explain_request["properties"]["instances"] = {
        **v1_request["properties"]["instances"],
        "maxItems": explain_rows,
    }
    v1_explain_response = {
        "type": "object",
        "required": ["predictions", "explanations"],
        "properties": {
            **v1_response["properties"],
            "explanations": {
                "type": "object",
                "required": ["method", "outputSpace", "features", "outputs", "baseValues", "attributions"],
                "properties": {
                    **explanation_meta,
                    "baseValues": {
                        "type": "array",
                        "items": {"type": "number"},
                        "description": "The expected model output over the background sample, per output.",
                    },
                    "attributions": {
                        "type": "array",
                        "description": "Per row: {original column: [attribution per output]}; a row's "
                        "attributions of an output plus its base value give the model's output.",
                        "items": {
                            "type": "object",
                            "properties": {
                                f: {"type": "array", "items": {"type": "number"}} for f in schema.names
                            },
                        },
                    },
                },
            },
        },
    }
    v2_explain_response = {
        **v2_response,
        "description": "Outputs 'predictions', 'probabilities' (classifiers), 'attributions' "
        "(FP64, shape [rows, features, outputs], row-major; its parameters name the features and "
        "outputs) and 'base_values' (FP64, shape [outputs]); 'parameters' holds the explanation "
        "metadata (method, explainer, outputSpace, features, outputs).",
        "properties": {
            **v2_response["properties"],
            "parameters": {"type": "object", "properties": explanation_meta},
        },
    }

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

    def post(
        summary: str, request: dict[str, Any], ok: dict[str, Any], *extra: int, description: str = ""
    ) -> dict[str, Any]:
        op: dict[str, Any] = {
            "summary": summary,
            "parameters": [name_param],
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {"200": {**ok, "headers": request_id}, **_errors(400, 404, 405, 413, 422, *extra)},
        }
        if description:
            op["description"] = description
        return {"post": op}

    # Listed only when this model is explainable; otherwise the routes answer 501 with the reason
    # (``info.description`` says it), and a client generated from this document does not offer them.
    explain_paths: dict[str, Any] = {}
    if not explain_unavailable:
        text = (
            f"Per-row SHAP attributions in the original columns, at most {explain_rows} rows a "
            "request. Not counted as predictions (no drift, capture or prediction metrics)."
        )
        explain_paths = {
            "/v2/models/{name}/explain": post(
                "Explain (OIP v2 body, attributions as v2 outputs)",
                v2_request,
                _json(v2_explain_response, "Predictions and attributions."),
                description=text,
            ),
            "/v1/models/{name}:explain": post(
                "Explain (KServe v1)",
                v1_explain_request,
                _json(v1_explain_response, "Predictions and attributions."),
                description=text,
            ),
        }
    explain_note = ""
    if explain_unavailable:
        explain_note = f" The explain endpoints answer 501 for this model: {explain_unavailable}"

    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"mlops-serve: {model_name}",
            "version": version,
            "description": "Open Inference Protocol v2 and KServe v1 endpoints of one scikit-learn "
            "model. Values outside the training range and unseen categories are accepted and reported "
            "in 'warnings'; missing, "
            "unknown or mistyped columns, bad shapes and batches over the row limit are refused with 4xx."
            + explain_note,
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
            **explain_paths,
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
