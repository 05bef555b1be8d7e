"""Explanations: SHAP attributions in the original columns, from training to the explain endpoints.

Models are trained by the real trainer (``train.run``) on sklearn's bundled datasets (with a
one-hot categorical column where it matters), so the background sample and training's
attribution baseline come from ``train.artifacts`` as in a cluster, and served by the in-process
``App``. Additivity is checked against the model's OWN output (``predict_proba`` / ``predict``),
never against what the explainer says: per class in probability space (forests, permutation),
through the sigmoid (binary) or the softmax (multiclass) in margin space (boosted trees, logistic
regression), and the prediction itself for regressors.
"""

from __future__ import annotations

import json
import pathlib
import threading
import time
from typing import Any

import _train_data
import numpy as np
import pandas as pd
import pytest
from prometheus_client import parser as prom_parser
from sklearn import compose, decomposition, impute, linear_model, pipeline, preprocessing

from mlops_operator.api import trainingjob
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import demo, explain
from mlops_workloads.train import run

SETTINGS = rworkload.WorkloadSettings()


def _train(
    root: pathlib.Path,
    dataset: str,
    estimator: str,
    params: dict[str, Any] | None = None,
    *,
    categorical: bool = False,
    string_labels: bool = False,
) -> pathlib.Path:
    data_dir = _train_data.make_prepared(
        root / "datasets", dataset, categorical=categorical, string_labels=string_labels
    )
    tj = trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "m", "namespace": "team"},
            "spec": {
                "datasetRef": {"name": dataset.replace("_", "-")},
                "model": {"estimator": estimator, "params": params or {}},
                "output": {"storageUri": f"file://{root / 'models'}"},
            },
        }
    )
    digest = json.loads((data_dir / "manifest.json").read_text())["digest"]
    config = build.train_config(
        tj, dataset_uri=f"file://{data_dir}", dataset_digest=digest, settings=SETTINGS
    )
    result = run.train(_train_data.staged(config, root / "staging"))
    return _train_data.model_dir(result)


def _app(path: pathlib.Path, **kwargs: Any) -> app_mod.App:
    kwargs.setdefault("explainer_in_background", False)
    return app_mod.App(bundle_mod.load(path), model_name="m", attribution_interval=0, **kwargs)


def _dataset_dir(path: pathlib.Path) -> pathlib.Path:
    card = json.loads((path / "model_card.json").read_text())
    return pathlib.Path(card["dataset"]["uri"].removeprefix("file://"))


def _rows(path: pathlib.Path, n: int = 8, split: str = "test") -> pd.DataFrame:
    """``n`` rows of a split of the Dataset the model was trained on, in the schema's columns."""
    data_dir = _dataset_dir(path)
    schema = bundle_mod.Schema.from_json(json.loads((path / "schema.json").read_text()))
    sample = explain.background_sample(pd.read_parquet(data_dir / f"{split}.parquet"), schema=schema, rows=n)
    assert sample is not None
    return explain.served_frame(sample, schema)


def _call(app: app_mod.App, path: str, body: Any) -> tuple[int, Any]:
    response = app.handle("POST", path, json.dumps(body).encode())
    return response.status, json.loads(response.body)


def _instances(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _v2(frame: pd.DataFrame, schema: bundle_mod.Schema) -> dict[str, Any]:
    types = {"float": "FP64", "int": "INT64", "bool": "BOOL", "category": "BYTES", "string": "BYTES"}
    return {
        "inputs": [
            {
                "name": f.name,
                "shape": [len(frame)],
                "datatype": types[f.dtype],
                "data": [v.item() if hasattr(v, "item") else v for v in frame[f.name].tolist()],
            }
            for f in schema.features
        ]
    }


def _metrics(app: app_mod.App) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.handle("GET", "/metrics", b"")
    out = {}
    for family in prom_parser.text_string_to_metric_families(response.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def assert_additive(app: app_mod.App, frame: pd.DataFrame, values: np.ndarray, base: np.ndarray) -> None:
    """attributions + base value = the model's own output, in the explainer's output space."""
    assert app.explainer is not None
    space = app.explainer.space
    total = values.sum(axis=1) + base  # (rows, outputs)
    if space == "raw":
        want = np.asarray(app.bundle.pipeline.predict(frame), dtype=float)
        np.testing.assert_allclose(total[:, 0], want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))
        return
    proba = np.asarray(app.bundle.pipeline.predict_proba(frame), dtype=float)
    if space == "probability":
        got = total
    elif total.shape[1] == 2:
        np.testing.assert_allclose(total[:, 0], -total[:, 1])  # class 0's log-odds: the negation
        got = 1 / (1 + np.exp(-total))
    else:
        z = np.exp(total - total.max(axis=1, keepdims=True))
        got = z / z.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, proba, atol=1e-4)


