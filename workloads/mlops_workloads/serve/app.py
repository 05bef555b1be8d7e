"""The model server's protocol logic, independent of the HTTP stack.

``App.dispatch`` turns (method, path, body) into either a finished ``Response`` or a
``Pending`` prediction; ``App.score`` answers a list of pending predictions with ONE model
call (adaptive batching: requests that arrive in the same event-loop turn share a
``predict_proba``, which costs about the same for 1 row as for 100). A failure of the
joint call falls back to one call per request, so a bad request only fails itself.

Every path ends in a JSON answer: unknown paths 404, wrong methods 405, bad inputs 4xx
(see ``inputs``), model errors on a valid input 422, and anything unexpected 500 with the
exception's type (logged), never a dropped connection.

``/v1/models/<name>:explain`` and ``/v2/models/<name>/explain`` take the bodies of predict and
infer and answer the predictions with per-row SHAP attributions in the original columns
(``explain``; 501 with the reason when the model cannot be explained). They are queued and
scored like predictions, one request per explainer call, and are not predictions: no drift,
capture or prediction metrics. A bounded sample of the rows served is explained off the
request path for attribution drift (``explain.AttributionMonitor``).

Every prediction has a request id: the ``x-request-id`` header when it is given (printable
ASCII, at most 200 characters), else the v2 body's ``id``, else a new uuid4 hex; the answer
carries it in its ``X-Request-Id`` header, and captured rows (``capture``, ``spec.logging``)
are stored under it, so a client or a reviewer can find the row of an answer. Every answer
also carries a W3C ``traceparent`` (the caller's trace continued, or a new one) and, with
OpenTelemetry configured by the environment, a prediction is a span with ``decode``, ``queue``,
``predict`` and ``encode`` children (``tracing``).
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import json
import logging
import random
import re
import threading
import time
import uuid
from typing import Any

import numpy as np
import pandas as pd

from mlops_operator.api import modeldeployment as md_api
from mlops_operator.api import workload
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import capture as capture_mod
from mlops_workloads.serve import drift as drift_mod
from mlops_workloads.serve import explain as explain_mod
from mlops_workloads.serve import inputs, openapi, telemetry, tracing

log = logging.getLogger("mlops_workloads.serve")
JSON = "application/json"
SERVER_NAME = "mlops-serve"
SERVER_VERSION = "0.1.0"
V2_DATATYPE = {"float": "FP64", "int": "INT64", "bool": "BOOL", "category": "BYTES", "string": "BYTES"}
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII: safe to echo in a header


@dataclasses.dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    endpoint: str = "other"
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass
class Pending:
    """A validated prediction request waiting for the model."""

    protocol: str  # "v2" or "v1"
    batch: inputs.Batch
    endpoint: str
    request_id: str | None = None  # the v2 body's "id", echoed in the body
    outputs: tuple[str, ...] | None = None
    trace_id: str = ""  # the request id of the module docstring (header, v2 id or a new uuid4)
    explain: bool = False  # an explain request (``explain``), scored on its own
    trace: tracing.TraceContext | None = None  # from traceparent/tracestate (or a new trace)
    marks: tracing.Marks | None = None  # when it arrived, was decoded, was predicted (spans)


# One encoder for every answer (json.dumps with keywords builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def error(
    status: int, message: str, *, endpoint: str = "other", headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return Response(status, _dumps({"error": message}), endpoint=endpoint, headers=headers)


def _jsonable(values: np.ndarray) -> list[Any]:
    out: list[Any] = values.tolist()
    return out


class App:
    def __init__(
        self,
        bundle: bundle_mod.Bundle,
        *,
        model_name: str = "model",
        model_version: str = "1",
        low_confidence_threshold: float = 0.6,
        max_batch_rows: int = 1000,
        drift_window: int = 1000,
        capture: md_api.CaptureConfig | None = None,
        capture_rng: random.Random | None = None,
        pvc_root: str = "/mnt/mlops",
        secrets_root: str = workload.SECRETS_DIR,
        attribution_interval: float = 30.0,
        explainer_in_background: bool = True,
        tracer: tracing.Tracer | None = None,
        tracer_from_env: bool = True,
    ) -> None:
        """``attribution_interval``: seconds between attribution-monitor passes (0: no thread;
        ``attribution.run_once()`` runs a pass). ``explainer_in_background``: build the explainer
        (shap's import and its checks: seconds) on a thread, so the model serves as soon as it is
        loaded; explain answers 503 (Retry-After) until it is built (``explainer_built`` waits)."""
        self.bundle = bundle
        self.name = model_name
        # After the fork of --workers (one exporter thread per process), like capture's writer.
        self.tracer = tracer if tracer is not None or not tracer_from_env else tracing.tracer_from_env()
        self.version = model_version
        self.threshold = low_confidence_threshold
        self.max_rows = max_batch_rows
        self.schema = bundle.schema
        self.classification = bundle.task == "classification"
        self.classes = bundle.classes
        self.drift = drift_mod.DriftMonitor(bundle.baseline, features=self.schema.names, window=drift_window)
        self.telemetry = telemetry.Telemetry(
            model_name=model_name,
            digest=bundle.digest,
            version=model_version,
            classes=self.classes if self.classification else None,
            features=self.drift.features,
            capture=capture is not None,
        )
        # Built here, after the fork of --workers, like capture's writer: one monitor thread per
        # process. shap's import and the explainer's additivity check take seconds: on a thread,
        # so readiness (and a scale-from-zero cold start) never waits for them.
        self.explainer: explain_mod.Explainer | None = None
        self.explain_unavailable = ""
        self.attribution: explain_mod.AttributionMonitor | None = None
        self.explainer_built = threading.Event()
        self._closed = False  # close() ran: a monitor built after it is not started
        self._attribution_interval = attribution_interval
        # Started here, in the process that serves (after the fork of --workers): one writer
        # thread per process.
        self.capture: capture_mod.Capture | None = None
        if capture is not None:
            assert self.telemetry.capture is not None
            model = capture_mod.ModelInfo(
                name=model_name,
                version=model_version,
                digest=bundle.digest,
                task=bundle.task,
                features=tuple((f.name, f.dtype) for f in self.schema.features),
                classes=self.classes if self.classification else None,
            )
            self.capture = capture_mod.Capture.from_config(
                capture,
                model=model,
                metrics=self.telemetry.capture,
                pvc_root=pvc_root,
                secrets_root=secrets_root,
                rng=capture_rng,
            )
            self.capture.start()
        self._low_window: collections.deque[tuple[int, int]] = collections.deque()
        self._low_rows = 0
        self._low_count = 0
        self._drift_window = drift_window
        # Scoring may run on a worker thread while /metrics reads the windows on the loop.
        self._state_lock = threading.Lock()
        self.ready = True
        self.draining = False
        self.openapi = self._openapi()
        if self.classes is not None:
            if all(isinstance(c, bool) for c in self.classes):
                self._pred_datatype = "BOOL"
            elif all(isinstance(c, int) and not isinstance(c, bool) for c in self.classes):
                self._pred_datatype = "INT64"
            elif all(isinstance(c, (int, float)) for c in self.classes):
                self._pred_datatype = "FP64"
            else:
                self._pred_datatype = "BYTES"
            self._classes_array = np.asarray(self.classes, dtype=object)
            self._classes_list = list(self.classes)
        else:
            self._pred_datatype = "FP64"
        self._metadata = _dumps(self._model_metadata())
        if explainer_in_background:
            threading.Thread(target=self._build_explainer, name="explainer-build", daemon=True).start()
        else:
            self._build_explainer()

    # ------------------------------------------------------------------------------------------
    # routing
    # ------------------------------------------------------------------------------------------

    def dispatch(
        self,
        method: str,
        path: str,
        body: bytes,
        request_id: str | None = None,
        *,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> Response | Pending:
        """``request_id``: the request's x-request-id header, if any; ``traceparent`` and
        ``tracestate``: its W3C trace context headers, if any."""
        received = time.time_ns()
        given = request_id if request_id is not None and REQUEST_ID.fullmatch(request_id) else None
        result: Response | Pending
        try:
            result = self._route(method, path, body)
        except inputs.InputError as exc:
            result = error(exc.status, exc.message, endpoint=_endpoint_of(path))
        except Exception as exc:  # A bug must still answer JSON, not drop the connection.
            log.exception("unexpected error on %s %s", method, path)
            result = error(500, f"internal error: {type(exc).__name__}", endpoint=_endpoint_of(path))
        if isinstance(result, Pending):
            body_id = result.request_id
            if given is None and body_id is not None and REQUEST_ID.fullmatch(body_id):
                given = body_id
            result.trace_id = given or uuid.uuid4().hex
            result.trace = tracing.TraceContext.from_headers(traceparent, tracestate)
            result.marks = tracing.Marks(received=received, decoded=time.time_ns())
        else:
            if given is not None:
                result.headers = (*result.headers, (REQUEST_ID_HEADER, given))
            if traceparent is not None:
                echoed = tracing.TraceContext.from_headers(traceparent, tracestate)
                result.headers = (*result.headers, *echoed.headers())
        return result

    def close(self, timeout: float = 10.0) -> None:
        """Write what capture still holds (SIGTERM), for at most ``timeout`` seconds."""
        self._closed = True
        if self.attribution is not None:
            self.attribution.close()
        if self.capture is not None:
            self.capture.close(timeout)

    def _route(self, method: str, path: str, body: bytes) -> Response | Pending:
        if method == "HEAD":
            method = "GET"
        if path == "/v2/health/live":
            return self._get(method, "/v2/health/live", lambda: Response(200, b'{"live":true}'))
        if path == "/v2/health/ready":
            return self._get(method, "/v2/health/ready", self._health_ready)
        if path == "/metrics":
            return self._get(method, "/metrics", self._metrics)
        if path == "/openapi.json":
            return self._get(method, "/openapi.json", lambda: Response(200, self.openapi))
        if path == "/v2":
            return self._get(method, "/v2", self._server_metadata)
        if path.startswith("/v2/models/"):
            return self._v2_model(method, path[len("/v2/models/") :], body)
        if path == "/v1/models":
            return self._get(method, "/v1/models", lambda: Response(200, _dumps({"models": [self.name]})))
        if path.startswith("/v1/models/"):
            return self._v1_model(method, path[len("/v1/models/") :], body)
        return error(404, f"no route for {path!r}; see /openapi.json", endpoint="other")

    def _get(self, method: str, endpoint: str, fn: Any) -> Response:
        if method != "GET":
            return error(405, f"{endpoint} accepts GET", endpoint=endpoint, headers=(("Allow", "GET"),))
        response: Response = fn()
        response.endpoint = endpoint
        return response

    def _post(self, method: str, endpoint: str) -> Response | None:
        if method != "POST":
            return error(405, f"{endpoint} accepts POST", endpoint=endpoint, headers=(("Allow", "POST"),))
        return None

    def _unknown_model(self, name: str, endpoint: str) -> Response:
        return error(
            404, f"model {name!r} is not served here; this server serves {self.name!r}", endpoint=endpoint
        )

    def _v2_model(self, method: str, rest: str, body: bytes) -> Response | Pending:
        name, _, tail = rest.partition("/")
        if tail.startswith("versions/"):
            version, _, tail = tail[len("versions/") :].partition("/")
            if version != self.version:
                return error(
                    404,
                    f"model {name!r} has no version {version!r}; it has {self.version!r}",
                    endpoint="/v2/models/{name}",
                )
        if tail == "":
            endpoint = "/v2/models/{name}"
            if name != self.name:
                return self._unknown_model(name, endpoint)
            return self._get(method, endpoint, lambda: Response(200, self._metadata))
        if tail == "ready":
            endpoint = "/v2/models/{name}/ready"
            if name != self.name:
                return self._unknown_model(name, endpoint)
            return self._get(method, endpoint, self._model_ready)
        if tail == "infer":
            endpoint = "/v2/models/{name}/infer"
            refused = self._post(method, endpoint)
            if refused is not None:
                return refused
            if name != self.name:
                return self._unknown_model(name, endpoint)
            return self._v2_infer(body, endpoint)
        if tail == "explain":
            endpoint = "/v2/models/{name}/explain"
            refused = self._post(method, endpoint)
            if refused is not None:
                return refused
            if name != self.name:
                return self._unknown_model(name, endpoint)
            return self._explain_request("v2", body, endpoint)
        return error(404, f"no route for /v2/models/{rest!r}", endpoint="other")

    def _v1_model(self, method: str, rest: str, body: bytes) -> Response | Pending:
        if rest.endswith(":predict"):
            endpoint = "/v1/models/{name}:predict"
            name = rest[: -len(":predict")]
            refused = self._post(method, endpoint)
            if refused is not None:
                return refused
            if name != self.name:
                return self._unknown_model(name, endpoint)
            payload = inputs.parse_json(body)
            batch = inputs.decode_v1(payload, self.schema, max_rows=self.max_rows)
            return Pending(protocol="v1", batch=batch, endpoint=endpoint)
        if rest.endswith(":explain"):
            endpoint = "/v1/models/{name}:explain"
            name = rest[: -len(":explain")]
            refused = self._post(method, endpoint)
            if refused is not None:
                return refused
            if name != self.name:
                return self._unknown_model(name, endpoint)
            return self._explain_request("v1", body, endpoint)
        if "/" in rest or ":" in rest:
            return error(404, f"no route for /v1/models/{rest!r}", endpoint="other")
        endpoint = "/v1/models/{name}"
        if rest != self.name:
            return self._unknown_model(rest, endpoint)
        return self._get(method, endpoint, self._model_ready_v1)

    # ------------------------------------------------------------------------------------------
    # simple endpoints
    # ------------------------------------------------------------------------------------------

    def _is_ready(self) -> bool:
        return self.ready and not self.draining

    def _health_ready(self) -> Response:
        ok = self._is_ready()
        return Response(200 if ok else 503, _dumps({"ready": ok}))

    def _model_ready(self) -> Response:
        ok = self._is_ready()
        return Response(200 if ok else 503, _dumps({"name": self.name, "ready": ok}))

    def _model_ready_v1(self) -> Response:
        return Response(200, _dumps({"name": self.name, "ready": self._is_ready()}))

    def _server_metadata(self) -> Response:
        return Response(200, _dumps({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []}))

    def _model_metadata(self) -> dict[str, Any]:
        outputs: list[dict[str, Any]] = [
            {"name": "predictions", "datatype": self._pred_datatype, "shape": [-1]}
        ]
        if self.classification:
            outputs.append(
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(self.classes or ())]}
            )
            outputs.append({"name": "low_confidence", "datatype": "BOOL", "shape": [-1]})
        card = self.bundle.card
        return {
            "name": self.name,
            "versions": [self.version],
            # KServe's names: an ONNX network (the built-in PyTorch trainer's) or a skops Pipeline.
            "platform": "onnx" if (self.bundle.path / "model.onnx").exists() else "sklearn",
            "inputs": [
                {"name": f.name, "datatype": V2_DATATYPE[f.dtype], "shape": [-1]}
                for f in self.schema.features
            ],
            "outputs": outputs,
            "parameters": {
                "task": self.schema.task,
                "digest": self.bundle.digest,
                "classes": list(self.classes) if self.classes is not None else None,
                "estimator": card.get("estimator"),
                "lowConfidenceThreshold": self.threshold,
                "maxBatchRows": self.max_rows,
                "explainer": (
                    {
                        "method": self.explainer.method,
                        "explainer": self.explainer.explainer,
                        "outputSpace": self.explainer.space,
                        "maxRows": self.explainer.max_rows,
                    }
                    if self.explainer is not None
                    else {"unavailable": self.explain_unavailable or "the explainer is being built"}
                ),
            },
        }

    def refresh_drift(self) -> None:
        with self._state_lock:
            scores = self.drift.scores()
            rows = self.drift.rows
            low_ratio = self._low_count / self._low_rows if self._low_rows else 0.0
        self.telemetry.set_drift(scores, overall=self.drift.overall(scores), rows=rows, low_ratio=low_ratio)

    def _metrics(self) -> Response:
        self.refresh_drift()
        return Response(200, self.telemetry.exposition(), content_type=telemetry.CONTENT_TYPE)

    # ------------------------------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------------------------------

    def _v2_infer(self, body: bytes, endpoint: str, *, explain: bool = False) -> Pending:
        payload = inputs.parse_json(body)
        batch = inputs.decode_v2(payload, self.schema, max_rows=self.max_rows)
        if explain:
            limit = self.explainer.max_rows if self.explainer is not None else self.max_rows
            if batch.rows > limit:
                raise inputs.InputError(
                    413, f"the batch has {batch.rows} rows; explain takes at most {limit}"
                )
        request_id = payload.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise inputs.InputError(422, "'id' must be a string")
        outputs = payload.get("outputs")
        wanted: tuple[str, ...] | None = None
        if outputs is not None:
            if not isinstance(outputs, list) or not all(
                isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
            ):
                raise inputs.InputError(422, "'outputs' must be a list of objects with a 'name'")
            wanted = tuple(o["name"] for o in outputs)
            known = {"predictions"} | ({"probabilities", "low_confidence"} if self.classification else set())
            if explain:
                known = ({"predictions", "attributions", "base_values"} | known) - {"low_confidence"}
            unknown = sorted(set(wanted) - known)
            if unknown:
                raise inputs.InputError(422, f"unknown output(s) {unknown}; this model has {sorted(known)}")
        return Pending(
            protocol="v2",
            batch=batch,
            endpoint=endpoint,
            request_id=request_id,
            outputs=wanted,
            explain=explain,
        )

    def _build_explainer(self) -> None:
        """The explainer and its attribution monitor (``explain_mod.load`` never raises)."""
        explainer, why = explain_mod.load(self.bundle)
        if explainer is not None and not self._closed:
            metrics = self.telemetry.enable_attribution(
                explainer.features, training=explain_mod.training_means(self.bundle.card, explainer)
            )
            monitor = explain_mod.AttributionMonitor(
                explainer,
                window=self._drift_window,
                interval=self._attribution_interval,
                publish=metrics.publish,
                on_error=metrics.error,
            )
            monitor.start()
            self.attribution = monitor
            if self._closed:  # close() ran meanwhile and did not see it
                monitor.close()
        self.explainer, self.explain_unavailable = explainer, why
        self.openapi = self._openapi()  # the documents name the explainer now
        self._metadata = _dumps(self._model_metadata())
        self.explainer_built.set()

    def _openapi(self) -> bytes:
        return _dumps(
            openapi.document(
                model_name=self.name,
                schema=self.schema,
                max_rows=self.max_rows,
                version=SERVER_VERSION,
                explain_max_rows=self.explainer.max_rows if self.explainer is not None else None,
                explain_unavailable=(
                    self.explain_unavailable or "the explainer is being built"
                    if self.explainer is None
                    else ""
                ),
            )
        )

    def _explain_request(self, protocol: str, body: bytes, endpoint: str) -> Response | Pending:
        if not self.explainer_built.is_set():
            return error(
                503,
                "the explainer is being built (shap); retry in a few seconds",
                endpoint=endpoint,
                headers=(("Retry-After", "2"),),
            )
        if self.explainer is None:
            why = f"this model cannot be explained: {self.explain_unavailable}"
            return error(501, why, endpoint=endpoint)
        if protocol == "v2":
            return self._v2_infer(body, endpoint, explain=True)
        payload = inputs.parse_json(body)
        batch = inputs.decode_v1(payload, self.schema, max_rows=self.explainer.max_rows)
        return Pending(protocol="v1", batch=batch, endpoint=endpoint, explain=True)

    def _model_call(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """(predictions or class indices, probabilities) for a frame."""
        pipeline = self.bundle.pipeline
        if self.classification:
            proba = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
            return proba.argmax(axis=1), proba
        return np.asarray(pipeline.predict(frame), dtype=np.float64), None

    def score(self, pending: list[Pending]) -> list[Response]:
        """Answer pending predictions, with one model call when they fit together."""
        if any(p.explain for p in pending):
            predictions = [p for p in pending if not p.explain]
            scored = iter(self._score(predictions) if predictions else [])
            responses = [self._explain(p) if p.explain else next(scored) for p in pending]
        else:
            responses = self._score(pending)
        done = time.time_ns()
        for p, response in zip(pending, responses, strict=True):
            if p.trace_id:
                response.headers = (*response.headers, (REQUEST_ID_HEADER, p.trace_id))
            if p.trace is not None:
                trace = p.trace
                if self.tracer is not None and p.marks is not None:
                    trace = self.tracer.record(
                        trace,
                        p.marks,
                        done=done,
                        name=f"POST {p.endpoint}",
                        status=response.status,
                        attributes={"mlops.model": self.name, "mlops.request_id": p.trace_id},
                    )  # the caller's next span's parent is our server span
                response.headers = (*response.headers, *trace.headers())
        return responses

    @staticmethod
    def _predicted(pending: list[Pending], start: int, rows: int) -> None:
        """The model call's times on each request it answered (their ``predict`` spans)."""
        end = time.time_ns()
        for p in pending:
            if p.marks is not None:
                p.marks.predict_start, p.marks.predict_end = start, end
                p.marks.batch_requests, p.marks.batch_rows = len(pending), rows

    def _score(self, pending: list[Pending]) -> list[Response]:
        if len(pending) == 1:
            return [self._score_one(pending[0])]
        total = sum(p.batch.rows for p in pending)
        try:
            columns = {
                name: np.concatenate([p.batch.columns[name] for p in pending]) for name in self.schema.names
            }
            frame = inputs.frame_of(columns)
            started = time.time_ns()
            result, proba = self._model_call(frame)
            self._predicted(pending, started, total)
            if len(result) != total:
                raise ValueError("the model returned a different number of rows")
        except Exception:
            return [self._score_one(p) for p in pending]
        return self._answer(pending, columns, result, proba)

    def _score_one(self, p: Pending) -> Response:
        started = time.time_ns()
        try:
            result, proba = self._model_call(p.batch.frame)
            self._predicted([p], started, p.batch.rows)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            return error(422, f"the model could not score the input: {exc}", endpoint=p.endpoint)
        except Exception as exc:
            log.exception("model call failed")
            return error(500, f"the model failed: {type(exc).__name__}: {exc}", endpoint=p.endpoint)
        return self._answer([p], p.batch.columns, result, proba)[0]

    def _answer(
        self,
        pending: list[Pending],
        columns: dict[str, np.ndarray],
        result: np.ndarray,
        proba: np.ndarray | None,
    ) -> list[Response]:
        """The answers of the requests of one model call (``columns``: their rows, in order).

        What is counted over all rows (drift, attribution sample, metrics) is counted once per
        call; what is each request's (its low-confidence share, capture, its body) per request."""
        total = len(result)
        with self._state_lock:
            self.drift.add(columns)
        if self.attribution is not None:
            self.attribution.offer(columns, total)
        for p in pending:
            if p.batch.warnings:
                self.telemetry.observe_warnings(p.batch.warnings)
        low: np.ndarray | None = None
        if proba is not None:
            top = proba[np.arange(total), result]
            low = top < self.threshold
            counts = np.bincount(result, minlength=len(self._classes_array)).tolist()
            low_total = int(np.count_nonzero(low))
            self.telemetry.observe_predictions(class_counts=counts, values=None, rows=total, low=low_total)
            predictions = _jsonable(self._classes_array[result])
            probabilities = proba.tolist() if any(p.protocol == "v1" for p in pending) else []
            flags = low.tolist()
        else:
            predictions = result.tolist()
            self.telemetry.observe_predictions(class_counts=None, values=predictions, rows=total, low=0)
            low_total = 0
        out: list[Response] = []
        start = 0
        for p in pending:
            rows = p.batch.rows
            stop = start + rows
            if len(pending) == 1:
                p_result, p_proba, p_low, low_count = result, proba, low, low_total
            else:
                p_result, p_proba = result[start:stop], None if proba is None else proba[start:stop]
                p_low = None if low is None else low[start:stop]
                low_count = 0 if p_low is None else int(np.count_nonzero(p_low))
            if p_proba is not None:
                with self._state_lock:
                    self._track_low(rows, low_count)
            if self.capture is not None:
                self._capture(p, rows=rows, result=p_result, proba=p_proba, low=p_low, low_count=low_count)
            body: dict[str, Any]
            if p.protocol == "v1" and proba is not None:
                body = {
                    "predictions": predictions[start:stop],
                    "probabilities": probabilities[start:stop],
                    "lowConfidence": flags[start:stop],
                    "classes": self._classes_list,
                }
            elif p.protocol == "v1":
                body = {"predictions": predictions[start:stop]}
            else:
                body = self._v2_body(p, rows, predictions[start:stop], p_proba, p_low)
            if p.batch.warnings:
                if p.protocol == "v1":
                    body["warnings"] = p.batch.warnings
                else:
                    body.setdefault("parameters", {})["warnings"] = p.batch.warnings
            out.append(Response(200, _dumps(body), endpoint=p.endpoint))
            start = stop
        return out

    def _v2_body(
        self, p: Pending, rows: int, predictions: list[Any], proba: np.ndarray | None, low: np.ndarray | None
    ) -> dict[str, Any]:
        outputs: list[dict[str, Any]] = [
            {"name": "predictions", "datatype": self._pred_datatype, "shape": [rows], "data": predictions}
        ]
        if proba is not None and low is not None:
            outputs.append(
                {
                    "name": "probabilities",
                    "datatype": "FP64",
                    "shape": [rows, proba.shape[1]],
                    "data": proba.ravel().tolist(),
                    "parameters": {"classes": list(self.classes or ())},
                }
            )
            outputs.append(
                {"name": "low_confidence", "datatype": "BOOL", "shape": [rows], "data": low.tolist()}
            )
        if p.outputs is not None:
            outputs = [o for o in outputs if o["name"] in p.outputs]
        body: dict[str, Any] = {"model_name": self.name, "model_version": self.version, "outputs": outputs}
        if p.request_id is not None:
            body["id"] = p.request_id
        return body

    def _explain(self, p: Pending) -> Response:
        """Predictions and attributions for one explain request (``explain``)."""
        assert self.explainer is not None
        started = time.time_ns()
        try:
            result, proba = self._model_call(p.batch.frame)
            got = self.explainer.explain(p.batch.frame)
            self._predicted([p], started, p.batch.rows)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            return error(422, f"the model could not explain the input: {exc}", endpoint=p.endpoint)
        except Exception as exc:
            log.exception("explaining failed")
            return error(500, f"explaining failed: {type(exc).__name__}: {exc}", endpoint=p.endpoint)
        return Response(200, _dumps(self._explain_body(p, result, proba, got)), endpoint=p.endpoint)

    def _explain_body(
        self, p: Pending, result: np.ndarray, proba: np.ndarray | None, got: explain_mod.Attributions
    ) -> dict[str, Any]:
        assert self.explainer is not None
        e = self.explainer
        rows = p.batch.rows
        predictions = _jsonable(self._classes_array[result]) if proba is not None else result.tolist()
        outputs = list(e.outputs)
        meta: dict[str, Any] = {
            "method": e.method,
            "explainer": e.explainer,
            "outputSpace": e.space,
            "features": list(e.features),
            "outputs": outputs,
        }
        body: dict[str, Any]
        if p.protocol == "v1":
            body = {"predictions": predictions}
            if proba is not None:
                body["probabilities"] = proba.tolist()
                body["classes"] = list(self.classes or ())
            values = got.values.tolist()
            body["explanations"] = {
                **meta,
                "baseValues": got.base_values.tolist(),
                "attributions": [dict(zip(e.features, row, strict=True)) for row in values],
            }
            if p.batch.warnings:
                body["warnings"] = p.batch.warnings
            return body
        tensors: list[dict[str, Any]] = [
            {"name": "predictions", "datatype": self._pred_datatype, "shape": [rows], "data": predictions}
        ]
        if proba is not None:
            tensors.append(
                {
                    "name": "probabilities",
                    "datatype": "FP64",
                    "shape": [rows, proba.shape[1]],
                    "data": proba.ravel().tolist(),
                    "parameters": {"classes": list(self.classes or ())},
                }
            )
        tensors.append(
            {
                "name": "attributions",
                "datatype": "FP64",
                "shape": list(got.values.shape),
                "data": got.values.ravel().tolist(),
                "parameters": {"features": list(e.features), "outputs": outputs, "outputSpace": e.space},
            }
        )
        tensors.append(
            {
                "name": "base_values",
                "datatype": "FP64",
                "shape": [len(outputs)],
                "data": got.base_values.tolist(),
                "parameters": {"outputs": outputs},
            }
        )
        if p.outputs is not None:
            tensors = [t for t in tensors if t["name"] in p.outputs]
        body = {"model_name": self.name, "model_version": self.version, "outputs": tensors}
        body["parameters"] = meta
        if p.request_id is not None:
            body["id"] = p.request_id
        if p.batch.warnings:
            body["parameters"]["warnings"] = p.batch.warnings
        return body

    def _capture(
        self,
        p: Pending,
        *,
        rows: int,
        result: np.ndarray,
        proba: np.ndarray | None,
        low: np.ndarray | None,
        low_count: int,
    ) -> None:
        assert self.capture is not None
        try:
            self.capture.offer(
                p.trace_id or uuid.uuid4().hex,
                columns=p.batch.columns,
                result=result,
                proba=proba,
                low=low,
                low_count=low_count,
                rows=rows,
            )
        except Exception:  # Capture is best effort: a bug in it must not cost the answer.
            log.exception("capture failed; the answer is unaffected")
            if self.telemetry.capture is not None:
                self.telemetry.capture.errors.inc()

    def _track_low(self, rows: int, low: int) -> None:
        self._low_window.append((rows, low))
        self._low_rows += rows
        self._low_count += low
        while self._low_rows - self._low_window[0][0] >= self._drift_window and len(self._low_window) > 1:
            old_rows, old_low = self._low_window.popleft()
            self._low_rows -= old_rows
            self._low_count -= old_low

    def handle(self, method: str, path: str, body: bytes) -> Response:
        """Dispatch and score one request synchronously (tests and simple front ends)."""
        started = time.perf_counter()
        result = self.dispatch(method, path, body)
        response = self.score([result])[0] if isinstance(result, Pending) else result
        self.telemetry.observe_request(response.endpoint, response.status, time.perf_counter() - started)
        return response


def freeze_heap(app: App | None = None) -> None:
    """Take what is loaded now out of the garbage collector's full passes (``gc.freeze``), and
    what the explainer's build loads once it is built, for the rest of the process.

    A model server's heap is mostly its libraries and model (scikit-learn, pandas, shap: over a
    million objects), and a full collection walks all of it: ~150 ms on the loop, every few
    seconds under load (a 100-row request leaves hundreds of containers to the collector), which
    was the p99 at concurrency 32. Frozen, those objects are never walked; what requests leave
    is still collected. Called by the server's entry point once the model is loaded (before
    ``--workers`` forks: it also keeps the pages shared), and in each worker."""
    gc.collect()
    gc.freeze()
    if app is not None and not app.explainer_built.is_set():

        def after_build() -> None:
            app.explainer_built.wait()
            gc.freeze()

        threading.Thread(target=after_build, name="freeze-heap", daemon=True).start()


def _endpoint_of(path: str) -> str:
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "/v2/models/{name}/infer"
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        return "/v1/models/{name}:predict"
    if path.startswith("/v2/models/") and path.endswith("/explain"):
        return "/v2/models/{name}/explain"
    if path.startswith("/v1/models/") and path.endswith(":explain"):
        return "/v1/models/{name}:explain"
    return "other"
