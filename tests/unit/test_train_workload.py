"""The training workload on bundled datasets, checked against scikit-learn computed independently.

Each registry estimator is trained through the real config path (a TrainingJob → the
operator's ``train_config`` → ``mlops_workloads.train``) on a prepared Dataset directory made
by ``_train_data``; the reported metrics must equal those of the same estimator fitted here
directly on the same splits and scored with ``sklearn.metrics``.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import subprocess
import sys
from typing import Any

import _train_data
import numpy as np
import pytest
from sklearn import metrics as skm

from mlops_operator.api import estimators, trainingjob, workload
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime
from mlops_workloads.train import artifacts, run

CLASSIFICATION = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
REGRESSION = ["rmse", "mae", "r2"]

# estimator -> (bundled dataset, tiny params that keep the test fast)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "LogisticRegression": ("iris", {"max_iter": 200, "C": 0.5}),
    "DecisionTreeClassifier": ("iris", {"max_depth": 3}),
    "RandomForestClassifier": ("breast_cancer", {"n_estimators": 5, "max_depth": 4}),
    "ExtraTreesClassifier": ("iris", {"n_estimators": 5}),
    "GradientBoostingClassifier": ("breast_cancer", {"n_estimators": 5, "max_depth": 2}),
    "HistGradientBoostingClassifier": ("iris", {"max_iter": 5}),
    "SVC": ("breast_cancer", {"probability": True, "C": 0.5}),
    "KNeighborsClassifier": ("iris", {"n_neighbors": 3}),
    "GaussianNB": ("wine", {}),
    "MLPClassifier": ("iris", {"hidden_layer_sizes": [8], "max_iter": 60}),
    "XGBClassifier": ("iris", {"n_estimators": 5, "max_depth": 2}),
    "LGBMClassifier": ("breast_cancer", {"n_estimators": 5, "num_leaves": 4}),
    "LinearRegression": ("diabetes", {}),
    "Ridge": ("diabetes", {"alpha": 0.5}),
    "Lasso": ("diabetes", {"alpha": 0.1}),
    "ElasticNet": ("diabetes", {"alpha": 0.1, "l1_ratio": 0.3}),
    "DecisionTreeRegressor": ("diabetes", {"max_depth": 3}),
    "RandomForestRegressor": ("diabetes", {"n_estimators": 5}),
    "ExtraTreesRegressor": ("diabetes", {"n_estimators": 5}),
    "GradientBoostingRegressor": ("diabetes", {"n_estimators": 5}),
    "HistGradientBoostingRegressor": ("diabetes", {"max_iter": 5}),
    "SVR": ("diabetes", {"C": 10.0}),
    "KNeighborsRegressor": ("diabetes", {"n_neighbors": 5}),
    "MLPRegressor": ("diabetes", {"hidden_layer_sizes": [8], "max_iter": 60}),
    "XGBRegressor": ("diabetes", {"n_estimators": 5}),
    "LGBMRegressor": ("diabetes", {"n_estimators": 5}),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("datasets")
    return {
        name: _train_data.make_prepared(root, name) for name in ("iris", "breast_cancer", "diabetes", "wine")
    }


def make_tj(estimator: str, params: dict[str, Any], **spec: Any) -> trainingjob.TrainingJob:
    body = {
        "metadata": {"name": "tj", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {"datasetRef": {"name": "data"}, "model": {"estimator": estimator, "params": params}, **spec},
    }
    return trainingjob.TrainingJob.from_body(body)


def config_for(
    tj: trainingjob.TrainingJob, data_dir: pathlib.Path, out: pathlib.Path
) -> trainingjob.TrainConfig:
    manifest = data_dir / "manifest.json"
    digest = json.loads(manifest.read_text())["digest"] if manifest.exists() else ""
    tj = tj.model_copy(
        update={
            "spec": tj.spec.model_copy(update={"output": trainingjob.Output(storage_uri=f"file://{out}")})
        }
    )
    config = build.train_config(
        tj, dataset_uri=f"file://{data_dir}", dataset_digest=digest, settings=rworkload.WorkloadSettings()
    )
    return _train_data.staged(config, out.with_name(f"{out.name}.staging"))


def independent(estimator: str, params: dict[str, Any], data_dir: pathlib.Path) -> tuple[Any, Any]:
    """The same estimator fitted here directly on the same splits (not via the workload)."""
    entry = estimators.get(estimator)
    module, _, name = entry.import_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    kwargs = dict(params)
    if "random_state" in cls().get_params():
        kwargs["random_state"] = 0
    if "hidden_layer_sizes" in kwargs:
        kwargs["hidden_layer_sizes"] = tuple(kwargs["hidden_layer_sizes"])
    if entry.library == "lightgbm":
        kwargs["verbose"] = -1
    pre = _train_data.load_preprocessor(data_dir)
    import pandas as pd

    train = pd.read_parquet(data_dir / "train.parquet")
    features = [c for c in train.columns if c != "target"]
    model = cls(**kwargs).fit(pre.transform(train[features]), train["target"])
    return model, pre


def expected_metrics(model: Any, pre: Any, data_dir: pathlib.Path, split: str, task: str) -> dict[str, float]:
    import pandas as pd

    df = pd.read_parquet(data_dir / f"{split}.parquet")
    x = pre.transform(df[[c for c in df.columns if c != "target"]])
    y = df["target"].to_numpy()
    pred = model.predict(x)
    if task == "regression":
        return {
            "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
            "mae": skm.mean_absolute_error(y, pred),
            "r2": skm.r2_score(y, pred),
        }
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    if len(classes) == 2:
        avg: dict[str, Any] = {"average": "binary", "pos_label": classes[1]}
        auc = skm.roc_auc_score(y, proba[:, 1])
    else:
        avg = {"average": "macro"}
        auc = skm.roc_auc_score(y, proba, multi_class="ovr")
    return {
        "accuracy": float(np.mean(pred == y)),
        "precision": skm.precision_score(y, pred, zero_division=0, **avg),
        "recall": skm.recall_score(y, pred, zero_division=0, **avg),
        "f1": skm.f1_score(y, pred, zero_division=0, **avg),
        "roc_auc": auc,
        "log_loss": skm.log_loss(y, proba, labels=classes),
    }


def test_every_registry_estimator_has_a_case() -> None:
    # The PyTorch networks have their own cases (tests/unit/test_nn_mlp.py).
    assert set(CASES) == {n for n, e in estimators.REGISTRY.items() if e.library != "pytorch"}


@pytest.mark.parametrize("estimator", sorted(CASES))
def test_train_matches_independent_sklearn(
    estimator: str, prepared: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    entry = estimators.get(estimator)
    if entry.library != "scikit-learn":
        importlib.import_module(entry.library)  # a dependency: missing means broken, not skipped
    dataset, params = CASES[estimator]
    data_dir = prepared[dataset]
    metrics = CLASSIFICATION if entry.task == "classification" else REGRESSION
    tj = make_tj(estimator, params, metrics=metrics)
    assert trainingjob.validate_spec(tj.spec) == []
    config = config_for(tj, data_dir, tmp_path / "model")
    result = run.train(config)

    model, pre = independent(estimator, params, data_dir)
    for split in ("validation", "test"):
        want = expected_metrics(model, pre, data_dir, split, entry.task)
        got = result["metrics"][split]
        assert set(got) == set(metrics)
        for name in metrics:
            assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), (split, name)
    assert result["objectiveMetric"] == metrics[0]
    assert result["objectiveValue"] == result["metrics"]["validation"][metrics[0]]
    assert len(runtime.compact({"ok": True, **result}).encode()) <= workload.RESULT_LIMIT

    # The saved model directory is self-contained and the Pipeline predicts like the model above.
    out = _train_data.model_dir(result)
    assert out.parent == tmp_path / "model" and [p.name for p in out.parent.iterdir()] == [out.name]
    assert {p.name for p in out.iterdir()} == {
        "model.skops",
        "model_card.json",
        "schema.json",
        "baseline.json",
    }
    assert (out / "schema.json").read_bytes() == (data_dir / "schema.json").read_bytes()
    saved = artifacts.load_skops(out / "model.skops")
    import pandas as pd

    test = pd.read_parquet(data_dir / "test.parquet")
    x_test = test.drop(columns=["target"])
    np.testing.assert_array_equal(saved.predict(x_test), model.predict(pre.transform(x_test)))
    card = json.loads((out / "model_card.json").read_text())
    assert card["estimator"] == estimator
    assert card["dataset"]["digest"] == json.loads((data_dir / "manifest.json").read_text())["digest"]
    assert card["modelSizeBytes"] == (out / "model.skops").stat().st_size == result["modelSizeBytes"]
    assert card["libraries"]["scikit-learn"]
    assert card["metrics"]["test"] == result["metrics"]["test"]
    assert card["hardware"]["device"] == "cpu"


def test_cross_validation_matches_sklearn(prepared: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    import pandas as pd
    from sklearn import base, linear_model, model_selection, pipeline

    data_dir = prepared["iris"]
    tj = make_tj(
        "LogisticRegression", {"max_iter": 200}, metrics=["accuracy", "f1"], crossValidation={"folds": 4}
    )
    result = run.train(config_for(tj, data_dir, tmp_path / "m"))
    train = pd.read_parquet(data_dir / "train.parquet")
    pre = _train_data.load_preprocessor(data_dir)
    pipe = pipeline.Pipeline(
        [
            ("preprocess", base.clone(pre)),
            ("model", linear_model.LogisticRegression(max_iter=200, random_state=0)),
        ]
    )
    cv = model_selection.StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    scores = model_selection.cross_val_score(
        pipe, train.drop(columns=["target"]), train["target"], cv=cv, scoring="accuracy"
    )
    assert result["metrics"]["cv"]["accuracy"]["mean"] == pytest.approx(scores.mean(), rel=1e-12)
    assert result["metrics"]["cv"]["accuracy"]["std"] == pytest.approx(scores.std(), rel=1e-9)
    assert "f1" in result["metrics"]["cv"]


def test_objective_falls_back_to_cv_without_validation_split(tmp_path: pathlib.Path) -> None:
    data_dir = _train_data.make_prepared(tmp_path / "d", "iris", fractions=(0.8, 0.0, 0.2))
    tj = make_tj(
        "KNeighborsClassifier", {"n_neighbors": 5}, metrics=["accuracy"], crossValidation={"folds": 3}
    )
    result = run.train(config_for(tj, data_dir, tmp_path / "m"))
    assert "validation" not in result["metrics"]
    assert result["objectiveValue"] == result["metrics"]["cv"]["accuracy"]["mean"]


def test_categorical_features_and_string_labels_round_trip(tmp_path: pathlib.Path) -> None:
    data_dir = _train_data.make_prepared(tmp_path / "d", "iris", string_labels=True, categorical=True)
    tj = make_tj(
        "RandomForestClassifier",
        {"n_estimators": 5, "class_weight": {"setosa": 2.0, "versicolor": 1.0, "virginica": 1.0}},
    )
    result = run.train(config_for(tj, data_dir, tmp_path / "m"))
    saved = artifacts.load_skops(_train_data.model_dir(result) / "model.skops")
    import pandas as pd

    test = pd.read_parquet(data_dir / "test.parquet")
    pred = saved.predict(test.drop(columns=["target"]))
    assert set(pred) <= {"setosa", "versicolor", "virginica"}
    assert result["metrics"]["test"]["accuracy"] == pytest.approx(float(np.mean(pred == test["target"])))
    assert saved.named_steps["model"].class_weight == {"setosa": 2.0, "versicolor": 1.0, "virginica": 1.0}


def test_xgboost_with_string_labels_is_label_encoded(tmp_path: pathlib.Path) -> None:
    importlib.import_module("xgboost")  # a dependency: missing means broken, not skipped
    data_dir = _train_data.make_prepared(tmp_path / "d", "iris", string_labels=True)
    tj = make_tj("XGBClassifier", {"n_estimators": 5}, metrics=["accuracy"])
    result = run.train(config_for(tj, data_dir, tmp_path / "m"))
    card = json.loads((_train_data.model_dir(result) / "model_card.json").read_text())
    assert card["labelEncoding"] == ["setosa", "versicolor", "virginica"]
    saved = artifacts.load_skops(_train_data.model_dir(result) / "model.skops")
    import pandas as pd

    test = pd.read_parquet(data_dir / "test.parquet")
    decoded = np.array(card["labelEncoding"])[saved.predict(test.drop(columns=["target"]))]
    assert result["metrics"]["test"]["accuracy"] == pytest.approx(float(np.mean(decoded == test["target"])))


def test_task_mismatch_and_missing_dataset_fail_with_reasons(
    prepared: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    tj = make_tj("Ridge", {})
    with pytest.raises(runtime.WorkloadError) as err:
        run.train(config_for(tj, prepared["iris"], tmp_path / "m"))
    assert err.value.reason == "TaskMismatch"
    with pytest.raises(runtime.WorkloadError) as err:
        run.train(config_for(tj, tmp_path / "nowhere", tmp_path / "m"))
    assert err.value.reason == "DatasetNotFound"


def test_fit_time_parameter_conflict_is_reported_as_invalid_params(
    prepared: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    # Each value is valid on its own (the operator accepts it); lbfgs refuses l1 only at fit time.
    tj = make_tj("LogisticRegression", {"penalty": "l1", "solver": "lbfgs"}, metrics=["accuracy"])
    assert trainingjob.validate_spec(tj.spec) == []
    with pytest.raises(runtime.WorkloadError) as err:
        run.train(config_for(tj, prepared["iris"], tmp_path / "m"))
    assert err.value.reason == "InvalidParams"
    assert "l1" in err.value.message


def _evil(x: Any) -> Any:
    return x


def test_untrusted_preprocessor_is_refused(tmp_path: pathlib.Path) -> None:
    from sklearn import preprocessing

    data_dir = _train_data.make_prepared(
        tmp_path / "d", "iris", preprocessor=preprocessing.FunctionTransformer(_evil)
    )
    tj = make_tj("LogisticRegression", {})
    with pytest.raises(runtime.WorkloadError) as err:
        run.train(config_for(tj, data_dir, tmp_path / "m"))
    assert err.value.reason == "UntrustedModel"
    assert "_evil" in err.value.message


def test_module_entrypoint_writes_the_termination_message(
    prepared: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    tj = make_tj("Ridge", {"alpha": 1.0})
    config = config_for(tj, prepared["diabetes"], tmp_path / "m")
    (tmp_path / "config.json").write_text(json.dumps(config.to_api()))
    env = {
        "MLOPS_CONFIG_FILE": str(tmp_path / "config.json"),
        "MLOPS_RESULT_PATH": str(tmp_path / "result"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mlops_workloads.train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    message = (tmp_path / "result").read_text()
    assert len(message.encode()) <= 4096
    result = rjobs.parse_result(message)
    assert result is not None and result["ok"] is True
    assert result["modelUri"] == f"file://{tmp_path / 'm'}/{result['modelVersion']}"
    assert (tmp_path / "m" / result["modelVersion"] / "model_card.json").is_file()
    assert set(result["metrics"]["test"]) == {"rmse", "mae", "r2"}

    # A failure is reported the same way, with the workload's reason.
    bad = config.model_copy(update={"dataset_uri": f"file://{tmp_path / 'missing'}"})
    (tmp_path / "config.json").write_text(json.dumps(bad.to_api()))
    proc = subprocess.run(
        [sys.executable, "-m", "mlops_workloads.train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == workload.PERMANENT_EXIT_CODE  # podFailurePolicy: no retry
    failure = rjobs.parse_result((tmp_path / "result").read_text())
    assert failure == {"ok": False, "reason": "DatasetNotFound", "error": failure["error"]}
