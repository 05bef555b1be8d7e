"""ModelDeployment handler: read the model source, the serving Deployments, their pods and the
pods' ``/metrics``; let the pure reconciler decide; apply, delete, report.

The metrics read sits behind ``MetricsSource`` (``scrape(pod) -> text | None``): in a cluster
it is an HTTP GET of ``http://<podIP>:8080/metrics``; integration tests on kwok nodes (where
no server runs) install a source that returns the text they want with ``set_metrics_source``.

The autoscaler's load is computed from two consecutive scrapes of cumulative counters
(busy seconds and request counts), so the previous scrape per pod is kept in memory here.
Losing it (an operator restart) costs one resync interval without a new sample; the
decision state itself (load window, panic, scale-down delay) is in the status.

The canary verdict compares the tracks over a sliding window (``rollback.windowSeconds``), so
while a ModelDeployment has a canary each pod's recent scrapes are kept in memory too
(``mmetrics.remember`` trims them to the window and bounds their number); pods that are gone
are forgotten. Losing them (an operator restart) judges each pod on its counters whole until
the history spans the window again (see ``mmetrics.window``).

With ``spec.retrain`` the handler also reads the template's Dataset, the current run's
challenger and evaluation Job (names from ``status.retrain``) and, for the labelledRows
trigger, the review server's ``/api/stats`` (``ReviewStatsSource``, replaceable in tests).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

from mlops_operator.api import common
from mlops_operator.api import modeldeployment as api
from mlops_operator.handlers import framework
from mlops_operator.reconcile import modeldeployment as rmd
from mlops_operator.reconcile import modeldeployment_activator as mactivator
from mlops_operator.reconcile import modeldeployment_autoscale as autoscale
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import modeldeployment_metrics as mmetrics
from mlops_operator.reconcile import modeldeployment_retrain as mretrain
from mlops_operator.reconcile import modeldeployment_review as mreview
from mlops_operator.reconcile import owner as rowner

RESYNC_SECONDS = 5.0
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
SCRAPE_TIMEOUT = 1.0
MAX_SCRAPE_THREADS = 16
HISTORY_POINTS = 120  # scrapes kept per pod and window at most (spacing = window / this)


class MetricsSource(Protocol):
    def scrape(self, pod: Mapping[str, Any]) -> str | None:
        """The pod's Prometheus exposition, or None when it cannot be read now."""


def get_from_pod(pod: Mapping[str, Any], *, port: int, path: str, timeout: float) -> str | None:
    """``GET http://<podIP>:<port><path>``'s body, or None (no IP yet, refused, timed out)."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as response:
            text: str = response.read().decode("utf-8", "replace")
            return text
    except (OSError, ValueError):
        return None


class HttpMetricsSource:
    """A serving pod's ``/metrics`` on its port, an activator pod's on the activator's admin port."""

    def __init__(self, *, port: int = build.PORT, timeout: float = SCRAPE_TIMEOUT) -> None:
        self.port = port
        self.timeout = timeout

    def scrape(self, pod: Mapping[str, Any]) -> str | None:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        activator = labels.get(rowner.LABEL_COMPONENT) == mactivator.COMPONENT
        port = mactivator.ADMIN_PORT if activator else self.port
        return get_from_pod(pod, port=port, path="/metrics", timeout=self.timeout)


class ReviewStatsSource(Protocol):
    def labelled(self, pod: Mapping[str, Any]) -> int | None:
        """Rows the review server counts as confirmed or corrected, or None when it cannot say now."""


class HttpReviewStatsSource:
    """``GET http://<podIP>:8080/api/stats`` of the review server: confirmed + corrected."""

    def __init__(self, *, port: int = mreview.PORT, timeout: float = SCRAPE_TIMEOUT) -> None:
        self.port = port
        self.timeout = timeout

    def labelled(self, pod: Mapping[str, Any]) -> int | None:
        text = get_from_pod(pod, port=self.port, path="/api/stats", timeout=self.timeout)
        try:
            stats = json.loads(text) if text is not None else None
        except ValueError:
            return None
        actions = stats.get("byAction") if isinstance(stats, dict) else None
        if not isinstance(actions, dict):
            return None
        counts = [actions.get(a, 0) for a in ("confirmed", "corrected")]
        return (
            sum(c for c in counts if isinstance(c, int)) if all(isinstance(c, int) for c in counts) else None
        )