# -- the endpoints, on a logistic regression with a one-hot column -------------------------------


@pytest.fixture(scope="module")
def logistic(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return _train(
        tmp_path_factory.mktemp("lr"),
        "breast_cancer",
        "LogisticRegression",
        {"max_iter": 2000},
        categorical=True,
        string_labels=True,
    )


def test_training_stores_the_background_and_its_attributions(logistic: pathlib.Path) -> None:
    baseline = json.loads((logistic / "baseline.json").read_text())
    background = baseline["explanations"]["background"]
    schema = json.loads((logistic / "schema.json").read_text())
    assert background["columns"] == [f["name"] for f in schema["features"]]
    assert background["rows"] == len(background["data"]) == explain.BACKGROUND_ROWS
    assert "features" in baseline or "mean_radius" in baseline  # the Dataset's drift baseline is kept
    card = json.loads((logistic / "model_card.json").read_text())
    summary = card["explanations"]
    assert (summary["method"], summary["explainer"], summary["outputSpace"]) == (
        "linear",
        "LinearExplainer",
        "margin",
    )
    assert summary["split"] == "validation" and summary["outputs"] == ["benign", "malignant"]
    assert set(summary["meanAbsAttribution"]) == set(background["columns"])
    assert all(v >= 0 for v in summary["meanAbsAttribution"].values())
    # What the server computes on the same validation sample.
    app = _app(logistic)
    assert app.explainer is not None
    validation = _rows(logistic, n=summary["rows"], split="validation")
    sample = explain.background_sample(
        pd.read_parquet(_dataset_dir(logistic) / "validation.parquet"), schema=app.schema, rows=100, seed=1
    )
    assert sample is not None and summary["rows"] == sample["rows"] == len(validation)
    again = explain.importance(app.explainer.explain(explain.served_frame(sample, app.schema)).values)
    np.testing.assert_allclose(
        [summary["meanAbsAttribution"][f] for f in app.schema.names], again.mean(axis=0), rtol=1e-9
    )


def test_v1_explain_is_additive_and_keyed_by_original_columns(logistic: pathlib.Path) -> None:
    app = _app(logistic)
    frame = _rows(logistic)
    status, body = _call(app, "/v1/models/m:explain", {"instances": _instances(frame)})
    assert status == 200, body
    e = body["explanations"]
    assert (e["method"], e["outputSpace"], e["outputs"]) == ("linear", "margin", ["benign", "malignant"])
    assert e["features"] == list(app.schema.names) and "colour" in e["features"]
    assert len(e["attributions"]) == len(frame)
    assert all(set(row) == set(app.schema.names) for row in e["attributions"])
    values = np.array([[row[f] for f in e["features"]] for row in e["attributions"]])
    assert_additive(app, frame, values, np.asarray(e["baseValues"]))
    # The same predictions as :predict.
    _, predicted = _call(app, "/v1/models/m:predict", {"instances": _instances(frame)})
    assert body["predictions"] == predicted["predictions"]
    np.testing.assert_allclose(body["probabilities"], predicted["probabilities"])


def test_one_hot_columns_add_up_to_their_original_column(logistic: pathlib.Path) -> None:
    """LinearExplainer per preprocessed column is coef * (x - background mean); the attribution of
    'colour' must be the sum over its three one-hot columns, by hand."""
    app = _app(logistic)
    frame = _rows(logistic, n=5)
    got = app.explainer.explain(frame)  # type: ignore[union-attr]
    pre, model = app.bundle.pipeline[:-1], app.bundle.pipeline[-1]
    background = explain.stored_background(app.bundle.baseline, app.schema)
    x, mean = pre.transform(frame), pre.transform(background).mean(axis=0)
    names = list(pre.get_feature_names_out())
    onehot = [i for i, n in enumerate(names) if n.startswith("cat__colour_")]
    assert len(onehot) == 3
    by_hand = ((x - mean)[:, onehot] * model.coef_[0, onehot]).sum(axis=1)
    j = app.schema.names.index("colour")
    np.testing.assert_allclose(got.values[:, j, 1], by_hand, rtol=1e-9, atol=1e-12)


def test_v2_explain_outputs_attributions_as_tensors(logistic: pathlib.Path) -> None:
    app = _app(logistic)
    frame = _rows(logistic, n=4)
    body = {**_v2(frame, app.schema), "id": "req-1"}
    status, answer = _call(app, "/v2/models/m/explain", body)
    assert status == 200, answer
    assert answer["id"] == "req-1" and answer["parameters"]["method"] == "linear"
    out = {o["name"]: o for o in answer["outputs"]}
    assert set(out) == {"predictions", "probabilities", "attributions", "base_values"}
    features = out["attributions"]["parameters"]["features"]
    assert features == list(app.schema.names)
    assert out["attributions"]["shape"] == [4, len(features), 2]
    values = np.asarray(out["attributions"]["data"]).reshape(out["attributions"]["shape"])
    assert_additive(app, frame, values, np.asarray(out["base_values"]["data"]))
    _, inferred = _call(app, "/v2/models/m/infer", _v2(frame, app.schema))
    assert out["predictions"]["data"] == inferred["outputs"][0]["data"]
    # Output selection, as infer's.
    status, only = _call(app, "/v2/models/m/explain", {**body, "outputs": [{"name": "attributions"}]})
    assert status == 200 and [o["name"] for o in only["outputs"]] == ["attributions"]
    status, bad = _call(app, "/v2/models/m/explain", {**body, "outputs": [{"name": "low_confidence"}]})
    assert status == 422 and "unknown output" in bad["error"]


def test_explain_limits_and_routing(logistic: pathlib.Path) -> None:
    app = _app(logistic)
    frame = _rows(logistic, n=explain.MAX_ROWS["linear"] + 1, split="train")
    status, body = _call(app, "/v1/models/m:explain", {"instances": _instances(frame)})
    assert status == 413 and "at most 100" in body["error"]
    status, body = _call(app, "/v2/models/m/explain", _v2(frame, app.schema))
    assert status == 413
    assert app.handle("GET", "/v1/models/m:explain", b"").status == 405
    assert app.handle("POST", "/v1/models/other:explain", b"{}").status == 404
    status, body = _call(app, "/v1/models/m:explain", {"instances": [{"mean_radius": 1.0}]})
    assert status == 422
    paths = json.loads(app.handle("GET", "/openapi.json", b"").body)["paths"]
    assert {"/v1/models/{name}:explain", "/v2/models/{name}/explain"} <= set(paths)
    metadata = json.loads(app.handle("GET", "/v2/models/m", b"").body)
    assert metadata["parameters"]["explainer"]["method"] == "linear"
    counted = _metrics(app)
    assert counted[
        ("mlops_serve_requests_total", (("code", "413"), ("endpoint", "/v1/models/{name}:explain")))
    ]


def test_explain_is_not_a_prediction(logistic: pathlib.Path) -> None:
    app = _app(logistic)
    frame = _rows(logistic, n=3)
    assert _call(app, "/v1/models/m:explain", {"instances": _instances(frame)})[0] == 200
    assert app.drift.rows == 0
    assert _metrics(app)[("mlops_serve_rows_total", ())] == 0


def test_a_joint_batch_answers_explains_and_predictions_in_order(logistic: pathlib.Path) -> None:
    app = _app(logistic)
    frame = _rows(logistic, n=3)
    body = json.dumps({"instances": _instances(frame)}).encode()
    pending = [
        app.dispatch("POST", "/v1/models/m:predict", body),
        app.dispatch("POST", "/v1/models/m:explain", body),
        app.dispatch("POST", "/v1/models/m:predict", body),
    ]
    assert all(isinstance(p, app_mod.Pending) for p in pending)
    answers = [json.loads(r.body) for r in app.score(pending)]  # type: ignore[arg-type]
    assert "explanations" not in answers[0] and "explanations" not in answers[2]
    assert answers[1]["explanations"]["method"] == "linear"
    assert answers[0]["predictions"] == answers[1]["predictions"] == answers[2]["predictions"]


# -- attribution drift ---------------------------------------------------------------------------


def test_attribution_drift_is_explained_off_the_request_path(logistic: pathlib.Path) -> None:
    app = _app(logistic, drift_window=50)
    assert app.explainer is not None and app.attribution is not None
    calls: list[int] = []
    original = app.explainer.explain

    def counting(frame: pd.DataFrame) -> explain.Attributions:
        calls.append(len(frame))
        return original(frame)

    app.explainer.explain = counting  # type: ignore[method-assign]
    frame = _rows(logistic, n=30)
    for start in range(0, 30, 10):
        part = frame.iloc[start : start + 10]
        assert _call(app, "/v1/models/m:predict", {"instances": _instances(part)})[0] == 200
    assert calls == []  # scoring never explains
    assert app.attribution.run_once() == 30
    assert calls == [30]
    assert app.attribution.run_once() == 0  # nothing new was served
    expected = explain.importance(original(frame).values).mean(axis=0)
    means = app.attribution.means()
    np.testing.assert_allclose([means[f] for f in app.schema.names], expected, rtol=1e-9)
    card = json.loads((logistic / "model_card.json").read_text())
    training = card["explanations"]["meanAbsAttribution"]
    m = _metrics(app)
    for f in app.schema.names:
        assert m[("mlops_serve_attribution_mean_abs", (("feature", f),))] == pytest.approx(means[f])
        assert m[("mlops_serve_attribution_training_mean_abs", (("feature", f),))] == pytest.approx(
            training[f]
        )
        ratio = m[("mlops_serve_attribution_ratio", (("feature", f),))]
        assert ratio == pytest.approx(means[f] / training[f])
    assert m[("mlops_serve_attribution_window_rows", ())] == 30


def test_the_monitor_keeps_a_bounded_sample_and_window(logistic: pathlib.Path) -> None:
    app = _app(logistic, drift_window=40)
    assert app.attribution is not None
    frame = _rows(logistic, n=100, split="train")
    for start in range(0, 100, 25):
        part = frame.iloc[start : start + 25]
        assert _call(app, "/v1/models/m:predict", {"instances": _instances(part)})[0] == 200
    # At most sample_rows (the method's limit) of the latest rows per pass; the window keeps 40.
    assert app.attribution.sample_rows == explain.MAX_ROWS["linear"]
    assert app.attribution.run_once() == 100
    assert app.attribution.window.filled == 40
    want = explain.importance(app.explainer.explain(frame.iloc[-40:]).values).mean(axis=0)  # type: ignore[union-attr]
    np.testing.assert_allclose(app.attribution.window.means(), want, rtol=1e-9)
    small = explain.AttributionMonitor(app.explainer, window=40, interval=0, sample_rows=7)  # type: ignore[arg-type]
    for start in range(0, 100, 25):
        small.offer({k: v.to_numpy() for k, v in frame.iloc[start : start + 25].items()}, 25)
    assert small.run_once() == 7


def test_the_monitor_thread_runs_and_stops(logistic: pathlib.Path) -> None:
    app = app_mod.App(
        bundle_mod.load(logistic), model_name="m", attribution_interval=0.05, explainer_in_background=False
    )
    assert app.attribution is not None
    frame = _rows(logistic, n=5)
    assert _call(app, "/v1/models/m:predict", {"instances": _instances(frame)})[0] == 200
    import time

    deadline = time.monotonic() + 20
    while app.attribution.explained == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.attribution.explained == 5
    app.close()
    assert app.attribution._thread is None


# -- the methods, by model -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ("iris", "RandomForestClassifier", {"n_estimators": 20}, "tree", "probability", True),
        ("wine", "XGBClassifier", {"n_estimators": 20, "max_depth": 3}, "tree", "margin", False),
        ("breast_cancer", "LGBMClassifier", {"n_estimators": 20}, "tree", "margin", True),
        ("diabetes", "GradientBoostingRegressor", {"n_estimators": 20}, "tree", "raw", False),
        ("diabetes", "Ridge", {}, "linear", "raw", True),
        # shap's TreeExplainer covers GradientBoostingClassifier for two classes only.
        ("iris", "GradientBoostingClassifier", {"n_estimators": 10}, "permutation", "probability", True),
        ("iris", "SVC", {"probability": True}, "permutation", "probability", False),
    ],
    ids=lambda case: f"{case[1]}-{case[0]}",
)
def test_each_method_adds_up(
    tmp_path: pathlib.Path, case: tuple[str, str, dict[str, Any], str, str, bool]
) -> None:
    dataset, estimator, params, method, space, categorical = case
    path = _train(tmp_path, dataset, estimator, params, categorical=categorical)
    app = _app(path)
    assert app.explainer is not None, app.explain_unavailable
    assert (app.explainer.method, app.explainer.space) == (method, space)
    frame = _rows(path, n=6)
    status, body = _call(app, "/v1/models/m:explain", {"instances": _instances(frame)})
    assert status == 200, body
    e = body["explanations"]
    values = np.array([[row[f] for f in e["features"]] for row in e["attributions"]])
    assert values.shape == (6, len(app.schema.names), len(e["outputs"]))
    assert_additive(app, frame, values, np.asarray(e["baseValues"]))
    assert np.abs(values).sum() > 0
    card = json.loads((path / "model_card.json").read_text())
    assert (card["explanations"]["method"], card["explanations"]["outputSpace"]) == (method, space)
    assert explain.training_means(card, app.explainer) is not None


