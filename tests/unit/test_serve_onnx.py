"""The built-in PyTorch network, prepared → trained → exported to ONNX → served, on breast_cancer.

The Dataset is made by the real prepare workload (``sklearn: breast_cancer``), the TrainingJob
goes through the operator's config path, and what the server computes from ``model.onnx``
(through ``serve.bundle``, the in-process app and the real HTTP server) must equal what the
trained PyTorch model computes on the test split: probabilities to 1e-5, labels exactly.
"""

from __future__ import annotations

import builtins
import json
import pathlib
import subprocess
import sys
from typing import Any

import _train_data
import numpy as np
import pytest
import requests

from mlops_operator.api import dataset as dataset_api
from mlops_operator.api import trainingjob, workload
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime
from mlops_workloads.nn import onnx_io
from mlops_workloads.prepare import pipeline as prepare_pipeline
from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.train import artifacts, run
from model_server import running

PARAMS: dict[str, Any] = {}  # the registry's defaults: 2 x 64 units, dropout 0.1, Adam 1e-3, patience 10
EPOCHS_DEFAULT = 100
MODEL_FILES = {"model.onnx", "preprocessor.skops", "schema.json", "baseline.json", "model_card.json"}


def _config(
    estimator: str, params: dict[str, Any], *, storage_uri: str, digest: str, out: pathlib.Path, **spec: Any
) -> trainingjob.TrainConfig:
    tj = trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "bc-mlp", "namespace": "team"},
            "spec": {
                "datasetRef": {"name": "bc"},
                "model": {"estimator": estimator, "params": params},
                "output": {"storageUri": f"file://{out}"},
                **spec,
            },
        }
    )
    assert trainingjob.validate_spec(tj.spec) == []
    config = build.train_config(
        tj, dataset_uri=storage_uri, dataset_digest=digest, settings=rworkload.WorkloadSettings()
    )
    return _train_data.staged(config, out.with_name(f"{out.name}.staging"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bc")
    spec = dataset_api.DatasetSpec.model_validate(
        {"storage": f"file://{tmp}/datasets/bc", "sources": [{"sklearn": {"name": "breast_cancer"}}]}
    )
    prepared = prepare_pipeline.prepare(
        dataset_api.PrepareConfig(dataset="bc", spec=spec), scratch_dir=str(tmp)
    )
    config = _config(
        "TorchMLPClassifier",
        PARAMS,
        storage_uri=prepared["storageUri"],
        digest=prepared["digest"],
        out=tmp / "model",
        metrics=["accuracy", "f1", "roc_auc", "log_loss"],
    )
    captured: list[Any] = []
    original = onnx_io.export

    def spy(model: Any, **kwargs: Any) -> bytes:
        captured.append(model)
        return original(model, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(onnx_io, "export", spy)
        result = run.train(config)
    (model,) = captured
    dataset = artifacts.load_dataset(pathlib.Path(prepared["storageUri"].removeprefix("file://")))
    x_test, y_test = dataset.xy("test")
    transformed = dataset.preprocessor.transform(x_test)
    return {
        "config": config,
        "prepared": prepared,
        "result": result,
        "out": _train_data.model_dir(result),
        "x_test": x_test,
        "y_test": y_test,
        "proba": model.predict_proba(transformed),
        "labels": model.predict(transformed),
        "model": model,
    }


def test_result_and_validation_accuracy(trained: dict[str, Any]) -> None:
    result = trained["result"]
    accuracy = result["metrics"]["validation"]["accuracy"]
    print(
        f"breast_cancer validation accuracy {accuracy:.4f}, test {result['metrics']['test']['accuracy']:.4f}"
    )
    assert accuracy >= 0.95
    assert result["framework"] == "pytorch" and result["worldSize"] == 1
    assert result["device"] == "cpu" and result["deviceRequested"] == "cpu"
    assert 1 <= result["bestEpoch"] <= result["epochs"] <= EPOCHS_DEFAULT
    assert result["datasetDigest"] == trained["prepared"]["digest"]
    assert result["objectiveMetric"] == "accuracy" and result["objectiveValue"] == accuracy
    assert set(result["metrics"]["test"]) == {"accuracy", "f1", "roc_auc", "log_loss"}
    expected_keys = {
        "modelUri", "modelVersion", "datasetDigest", "estimator", "metrics", "objectiveMetric",
        "objectiveValue",
        "fitSeconds", "durationSeconds", "modelSizeBytes", "rows", "device", "deviceRequested",
        "warnings", "worldSize", "epochs", "bestEpoch", "framework",
    }  # fmt: skip
    assert expected_keys <= set(result)
    assert len(runtime.compact({"ok": True, **result}).encode()) <= workload.RESULT_LIMIT
    # The reported test accuracy is the trainer's own predictions, scored.
    assert result["metrics"]["test"]["accuracy"] == pytest.approx(
        float(np.mean(trained["labels"] == trained["y_test"].to_numpy()))
    )


def test_model_directory_and_card(trained: dict[str, Any]) -> None:
    out: pathlib.Path = trained["out"]
    assert {p.name for p in out.iterdir()} == MODEL_FILES
    data_dir = pathlib.Path(trained["prepared"]["storageUri"].removeprefix("file://"))
    assert (out / "preprocessor.skops").read_bytes() == (data_dir / "preprocessor.skops").read_bytes()
    card = json.loads((out / "model_card.json").read_text())
    result = trained["result"]
    assert card["framework"] == "pytorch" and card["format"] == "onnx"
    assert card["worldSize"] == 1 and card["epochs"] == result["epochs"]
    assert card["bestEpoch"] == result["bestEpoch"]
    assert 0 < len(card["history"]) <= 200 and card["history"][0]["epoch"] == 1
    assert {"train", "validation"} <= set(card["history"][0])
    assert card["classes"] == [0, 1]
    assert card["hardware"]["device"] == "cpu" and card["hardware"]["deviceRequested"] == "cpu"
    assert card["libraries"]["torch"] and card["libraries"]["onnx"] and card["libraries"]["onnxruntime"]
    assert card["modelSizeBytes"] == result["modelSizeBytes"] == sum(card["files"].values())
    assert card["onnx"]["check"]["maxAbsDifference"] <= 1e-5
    assert card["params"]["random_state"] == 0  # the config's seed


def test_bundle_serves_what_the_trainer_predicted(trained: dict[str, Any]) -> None:
    bundle = bundle_mod.load(trained["out"])
    assert bundle.classes == (0, 1) and bundle.task == "classification"
    assert isinstance(bundle.pipeline, bundle_mod.OnnxPipeline)
    proba = bundle.pipeline.predict_proba(trained["x_test"])
    difference = float(np.max(np.abs(proba - trained["proba"])))
    print(f"max |served - trainer| probability on the test split: {difference:.3g}")
    assert difference <= 1e-5
    np.testing.assert_array_equal(bundle.pipeline.predict(trained["x_test"]), trained["labels"])


def test_app_serves_it_unchanged(trained: dict[str, Any]) -> None:
    app = app_mod.App(bundle_mod.load(trained["out"]), model_name="bc", drift_window=100)
    rows = trained["x_test"].to_dict(orient="records")
    response = app.handle("POST", "/v1/models/bc:predict", json.dumps({"instances": rows}).encode())
    assert response.status == 200, response.body
    body = json.loads(response.body)
    assert body["predictions"] == trained["labels"].tolist()
    assert np.max(np.abs(np.asarray(body["probabilities"]) - trained["proba"])) <= 1e-5
    assert len(body["lowConfidence"]) == len(rows) and body["classes"] == [0, 1]
    metrics = app.handle("GET", "/metrics", b"")
    assert metrics.status == 200 and b"drift" in metrics.body


def test_http_server_serves_it(trained: dict[str, Any], tmp_path: pathlib.Path) -> None:
    rows = trained["x_test"].head(20).to_dict(orient="records")
    with running(trained["out"], tmp_path) as (url, _):
        r = requests.post(f"{url}/v1/models/iris:predict", json={"instances": rows}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == trained["labels"][:20].tolist()
    assert np.max(np.abs(np.asarray(body["probabilities"]) - trained["proba"][:20])) <= 1e-5


BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_serving_works_without_torch(trained: dict[str, Any]) -> None:
    # The CPU workloads image has onnxruntime but no torch: block it and serve.
    x_file = trained["out"].parent / "x.parquet"
    trained["x_test"].head(5).to_parquet(x_file)
    code = BLOCK_TORCH + (
        "import json, pandas as pd\n"
        "from mlops_workloads.serve import app, bundle\n"
        f"b = bundle.load({str(trained['out'])!r})\n"
        "a = app.App(b, model_name='bc')\n"
        f"x = pd.read_parquet({str(x_file)!r})\n"
        "print(json.dumps(b.pipeline.predict(x).tolist()))\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'mlops_workloads.nn'))]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == trained["labels"][:5].tolist()


def test_onnx_file_describes_itself(trained: dict[str, Any]) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(
        (trained["out"] / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"]
    )
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["mlops.task"] == "classification" and json.loads(meta["mlops.classes"]) == [0, 1]
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis


def _exec_transformer() -> Any:
    from sklearn import preprocessing

    return preprocessing.FunctionTransformer(builtins.exec)


def test_tampered_preprocessor_is_refused(trained: dict[str, Any], tmp_path: pathlib.Path) -> None:
    import shutil

    import skops.io as sio

    copy = tmp_path / "m"
    shutil.copytree(trained["out"], copy)
    sio.dump(_exec_transformer(), copy / "preprocessor.skops")
    with pytest.raises(runtime.WorkloadError) as info:
        bundle_mod.load(copy)
    assert info.value.reason == "UntrustedModel" and "builtins.exec" in info.value.message
    (copy / "preprocessor.skops").unlink()
    with pytest.raises(runtime.WorkloadError) as info:
        bundle_mod.load(copy)
    assert info.value.reason == "ModelNotFound"
    (copy / "model.onnx").write_bytes(b"not a protobuf")
    shutil.copy(trained["out"] / "preprocessor.skops", copy / "preprocessor.skops")
    with pytest.raises(runtime.WorkloadError) as info:
        bundle_mod.load(copy)
    assert info.value.reason == "InvalidModel"


def test_rerun_in_the_same_directory_keeps_one_format(
    trained: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    import shutil

    # The staging directory still holds the network's files (a second run in one process).
    staging = tmp_path / "model.staging"
    shutil.copytree(trained["out"], staging)
    prepared = trained["prepared"]
    sk = _config(
        "LogisticRegression",
        {"max_iter": 300},
        storage_uri=prepared["storageUri"],
        digest=prepared["digest"],
        out=tmp_path / "model",
    )
    out = _train_data.model_dir(run.train(sk))
    assert {p.name for p in out.iterdir()} == {
        "model.skops",
        "schema.json",
        "baseline.json",
        "model_card.json",
    }
    assert not isinstance(bundle_mod.load(out).pipeline, bundle_mod.OnnxPipeline)
