"""Scale to zero without Knative (``autoscaling.minReplicas: 0``), pure: the activator's children
and where the Service sends requests.

Children: a private Service ``<name>-private`` that always selects the serving pods and, once
its ClusterIP is known, the activator (one small pod of ``python -m mlops_workloads.activator``,
no model loaded) that connects to that IP. The
public Service ``<name>`` selects the serving pods while one is ready, and the activator
otherwise: the activator holds each connection until the private Service takes one (a pod is
ready), then pipes it, so a request sent at zero waits for the cold start instead of failing.

Routing (``step``), on every pass, from the KPA's pod count and what is ready:
- pods wanted and one ready → the Service selects the pods;
- pods wanted, none ready (a cold start) → the activator, when it is ready;
- no pods wanted (idle for ``scaleToZeroAfterSeconds``): first the Service moves to the
  activator while the pods keep running for ``DRAIN_SECONDS`` (kube-proxy moves new connections
  off them), and only then do the pods go; without a ready activator the pods stay.
The activator's connections waiting are load to the KPA (the handler adds them to its sample),
so a held request scales the pods up from zero on the next pass. Cold starts (first held
connection → a pod took it) are measured by the activator and copied to status.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from mlops_operator.api import common
from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

COMPONENT = "activator"
CONTAINER = "activator"
PORT = build.PORT  # the Service's targetPort "http" lands here while at zero
GRPC_PORT = build.GRPC_PORT
ADMIN_PORT = 9090  # /healthz and /metrics
DRAIN_SECONDS = 10.0
RESOURCES = {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}


def enabled(md: api.ModelDeployment) -> bool:
    scaling = md.spec.autoscaling
    return (
        scaling is not None
        and scaling.min_replicas == 0
        and scaling.autoscaler == "kpa"
        and md.spec.stage != "archived"
    )


def name(md: api.ModelDeployment) -> str:
    return build.owner(md).child_name("activator")


def private_service_name(md: api.ModelDeployment) -> str:
    return build.owner(md).child_name("private")


def selector(md: api.ModelDeployment) -> dict[str, str]:
    return build.component_selector(md, COMPONENT)


def children(md: api.ModelDeployment) -> list[rplan.ChildRef]:
    """What this module builds, by reference (deleted when minReplicas is no longer 0)."""
    return [
        rplan.ChildRef("apps/v1", "Deployment", name(md)),
        rplan.ChildRef("v1", "Service", private_service_name(md)),
    ]


def _meta(md: api.ModelDeployment, object_name: str, component: str) -> dict[str, Any]:
    return {
        "name": object_name,
        "namespace": md.metadata.namespace,
        "labels": build.owner(md).labels(component),
        "ownerReferences": [build.owner(md).reference()],
    }


def config(md: api.ModelDeployment, *, upstream: str) -> api.ActivatorConfig:
    """``upstream``: the private Service's ClusterIP (it never changes while the Service lives, and
    needs no cluster DNS)."""
    scaling = md.spec.autoscaling
    assert scaling is not None
    return api.ActivatorConfig(
        routes=[
            api.ActivatorRoute(name="http", port=PORT, upstream_host=upstream, upstream_port=80),
            api.ActivatorRoute(
                name="grpc", port=GRPC_PORT, upstream_host=upstream, upstream_port=GRPC_PORT, http=False
            ),
        ],
        admin_port=ADMIN_PORT,
        timeout_seconds=float(scaling.activator_timeout_seconds),
        deployment=md.metadata.name,
    )


def deployment(
    md: api.ModelDeployment, *, upstream: str, settings: rworkload.WorkloadSettings
) -> dict[str, Any]:
    """The activator's apps/v1 Deployment: one replica, ready when its admin port answers."""
    probe = {"httpGet": {"path": "/healthz", "port": "admin"}, "timeoutSeconds": 2}
    container = rworkload.server_container(
        settings,
        name=CONTAINER,
        image=md.spec.image or settings.workload_image,
        command=["python", "-m", "mlops_workloads.activator"],
        config=config(md, upstream=upstream).to_api(),
        env=rworkload.process_env(),
        port=PORT,
        extra_ports=[("grpc", GRPC_PORT), ("admin", ADMIN_PORT)],
        probes={
            "readinessProbe": {**probe, "periodSeconds": 2, "failureThreshold": 2},
            "livenessProbe": {**probe, "initialDelaySeconds": 5, "periodSeconds": 10, "failureThreshold": 3},
        },
        resources=RESOURCES,
    )
    spec = {
        "replicas": 1,
        **rworkload.server_deployment_spec(
            settings,
            container=container,
            volumes=[],
            tmp_size="16Mi",
            termination_grace_period_seconds=30,
            selector=selector(md),
            pod_labels=build.owner(md).labels(COMPONENT),
        ),
    }
    return rworkload.deployment(metadata=_meta(md, name(md), COMPONENT), spec=spec)