def test_string_labels_name_the_outputs(tmp_path: pathlib.Path) -> None:
    path = _train(tmp_path, "iris", "XGBClassifier", {"n_estimators": 5}, string_labels=True)
    app = _app(path)
    assert app.explainer is not None and app.explainer.outputs == ("setosa", "versicolor", "virginica")
    frame = _rows(path, n=3)
    status, body = _call(app, "/v1/models/m:explain", {"instances": _instances(frame)})
    assert status == 200 and body["explanations"]["outputs"] == ["setosa", "versicolor", "virginica"]
    assert set(body["predictions"]) <= {"setosa", "versicolor", "virginica"}


# -- tracing preprocessed columns ----------------------------------------------------------------


def _frame() -> pd.DataFrame:
    x, _ = demo.frame()
    x["size"] = np.where(x["petal_length"] > 3, "big", "small")
    return x


def test_trace_columns_through_nested_column_transformers() -> None:
    """The prepare workload's shape: a Pipeline(impute, scale|encode) per group of columns."""
    x = _frame()
    numeric, cats = list(demo.NUMERIC), ["site", "size"]
    ct = compose.ColumnTransformer(
        [
            (
                "num",
                pipeline.Pipeline(
                    [("impute", impute.SimpleImputer()), ("scale", preprocessing.StandardScaler())]
                ),
                numeric,
            ),
            (
                "cat",
                pipeline.Pipeline(
                    [
                        ("impute", impute.SimpleImputer(strategy="most_frequent")),
                        ("encode", preprocessing.OneHotEncoder(sparse_output=False)),
                    ]
                ),
                cats,
            ),
        ],
        remainder="drop",
    ).fit(x)
    traced = explain.trace_columns(ct, list(x.columns))
    assert traced == [*numeric, "site", "site", "site", "size", "size"]
    assert len(traced) == ct.transform(x).shape[1]
    # Columns mixed together cannot be traced back: the permutation explainer takes over.
    mixed = pipeline.Pipeline([("ct", ct), ("pca", decomposition.PCA(3))]).fit(x)
    assert explain.trace_columns(mixed, list(x.columns)) is None


