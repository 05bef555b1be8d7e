"""The training run: load, (cross-validate,) fit, evaluate, save, report.

The preprocessor in the Dataset directory was fitted on the training split only; it is used
as it is for the final model (so serving transforms exactly as training did), and cloned
unfitted into each cross-validation fold (so a fold's held-out rows never leak into the
transform that scores them).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlops_operator.api import common, estimators, trainingjob
from mlops_workloads import runtime, usage
from mlops_workloads.train import artifacts, evaluate, staging
from mlops_workloads.train import card as card_mod
from mlops_workloads.train import device as device_mod
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
    ("torch", "torch"),
    ("onnx", "onnx"),
    ("onnxruntime", "onnxruntime"),
)


def versions() -> dict[str, str]:
    """The versions of the libraries this process imported (for the model card)."""
    return card_mod.versions(LIBRARIES)


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


class Warnings:
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
    notes: Warnings,
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
    from sklearn import pipeline

    started = time.perf_counter()
    usage.start_gpu_sampling(config.gpu)
    notes = Warnings()
    dataset = load_checked(config)
    x_train, y_train = dataset.xy("train")
    classes = training_classes(config, y_train)
    entry = estimators.REGISTRY.get(config.estimator)
    if entry is not None and entry.library == "pytorch":
        # Imported here: torch is only in the GPU-capable image (LibraryMissing elsewhere).
        est_mod.estimator_class(config)
        from mlops_workloads.nn import run as nn_run

        return nn_run.train(config, dataset=dataset, classes=classes, notes=notes, started=started)
    encoding = _encoding(config, classes) if classes else None

    def target(y: Any) -> Any:
        return y.map(lambda v: encoding.get(_native(v), -1)) if encoding else y

    fit_classes = list(range(len(classes))) if encoding else classes
    model = est_mod.build(config, classes=classes)
    library = estimators.REGISTRY[config.estimator].library
    gpu_why = _gpu_precheck(config, model, library=library, notes=notes)
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
    outcome = evaluate_fitted(
        config,
        fitted,
        dataset,
        notes,
        started,
        fit_seconds=fit_seconds,
        classes=fit_classes,
        cv=cv,
        target=target,
    )
    device = _device_used(config, model, library=library, why=gpu_why, notes=notes)
    label_encoding = [_native(c) for c in encoding] if encoding else None
    used = usage.measure()  # one measure for the card and the result
    card = model_card(
        config, model, outcome, classes=classes, device=device, label_encoding=label_encoding, used=used
    )
    out = staging.output_dir(config)
    size = artifacts.write_model_dir(
        out, pipeline=fitted, card=card, dataset=dataset, output_uri=config.output_uri
    )
    published = staging.publish(config, out)
    return final_result(config, outcome, device=device, size=size, published=published, used=used)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a fitted model scored and how long it took: what its card and its result report."""

    dataset: artifacts.PreparedDataset
    notes: Warnings
    started: float
    fit_seconds: float
    results: dict[str, dict[str, float]]
    rows: dict[str, int]
    objective: float | None


def evaluate_fitted(
    config: trainingjob.TrainConfig,
    fitted: Any,
    dataset: artifacts.PreparedDataset,
    notes: Warnings,
    started: float,
    *,
    fit_seconds: float,
    classes: Sequence[Any],
    cv: dict[str, dict[str, float]],
    target: Callable[[Any], Any] | None = None,
) -> Outcome:
    """Score the fitted Pipeline on validation and test (with ``cv``, the cross-validation summary).

    ``target`` maps the Dataset's labels to those the model was fitted on (XGBoost's 0..n-1);
    ``classes`` are the fitted ones.
    """
    results: dict[str, dict[str, float]] = {}
    rows = {"train": len(dataset.splits["train"])}
    for split in ("validation", "test"):
        frame = dataset.splits[split]
        rows[split] = len(frame)
        if len(frame) == 0:
            continue
        x, y = dataset.xy(split)
        results[split], problems = evaluate.evaluate(
            fitted,
            x,
            target(y) if target is not None else y,
            task=config.task,
            metrics=config.metrics,
            classes=classes,
        )
        for p in problems:
            notes.add(f"{split} {p}")
    if cv:
        results["cv"] = cv  # type: ignore[assignment]
    objective = objective_value(config.objective_metric, results)
    return Outcome(dataset, notes, started, fit_seconds, results, rows, objective)


