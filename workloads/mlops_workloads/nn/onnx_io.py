"""Saving a trained network as ONNX, and checking that onnxruntime computes what PyTorch did.

ONNX is a protobuf of a computation graph and its weights: loading it builds no Python
object and runs no code (unlike ``torch.load`` of a pickle), so a tampered file can at worst
predict nonsense. The server runs it with onnxruntime on the CPU and never imports torch.

``model.onnx`` holds the network with its output transform (``mlp.ClassifierHead``:
softmax; ``mlp.RegressorHead``: the target's de-standardisation in float64), one input
``features`` (float32, ``[batch, n_features]``, the preprocessor's output) and one output
(``probabilities`` ``[batch, n_classes]`` in the order of the card's classes, or
``prediction`` ``[batch]``), with a dynamic batch axis. Its metadata (``mlops.*``) says the
task, the classes (JSON) and the feature count, so the file describes itself.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import warnings
from typing import Any

import numpy as np
import torch

from mlops_workloads.nn import mlp

OPSET = 17
INPUT = "features"
PROBABILITIES = "probabilities"
PREDICTION = "prediction"
META_TASK = "mlops.task"
META_CLASSES = "mlops.classes"
META_FEATURES = "mlops.features_in"
META_ESTIMATOR = "mlops.estimator"


def output_name(model: mlp._TorchMLP) -> str:
    return PROBABILITIES if isinstance(model, mlp.TorchMLPClassifier) else PREDICTION


def metadata(model: mlp._TorchMLP, *, estimator: str) -> dict[str, str]:
    classification = isinstance(model, mlp.TorchMLPClassifier)
    meta = {
        META_TASK: "classification" if classification else "regression",
        META_FEATURES: str(model.n_features_in_),
        META_ESTIMATOR: estimator,
    }
    if isinstance(model, mlp.TorchMLPClassifier):
        meta[META_CLASSES] = json.dumps(list(model.labels))
    return meta


def export(model: mlp._TorchMLP, *, estimator: str) -> bytes:
    """The fitted model's ``head()`` as ONNX bytes (checked by ``onnx.checker``), metadata included."""
    import onnx

    head = model.head()
    example = torch.zeros(2, model.n_features_in_, dtype=torch.float32)
    out = output_name(model)
    with tempfile.TemporaryDirectory(prefix="mlops-onnx-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        file = pathlib.Path(tmp) / "model.onnx"
        torch.onnx.export(
            head,
            (example,),
            file,
            input_names=[INPUT],
            output_names=[out],
            dynamic_axes={INPUT: {0: "batch"}, out: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
            external_data=False,
        )
        proto = onnx.load_from_string(file.read_bytes())
    proto.producer_name = "mlops-workloads"
    onnx.helper.set_model_props(proto, metadata(model, estimator=estimator))
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def run(data: bytes, x: np.ndarray) -> np.ndarray:
    """The ONNX model's output for a float32 feature matrix, as the server computes it (float64)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (result,) = session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})
    return np.asarray(result, dtype=np.float64)


def max_difference(data: bytes, model: mlp._TorchMLP, x: Any) -> float:
    """max |onnxruntime - PyTorch| over the rows of ``x`` (preprocessor output); 0.0 for no rows."""
    matrix = mlp.as_matrix(x)
    if len(matrix) == 0:
        return 0.0
    served = run(data, matrix)
    trained = (
        model.predict_proba(matrix) if isinstance(model, mlp.TorchMLPClassifier) else model.predict(matrix)
    )
    return float(np.max(np.abs(served - trained)))
