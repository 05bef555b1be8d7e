"""The rows waiting for review, and the labels people give them: the review server's logic.

A ``Backlog`` reads one deployment's root (``capture``'s layout): every captured file's keys
(``request_id``, ``row``), times and low-confidence flags go into one in-memory index, newest
first; the labels under ``labels/`` into a map of each row's latest decision (``labels.latest``'s
rule: the newest wins). A row is *waiting* while it has no decision: the low-confidence rows by
default, every captured row with ``everything``. Files never change once written, so a refresh
(at most every ``refresh_seconds``, when asked for something) only reads the files it has not
seen; a page of rows is read back from its files (a few decoded files are kept).

``save`` checks a batch of decisions before it writes any: each names a captured row, a
classifier's label is one of that row's classes, a regressor's a finite number; ``confirmed``
means the model's answer (the label defaults to it), a "correction" to the model's own answer is
recorded as ``confirmed``. The batch then becomes one labels file (``labels.write``).

Nothing here reads outside the root: paths come from listing it, never from a request.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_operator.api import common
from mlops_workloads import capture, labels, runtime, storage

log = logging.getLogger("mlops_workloads.review")

MAX_BATCH = 1000
MAX_REVIEWER = 100
DECODED_FILES = 16  # decoded capture files kept for reading pages back
_KEY_SEP = "\x00"  # request ids are free text; a row number never holds NUL, so keys are unique
_INDEX_COLUMNS = ("request_id", "row", "time", "low_confidence")
_INDEX_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("time", pa.timestamp("us", tz="UTC")),
        pa.field("low_confidence", pa.bool_()),
        pa.field("file", pa.int32()),
        pa.field("pos", pa.int32()),
    ]
)


class Invalid(ValueError):
    """A request the reviewer (or the page) must change: a 400 with this message."""


@dataclasses.dataclass(frozen=True)
class CapturedFile:
    """One capture file: what its schema metadata says about the model that wrote it."""

    path: str
    task: str
    classes: tuple[str, ...] | None  # the classes' texts, in probability order
    features: tuple[capture.FeatureColumn, ...]


@dataclasses.dataclass(frozen=True)
class Decision:
    """A row's latest label (what ``labels.latest`` keeps)."""

    action: str
    label: str | None
    reviewer: str
    time: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int  # rows waiting (in this mode), not only this page's


def key_of(request_id: str, row: int) -> str:
    return f"{request_id}{_KEY_SEP}{row}"


def label_text(value: Any) -> str:
    """A prediction or class as label text (``labels``' rule: ``str`` of the value)."""
    return str(value)


def check_reviewer(name: Any) -> str:
    """A reviewer's name, stripped; refused when empty, too long or holding control characters."""
    if not isinstance(name, str) or not name.strip():
        raise Invalid("give the reviewer's name (reviewer), or put an auth proxy in front that sets it")
    text = name.strip()
    if len(text) > MAX_REVIEWER or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise Invalid(f"the reviewer's name must be at most {MAX_REVIEWER} printable characters")
    return text


