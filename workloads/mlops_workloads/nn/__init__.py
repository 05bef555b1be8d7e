"""Built-in PyTorch networks for tabular Datasets: ``TorchMLPClassifier`` and ``TorchMLPRegressor``.

The estimator registry names them ``mlops_workloads.nn.TorchMLPClassifier`` and
``mlops_workloads.nn.TorchMLPRegressor`` (library ``pytorch``); the training run sends them
down its own path (``nn.run``: torch.distributed, the actual device, ONNX export) and the
server runs the exported ``model.onnx`` with onnxruntime. Importing this package imports
torch, which only the GPU-capable workloads image has: on the CPU image the import fails
and the trainer reports ``LibraryMissing``.
"""

from __future__ import annotations

from mlops_workloads.nn.mlp import TorchMLPClassifier, TorchMLPRegressor

__all__ = ["TorchMLPClassifier", "TorchMLPRegressor"]