def test_an_untraceable_preprocessor_falls_back_to_permutation() -> None:
    x = _frame()
    _, y = demo.frame()
    ct = compose.ColumnTransformer(
        [
            ("num", preprocessing.StandardScaler(), list(demo.NUMERIC)),
            ("cat", preprocessing.OneHotEncoder(), ["site", "size"]),
        ]
    )
    model = pipeline.Pipeline(
        [("ct", ct), ("pca", decomposition.PCA(4)), ("lr", linear_model.LogisticRegression(max_iter=500))]
    ).fit(x, y)
    schema = bundle_mod.Schema.from_json(
        {
            "target": "species",
            "task": "classification",
            "features": [{"name": c, "dtype": "float"} for c in demo.NUMERIC]
            + [{"name": "site", "dtype": "category"}, {"name": "size", "dtype": "category"}],
        }
    )
    background = explain.served_frame(explain.background_sample(x, schema=schema) or {}, schema)
    explainer = explain.build(model, schema=schema, classes=(0, 1, 2), background=background)
    assert (explainer.method, explainer.space) == ("permutation", "probability")
    rows = background.iloc[:4]
    got = explainer.explain(rows)
    np.testing.assert_allclose(got.values.sum(axis=1) + got.base_values, model.predict_proba(rows), atol=1e-9)


