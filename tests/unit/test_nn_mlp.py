"""The built-in PyTorch MLP: the network, its training loop, and its place among the estimators.

The estimators on their own (shape, reproducibility, early stopping, sparse input, the
regression target's scale, labels), then through the training workload like any registry
estimator (regression with ONNX serving, string labels, cross-validation, parameters from
the registry), each on small data so the file runs in seconds.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import _train_data
import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn import base, datasets, model_selection, preprocessing

from mlops_operator.api import estimators, trainingjob
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads.nn import TorchMLPClassifier, TorchMLPRegressor, mlp
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.train import artifacts, run
from mlops_workloads.train import estimator as est_mod


@pytest.fixture(scope="module")
def cancer() -> dict[str, Any]:
    x, y = datasets.load_breast_cancer(return_X_y=True)
    x_train, x_val, y_train, y_val = model_selection.train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    scaler = preprocessing.StandardScaler().fit(x_train)
    return {"x": scaler.transform(x_train), "y": y_train, "xv": scaler.transform(x_val), "yv": y_val}


def config_for(
    data_dir: pathlib.Path, out: pathlib.Path, estimator: str, params: dict[str, Any], **spec: Any
) -> trainingjob.TrainConfig:
    tj = trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "nn", "namespace": "ns"},
            "spec": {
                "datasetRef": {"name": "d"},
                "model": {"estimator": estimator, "params": params},
                "output": {"storageUri": f"file://{out}"},
                **spec,
            },
        }
    )
    assert trainingjob.validate_spec(tj.spec) == []
    digest = json.loads((data_dir / "manifest.json").read_text())["digest"]
    config = build.train_config(
        tj, dataset_uri=f"file://{data_dir}", dataset_digest=digest, settings=rworkload.WorkloadSettings()
    )
    return _train_data.staged(config, out.with_name(f"{out.name}.staging"))


# -- the estimators ------------------------------------------------------------------------------


def test_network_layout() -> None:
    net = mlp.network(5, 3, hidden_layers=2, hidden_units=7, dropout=0.2)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert net[0].in_features == 5 and net[-1].out_features == 3 and net[2].p == 0.2


def test_registry_names_these_classes_with_their_defaults() -> None:
    for name, cls in (("TorchMLPClassifier", TorchMLPClassifier), ("TorchMLPRegressor", TorchMLPRegressor)):
        entry = estimators.get(name)
        assert entry.library == "pytorch" and entry.distributed and entry.gpu_capable
        assert entry.import_path == f"mlops_workloads.nn.{name}"
        params = cls().get_params()
        for pname, param in entry.params.items():
            assert params[pname] == param["default"], pname


def test_build_from_a_config_seeds_and_selects_the_gpu(tmp_path: pathlib.Path) -> None:
    data_dir = _train_data.make_prepared(tmp_path / "d", "iris")
    cfg = config_for(data_dir, tmp_path / "m", "TorchMLPClassifier", {"hidden_units": 16, "dropout": 0.0})
    model = est_mod.build(cfg)
    assert isinstance(model, TorchMLPClassifier)
    assert model.get_params()["hidden_units"] == 16 and model.random_state == cfg.seed
    assert model.device == "cpu"
    gpu = config_for(data_dir, tmp_path / "m", "TorchMLPClassifier", {}, resources={"gpu": 1})
    assert est_mod.build(gpu).device == "cuda"  # told; the run checks what it got (test_train_device)


def test_fit_is_reproducible_and_seeded(cancer: dict[str, Any]) -> None:
    def fit(seed: int) -> np.ndarray:
        model = TorchMLPClassifier(hidden_units=16, epochs=5, random_state=seed)
        model.fit(cancer["x"], cancer["y"], eval_set=(cancer["xv"], cancer["yv"]))
        proba: np.ndarray = model.predict_proba(cancer["xv"])
        return proba

    first = fit(0)
    np.testing.assert_array_equal(first, fit(0))
    assert not np.array_equal(first, fit(1))
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_early_stopping_keeps_the_best_epoch(cancer: dict[str, Any]) -> None:
    model = TorchMLPClassifier(hidden_units=32, epochs=300, patience=4, random_state=0, learning_rate=0.01)
    model.fit(cancer["x"], cancer["y"], eval_set=(cancer["xv"], cancer["yv"]))
    assert model.epochs_trained_ < 300  # stopped early
    assert model.epochs_trained_ == model.best_epoch_ + 4
    losses = [h["validation"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmin(losses)) + 1
    # The kept weights are the best epoch's: their validation loss is the best one seen.
    proba = model.predict_proba(cancer["xv"])
    loss = -np.mean(np.log(proba[np.arange(len(proba)), cancer["yv"]]))
    assert loss == pytest.approx(min(losses), rel=1e-4)
    assert float(np.mean(model.predict(cancer["xv"]) == cancer["yv"])) >= 0.95


def test_patience_zero_and_no_validation_train_every_epoch(cancer: dict[str, Any]) -> None:
    model = TorchMLPClassifier(hidden_units=8, epochs=7, patience=0, random_state=0)
    model.fit(cancer["x"], cancer["y"], eval_set=(cancer["xv"], cancer["yv"]))
    assert model.epochs_trained_ == 7 and 1 <= model.best_epoch_ <= 7
    alone = TorchMLPClassifier(hidden_units=8, epochs=6, random_state=0).fit(cancer["x"], cancer["y"])
    assert alone.epochs_trained_ == alone.best_epoch_ == 6
    assert all(h["validation"] is None for h in alone.history_)


def test_history_in_the_card_is_bounded() -> None:
    history = [{"epoch": i, "train": 1.0 / i, "validation": 1.0 / i} for i in range(1, 1001)]
    thinned = mlp._thin(history, best_epoch=777)
    assert len(thinned) <= mlp.HISTORY_LIMIT
    epochs = [h["epoch"] for h in thinned]
    assert epochs[0] == 1 and epochs[-1] == 1000 and 777 in epochs and epochs == sorted(epochs)


def test_sparse_input_is_densified(cancer: dict[str, Any]) -> None:
    dense = TorchMLPClassifier(hidden_units=8, epochs=3, random_state=0).fit(cancer["x"], cancer["y"])
    sparse_fit = TorchMLPClassifier(hidden_units=8, epochs=3, random_state=0).fit(
        sparse.csr_matrix(cancer["x"]), cancer["y"]
    )
    np.testing.assert_array_equal(
        dense.predict_proba(cancer["xv"]), sparse_fit.predict_proba(sparse.csr_matrix(cancer["xv"]))
    )


def test_string_labels_and_unseen_validation_labels() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    y = np.where(x[:, 0] > 0, "yes", "no").astype(object)
    model = TorchMLPClassifier(hidden_units=8, epochs=20, random_state=0)
    model.fit(x, y, eval_set=(x[:10], np.array(["maybe"] * 5 + list(y[5:10]), dtype=object)))
    assert list(model.classes_) == ["no", "yes"] and model.labels == ["no", "yes"]
    assert set(model.predict(x)) <= {"no", "yes"}
    assert float(np.mean(model.predict(x) == y)) > 0.8
    with pytest.raises(ValueError, match="two classes"):
        TorchMLPClassifier(epochs=1).fit(x, np.array(["a"] * len(x)))


def test_regressor_learns_on_the_target_scale() -> None:
    x, y = datasets.load_diabetes(return_X_y=True)
    model = TorchMLPRegressor(hidden_units=32, epochs=200, patience=15, random_state=0, learning_rate=3e-3)
    model.fit(x[:300], y[:300], eval_set=(x[300:380], y[300:380]))
    assert model.y_mean_ == pytest.approx(float(np.mean(y[:300])))
    pred = model.predict(x[380:])
    assert pred.dtype == np.float64 and pred.shape == (len(x) - 380,)
    r2 = 1 - np.sum((pred - y[380:]) ** 2) / np.sum((y[380:] - y[380:].mean()) ** 2)
    assert r2 > 0.3


def test_a_diverging_run_is_reported() -> None:
    x = np.random.default_rng(0).normal(size=(64, 2)) * 1e30
    with pytest.raises(ValueError, match="diverged"):
        TorchMLPRegressor(epochs=3, learning_rate=1.0).fit(x, x[:, 0] * 1e30)


def test_clone_keeps_parameters_and_drops_the_fit(cancer: dict[str, Any]) -> None:
    model = TorchMLPClassifier(hidden_units=8, epochs=2, random_state=3).fit(cancer["x"], cancer["y"])
    copy = base.clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "network_")
    assert isinstance(model.head(), torch.nn.Module)


# -- through the training workload -------------------------------------------------------------


def test_regression_run_is_served_from_onnx(tmp_path: pathlib.Path) -> None:
    data_dir = _train_data.make_prepared(tmp_path / "d", "diabetes")
    cfg = config_for(
        data_dir,
        tmp_path / "m",
        "TorchMLPRegressor",
        {"hidden_units": 32, "epochs": 80, "learning_rate": 3e-3},
    )
    result = run.train(cfg)
    assert result["framework"] == "pytorch" and set(result["metrics"]["test"]) == {"rmse", "mae", "r2"}
    assert result["metrics"]["validation"]["r2"] > 0.2
    served = bundle_mod.load(_train_data.model_dir(result))
    dataset = artifacts.load_dataset(data_dir)
    x_test, y_test = dataset.xy("test")
    pred = served.pipeline.predict(x_test)
    rmse = float(np.sqrt(np.mean((pred - y_test.to_numpy()) ** 2)))
    assert rmse == pytest.approx(result["metrics"]["test"]["rmse"], rel=1e-6)
    card = json.loads((_train_data.model_dir(result) / "model_card.json").read_text())
    assert card["classes"] is None and card["onnx"]["output"] == "prediction"


def test_string_labels_and_categories_round_trip(tmp_path: pathlib.Path) -> None:
    data_dir = _train_data.make_prepared(tmp_path / "d", "iris", string_labels=True, categorical=True)
    cfg = config_for(data_dir, tmp_path / "m", "TorchMLPClassifier", {"epochs": 60}, metrics=["accuracy"])
    result = run.train(cfg)
    assert result["metrics"]["test"]["accuracy"] > 0.8
    served = bundle_mod.load(_train_data.model_dir(result))
    assert served.classes == ("setosa", "versicolor", "virginica")
    test = artifacts.load_dataset(data_dir).xy("test")
    accuracy = float(np.mean(served.pipeline.predict(test[0]) == test[1].to_numpy()))
    assert accuracy == pytest.approx(result["metrics"]["test"]["accuracy"])


def test_cross_validation_clones_the_network(tmp_path: pathlib.Path) -> None:
    data_dir = _train_data.make_prepared(tmp_path / "d", "iris")
    cfg = config_for(
        data_dir,
        tmp_path / "m",
        "TorchMLPClassifier",
        {"epochs": 5, "hidden_units": 8},
        metrics=["accuracy", "log_loss"],
        crossValidation={"folds": 3},
    )
    result = run.train(cfg)
    assert set(result["metrics"]["cv"]) == {"accuracy", "log_loss"}
    assert 0.0 <= result["metrics"]["cv"]["accuracy"]["mean"] <= 1.0


def test_library_missing_without_torch(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from mlops_workloads import runtime

    data_dir = _train_data.make_prepared(tmp_path / "d", "iris")
    cfg = config_for(data_dir, tmp_path / "m", "TorchMLPClassifier", {})
    real = importlib.import_module

    def no_torch(name: str, package: str | None = None) -> Any:
        if name == "mlops_workloads.nn":
            raise ImportError("No module named 'torch'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_torch)
    with pytest.raises(runtime.WorkloadError) as info:
        run.train(cfg)
    assert info.value.reason == "LibraryMissing" and "pytorch" in info.value.message
