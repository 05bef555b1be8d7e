"""Captured predictions: where the model server puts them and what their Parquet files hold.

The one definition the writer (``mlops_workloads.serve.capture``), the review page and the
feedback Dataset source read, so the three never disagree on a column.

Layout. A ModelDeployment with ``spec.logging.storageUri: U`` owns the directory
``R = U/<namespace>/<deployment>`` (``LoggingSpec.root_uri``). Each server process writes
``R/captured/<yyyy>/<mm>/<dd>/<pod>-<pid>-<unix-ms>-<seq>.parquet``, the date being the UTC
date of the file's first row. A file appears whole or not at all (a hidden temporary file
renamed locally, one PUT on S3), and its name is unique across pods, processes and restarts,
so readers need no lock: list, read, done. Labels (item 2 of the review loop) are to live
beside it under ``R/labels/``.

Columns of a file, in this order:

- ``request_id`` (string): the request's ``x-request-id`` header, else its v2 ``id``, else a
  uuid4 hex the server made; the answer carries it back in its ``X-Request-Id`` header;
- ``row`` (int32): the row's index within its request;
- ``time`` (timestamp[us, UTC]): when the answer was computed;
- ``model_name``, ``model_version``, ``model_digest`` (string): what answered (the digest is
  the served artifact's sha256, the version what ``/v2/models`` reports), ``pod`` (string);
- ``reason`` (string): why the row was kept, ``sample`` (its request was drawn by
  ``sampleRate``; every row of a drawn request is kept, so ``reason == "sample"`` is an unbiased
  sample of the traffic) or ``low_confidence`` (not drawn, kept because it is low-confidence);
- ``low_confidence`` (bool): the row's flag as the answer gave it (false for regressors);
- one column per input feature, in the model schema's order, named as the feature is (a
  feature whose name collides with one of these columns is stored as ``input.<name>``), typed
  by its schema dtype: float → double, int → int64, bool → bool, category and string → string;
  a missing numeric value is null;
- ``prediction``: the answer (a class label, typed as the classes are: int64, bool, double or
  string; a double for regressors);
- classifiers only: ``confidence`` (double, the top class probability), ``probabilities``
  (list<double>, in ``classes`` order) and ``classes`` (list<string>).

The schema's metadata key ``mlops.capture`` holds JSON ``{"version", "task", "classes",
"features": [{"name", "column", "dtype"}]}``: the original feature names and dtypes, so a
reader maps columns back to features without guessing.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlops_workloads import storage

FORMAT_VERSION = 1
CAPTURED_DIR = "captured"
LABELS_DIR = "labels"
SUFFIX = ".parquet"
METADATA_KEY = b"mlops.capture"
REASON_SAMPLE = "sample"
REASON_LOW_CONFIDENCE = "low_confidence"
REASONS = (REASON_SAMPLE, REASON_LOW_CONFIDENCE)

META_FIELDS: tuple[pa.Field, ...] = (
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("row", pa.int32(), nullable=False),
    pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("model_digest", pa.string(), nullable=False),
    pa.field("pod", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("low_confidence", pa.bool_(), nullable=False),
)
CLASSIFIER_FIELDS: tuple[pa.Field, ...] = (
    pa.field("confidence", pa.float64()),
    pa.field("probabilities", pa.list_(pa.float64())),
    pa.field("classes", pa.list_(pa.string())),
)
FEATURE_TYPES: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "category": pa.string(),
    "string": pa.string(),
}
RESERVED = frozenset(f.name for f in META_FIELDS) | {"prediction"} | {f.name for f in CLASSIFIER_FIELDS}


@dataclasses.dataclass(frozen=True)
class FeatureColumn:
    name: str  # the feature's name in the model schema
    column: str  # its column in the file
    dtype: str  # its schema dtype (float, int, bool, category, string)


def feature_columns(features: Sequence[tuple[str, str]]) -> tuple[FeatureColumn, ...]:
    """(name, dtype) of the model's features → their columns (renamed only on a collision)."""
    names = {name for name, _ in features}
    out = []
    for name, dtype in features:
        column = name
        while column in RESERVED or (column != name and column in names):
            column = f"input.{column}"
        out.append(FeatureColumn(name=name, column=column, dtype=dtype))
    return tuple(out)


def prediction_type(task: str, classes: Sequence[Any] | None) -> pa.DataType:
    """The ``prediction`` column's type: the classes' own type, or double for a regressor."""
    if task != "classification" or classes is None:
        return pa.float64()
    if all(isinstance(c, bool) for c in classes):
        return pa.bool_()
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return pa.int64()
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return pa.float64()
    return pa.string()


def arrow_schema(
    features: Sequence[tuple[str, str]], *, task: str, classes: Sequence[Any] | None
) -> pa.Schema:
    """The schema of every capture file of one model (see the module docstring)."""
    columns = feature_columns(features)
    classifier = task == "classification" and classes is not None
    fields = [
        *META_FIELDS,
        *(pa.field(c.column, FEATURE_TYPES[c.dtype]) for c in columns),
        pa.field("prediction", prediction_type(task, classes)),
        *(CLASSIFIER_FIELDS if classifier else ()),
    ]
    metadata = {
        "version": FORMAT_VERSION,
        "task": task,
        "classes": [_jsonable(c) for c in classes] if classifier and classes is not None else None,
        "features": [dataclasses.asdict(c) for c in columns],
    }
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata, separators=(",", ":"))})


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def describe(schema: pa.Schema) -> dict[str, Any]:
    """The ``mlops.capture`` metadata of a capture file's schema (raises KeyError without it)."""
    raw = (schema.metadata or {})[METADATA_KEY]
    data: dict[str, Any] = json.loads(raw)
    return data


def features_of(schema: pa.Schema) -> tuple[FeatureColumn, ...]:
    return tuple(FeatureColumn(**f) for f in describe(schema)["features"])


def file_name(*, pod: str, pid: int, unix_ms: int, seq: int) -> str:
    return f"{pod}-{pid}-{unix_ms}-{seq:06d}{SUFFIX}"


def file_path(first_row: datetime.datetime, name: str) -> str:
    """A file's path under the deployment's root, partitioned by its first row's UTC date."""
    day = first_row.astimezone(datetime.UTC)
    return f"{CAPTURED_DIR}/{day:%Y}/{day:%m}/{day:%d}/{name}"


def files(root: storage.Store) -> list[str]:
    """Paths (inside ``root.fs``) of the complete capture files under a deployment's root, oldest
    day first (temporary files are hidden, so never listed)."""
    return root.join(CAPTURED_DIR).files(suffixes=(SUFFIX,))


def read(root: storage.Store, paths: Sequence[str] | None = None) -> pa.Table:
    """The captured rows under ``root`` (or of ``paths``) as one table; files of different model
    versions are unified by column name (a column one lacks is null there)."""
    chosen = files(root) if paths is None else list(paths)
    tables = [pq.read_table(path, filesystem=root.fs) for path in chosen]
    if not tables:
        return pa.table({f.name: pa.array([], f.type) for f in META_FIELDS})
    return pa.concat_tables(tables, promote_options="permissive")
