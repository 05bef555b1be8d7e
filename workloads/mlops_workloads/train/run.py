"""The training run: load, (cross-validate,) fit, evaluate, save, report.

The preprocessor in the Dataset directory was fitted on the training split only; it is used
as it is for the final model (so serving transforms exactly as training did), and cloned
unfitted into each cross-validation fold (so a fold's held-out rows never leak into the
transform that scores them).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import pathlib
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

from mlops_operator.api import common, estimators, trainingjob
from mlops_workloads import runtime
from mlops_workloads.train import artifacts, evaluate
from mlops_workloads.train import estimator as est_mod

MAX_WARNINGS = 8
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("scikit-learn", "sklearn"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("pandas", "pandas"),
    ("skops", "skops"),
    ("xgboost", "xgboost"),
    ("lightgbm", "lightgbm"),
)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist, module in LIBRARIES:
        if module in sys.modules:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = str(getattr(sys.modules[module], "__version__", "unknown"))
    return out


def _native(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _encoding(config: trainingjob.TrainConfig, classes: Sequence[Any]) -> dict[Any, int] | None:
    """XGBoost's classifier wants labels 0..n-1: a mapping when the Dataset's labels are not."""
    entry = estimators.REGISTRY[config.estimator]
    if config.task != "classification" or entry.library != "xgboost":
        return None
    if [_native(c) for c in classes] == list(range(len(classes))):
        return None
    return {c: i for i, c in enumerate(classes)}


class _Warnings:
    """Warnings raised while fitting (e.g. ConvergenceWarning), deduplicated for the result."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        text = text.strip().splitlines()[0][:200] if text.strip() else ""
        if text and text not in self.items and len(self.items) < MAX_WARNINGS:
            self.items.append(text)

    def record(self, caught: list[warnings.WarningMessage]) -> None:
        for w in caught:
            self.add(f"{w.category.__name__}: {w.message}")


