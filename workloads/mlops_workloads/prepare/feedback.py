"""A feedback source: the rows a ModelDeployment captured, with the labels people gave them.

The operator resolves the source's deployment to its capture root (``PrepareConfig.feedback``:
``<logging.storageUri>/<namespace>/<name>``, mounted read-only or reached over S3); under it,
``captured/`` holds the rows (``mlops_workloads.capture``) and ``labels/`` the reviewers'
decisions (``mlops_workloads.labels``, the newest per row wins). This module reads both and
answers with the frame every source answers with: the model's input features under their
original names (each file's ``mlops.capture`` metadata maps its columns back) and the Dataset's
target column, nothing else (no request ids, times or probabilities in training data).

- ``labelled: true``: the rows whose latest decision is ``confirmed`` or ``corrected``, the
  label as the target (cast to the type of the model's classes, ``labels.cast_labels``);
  skipped rows and rows nobody reviewed are left out.
- ``labelled: false``: every captured row, the label where there is one and a null target
  otherwise (cleaning then drops those like any row missing its target).
- ``include: lowConfidence`` keeps the rows answered with low confidence, ``since`` those
  captured at or after a time.

No row at all (nothing captured yet, or nothing confirmed or corrected yet) is ``FeedbackEmpty``
when the source is the Dataset's only kind of source; beside other sources (``allow_empty``,
decided by ``sources.load``) the source answers its empty frame and why, and the Dataset is
"the base data plus what people have labelled so far", starting with the base data alone.

Rows are ordered by (time, request id, row), whatever the order of the files or of the
labels, so the same captured and labelled files give the same frame, hence the same digest;
a new label changes the frame, hence the digest, at the next read. The source is read whole,
like an SQL source (only file sources stream).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_operator.api import dataset as api
from mlops_operator.api import dataset_sources as api_sources
from mlops_workloads import capture, labels, runtime, storage

LOG = logging.getLogger("mlops_workloads.prepare")
LABELLED_ACTIONS = ("confirmed", "corrected")
# The captured columns kept beside the features while reading, under names no feature has (a
# feature may well be called ``time`` or ``row``: the file stores it as ``input.row``).
_META = {name: f"__mlops.{name}" for name in ("request_id", "row", "time", "low_confidence", "prediction")}
ORDER = tuple(_META[name] for name in ("time", "request_id", "row"))
_POSITION = "__mlops.position"
_NULLABLE: dict[pa.DataType, Any] = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


@dataclasses.dataclass(frozen=True)
class Feedback:
    """What one feedback source read: its rows and what they came from."""

    frame: pd.DataFrame  # the features (original names) and the target
    features: tuple[str, ...]
    task: api.Task | None  # the capture's task, when every file agrees
    captured: int  # rows captured (after include and since)
    labelled: int  # of them, rows whose latest label is confirmed or corrected
    empty: str | None = None  # why the frame has no rows (only with allow_empty)


def read(
    source: api_sources.FeedbackSource,
    *,
    index: int,
    where: str,
    config: api.PrepareConfig,
    allow_empty: bool = False,
) -> Feedback:
    """The rows of feedback source ``index`` (see the module docstring and ``read_root``)."""
    resolved = config.feedback_store(index)
    if resolved is None:
        raise runtime.WorkloadError(
            "InvalidConfig",
            f"{where}: the config names no capture root for this source (the operator resolves "
            f"ModelDeployment {source.model_deployment!r}); upgrade the operator or re-create the Job",
        )
    root = storage.open_store(
        resolved.uri, connection=resolved.s3, pvc_root=config.pvc_root, secrets_root=config.secrets_root
    )
    return read_root(
        root, source, target=config.spec.data_schema.target, where=where, allow_empty=allow_empty
    )


def read_root(
    root: storage.Store,
    source: api_sources.FeedbackSource,
    *,
    target: str,
    where: str,
    allow_empty: bool = False,
) -> Feedback:
    """The rows of ``source`` under the capture root ``root``, the label as column ``target``
    (see the module docstring; ``read`` without a PrepareConfig, for the evaluation workload).

    No row is ``FeedbackEmpty``; with ``allow_empty`` it is a frame with no rows (the features
    the capture files name, if any, and the target) and ``empty`` saying why, as a warning.
    """
    rows, features, task = _captured(root, source, where=where, target=target)
    decided = _latest_labels(root, where=where)
    action, text = _join(rows, decided)
    keep = pc.is_in(action, pa.array(LABELLED_ACTIONS))
    keep = pc.fill_null(keep, False)
    labelled = int(pc.sum(keep).as_py() or 0)
    if source.labelled:
        rows, text = rows.filter(keep), text.filter(keep)
    else:
        text = pc.if_else(keep, text, pa.scalar(None, pa.string()))
    where_from = f"under {root.uri}"
    empty: str | None = None
    if rows.num_rows == 0:
        if not allow_empty:
            raise runtime.WorkloadError(
                "FeedbackEmpty", _empty_message(source, where, where_from, captured=len(action))
            )
        empty = _empty_message(source, f"{where} adds no rows", where_from, captured=len(action))
    target_values = _cast(text, rows.schema.field(_META["prediction"]).type, rows=rows, where=where)
    columns = {name: rows.column(name) for name in features}
    columns[target] = target_values
    # Nullable integers and bools stay what they are (as an SQL source's do): a label missing
    # from an int target must not turn the classes into floats.
    frame = pa.table(columns).to_pandas(types_mapper=_NULLABLE.get)
    LOG.info(
        "%s: %d of %d captured rows (%d labelled) from %s",
        where,
        len(frame),
        len(action),
        labelled,
        root.uri,
    )
    return Feedback(
        frame=frame, features=features, task=task, captured=len(action), labelled=labelled, empty=empty
    )


def _empty_message(source: api_sources.FeedbackSource, where: str, where_from: str, *, captured: int) -> str:
    chosen = "low-confidence " if source.include == "lowConfidence" else ""
    since = f" since {source.since}" if source.since else ""
    if captured == 0:
        return (
            f"{where}: ModelDeployment {source.model_deployment!r} has captured no {chosen}rows{since} "
            f"{where_from} yet (spec.logging decides what it captures); prepare again once it has"
        )
    return (
        f"{where}: none of the {captured} {chosen}rows ModelDeployment {source.model_deployment!r} "
        f"captured{since} has a confirmed or corrected label yet; label them (mlops review "
        f"{source.model_deployment}, or the review page), or read them unlabelled with labelled: false"
    )


def _captured(
    root: storage.Store, source: api_sources.FeedbackSource, *, where: str, target: str
) -> tuple[pa.Table, tuple[str, ...], api.Task | None]:
    """The captured rows (features by their original names, plus the key, time and prediction
    columns), filtered by ``include`` and ``since`` and in (time, request id, row) order; the
    feature names (first seen first) and the capture's task."""
    paths = capture.files(root)
    tables: list[pa.Table] = []
    features: dict[str, None] = {}
    tasks: set[str] = set()
    since = source.since_time()
    for path in paths:
        table = _read_file(root, path, where=where)
        try:
            described = capture.describe(table.schema)
            columns = capture.features_of(table.schema)
        except (KeyError, TypeError, ValueError) as exc:
            raise runtime.WorkloadError(
                "SourceUnreadable",
                f"{where}: {path} is not a capture file (it has no readable mlops.capture metadata); "
                "only the model server writes under captured/",
            ) from exc
        tasks.add(str(described.get("task")))
        for column in columns:
            if column.name == target:
                raise runtime.WorkloadError(
                    "SchemaMismatch",
                    f"{where}: the model's input feature {column.name!r} is the Dataset's target "
                    "(spec.schema.target); a feedback source's target comes from the labels",
                )
            features.setdefault(column.name, None)
        picked = {inner: table.column(name) for name, inner in _META.items()}
        picked.update({c.name: table.column(c.column) for c in columns})
        renamed = pa.table(picked)
        mask = None
        if source.include == "lowConfidence":
            mask = pc.fill_null(renamed.column(_META["low_confidence"]), False)
        if since is not None:
            recent = pc.greater_equal(
                renamed.column(_META["time"]), pa.scalar(since, pa.timestamp("us", tz="UTC"))
            )
            mask = recent if mask is None else pc.and_(mask, recent)
        tables.append(renamed if mask is None else renamed.filter(mask))
    names = tuple(features)
    if not tables:
        empty = {
            _META["request_id"]: pa.array([], pa.string()),
            _META["row"]: pa.array([], pa.int32()),
            _META["time"]: pa.array([], pa.timestamp("us", tz="UTC")),
            _META["prediction"]: pa.array([], pa.string()),
        }
        return pa.table(empty), names, None
    try:
        rows = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise runtime.WorkloadError(
            "SchemaMismatch",
            f"{where}: the capture files of different model versions do not fit together "
            f"(a feature or the prediction changed type): {exc}"[:900],
        ) from exc
    rows = rows.sort_by([(name, "ascending") for name in ORDER])
    task: api.Task | None = None
    if len(tasks) == 1 and (only := tasks.pop()) in ("classification", "regression"):
        task = "classification" if only == "classification" else "regression"
    return rows, names, task


