"""Predictions of one model on one set of rows, and the metric, as training computes it.

A classifier's answer is the class of its highest probability, as the model server answers
(``serve.app``), so the score is the score of what is served. Its probabilities are laid out
over the classes both models are scored on (the sorted union of both models' classes and the
labels seen, see ``union``), a class the model does not know getting probability 0: precision,
recall and F1's positive class, ROC AUC and log loss then mean the same for both models. An
XGBoost classifier trained on labels other than 0..n-1 has class indices; the bundle maps them
back to the labels with the model card's ``labelEncoding`` (``serve.bundle.decoded_classes``).

Labels are normalised before they are compared (a numpy scalar becomes a Python value, an
integral float an int), so a label ``1`` captured from a request and a ``1.0`` in a split are
the same class.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mlops_workloads import runtime
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.train import evaluate as train_eval

SIGNIFICANT_DIGITS = 6


def normalise_label(value: Any) -> Any:
    """A label as a plain Python value; an integral float as an int (1.0 → 1)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def union(*groups: Iterable[Any]) -> tuple[Any, ...]:
    """The sorted union of label groups (by value; by type and text when types do not compare)."""
    labels = {normalise_label(v) for group in groups for v in group}
    try:
        return tuple(sorted(labels))
    except TypeError:
        return tuple(sorted(labels, key=lambda v: (type(v).__name__, str(v))))


def label_array(values: Iterable[Any]) -> np.ndarray:
    """Normalised labels as an array sklearn types as binary/multiclass (never object of ints)."""
    listed = [normalise_label(v) for v in values]
    if listed and all(isinstance(v, bool) for v in listed):
        return np.asarray(listed, dtype=bool)
    if listed and all(isinstance(v, int) and not isinstance(v, bool) for v in listed):
        return np.asarray(listed, dtype=np.int64)
    if listed and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in listed):
        return np.asarray(listed, dtype=np.float64)
    return np.asarray([str(v) for v in listed], dtype=object)


@dataclasses.dataclass(frozen=True)
class Model:
    """A loaded model directory and what scoring it needs."""

    role: str  # champion or challenger
    bundle: bundle_mod.Bundle
    classes: tuple[Any, ...] | None  # the labels its probability columns stand for

    @property
    def features(self) -> tuple[str, ...]:
        return self.bundle.schema.names


def model_classes(bundle: bundle_mod.Bundle) -> tuple[Any, ...] | None:
    """The labels of a classifier's probability columns (the bundle decodes ``labelEncoding``)."""
    if bundle.task != "classification":
        return None
    return tuple(normalise_label(c) for c in bundle.classes or ())


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One model's answers on one set: labels and probabilities (over the union), or values."""

    values: np.ndarray
    proba: np.ndarray | None = None

    def take(self, rows: Any) -> Prediction:
        """The answers of ``rows`` (a boolean mask or a slice)."""
        return Prediction(values=self.values[rows], proba=None if self.proba is None else self.proba[rows])

    @classmethod
    def concat(cls, parts: Sequence[Prediction]) -> Prediction:
        values = np.concatenate([p.values for p in parts]) if parts else np.asarray([])
        probas = [p.proba for p in parts if p.proba is not None]
        proba = np.concatenate(probas) if probas and len(probas) == len(parts) else None
        return cls(values=values, proba=proba)


def predict(model: Model, frame: Any, *, what: str, classes: Sequence[Any]) -> Prediction:
    """``model``'s answers on ``frame`` (raw features); ``EvaluationFailed`` if it cannot give them."""
    pipeline = model.bundle.pipeline
    x = frame[list(model.features)]
    try:
        if model.classes is None:
            values = np.asarray(pipeline.predict(x), dtype=np.float64).reshape(-1)
            proba = None
        else:
            raw = np.asarray(pipeline.predict_proba(x), dtype=np.float64)
            if raw.ndim != 2 or raw.shape[1] != len(model.classes):
                raise ValueError(f"predict_proba gave shape {raw.shape} for {len(model.classes)} classes")
            own = np.asarray(model.classes, dtype=object)
            values = label_array(own[raw.argmax(axis=1)])
            proba = np.zeros((raw.shape[0], len(classes)), dtype=np.float64)
            position = {c: i for i, c in enumerate(classes)}
            for j, c in enumerate(model.classes):
                proba[:, position[c]] = raw[:, j]
    except runtime.WorkloadError:
        raise
    except Exception as exc:
        raise runtime.WorkloadError(
            "EvaluationFailed",
            f"{model.role}: cannot score the {what} rows: {type(exc).__name__}: {exc}"[:900],
        ) from exc
    if len(values) != len(frame):
        raise runtime.WorkloadError(
            "EvaluationFailed",
            f"{model.role}: answered {len(values)} predictions for {len(frame)} {what} rows",
        )
    return Prediction(values=values, proba=proba)


def metric_value(
    metric: str, *, task: str, y_true: np.ndarray, prediction: Prediction, classes: Sequence[Any]
) -> tuple[float | None, list[str]]:
    """``metric`` of one model's ``prediction`` (None, with why, when it cannot be computed)."""
    if len(y_true) == 0:
        return None, []
    if task == "regression":
        out, problems = train_eval.regression_metrics([metric], y_true=y_true, y_pred=prediction.values)
    else:
        out, problems = train_eval.classification_metrics(
            [metric],
            y_true=y_true,
            y_pred=prediction.values,
            proba=prediction.proba,
            classes=list(classes),
        )
    value = out.get(metric)
    if value is None and not problems:
        problems = [f"{metric}: not computable on these rows"]
    return value, problems


def rounded(value: float | None) -> float | None:
    """``value`` to ``SIGNIFICANT_DIGITS`` significant digits (None and non-finite stay None)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
