"""The prepare workload end to end: load → validate → clean → split → fit → digest → write.

``prepare(config)`` is what the Job's container runs and what the tests and the benchmark
call in-process; it returns the summary that becomes the termination message (≤ 4 KiB) and,
from there, the Dataset's status. The full report goes to ``report.json`` in the version.
"""

from __future__ import annotations

import logging
import pathlib
import platform
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import sklearn
import skops

from mlops_operator.api import common
from mlops_operator.api import dataset as api
from mlops_workloads.prepare import clean as clean_mod
from mlops_workloads.prepare import digest as digest_mod
from mlops_workloads.prepare import features as features_mod
from mlops_workloads.prepare import output, sources, stats
from mlops_workloads.prepare import split as split_mod
from mlops_workloads.prepare import validate as validate_mod

LOG = logging.getLogger("mlops_workloads.prepare")
RESULT_MISSING_MAX = api.STATUS_MISSING_MAX
RESULT_CLASSES_MAX = api.STATUS_CLASSES_MAX
RESULT_WARNINGS_MAX = api.STATUS_WARNINGS_MAX
RESULT_WARNINGS_CHARS = 1500
SCHEMA_CATEGORIES_MAX = 1000


def _feature_entry(column: validate_mod.Column, train: pd.DataFrame) -> dict[str, Any]:
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
        seen = sorted(str(v) for v in train[column.name].dropna().unique())
        entry["categories"] = seen[:SCHEMA_CATEGORIES_MAX]
    return entry


def _budget(warnings: list[str], limit: int = RESULT_WARNINGS_CHARS) -> list[str]:
    """The first warnings that fit in ``limit`` characters (the result has 4 KiB in all)."""
    kept: list[str] = []
    used = 0
    for warning in warnings:
        used += len(warning) + 3
        if used > limit:
            break
        kept.append(warning)
    return kept


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pyarrow.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }


def _step(name: str, started: tuple[float, float]) -> tuple[float, float]:
    """Log a step's wall and CPU time (the pod log shows where the time goes)."""
    now = (time.perf_counter(), time.process_time())
    LOG.info("%s done in %.2fs (%.2fs CPU)", name, now[0] - started[0], now[1] - started[1])
    return now