def _read_file(root: storage.Store, path: str, *, where: str) -> pa.Table:
    try:
        table: pa.Table = pq.read_table(path, filesystem=root.fs)
    except FileNotFoundError as exc:
        # Listed a moment ago: a store that lost it (a retention job, a replaced volume).
        raise runtime.WorkloadError(
            "StorageUnreadable", f"{where}: {path} vanished while being read: {exc}"[:900]
        ) from exc
    except (OSError, pa.ArrowException) as exc:
        raise runtime.WorkloadError(
            "StorageUnreadable",
            f"{where}: cannot read the capture file {path}: {type(exc).__name__}: {exc}"[:900],
        ) from exc
    return table


def _latest_labels(root: storage.Store, *, where: str) -> pa.Table:
    """The newest decision per captured row (``labels.latest``)."""
    try:
        every = labels.read(root)
    except (OSError, pa.ArrowException) as exc:
        raise runtime.WorkloadError(
            "StorageUnreadable",
            f"{where}: cannot read the labels under {root.uri}: {type(exc).__name__}: {exc}"[:900],
        ) from exc
    return labels.latest(every)


def _join(rows: pa.Table, decided: pa.Table) -> tuple[pa.Array, pa.Array]:
    """Each captured row's latest action and label text (null where it has none), in row order."""
    keys = pa.table(
        {
            "request_id": rows.column(_META["request_id"]),
            "row": rows.column(_META["row"]),
            _POSITION: pa.array(range(rows.num_rows), pa.int64()),
        }
    )
    right = decided.select(["request_id", "row", "action", "label"])
    joined = keys.join(right, keys=["request_id", "row"], join_type="left outer")
    joined = joined.sort_by([(_POSITION, "ascending")])
    action = joined.column("action").combine_chunks()
    text = joined.column("label").combine_chunks()
    return action, text


