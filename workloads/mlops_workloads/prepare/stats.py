"""Data-quality warnings, class balance and the drift baseline.

Warnings never fail a Dataset (the data may be right and the model may cope), but each one
names a problem that has cost people days: a class too rare to learn, a constant column, a
column that simply *is* the target (leakage that makes validation scores meaningless).
The baseline is the train split's per-feature distribution that ModelDeployment compares
live traffic against (PSI): decile bins for numbers, value shares for categories.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops_operator.api import dataset as api
from mlops_workloads.prepare import validate as validate_mod

IMBALANCE_RATIO = 0.1
HIGH_MISSING_SHARE = 0.5
LEAK_SAMPLE = 10_000
LEAK_CORRELATION = 0.999999
BASELINE_BINS = 10
BASELINE_MAX_CATEGORIES = 100
QUANTILE_SAMPLE = 200_000
OTHER = "__other__"


def class_balance(target: pd.Series) -> list[tuple[Any, int]]:
    """(label, rows) per class, largest first, ties by label."""
    counts = target.value_counts(dropna=True)
    pairs = [(to_json_scalar(label), int(n)) for label, n in counts.items()]
    pairs.sort(key=lambda p: (-p[1], str(p[0])))
    return pairs


def to_json_scalar(value: Any) -> Any:
    """numpy/pandas scalars as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def warnings_for(
    frame: pd.DataFrame,
    *,
    features: list[validate_mod.Column],
    target: validate_mod.Column,
    task: api.Task,
    balance: list[tuple[Any, int]],
    missing: dict[str, int],
    rows_in: int,
) -> list[str]:
    notes: list[str] = []
    if task == "classification" and len(balance) >= 2:
        largest = balance[0][1]
        label, smallest = balance[-1]
        if smallest < IMBALANCE_RATIO * largest:
            share = smallest / max(1, sum(n for _, n in balance))
            notes.append(
                f"severe class imbalance: class {label!r} has {smallest} rows ({share:.1%}) "
                f"against {largest} "
                f"for {balance[0][0]!r}; consider class weights or more data"
            )
    if task == "classification" and len(balance) == 1:
        notes.append(f"the target has a single class ({balance[0][0]!r}): nothing to learn")
    for name, count in missing.items():
        if rows_in and count / rows_in >= HIGH_MISSING_SHARE and name != target.name:
            notes.append(f"column {name!r} is missing in {count / rows_in:.0%} of the input rows")
    y = frame[target.name]
    y_numbers = _numbers(y) if task == "regression" else None
    classes = len(balance)
    for column in features:
        series = frame[column.name]
        if _constant(series):
            notes.append(f"column {column.name!r} is constant: it carries no information")
            continue
        if task == "classification":
            if _maps_one_to_one(series, y, classes):
                notes.append(
                    f"target leakage: column {column.name!r} maps one-to-one onto the target "
                    f"{target.name!r}; remove it (spec.schema.exclude) unless it is known at prediction time"
                )
        elif y_numbers is not None and column.numeric and _linear(series, y_numbers):
            notes.append(
                f"target leakage: column {column.name!r} is a linear function of the target {target.name!r}; "
                "remove it (spec.schema.exclude) unless it is known at prediction time"
            )
    return notes


def _numbers(series: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(series.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64)


def _constant(series: pd.Series) -> bool:
    values = series.dropna()
    if values.empty:
        return True
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = _numbers(values)
        return bool(numbers.min() == numbers.max())
    first = values.iloc[0]
    return bool((values == first).all())


def _maps_one_to_one(feature: pd.Series, target: pd.Series, classes: int) -> bool:
    """True when every feature value goes with one class and every class with one value."""
    sample = feature.iloc[:LEAK_SAMPLE]
    if sample.nunique(dropna=False) > classes:  # a subset already has too many values to be a bijection
        return False
    if feature.nunique(dropna=False) != classes:
        return False
    pairs = pd.DataFrame({"f": feature.to_numpy(), "t": target.to_numpy()}).drop_duplicates()
    return len(pairs) == classes


def _linear(feature: pd.Series, target: np.ndarray[Any, np.dtype[np.float64]]) -> bool:
    x = _numbers(feature)
    ok = ~(np.isnan(x) | np.isnan(target))
    if ok.sum() < 3:
        return False
    x, y = x[ok], target[ok]
    if np.array_equal(x, y):
        return True
    xs, ys = x.std(), y.std()
    if xs == 0 or ys == 0:
        return False
    corr = float(np.mean((x - x.mean()) * (y - y.mean())) / (xs * ys))
    return abs(corr) >= LEAK_CORRELATION


def baseline(
    train: pd.DataFrame, *, features: list[validate_mod.Column], target: validate_mod.Column, task: api.Task
) -> dict[str, Any]:
    """Per-column statistics of the train split (see ARCHITECTURE's data contract)."""
    out: dict[str, Any] = {}
    for column in features:
        if column.dtype == "string":
            continue
        out[column.name] = column_baseline(train[column.name], column.dtype)
    return {
        "version": 1,
        "split": "train",
        "rows": len(train),
        "binning": "numeric: bin i holds edges[i] <= x < edges[i+1]; values below edges[0] fall in the "
        "first bin and values from edges[-1] on in the last (np.searchsorted(edges[1:-1], x, side='right')); "
        "categorical: shares of str(value), rarer values than the top 100 pooled as '__other__'",
        "features": out,
        "target": column_baseline(train[target.name], "category" if task == "classification" else "float"),
    }


def column_baseline(series: pd.Series, dtype: api.ColumnType) -> dict[str, Any]:
    rows = len(series)
    if dtype in ("float", "int"):
        numbers = _numbers(series)
        values = numbers[~np.isnan(numbers)]
        missing = (rows - values.size) / rows if rows else 0.0
        if values.size == 0:
            return {"type": "numeric", "edges": [], "proportions": [], "missing": missing}
        # Edges from at most QUANTILE_SAMPLE evenly strided values (deterministic, and plenty for
        # decile edges); the shares below are counted on every value.
        step = max(1, values.size // QUANTILE_SAMPLE)
        edges = np.unique(np.quantile(values[::step], np.linspace(0.0, 1.0, BASELINE_BINS + 1)))
        edges[0], edges[-1] = min(edges[0], values.min()), max(edges[-1], values.max())
        if edges.size == 1:
            edges = np.array([edges[0], edges[0]])
        # Bin i holds edges[i] <= x < edges[i+1] (np.searchsorted(edges[1:-1], x, side="right")),
        # counted with one comparison per inner edge instead of a binary search per value.
        at_least = np.array([values.size] + [np.count_nonzero(values >= e) for e in edges[1:-1]] + [0])
        proportions = -np.diff(at_least) / values.size
        return {
            "type": "numeric",
            "edges": [float(e) for e in edges],
            "proportions": [float(p) for p in proportions],
            "missing": missing,
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(edges[0]),
            "max": float(edges[-1]),
        }
    present = series.dropna()
    missing = (rows - len(present)) / rows if rows else 0.0
    shares = present.astype("str").value_counts(normalize=True)
    pairs = sorted(((str(k), float(v)) for k, v in shares.items()), key=lambda p: (-p[1], p[0]))
    top = dict(pairs[:BASELINE_MAX_CATEGORIES])
    rest = sum(v for _, v in pairs[BASELINE_MAX_CATEGORIES:])
    if rest:
        top[OTHER] = rest
    return {"type": "categorical", "proportions": top, "missing": missing}
