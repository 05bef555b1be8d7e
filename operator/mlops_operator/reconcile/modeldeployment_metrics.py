"""What the serving pods' ``/metrics`` say, reduced to what the decisions need. Pure.

The handler scrapes each ready serving pod (or, in tests, is fed the text) and passes
the parsed ``PodMetrics`` here. From them come: the autoscaler's load sample (busy
seconds and request counts, see ``autoscale.sample_from_scrapes``), the canary verdict
(5xx rate and p95 latency per track over a sliding window: each pod's counters and histogram
buckets now minus what they were at the window's start, see ``window``) and the drift
summary (the largest per-feature PSI over pods whose window is full enough; the serving pod
keeps that window itself, so drift reads the latest scrape, never a delta).

The counters are cumulative since each pod started, so judging on them as they are would let
hours of a stable track's clean history dilute a fresh error burst, and keep a canary that was
bad in its first minute "bad" forever. The handler remembers each pod's recent scrapes
(``remember``) and the verdict subtracts the scrape at the window's start.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from prometheus_client import parser as prom_parser

from mlops_operator.api import modeldeployment as api

PREDICTION_ENDPOINTS = frozenset({"/v2/models/{name}/infer", "/v1/models/{name}:predict"})


@dataclasses.dataclass(frozen=True)
class PodMetrics:
    """One scrape of one pod (cumulative since the pod started)."""

    time: float
    requests: float = 0.0  # prediction requests answered (all codes)
    errors: float = 0.0  # of which 5xx
    busy_seconds: float = 0.0  # sum of prediction latencies
    buckets: tuple[tuple[float, float], ...] = ()  # (le, cumulative count) over prediction endpoints
    inflight: float = 0.0
    drift: float | None = None
    drift_feature: str | None = None
    drift_rows: int = 0
    digest: str | None = None
    started: float | None = None  # when the pod started (Unix time), if the handler knows it


def parse(text: str, *, time: float) -> PodMetrics:
    """Parse a serving pod's exposition; unknown families are ignored."""
    requests = errors = busy = inflight = 0.0
    buckets: dict[float, float] = {}
    drift_by_feature: dict[str, float] = {}
    drift_rows = 0
    digest = None
    for family in prom_parser.text_string_to_metric_families(text):
        for s in family.samples:
            endpoint = s.labels.get("endpoint")
            if s.name == "mlops_serve_requests_total" and endpoint in PREDICTION_ENDPOINTS:
                requests += s.value
                if s.labels.get("code", "").startswith("5"):
                    errors += s.value
            elif s.name == "mlops_serve_request_duration_seconds_sum" and endpoint in PREDICTION_ENDPOINTS:
                busy += s.value
            elif s.name == "mlops_serve_request_duration_seconds_bucket" and endpoint in PREDICTION_ENDPOINTS:
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name == "mlops_serve_inflight_requests":
                inflight = s.value
            elif s.name == "mlops_serve_drift_score" and "feature" in s.labels:
                drift_by_feature[s.labels["feature"]] = s.value
            elif s.name == "mlops_serve_drift_window_rows":
                drift_rows = int(s.value)
            elif s.name == "mlops_serve_model_info" and s.value:
                digest = s.labels.get("digest") or digest
    feature = max(drift_by_feature, key=lambda k: drift_by_feature[k], default=None)
    return PodMetrics(
        time=time,
        requests=requests,
        errors=errors,
        busy_seconds=busy,
        buckets=tuple(sorted(buckets.items())),
        inflight=inflight,
        drift=drift_by_feature[feature] if feature is not None else None,
        drift_feature=feature,
        drift_rows=drift_rows,
        digest=digest,
    )


def _went_back(latest: PodMetrics, base: PodMetrics) -> bool:
    """Did a counter decrease between ``base`` and ``latest`` (the pod's server restarted)?"""
    if (
        latest.requests < base.requests
        or latest.errors < base.errors
        or latest.busy_seconds < base.busy_seconds
    ):
        return True
    now = dict(latest.buckets)
    return any(now.get(le, 0.0) < count for le, count in base.buckets)