_SOURCE: list[MetricsSource] = [HttpMetricsSource()]
_REVIEW_STATS: list[ReviewStatsSource] = [HttpReviewStatsSource()]
_BASELINES: dict[str, dict[str, tuple[float, float, float]]] = {}
_BASELINES_LOCK = threading.Lock()
# ModelDeployment uid → pod name → that pod's recent scrapes, oldest first (canary window).
_HISTORY: dict[str, dict[str, tuple[mmetrics.PodMetrics, ...]]] = {}
_HISTORY_LOCK = threading.Lock()


def set_metrics_source(source: MetricsSource | None) -> None:
    """Replace how pods' metrics are read (tests); None restores HTTP scraping."""
    _SOURCE[0] = source or HttpMetricsSource()
    with _BASELINES_LOCK:
        _BASELINES.clear()
    with _HISTORY_LOCK:
        _HISTORY.clear()


def set_review_stats_source(source: ReviewStatsSource | None) -> None:
    """Replace how the review server's label count is read (tests); None restores HTTP."""
    _REVIEW_STATS[0] = source or HttpReviewStatsSource()


def forget(uid: str) -> None:
    """The ModelDeployment is gone: drop its scrape baselines and histories."""
    with _BASELINES_LOCK:
        _BASELINES.pop(uid, None)
    with _HISTORY_LOCK:
        _HISTORY.pop(uid, None)


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _started(pod: Mapping[str, Any]) -> float | None:
    """The pod's ``status.startTime`` as a Unix time."""
    started = common.parse_rfc3339((pod.get("status") or {}).get("startTime"))
    return started.timestamp() if started is not None else None


def _scrape_all(pods: list[dict[str, Any]], *, now: float) -> dict[str, tuple[str, mmetrics.PodMetrics]]:
    """Ready pods' parsed metrics by pod name, with their track."""
    source = _SOURCE[0]
    ready = [p for p in pods if _pod_ready(p)]
    if not ready:
        return {}

    def one(pod: dict[str, Any]) -> tuple[str, str, mmetrics.PodMetrics] | None:
        text = source.scrape(pod)
        if text is None:
            return None
        try:
            metrics = mmetrics.parse(text, time=now)
        except ValueError:
            return None
        meta = pod.get("metadata") or {}
        track = (meta.get("labels") or {}).get(build.LABEL_TRACK, "stable")
        started = _started(pod)
        if started is not None:
            metrics = dataclasses.replace(metrics, started=started)
        return str(meta.get("name")), track, metrics

    if len(ready) == 1:
        results = [one(ready[0])]
    else:
        with concurrent.futures.ThreadPoolExecutor(min(MAX_SCRAPE_THREADS, len(ready))) as pool:
            results = list(pool.map(one, ready))
    return {name: (track, m) for name, track, m in (r for r in results if r is not None)}


def observe(ctx: framework.Context, md: api.ModelDeployment) -> rmd.Observed:
    ns = md.metadata.namespace
    observed = rmd.Observed()
    sources = [md.spec.model] + ([md.spec.canary.model] if md.spec.canary and md.spec.canary.model else [])
    for source in sources:
        for kind, name in rmd.source_refs(source):
            observed.sources[(kind, name)] = ctx.kube.get(common.API_VERSION, kind, name, ns)
    for track in build.TRACKS:
        observed.deployments[track] = ctx.kube.get(
            "apps/v1", "Deployment", build.deployment_name(md, track), ns
        )
    selector = ",".join(f"{k}={v}" for k, v in build.selector(md).items())
    pods = ctx.kube.list("v1", "Pod", ns, label_selector=selector)
    observed.pods = pods
    now = ctx.now.timestamp()
    scraped = _scrape_all(pods, now=now)
    for track, metrics in scraped.values():
        observed.pod_metrics.setdefault(track, []).append(metrics)
    _remember_scrapes(md, pods, scraped, observed=observed, now=now)
    scaling = md.spec.autoscaling
    if scaling is not None and scaling.autoscaler == "kpa":
        current = {name: (m.time, m.busy_seconds, m.requests) for name, (_, m) in scraped.items()}
        with _BASELINES_LOCK:
            previous = _BASELINES.get(md.metadata.uid, {})
            load, baseline = autoscale.sample_from_scrapes(
                previous=previous, current=current, metric=scaling.metric
            )
            _BASELINES[md.metadata.uid] = baseline
        observed.load_sample = load
    if mactivator.enabled(md):
        _observe_activator(ctx, md, observed)
    if md.spec.retrain is not None:
        observed.retrain = _observe_retrain(ctx, md, observed.sources)
    return observed


