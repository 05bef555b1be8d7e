"""Loading a model directory: the skops Pipeline, its schema, drift baseline and model card.

A model directory is self-contained (see the shared data contract): ``model.skops`` holds
ONE fitted ``Pipeline`` over the raw feature columns, ``schema.json`` says what a request
must carry, ``baseline.json`` holds the training split's per-feature distribution for
drift, and ``model_card.json`` says where the model came from. ``skops_io`` checks every
type and function the file would build against exact names (what our own models are made
of) and refuses it otherwise with ``UntrustedModel``, before the server binds its port: a
tampered artifact cannot run code in the server, and the pod exits with the reason.

A network trained by the built-in PyTorch trainer comes as ``model.onnx`` (the network,
run by onnxruntime on the CPU; ONNX is a protobuf of a graph and weights, loading it runs no
code) with ``preprocessor.skops`` (the Dataset's fitted preprocessor, checked against the
same skops allowlist). ``OnnxPipeline`` puts the two together behind the interface of a
skops Pipeline (``predict``, ``predict_proba``, ``classes_``), so the app, drift and
low-confidence tracking serve it unchanged. torch is never imported here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import threading
from typing import Any

import numpy as np

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

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)  # read by every request: computed once

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


def files_digest(paths: list[pathlib.Path]) -> str:
    """One sha256 over several files, in order (each prefixed by its name and length)."""
    sha = hashlib.sha256()
    for path in paths:
        sha.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                sha.update(chunk)
    return "sha256:" + sha.hexdigest()


class OnnxPipeline:
    """``preprocessor.skops`` then ``model.onnx``: a skops Pipeline's predict/predict_proba/classes_.

    The preprocessor's output is densified to float32 (the network's input type); the ONNX
    model outputs class probabilities (in the order of ``classes_``) or the prediction.
    onnxruntime sessions do not survive ``fork`` (their thread pool stays in the parent),
    and the server forks its workers after loading, so each process opens its own session
    on first use.
    """

    def __init__(
        self,
        *,
        preprocessor: Any,
        model: bytes,
        session: Any,
        task: str,
        classes: tuple[Any, ...] | None,
    ) -> None:
        self.preprocessor = preprocessor
        self.task = task
        self.input_name = str(session.get_inputs()[0].name)
        self.output_name = str(session.get_outputs()[0].name)
        self.width = session.get_inputs()[0].shape[1]
        if classes is not None:
            self.classes_ = np.asarray(classes, dtype=object)
        self._model = model
        self._session = session
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """This process's onnxruntime session."""
        with self._lock:
            if self._pid != os.getpid():
                self._session = _session(self._model)
                self._pid = os.getpid()
            return self._session

    def features(self, frame: Any) -> np.ndarray:
        x = self.preprocessor.transform(frame)
        if hasattr(x, "toarray"):
            x = x.toarray()
        matrix = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if matrix.ndim != 2 or (isinstance(self.width, int) and matrix.shape[1] != self.width):
            raise ValueError(
                f"the preprocessor gave shape {matrix.shape}; model.onnx wants {self.width} columns"
            )
        return matrix

    def _run(self, frame: Any) -> np.ndarray:
        (out,) = self.session.run([self.output_name], {self.input_name: self.features(frame)})
        return np.asarray(out, dtype=np.float64)

    def predict_proba(self, frame: Any) -> np.ndarray:
        if self.task != "classification":
            raise AttributeError("a regression model has no predict_proba")
        return self._run(frame)

    def predict(self, frame: Any) -> np.ndarray:
        out = self._run(frame)
        if self.task == "classification":
            labels: np.ndarray = self.classes_[out.argmax(axis=1)]
            return labels
        return out.reshape(-1)


