"""The evaluation run: read the Dataset version, both models and the reviewed rows; score; report.

``evaluate(config)`` is the entry function (``__main__`` runs it under the runtime contract).
Inputs follow the other workloads: ``pvc://`` and ``file://`` are mounts used where they are;
``s3://`` is downloaded once into ``<stagingDir>/data``, ``/champion`` and ``/challenger``, and
a directory without its marker (``manifest.json``, ``model_card.json``) is refused as incomplete.

The metric is ``config.metric``, else accuracy for classification and rmse for regression. A
set with no rows scores null. The result (the termination message, < 4 KiB)::

    {"ok": true, "metric": "accuracy", "task": "classification", "datasetDigest": "sha256:...",
     "test": {"rows": 30, "champion": 0.9, "challenger": 0.95},
     "reviewed": {"rows": 12, "excluded": 20, "inTest": 2, "champion": 0.5, "challenger": 0.9},
     "overall": {"rows": 40, "champion": 0.8, "challenger": 0.93},
     "championVersion": 3, "challengerVersion": 4, "warnings": []}

``reviewed`` holds the reviewed rows in neither the train nor the validation split (``excluded``:
those that are); ``inTest`` of them are also rows of the test split (a Dataset that merges its
feedback source): ``overall`` counts those once. ``reviewed`` is null without ``reviewedUri``;
scores have six significant digits.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import numpy as np
import pandas as pd

from mlops_operator.api import common, estimators
from mlops_operator.api import retrain as api
from mlops_workloads import runtime, storage
from mlops_workloads.evaluate import reviewed as reviewed_mod
from mlops_workloads.evaluate import score
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.train import artifacts

LOG = logging.getLogger("mlops_workloads.evaluate")
DATASET_MARKER = "manifest.json"
MODEL_MARKER = "model_card.json"
ROLES: tuple[str, ...] = ("champion", "challenger")
DEFAULT_METRIC = {"classification": "accuracy", "regression": "rmse"}
MAX_WARNINGS = 8
WARNING_CHARS = 240


def local_dir(
    uri: str,
    connection: common.S3Connection | None,
    *,
    config: api.EvaluateConfig,
    scratch: pathlib.Path,
    marker: str,
) -> pathlib.Path:
    """The local directory of ``uri``: a mount, or an s3:// download into ``scratch``."""
    location = common.StorageLocation.parse(uri)
    if not location.remote:
        return pathlib.Path(location.local_path(config.pvc_root))
    store = storage.open_store(uri, connection=connection, secrets_root=config.secrets_root)
    return storage.fetch(store, scratch=scratch, marker=marker)


def chosen_metric(config: api.EvaluateConfig, task: str) -> str:
    if config.metric is None:
        return DEFAULT_METRIC[task]
    fits = estimators.CLASSIFICATION_METRICS if task == "classification" else estimators.REGRESSION_METRICS
    if config.metric not in fits:
        raise runtime.WorkloadError(
            "InvalidConfig",
            f"the metric {config.metric!r} is not a {task} metric (the Dataset version's task); "
            f"use one of {list(fits)}",
        )
    return str(config.metric)


def load_model(
    role: str,
    model: api.EvaluatedModel,
    *,
    config: api.EvaluateConfig,
    dataset: artifacts.PreparedDataset,
) -> score.Model:
    """Load the ``role`` model and check it can score the Dataset version's rows."""
    try:
        path = local_dir(
            model.uri,
            model.s3,
            config=config,
            scratch=pathlib.Path(config.staging_dir) / role,
            marker=MODEL_MARKER,
        )
        bundle = bundle_mod.load(path)
    except runtime.WorkloadError as exc:
        raise runtime.WorkloadError(exc.reason, f"{role} ({model.uri}): {exc.message}"[:1024]) from exc
    if bundle.task != dataset.task:
        raise runtime.WorkloadError(
            "TaskMismatch",
            f"{role} ({model.uri}) is a {bundle.task} model; the Dataset version is {dataset.task}",
        )
    missing = [name for name in bundle.schema.names if name not in dataset.features]
    if missing:
        raise runtime.WorkloadError(
            "EvaluationFailed",
            f"{role} ({model.uri}): the model reads the features {missing[:8]}, which the Dataset "
            f"version does not have (its features: {dataset.features[:8]})"[:1024],
        )
    loaded = score.Model(role=role, bundle=bundle, classes=score.model_classes(bundle))
    LOG.info("%s: %s (%s, version %s)", role, model.uri, bundle.digest, model.version)
    return loaded


def test_rows(dataset: artifacts.PreparedDataset) -> pd.DataFrame:
    """The test split's features and target (no columns at all when there is no test split)."""
    frame = dataset.splits["test"]
    columns = [*dataset.features, dataset.target]
    if len(frame) == 0:
        return pd.DataFrame({name: [] for name in columns})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise runtime.WorkloadError("DatasetIncomplete", f"test.parquet lacks the columns {missing}")
    return frame[columns].reset_index(drop=True)


def truth(frame: pd.DataFrame, *, target: str, task: str) -> np.ndarray:
    if task == "regression":
        values: np.ndarray = frame[target].to_numpy(dtype=np.float64, na_value=np.nan)
        return values
    return score.label_array(frame[target].tolist())


