"""Scale to zero (autoscaling.minReplicas 0), pure: the KPA's idle rule, the activator's children,
the Service's routing through a whole idle → zero → cold start → pods cycle, and the admission rules."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pydantic
import pytest

from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import modeldeployment as rmd
from mlops_operator.reconcile import modeldeployment_activator as mactivator
from mlops_operator.reconcile import modeldeployment_autoscale as autoscale
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
SPEC: dict[str, Any] = {
    "model": {"storageUri": "pvc://models/iris/v1"},
    "autoscaling": {
        "minReplicas": 0,
        "maxReplicas": 4,
        "target": 10,
        "targetUtilizationPercent": 100,
        "stableWindowSeconds": 6,
        "panicWindowSeconds": 2,
        "scaleDownDelaySeconds": 0,
        "scaleToZeroAfterSeconds": 30,
        "activatorTimeoutSeconds": 120,
    },
}


def _deployment(replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
        },
    }


class Cycle:
    """Passes of the reconciler 5 s apart, each status read back as a restarted operator would."""

    def __init__(self) -> None:
        self.now = NOW
        self.status: dict[str, Any] = {}
        self.plan: rmd.Plan | None = None

    def step(
        self,
        *,
        ready: int,
        load: float | None,
        activator_ready: bool = True,
        metrics: mactivator.Metrics | None = None,
        seconds: float = 5,
    ) -> rmd.Plan:
        self.now += datetime.timedelta(seconds=seconds)
        resource = api.ModelDeployment.from_body(
            {
                "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1},
                "spec": SPEC,
                "status": self.status,
            }
        )
        replicas = self.replicas()
        observed = rmd.Observed(
            deployments={"stable": _deployment(replicas, ready)},
            load_sample=load,
            activator_ready=activator_ready,
            activator=metrics if metrics is not None else mactivator.Metrics(),
            private_service_ip="10.96.0.42",
        )
        self.plan = rmd.plan(resource, observed=observed, now=self.now, settings=SETTINGS)
        self.status = json.loads(json.dumps(self.plan.status.to_api()))
        return self.plan

    def replicas(self) -> int:
        if self.plan is None:
            return 1
        return int(self._kind("Deployment", build.deployment_name(_md(), "stable"))["spec"]["replicas"])

    def selector(self) -> dict[str, str]:
        return dict(self._kind("Service", "iris")["spec"]["selector"])

    def _kind(self, kind: str, name: str) -> dict[str, Any]:
        assert self.plan is not None
        return next(o for o in self.plan.apply if o["kind"] == kind and o["metadata"]["name"] == name)


def _md() -> api.ModelDeployment:
    return api.ModelDeployment.from_body(
        {"metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1}, "spec": SPEC}
    )


def test_idle_pods_drain_then_go_and_a_held_request_brings_one_back() -> None:
    md = _md()
    cycle = Cycle()
    plan = cycle.step(ready=0, load=None)  # created: one pod first (is the model servable?)
    assert cycle.replicas() == 1
    names = {(o["kind"], o["metadata"]["name"]) for o in plan.apply}
    assert {("Deployment", "iris-activator"), ("Service", "iris-private"), ("Service", "iris")} <= names
    assert cycle.selector() == mactivator.selector(md)  # no pod ready yet: the activator holds
    assert plan.status.is_true("Ready")  # the activator answers (by holding) from the start

    cycle.step(ready=1, load=2.0)
    assert cycle.selector() == build.selector(md) and cycle.replicas() == 1

    # Idle: one pod stays for scaleToZeroAfterSeconds after the last request.
    for _ in range(5):
        plan = cycle.step(ready=1, load=0.0)
        assert cycle.replicas() == 1 and cycle.selector() == build.selector(md)
        assert plan.status.last_scale is not None
        assert plan.status.last_scale.reason in {"Stable", "IdleWait"}  # the 2.0 leaves the window
    assert plan.status.last_scale is not None and plan.status.last_scale.reason == "IdleWait"
    # Then the Service moves to the activator first, the pod still runs (the drain) ...
    plan = cycle.step(ready=1, load=0.0, seconds=10)
    assert plan.status.last_scale is not None and plan.status.last_scale.reason == "ScaleToZero"
    assert cycle.selector() == mactivator.selector(md) and cycle.replicas() == 1
    assert plan.wake_at is not None and plan.wake_at > cycle.now
    assert any(e.reason == "RoutedToActivator" for e in plan.events)
    # ... and goes once the drain is over.
    plan = cycle.step(ready=1, load=0.0, seconds=mactivator.DRAIN_SECONDS)
    assert cycle.replicas() == 0 and cycle.selector() == mactivator.selector(md)
    assert plan.status.phase == "ScaledToZero" and plan.status.is_true("Ready")
    assert "activator holds requests" in (plan.status.condition("Ready") or api.Condition()).message
    plan = cycle.step(ready=0, load=None)
    assert cycle.replicas() == 0 and plan.status.phase == "ScaledToZero"

    # A request arrives: the activator holds it, the handler counts it as load → a pod.
    plan = cycle.step(ready=0, load=3.0, metrics=mactivator.Metrics(waiting=3))
    assert cycle.replicas() == 1 and cycle.selector() == mactivator.selector(md)
    assert plan.status.scale_to_zero is not None and plan.status.scale_to_zero.waiting == 3
    # The pod is ready: the Service selects the pods again; the cold start is reported.
    done = mactivator.Metrics(
        waiting=0, cold_starts=1, last_cold_start_seconds=7.25, last_cold_start_time=NOW.timestamp() + 90
    )
    plan = cycle.step(ready=1, load=None, metrics=done)
    assert cycle.selector() == build.selector(md) and cycle.replicas() == 1
    status = plan.status.scale_to_zero
    assert status is not None and status.routing == "pods" and status.cold_starts == 1
    assert status.last_cold_start_seconds == 7.25 and status.last_cold_start_time == "2026-01-01T12:01:30Z"
    assert [e.message for e in plan.events if e.reason == "ColdStart"] == [
        "a request waited 7.25 s for the first pod"
    ]
    plan = cycle.step(ready=1, load=0.0, metrics=done)  # the same cold start is not told twice
    assert not any(e.reason == "ColdStart" for e in plan.events)


def test_without_a_ready_activator_the_pods_never_go() -> None:
    md = _md()
    cycle = Cycle()
    cycle.step(ready=1, load=0.0, activator_ready=False)
    plan = cycle.step(ready=1, load=0.0, activator_ready=False, seconds=120)
    assert plan.status.last_scale is not None and plan.status.last_scale.reason == "ScaleToZero"
    assert cycle.replicas() == 1 and cycle.selector() == build.selector(md)


def test_requests_during_the_drain_keep_the_pods() -> None:
    md = _md()
    cycle = Cycle()
    cycle.step(ready=1, load=0.0)
    cycle.step(ready=1, load=0.0, seconds=60)  # routed to the activator, draining
    assert cycle.selector() == mactivator.selector(md)
    plan = cycle.step(ready=1, load=4.0, seconds=3)  # the activator piped a request to the pod
    assert cycle.replicas() == 1 and cycle.selector() == build.selector(md)
    assert any(e.reason == "RoutedToPods" for e in plan.events)


def test_turning_scale_to_zero_off_deletes_the_activator() -> None:
    cycle = Cycle()
    cycle.step(ready=1, load=1.0)
    resource = api.ModelDeployment.from_body(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 2},
            "spec": {**SPEC, "autoscaling": {**SPEC["autoscaling"], "minReplicas": 1}},
            "status": cycle.status,
        }
    )
    plan = rmd.plan(
        resource,
        observed=rmd.Observed(deployments={"stable": _deployment(1, 1)}, load_sample=1.0),
        now=cycle.now,
        settings=SETTINGS,
    )
    assert {(c.kind, c.name) for c in plan.delete} >= {
        ("Deployment", "iris-activator"),
        ("Service", "iris-private"),
    }
    assert plan.status.scale_to_zero is None
    service = next(o for o in plan.apply if o["kind"] == "Service")
    assert service["spec"]["selector"] == build.selector(resource)


def test_the_activator_pod_holds_both_ports_and_points_at_the_private_service() -> None:
    md = _md()
    dep = mactivator.deployment(md, upstream="10.96.0.42", settings=SETTINGS)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "mlops_workloads.activator"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": build.PORT,
        "grpc": build.GRPC_PORT,
        "admin": mactivator.ADMIN_PORT,
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    config = api.ActivatorConfig.model_validate(json.loads(container["env"][0]["value"]))
    assert [(r.name, r.upstream_host, r.upstream_port, r.http) for r in config.routes] == [
        ("http", "10.96.0.42", 80, True),
        ("grpc", "10.96.0.42", build.GRPC_PORT, False),
    ]
    assert config.timeout_seconds == 120
    assert (
        dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == mactivator.COMPONENT
    )
    # The activator never carries the serving labels: the private Service and PDB never select it.
    template_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert not set(build.selector(md).items()) <= set(template_labels.items())
    private = mactivator.private_service(md)
    assert private["spec"]["selector"] == build.selector(md)
    assert [p["name"] for p in private["spec"]["ports"]] == ["http", "grpc"]


def test_parse_metrics_reads_the_activator_exposition() -> None:
    text = (
        "# TYPE mlops_activator_waiting_connections gauge\n"
        "mlops_activator_waiting_connections 2\n"
        "mlops_activator_cold_starts_total 3\n"
        "mlops_activator_last_cold_start_seconds 4.5\n"
        "mlops_activator_last_cold_start_timestamp_seconds 1767268800.000\n"
    )
    assert mactivator.parse_metrics(text) == mactivator.Metrics(
        waiting=2, cold_starts=3, last_cold_start_seconds=4.5, last_cold_start_time=1767268800.0
    )
    with pytest.raises(ValueError, match="activator"):
        mactivator.parse_metrics("mlops_serve_requests_total 3\n")


def test_the_kpa_keeps_one_pod_until_idle_long_enough_then_zero() -> None:
    policy = autoscale.Policy(
        min_replicas=0,
        max_replicas=4,
        stable_window=6,
        panic_window=2,
        scale_down_delay=0,
        scale_to_zero_after=30,
    )
    state = None
    now = 1000.0
    current = 1
    reasons = []
    for load in [5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]:
        now += 5
        d = autoscale.decide(
            current=current,
            ready=current,
            policy=policy,
            state=state,
            new_samples=[api.AutoscalerSample(t=now, v=load)],
            now=now,
        )
        state, current = d.state, d.desired
        reasons.append((d.desired, d.reason))
    assert reasons[1] == (1, "Stable")  # the 5.0 is still in the 6 s window
    assert reasons[2:6] == [(1, "IdleWait")] * 4
    assert reasons[6] == (0, "ScaleToZero")
    assert state is not None and state.last_active == 1005.0
    # At zero without samples the count stays; a sample with load brings a pod.
    d = autoscale.decide(current=0, ready=0, policy=policy, state=state, new_samples=[], now=now + 100)
    assert d.desired == 0
    d = autoscale.decide(
        current=0,
        ready=0,
        policy=policy,
        state=d.state,
        new_samples=[api.AutoscalerSample(t=now + 105, v=1.0)],
        now=now + 105,
    )
    assert d.desired == 1


def test_min_replicas_zero_needs_the_kpa() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs autoscaler kpa"):
        api.Autoscaling.model_validate({"minReplicas": 0, "autoscaler": "hpa"})
    assert api.Autoscaling.model_validate({"minReplicas": 0}).scale_to_zero_after_seconds == 300


def test_the_activator_waits_for_the_private_service_ip_and_the_pods_stay_meanwhile() -> None:
    md = _md()
    observed = rmd.Observed(deployments={"stable": _deployment(1, 1)}, load_sample=0.0)
    plan = rmd.plan(md, observed=observed, now=NOW, settings=SETTINGS)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in plan.apply}
    assert ("Service", "iris-private") in kinds and ("Deployment", "iris-activator") not in kinds
    assert plan.status.scale_to_zero is not None and not plan.status.scale_to_zero.activator_ready
