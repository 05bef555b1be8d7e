"""Types and constraints: raw columns become typed ones, and rows that break the schema are found.

A declared column is converted to its declared type; a value that cannot be converted (``"abc"``
in a float column, ``2.5`` in an int column) is a *type* violation, not a missing value, so the
report can tell "the data is incomplete" from "the data is wrong". Undeclared columns get
inferred types. Everything here is column-at-a-time (vectorised pandas/numpy): no per-row Python.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlops_operator.api import dataset as api
from mlops_workloads import runtime

BoolArray = npt.NDArray[np.bool_]

BOOL_WORDS = {
    "true": True,
    "t": True,
    "yes": True,
    "y": True,
    "1": True,
    "false": False,
    "f": False,
    "no": False,
    "n": False,
    "0": False,
}
CLASSIFICATION_MAX_DISTINCT = 20
NUMERIC_INFERENCE_SHARE = 0.9
IDENTIFIER_MIN_DISTINCT = 50
VIOLATION_KINDS = ("type", "required", "min", "max", "allowed")


@dataclasses.dataclass(frozen=True)
class Column:
    """A column as prepared: its final type and its declaration, if any."""

    name: str
    dtype: api.ColumnType
    declared: api.ColumnSpec | None = None

    @property
    def numeric(self) -> bool:
        return self.dtype in ("float", "int")


@dataclasses.dataclass
class Validated:
    frame: pd.DataFrame
    features: list[Column]
    target: Column
    task: api.Task
    violations: dict[str, dict[str, int]]
    violating: BoolArray
    missing: dict[str, int]
    warnings: list[str]
    examples: dict[str, list[str]]

    def describe_violations(self, limit: int = 6) -> str:
        parts = []
        for name, kinds in list(self.violations.items())[:limit]:
            text = ", ".join(f"{n} {_KIND_TEXT[k]}" for k, n in kinds.items() if n)
            example = self.examples.get(name)
            if example:
                text += f" (e.g. {', '.join(repr(e) for e in example)})"
            parts.append(f"column {name!r}: {text}")
        if len(self.violations) > limit:
            parts.append(f"and {len(self.violations) - limit} more columns")
        return "; ".join(parts)


_KIND_TEXT = {
    "type": "of the wrong type",
    "required": "missing but required",
    "min": "below min",
    "max": "above max",
    "allowed": "not in allowed",
}


def validate(frame: pd.DataFrame, schema: api.DatasetSchema, *, task_hint: api.Task | None) -> Validated:
    """Type every column, check declared constraints, work out target and task."""
    warnings: list[str] = []
    present_excluded = [c for c in schema.exclude if c in frame.columns]
    for name in schema.exclude:
        if name not in frame.columns:
            warnings.append(f"spec.schema.exclude names {name!r}, which is not in the data")
    frame = frame.drop(columns=present_excluded)
    columns_text = ", ".join(map(repr, list(frame.columns)[:30]))
    declared = {c.name: c for c in schema.columns}
    absent = [name for name in declared if name not in frame.columns]
    if absent:
        raise runtime.WorkloadError(
            "SchemaMismatch",
            f"declared column(s) {absent} are not in the data (it has {columns_text}); fix "
            "spec.schema.columns or the source",
        )
    if schema.target not in frame.columns:
        raise runtime.WorkloadError(
            "SchemaMismatch",
            f"the target column {schema.target!r} is not in the data (it has {columns_text}); set "
            "spec.schema.target",
        )

    typed: dict[str, Any] = {}
    columns: dict[str, Column] = {}
    violations: dict[str, dict[str, int]] = {}
    examples: dict[str, list[str]] = {}
    missing: dict[str, int] = {}
    violating = np.zeros(len(frame), dtype=bool)
    for name in frame.columns:
        raw = frame[name]
        spec = declared.get(name)
        dtype = spec.type if spec is not None else infer_type(raw)
        if name == schema.target:
            dtype = _target_type(raw, dtype, schema=schema, task_hint=task_hint)
        values, present, bad = coerce(raw, dtype)
        kinds = _constraint_violations(values, present, bad, spec)
        missing_count = int((~present).sum())
        if missing_count:
            missing[name] = missing_count
        if spec is None and dtype in ("float", "int") and kinds["type"]:
            warnings.append(
                f"column {name!r} was inferred as {dtype}; {kinds['type']} values are not numbers"
            )
        if spec is None and dtype == "string":
            warnings.append(
                f"column {name!r} looks like an identifier or free text ({raw.nunique()} distinct values): "
                "kept in the splits but not used as a feature; declare it as category to encode it"
            )
        if any(kinds.values()):
            violations[name] = {k: n for k, n in kinds.items() if n}
            row_bad = bad.copy()
            if spec is not None:
                row_bad |= _constraint_mask(values, present, spec)
            violating |= row_bad
            examples[name] = [str(v) for v in raw[row_bad].head(3).tolist()]
        typed[name] = values
        columns[name] = Column(name=name, dtype=dtype, declared=spec)

    out = pd.DataFrame(typed, index=frame.index)
    target = columns[schema.target]
    task = _task(out[target.name], target.dtype, schema=schema, task_hint=task_hint)
    features = [c for n, c in columns.items() if n != schema.target]
    return Validated(
        frame=out,
        features=features,
        target=target,
        task=task,
        violations=violations,
        violating=violating,
        missing=missing,
        warnings=warnings,
        examples=examples,
    )


# ---------------------------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------------------------


def _is_text(series: pd.Series) -> bool:
    return not (
        pd.api.types.is_numeric_dtype(series.dtype)
        or pd.api.types.is_bool_dtype(series.dtype)
        or pd.api.types.is_datetime64_any_dtype(series.dtype)
    )


def _text(series: pd.Series) -> pd.Series:
    """Stripped text with empty strings as missing."""
    text = series.astype("str").str.strip()
    return text.mask(text == "")


def infer_type(raw: pd.Series) -> api.ColumnType:
    """The type of an undeclared column, from its pandas dtype and values."""
    dtype = raw.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if not _is_text(raw):
        return "string"  # dates and the like: kept, not encoded
    text = _text(raw).dropna()
    if text.empty:
        return "float"
    numbers = pd.to_numeric(text, errors="coerce")
    share = float(numbers.notna().mean())
    if share >= NUMERIC_INFERENCE_SHARE:
        finite = numbers.dropna().to_numpy(dtype="float64")
        return "int" if share == 1.0 and bool(np.all(finite == np.floor(finite))) else "float"
    if text.str.lower().isin(list(BOOL_WORDS)).all():
        return "bool"
    distinct = text.nunique()
    if distinct >= IDENTIFIER_MIN_DISTINCT and distinct > 0.5 * len(text):
        return "string"
    return "category"


def _floats(raw: pd.Series) -> tuple[npt.NDArray[np.float64], BoolArray]:
    """(values as float64 with NaN, present-in-input mask)."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        present = raw.notna().to_numpy()
        return raw.astype("Float64").to_numpy(dtype="float64", na_value=np.nan), present
    if pd.api.types.is_numeric_dtype(raw.dtype):
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        return values, ~np.isnan(values)
    text = _text(raw)
    present = text.notna().to_numpy()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values, present