def prepare(config: api.PrepareConfig, *, scratch_dir: str | None = None) -> dict[str, Any]:
    """Prepare one version of the Dataset and return its summary."""
    begun = time.perf_counter()
    clock = (begun, time.process_time())
    spec = config.spec
    storage = common.StorageLocation.parse(spec.storage)
    with tempfile.TemporaryDirectory(prefix="mlops-prepare-", dir=scratch_dir) as scratch:
        loaded = sources.load(config, scratch=pathlib.Path(scratch))
    rows_in = len(loaded.frame)
    source_rows = loaded.rows_per_source
    clock = _step(f"load ({rows_in} rows)", clock)

    validated = validate_mod.validate(loaded.frame, spec.data_schema, task_hint=loaded.task_hint)
    del loaded
    clock = _step("validate", clock)
    cleaned = clean_mod.clean(validated, spec)
    frame = cleaned.frame
    validated.frame = frame  # the raw typed frame is no longer needed
    clock = _step("clean", clock)

    task, target, features = validated.task, validated.target, validated.features
    columns = [*features, target]
    balance = stats.class_balance(frame[target.name]) if task == "classification" else []
    notes = list(validated.warnings)
    notes += stats.warnings_for(
        frame,
        features=features,
        target=target,
        task=task,
        balance=balance,
        missing=validated.missing,
        rows_in=rows_in,
    )
    stratify = spec.split.stratify if spec.split.stratify is not None else task == "classification"
    if stratify and task == "regression":
        notes.append("spec.split.stratify is ignored for a regression target")
        stratify = False
    fractions = (spec.split.train, spec.split.validation, spec.split.test)
    splits = split_mod.split(
        frame[[c.name for c in columns]],
        target=target.name,
        stratify=stratify,
        fractions=fractions,
        seed=spec.split.seed,
    )
    del frame
    clock = _step("split", clock)

    digest = digest_mod.compute(splits, columns=columns, preparation=spec.preparation())
    clock = _step("digest", clock)
    fitted = features_mod.fit(splits["train"], columns=features, target=target.name, task=task, spec=spec)
    notes += fitted.warnings
    if task == "classification" and not stratify:
        seen = {stats.to_json_scalar(v) for v in splits["train"][target.name].unique()}
        absent = {c for c, _ in balance} - seen
        if absent:
            notes.append(f"classes {sorted(map(str, absent))[:5]} have no rows in the train split; stratify")
    clock = _step("fit preprocessor", clock)

    version = storage.join(digest)
    rows = {
        "input": rows_in,
        "output": sum(len(s) for s in splits.values()),
        "dropped": cleaned.rows_dropped,
        **{name: len(s) for name, s in splits.items()},
    }
    total = max(1, rows["output"])
    classes = sorted((label for label, _ in balance), key=lambda v: (str(type(v)), v))
    schema_doc: dict[str, Any] = {
        "target": target.name,
        "task": task,
        # The model's inputs: what serving asks for. String columns (identifiers, free text) stay
        # in the splits but the preprocessor never reads them, so a request need not carry them.
        "features": [_feature_entry(c, splits["train"]) for c in features if c.dtype != "string"],
        "ignored": [c.name for c in features if c.dtype == "string"],
    }
    if task == "classification":
        schema_doc["classes"] = classes
    report = {
        "dataset": config.dataset,
        "namespace": config.namespace,
        "digest": digest,
        "task": task,
        "target": target.name,
        "rows": rows,
        "dropped": cleaned.dropped,
        "duplicatesRemoved": cleaned.dropped["duplicates"],
        "violations": validated.violations,
        "missing": validated.missing,
        "classBalance": [{"class": c, "count": n, "fraction": n / total} for c, n in balance],
        "warnings": notes,
        "columns": [
            {
                "name": c.name,
                "dtype": c.dtype,
                "declared": c.declared is not None,
                "missing": validated.missing.get(c.name, 0),
            }
            for c in columns
        ],
        "sources": [
            {"source": sources.label(i, s), "rows": n}
            for i, (s, n) in enumerate(zip(spec.sources, source_rows, strict=True))
        ],
        "featuresOut": len(fitted.feature_names_out),
    }
    manifest = {
        "format": 1,
        "digest": digest,
        "storageUri": version.uri(),
        "dataset": config.dataset,
        "namespace": config.namespace,
        "rows": {name: len(s) for name, s in splits.items()},
        "files": sorted(
            [f"{n}.parquet" for n in splits]
            + ["preprocessor.skops", "schema.json", "baseline.json", "report.json"]
        ),
        "featureNamesOut": fitted.feature_names_out,
        "spec": spec.preparation(),
        "versions": _versions(),
    }
    documents = {
        "schema.json": schema_doc,
        "baseline.json": stats.baseline(splits["train"], features=features, target=target, task=task),
        "report.json": report,
        output.MANIFEST: manifest,
    }
    root = pathlib.Path(storage.local_path(config.pvc_root))
    _, written = output.write_version(
        root, digest, splits=splits, preprocessor=fitted.preprocessor, documents=documents
    )
    _step("write" if written else "write (version already present)", clock)

    missing_top = sorted(validated.missing.items(), key=lambda p: (-p[1], p[0]))[:RESULT_MISSING_MAX]
    return {
        "digest": digest,
        "storageUri": version.uri(),
        "task": task,
        "target": target.name,
        "rows": rows,
        "dropped": cleaned.dropped,
        "duplicatesRemoved": cleaned.dropped["duplicates"],
        "columns": len(features),
        "features": len(fitted.feature_names_out),
        "classes": len(balance) if task == "classification" else None,
        "classBalance": {str(c)[:64]: n for c, n in balance[:RESULT_CLASSES_MAX]},
        "missing": {name[:64]: n for name, n in missing_top},
        "warnings": _budget([w[: api.WARNING_LENGTH_MAX] for w in notes[:RESULT_WARNINGS_MAX]]),
        "reused": not written,
        "seconds": round(time.perf_counter() - begun, 3),
    }