class Backlog:
    """One deployment's captured rows and their labels, read from its root (thread-safe)."""

    def __init__(
        self,
        root: storage.Store,
        *,
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.root = root
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._now = now
        self._lock = threading.RLock()
        self._files: list[CapturedFile] = []
        self._known: set[str] = set()  # capture files indexed (or unreadable)
        self._unreadable: set[str] = set()
        self._index = _INDEX_SCHEMA.empty_table()
        self._label_files: set[str] = set()
        self._decisions: dict[str, Decision] = {}
        self._refreshed: float | None = None
        self._listed = False  # the store was listed once
        self._version = 0  # bumps when the index or the decisions change
        self._waiting: dict[bool, tuple[int, pa.Array]] = {}  # everything -> (version, positions)
        self._decoded: collections.OrderedDict[int, pa.Table] = collections.OrderedDict()

    # -- reading the store --------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Index capture and label files that appeared since the last look (at most every
        ``refresh_seconds`` unless ``force``)."""
        with self._lock:
            now = self._clock()
            if not force and self._refreshed is not None and now - self._refreshed < self.refresh_seconds:
                return
            self._refreshed = now
            try:
                self._read_captured()
                self._read_labels()
            except runtime.WorkloadError as exc:
                if not self._listed:
                    raise  # nothing to show yet: the caller says why (a 503)
                # The store could not be listed now: keep showing what was read, try again later.
                log.warning("review: %s; showing the rows read before", exc.message)
                return
            self._listed = True

    def _read_captured(self) -> None:
        new = [p for p in capture.files(self.root) if p not in self._known]
        parts: list[pa.Table] = []
        for path in new:
            self._known.add(path)
            try:
                meta, table = self._index_file(path, len(self._files))
            except OSError as exc:  # the store, not the file: read it at the next refresh
                self._known.discard(path)
                log.warning("review: cannot read %s now: %s", path, exc)
                continue
            except (pa.ArrowException, KeyError, ValueError, TypeError) as exc:
                # A file some other tool put there, or damaged: say so once, keep serving the rest.
                self._unreadable.add(path)
                log.warning("review: skipping %s: %s", path, exc)
                continue
            self._files.append(meta)
            parts.append(table)
        if not parts:
            return
        index = pa.concat_tables([self._index, *parts]).combine_chunks()
        order = pc.sort_indices(index, sort_keys=[("time", "descending"), ("key", "ascending")])
        self._index = index.take(order)
        self._version += 1

    def _index_file(self, path: str, number: int) -> tuple[CapturedFile, pa.Table]:
        schema = pq.read_schema(path, filesystem=self.root.fs)
        info = capture.describe(schema)
        classes = info.get("classes")
        meta = CapturedFile(
            path=path,
            task=str(info.get("task") or ""),
            classes=tuple(label_text(c) for c in classes) if classes else None,
            features=capture.features_of(schema),
        )
        table = pq.read_table(path, filesystem=self.root.fs, columns=list(_INDEX_COLUMNS))
        keys = pc.binary_join_element_wise(
            table.column("request_id"), pc.cast(table.column("row"), pa.string()), _KEY_SEP
        )
        rows = table.num_rows
        index = pa.table(
            {
                "key": keys,
                "time": table.column("time").cast(pa.timestamp("us", tz="UTC")),
                "low_confidence": pc.fill_null(table.column("low_confidence"), False),
                "file": pa.array(np.full(rows, number, dtype=np.int32)),
                "pos": pa.array(np.arange(rows, dtype=np.int32)),
            },
            schema=_INDEX_SCHEMA,
        )
        return meta, index

    def _read_labels(self) -> None:
        new = [p for p in labels.files(self.root) if p not in self._label_files]
        changed = False
        for path in new:
            try:
                table = pq.read_table(path, filesystem=self.root.fs, schema=labels.SCHEMA)
            except OSError as exc:  # read it at the next refresh
                log.warning("review: cannot read %s now: %s", path, exc)
                continue
            except (pa.ArrowException, ValueError) as exc:
                log.warning("review: skipping labels file %s: %s", path, exc)
                self._label_files.add(path)
                continue
            self._label_files.add(path)
            changed |= self._merge(table.to_pylist())
        if changed:
            self._version += 1

    def _merge(self, records: Iterable[Mapping[str, Any]]) -> bool:
        changed = False
        for record in records:
            key = key_of(str(record["request_id"]), int(record["row"]))
            decision = Decision(
                action=str(record["action"]),
                label=record.get("label"),
                reviewer=str(record["reviewer"]),
                time=record["time"],
            )
            old = self._decisions.get(key)
            if old is None or decision.time > old.time:
                self._decisions[key] = decision
                changed = True
        return changed

    # -- what is waiting ----------------------------------------------------------------------

    def _waiting_positions(self, everything: bool) -> pa.Array:
        cached = self._waiting.get(everything)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        index = self._index
        decided = pc.is_in(index.column("key"), value_set=pa.array(list(self._decisions), pa.string()))
        mask = pc.invert(decided)
        if not everything:
            mask = pc.and_(mask, index.column("low_confidence"))
        positions = pc.indices_nonzero(mask)
        self._waiting[everything] = (self._version, positions)
        return positions

    def pending(self, *, limit: int = 50, offset: int = 0, everything: bool = False) -> Page:
        """Rows waiting for a label, newest first: low-confidence ones, or every captured row."""
        with self._lock:
            self.refresh()
            positions = self._waiting_positions(everything)
            chosen = positions[offset : offset + limit].to_pylist()
            return Page(rows=[self._row(p) for p in chosen], total=len(positions))

    def _decoded_file(self, number: int) -> pa.Table:
        table = self._decoded.get(number)
        if table is None:
            table = pq.read_table(self._files[number].path, filesystem=self.root.fs)
            self._decoded[number] = table
            if len(self._decoded) > DECODED_FILES:
                self._decoded.popitem(last=False)
        else:
            self._decoded.move_to_end(number)
        return table

    def _row(self, position: int) -> dict[str, Any]:
        """One captured row as the API shows it (inputs by the features' own names)."""
        number = self._index.column("file")[position].as_py()
        pos = self._index.column("pos")[position].as_py()
        meta = self._files[number]
        record = self._decoded_file(number).slice(pos, 1).to_pylist()[0]
        classifier = meta.classes is not None
        out: dict[str, Any] = {
            "requestId": record["request_id"],
            "row": record["row"],
            "time": _rfc3339(record["time"]),
            "modelName": record.get("model_name"),
            "modelVersion": record.get("model_version"),
            "reason": record.get("reason"),
            "lowConfidence": bool(record.get("low_confidence")),
            "task": meta.task or ("classification" if classifier else "regression"),
            "inputs": {f.name: _json_value(record.get(f.column)) for f in meta.features},
            "prediction": _json_value(record.get("prediction")),
            "predictionLabel": (
                label_text(record["prediction"]) if record.get("prediction") is not None else None
            ),
        }
        if classifier:
            probabilities = record.get("probabilities") or []
            out["confidence"] = _json_value(record.get("confidence"))
            out["probabilities"] = [_json_value(p) for p in probabilities]
            out["classes"] = list(record.get("classes") or meta.classes or [])
        decision = self._decisions.get(key_of(record["request_id"], record["row"]))
        if decision is not None:
            out["decision"] = {
                "action": decision.action,
                "label": decision.label,
                "reviewer": decision.reviewer,
                "time": _rfc3339(decision.time),
            }
        return out

    def stats(self, *, everything: bool = False) -> dict[str, Any]:
        """Counts for the page's header: waiting, labelled (by action and reviewer), captured."""
        with self._lock:
            self.refresh()
            by_action = dict.fromkeys(labels.ACTIONS, 0)
            by_reviewer: dict[str, int] = {}
            for decision in self._decisions.values():
                by_action[decision.action] = by_action.get(decision.action, 0) + 1
                by_reviewer[decision.reviewer] = by_reviewer.get(decision.reviewer, 0) + 1
            low = self._index.column("low_confidence")
            return {
                "waiting": len(self._waiting_positions(everything)),
                "waitingLowConfidence": len(self._waiting_positions(False)),
                "waitingAll": len(self._waiting_positions(True)),
                "captured": self._index.num_rows,
                "lowConfidence": int(pc.sum(low).as_py() or 0) if self._index.num_rows else 0,
                "labelled": len(self._decisions),
                "byAction": by_action,
                "byReviewer": dict(sorted(by_reviewer.items())),
                "files": len(self._files),
                "unreadableFiles": len(self._unreadable),
            }

    # -- saving labels ------------------------------------------------------------------------

    def save(self, items: Any, *, reviewer: str) -> list[labels.Label]:
        """Check a batch of decisions (all or nothing), write it as one labels file, return it."""
        reviewer = check_reviewer(reviewer)
        if not isinstance(items, list) or not items:
            raise Invalid("items must be a non-empty list of {requestId, row, action, label}")
        if len(items) > MAX_BATCH:
            raise Invalid(f"at most {MAX_BATCH} items per request")
        with self._lock:
            self.refresh()
            wanted = [_item_key(item) for item in items]
            positions = self._positions(wanted)
            if any(k is not None and p is None for k, p in zip(wanted, positions, strict=True)):
                self.refresh(force=True)  # a file that appeared since the last look
                positions = self._positions(wanted)
            now = self._now()
            batch: list[labels.Label] = []
            seen: set[str] = set()
            for number, (item, position) in enumerate(zip(items, positions, strict=True), start=1):
                one = self._check(item, position, reviewer=reviewer, now=now, where=f"item {number}")
                key = key_of(one.request_id, one.row)
                if key in seen:
                    raise Invalid(f"item {number}: row {one.row} of request {one.request_id} is twice here")
                seen.add(key)
                batch.append(one)
            labels.write(self.root, batch, now=now)
            self._merge(dataclasses.asdict(one) for one in batch)
            self._version += 1
            return batch

    def _positions(self, keys: Sequence[str | None]) -> list[int | None]:
        """Where each key is in the index (None: not captured, or not a key)."""
        found = pc.index_in(pa.array(keys, pa.string()), value_set=self._index.column("key"))
        return [None if p is None else int(p) for p in found.to_pylist()]

    def _check(
        self, item: Any, position: int | None, *, reviewer: str, now: datetime.datetime, where: str
    ) -> labels.Label:
        if not isinstance(item, dict):
            raise Invalid(f"{where}: must be an object {{requestId, row, action, label}}")
        unknown = set(item) - {"requestId", "row", "action", "label"}
        if unknown:
            raise Invalid(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        request_id, row, action = item.get("requestId"), item.get("row"), item.get("action")
        if not isinstance(request_id, str) or not request_id:
            raise Invalid(f"{where}: requestId must be a non-empty string")
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            raise Invalid(f"{where}: row must be an integer ≥ 0")
        if action not in labels.ACTIONS:
            raise Invalid(f"{where}: action must be one of {', '.join(labels.ACTIONS)}, not {action!r}")
        if position is None:
            raise Invalid(f"{where}: no captured row {row} of request {request_id!r}")
        captured = self._row(position)
        prediction = captured["predictionLabel"]
        base = {
            "request_id": request_id,
            "row": row,
            "reviewer": reviewer,
            "time": now,
            "prediction": prediction,
            "model_version": captured["modelVersion"],
        }
        if action == "skipped":
            if item.get("label") not in (None, ""):
                raise Invalid(f"{where}: a skipped row carries no label")
            return labels.Label(action="skipped", **base)
        label = self._label(item.get("label"), captured, where=where)
        if label is None:
            if action == "corrected":
                raise Invalid(f"{where}: a corrected row needs its label")
            label = prediction
        if label is None:
            raise Invalid(f"{where}: the captured row has no prediction to confirm; give the label")
        same = label == prediction or (
            captured.get("classes") is None and prediction is not None and float(label) == float(prediction)
        )
        if action == "confirmed" and not same:
            raise Invalid(
                f"{where}: confirmed means the model's answer {prediction!r}; send action corrected "
                f"for {label!r}"
            )
        return labels.Label(action="confirmed" if same else "corrected", label=label, **base)

    @staticmethod
    def _label(value: Any, captured: Mapping[str, Any], *, where: str) -> str | None:
        """The label as text: one of a classifier's classes, a regressor's finite number."""
        if value is None or value == "":
            return None
        if isinstance(value, (dict, list)):
            raise Invalid(f"{where}: label must be a string or a number")
        classes = captured.get("classes")
        if classes is not None:
            text = value if isinstance(value, str) else label_text(value)
            if text not in classes:
                raise Invalid(f"{where}: label {text!r} is not one of the classes {', '.join(classes)}")
            return text
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise Invalid(f"{where}: label must be a finite number for this regressor, not {value!r}")
        return repr(number)


def _item_key(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    request_id, row = item.get("requestId"), item.get("row")
    if not isinstance(request_id, str) or not isinstance(row, int) or isinstance(row, bool):
        return None
    return key_of(request_id, row)


def _rfc3339(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    """A cell as JSON: NaN and infinities become null, timestamps text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def open_backlog(
    uri: str,
    *,
    connection: common.S3Connection | None = None,
    pvc_root: str = "/mnt/mlops",
    secrets_root: str = storage.SECRETS_ROOT,
    refresh_seconds: float = 5.0,
) -> Backlog:
    """A backlog of the deployment root at ``uri`` (storage errors surface on first use)."""
    try:
        root = storage.open_store(uri, connection=connection, pvc_root=pvc_root, secrets_root=secrets_root)
    except ValueError as exc:
        raise runtime.WorkloadError("InvalidConfig", f"cannot open {uri}: {exc}") from exc
    return Backlog(root, refresh_seconds=refresh_seconds)
