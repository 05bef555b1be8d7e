"""Prometheus metrics of the operator, on an explicit registry (never the global one).

Every name starts with ``mlops_operator_``. The registry is served on ``/metrics`` by the
operator's startup handler; tests read it with ``prometheus_client.generate_latest``.
"""

from __future__ import annotations

import threading

import prometheus_client

REGISTRY = prometheus_client.CollectorRegistry(auto_describe=True)

RECONCILES = prometheus_client.Counter(
    "mlops_operator_reconcile",
    "Reconcile passes per kind and result (ok, error, failed).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = prometheus_client.Histogram(
    "mlops_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass per kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
API_REQUESTS = prometheus_client.Counter(
    "mlops_operator_api_requests",
    "Requests the operator's own client sent to the Kubernetes API (not kopf's watches), per HTTP method.",
    ["method"],
    registry=REGISTRY,
)
ERRORS = prometheus_client.Counter(
    "mlops_operator_errors",
    "Reconcile errors per kind and reason (ApiError, PermanentFailure, TemporaryError, Exception).",
    ["kind", "reason"],
    registry=REGISTRY,
)
OBJECTS = prometheus_client.Gauge(
    "mlops_operator_objects",
    "Custom resources the operator watches, per kind and phase.",
    ["kind", "phase"],
    registry=REGISTRY,
)
TRAININGJOBS = prometheus_client.Gauge(
    "mlops_operator_trainingjobs",
    "TrainingJobs per phase.",
    ["phase"],
    registry=REGISTRY,
)
TRAINING_DURATION = prometheus_client.Histogram(
    "mlops_operator_training_duration_seconds",
    "Duration of finished TrainingJobs, from the Job's start to its completion.",
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
    registry=REGISTRY,
)
TRAINING_POD_START = prometheus_client.Histogram(
    "mlops_operator_trainingjob_pod_start_seconds",
    "Time from a TrainingJob's creation to its first pod starting.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)


CACHE_OBJECTS = prometheus_client.Gauge(
    "mlops_operator_cache_objects",
    "Objects held in the operator's watch-fed caches, per kind and watched namespace ('' = all).",
    ["kind", "namespace"],
    registry=REGISTRY,
)
CACHE_READS = prometheus_client.Counter(
    "mlops_operator_cache_reads",
    "Reads answered from the caches instead of the API, per kind and result (hit, absent, list).",
    ["kind", "result"],
    registry=REGISTRY,
)
WATCH_RESTARTS = prometheus_client.Counter(
    "mlops_operator_watch_restarts",
    "Cache watches that ended and were resumed, per kind and reason (timeout, expired: a new LIST, error).",
    ["kind", "reason"],
    registry=REGISTRY,
)
QUEUE_DEPTH = prometheus_client.Gauge(
    "mlops_operator_queue_depth",
    "Reconcile passes per kind that are waiting for a worker or running.",
    ["kind"],
    registry=REGISTRY,
)


class PhaseTracker:
    """Keeps ``mlops_operator_objects{kind,phase}`` (and the TrainingJob gauge) exact.

    Each object's last phase is remembered by uid, so a phase change moves one count and a
    deletion removes it; after a restart kopf's resume pass rebuilds the map.
    """

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def observe(self, kind: str, uid: str, phase: str | None) -> None:
        phase = phase or "Unknown"
        with self._lock:
            old = self._phases.get((kind, uid))
            if old == phase:
                return
            if old is not None:
                self._gauge(kind, old).dec()
            self._phases[(kind, uid)] = phase
            self._gauge(kind, phase).inc()

    def forget(self, kind: str, uid: str) -> None:
        with self._lock:
            old = self._phases.pop((kind, uid), None)
            if old is not None:
                self._gauge(kind, old).dec()

    @staticmethod
    def _gauge(kind: str, phase: str) -> _Both:
        return _Both(kind, phase)


class _Both:
    """Moves the generic gauge and, for TrainingJobs, the dedicated one in step."""

    def __init__(self, kind: str, phase: str) -> None:
        self.gauges = [OBJECTS.labels(kind=kind, phase=phase)]
        if kind == "TrainingJob":
            self.gauges.append(TRAININGJOBS.labels(phase=phase))

    def inc(self) -> None:
        for g in self.gauges:
            g.inc()

    def dec(self) -> None:
        for g in self.gauges:
            g.dec()


PHASES = PhaseTracker()