def coerce(raw: pd.Series, dtype: api.ColumnType) -> tuple[Any, BoolArray, BoolArray]:
    """Convert ``raw`` to ``dtype``: (typed values, present-in-input mask, wrong-type mask)."""
    if dtype in ("float", "int"):
        values, present = _floats(raw)
        finite = np.isfinite(values)
        bad = present & ~finite
        if dtype == "int":
            bad |= finite & (values != np.floor(values))
        values = np.where(bad, np.nan, values)
        if dtype == "float":
            return pd.Series(values, index=raw.index, dtype="float64"), present, bad
        return pd.Series(values, index=raw.index).astype("Int64"), present, bad
    if dtype == "bool":
        if pd.api.types.is_bool_dtype(raw.dtype):
            present = raw.notna().to_numpy()
            return raw.astype("boolean"), present, np.zeros(len(raw), dtype=bool)
        if pd.api.types.is_numeric_dtype(raw.dtype):
            values, present = _floats(raw)
            mapped = pd.Series(
                np.where(values == 1, True, np.where(values == 0, False, np.nan)).astype(object),
                index=raw.index,
            )
        else:
            text = _text(raw)
            present = text.notna().to_numpy()
            mapped = text.str.lower().map(BOOL_WORDS)
        typed = mapped.astype("boolean")
        bad = present & typed.isna().to_numpy()
        return typed, present, bad
    # category / string
    if pd.api.types.is_bool_dtype(raw.dtype) or not _is_text(raw):
        present = raw.notna().to_numpy()
        if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
            values, _ = _floats(raw)
            finite = values[np.isfinite(values)]
            if bool(np.all(finite == np.floor(finite))):
                as_int = pd.Series(values, index=raw.index).astype("Int64")
                return as_int.astype("str"), present, np.zeros(len(raw), dtype=bool)
        return raw.astype("str").mask(~present), present, np.zeros(len(raw), dtype=bool)
    text = _text(raw)
    return text, text.notna().to_numpy(), np.zeros(len(raw), dtype=bool)