def _observe_activator(ctx: framework.Context, md: api.ModelDeployment, observed: rmd.Observed) -> None:
    """The activator's readiness and ``/metrics``; the connections it holds are load (at zero
    they are the only load: they are what scales the pods up)."""
    private = ctx.kube.get("v1", "Service", mactivator.private_service_name(md), md.metadata.namespace)
    ip = ((private or {}).get("spec") or {}).get("clusterIP")
    observed.private_service_ip = str(ip) if ip and ip != "None" else None
    selector = ",".join(f"{k}={v}" for k, v in mactivator.selector(md).items())
    for pod in ctx.kube.list("v1", "Pod", md.metadata.namespace, label_selector=selector):
        if not _pod_ready(pod):
            continue
        observed.activator_ready = True
        text = _SOURCE[0].scrape(pod)
        try:
            metrics = mactivator.parse_metrics(text) if text is not None else None
        except ValueError:
            metrics = None
        if metrics is not None:
            observed.activator = metrics
            if metrics.waiting > 0:
                observed.load_sample = (observed.load_sample or 0.0) + metrics.waiting
            break


def _observe_retrain(
    ctx: framework.Context, md: api.ModelDeployment, sources: dict[tuple[str, str], dict[str, Any] | None]
) -> mretrain.Observed:
    """What the retraining step needs: only the objects of the run going on, by name."""
    ns = md.metadata.namespace
    seen = mretrain.Observed(model=sources.get(("Model", mretrain.model_name(md))))
    current = md.status.retrain.current if md.status.retrain else None
    policy = md.spec.retrain
    dataset = mretrain.dataset_name(md)
    # Idle, the Dataset matters only to the newDatasetVersion trigger (a run that starts refreshes
    # it by name): a deployment without that trigger reads it only while a run goes on.
    if dataset is not None and (
        current is not None or (policy is not None and policy.triggers.new_dataset_version)
    ):
        seen.dataset = ctx.kube.get(common.API_VERSION, "Dataset", dataset, ns)
    if current is not None and current.challenger and current.challenger_kind:
        seen.challenger = ctx.kube.get(common.API_VERSION, current.challenger_kind, current.challenger, ns)
    if current is not None and current.phase == "Evaluating":
        name = mretrain.evaluation_name(md, current.run)
        seen.evaluation = ctx.kube.get("batch/v1", "Job", name, ns)
        if seen.evaluation is not None:
            seen.evaluation_pods = ctx.kube.list("v1", "Pod", ns, label_selector=f"{JOB_NAME_LABEL}={name}")
    if policy is not None and policy.triggers.labelled_rows is not None and mreview.enabled(md):
        selector = ",".join(f"{k}={v}" for k, v in mreview.selector(md).items())
        for pod in ctx.kube.list("v1", "Pod", ns, label_selector=selector):
            if _pod_ready(pod):
                seen.labelled_rows = _REVIEW_STATS[0].labelled(pod)
                if seen.labelled_rows is not None:
                    break
    return seen


def _remember_scrapes(
    md: api.ModelDeployment,
    pods: list[dict[str, Any]],
    scraped: dict[str, tuple[str, mmetrics.PodMetrics]],
    *,
    observed: rmd.Observed,
    now: float,
) -> None:
    """Add this pass's scrapes to the pods' histories and hand them to the reconciler by track.

    A pod still listed but not scraped this pass (not ready, scrape failed) keeps its history,
    so a missed scrape does not make its whole counters count; a pod no longer listed is dropped.
    """
    uid = md.metadata.uid
    if md.spec.canary is None:
        with _HISTORY_LOCK:
            _HISTORY.pop(uid, None)
        return
    window = md.spec.canary.rollback.window_seconds
    since = now - window
    listed = {str((p.get("metadata") or {}).get("name")) for p in pods}
    with _HISTORY_LOCK:
        kept = {name: h for name, h in _HISTORY.get(uid, {}).items() if name in listed}
        for name, (track, metrics) in scraped.items():
            kept[name] = mmetrics.remember(
                kept.get(name, ()), metrics, since=since, spacing=window / HISTORY_POINTS
            )
            observed.pod_history.setdefault(track, []).append(kept[name])
        _HISTORY[uid] = kept


def reconcile(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
    md = api.ModelDeployment.from_body(body)
    plan = rmd.plan(md, observed=observe(ctx, md), now=ctx.now, settings=ctx.settings)
    return framework.carry_out(ctx, md.metadata.namespace, plan)


REGISTRATION = framework.register(
    kind=api.ModelDeployment.crd.kind,
    plural=api.ModelDeployment.crd.plural,
    reconcile=reconcile,
    interval=RESYNC_SECONDS,
    forget=forget,
    status_model=api.ModelDeploymentStatus,
)
