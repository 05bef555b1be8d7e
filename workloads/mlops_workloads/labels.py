"""Labels people gave captured rows: where they are kept and what their Parquet files hold.

The review page and ``mlops review`` write them, the feedback Dataset source reads them; this
module is the one definition both use, beside ``capture`` (the rows they label).

Layout. Under a deployment's root ``R`` (``capture``'s), each batch of labels a reviewer saves
is one file ``R/labels/<yyyy>/<mm>/<dd>/<reviewer>-<unix-ms>-<random>.parquet`` (the UTC date
of the save, the reviewer's name made path-safe), written whole or not at all. Files are never
rewritten: a second label of the same row is a new file, and the newest label of a row wins
(``latest``), so concurrent reviewers need no lock and every decision stays on record.

Columns of a file:

- ``request_id`` (string) and ``row`` (int32): the captured row labelled (``capture``'s keys);
- ``label`` (string): the label as its text (``str`` of the class: ``"2"``, ``"setosa"``,
  ``"True"``); a reader casts it to the target's type (``cast_labels``);
- ``action`` (string): ``confirmed`` (the model's answer was right), ``corrected`` (it was not;
  ``label`` is the right one) or ``skipped`` (the reviewer could not tell: the row is no longer
  waiting, and carries no label for training);
- ``prediction`` (string): the model's answer the reviewer saw, as text;
- ``model_version`` (string): the version that answered;
- ``reviewer`` (string): who labelled it (the authenticated user the review server was given,
  else the name the person typed);
- ``time`` (timestamp[us, UTC]): when the label was saved.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_workloads import capture, storage

SUFFIX = ".parquet"
ACTIONS = ("confirmed", "corrected", "skipped")
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("action", pa.string(), nullable=False),
        pa.field("prediction", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("reviewer", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclasses.dataclass(frozen=True)
class Label:
    """One reviewer's decision on one captured row."""

    request_id: str
    row: int
    action: str
    reviewer: str
    time: datetime.datetime
    label: str | None = None
    prediction: str | None = None
    model_version: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if self.action != "skipped" and not self.label:
            raise ValueError(f"a {self.action} label needs the label")
        if not self.reviewer.strip():
            raise ValueError("a label needs its reviewer")
        if self.row < 0:
            raise ValueError("row must be ≥ 0")


def reviewer_slug(reviewer: str) -> str:
    """The reviewer's name as a file-name part (at most 40 characters)."""
    return (_UNSAFE.sub("-", reviewer).strip("-.") or "reviewer")[:40]


def file_path(saved: datetime.datetime, reviewer: str, *, token: str | None = None) -> str:
    """Where a batch saved at ``saved`` by ``reviewer`` goes, under the deployment's root."""
    day = saved.astimezone(datetime.UTC)
    unix_ms = int(day.timestamp() * 1000)
    token = token or secrets.token_hex(4)
    name = f"{reviewer_slug(reviewer)}-{unix_ms}-{token}{SUFFIX}"
    return f"{capture.LABELS_DIR}/{day:%Y}/{day:%m}/{day:%d}/{name}"


def table(labels: Sequence[Label]) -> pa.Table:
    """The labels as a table of ``SCHEMA``."""
    columns: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    for one in labels:
        for name, values in columns.items():
            value = getattr(one, name)
            values.append(value.astimezone(datetime.UTC) if name == "time" else value)
    return pa.table(columns, schema=SCHEMA)


def write(root: storage.Store, labels: Sequence[Label], *, now: datetime.datetime) -> str | None:
    """Save ``labels`` (one reviewer's batch) as one new file under ``root``; its path, or None
    when there was nothing to save."""
    if not labels:
        return None
    reviewers = {one.reviewer for one in labels}
    path = file_path(now, labels[0].reviewer if len(reviewers) == 1 else "reviewers")
    sink = pa.BufferOutputStream()
    pq.write_table(table(labels), sink)
    root.write_bytes(path, sink.getvalue().to_pybytes())
    return path


def files(root: storage.Store) -> list[str]:
    """Paths (inside ``root.fs``) of the label files under a deployment's root."""
    return root.join(capture.LABELS_DIR).files(suffixes=(SUFFIX,))


def read(root: storage.Store) -> pa.Table:
    """Every label under ``root`` (all decisions, oldest file first)."""
    tables = [pq.read_table(path, filesystem=root.fs, schema=SCHEMA) for path in files(root)]
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables)


def latest(labels: pa.Table) -> pa.Table:
    """The newest decision per (request_id, row): what a row's label is now."""
    if labels.num_rows == 0:
        return labels
    ordered = labels.sort_by([("request_id", "ascending"), ("row", "ascending"), ("time", "descending")])
    keys = list(zip(ordered.column("request_id").to_pylist(), ordered.column("row").to_pylist(), strict=True))
    keep = [i for i, key in enumerate(keys) if i == 0 or keys[i - 1] != key]
    return ordered.take(pa.array(keep, pa.int64()))


def keys(labels: pa.Table) -> set[tuple[str, int]]:
    """The (request_id, row) pairs ``labels`` covers."""
    return set(zip(labels.column("request_id").to_pylist(), labels.column("row").to_pylist(), strict=True))


def cast_labels(values: Iterable[str | None], target: pa.DataType) -> pa.Array:
    """Label texts as the target column's type (int64, bool, double or string)."""
    text = pa.array(list(values), pa.string())
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return text
    if pa.types.is_boolean(target):
        lowered = pc.utf8_lower(text)
        return pc.if_else(
            pc.is_in(lowered, pa.array(["true", "1"])),
            True,
            pc.if_else(pc.is_in(lowered, pa.array(["false", "0"])), False, pa.scalar(None, pa.bool_())),
        )
    return pc.cast(text, target)