# ---------------------------------------------------------------------------------------------
# Constraints
# ---------------------------------------------------------------------------------------------


def _range_masks(values: Any, spec: api.ColumnSpec) -> tuple[BoolArray, BoolArray]:
    numbers = np.asarray(pd.Series(values).to_numpy(dtype="float64", na_value=np.nan))
    with np.errstate(invalid="ignore"):
        low = numbers < spec.min if spec.min is not None else np.zeros(len(numbers), dtype=bool)
        high = numbers > spec.max if spec.max is not None else np.zeros(len(numbers), dtype=bool)
    return np.asarray(low, dtype=bool), np.asarray(high, dtype=bool)


def _allowed_mask(values: Any, present: BoolArray, spec: api.ColumnSpec) -> BoolArray:
    if spec.allowed is None:
        return np.zeros(len(present), dtype=bool)
    return np.asarray(present & ~pd.Series(values).isin(list(spec.allowed)).to_numpy(), dtype=bool)


def _constraint_mask(values: Any, present: BoolArray, spec: api.ColumnSpec) -> BoolArray:
    mask = np.zeros(len(present), dtype=bool)
    if spec.required:
        mask |= ~present
    if spec.type in ("float", "int") and (spec.min is not None or spec.max is not None):
        low, high = _range_masks(values, spec)
        mask |= low | high
    return mask | _allowed_mask(values, present, spec)


def _constraint_violations(
    values: Any, present: BoolArray, bad: BoolArray, spec: api.ColumnSpec | None
) -> dict[str, int]:
    kinds = dict.fromkeys(VIOLATION_KINDS, 0)
    kinds["type"] = int(bad.sum())
    if spec is None:
        return kinds
    if spec.required:
        kinds["required"] = int((~present).sum())
    if spec.type in ("float", "int") and (spec.min is not None or spec.max is not None):
        low, high = _range_masks(values, spec)
        kinds["min"], kinds["max"] = int(low.sum()), int(high.sum())
    kinds["allowed"] = int(_allowed_mask(values, present, spec).sum())
    return kinds


# ---------------------------------------------------------------------------------------------
# Target and task
# ---------------------------------------------------------------------------------------------


def _target_type(
    raw: pd.Series, dtype: api.ColumnType, *, schema: api.DatasetSchema, task_hint: api.Task | None
) -> api.ColumnType:
    """The target's type, adjusted to the task: integral floats are int labels for classification."""
    task = schema.task or task_hint
    if dtype == "string":
        dtype = "category"
    if task == "regression" and dtype not in ("float", "int"):
        raise runtime.WorkloadError(
            "SchemaMismatch",
            f"the target {schema.target!r} holds {dtype} values; a regression target must be numeric "
            "(or set spec.schema.task: classification)",
        )
    if dtype == "float" and task != "regression":
        values, present = _floats(raw)
        finite = values[present & np.isfinite(values)]
        integral = bool(np.all(finite == np.floor(finite)))
        if integral and (task == "classification" or len(np.unique(finite)) <= CLASSIFICATION_MAX_DISTINCT):
            return "int"
        if task == "classification":
            raise runtime.WorkloadError(
                "SchemaMismatch",
                f"the target {schema.target!r} holds non-integer numbers; a classification target must hold "
                "labels (text, bool or integers); set spec.schema.task: regression if it is a quantity",
            )
    return dtype


def _task(
    target: pd.Series, dtype: api.ColumnType, *, schema: api.DatasetSchema, task_hint: api.Task | None
) -> api.Task:
    if schema.task is not None:
        return schema.task
    if task_hint is not None:
        return task_hint
    if dtype in ("category", "bool", "string"):
        return "classification"
    distinct = target.nunique(dropna=True)
    return "classification" if dtype == "int" and distinct <= CLASSIFICATION_MAX_DISTINCT else "regression"