def _cross_validate(
    config: trainingjob.TrainConfig,
    *,
    dataset: artifacts.PreparedDataset,
    model: Any,
    x: Any,
    y: Any,
    classes: Sequence[Any],
    notes: _Warnings,
) -> dict[str, dict[str, float]]:
    import numpy as np
    from sklearn import base, model_selection, pipeline

    folds = config.cv_folds
    if folds > len(x):
        raise runtime.WorkloadError(
            "InvalidSpec", f"crossValidation.folds={folds} but the training split has only {len(x)} rows"
        )
    splitter: Any = model_selection.KFold(n_splits=folds, shuffle=True, random_state=config.seed)
    if config.task == "classification":
        _, counts = np.unique(np.asarray(y), return_counts=True)
        if counts.min() >= folds:
            splitter = model_selection.StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
        else:
            notes.add(f"cross-validation is not stratified: a class has fewer than {folds} training rows")
    scores: list[dict[str, float]] = []
    for train_idx, val_idx in splitter.split(x, y):
        fold = pipeline.Pipeline(
            [("preprocess", base.clone(dataset.preprocessor)), ("model", base.clone(model))]
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fold.fit(x.iloc[train_idx], y.iloc[train_idx])
            metrics, problems = evaluate.evaluate(
                fold,
                x.iloc[val_idx],
                y.iloc[val_idx],
                task=config.task,
                metrics=config.metrics,
                classes=classes,
            )
        notes.record(caught)
        for p in problems:
            notes.add(f"cv {p}")
        scores.append(metrics)
    return evaluate.summarize(scores)


def _fit_error(config: trainingjob.TrainConfig, exc: Exception) -> runtime.WorkloadError:
    text = f"{type(exc).__name__}: {exc}"
    if config.gpu and any(k in text.lower() for k in ("cuda", "gpu")):
        return runtime.WorkloadError("GPUUnavailable", f"training on the GPU failed: {text}"[:1024])
    return runtime.WorkloadError("InvalidParams", f"{config.estimator} could not be fitted: {text}"[:1024])


def train(config: trainingjob.TrainConfig) -> dict[str, Any]:
    """Run one training job; return the result for the termination message."""
    import numpy as np
    from sklearn import pipeline

    started = time.perf_counter()
    notes = _Warnings()
    data_dir = pathlib.Path(common.StorageLocation.parse(config.dataset_uri).local_path(config.pvc_root))
    dataset = artifacts.load_dataset(data_dir)
    if dataset.task and dataset.task != config.task:
        raise runtime.WorkloadError(
            "TaskMismatch",
            f"{config.estimator} is a {config.task} estimator but the Dataset is {dataset.task}",
        )
    if config.dataset_digest and dataset.digest and config.dataset_digest != dataset.digest:
        raise runtime.WorkloadError(
            "DatasetDigestMismatch",
            f"expected Dataset version {config.dataset_digest}, found {dataset.digest} in {data_dir}",
        )
    x_train, y_train = dataset.xy("train")
    classes: list[Any] = []
    encoding: dict[Any, int] | None = None
    if config.task == "classification":
        classes = [_native(c) for c in np.unique(np.asarray(y_train))]
        if len(classes) < 2:
            raise runtime.WorkloadError("DatasetInvalid", f"the training split has one class only: {classes}")
        encoding = _encoding(config, classes)

    def target(y: Any) -> Any:
        return y.map(lambda v: encoding.get(_native(v), -1)) if encoding else y

    fit_classes = list(range(len(classes))) if encoding else classes
    model = est_mod.build(config, classes=classes)
    cv: dict[str, dict[str, float]] = {}
    try:
        if config.cv_folds:
            cv = _cross_validate(
                config,
                dataset=dataset,
                model=model,
                x=x_train,
                y=target(y_train),
                classes=fit_classes,
                notes=notes,
            )
        transformed = dataset.preprocessor.transform(x_train)
        fit_started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(transformed, target(y_train))
        fit_seconds = time.perf_counter() - fit_started
    except (ValueError, TypeError, RuntimeError) as exc:
        raise _fit_error(config, exc) from exc
    except Exception as exc:
        if type(exc).__module__.startswith(("xgboost", "lightgbm")):
            raise _fit_error(config, exc) from exc
        raise
    notes.record(caught)
    fitted = pipeline.Pipeline([("preprocess", dataset.preprocessor), ("model", model)])

    results: dict[str, dict[str, float]] = {}
    rows = {"train": len(x_train)}
    for split in ("validation", "test"):
        frame = dataset.splits[split]
        rows[split] = len(frame)
        if len(frame) == 0:
            continue
        x, y = dataset.xy(split)
        results[split], problems = evaluate.evaluate(
            fitted, x, target(y), task=config.task, metrics=config.metrics, classes=fit_classes
        )
        for p in problems:
            notes.add(f"{split} {p}")
    if cv:
        results["cv"] = cv  # type: ignore[assignment]

    objective = _objective(config.objective_metric, results)
    output = common.StorageLocation.parse(config.output_uri)
    device = est_mod.device(model)
    duration = time.perf_counter() - started
    card = {
        "name": config.name,
        "namespace": config.namespace,
        "estimator": config.estimator,
        "importPath": config.import_path,
        "task": config.task,
        "params": _jsonable(model.get_params(deep=False)),
        "specParams": config.params,
        "classes": classes or None,
        "labelEncoding": [_native(c) for c in encoding] if encoding else None,
        "features": dataset.features,
        "target": dataset.target,
        "dataset": {"name": config.dataset_name, "uri": config.dataset_uri, "digest": dataset.digest},
        "metrics": results,
        "objective": {
            "metric": config.objective_metric,
            "direction": config.objective_direction,
            "value": objective,
        },
        "crossValidationFolds": config.cv_folds,
        "rows": rows,
        "libraries": _versions(),
        "fitSeconds": fit_seconds,
        "durationSeconds": duration,
        "hardware": {
            "cpuCount": os.cpu_count(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "gpus": config.gpu,
            "device": device,
        },
        "warnings": notes.items,
        "createdAt": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "modelUri": output.uri(),
    }
    size = artifacts.write_model_dir(
        pathlib.Path(output.local_path(config.pvc_root)), pipeline=fitted, card=card, dataset=dataset
    )
    return {
        "modelUri": output.uri(),
        "datasetDigest": dataset.digest,
        "estimator": config.estimator,
        "metrics": results,
        "objectiveMetric": config.objective_metric,
        "objectiveValue": objective,
        "fitSeconds": round(fit_seconds, 3),
        "durationSeconds": round(time.perf_counter() - started, 3),
        "modelSizeBytes": size,
        "rows": rows,
        "device": device,
        "warnings": notes.items,
    }


def _objective(metric: str, results: dict[str, Any]) -> float | None:
    """On validation; the CV mean when there is no validation split; else test."""
    if metric in results.get("validation", {}):
        return float(results["validation"][metric])
    if metric in results.get("cv", {}):
        return float(results["cv"][metric]["mean"])
    if metric in results.get("test", {}):
        return float(results["test"][metric])
    return None


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value
        elif isinstance(value, list | tuple):
            out[key] = [_native(v) for v in value]
        elif isinstance(value, dict):
            out[key] = {str(k): _native(v) for k, v in value.items()}
        else:
            out[key] = repr(value)
    return out