# -- models without a background sample ----------------------------------------------------------


def test_an_old_model_directory_still_serves_and_explain_answers_501(tmp_path: pathlib.Path) -> None:
    path = demo.build(tmp_path / "old")
    baseline = json.loads((path / "baseline.json").read_text())
    del baseline[explain.BASELINE_KEY]  # as a model written before explanations
    (path / "baseline.json").write_text(json.dumps(baseline))
    app = _app(path)
    assert app.explainer is None and app.attribution is None
    assert "no background sample" in app.explain_unavailable
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
    status, body = _call(app, "/v1/models/m:explain", {"instances": [row]})
    assert status == 501 and "retrain" in body["error"]
    assert _call(app, "/v1/models/m:predict", {"instances": [row]})[0] == 200
    document = json.loads(app.handle("GET", "/openapi.json", b"").body)
    assert not any("explain" in p for p in document["paths"])
    assert "501" in document["info"]["description"]
    assert not any(name.startswith("mlops_serve_attribution") for name, _ in _metrics(app))


def test_a_model_card_made_another_way_is_not_compared(logistic: pathlib.Path) -> None:
    app = _app(logistic)
    assert app.explainer is not None
    card = json.loads((logistic / "model_card.json").read_text())
    assert explain.training_means(card, app.explainer) is not None
    card["explanations"]["method"] = "permutation"
    assert explain.training_means(card, app.explainer) is None
    assert explain.training_means({}, app.explainer) is None