class Notes:
    """Warnings for the result: deduplicated, each short, at most ``MAX_WARNINGS``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        text = text[:WARNING_CHARS]
        if text not in self.items and len(self.items) < MAX_WARNINGS:
            self.items.append(text)


def evaluate(config: api.EvaluateConfig) -> dict[str, Any]:
    """Score champion and challenger; return the result (without ``ok``, ``main_wrapper`` adds it)."""
    staging = pathlib.Path(config.staging_dir)
    data_dir = local_dir(
        config.dataset_uri, config.dataset_s3, config=config, scratch=staging / "data", marker=DATASET_MARKER
    )
    dataset = artifacts.load_dataset(data_dir)
    task = dataset.task
    if task not in DEFAULT_METRIC:
        raise runtime.WorkloadError(
            "DatasetIncomplete", f"{data_dir / 'schema.json'} names no task (classification or regression)"
        )
    metric = chosen_metric(config, task)
    models = [load_model(role, getattr(config, role), config=config, dataset=dataset) for role in ROLES]
    notes = Notes()
    sets: dict[str, pd.DataFrame] = {"test": test_rows(dataset)}
    excluded = 0
    in_test = np.zeros(0, dtype=bool)
    if config.reviewed_uri is not None:
        held = reviewed_mod.read(config, dataset)
        sets["reviewed"] = held.frame
        excluded = held.excluded
        for text in held.warnings:
            notes.add(text)
        # A reviewed row the Dataset version put in its test split (a feedback source merged
        # into it) is scored in both sets, but counted once overall.
        columns = [*dataset.features, dataset.target]
        test = sets["test"]
        in_test = (
            np.isin(
                reviewed_mod.row_keys(held.frame, columns, like=test),
                reviewed_mod.row_keys(test, columns, like=held.frame),
            )
            if len(held.frame) and len(test)
            else np.zeros(len(held.frame), dtype=bool)
        )
    LOG.info(
        "Dataset version %s (%s): %d test rows%s",
        config.dataset_uri,
        dataset.digest or "no digest",
        len(sets["test"]),
        f", {len(sets['reviewed'])} held-out reviewed rows ({excluded} excluded)"
        if "reviewed" in sets
        else "",
    )
    if sum(len(frame) for frame in sets.values()) == 0:
        raise runtime.WorkloadError(
            "NothingToEvaluate",
            f"the Dataset version {config.dataset_uri} has no test rows"
            + (
                " and no reviewed row is held out (none labelled, or all in its train or validation split)"
                if config.reviewed_uri
                else " and no reviewed rows were asked for"
            )
            + "; give the Dataset a test split (spec.split) to compare the models on",
        )
    y = {name: truth(frame, target=dataset.target, task=task) for name, frame in sets.items()}
    classes: tuple[Any, ...] = ()
    if task == "classification":
        classes = score.union(*(m.classes or () for m in models), *(v.tolist() for v in y.values()))
    scores: dict[str, dict[str, Any]] = {
        name: {"rows": len(frame), "champion": None, "challenger": None} for name, frame in sets.items()
    }
    for model in models:
        parts = {
            name: score.predict(model, frame, what=name, classes=classes)
            for name, frame in sets.items()
            if len(frame)
        }
        for name in sets:
            if name in parts:
                value, problems = score.metric_value(
                    metric, task=task, y_true=y[name], prediction=parts[name], classes=classes
                )
                scores[name][model.role] = score.rounded(value)
                for problem in problems:
                    notes.add(f"{name} {model.role}: {problem}")
        keep: dict[str, Any] = {name: slice(None) for name in parts}
        if "reviewed" in parts:
            keep["reviewed"] = ~in_test
        overall = score.Prediction.concat([parts[name].take(keep[name]) for name in sets if name in parts])
        y_all = np.concatenate([y[name][keep[name]] for name in sets if name in parts])
        value, problems = score.metric_value(
            metric, task=task, y_true=y_all, prediction=overall, classes=classes
        )
        scores.setdefault("overall", {"rows": len(y_all), "champion": None, "challenger": None})
        scores["overall"][model.role] = score.rounded(value)
        for problem in problems:
            notes.add(f"overall {model.role}: {problem}")
    reviewed: dict[str, Any] | None = None
    if "reviewed" in scores:
        reviewed = {
            "rows": scores["reviewed"]["rows"],
            "excluded": excluded,
            "inTest": int(in_test.sum()),
            **_pair(scores["reviewed"]),
        }
    result: dict[str, Any] = {
        "metric": metric,
        "task": task,
        "datasetDigest": dataset.digest or None,
        "test": scores["test"],
        "reviewed": reviewed,
        "overall": scores["overall"],
        "championVersion": config.champion.version,
        "challengerVersion": config.challenger.version,
        "warnings": notes.items,
    }
    LOG.info(
        "%s: test %s, reviewed %s, overall %s",
        metric,
        _pair(scores["test"]),
        _pair(scores["reviewed"]) if reviewed else None,
        _pair(scores["overall"]),
    )
    return result


def _pair(entry: dict[str, Any]) -> dict[str, Any]:
    return {"champion": entry["champion"], "challenger": entry["challenger"]}
