"""The evaluation workload (``python -m mlops_workloads.evaluate``) on real models and real data.

Dataset versions are made by ``_train_data`` (bundled sklearn datasets), the models by the real
training workload (through the operator's ``train_config``), the reviewed rows by real capture
files (``capture.arrow_schema``) and real label files (``labels.write``). Every score is checked
against scikit-learn computed here on the same rows from the model file loaded independently.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import _train_data
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
from sklearn import metrics as skm

from mlops_operator.api import retrain, trainingjob, workload
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import capture, labels, runtime, storage
from mlops_workloads.evaluate import __main__ as entry
from mlops_workloads.evaluate import reviewed, run
from mlops_workloads.train import run as train_run

T0 = datetime.datetime(2026, 3, 1, 9, 0, tzinfo=datetime.UTC)
REPO = pathlib.Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Helpers: Dataset versions, trained models, captured and labelled rows
# ---------------------------------------------------------------------------------------------


def train(data_dir: pathlib.Path, out: pathlib.Path, estimator: str, params: dict[str, Any]) -> pathlib.Path:
    """A model version trained by the training workload on ``data_dir``; its directory."""
    task = json.loads((data_dir / "schema.json").read_text())["task"]
    metrics = ["accuracy"] if task == "classification" else ["rmse"]
    tj = trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "tj", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {
                "datasetRef": {"name": "data"},
                "model": {"estimator": estimator, "params": params},
                "metrics": metrics,
                "output": {"storageUri": f"file://{out}"},
            },
        }
    )
    digest = json.loads((data_dir / "manifest.json").read_text())["digest"]
    config = build.train_config(
        tj, dataset_uri=f"file://{data_dir}", dataset_digest=digest, settings=rworkload.WorkloadSettings()
    )
    result = train_run.train(_train_data.staged(config, out.with_name(f"{out.name}.staging")))
    return _train_data.model_dir(result)


def pipeline_of(model_dir: pathlib.Path) -> Any:
    """The model's Pipeline, loaded here with skops directly (not through the workload's loader)."""
    file = model_dir / "model.skops"
    return sio.load(file, trusted=sio.get_untrusted_types(file=str(file)))


def six(value: float) -> float:
    return float(f"{value:.6g}")


def config(
    data_dir: pathlib.Path,
    champion: pathlib.Path,
    challenger: pathlib.Path,
    *,
    tmp_path: pathlib.Path,
    reviewed_uri: str | None = None,
    metric: str | None = None,
) -> retrain.EvaluateConfig:
    return retrain.EvaluateConfig(
        dataset_uri=f"file://{data_dir}",
        champion=retrain.EvaluatedModel(uri=f"file://{champion}", version=3),
        challenger=retrain.EvaluatedModel(uri=f"file://{challenger}", version=4),
        reviewed_uri=reviewed_uri,
        metric=metric,
        staging_dir=str(tmp_path / "staging"),
    )


def write_capture(
    root: storage.Store,
    frame: pd.DataFrame,
    *,
    features: Sequence[str],
    name: str,
    minute: float = 0,
    classes: Sequence[Any] = (0, 1, 2),
) -> list[tuple[str, int]]:
    """``frame``'s rows as one capture file of the model server (one request per row, float
    features, int64 predictions); the (request id, row) keys in frame order."""
    schema = capture.arrow_schema([(f, "float") for f in features], task="classification", classes=classes)
    n = len(frame)
    ids = [f"{name}-{i}" for i in range(n)]
    data: dict[str, list[Any]] = {
        "request_id": ids,
        "row": [0] * n,
        "time": [T0 + datetime.timedelta(minutes=minute, seconds=i) for i in range(n)],
        "model_name": ["iris"] * n,
        "model_version": ["3"] * n,
        "model_digest": ["sha256:ab"] * n,
        "pod": ["iris-predictor-0"] * n,
        "reason": [capture.REASON_SAMPLE] * n,
        "low_confidence": [False] * n,
        **{
            c.column: frame[c.name].astype(float).tolist()
            for c in capture.feature_columns([(f, "float") for f in features])
        },
        "prediction": [classes[0]] * n,
        "confidence": [0.9] * n,
        "probabilities": [[0.9, 0.05, 0.05]] * n,
        "classes": [[str(c) for c in classes]] * n,
    }
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(data, schema=schema), sink)
    root.write_bytes(capture.file_path(T0, f"{name}{capture.SUFFIX}"), sink.getvalue().to_pybytes())
    return [(i, 0) for i in ids]


def save_labels(
    root: storage.Store, decisions: Sequence[tuple[tuple[str, int], str, str | None]], *, minute: float
) -> None:
    when = T0 + datetime.timedelta(minutes=minute)
    batch = [
        labels.Label(key[0], key[1], action, "ana", when, label=value, prediction="0")
        for key, action, value in decisions
    ]
    labels.write(root, batch, now=when)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("datasets")
    return {
        name: _train_data.make_prepared(root, name) for name in ("iris", "breast_cancer", "diabetes", "wine")
    }


@pytest.fixture(scope="module")
def models(
    data: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("models")
    plan = {
        "cancer-stump": ("breast_cancer", "DecisionTreeClassifier", {"max_depth": 1}),
        "cancer-lr": ("breast_cancer", "LogisticRegression", {"max_iter": 500}),
        "iris-lr": ("iris", "LogisticRegression", {"max_iter": 300}),
        "iris-stump": ("iris", "DecisionTreeClassifier", {"max_depth": 1}),
        "diabetes-lr": ("diabetes", "LinearRegression", {}),
        "diabetes-stump": ("diabetes", "DecisionTreeRegressor", {"max_depth": 1}),
        "wine-nb": ("wine", "GaussianNB", {}),
    }
    return {key: train(data[ds], root / key, est, params) for key, (ds, est, params) in plan.items()}


def split_xy(data_dir: pathlib.Path, split: str = "test") -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_parquet(data_dir / f"{split}.parquet")
    return frame.drop(columns=["target"]), frame["target"]


# ---------------------------------------------------------------------------------------------
# The test split
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["accuracy", "log_loss", "f1"])
def test_a_better_challenger_scores_better_on_the_test_split(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path, metric: str
) -> None:
    stump, lr = models["cancer-stump"], models["cancer-lr"]
    result = run.evaluate(config(data["breast_cancer"], stump, lr, tmp_path=tmp_path, metric=metric))
    x, y = split_xy(data["breast_cancer"])

    def expected(model_dir: pathlib.Path) -> float:
        pipeline = pipeline_of(model_dir)
        if metric == "accuracy":
            return six(skm.accuracy_score(y, pipeline.predict(x)))
        if metric == "f1":
            return six(skm.f1_score(y, pipeline.predict(x), pos_label=1))
        return six(skm.log_loss(y, pipeline.predict_proba(x), labels=[0, 1]))

    assert result["metric"] == metric and result["task"] == "classification"
    assert result["test"] == {"rows": len(y), "champion": expected(stump), "challenger": expected(lr)}
    assert result["overall"] == result["test"] and result["reviewed"] is None
    assert (result["championVersion"], result["challengerVersion"]) == (3, 4)
    gain = result["test"]["challenger"] - result["test"]["champion"]
    assert (gain < 0) if metric == "log_loss" else (gain > 0)
    # Swapped: the worse challenger scores worse.
    swapped = run.evaluate(config(data["breast_cancer"], lr, stump, tmp_path=tmp_path, metric=metric))
    assert swapped["test"] == {"rows": len(y), "champion": expected(lr), "challenger": expected(stump)}
    assert result["datasetDigest"].startswith("sha256:")
    assert len(runtime.compact({"ok": True, **result})) < workload.RESULT_LIMIT


def test_regression_is_scored_by_rmse(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    lr, stump = models["diabetes-lr"], models["diabetes-stump"]
    result = run.evaluate(config(data["diabetes"], stump, lr, tmp_path=tmp_path))
    x, y = split_xy(data["diabetes"])
    want = {m: six(skm.root_mean_squared_error(y, pipeline_of(m).predict(x))) for m in (lr, stump)}
    assert result["metric"] == "rmse" and result["task"] == "regression"
    assert result["test"] == {"rows": len(y), "champion": want[stump], "challenger": want[lr]}
    assert result["test"]["challenger"] < result["test"]["champion"]  # lower is better
    mae = run.evaluate(config(data["diabetes"], stump, lr, tmp_path=tmp_path, metric="mae"))
    assert mae["test"]["challenger"] == six(skm.mean_absolute_error(y, pipeline_of(lr).predict(x)))


def test_an_xgboost_model_on_string_labels_is_scored_by_its_labels(tmp_path: pathlib.Path) -> None:
    """XGBoost is fitted on 0..n-1; its card's labelEncoding maps its answers back to the labels."""
    data_dir = _train_data.make_prepared(tmp_path / "data", "iris", string_labels=True)
    xgb = train(data_dir, tmp_path / "xgb", "XGBClassifier", {"n_estimators": 5, "max_depth": 2})
    lr = train(data_dir, tmp_path / "lr", "LogisticRegression", {"max_iter": 300})
    card = json.loads((xgb / "model_card.json").read_text())
    assert card["labelEncoding"] == ["setosa", "versicolor", "virginica"]
    result = run.evaluate(config(data_dir, lr, xgb, tmp_path=tmp_path))
    x, y = split_xy(data_dir)
    decoded = np.asarray(card["labelEncoding"])[pipeline_of(xgb).predict_proba(x).argmax(axis=1)]
    assert result["test"]["challenger"] == six(skm.accuracy_score(y, decoded))
    assert result["test"]["champion"] == six(skm.accuracy_score(y, pipeline_of(lr).predict(x)))
    assert result["test"]["challenger"] > 0.8
    # The model server answers the labels too (it used to answer XGBoost's indices 0, 1, 2).
    from mlops_workloads.serve import app as app_mod
    from mlops_workloads.serve import bundle as bundle_mod

    loaded = bundle_mod.load(xgb)
    assert loaded.classes == ("setosa", "versicolor", "virginica")
    served = app_mod.App(loaded, model_name="iris")
    rows = [{k: float(v) for k, v in row.items()} for row in x.iloc[:5].to_dict("records")]
    response = served.handle("POST", "/v1/models/iris:predict", json.dumps({"instances": rows}).encode())
    answer = json.loads(response.body)
    assert response.status == 200, answer
    assert [p["prediction"] if isinstance(p, dict) else p for p in answer["predictions"]] == list(decoded[:5])