def model_card(
    config: trainingjob.TrainConfig,
    model: Any,
    outcome: Outcome,
    *,
    classes: list[Any],
    device: str,
    label_encoding: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
    hardware: dict[str, Any] | None = None,
    used: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card of a built-in estimator; ``extra`` and ``hardware`` add a framework's own keys.

    ``version`` and the versioned ``modelUri`` are added when the model directory is written
    (``artifacts.write_model_dir``); the lineage keys come from ``card.lineage`` (``used``: the
    run's ``resourcesUsed``, measured now when not given).
    """
    dataset = outcome.dataset
    return {
        "name": config.name,
        "namespace": config.namespace,
        "estimator": config.estimator,
        "importPath": config.import_path,
        "task": config.task,
        "params": _jsonable(model.get_params(deep=False)),
        "specParams": config.params,
        "classes": classes or None,
        "labelEncoding": label_encoding,
        "features": dataset.features,
        "target": dataset.target,
        **lineage(config, dataset, used=used),
        "metrics": outcome.results,
        "objective": {
            "metric": config.objective_metric,
            "direction": config.objective_direction,
            "value": outcome.objective,
        },
        "crossValidationFolds": config.cv_folds,
        "rows": outcome.rows,
        **(extra or {}),
        "libraries": versions(),
        "fitSeconds": outcome.fit_seconds,
        "durationSeconds": time.perf_counter() - outcome.started,
        "device": device,
        "hardware": {
            "cpuCount": os.cpu_count(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "gpus": config.gpu,
            "device": device,
            "deviceRequested": device_mod.requested(config),
            **(hardware or {}),
        },
        "warnings": outcome.notes.items,
        "createdAt": card_mod.created_at(),
        "modelUri": common.StorageLocation.parse(config.output_uri).uri(),
    }


def lineage(
    config: trainingjob.TrainConfig,
    dataset: artifacts.PreparedDataset,
    *,
    used: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card's lineage keys: image, code version, Dataset (with its preparation), resources."""
    return card_mod.lineage(
        image=config.image,
        code_version=config.code_version,
        requested=config.resources.to_api() if config.resources is not None else None,
        dataset={"name": config.dataset_name, "uri": config.dataset_uri, "digest": dataset.digest},
        manifest=dataset.manifest,
        used=used,
    )


def final_result(
    config: trainingjob.TrainConfig,
    outcome: Outcome,
    *,
    device: str,
    size: int,
    published: staging.Published,
    used: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The termination result of a built-in estimator's run (rank 0's, in a distributed run);
    ``used``: its ``resourcesUsed`` (measured now when not given)."""
    return {
        "modelUri": published.uri,
        "modelVersion": published.version,
        "datasetDigest": outcome.dataset.digest,
        "estimator": config.estimator,
        "metrics": outcome.results,
        "objectiveMetric": config.objective_metric,
        "objectiveValue": outcome.objective,
        "fitSeconds": round(outcome.fit_seconds, 3),
        "durationSeconds": round(time.perf_counter() - outcome.started, 3),
        "modelSizeBytes": size,
        "rows": outcome.rows,
        "device": device,
        "deviceRequested": device_mod.requested(config),
        "warnings": outcome.notes.items,
        "resourcesUsed": dict(usage.measure() if used is None else used),
    }


def load_checked(config: trainingjob.TrainConfig) -> artifacts.PreparedDataset:
    """The Dataset version the config names, checked against the task and the pinned digest."""
    data_dir = staging.dataset_dir(config)
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
    return dataset


def training_classes(config: trainingjob.TrainConfig, y_train: Any) -> list[Any]:
    """The sorted class labels of the training split (empty for regression); two at least."""
    import numpy as np

    if config.task != "classification":
        return []
    classes = [_native(c) for c in np.unique(np.asarray(y_train))]
    if len(classes) < 2:
        raise runtime.WorkloadError("DatasetInvalid", f"the training split has one class only: {classes}")
    return classes


def _gpu_precheck(config: trainingjob.TrainConfig, model: Any, *, library: str, notes: Warnings) -> str:
    """Before fitting: refuse (or move to the CPU) what cannot reach a GPU; return why, for after.

    The ``xgboost-cpu`` wheel accepts ``device="cuda"`` and trains on the CPU: known before
    any work is done, so the run fails at once rather than after a long CPU fit.
    """
    if config.gpu <= 0:
        return ""
    if library != "xgboost":
        return f"{config.estimator} ({library}) has no GPU learner in the built-in trainer"
    if device_mod.xgboost_has_cuda():
        return "XGBoost found no usable GPU and fell back to the CPU"
    why = "this image's XGBoost is built without CUDA (the xgboost-cpu wheel)"
    device_mod.check(config, device_mod.CPU, why=why, warn=notes.add)
    model.set_params(device=device_mod.CPU)
    return why


def _device_used(
    config: trainingjob.TrainConfig, model: Any, *, library: str, why: str, notes: Warnings
) -> str:
    """The device the fitted model actually used; GPUUnavailable (or a warning) when GPUs went unused."""
    used = device_mod.actual(model, library=library)
    if config.gpu > 0 and not estimators.REGISTRY[config.estimator].gpu_capable:
        notes.add(f"{config.estimator} does not use GPUs: trained on the CPU")
        return used
    return device_mod.check(config, used, why=why, warn=notes.add)


def objective_value(metric: str, results: dict[str, Any]) -> float | None:
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
