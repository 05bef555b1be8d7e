"""The model server's protocol logic (OIP v2, KServe v1, errors, low confidence, metrics), in-process."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pytest
from prometheus_client import parser as prom_parser

from mlops_workloads import runtime
from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import demo

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
ROW2 = {"sepal_length": 6.3, "sepal_width": 2.9, "petal_length": 5.6, "petal_width": 1.8, "site": "south"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.build(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def numeric_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.build(tmp_path_factory.mktemp("numeric"), categorical=False)


@pytest.fixture()
def app(model_dir: pathlib.Path) -> app_mod.App:
    return app_mod.App(
        bundle_mod.load(model_dir),
        model_name="iris",
        low_confidence_threshold=0.6,
        max_batch_rows=50,
        drift_window=200,
    )


def call(app: app_mod.App, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    response = app.handle(method, path, raw)
    if response.content_type.startswith("application/json"):
        return response.status, json.loads(response.body)
    return response.status, response.body.decode()


def v2_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    types = {"site": "BYTES"}
    return {
        "inputs": [
            {"name": k, "shape": [len(rows)], "datatype": types.get(k, "FP32"), "data": [r[k] for r in rows]}
            for k in ROW
        ]
    }


def metrics(app: app_mod.App) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = call(app, "GET", "/metrics")
    assert status == 200
    out = {}
    for family in prom_parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# -- health and metadata -------------------------------------------------------------------------


def test_health_and_metadata(app: app_mod.App) -> None:
    assert call(app, "GET", "/v2/health/live") == (200, {"live": True})
    assert call(app, "GET", "/v2/health/ready") == (200, {"ready": True})
    assert call(app, "GET", "/v2/models/iris/ready") == (200, {"name": "iris", "ready": True})
    assert call(app, "GET", "/v1/models/iris") == (200, {"name": "iris", "ready": True})
    assert call(app, "GET", "/v1/models") == (200, {"models": ["iris"]})
    status, meta = call(app, "GET", "/v2")
    assert status == 200 and meta["name"] == "mlops-serve"
    status, model = call(app, "GET", "/v2/models/iris")
    assert status == 200
    assert [i["name"] for i in model["inputs"]] == list(ROW)
    assert model["inputs"][4]["datatype"] == "BYTES"
    assert model["parameters"]["digest"].startswith("sha256:")
    assert model["parameters"]["classes"] == [0, 1, 2]
    status, doc = call(app, "GET", "/openapi.json")
    assert status == 200 and "/v2/models/{name}/infer" in doc["paths"]


def test_draining_reports_not_ready(app: app_mod.App) -> None:
    app.draining = True
    assert call(app, "GET", "/v2/health/ready")[0] == 503
    assert call(app, "GET", "/v2/models/iris/ready")[0] == 503
    assert call(app, "GET", "/v2/health/live")[0] == 200


# -- predictions ----------------------------------------------------------------------------------


def test_v2_named_columns_match_the_pipeline(app: app_mod.App, model_dir: pathlib.Path) -> None:
    status, body = call(app, "POST", "/v2/models/iris/infer", {**v2_columns([ROW, ROW2]), "id": "req-1"})
    assert status == 200, body
    outputs = {o["name"]: o for o in body["outputs"]}
    assert body["id"] == "req-1" and body["model_name"] == "iris"
    import pandas as pd

    expected = bundle_mod.load(model_dir).pipeline.predict_proba(pd.DataFrame([ROW, ROW2]))
    assert outputs["predictions"]["data"] == expected.argmax(axis=1).tolist()
    assert outputs["predictions"]["datatype"] == "INT64"
    assert outputs["probabilities"]["shape"] == [2, 3]
    np.testing.assert_allclose(outputs["probabilities"]["data"], expected.ravel())
    assert outputs["low_confidence"]["data"] == (expected.max(axis=1) < 0.6).tolist()


def test_v2_output_selection(app: app_mod.App) -> None:
    status, body = call(
        app, "POST", "/v2/models/iris/infer", {**v2_columns([ROW]), "outputs": [{"name": "predictions"}]}
    )
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["predictions"]
    status, body = call(
        app, "POST", "/v2/models/iris/infer", {**v2_columns([ROW]), "outputs": [{"name": "nope"}]}
    )
    assert status == 422 and "nope" in body["error"]


def test_v2_single_fp32_matrix(numeric_dir: pathlib.Path) -> None:
    app = app_mod.App(bundle_mod.load(numeric_dir), model_name="iris")
    data = [[5.1, 3.5, 1.4, 0.2], [6.3, 2.9, 5.6, 1.8]]
    for payload in (data, [v for row in data for v in row]):
        status, body = call(
            app,
            "POST",
            "/v2/models/iris/infer",
            {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": payload}]},
        )
        assert status == 200, body
        assert body["outputs"][0]["data"] == [0, 2]
    status, body = call(
        app,
        "POST",
        "/v2/models/iris/infer",
        {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1] * 6}]},
    )
    assert status == 422 and "3 columns" in body["error"]


def test_fp32_matrix_refused_when_schema_has_categories(app: app_mod.App) -> None:
    status, body = call(
        app,
        "POST",
        "/v2/models/iris/infer",
        {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]},
    )
    assert status == 422 and "site" in body["error"]


def test_v1_lists_and_dicts(app: app_mod.App) -> None:
    status, by_name = call(app, "POST", "/v1/models/iris:predict", {"instances": [ROW, ROW2]})
    assert status == 200, by_name
    status, by_list = call(
        app, "POST", "/v1/models/iris:predict", {"instances": [list(ROW.values()), list(ROW2.values())]}
    )
    assert status == 200
    assert by_name == by_list
    assert by_name["predictions"] == [0, 2]
    assert len(by_name["probabilities"]) == 2 and len(by_name["probabilities"][0]) == 3
    assert by_name["lowConfidence"] == [False, False]
    assert by_name["classes"] == [0, 1, 2]


def test_low_confidence_flag(model_dir: pathlib.Path) -> None:
    strict = app_mod.App(bundle_mod.load(model_dir), model_name="iris", low_confidence_threshold=0.999999)
    ambiguous = {
        "sepal_length": 6.0,
        "sepal_width": 2.7,
        "petal_length": 4.9,
        "petal_width": 1.6,
        "site": "east",
    }
    status, body = call(strict, "POST", "/v1/models/iris:predict", {"instances": [ROW, ambiguous]})
    assert status == 200
    assert body["lowConfidence"] == [max(p) < 0.999999 for p in body["probabilities"]]
    assert body["lowConfidence"][1] is True
    lax = app_mod.App(bundle_mod.load(model_dir), model_name="iris", low_confidence_threshold=0.0)
    assert call(lax, "POST", "/v1/models/iris:predict", {"instances": [ambiguous]})[1]["lowConfidence"] == [
        False
    ]
    m = metrics(strict)
    assert m[("mlops_serve_low_confidence_total", ())] >= 1
    assert m[("mlops_serve_rows_total", ())] == 2


def test_regression_model(tmp_path: pathlib.Path) -> None:
    path = demo.build(tmp_path, categorical=False, estimator="tree")
    app = app_mod.App(bundle_mod.load(path), model_name="r")
    status, body = call(app, "POST", "/v1/models/r:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert status == 200 and isinstance(body["predictions"][0], float) and "lowConfidence" not in body
    status, body = call(
        app,
        "POST",
        "/v2/models/r/infer",
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]},
    )
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["predictions"]
    assert ("mlops_serve_prediction_value_count", ()) in metrics(app)


def test_out_of_range_and_unknown_category_are_warnings(app: app_mod.App) -> None:
    odd = {**ROW, "sepal_length": 99.0, "site": "west"}
    status, body = call(app, "POST", "/v1/models/iris:predict", {"instances": [odd, ROW]})
    assert status == 200
    kinds = {(w["feature"], w["kind"], w["rows"]) for w in body["warnings"]}
    assert kinds == {("sepal_length", "outOfRange", 1), ("site", "unknownCategory", 1)}
    status, body = call(app, "POST", "/v2/models/iris/infer", v2_columns([odd]))
    assert status == 200 and len(body["parameters"]["warnings"]) == 2
    m = metrics(app)
    assert m[("mlops_serve_input_warnings_total", (("feature", "site"), ("kind", "unknownCategory")))] == 2


# -- bad inputs: always 4xx with a message, never 5xx --------------------------------------------

BAD_V1: list[tuple[Any, int, str]] = [
    (b"", 400, "empty"),
    (b"{not json", 400, "not valid JSON"),
    (b'{"instances": [[NaN, 1, 1, 1, "north"]]}', 400, "NaN"),
    ([1, 2], 422, "JSON object"),
    ({"instances": "x"}, 422, "instances"),
    ({"instances": []}, 422, "no rows"),
    ({"rows": [ROW]}, 422, "unknown top-level"),
    ({"instances": [[1, 2, 3]]}, 422, "expected 5"),
    ({"instances": [ROW, [1, 2, 3, 4, "north"]]}, 422, "not mixed"),
    ({"instances": [{k: v for k, v in ROW.items() if k != "site"}]}, 422, "missing columns: ['site']"),
    ({"instances": [{**ROW, "colour": "red"}]}, 422, "unknown columns: ['colour']"),
    ({"instances": [{**ROW, "sepal_length": "tall"}]}, 422, "'sepal_length', row 0"),
    ({"instances": [{**ROW, "sepal_length": True}]}, 422, "expected a number"),
    ({"instances": [{**ROW, "sepal_length": [1.0]}]}, 422, "expected a number"),
    ({"instances": [{**ROW, "site": 1.5}]}, 422, "'site'"),
    ({"instances": [ROW] * 51}, 413, "at most 50"),
    ({"instances": [{**ROW, "sepal_length": None}]}, 422, "could not score"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_V1)
def test_bad_v1_inputs(app: app_mod.App, body: Any, status: int, fragment: str) -> None:
    got, answer = call(app, "POST", "/v1/models/iris:predict", body)
    assert got == status, answer
    assert fragment in answer["error"]


def _tensor(
    name: str, data: list[Any], datatype: str = "FP32", shape: list[int] | None = None
) -> dict[str, Any]:
    return {"name": name, "shape": shape or [len(data)], "datatype": datatype, "data": data}


def _v2_with(**override: dict[str, Any]) -> dict[str, Any]:
    body = v2_columns([ROW])
    body["inputs"] = [override.get(t["name"], t) for t in body["inputs"]]
    return body


BAD_V2: list[tuple[Any, int, str]] = [
    ({}, 422, "'inputs'"),
    ({"inputs": []}, 422, "'inputs'"),
    ({"inputs": [5]}, 422, "inputs[0]"),
    ({"inputs": [{"name": "x"}]}, 422, "datatype"),
    ({"inputs": [{"name": "sepal_length", "datatype": "FP32", "shape": [1]}]}, 422, "'data' is required"),
    ({"inputs": [_tensor("sepal_length", [1.0], "FLOAT")]}, 422, "datatype"),
    ({"inputs": [_tensor("sepal_length", [1.0])]}, 422, "missing input tensors"),
    (
        {"inputs": [*v2_columns([ROW])["inputs"], _tensor("extra", [1.0])]},
        422,
        "unknown input tensors: ['extra']",
    ),
    (_v2_with(site=_tensor("site", ["north"], "FP32")), 422, "does not fit feature dtype"),
    (_v2_with(sepal_length=_tensor("sepal_length", ["a"])), 422, "expected a number"),
    (_v2_with(sepal_length=_tensor("sepal_length", [1.0, 2.0])), 422, "rows"),
    (_v2_with(sepal_length=_tensor("sepal_length", [1.0, 2.0], shape=[1])), 422, "'data' has 2"),
    (_v2_with(sepal_length=_tensor("sepal_length", [1.0], shape=[1, 2])), 422, "not a column"),
    (_v2_with(sepal_length={**_tensor("sepal_length", [1.0]), "shape": "1"}), 422, "'shape'"),
    (_v2_with(sepal_length={**_tensor("sepal_length", [1.0]), "colour": 1}), 422, "unknown field"),
    ({**v2_columns([ROW]), "id": 5}, 422, "'id'"),
    ({**v2_columns([ROW]), "extra": 1}, 422, "unknown top-level"),
    (v2_columns([ROW] * 51), 413, "at most 50"),
    ({"inputs": [_tensor(n, [], shape=[0]) for n in ROW]}, 422, "no rows"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_V2)
def test_bad_v2_inputs(app: app_mod.App, body: Any, status: int, fragment: str) -> None:
    got, answer = call(app, "POST", "/v2/models/iris/infer", body)
    assert got == status, answer
    assert fragment in answer["error"]


def test_routing_errors(app: app_mod.App) -> None:
    assert call(app, "GET", "/nope")[0] == 404
    assert call(app, "GET", "/v2/models/other")[0] == 404
    assert call(app, "POST", "/v2/models/other/infer", v2_columns([ROW]))[0] == 404
    assert call(app, "POST", "/v1/models/other:predict", {"instances": [ROW]})[0] == 404
    assert call(app, "GET", "/v2/models/iris/infer")[0] == 405
    assert call(app, "POST", "/v2/health/ready", {})[0] == 405
    assert call(app, "GET", "/v2/models/iris/versions/1/ready")[0] == 200
    assert call(app, "GET", "/v2/models/iris/versions/9/ready")[0] == 404
    response = app.handle("DELETE", "/metrics", b"")
    assert response.status == 405 and ("Allow", "GET") in response.headers


# -- batching ------------------------------------------------------------------------------------


def test_joint_scoring_equals_separate_and_isolates_bad_requests(app: app_mod.App) -> None:
    good1 = app.dispatch("POST", "/v1/models/iris:predict", json.dumps({"instances": [ROW]}).encode())
    nan = app.dispatch(
        "POST", "/v1/models/iris:predict", json.dumps({"instances": [{**ROW, "petal_width": None}]}).encode()
    )
    good2 = app.dispatch("POST", "/v2/models/iris/infer", json.dumps(v2_columns([ROW2, ROW])).encode())
    assert all(isinstance(p, app_mod.Pending) for p in (good1, nan, good2))
    joint = app.score([good1, nan, good2])  # type: ignore[list-item]
    assert [r.status for r in joint] == [200, 422, 200]
    assert json.loads(joint[0].body)["predictions"] == [0]
    assert json.loads(joint[2].body)["outputs"][0]["data"] == [2, 0]
    alone = app.score(
        [
            app.dispatch(
                "POST",
                "/v1/models/iris:predict",  # type: ignore[list-item]
                json.dumps({"instances": [ROW]}).encode(),
            )
        ]
    )
    assert json.loads(alone[0].body) == json.loads(joint[0].body)


# -- metrics -------------------------------------------------------------------------------------


def test_metrics_exposition_parses(app: app_mod.App) -> None:
    call(app, "POST", "/v1/models/iris:predict", {"instances": [ROW, ROW2]})
    call(app, "POST", "/v1/models/iris:predict", {"instances": []})
    m = metrics(app)
    assert (
        m[("mlops_serve_requests_total", (("code", "200"), ("endpoint", "/v1/models/{name}:predict")))] == 1
    )
    assert (
        m[("mlops_serve_requests_total", (("code", "422"), ("endpoint", "/v1/models/{name}:predict")))] == 1
    )
    assert (
        m[("mlops_serve_request_duration_seconds_count", (("endpoint", "/v1/models/{name}:predict"),))] == 2
    )
    assert m[("mlops_serve_predictions_total", (("class", "0"),))] == 1
    assert m[("mlops_serve_predictions_total", (("class", "2"),))] == 1
    assert m[("mlops_serve_inflight_requests", ())] == 0
    assert m[("mlops_serve_drift_window_rows", ())] == 2
    assert ("mlops_serve_drift_score", (("feature", "site"),)) in m
    assert ("mlops_serve_drift_score_overall", ()) in m
    assert any(k[0] == "mlops_serve_model_info" for k in m)


# -- loading -------------------------------------------------------------------------------------


def test_untrusted_types_are_refused() -> None:
    assert bundle_mod.check_untrusted(["sklearn.linear_model._logistic.LogisticRegression", "numpy.dtype"])
    with pytest.raises(runtime.WorkloadError) as info:
        bundle_mod.check_untrusted(["sklearn.pipeline.Pipeline", "os.system", "evil.Thing"])
    assert info.value.reason == "UntrustedModel" and "evil.Thing" in info.value.message


def test_untrusted_model_file_is_refused(tmp_path: pathlib.Path) -> None:
    import skops.io as sio

    path = demo.build(tmp_path)
    # A skops file holding a type outside the allowlist (a function from another module).
    sio.dump({"model": json.dumps}, tmp_path / "model.skops")
    with pytest.raises(runtime.WorkloadError) as info:
        bundle_mod.load(path)
    assert info.value.reason == "UntrustedModel" and "json" in info.value.message


def test_missing_files_are_reported(tmp_path: pathlib.Path) -> None:
    with pytest.raises(runtime.WorkloadError, match=r"no model\.skops"):
        bundle_mod.load(tmp_path)
    path = demo.build(tmp_path / "m")
    (path / "schema.json").unlink()
    with pytest.raises(runtime.WorkloadError, match=r"schema\.json is missing"):
        bundle_mod.load(path)