def _cast(text: pa.Array, kind: pa.DataType, *, rows: pa.Table, where: str) -> pa.Array:
    """Label texts as the type of the model's answers; a text that is not one is SchemaMismatch."""
    try:
        cast: pa.Array = labels.cast_labels(text.to_pylist(), kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        bad = _first_bad(text.to_pylist(), kind)
        detail = f"the label {bad[1]!r} of {_row_name(rows, bad[0])} " if bad is not None else "a label "
        raise runtime.WorkloadError(
            "SchemaMismatch",
            f"{where}: {detail}cannot be read as {kind} (the type of the model's answers): {exc}"[:900],
        ) from exc
    if pa.types.is_boolean(kind):
        unread = pc.and_(pc.is_null(cast), pc.invert(pc.is_null(text)))
        if pc.any(unread).as_py():
            position = pc.index(unread, True).as_py()
            raise runtime.WorkloadError(
                "SchemaMismatch",
                f"{where}: the label {text[position].as_py()!r} of {_row_name(rows, position)} is not a "
                "bool (true/false, 1/0)",
            )
    return cast


def _row_name(rows: pa.Table, position: int) -> str:
    request = rows.column(_META["request_id"])[position].as_py()
    return f"request {request!r} row {rows.column(_META['row'])[position].as_py()}"


def _first_bad(values: Sequence[str | None], kind: pa.DataType) -> tuple[int, Any] | None:
    for position, value in enumerate(values):
        if value is None:
            continue
        try:
            labels.cast_labels([value], kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return position, value
    return None
