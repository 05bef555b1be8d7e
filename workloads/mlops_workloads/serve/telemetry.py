"""Prometheus metrics of the model server, on an explicit registry.

What the operator and people read from ``/metrics``:
- ``mlops_serve_requests_total{endpoint,code}`` and ``mlops_serve_request_duration_seconds{endpoint}``:
  the canary verdict (error rate, p95) and the autoscaler (the histogram's ``_sum`` grows by
  one second per second of in-flight request, so its rate is the average concurrency by
  Little's law, without the sampling noise of the gauge). An HPA reads the same two per pod as
  ``mlops_serve_concurrency`` and ``mlops_serve_requests_per_second``, rates that the chart's
  prometheus-adapter rules (files/prometheus-adapter-values.yaml) derive from these counters;
- ``mlops_serve_inflight_requests``: the instantaneous concurrency;
- ``mlops_serve_predictions_total{class}`` (classifiers) or ``mlops_serve_prediction_value``
  (regressors): what the model answers;
- ``mlops_serve_rows_total`` and ``mlops_serve_low_confidence_total`` (their ratio is the
  low-confidence rate) and ``mlops_serve_low_confidence_ratio`` over the drift window;
- ``mlops_serve_drift_score{feature}``, ``mlops_serve_drift_score_overall`` and
  ``mlops_serve_drift_window_rows``: PSI against the training baseline;
- ``mlops_serve_input_warnings_total{feature,kind}`` and ``mlops_serve_model_info``;
- with an explainer (``serve.explain``): ``mlops_serve_attribution_mean_abs{feature}`` (mean
  |attribution| over the explained sample of served rows, the attribution-drift window),
  ``mlops_serve_attribution_training_mean_abs{feature}`` (training's, from the model card),
  ``mlops_serve_attribution_ratio{feature}`` (served / training: 1 is stable; present when the
  card's attributions were made the same way), ``mlops_serve_attribution_window_rows`` and
  ``mlops_serve_attribution_errors_total`` (failed monitor passes);
- with capture on (``spec.logging``): ``mlops_serve_capture_rows_total{reason}`` (rows written),
  ``mlops_serve_capture_files_total``, ``mlops_serve_capture_dropped_total{reason}`` (rows lost:
  ``queue_full``, ``write_error``, ``shutdown``), ``mlops_serve_capture_errors_total`` (failed
  write attempts) and ``mlops_serve_capture_pending_rows`` (rows accepted, not yet written).

With ``--workers N`` the processes share prometheus_client's multiprocess directory, so one
scrape of any worker reports the pod as a whole.
"""

from __future__ import annotations

import os
from typing import Any

