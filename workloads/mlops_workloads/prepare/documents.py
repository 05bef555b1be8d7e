"""What a preparation writes beside its splits, and the summary it answers with: one definition
for both paths (in memory, ``pipeline``; streamed, ``stream``).

A version directory is read by the trainers, the model server and people, whichever path made
it, so ``schema.json``, ``report.json``, ``manifest.json`` and the termination summary are
built here from one :class:`Outcome`; only what each path knows differently (where a column's
categories come from, the drift baseline) is handed in.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import sklearn
import skops

from mlops_operator.api import dataset as api
from mlops_workloads.prepare import output, sources
from mlops_workloads.prepare import retention as retention_mod
from mlops_workloads.prepare import validate as validate_mod

RESULT_MISSING_MAX = api.STATUS_MISSING_MAX
RESULT_CLASSES_MAX = api.STATUS_CLASSES_MAX
RESULT_WARNINGS_MAX = api.STATUS_WARNINGS_MAX
RESULT_WARNINGS_CHARS = 1500
SCHEMA_CATEGORIES_MAX = 1000
VERSION_FILES = ("preprocessor.skops", "schema.json", "baseline.json", "report.json")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one preparation found: the numbers its documents and its summary report."""

    config: api.PrepareConfig
    digest: str
    version_uri: str
    rows: dict[str, int]  # input, output, dropped, and one count per split
    split_rows: dict[str, int]
    dropped: dict[str, int]
    violations: Any
    missing: dict[str, int]
    balance: list[tuple[Any, int]]
    notes: list[str]
    features: list[validate_mod.Column]
    target: validate_mod.Column
    task: api.Task
    source_rows: Sequence[int]
    feature_names_out: list[str]
    preparation: dict[str, Any]


def feature_entry(column: validate_mod.Column, values: pd.DataFrame) -> dict[str, Any]:
    """A model input in schema.json; a category column lists the values seen in ``values``."""
    entry: dict[str, Any] = {"name": column.name, "dtype": column.dtype}
    spec = column.declared
    entry["required"] = bool(spec.required) if spec is not None else False
    if spec is not None and spec.min is not None:
        entry["min"] = spec.min
    if spec is not None and spec.max is not None:
        entry["max"] = spec.max
    if spec is not None and spec.allowed is not None:
        entry["allowed"] = list(spec.allowed)
    if column.dtype == "category":
        seen = sorted(str(v) for v in values[column.name].dropna().unique())
        entry["categories"] = seen[:SCHEMA_CATEGORIES_MAX]
    return entry


def budget(warnings: list[str], limit: int = RESULT_WARNINGS_CHARS) -> list[str]:
    """The first warnings that fit in ``limit`` characters (the result has 4 KiB in all)."""
    kept: list[str] = []
    used = 0
    for warning in warnings:
        used += len(warning) + 3
        if used > limit:
            break
        kept.append(warning)
    return kept


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pyarrow.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }


def documents(
    outcome: Outcome,
    *,
    values_of: Callable[[validate_mod.Column], pd.DataFrame],
    baseline: dict[str, Any],
) -> dict[str, Any]:
    """schema.json, baseline.json, report.json and manifest.json (the one written last).

    ``values_of(column)`` holds the train values a category column's list is taken from.
    """
    o = outcome
    total = max(1, o.rows["output"])
    classes = sorted((label for label, _ in o.balance), key=lambda v: (str(type(v)), v))
    schema_doc: dict[str, Any] = {
        "target": o.target.name,
        "task": o.task,
        # The model's inputs: what serving asks for. String columns (identifiers, free text) stay
        # in the splits but the preprocessor never reads them, so a request need not carry them.
        "features": [feature_entry(c, values_of(c)) for c in o.features if c.dtype != "string"],
        "ignored": [c.name for c in o.features if c.dtype == "string"],
    }
    if o.task == "classification":
        schema_doc["classes"] = classes
    report = {
        "dataset": o.config.dataset,
        "namespace": o.config.namespace,
        "digest": o.digest,
        "task": o.task,
        "target": o.target.name,
        "rows": o.rows,
        "dropped": o.dropped,
        "duplicatesRemoved": o.dropped["duplicates"],
        "violations": o.violations,
        "missing": o.missing,
        "classBalance": [{"class": c, "count": n, "fraction": n / total} for c, n in o.balance],
        "warnings": o.notes,
        "columns": [
            {
                "name": c.name,
                "dtype": c.dtype,
                "declared": c.declared is not None,
                "missing": o.missing.get(c.name, 0),
            }
            for c in [*o.features, o.target]
        ],
        "sources": [
            {"source": sources.label(i, s), "rows": n}
            for i, (s, n) in enumerate(zip(o.config.spec.sources, o.source_rows, strict=True))
        ],
        "featuresOut": len(o.feature_names_out),
    }
    manifest = {
        "format": 1,
        "digest": o.digest,
        "storageUri": o.version_uri,
        "dataset": o.config.dataset,
        "namespace": o.config.namespace,
        "rows": dict(o.split_rows),
        "files": sorted([f"{n}.parquet" for n in o.split_rows] + list(VERSION_FILES)),
        "featureNamesOut": o.feature_names_out,
        "spec": o.preparation,
        "versions": library_versions(),
    }
    return {
        "schema.json": schema_doc,
        "baseline.json": baseline,
        "report.json": report,
        output.MANIFEST: manifest,
    }


def summary(outcome: Outcome, *, written: bool, deleted: list[str], seconds: float) -> dict[str, Any]:
    """The termination result (≤ 4 KiB), which becomes the Dataset's status."""
    o = outcome
    missing_top = sorted(o.missing.items(), key=lambda p: (-p[1], p[0]))[:RESULT_MISSING_MAX]
    return {
        "digest": o.digest,
        "storageUri": o.version_uri,
        "task": o.task,
        "target": o.target.name,
        "rows": o.rows,
        "dropped": o.dropped,
        "duplicatesRemoved": o.dropped["duplicates"],
        "columns": len(o.features),
        "features": len(o.feature_names_out),
        "classes": len(o.balance) if o.task == "classification" else None,
        "classBalance": {str(c)[:64]: n for c, n in o.balance[:RESULT_CLASSES_MAX]},
        "missing": {name[:64]: n for name, n in missing_top},
        "warnings": budget([w[: api.WARNING_LENGTH_MAX] for w in o.notes[:RESULT_WARNINGS_MAX]]),
        "reused": not written,
        "deleted": deleted[: retention_mod.DELETED_REPORT_MAX],
        "seconds": round(seconds, 3),
    }