def test_an_onnx_network_is_explained_model_agnostically(tmp_path: pathlib.Path) -> None:
    """The built-in PyTorch network, served from model.onnx behind the Dataset's preprocessor."""
    path = _train(tmp_path, "iris", "TorchMLPClassifier", {"epochs": 5, "hidden_units": 8}, categorical=True)
    assert (path / "model.onnx").is_file()
    app = _app(path)
    assert app.explainer is not None, app.explain_unavailable
    assert (app.explainer.method, app.explainer.space) == ("permutation", "probability")
    frame = _rows(path, n=4)
    status, body = _call(app, "/v2/models/m/explain", _v2(frame, app.schema))
    assert status == 200, body
    out = {o["name"]: o for o in body["outputs"]}
    values = np.asarray(out["attributions"]["data"]).reshape(out["attributions"]["shape"])
    assert values.shape == (4, len(app.schema.names), 3)
    # ONNX computes in float32: additive to float32 precision.
    total = values.sum(axis=1) + np.asarray(out["base_values"]["data"])
    np.testing.assert_allclose(total, app.bundle.pipeline.predict_proba(frame), atol=1e-5)
    card = json.loads((path / "model_card.json").read_text())
    assert card["explanations"]["method"] == "permutation"


def test_explain_over_http_and_schemathesis_finds_no_server_error(
    logistic: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The real server (``python -m mlops_workloads.serve``): explain answers over HTTP, and
    fuzzing the two explain operations of its /openapi.json finds no 5xx and no answer that
    breaks the document."""
    import hypothesis
    import requests
    import schemathesis
    from schemathesis import checks as st_checks

    from model_server import running

    frame = _rows(logistic, n=2)
    with running(logistic, tmp_path) as (base, _):
        deadline = time.monotonic() + 60
        while True:  # the explainer is built after the model serves: 503 + Retry-After meanwhile
            r = requests.post(
                f"{base}/v1/models/iris:explain", json={"instances": _instances(frame)}, timeout=30
            )
            if r.status_code != 503 or time.monotonic() > deadline:
                break
            assert r.headers["Retry-After"] == "2"
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["explanations"]["method"] == "linear"
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert 'mlops_serve_attribution_training_mean_abs{feature="colour"}' in metrics
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        every: list[Any] = list(schema.get_all_operations())
        operations = [o.ok() for o in every if "explain" in o.ok().label]
        assert {o.label for o in operations} == {
            "POST /v1/models/{name}:explain",
            "POST /v2/models/{name}/explain",
        }
        checks = [
            st_checks.not_a_server_error,
            st_checks.status_code_conformance,
            st_checks.content_type_conformance,
            st_checks.response_schema_conformance,
        ]
        session = requests.Session()
        statuses: list[int] = []

        def fuzz(operation: Any, mode: schemathesis.GenerationMode) -> None:
            negative = mode is schemathesis.GenerationMode.NEGATIVE

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=30,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            def run(case: schemathesis.Case[Any]) -> None:
                response = case.call(base_url=base, session=session)
                statuses.append(response.status_code)
                if negative:
                    assert response.status_code < 500, response.text
                else:
                    case.validate_response(response, checks=checks)

            run()

        for operation in operations:
            fuzz(operation, schemathesis.GenerationMode.POSITIVE)
            fuzz(operation, schemathesis.GenerationMode.NEGATIVE)
        assert statuses and max(statuses) < 500
        assert 422 in statuses  # (a 200 above; 31 exact columns are rare in generated bodies)


def test_the_model_serves_while_its_explainer_is_built_and_explain_waits_for_it(
    logistic: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shap's import and the checks take seconds: predictions do not wait for them, explain
    answers 503 with Retry-After until the explainer exists, then explains."""
    release = threading.Event()
    real_load = explain.load

    def slow_load(bundle: bundle_mod.Bundle) -> tuple[explain.Explainer | None, str]:
        release.wait(30)
        return real_load(bundle)

    monkeypatch.setattr(explain, "load", slow_load)
    app = _app(logistic, explainer_in_background=True)
    frame = _rows(logistic, n=2)
    status, _ = _call(app, "/v2/models/m/infer", _v2(frame, app.schema))
    assert status == 200
    response = app.handle(
        "POST", "/v1/models/m:explain", json.dumps({"instances": _instances(frame)}).encode()
    )
    assert response.status == 503 and ("Retry-After", "2") in response.headers
    metadata = json.loads(app.handle("GET", "/v2/models/m", b"").body)
    assert metadata["parameters"]["explainer"] == {"unavailable": "the explainer is being built"}
    release.set()
    assert app.explainer_built.wait(60)
    status, body = _call(app, "/v1/models/m:explain", {"instances": _instances(frame)})
    assert status == 200 and body["explanations"]["method"] == "linear"
    paths = json.loads(app.handle("GET", "/openapi.json", b"").body)["paths"]
    assert "/v2/models/{name}/explain" in paths


def test_the_demo_model_carries_a_background_and_is_explained(tmp_path: pathlib.Path) -> None:
    """The quickstart's and the benchmarks' model (``serve.demo``) explains like a trained one."""
    app = _app(demo.build(tmp_path / "demo"))
    assert app.explainer is not None and app.explainer.method == "linear"
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
    status, body = _call(app, "/v1/models/m:explain", {"instances": [row]})
    assert status == 200 and set(body["explanations"]["attributions"][0]) == set(row)