def private_service(md: api.ModelDeployment) -> dict[str, Any]:
    """What the activator hands connections to: the serving pods, whatever the public Service selects."""
    service = build.service(md)
    service["metadata"] = _meta(md, private_service_name(md), build.COMPONENT)
    return service


def route(service: dict[str, Any], md: api.ModelDeployment, *, to_activator: bool) -> dict[str, Any]:
    """The public Service selecting the activator (``to_activator``) or the serving pods."""
    if to_activator:
        service = {**service, "spec": {**service["spec"], "selector": selector(md)}}
    return service


@dataclasses.dataclass(frozen=True)
class Metrics:
    """The activator's ``/metrics``, the part the operator uses."""

    waiting: int = 0
    cold_starts: int = 0
    last_cold_start_seconds: float | None = None
    last_cold_start_time: float | None = None


def parse_metrics(text: str) -> Metrics:
    """The activator's Prometheus exposition → ``Metrics`` (ValueError when it is not one)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"not a metric line: {line[:80]!r}")
        values[parts[0]] = float(parts[1])
    if "mlops_activator_waiting_connections" not in values:
        raise ValueError("no mlops_activator_waiting_connections: not the activator's metrics")
    return Metrics(
        waiting=int(values["mlops_activator_waiting_connections"]),
        cold_starts=int(values.get("mlops_activator_cold_starts_total", 0)),
        last_cold_start_seconds=values.get("mlops_activator_last_cold_start_seconds"),
        last_cold_start_time=values.get("mlops_activator_last_cold_start_timestamp_seconds"),
    )


@dataclasses.dataclass(frozen=True)
class Step:
    total: int  # serving pods for all tracks, after the drain rule
    to_activator: bool
    status: api.ScaleToZeroStatus
    events: list[rplan.EventNote]
    wake_at: datetime.datetime | None


def step(
    *,
    total: int,
    ready: int,
    activator_ready: bool,
    metrics: Metrics | None,
    old: api.ScaleToZeroStatus | None,
    now: datetime.datetime,
) -> Step:
    """Where the Service points and how many serving pods run, from the KPA's ``total``."""
    previous = old or api.ScaleToZeroStatus()
    events: list[rplan.EventNote] = []
    wake_at: datetime.datetime | None = None
    routing = previous.routing
    since = common.parse_rfc3339(previous.since) if previous.since else None
    if total > 0 and ready > 0:
        routing = "pods"
    elif total > 0:
        routing = "activator" if activator_ready else "pods"  # a cold start: hold what arrives
    elif not activator_ready:
        total, routing = max(1, ready), "pods"  # nothing would answer at zero: keep a pod
    elif previous.routing == "pods" or since is None:
        total, routing = max(1, ready), "activator"  # new connections move off the pods first
        wake_at = now + datetime.timedelta(seconds=DRAIN_SECONDS)
    elif (now - since).total_seconds() < DRAIN_SECONDS and ready > 0:
        total = ready
        wake_at = since + datetime.timedelta(seconds=DRAIN_SECONDS)
    status = previous.model_copy()
    status.activator_ready = activator_ready
    if routing != previous.routing or since is None:
        status.routing = routing
        status.since = common.rfc3339(now)
        if old is not None and routing != previous.routing:
            events.append(
                rplan.EventNote(
                    "Normal",
                    "RoutedToActivator" if routing == "activator" else "RoutedToPods",
                    "the Service now selects the activator, which holds requests until a pod is ready"
                    if routing == "activator"
                    else "the Service now selects the serving pods",
                )
            )
    if metrics is not None:
        status.waiting = metrics.waiting
        if metrics.cold_starts != previous.cold_starts and metrics.last_cold_start_seconds is not None:
            if metrics.cold_starts > previous.cold_starts:
                events.append(
                    rplan.EventNote(
                        "Normal",
                        "ColdStart",
                        f"a request waited {metrics.last_cold_start_seconds:.2f} s for the first pod",
                    )
                )
            status.cold_starts = metrics.cold_starts  # an activator restart counts from 0 again
            status.last_cold_start_seconds = round(metrics.last_cold_start_seconds, 3)
            if metrics.last_cold_start_time is not None:
                status.last_cold_start_time = common.rfc3339(
                    datetime.datetime.fromtimestamp(metrics.last_cold_start_time, datetime.UTC)
                )
    return Step(
        total=total, to_activator=routing == "activator", status=status, events=events, wake_at=wake_at
    )