import prometheus_client
from prometheus_client import multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PREDICTION_ENDPOINTS = ("/v2/models/{name}/infer", "/v1/models/{name}:predict")
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Telemetry:
    def __init__(
        self,
        *,
        model_name: str,
        digest: str,
        version: str,
        classes: tuple[Any, ...] | None,
        features: tuple[str, ...],
        capture: bool = False,
    ) -> None:
        self.multiprocess = multiprocess_mode()
        # ``*_created`` samples double the exposition for no use here (process-wide switch).
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = prometheus_client.Counter(
            "mlops_serve_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "code"],
            registry=reg,
        )
        self.latency = prometheus_client.Histogram(
            "mlops_serve_request_duration_seconds",
            "Request latency by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.inflight = prometheus_client.Gauge(
            "mlops_serve_inflight_requests",
            "Requests being handled now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.rows = prometheus_client.Counter("mlops_serve_rows", "Rows scored.", registry=reg)
        self.low_confidence = prometheus_client.Counter(
            "mlops_serve_low_confidence",
            "Rows whose top class probability was under the threshold.",
            registry=reg,
        )
        self.low_confidence_ratio = prometheus_client.Gauge(
            "mlops_serve_low_confidence_ratio",
            "Share of low-confidence rows over the recent window.",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.warnings = prometheus_client.Counter(
            "mlops_serve_input_warnings",
            "Accepted values outside the training distribution.",
            ["feature", "kind"],
            registry=reg,
        )
        self.drift = prometheus_client.Gauge(
            "mlops_serve_drift_score",
            "PSI of the recent window against the training baseline, per feature.",
            ["feature"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.drift_overall = prometheus_client.Gauge(
            "mlops_serve_drift_score_overall",
            "Largest per-feature PSI.",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.drift_rows = prometheus_client.Gauge(
            "mlops_serve_drift_window_rows",
            "Rows in the drift window.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        info = prometheus_client.Gauge(
            "mlops_serve_model_info",
            "The model being served (value 1).",
            ["model", "version", "digest"],
            registry=reg,
            multiprocess_mode="max",
        )
        info.labels(model_name, version, digest).set(1)
        self.classes = classes
        self._class_children: list[Any] = []
        self.prediction_value: Any = None
        if classes is not None:
            predictions = prometheus_client.Counter(
                "mlops_serve_predictions", "Predicted rows by class.", ["class"], registry=reg
            )
            self._class_children = [predictions.labels(str(c)) for c in classes]
            for child in self._class_children:
                child.inc(0)
        else:
            self.prediction_value = prometheus_client.Histogram(
                "mlops_serve_prediction_value",
                "Distribution of predicted values.",
                registry=reg,
                buckets=(-1e3, -1e2, -10, -1, 0, 1, 10, 1e2, 1e3, 1e4, 1e5),
            )
        for feature in features:
            self.drift.labels(feature).set(0)
        self.capture = CaptureMetrics(reg) if capture else None
        self.attribution: AttributionMetrics | None = None
        self._children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        key = (endpoint, code)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(endpoint, str(code))
        child.inc()
        hist = self._latency_children.get(endpoint)
        if hist is None:
            hist = self._latency_children[endpoint] = self.latency.labels(endpoint)
        hist.observe(seconds)

    def observe_predictions(
        self, *, class_counts: list[int] | None, values: Any, rows: int, low: int
    ) -> None:
        self.rows.inc(rows)
        if low:
            self.low_confidence.inc(low)
        if class_counts is not None:
            for child, count in zip(self._class_children, class_counts, strict=False):
                if count:
                    child.inc(count)
        elif self.prediction_value is not None and values is not None:
            for v in values:
                self.prediction_value.observe(float(v))

    def observe_warnings(self, warnings: list[dict[str, Any]]) -> None:
        for w in warnings:
            self.warnings.labels(w["feature"], w["kind"]).inc(w["rows"])

    def set_drift(self, scores: dict[str, float], *, overall: float, rows: int, low_ratio: float) -> None:
        for feature, score in scores.items():
            self.drift.labels(feature).set(score)
        self.drift_overall.set(overall)
        self.drift_rows.set(rows)
        self.low_confidence_ratio.set(low_ratio)

    def enable_attribution(
        self, features: tuple[str, ...], *, training: dict[str, float] | None
    ) -> AttributionMetrics:
        """The attribution-drift gauges (created once the model turned out to be explainable)."""
        self.attribution = AttributionMetrics(self.registry, features, training=training)
        return self.attribution

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return prometheus_client.generate_latest(registry)
        return prometheus_client.generate_latest(self.registry)


CAPTURE_DROP_REASONS = ("queue_full", "write_error", "shutdown")


class CaptureMetrics:
    """The capture writer's counters (``serve.capture``); written from the request path (drops of a
    full queue) and the writer thread, both cheap and thread-safe in prometheus_client."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        from mlops_workloads import capture

        rows = prometheus_client.Counter(
            "mlops_serve_capture_rows",
            "Captured rows written to storage, by why they were kept.",
            ["reason"],
            registry=registry,
        )
        self.rows = {reason: rows.labels(reason) for reason in capture.REASONS}
        dropped = prometheus_client.Counter(
            "mlops_serve_capture_dropped",
            "Captured rows lost (the answer never is): queue_full, write_error or shutdown.",
            ["reason"],
            registry=registry,
        )
        self.dropped = {reason: dropped.labels(reason) for reason in CAPTURE_DROP_REASONS}
        for child in (*self.rows.values(), *self.dropped.values()):
            child.inc(0)
        self.errors = prometheus_client.Counter(
            "mlops_serve_capture_errors",
            "Failed attempts to write a capture file (retried with backoff, then dropped).",
            registry=registry,
        )
        self.files = prometheus_client.Counter(
            "mlops_serve_capture_files", "Capture files written.", registry=registry
        )
        self.pending = prometheus_client.Gauge(
            "mlops_serve_capture_pending_rows",
            "Captured rows accepted and not yet written (queued, buffered or being written).",
            registry=registry,
            multiprocess_mode="livesum",
        )


class AttributionMetrics:
    """Mean |attribution| per feature of the served sample against training's (``serve.explain``).

    Set by the attribution monitor's thread after each pass. With ``--workers N`` each process
    explains its own sample; the gauges report the largest per-process value (as drift does).
    """

    def __init__(
        self,
        registry: prometheus_client.CollectorRegistry,
        features: tuple[str, ...],
        *,
        training: dict[str, float] | None,
    ) -> None:
        self.features = features
        self.training = training or {}
        self.mean_abs = prometheus_client.Gauge(
            "mlops_serve_attribution_mean_abs",
            "Mean |attribution| per feature over the explained sample of served rows.",
            ["feature"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.training_mean_abs = prometheus_client.Gauge(
            "mlops_serve_attribution_training_mean_abs",
            "Mean |attribution| per feature on training's validation sample (the model card).",
            ["feature"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.ratio = prometheus_client.Gauge(
            "mlops_serve_attribution_ratio",
            "Served mean |attribution| over training's, per feature (1: as in training).",
            ["feature"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.rows = prometheus_client.Gauge(
            "mlops_serve_attribution_window_rows",
            "Explained served rows in the attribution window.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.errors = prometheus_client.Counter(
            "mlops_serve_attribution_errors",
            "Attribution monitor passes that failed (the answers are unaffected).",
            registry=registry,
        )
        for feature in features:
            self.mean_abs.labels(feature).set(0)
            if feature in self.training:
                self.training_mean_abs.labels(feature).set(self.training[feature])

    def publish(self, means: dict[str, float], rows: int) -> None:
        for feature, value in means.items():
            self.mean_abs.labels(feature).set(value)
            base = self.training.get(feature)
            if base is not None and base > 0:
                self.ratio.labels(feature).set(value / base)
        self.rows.set(rows)

    def error(self) -> None:
        self.errors.inc()
