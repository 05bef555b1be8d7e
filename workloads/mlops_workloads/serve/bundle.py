"""Loading a model directory: the skops Pipeline, its schema, drift baseline and model card.

A model directory is self-contained (see the shared data contract): ``model.skops`` holds
ONE fitted ``Pipeline`` over the raw feature columns, ``schema.json`` says what a request
must carry, ``baseline.json`` holds the training split's per-feature distribution for
drift, and ``model_card.json`` says where the model came from. ``skops_io`` checks every
type and function the file would build against exact names (what our own models are made
of) and refuses it otherwise with ``UntrustedModel``, before the server binds its port: a
tampered artifact cannot run code in the server, and the pod exits with the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

from mlops_workloads import runtime, skops_io

NUMERIC_DTYPES = frozenset({"float", "int"})
CATEGORICAL_DTYPES = frozenset({"category", "string", "bool"})


@dataclasses.dataclass(frozen=True)
class Feature:
    """One input column as ``schema.json`` declares it."""

    name: str
    dtype: str
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None

    @property
    def numeric(self) -> bool:
        return self.dtype in NUMERIC_DTYPES


@dataclasses.dataclass(frozen=True)
class Schema:
    target: str
    task: str
    features: tuple[Feature, ...]
    classes: tuple[Any, ...] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schema:
        try:
            features = tuple(
                Feature(
                    name=str(f["name"]),
                    dtype=str(f["dtype"]),
                    min=None if f.get("min") is None else float(f["min"]),
                    max=None if f.get("max") is None else float(f["max"]),
                    allowed=None if f.get("allowed") is None else tuple(f["allowed"]),
                )
                for f in data["features"]
            )
            task = str(data.get("task", "classification"))
            target = str(data.get("target", "target"))
        except (KeyError, TypeError, ValueError) as exc:
            raise runtime.WorkloadError("InvalidSchema", f"schema.json is malformed: {exc!r}") from exc
        if task not in {"classification", "regression"}:
            raise runtime.WorkloadError("InvalidSchema", f"schema.json task {task!r} is not supported")
        bad = [f.name for f in features if f.dtype not in NUMERIC_DTYPES | CATEGORICAL_DTYPES]
        if bad:
            raise runtime.WorkloadError("InvalidSchema", f"schema.json has features of unknown dtype: {bad}")
        if not features:
            raise runtime.WorkloadError("InvalidSchema", "schema.json declares no features")
        classes = data.get("classes")
        return cls(target=target, task=task, features=features, classes=tuple(classes) if classes else None)


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A loaded model directory."""

    path: pathlib.Path
    pipeline: Any
    schema: Schema
    baseline: dict[str, Any]
    card: dict[str, Any]
    digest: str
    classes: tuple[Any, ...] | None

    @property
    def task(self) -> str:
        return self.schema.task


def check_untrusted(types: list[str]) -> list[str]:
    """The types skops would not load by default, if every one is allowlisted exactly; else refuse."""
    return skops_io.check_untrusted(types)


def file_digest(path: pathlib.Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def _read_json(path: pathlib.Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise runtime.WorkloadError("ModelNotFound", f"{path.name} is missing from {path.parent}")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise runtime.WorkloadError("InvalidModel", f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise runtime.WorkloadError("InvalidModel", f"{path} must hold a JSON object")
    return value


def load(model_dir: str | pathlib.Path) -> Bundle:
    """Load and check a model directory; raise ``WorkloadError`` with what is wrong."""
    path = pathlib.Path(model_dir)
    model_file = path / "model.skops"
    if not model_file.is_file():
        raise runtime.WorkloadError("ModelNotFound", f"no model.skops in {path}")
    schema = Schema.from_json(_read_json(path / "schema.json", required=True))
    baseline = _read_json(path / "baseline.json", required=False)
    card = _read_json(path / "model_card.json", required=False)
    pipeline = skops_io.load(model_file, invalid_reason="InvalidModel")
    if not hasattr(pipeline, "predict"):
        raise runtime.WorkloadError(
            "InvalidModel", f"model.skops holds a {type(pipeline).__name__}, not a model"
        )
    classes: tuple[Any, ...] | None = None
    if schema.task == "classification":
        if not hasattr(pipeline, "predict_proba"):
            raise runtime.WorkloadError("InvalidModel", "a classification model must implement predict_proba")
        raw = getattr(pipeline, "classes_", None)
        raw_list = list(raw) if raw is not None else list(schema.classes or ())
        classes = tuple(v.item() if hasattr(v, "item") else v for v in raw_list)
        if not classes:
            raise runtime.WorkloadError("InvalidModel", "the classifier has no classes_ and schema.json none")
    return Bundle(
        path=path,
        pipeline=pipeline,
        schema=schema,
        baseline=baseline,
        card=card,
        digest=file_digest(model_file),
        classes=classes,
    )
