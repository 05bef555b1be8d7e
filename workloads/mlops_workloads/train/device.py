"""The device a model was ACTUALLY trained on, and what to do when that is not the one asked for.

A pod given GPUs does not prove the model used one: the ``xgboost-cpu`` wheel accepts
``device="cuda"`` and trains on the CPU after a log line, and PyTorch without a visible
driver runs on the CPU just as happily. So the trainer never records the device it *told*
the library; it reads back what the library did (XGBoost's fitted booster config, the
device of the network's parameters) and, when GPUs were requested and the work ran on the
CPU, fails with ``GPUUnavailable`` unless the job allows the CPU fallback
(``allowCPUFallback``), in which case it records ``cpu`` and says so in the warnings.

``torch`` and ``xgboost`` are imported only when their models are looked at: the CPU
workloads image has no PyTorch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlops_operator.api import trainingjob
from mlops_workloads import runtime

CPU = "cpu"
CUDA = "cuda"


def requested(config: trainingjob.TrainConfig) -> str:
    """What the job asked for: ``cuda`` when its pods have GPUs, else ``cpu``."""
    return CUDA if config.gpu > 0 else CPU


def is_cpu(device: str) -> bool:
    return device.split(":", 1)[0].strip().lower() == CPU


def torch_name(device: Any) -> str:
    """``cpu`` or ``cuda:<i> (<device name>)`` for a ``torch.device`` (or its string)."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return dev.type
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def xgboost_device(model: Any) -> str:
    """The device of a fitted XGBoost model, as its booster reports it after fit (``cpu``, ``cuda:0``)."""
    config = json.loads(model.get_booster().save_config())
    return str(config["learner"]["generic_param"]["device"])


def xgboost_has_cuda() -> bool:
    """Whether this image's XGBoost was built with CUDA at all (the ``xgboost-cpu`` wheel is not)."""
    import xgboost

    return bool(xgboost.build_info().get("USE_CUDA", False))


def actual(model: Any, *, library: str) -> str:
    """The device a fitted model computed on: read back from the library, never the requested one."""
    if library == "xgboost":
        return xgboost_device(model)
    if library == "pytorch":
        return str(getattr(model, "device_", CPU))
    return CPU  # scikit-learn and the LightGBM CPU build only compute on the CPU.


def choose_torch(config: trainingjob.TrainConfig, *, local_rank: int = 0) -> tuple[Any, str | None]:
    """The ``torch.device`` to train on and, when the GPU is missing, why (None when all is well).

    cuda when the pod has GPUs and PyTorch sees one (``cuda:<LOCAL_RANK>`` when several are
    visible), else the CPU; the caller turns a reason into ``GPUUnavailable`` or a warning.
    """
    import torch

    if config.gpu <= 0:
        return torch.device(CPU), None
    if not torch.cuda.is_available():
        build = torch.version.cuda or "none"
        return torch.device(CPU), (
            f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build {build})"
        )
    count = torch.cuda.device_count()
    return torch.device(CUDA, local_rank if local_rank < count else 0), None


def unavailable_message(config: trainingjob.TrainConfig, why: str) -> str:
    return (
        f"{config.estimator} was given {config.gpu} GPU(s) (resources.gpu) but trained on the CPU: {why}. "
        "Check the node's NVIDIA driver and the image (the GPU image has CUDA builds of XGBoost and "
        "PyTorch), or set allowCPUFallback: true to accept training on the CPU"
    )[:1024]


def check(config: trainingjob.TrainConfig, device: str, *, why: str, warn: Callable[[str], None]) -> str:
    """``device`` if it satisfies the request; on the CPU after a GPU request: fail or warn.

    Returns the device to record: the actual one (``cpu`` on a fallback).
    """
    if config.gpu <= 0 or not is_cpu(device):
        return device
    if not config.allow_cpu_fallback:
        raise runtime.WorkloadError("GPUUnavailable", unavailable_message(config, why))
    warn(f"GPUUnavailable: trained on the CPU (allowCPUFallback): {why}")
    return CPU
