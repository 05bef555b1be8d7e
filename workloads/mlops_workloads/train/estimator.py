"""Build the allowlisted estimator a TrainConfig names, with its parameters made concrete.

The operator already checked the parameters against the registry; this module turns JSON
values into what the library wants (``class_weight`` keys back to class labels), seeds
``random_state`` for reproducible runs, and selects the GPU learner when the pod has GPUs:
XGBoost and the PyTorch networks with ``device="cuda"`` (the registry's ``gpu_params``,
carried in the config). Whether the GPU was then really used is ``train.device``'s question.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

from mlops_operator.api import estimators, trainingjob
from mlops_workloads import runtime


def estimator_class(config: trainingjob.TrainConfig) -> type[Any]:
    """The class named by the config, which must be the registry's import path for that name."""
    entry = estimators.REGISTRY.get(config.estimator)
    if entry is None or entry.import_path != config.import_path:
        raise runtime.WorkloadError(
            "UnknownEstimator", f"{config.estimator} ({config.import_path}) is not in the estimator allowlist"
        )
    module_name, _, cls_name = entry.import_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise runtime.WorkloadError(
            "LibraryMissing", f"{entry.library} is not installed in this image: {exc}"
        ) from exc
    cls: type[Any] = getattr(module, cls_name)
    return cls


def _accepts(cls: type[Any], name: str) -> bool:
    try:
        return name in cls().get_params(deep=False)
    except TypeError:
        return name in inspect.signature(cls.__init__).parameters


def _class_weight(value: Any, classes: Sequence[Any]) -> Any:
    """JSON object keys are strings; map them back to the class labels they name."""
    if not isinstance(value, dict):
        return value
    by_text = {str(c): c for c in classes}
    out: dict[Any, Any] = {}
    for key, weight in value.items():
        if key not in by_text:
            raise runtime.WorkloadError(
                "InvalidParams", f"class_weight names the class {key!r}, which is not one of {list(by_text)}"
            )
        out[by_text[key]] = weight
    return out


def effective_params(
    config: trainingjob.TrainConfig, cls: type[Any], *, classes: Sequence[Any] = ()
) -> dict[str, Any]:
    """The constructor arguments: seeded, GPU-selected when the pod has GPUs, JSON made concrete."""
    params = dict(config.params)
    if "random_state" not in params and _accepts(cls, "random_state"):
        params["random_state"] = config.seed
    if config.gpu > 0:
        for key, value in config.gpu_params.items():
            params.setdefault(key, value)
    if "class_weight" in params and classes:
        params["class_weight"] = _class_weight(params["class_weight"], classes)
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    if estimators.REGISTRY[config.estimator].library == "lightgbm":
        params.setdefault("verbose", -1)
    return params


def build(config: trainingjob.TrainConfig, *, classes: Sequence[Any] = ()) -> Any:
    cls = estimator_class(config)
    params = effective_params(config, cls, classes=classes)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise runtime.WorkloadError("InvalidParams", f"{config.estimator}({params}): {exc}") from exc


def device(estimator: Any) -> str:
    """The device the estimator was TOLD to use (``cuda`` for the GPU path).

    Never record this as where the model trained: the ``xgboost-cpu`` wheel accepts
    ``device="cuda"`` and trains on the CPU. ``train.device.actual`` reads back what the
    fitted model really used.
    """
    params = estimator.get_params(deep=False)
    value = params.get("device") or params.get("device_type") or "cpu"
    return str(value)