# ---------------------------------------------------------------------------------------------
# Reviewed rows
# ---------------------------------------------------------------------------------------------


def test_reviewed_rows_are_scored_and_rows_the_challenger_learnt_from_are_excluded(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    data_dir = data["iris"]
    features = [c for c in pd.read_parquet(data_dir / "train.parquet").columns if c != "target"]
    train_split = pd.read_parquet(data_dir / "train.parquet")
    validation = pd.read_parquet(data_dir / "validation.parquet")
    root = storage.open_store(f"file://{tmp_path}/capture/ml/iris")
    # 5 train rows and 2 validation rows with their own labels: excluded.
    learnt = pd.concat([train_split.iloc[:5], validation.iloc[:2]], ignore_index=True)
    learnt_keys = write_capture(root, learnt, features=features, name="learnt")
    # A train row relabelled (corrected to another class): not the row it learnt, so held out.
    seen = pd.concat([train_split, validation])[features].round(6).apply(tuple, axis=1)
    unique = next(i for i in range(10, len(train_split)) if (seen == seen.iloc[i]).sum() == 1)
    relabelled = train_split.iloc[[unique]].reset_index(drop=True)
    other = (int(relabelled["target"][0]) + 1) % 3
    relabelled_keys = write_capture(root, relabelled, features=features, name="relabelled", minute=1)
    # 6 rows no split has (shifted), two of them corrected; one more skipped and one not reviewed.
    fresh = train_split.iloc[20:28].reset_index(drop=True).copy()
    fresh[features[0]] = fresh[features[0]] + 0.05
    fresh_keys = write_capture(root, fresh, features=features, name="fresh", minute=2)
    truth = fresh["target"].astype(int).tolist()
    truth[0] = (truth[0] + 1) % 3
    truth[1] = (truth[1] + 2) % 3
    # 2 rows of the test split (a Dataset merging its feedback): reviewed, but counted once overall.
    tested = pd.read_parquet(data_dir / "test.parquet").iloc[:2].reset_index(drop=True)
    tested_keys = write_capture(root, tested, features=features, name="tested", minute=3)
    save_labels(
        root,
        [(k, "confirmed", str(int(v))) for k, v in zip(tested_keys, tested["target"], strict=True)]
        + [(k, "confirmed", str(int(v))) for k, v in zip(learnt_keys, learnt["target"], strict=True)]
        + [(relabelled_keys[0], "corrected", str(other))]
        + [(fresh_keys[0], "confirmed", "0"), (fresh_keys[6], "confirmed", "1")],
        minute=30,
    )
    save_labels(  # later decisions win: fresh 0 and 1 corrected, 2..5 confirmed, 6 skipped, 7 none
        root,
        [(fresh_keys[0], "corrected", str(truth[0])), (fresh_keys[1], "corrected", str(truth[1]))]
        + [(fresh_keys[i], "confirmed", str(truth[i])) for i in range(2, 6)]
        + [(fresh_keys[6], "skipped", None)],
        minute=40,
    )
    champion, challenger = models["iris-stump"], models["iris-lr"]
    result = run.evaluate(config(data_dir, champion, challenger, tmp_path=tmp_path, reviewed_uri=root.uri))

    held = pd.concat([relabelled[features], fresh.iloc[:6][features]], ignore_index=True)
    held_y = np.asarray([other, *truth[:6]])
    reviewed_x = pd.concat([held, tested[features]], ignore_index=True)  # (capture order aside)
    reviewed_y = np.asarray([*held_y, *tested["target"].astype(int)])
    x_test, y_test = split_xy(data_dir)
    x_test = x_test[features]

    def scores(model_dir: pathlib.Path) -> tuple[float, float, float]:
        pipeline = pipeline_of(model_dir)
        on_held = pipeline.predict(held)
        on_test = pipeline.predict(x_test)
        both = skm.accuracy_score(np.concatenate([y_test, held_y]), np.concatenate([on_test, on_held]))
        return (
            six(skm.accuracy_score(y_test, on_test)),
            six(skm.accuracy_score(reviewed_y, pipeline.predict(reviewed_x))),
            six(both),
        )

    (c_test, c_rev, c_all), (n_test, n_rev, n_all) = scores(champion), scores(challenger)
    assert result["reviewed"] == {
        "rows": 9,
        "excluded": 7,
        "inTest": 2,
        "champion": c_rev,
        "challenger": n_rev,
    }
    assert result["test"] == {"rows": len(y_test), "champion": c_test, "challenger": n_test}
    assert result["overall"] == {"rows": len(y_test) + 7, "champion": c_all, "challenger": n_all}
    assert result["warnings"] == []


@pytest.mark.parametrize("labelled", [False, True])
def test_no_capture_or_no_label_means_no_reviewed_rows_and_a_warning(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path, labelled: bool
) -> None:
    root = storage.open_store(f"file://{tmp_path}/capture/ml/iris")
    if labelled:  # captured, but the only decision is a skip
        train_split = pd.read_parquet(data["iris"] / "train.parquet")
        features = [c for c in train_split.columns if c != "target"]
        keys = write_capture(root, train_split.iloc[:3], features=features, name="rows")
        save_labels(root, [(keys[0], "skipped", None)], minute=10)
    result = run.evaluate(
        config(
            data["iris"], models["iris-stump"], models["iris-lr"], tmp_path=tmp_path, reviewed_uri=root.uri
        )
    )
    assert result["reviewed"] == {"rows": 0, "excluded": 0, "inTest": 0, "champion": None, "challenger": None}
    assert result["overall"] == result["test"] and result["test"]["rows"] > 0
    assert any("no captured row" in w and "confirmed or corrected" in w for w in result["warnings"])


def test_reviewed_rows_without_the_dataset_features_are_skipped_with_a_warning(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    train_split = pd.read_parquet(data["iris"] / "train.parquet")
    features = [c for c in train_split.columns if c != "target"]
    root = storage.open_store(f"file://{tmp_path}/capture/ml/iris")
    keys = write_capture(root, train_split.iloc[:4], features=features[:3], name="old-model")
    save_labels(root, [(k, "confirmed", "1") for k in keys], minute=5)
    result = run.evaluate(
        config(
            data["iris"], models["iris-stump"], models["iris-lr"], tmp_path=tmp_path, reviewed_uri=root.uri
        )
    )
    assert result["reviewed"]["rows"] == 0 and result["reviewed"]["champion"] is None
    assert any(features[3] in w and "4 reviewed rows skipped" in w for w in result["warnings"])


def test_row_keys_compare_values_not_types() -> None:
    """1 and 1.0, an Int64 and an int64, None and NaN, -0.0 and 0.0 are the same; "1" the text is not 1."""
    a = pd.DataFrame({"x": [1, 2, 0, 4], "c": ["u", None, "w", "v"], "t": [0, 1, 2, 1]})
    b = pd.DataFrame(
        {
            "x": pd.array([1.0, 2.0, -0.0, 4.5]),
            "c": pd.array(["u", np.nan, "w", "v"], dtype=object),
            "t": pd.array([0, 1, 2, 1], dtype="Int64"),
        }
    )
    cols = ["x", "c", "t"]
    ka, kb = reviewed.row_keys(a, cols, like=b), reviewed.row_keys(b, cols, like=a)
    assert ka.dtype == np.uint64 and list(ka[:3] == kb[:3]) == [True, True, True] and ka[3] != kb[3]
    text = pd.DataFrame({"x": ["1", "2", "0", "4"], "c": a["c"], "t": a["t"]})
    assert not np.isin(reviewed.row_keys(text, cols, like=a), reviewed.row_keys(a, cols, like=text)).any()
    float32 = a.assign(x=np.asarray([0.1, 0.2, 0.3, 0.4], dtype=np.float32))
    float64 = a.assign(x=[0.1, 0.2, 0.3, 0.4])
    same = reviewed.row_keys(float64, cols, like=float32) == reviewed.row_keys(float32, cols, like=float64)
    assert same.all()


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------


def failure(cfg: retrain.EvaluateConfig) -> runtime.WorkloadError:
    with pytest.raises(runtime.WorkloadError) as err:
        run.evaluate(cfg)
    return err.value


def test_a_model_that_reads_other_features_fails_the_evaluation(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    err = failure(config(data["iris"], models["iris-lr"], models["wine-nb"], tmp_path=tmp_path))
    assert err.reason == "EvaluationFailed" and err.message.startswith("challenger")


def test_a_wrong_task_or_metric_is_refused(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    err = failure(config(data["iris"], models["diabetes-lr"], models["iris-lr"], tmp_path=tmp_path))
    assert err.reason == "TaskMismatch" and "champion" in err.message
    err = failure(
        config(data["iris"], models["iris-stump"], models["iris-lr"], tmp_path=tmp_path, metric="rmse")
    )
    assert err.reason == "InvalidConfig" and "rmse" in err.message


def test_nothing_to_evaluate_without_test_rows_or_reviewed_rows(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    copy = tmp_path / "iris-no-test"
    copy.mkdir()
    for file in data["iris"].iterdir():
        if file.name != "test.parquet":
            (copy / file.name).write_bytes(file.read_bytes())
    cfg = config(
        copy,
        models["iris-stump"],
        models["iris-lr"],
        tmp_path=tmp_path,
        reviewed_uri=f"file://{tmp_path}/capture/none",
    )
    err = failure(cfg)
    assert err.reason == "NothingToEvaluate" and "no test rows" in err.message


def run_main(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, cfg: retrain.EvaluateConfig
) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "result.json"
    monkeypatch.delenv(workload.CONFIG_FILE_ENV, raising=False)
    monkeypatch.setenv(workload.CONFIG_ENV, cfg.model_dump_json(by_alias=True))
    monkeypatch.setenv(workload.RESULT_PATH_ENV, str(out))
    code = entry.main()
    return code, json.loads(out.read_text())


def test_a_bad_model_directory_is_a_permanent_failure_with_a_reason(
    data: dict[str, pathlib.Path],
    models: dict[str, pathlib.Path],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, result = run_main(
        monkeypatch, tmp_path, config(data["iris"], empty, models["iris-lr"], tmp_path=tmp_path)
    )
    assert code == workload.PERMANENT_EXIT_CODE
    assert result["ok"] is False and result["reason"] == "ModelNotFound"
    assert result["error"].startswith(f"champion (file://{empty})")
    missing = tmp_path / "no-such-dataset"
    code, result = run_main(
        monkeypatch, tmp_path, config(missing, models["iris-lr"], models["iris-lr"], tmp_path=tmp_path)
    )
    assert (code, result["ok"], result["reason"]) == (workload.PERMANENT_EXIT_CODE, False, "DatasetNotFound")


def test_the_entrypoint_runs_as_a_module(
    data: dict[str, pathlib.Path], models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    cfg = config(
        data["breast_cancer"],
        models["cancer-stump"],
        models["cancer-lr"],
        tmp_path=tmp_path,
        reviewed_uri=f"file://{tmp_path}/capture/ml/cancer",
    )
    out = tmp_path / "termination-log"
    env = {
        **os.environ,
        workload.CONFIG_ENV: cfg.model_dump_json(by_alias=True),
        workload.RESULT_PATH_ENV: str(out),
    }
    env.pop(workload.CONFIG_FILE_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-m", "mlops_workloads.evaluate"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert len(text.encode()) < workload.RESULT_LIMIT
    result = json.loads(text)
    assert result["ok"] is True and result["metric"] == "accuracy"
    assert set(result) == {
        "ok",
        "metric",
        "task",
        "datasetDigest",
        "test",
        "reviewed",
        "overall",
        "championVersion",
        "challengerVersion",
        "warnings",
    }
    assert result["reviewed"]["rows"] == 0 and result["overall"]["rows"] == result["test"]["rows"] > 0
    assert result["test"]["challenger"] > result["test"]["champion"]
    assert all(math.isfinite(result[s][r]) for s in ("test", "overall") for r in ("champion", "challenger"))
    assert "test rows" in proc.stderr  # logged what it read
