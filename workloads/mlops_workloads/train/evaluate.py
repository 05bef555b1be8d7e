"""Metrics, computed by ``sklearn.metrics`` exactly as the TrainingJob's docs say.

Classification: precision/recall/F1 are binary (positive class = the second of the sorted
classes) for two classes and macro-averaged for more; ROC AUC uses the positive class's
probability for two classes and one-vs-rest (macro) for more; log loss uses the predicted
probabilities with the model's classes as labels. Regression: RMSE, MAE, R². A metric that
cannot be computed on a split (one class only, no probabilities) is left out with a warning
rather than reported as a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(
    metrics: Sequence[str], *, y_true: Any, y_pred: Any, proba: Any | None, classes: Sequence[Any]
) -> tuple[dict[str, float], list[str]]:
    from sklearn import metrics as skm

    out: dict[str, float] = {}
    warnings: list[str] = []
    binary = len(classes) == 2
    average: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[1]}
        if binary
        else {"average": "macro", "labels": list(classes)}
    )
    for metric in metrics:
        try:
            if metric == "accuracy":
                value = skm.accuracy_score(y_true, y_pred)
            elif metric == "precision":
                value = skm.precision_score(y_true, y_pred, zero_division=0, **average)
            elif metric == "recall":
                value = skm.recall_score(y_true, y_pred, zero_division=0, **average)
            elif metric == "f1":
                value = skm.f1_score(y_true, y_pred, zero_division=0, **average)
            elif metric in {"roc_auc", "log_loss"}:
                if proba is None:
                    warnings.append(f"{metric}: the model gives no probabilities")
                    continue
                if metric == "log_loss":
                    value = skm.log_loss(y_true, proba, labels=list(classes))
                elif binary:
                    value = skm.roc_auc_score(y_true, np.asarray(proba)[:, 1])
                else:
                    value = skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=list(classes))
            else:
                continue
        except ValueError as exc:
            warnings.append(f"{metric}: {exc}")
            continue
        if math.isfinite(float(value)):
            out[metric] = float(value)
    return out, warnings


def regression_metrics(
    metrics: Sequence[str], *, y_true: Any, y_pred: Any
) -> tuple[dict[str, float], list[str]]:
    from sklearn import metrics as skm

    out: dict[str, float] = {}
    warnings: list[str] = []
    for metric in metrics:
        try:
            if metric == "rmse":
                value = skm.root_mean_squared_error(y_true, y_pred)
            elif metric == "mae":
                value = skm.mean_absolute_error(y_true, y_pred)
            elif metric == "r2":
                value = skm.r2_score(y_true, y_pred)
            else:
                continue
        except ValueError as exc:
            warnings.append(f"{metric}: {exc}")
            continue
        if math.isfinite(float(value)):
            out[metric] = float(value)
    return out, warnings


def evaluate(
    model: Any, x: Any, y: Any, *, task: str, metrics: Sequence[str], classes: Sequence[Any] = ()
) -> tuple[dict[str, float], list[str]]:
    """Metrics of a fitted model (or pipeline) on one split."""
    y_pred = model.predict(x)
    if task == "regression":
        return regression_metrics(metrics, y_true=y, y_pred=y_pred)
    proba = None
    if any(m in {"roc_auc", "log_loss"} for m in metrics) and hasattr(model, "predict_proba"):
        proba = model.predict_proba(x)
    return classification_metrics(metrics, y_true=y, y_pred=y_pred, proba=proba, classes=classes)


def summarize(folds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation per metric over the folds that computed it."""
    names = sorted({m for fold in folds for m in fold})
    out: dict[str, dict[str, float]] = {}
    for name in names:
        values = np.array([fold[name] for fold in folds if name in fold], dtype=float)
        out[name] = {"mean": float(values.mean()), "std": float(values.std())}
    return out