def _session(model: bytes) -> Any:
    """An onnxruntime session on the CPU, from bytes: a graph cannot make it read other files."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _onnx_classes(meta: dict[str, str], card: dict[str, Any], schema: Schema) -> tuple[Any, ...] | None:
    """The probability columns' classes: the file's own metadata, else the card, else schema.json."""
    raw: Any = None
    if meta.get("mlops.classes"):
        try:
            raw = json.loads(meta["mlops.classes"])
        except ValueError as exc:
            raise runtime.WorkloadError("InvalidModel", f"model.onnx has unreadable classes: {exc}") from exc
    if not raw:
        raw = card.get("classes") or (list(schema.classes) if schema.classes else None)
    return tuple(raw) if raw else None


def _load_onnx(path: pathlib.Path, *, schema: Schema, card: dict[str, Any]) -> OnnxPipeline:
    model_file = path / "model.onnx"
    pre_file = path / "preprocessor.skops"
    if not pre_file.is_file():
        raise runtime.WorkloadError(
            "ModelNotFound", f"model.onnx needs preprocessor.skops, missing from {path}"
        )
    preprocessor = skops_io.load(pre_file, invalid_reason="InvalidModel")
    if not hasattr(preprocessor, "transform"):
        raise runtime.WorkloadError(
            "InvalidModel", f"preprocessor.skops holds a {type(preprocessor).__name__}, not a transformer"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise runtime.WorkloadError("LibraryMissing", f"onnxruntime is not installed: {exc}") from exc
    model = model_file.read_bytes()
    try:
        session = _session(model)
    except Exception as exc:
        raise runtime.WorkloadError("InvalidModel", f"model.onnx could not be loaded: {exc}"[:1024]) from exc
    if len(session.get_inputs()) != 1 or len(session.get_outputs()) != 1:
        raise runtime.WorkloadError("InvalidModel", "model.onnx must have exactly one input and one output")
    meta = dict(session.get_modelmeta().custom_metadata_map)
    task = meta.get("mlops.task") or schema.task
    if task != schema.task:
        raise runtime.WorkloadError(
            "InvalidModel", f"model.onnx is a {task} model but schema.json says {schema.task}"
        )
    classes = _onnx_classes(meta, card, schema) if task == "classification" else None
    if task == "classification":
        width = session.get_outputs()[0].shape[-1]
        if not classes:
            raise runtime.WorkloadError(
                "InvalidModel", "model.onnx names no classes (nor do the card and schema)"
            )
        if isinstance(width, int) and width != len(classes):
            raise runtime.WorkloadError(
                "InvalidModel", f"model.onnx gives {width} probabilities for {len(classes)} classes"
            )
    return OnnxPipeline(preprocessor=preprocessor, model=model, session=session, task=task, classes=classes)


def decoded_classes(classes: tuple[Any, ...], card: dict[str, Any]) -> tuple[Any, ...]:
    """The labels of the probability columns: XGBoost trains on 0..n-1, and the trainer records
    the Dataset's labels in the card's ``labelEncoding`` (index -> label) when they differ, so
    an answer is ``setosa``, never ``0``."""
    encoding = card.get("labelEncoding")
    if (
        isinstance(encoding, list)
        and len(encoding) == len(classes)
        and list(classes) == list(range(len(classes)))
    ):
        return tuple(encoding)
    return classes


def load(model_dir: str | pathlib.Path) -> Bundle:
    """Load and check a model directory; raise ``WorkloadError`` with what is wrong."""
    path = pathlib.Path(model_dir)
    model_file = path / "model.skops"
    onnx_file = path / "model.onnx"
    if not model_file.is_file() and not onnx_file.is_file():
        raise runtime.WorkloadError("ModelNotFound", f"no model.skops (or model.onnx) in {path}")
    schema = Schema.from_json(_read_json(path / "schema.json", required=True))
    baseline = _read_json(path / "baseline.json", required=False)
    card = _read_json(path / "model_card.json", required=False)
    pipeline: Any
    if onnx_file.is_file():
        pipeline = _load_onnx(path, schema=schema, card=card)
        digest = files_digest([onnx_file, path / "preprocessor.skops"])
    else:
        pipeline = skops_io.load(model_file, invalid_reason="InvalidModel")
        digest = file_digest(model_file)
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
        classes = decoded_classes(classes, card)
    return Bundle(
        path=path,
        pipeline=pipeline,
        schema=schema,
        baseline=baseline,
        card=card,
        digest=digest,
        classes=classes,
    )
