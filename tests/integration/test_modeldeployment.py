"""ModelDeployments against the real control plane with kwok nodes and the operator in-process.

kwok runs the serving pods (Running and Ready) but no server answers in them, so the
handler's metrics read is replaced by ``TrackSource``: it answers each pod's scrape with
the exposition a test sets for the pod's track, with counters that grow with wall time
at the rates the test chooses (requests/s, 5xx share, latency) like a real server's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from conftest import Cluster, OperatorHandle, wait_until

pytestmark = pytest.mark.integration

URI = "file:///tmp/mlops-it/models/iris-v1"
URI2 = "file:///tmp/mlops-it/models/iris-v2"
EP = 'endpoint="/v2/models/{name}/infer"'


class TrackSource:
    """Per-track load: (requests/s, 5xx share, latency in seconds), integrated since start."""

    def __init__(self) -> None:
        self.rates: dict[str, tuple[float, float, float]] = {}
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def set(self, track: str, rps: float, error_share: float = 0.0, latency: float = 0.005) -> None:
        with self.lock:
            self.rates[track] = (rps, error_share, latency)

    def scrape(self, pod: Mapping[str, Any]) -> str | None:
        track = ((pod.get("metadata") or {}).get("labels") or {}).get("mlops.dev/track", "stable")
        with self.lock:
            rps, share, latency = self.rates.get(track, (0.0, 0.0, 0.005))
        count = rps * (time.monotonic() - self.started)
        errors = count * share
        fast = count if latency <= 0.01 else 0.0
        return (
            f'mlops_serve_requests_total{{code="200",{EP}}} {count - errors}\n'
            f'mlops_serve_requests_total{{code="500",{EP}}} {errors}\n'
            f'mlops_serve_request_duration_seconds_bucket{{{EP},le="0.01"}} {fast}\n'
            f'mlops_serve_request_duration_seconds_bucket{{{EP},le="0.5"}} {count}\n'
            f'mlops_serve_request_duration_seconds_bucket{{{EP},le="+Inf"}} {count}\n'
            f"mlops_serve_request_duration_seconds_count{{{EP}}} {count}\n"
            f"mlops_serve_request_duration_seconds_sum{{{EP}}} {count * latency}\n"
            'mlops_serve_model_info{digest="sha256:feed",model="m",version="1"} 1.0\n'
        )


@pytest.fixture(scope="session")
def md_handler(cluster: Cluster) -> Any:
    """The handler module, imported once KUBECONFIG is set (the kubernetes package reads it at import)
    and before the session operator starts (so kopf has its handlers even if handlers.all lacks them)."""
    from mlops_operator.handlers import modeldeployment

    return modeldeployment


@pytest.fixture
def source(md_handler: Any) -> Iterator[TrackSource]:
    fed = TrackSource()
    md_handler.set_metrics_source(fed)
    yield fed
    md_handler.set_metrics_source(None)


def model_deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"storageUri": URI}, "resources": {"cpu": "100m", "memory": "128Mi"}, **spec},
    }


def status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return (cluster.get("modeldeployment", name, ns) or {}).get("status") or {}


def test_deployment_service_and_pdb(
    cluster: Cluster, md_handler: Any, namespace: str, operator: OperatorHandle, source: TrackSource
) -> None:
    cluster.apply(model_deployment("iris", replicas=3, stage="production"), namespace=namespace)
    dep = wait_until(
        lambda: cluster.get("deployment", "iris-predictor", namespace),
        timeout=60,
        what="the serving Deployment",
    )
    assert dep["spec"]["replicas"] == 3
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert dep["spec"]["template"]["metadata"]["labels"]["mlops.dev/stage"] == "production"
    svc = cluster.get("service", "iris", namespace)
    assert svc is not None and svc["spec"]["selector"]["mlops.dev/modeldeployment"] == "iris"
    pdb = cluster.get("poddisruptionbudget", "iris-pdb", namespace)
    assert pdb is not None and pdb["spec"]["maxUnavailable"] == 1
    st = wait_until(
        lambda: (s := status(cluster, namespace, "iris")).get("phase") == "Ready" and s,
        timeout=90,
        what="phase Ready",
        explain=lambda: (
            status(cluster, namespace, "iris"),
            cluster.kubectl("get", "pods", "-n", namespace).stdout,
        ),
    )
    assert st["ready"] == "3/3" and st["url"] == f"http://iris.{namespace}.svc.cluster.local/v2/models/iris"
    assert st["modelDigest"] == "sha256:feed" and st["servedModelUri"] == URI
    # Down to one replica: the PDB goes.
    cluster.kubectl(
        "patch", "modeldeployment", "iris", "-n", namespace, "--type=merge", "-p", '{"spec": {"replicas": 1}}'
    )
    wait_until(
        lambda: cluster.get("poddisruptionbudget", "iris-pdb", namespace) is None,
        timeout=60,
        what="the PDB removed",
    )
    # The same pass deletes the PDB, then applies the Deployment: wait for that too.
    wait_until(
        lambda: (cluster.get("deployment", "iris-predictor", namespace) or {})["spec"]["replicas"] == 1,
        timeout=30,
        what="the Deployment down to 1",
    )


def test_canary_rolls_back_on_errors(
    cluster: Cluster, md_handler: Any, namespace: str, operator: OperatorHandle, source: TrackSource
) -> None:
    source.set("stable", rps=50, error_share=0.001)
    source.set("canary", rps=50, error_share=0.3)
    cluster.apply(
        model_deployment(
            "iris",
            replicas=4,
            canary={
                "model": {"storageUri": URI2},
                "trafficPercent": 25,
                "rollback": {"minRequests": 100, "errorRateMargin": 0.02},
            },
        ),
        namespace=namespace,
    )
    canary = wait_until(
        lambda: cluster.get("deployment", "iris-canary", namespace), timeout=60, what="the canary Deployment"
    )
    assert canary["spec"]["replicas"] == 1
    assert (cluster.get("deployment", "iris-predictor", namespace) or {})["spec"]["replicas"] == 3
    st = wait_until(
        lambda: (
            (s := status(cluster, namespace, "iris")).get("canary", {}).get("state") == "RolledBack" and s
        ),
        timeout=120,
        what="canary RolledBack",
    )
    assert "error rate" in st["canary"]["message"]
    wait_until(
        lambda: cluster.get("deployment", "iris-canary", namespace) is None,
        timeout=60,
        what="the canary Deployment deleted",
    )
    wait_until(
        lambda: (cluster.get("deployment", "iris-predictor", namespace) or {})["spec"]["replicas"] == 4,
        timeout=60,
        what="stable back to 4 pods",
    )
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "CanaryRolledBack" in events


def test_healthy_canary_keeps_running(
    cluster: Cluster, md_handler: Any, namespace: str, operator: OperatorHandle, source: TrackSource
) -> None:
    source.set("stable", rps=50)
    source.set("canary", rps=50)
    cluster.apply(
        model_deployment(
            "iris",
            replicas=2,
            canary={"model": {"storageUri": URI2}, "trafficPercent": 50, "rollback": {"minRequests": 100}},
        ),
        namespace=namespace,
    )
    wait_until(
        lambda: status(cluster, namespace, "iris").get("canary", {}).get("state") == "Healthy",
        timeout=120,
        what="canary Healthy",
    )
    assert cluster.get("deployment", "iris-canary", namespace) is not None


def test_kpa_replica_decision_is_applied(
    cluster: Cluster, md_handler: Any, namespace: str, operator: OperatorHandle, source: TrackSource
) -> None:
    source.set("stable", rps=0)
    cluster.apply(
        model_deployment(
            "iris",
            autoscaling={
                "minReplicas": 1,
                "maxReplicas": 6,
                "metric": "rps",
                "target": 10,
                "targetUtilizationPercent": 100,
                "stableWindowSeconds": 20,
                "panicWindowSeconds": 5,
                "scaleDownDelaySeconds": 0,
            },
        ),
        namespace=namespace,
    )
    wait_until(lambda: status(cluster, namespace, "iris").get("phase") == "Ready", timeout=90, what="Ready")
    # 45 requests/s per pod against a target of 10: more pods, up to the cap of 6.
    source.set("stable", rps=45)
    wait_until(
        lambda: (cluster.get("deployment", "iris-predictor", namespace) or {})["spec"]["replicas"] >= 4,
        timeout=120,
        what="scale-up applied to the Deployment",
        explain=lambda: status(cluster, namespace, "iris"),
    )
    # The pass applies the Deployment before it writes the status: wait for the status too.
    st = wait_until(
        lambda: (s := status(cluster, namespace, "iris")).get("lastScale", {}).get("desired", 0) >= 4 and s,
        timeout=30,
        what="the scale-up decision in the status",
        explain=lambda: status(cluster, namespace, "iris"),
    )
    assert st["autoscaler"]["samples"]
    source.set("stable", rps=0)
    wait_until(
        lambda: (cluster.get("deployment", "iris-predictor", namespace) or {})["spec"]["replicas"] == 1,
        timeout=180,
        what="scale-down back to minReplicas",
        explain=lambda: status(cluster, namespace, "iris"),
    )


class ActivatorSource(TrackSource):
    """TrackSource, and the activator pod's exposition with the connections it holds now."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self.cold_starts = 0

    def scrape(self, pod: Mapping[str, Any]) -> str | None:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get("app.kubernetes.io/component") != "activator":
            return super().scrape(pod)
        with self.lock:
            lines = [
                f"mlops_activator_waiting_connections {self.waiting}",
                f"mlops_activator_cold_starts_total {self.cold_starts}",
            ]
            if self.cold_starts:
                lines += [
                    "mlops_activator_last_cold_start_seconds 3.5",
                    f"mlops_activator_last_cold_start_timestamp_seconds {time.time():.3f}",
                ]
        return "\n".join(lines) + "\n"