def window(history: Sequence[PodMetrics], *, since: float) -> PodMetrics:
    """One pod's counters over the window that starts at ``since`` (a Unix time).

    ``history`` is the pod's scrapes, oldest first, each cumulative since the pod started; the
    last is the latest. The result is the latest minus the newest scrape at or before ``since``
    (requests, errors, busy seconds and every histogram bucket); its other fields (time,
    in-flight, drift, digest) are the latest's. When no scrape is that old, the latest counts
    whole when the pod started inside the window (so all its requests are in it) or its start
    is unknown. When the pod started before the window but the history is younger (the
    operator restarted, or only just began to watch the pod), the counts run from the oldest
    scrape kept: a shorter window, never the pod's whole past, so an old error burst is not
    judged again after a restart (with one scrape that is nothing, and the verdict waits).
    When a counter went backwards since the base (the pod's server restarted), the latest
    counts as is: it holds what the new process answered, all of it since.
    """
    if not history:
        raise ValueError("window() needs at least one scrape")
    latest = history[-1]
    base = next((m for m in reversed(history[:-1]) if m.time <= since), None)
    if base is None and latest.started is not None and latest.started < since:
        base = history[0]
    if base is None or _went_back(latest, base):
        return latest
    before = dict(base.buckets)
    return dataclasses.replace(
        latest,
        requests=latest.requests - base.requests,
        errors=latest.errors - base.errors,
        busy_seconds=latest.busy_seconds - base.busy_seconds,
        buckets=tuple((le, count - before.get(le, 0.0)) for le, count in latest.buckets),
    )


def remember(
    history: Sequence[PodMetrics], scrape: PodMetrics, *, since: float, spacing: float
) -> tuple[PodMetrics, ...]:
    """``history`` with ``scrape`` appended, trimmed to what ``window(..., since=since)`` needs.

    Kept: every scrape after ``since`` plus the newest one at or before it (the window's base).
    While the latest is closer than ``spacing`` seconds to the scrape before it, a new scrape
    replaces it instead of adding to it, so the scrapes before the latest are at least
    ``spacing`` apart and the history stays bounded (window / spacing + 2 scrapes) however
    often the handler runs. A scrape whose counters went backwards (the pod's server
    restarted) or whose time is older than the latest's starts the history afresh: nothing
    before it can be subtracted from it.
    """
    kept = list(history)
    if kept and (scrape.time < kept[-1].time or _went_back(scrape, kept[-1])):
        kept = []
    if len(kept) >= 2 and kept[-1].time - kept[-2].time < spacing:
        kept[-1] = scrape
    else:
        kept.append(scrape)
    first = 0
    while first + 1 < len(kept) - 1 and kept[first + 1].time <= since:
        first += 1
    return tuple(kept[first:])


@dataclasses.dataclass(frozen=True)
class TrackStats:
    requests: float
    errors: float
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """histogram_quantile over cumulative (le, count) buckets, in the buckets' unit."""
    if not buckets:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def track_stats(pods: Sequence[PodMetrics]) -> TrackStats:
    """One track's requests, 5xx and p95 over its pods (pass windowed ones, see ``window``)."""
    merged: dict[float, float] = {}
    for pod in pods:
        for le, count in pod.buckets:
            merged[le] = merged.get(le, 0.0) + count
    p95 = quantile(sorted(merged.items()), 0.95)
    return TrackStats(
        requests=sum(p.requests for p in pods),
        errors=sum(p.errors for p in pods),
        p95_ms=None if p95 is None else p95 * 1000,
    )


def canary_verdict(stable: TrackStats, canary: TrackStats, policy: api.RollbackPolicy) -> tuple[str, str]:
    """("Progressing" | "Healthy" | "RolledBack", the numbers) for a canary against stable.

    Both stats are over the policy's window (``window_seconds``), so ``min_requests`` counts the
    canary's requests in that window.
    """
    if canary.requests < policy.min_requests:
        return (
            "Progressing",
            f"canary answered {canary.requests:.0f} of the {policy.min_requests} requests needed "
            f"in the last {policy.window_seconds} s",
        )
    numbers = (
        f"over the last {policy.window_seconds} s: error rate canary {canary.error_rate:.4f} vs stable "
        f"{stable.error_rate:.4f}; p95 canary {_ms(canary.p95_ms)} vs stable {_ms(stable.p95_ms)}"
    )
    if canary.error_rate > stable.error_rate + policy.error_rate_margin:
        return "RolledBack", f"error rate over the margin {policy.error_rate_margin}: {numbers}"
    if (
        canary.p95_ms is not None
        and stable.p95_ms is not None
        and canary.p95_ms > stable.p95_ms + policy.p95_latency_margin_ms
    ):
        return "RolledBack", f"p95 latency over the margin {policy.p95_latency_margin_ms} ms: {numbers}"
    return "Healthy", numbers


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def drift_summary(pods: list[PodMetrics], *, min_rows: int) -> tuple[float | None, str | None, int]:
    """(largest PSI, its feature, that pod's window rows) over pods with at least ``min_rows``."""
    best: tuple[float, str | None, int] | None = None
    for pod in pods:
        if pod.drift is None or pod.drift_rows < min_rows:
            continue
        if best is None or pod.drift > best[0]:
            best = (pod.drift, pod.drift_feature, pod.drift_rows)
    if best is None:
        rows = max((p.drift_rows for p in pods), default=0)
        return None, None, rows
    return best
