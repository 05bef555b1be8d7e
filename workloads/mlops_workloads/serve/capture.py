"""Capture of predictions (``spec.logging``): a bounded queue on the request path, one writer thread.

An answer must never wait for storage, nor be lost because of it. So the request path does
only what is already paid for: it decides whether the request is kept (``sampleRate``, drawn
from this process's RNG) or which of its rows are (the low-confidence mask the answer computed
anyway), and appends a tuple of references to the arrays the answer was made from — no copy,
no conversion, no encoding — to a queue bounded in rows. A full queue drops the record and
counts it (``mlops_serve_capture_dropped_total{reason="queue_full"}``); nothing else on the
request path can fail or block (one uncontended lock).

The writer thread (one per server process; ``--workers N`` gives N, each with its own files)
wakes every ``POLL_SECONDS``, turns what was queued into one Arrow record batch (one
``concatenate`` per column, whatever the number of requests), and closes a file when it holds
``max_file_rows`` rows or ``max_file_bytes`` bytes or its first row is ``roll_seconds`` old.
A closed file is encoded to Parquet and written whole through ``mlops_workloads.storage``
(a hidden temporary file renamed locally, one PUT on S3), so a reader never sees half a file.
A write that fails (a full disk, a path that is a file, S3 down, missing credentials) is
counted in ``mlops_serve_capture_errors_total`` and retried with exponential backoff; after
``attempts`` failures that file's rows are dropped and counted (``reason="write_error"``).
While a file waits for its retry the writer stops taking from the queue, so memory stays
bounded (queue + one buffer + one file) and the surplus is dropped at the queue. On SIGTERM
(``close``) the writer drains the queue and writes what it holds, until a deadline; a store
that fails then gets no retry (waiting would only delay the pod's exit: its rows count as
``write_error``), and what is still unwritten at the deadline counts as ``shutdown``.

What the files hold and where they go: ``mlops_workloads.capture``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_operator.api import modeldeployment as md_api
from mlops_workloads import capture, storage
from mlops_workloads.serve import telemetry

log = logging.getLogger("mlops_workloads.serve.capture")
POLL_SECONDS = 0.2


class Sink(Protocol):
    """Where finished files go: ``storage.Store`` (or a test's stand-in)."""

    def write_bytes(self, name: str, data: bytes) -> None: ...


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What every captured row says about the model that answered it."""

    name: str
    version: str
    digest: str
    task: str
    features: tuple[tuple[str, str], ...]  # (name, schema dtype), in schema order
    classes: tuple[Any, ...] | None
    pod: str = dataclasses.field(default_factory=socket.gethostname)  # a pod's hostname is its name


class _Record(NamedTuple):
    request_id: str
    time_us: int
    reason: str
    rows: int  # rows kept
    mask: np.ndarray | None  # which rows of the request (None: all)
    columns: dict[str, np.ndarray]
    result: np.ndarray  # class indices (classifier) or values (regressor)
    proba: np.ndarray | None
    low: np.ndarray | None


@dataclasses.dataclass
class _File:
    path: str
    data: bytes
    rows: int
    by_reason: dict[str, int]
    attempts: int = 0


class Capture:
    """Captures rows of one server process (see the module docstring)."""

    def __init__(
        self,
        *,
        model: ModelInfo,
        open_sink: Callable[[], Sink],
        metrics: telemetry.CaptureMetrics,
        low_confidence: bool = True,
        sample_rate: float = 0.0,
        max_file_rows: int = 100_000,
        max_file_bytes: int = 16 << 20,
        roll_seconds: float = 60.0,
        queue_rows: int = 10_000,
        rng: random.Random | None = None,
        retry_seconds: float = 1.0,
        max_retry_seconds: float = 30.0,
        attempts: int = 3,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_file_rows < 1 or max_file_bytes < 1 or queue_rows < 1 or attempts < 1:
            raise ValueError("capture limits must be positive")
        self.model = model
        self.metrics = metrics
        self.low_confidence = low_confidence
        self.sample_rate = sample_rate
        self.max_file_rows = max_file_rows
        self.max_file_bytes = max_file_bytes
        self.roll_seconds = roll_seconds
        self.queue_rows = queue_rows
        self._open_sink = open_sink
        self._sink: Sink | None = None
        self._rng = rng or random.Random()
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._attempts = attempts
        self._poll = poll_seconds
        self._clock = clock
        self.schema = capture.arrow_schema(model.features, task=model.task, classes=model.classes)
        self._columns = capture.feature_columns(model.features)
        self._classifier = model.task == "classification" and model.classes is not None
        if self._classifier:
            assert model.classes is not None
            kind = capture.prediction_type(model.task, model.classes)
            labels = [str(c) for c in model.classes] if kind == pa.string() else list(model.classes)
            self._class_values = pa.array(labels, kind)
            self._class_names = pa.array([str(c) for c in model.classes], pa.string())
        # Shared with the request path, under _lock:
        self._lock = threading.Lock()
        self._queue: collections.deque[_Record] = collections.deque()
        self._queued = 0
        # The writer thread's own:
        self._batches: list[pa.RecordBatch] = []
        self._buffer_rows = 0
        self._buffer_bytes = 0
        self._buffer_started = 0.0
        self._file: _File | None = None
        self._next_attempt = 0.0
        self._delay = 0.0
        self._failing = False
        self._seq = 0
        self._deadline = 0.0
        self._final = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(
        cls,
        config: md_api.CaptureConfig,
        *,
        model: ModelInfo,
        metrics: telemetry.CaptureMetrics,
        pvc_root: str,
        secrets_root: str,
        rng: random.Random | None = None,
    ) -> Capture:
        # Opened by the writer thread on its first file (and again after a failure), so missing
        # credentials or an unreachable store are write errors, not a server that will not start.
        def open_sink() -> Sink:
            return storage.open_store(
                config.uri, connection=config.s3, pvc_root=pvc_root, secrets_root=secrets_root
            )

        return cls(
            model=model,
            open_sink=open_sink,
            metrics=metrics,
            low_confidence=config.low_confidence,
            sample_rate=config.sample_rate,
            max_file_rows=config.max_file_rows,
            max_file_bytes=config.max_file_bytes,
            roll_seconds=config.roll_seconds,
            queue_rows=config.queue_rows,
            rng=rng,
        )

    # -- the request path ---------------------------------------------------------------------

    def offer(
        self,
        request_id: str,
        *,
        columns: dict[str, np.ndarray],
        result: np.ndarray,
        proba: np.ndarray | None,
        low: np.ndarray | None,
        low_count: int,
        rows: int,
    ) -> None:
        """Keep the rows of one answered request that capture wants; never blocks, never raises
        for a full queue (the rows are dropped and counted)."""
        rate = self.sample_rate
        if rate > 0 and (rate >= 1 or self._rng.random() < rate):
            reason, mask, kept = capture.REASON_SAMPLE, None, rows
        elif self.low_confidence and low_count and low is not None:
            mask = None if low_count == rows else low
            reason, kept = capture.REASON_LOW_CONFIDENCE, low_count
        else:
            return
        record = _Record(request_id, time.time_ns() // 1000, reason, kept, mask, columns, result, proba, low)
        urgent = False
        with self._lock:
            full = self._queued + kept > self.queue_rows
            if not full:
                self._queue.append(record)
                self._queued += kept
                urgent = self._queued * 2 > self.queue_rows
        if full:
            self.metrics.dropped["queue_full"].inc(kept)
        elif urgent:
            self._wake.set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is held (queue and buffer), for at most ``timeout`` seconds; what cannot be
        written by then is dropped and counted as ``shutdown``."""
        self._deadline = self._clock() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            self._run()
            return
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():  # stuck in a write the store never answers
            log.warning(
                "capture: the writer did not finish within %.0f s; %d rows not written",
                timeout,
                self.pending_rows,
            )

    @property
    def pending_rows(self) -> int:
        """Rows accepted and not yet written (queued, buffered or in a file being written)."""
        with self._lock:
            queued = self._queued
        return queued + self._buffer_rows + (self._file.rows if self._file is not None else 0)

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                wait = self._cycle()
            except Exception:  # A bug must not end capture silently: count it, keep going.
                log.exception("capture writer failed")
                self.metrics.errors.inc()
                self._batches, self._buffer_rows, self._buffer_bytes = [], 0, 0
                wait = None if self._stop.is_set() else self._poll
                if wait is None:
                    self._drop_everything("shutdown")
            self.metrics.pending.set(self.pending_rows)
            if wait is None:
                return
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()

    def _cycle(self) -> float | None:
        """One pass; the seconds to wait before the next one, or None when closed and done."""
        now = self._clock()
        stopping = self._stop.is_set()
        if stopping and not self._final:
            self._final = True
            self._next_attempt = now  # one attempt now, whatever the backoff said
        if self._buffer_rows < self.max_file_rows and self._buffer_bytes < self.max_file_bytes:
            records = self._take()
            if records:
                if not self._buffer_rows:
                    self._buffer_started = now
                batch = self._batch(records)
                self._batches.append(batch)
                self._buffer_rows += batch.num_rows
                self._buffer_bytes += batch.nbytes
        if (
            self._file is None
            and self._buffer_rows
            and (
                stopping
                or self._buffer_rows >= self.max_file_rows
                or self._buffer_bytes >= self.max_file_bytes
                or now - self._buffer_started >= self.roll_seconds
            )
        ):
            self._seal()
        if self._file is not None and now >= self._next_attempt:
            self._write(now)
        if not stopping:
            return self._poll
        with self._lock:
            queued = self._queued
        if not queued and not self._buffer_rows and self._file is None:
            return None
        if self._file is not None and self._next_attempt > now:
            # The store failed during shutdown: waiting for a retry would only delay the pod's
            # exit, so what is left is lost to the write error.
            self._drop_everything("write_error")
            return None
        if self._clock() >= self._deadline:
            self._drop_everything("shutdown")
            return None
        return 0.0

    def _take(self) -> list[_Record]:
        with self._lock:
            if not self._queue:
                return []
            records = list(self._queue)
            self._queue.clear()
            self._queued = 0
        return records

    def _batch(self, records: Sequence[_Record]) -> pa.RecordBatch:
        """Records → one record batch of the capture schema (one concatenate per column)."""
        model = self.model
        picks = [None if r.mask is None else np.flatnonzero(r.mask) for r in records]
        counts = np.fromiter((r.rows for r in records), dtype=np.int64, count=len(records))
        total = int(counts.sum())

        def pick(arrays: Sequence[np.ndarray]) -> np.ndarray:
            parts = [a if s is None else a[s] for a, s in zip(arrays, picks, strict=True)]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        rows_in_request = pick([np.arange(len(r.result), dtype=np.int32) for r in records])
        arrays: list[pa.Array] = [
            pa.array(np.repeat(np.array([r.request_id for r in records], dtype=object), counts), pa.string()),
            pa.array(rows_in_request.astype(np.int32, copy=False), pa.int32()),
            pa.array(
                np.repeat(np.fromiter((r.time_us for r in records), np.int64, len(records)), counts),
                pa.timestamp("us", tz="UTC"),
            ),
            pa.repeat(pa.scalar(model.name, pa.string()), total),
            pa.repeat(pa.scalar(model.version, pa.string()), total),
            pa.repeat(pa.scalar(model.digest, pa.string()), total),
            pa.repeat(pa.scalar(model.pod, pa.string()), total),
            pa.array(np.repeat(np.array([r.reason for r in records], dtype=object), counts), pa.string()),
        ]
        if self._classifier:
            arrays.append(pa.array(pick([_present(r.low) for r in records]), pa.bool_()))
        else:
            arrays.append(pa.array(np.zeros(total, dtype=bool), pa.bool_()))
        for column in self._columns:
            arrays.append(_feature(column.dtype, pick([r.columns[column.name] for r in records])))
        result = pick([r.result for r in records])
        if self._classifier:
            proba = pick([_present(r.proba) for r in records])
            width = proba.shape[1]
            arrays.append(self._class_values.take(pa.array(result, pa.int64())))
            arrays.append(pa.array(proba[np.arange(total), result], pa.float64()))
            offsets = pa.array(np.arange(0, (total + 1) * width, width, dtype=np.int32), pa.int32())
            arrays.append(pa.ListArray.from_arrays(offsets, pa.array(proba.ravel(), pa.float64())))
            names = self._class_names.take(pa.array(np.tile(np.arange(width), total), pa.int64()))
            arrays.append(pa.ListArray.from_arrays(offsets, names))
        else:
            arrays.append(pa.array(np.asarray(result, dtype=np.float64), pa.float64()))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _seal(self) -> None:
        """Close the buffer into a file (at most max_file_rows rows; the rest stays buffered)."""
        table = pa.Table.from_batches(self._batches, schema=self.schema)
        rest = None
        if table.num_rows > self.max_file_rows:
            rest, table = table.slice(self.max_file_rows), table.slice(0, self.max_file_rows)
        self._batches = rest.combine_chunks().to_batches() if rest is not None else []
        self._buffer_rows = rest.num_rows if rest is not None else 0
        self._buffer_bytes = rest.nbytes if rest is not None else 0
        first = table.column("time")[0].as_py()
        assert isinstance(first, datetime.datetime)
        self._seq += 1
        name = capture.file_name(
            pod=self.model.pod, pid=os.getpid(), unix_ms=time.time_ns() // 1_000_000, seq=self._seq
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", row_group_size=65536)
        by_reason = {
            reason: int(pc.sum(pc.equal(table.column("reason"), reason)).as_py() or 0)
            for reason in capture.REASONS
        }
        self._file = _File(
            path=capture.file_path(first, name),
            data=sink.getvalue().to_pybytes(),
            rows=table.num_rows,
            by_reason=by_reason,
        )

    def _write(self, now: float) -> None:
        file = self._file
        assert file is not None
        try:
            if self._sink is None:
                self._sink = self._open_sink()
            self._sink.write_bytes(file.path, file.data)
        except Exception as exc:  # Whatever the store does, the server keeps answering.
            self._sink = None  # reopen: credentials or a mount may have appeared meanwhile
            self.metrics.errors.inc()
            file.attempts += 1
            self._delay = min(max(self._delay * 2, self._retry), self._max_retry)
            self._next_attempt = now + self._delay
            gave_up = file.attempts >= self._attempts
            if gave_up:
                self.metrics.dropped["write_error"].inc(file.rows)
                self._file = None
            level = logging.WARNING if not self._failing or gave_up else logging.DEBUG
            log.log(
                level,
                "capture: cannot write %s (attempt %d of %d%s): %s",
                file.path,
                file.attempts,
                self._attempts,
                f", {file.rows} rows dropped" if gave_up else f", retry in {self._delay:.1f} s",
                exc,
            )
            self._failing = True
            return
        if self._failing:
            log.info("capture: writing again (%s)", file.path)
        self._failing = False
        self._delay = 0.0
        self._next_attempt = now
        self.metrics.files.inc()
        for reason, count in file.by_reason.items():
            if count:
                self.metrics.rows[reason].inc(count)
        self._file = None

    def _drop_everything(self, reason: str) -> None:
        with self._lock:
            lost = self._queued
            self._queue.clear()
            self._queued = 0
        lost += self._buffer_rows + (self._file.rows if self._file is not None else 0)
        self._batches, self._buffer_rows, self._buffer_bytes, self._file = [], 0, 0, None
        if lost:
            self.metrics.dropped[reason].inc(lost)
            log.warning("capture: %d rows not written (%s)", lost, reason)


def _present(value: np.ndarray | None) -> np.ndarray:
    assert value is not None  # a classifier's answer always has probabilities and flags
    return value


def _feature(dtype: str, values: np.ndarray) -> pa.Array:
    """One input column in its schema type (a missing numeric value becomes null)."""
    if dtype == "float":
        return pa.array(np.asarray(values, dtype=np.float64), pa.float64(), from_pandas=True)
    if dtype == "int":
        if values.dtype.kind == "f":  # a null in the request made the column float
            return pa.array(values, pa.float64(), from_pandas=True).cast(pa.int64())
        return pa.array(np.asarray(values, dtype=np.int64), pa.int64())
    if dtype == "bool":
        return pa.array(np.asarray(values, dtype=bool), pa.bool_())
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # integer categories (v2 INT tensors)
        return pa.array([None if v is None else str(v) for v in values.tolist()], pa.string())