def test_scale_to_zero_routes_the_service_to_the_activator_and_a_held_request_brings_a_pod(
    cluster: Cluster, md_handler: Any, namespace: str, operator: OperatorHandle
) -> None:
    fed = ActivatorSource()
    md_handler.set_metrics_source(fed)
    try:
        _scale_to_zero_and_back(cluster, namespace, fed)
    finally:
        md_handler.set_metrics_source(None)


def _scale_to_zero_and_back(cluster: Cluster, namespace: str, fed: ActivatorSource) -> None:
    fed.set("stable", rps=0)
    cluster.apply(
        model_deployment(
            "iris",
            autoscaling={
                "minReplicas": 0,
                "maxReplicas": 3,
                "metric": "rps",
                "target": 10,
                "targetUtilizationPercent": 100,
                "stableWindowSeconds": 6,
                "panicWindowSeconds": 2,
                "scaleDownDelaySeconds": 0,
                "scaleToZeroAfterSeconds": 10,
            },
        ),
        namespace=namespace,
    )

    def replicas() -> int:
        return int(
            ((cluster.get("deployment", "iris-predictor", namespace) or {}).get("spec") or {}).get(
                "replicas", -1
            )
        )

    def selector() -> dict[str, str]:
        return dict(
            ((cluster.get("service", "iris", namespace) or {}).get("spec") or {}).get("selector") or {}
        )

    def explain() -> Any:
        return (
            status(cluster, namespace, "iris"),
            cluster.kubectl("get", "pods,svc", "-n", namespace).stdout,
        )

    activator = wait_until(
        lambda: cluster.get("deployment", "iris-activator", namespace), timeout=60, what="the activator"
    )
    assert (
        activator["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "mlops_workloads.activator"
    )
    private = cluster.get("service", "iris-private", namespace)
    assert private is not None and private["spec"]["selector"]["app.kubernetes.io/component"] == "serving"
    # Idle from the start: the Service moves to the activator, then the pod goes.
    wait_until(
        lambda: replicas() == 0 and status(cluster, namespace, "iris").get("phase") == "ScaledToZero",
        timeout=120,
        what="scaled to zero",
        explain=explain,
    )
    assert selector()["app.kubernetes.io/component"] == "activator"
    st = status(cluster, namespace, "iris")
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "activator holds requests" in ready["message"]
    assert st["scaleToZero"]["routing"] == "activator" and st["scaleToZero"]["activatorReady"] is True
    # Requests held by the activator are load: a pod comes back, then the Service selects it.
    with fed.lock:
        fed.waiting = 2
    wait_until(lambda: replicas() >= 1, timeout=60, what="a pod for the held requests", explain=explain)
    fed.set("stable", rps=5)
    with fed.lock:
        fed.waiting, fed.cold_starts = 0, 1
    st = wait_until(
        lambda: (
            (s := status(cluster, namespace, "iris")).get("scaleToZero", {}).get("routing") == "pods" and s
        ),
        timeout=90,
        what="the Service back on the pods",
        explain=explain,
    )
    assert selector()["app.kubernetes.io/component"] == "serving"
    wait_until(
        lambda: status(cluster, namespace, "iris").get("scaleToZero", {}).get("lastColdStartSeconds") == 3.5,
        timeout=30,
        what="the cold start in the status",
        explain=explain,
    )
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}").stdout
    assert "RoutedToActivator" in events and "RoutedToPods" in events and "ColdStart" in events
