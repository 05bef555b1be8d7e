"""ModelDeployment reconcile (pure): children, replica decisions, canary split and rollback, drift."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from typing import Any

import pydantic
import pytest

from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import modeldeployment as rmd
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import modeldeployment_metrics as mmetrics
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
URI = "pvc://models/iris/v1"
URI2 = "pvc://models/iris/v2"


def md(spec: dict[str, Any], status: dict[str, Any] | None = None) -> api.ModelDeployment:
    return api.ModelDeployment.from_body(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 3},
            "spec": spec,
            "status": status or {},
        }
    )


def deployment_status(replicas: int, ready: int | None = None, generation: int = 1) -> dict[str, Any]:
    ready = replicas if ready is None else ready
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
        },
    }


def by_kind(plan: rmd.Plan) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in plan.apply:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def pod(
    track: str,
    *,
    requests: float = 0,
    errors: float = 0,
    p: float = 0.005,
    drift: float | None = None,
    rows: int = 0,
    digest: str = "sha256:a",
) -> mmetrics.PodMetrics:
    buckets = ((p, requests), (float("inf"), requests)) if requests else ()
    return mmetrics.PodMetrics(
        time=0,
        requests=requests,
        errors=errors,
        busy_seconds=0,
        buckets=buckets,
        drift=drift,
        drift_feature="petal_length" if drift is not None else None,
        drift_rows=rows,
        digest=digest,
    )


def test_single_replica_children_and_pod_template() -> None:
    plan = rmd.plan(md({"model": {"storageUri": URI}}), observed=rmd.Observed(), now=NOW, settings=SETTINGS)
    kinds = by_kind(plan)
    assert sorted(kinds) == ["Deployment", "Service"]
    assert {(r.kind, r.name) for r in plan.delete} >= {("PodDisruptionBudget", "iris-pdb")}
    dep = kinds["Deployment"][0]
    assert dep["metadata"]["name"] == "iris-predictor"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod_spec = dep["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert pod_spec["volumes"][0] == {"name": "model", "persistentVolumeClaim": {"claimName": "models"}}
    config = api.ServeConfig.model_validate_json(container["env"][0]["value"])
    assert config.model_dir == URI and config.model_name == "iris" and config.port == 8080
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["mlops.dev/stage"] == "staging" and labels["mlops.dev/track"] == "stable"
    assert labels["app.kubernetes.io/component"] == "serving"
    service = kinds["Service"][0]
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/component": "serving",
        "mlops.dev/modeldeployment": "iris",
    }
    assert set(service["spec"]["selector"].items()) <= set(labels.items())
    # HTTP, and the OIP v2 gRPC service on its own named port (h2c for L7 proxies).
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {
            "name": "grpc",
            "port": 8081,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
    ]
    assert plan.status.url == "http://iris.ml.svc.cluster.local/v2/models/iris"
    assert plan.status.phase == "Pending" and plan.status.ready == "0/1"


def test_the_grpc_port_is_the_one_the_server_listens_on_by_default() -> None:
    """The container declares port grpc without telling the server: both must say 8081."""
    from mlops_workloads.serve import __main__ as serve_main

    assert build.GRPC_PORT == serve_main.GRPC_PORT == serve_main.grpc_port_of(None, {})


def test_ready_deployment_makes_the_deployment_ready() -> None:
    observed = rmd.Observed(
        deployments={"stable": deployment_status(3)}, pod_metrics={"stable": [pod("stable"), pod("stable")]}
    )
    plan = rmd.plan(
        md({"model": {"storageUri": URI}, "replicas": 3, "stage": "production"}),
        observed=observed,
        now=NOW,
        settings=SETTINGS,
    )
    kinds = by_kind(plan)
    assert kinds["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1
    assert plan.status.phase == "Ready" and plan.status.ready == "3/3"
    assert plan.status.is_true("Ready") and not plan.status.is_true("Progressing")
    assert plan.status.model_digest == "sha256:a" and plan.status.served_model_uri == URI
    assert plan.status.stage == "production"
    assert ("Normal", "Ready", f"serving {URI}") in plan.events


def test_rolling_update_is_progressing() -> None:
    dep = deployment_status(2)
    dep["metadata"]["generation"] = 2  # spec changed, not yet observed
    plan = rmd.plan(
        md({"model": {"storageUri": URI2}, "replicas": 2}, {"servedModelUri": URI}),
        observed=rmd.Observed(deployments={"stable": dep}),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.status.phase == "Progressing" and plan.status.is_true("Progressing")
    assert plan.status.is_true("Ready")  # the old pods still serve


def test_training_job_source_waits_then_serves() -> None:
    resource = md({"model": {"trainingJobRef": "train-1"}})
    running = {("TrainingJob", "train-1"): {"status": {"phase": "Running"}}}
    plan = rmd.plan(resource, observed=rmd.Observed(sources=running), now=NOW, settings=SETTINGS)
    assert plan.apply == [] and plan.status.phase == "Pending"
    assert plan.status.condition("Ready").reason == "WaitingForModel"  # type: ignore[union-attr]
    done = {("TrainingJob", "train-1"): {"status": {"phase": "Succeeded", "modelUri": URI}}}
    plan = rmd.plan(resource, observed=rmd.Observed(sources=done), now=NOW, settings=SETTINGS)
    assert plan.status.served_model_uri == URI
    failed = {("TrainingJob", "train-1"): {"status": {"phase": "Failed", "message": "OOMKilled"}}}
    plan = rmd.plan(resource, observed=rmd.Observed(sources=failed), now=NOW, settings=SETTINGS)
    assert plan.status.phase == "Failed" and "OOMKilled" in plan.status.condition("Ready").message  # type: ignore[union-attr]


def test_a_new_source_not_ready_keeps_serving_the_old_model() -> None:
    resource = md({"model": {"trainingJobRef": "train-2"}}, {"servedModelUri": URI, "phase": "Ready"})
    observed = rmd.Observed(
        sources={("TrainingJob", "train-2"): {"status": {"phase": "Running"}}},
        deployments={"stable": deployment_status(1)},
    )
    plan = rmd.plan(resource, observed=observed, now=NOW, settings=SETTINGS)
    dep = by_kind(plan)["Deployment"][0]
    assert (
        api.ServeConfig.model_validate_json(
            dep["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
        ).model_dir
        == URI
    )
    assert plan.status.is_true("Ready") and plan.status.is_true("Progressing")


def test_sweep_source_serves_the_best_trial_once_succeeded() -> None:
    resource = md({"model": {"sweepRef": "tune"}})
    running = {
        ("HyperparameterSweep", "tune"): {"status": {"phase": "Running", "bestTrial": {"modelUri": URI}}}
    }
    assert rmd.plan(resource, observed=rmd.Observed(sources=running), now=NOW, settings=SETTINGS).apply == []
    done = {
        ("HyperparameterSweep", "tune"): {"status": {"phase": "Succeeded", "bestTrial": {"modelUri": URI2}}}
    }
    plan = rmd.plan(resource, observed=rmd.Observed(sources=done), now=NOW, settings=SETTINGS)
    assert plan.status.served_model_uri == URI2
    assert rmd.source_refs(resource.spec.model) == [("HyperparameterSweep", "tune")]


def test_kpa_decision_is_applied_and_stored() -> None:
    resource = md(
        {
            "model": {"storageUri": URI},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 10,
                "target": 10,
                "targetUtilizationPercent": 100,
            },
        }
    )
    observed = rmd.Observed(deployments={"stable": deployment_status(1)}, load_sample=45.0)
    plan = rmd.plan(resource, observed=observed, now=NOW, settings=SETTINGS)
    assert by_kind(plan)["Deployment"][0]["spec"]["replicas"] == 5
    assert plan.status.last_scale is not None and plan.status.last_scale.desired == 5
    assert plan.status.last_scale.reason == "PanicScaleUp"
    assert plan.status.autoscaler is not None and plan.status.autoscaler.samples[0].v == 45.0
    assert "PodDisruptionBudget" in by_kind(plan)
    # The next pass starts from the stored state.
    again = md(resource.spec.to_api(), plan.status.to_api())
    later = NOW + datetime.timedelta(seconds=2)
    plan2 = rmd.plan(
        again,
        observed=rmd.Observed(deployments={"stable": deployment_status(5)}, load_sample=0.0),
        now=later,
        settings=SETTINGS,
    )
    assert (
        plan2.status.last_scale is not None and plan2.status.last_scale.desired == 5
    )  # panic: no scale-down
    assert any(e[1] == "ScaledUp" for e in plan.events) is False  # first decision: no previous count
    assert len(plan2.status.autoscaler.samples) == 2  # type: ignore[union-attr]


def test_hpa_mode_emits_an_hpa_and_leaves_replicas_alone() -> None:
    resource = md(
        {
            "model": {"storageUri": URI},
            "autoscaling": {
                "autoscaler": "hpa",
                "minReplicas": 2,
                "maxReplicas": 6,
                "metric": "rps",
                "target": 50,
            },
        }
    )
    kinds = by_kind(rmd.plan(resource, observed=rmd.Observed(), now=NOW, settings=SETTINGS))
    assert "replicas" not in kinds["Deployment"][0]["spec"]
    hpa = kinds["HorizontalPodAutoscaler"][0]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "iris-predictor"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "35000m"}
    assert "PodDisruptionBudget" in kinds


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [
        (10, 10, (9, 1)),
        (10, 50, (5, 5)),
        (4, 25, (3, 1)),
        (1, 10, (1, 1)),
        (3, 0, (3, 0)),
        (3, 100, (0, 3)),
        (10, 99, (1, 9)),
    ],
)
def test_split_replicas(total: int, percent: int, expected: tuple[int, int]) -> None:
    assert build.split_replicas(total, percent, canary=True) == expected


def test_canary_gets_its_own_deployment_behind_the_same_service() -> None:
    resource = md(
        {
            "model": {"storageUri": URI},
            "replicas": 4,
            "canary": {"model": {"storageUri": URI2}, "trafficPercent": 25},
        }
    )
    plan = rmd.plan(resource, observed=rmd.Observed(), now=NOW, settings=SETTINGS)
    deps = {d["metadata"]["name"]: d for d in by_kind(plan)["Deployment"]}
    assert deps["iris-predictor"]["spec"]["replicas"] == 3 and deps["iris-canary"]["spec"]["replicas"] == 1
    canary_labels = deps["iris-canary"]["spec"]["template"]["metadata"]["labels"]
    service = by_kind(plan)["Service"][0]
    assert set(service["spec"]["selector"].items()) <= set(canary_labels.items())
    assert deps["iris-canary"]["spec"]["selector"]["matchLabels"]["mlops.dev/track"] == "canary"
    assert plan.status.canary is not None and plan.status.canary.traffic_percent == 25.0
    assert plan.status.canary.state == "Progressing"


def _canary_pass(
    stable_pods: list[mmetrics.PodMetrics],
    canary_pods: list[mmetrics.PodMetrics],
    status: dict[str, Any] | None = None,
) -> rmd.Plan:
    resource = md(
        {
            "model": {"storageUri": URI},
            "replicas": 4,
            "canary": {
                "model": {"storageUri": URI2},
                "trafficPercent": 25,
                "rollback": {"errorRateMargin": 0.02, "p95LatencyMarginMs": 50, "minRequests": 100},
            },
        },
        status,
    )
    observed = rmd.Observed(
        deployments={"stable": deployment_status(3), "canary": deployment_status(1)},
        pod_metrics={"stable": stable_pods, "canary": canary_pods},
    )
    return rmd.plan(resource, observed=observed, now=NOW, settings=SETTINGS)


def test_canary_with_too_errors_is_rolled_back_and_stays_rolled_back() -> None:
    plan = _canary_pass([pod("stable", requests=3000, errors=3)], [pod("canary", requests=500, errors=60)])
    assert plan.status.canary is not None and plan.status.canary.state == "RolledBack"
    assert "error rate" in plan.status.canary.message
    assert [d["metadata"]["name"] for d in by_kind(plan)["Deployment"]] == ["iris-predictor"]
    assert by_kind(plan)["Deployment"][0]["spec"]["replicas"] == 4
    assert any(e[1] == "CanaryRolledBack" for e in plan.events)
    # Next pass (canary Deployment still there, being deleted): it stays rolled back and is deleted.
    again = _canary_pass([pod("stable", requests=3000)], [pod("canary", requests=500)], plan.status.to_api())
    assert again.status.canary is not None and again.status.canary.state == "RolledBack"
    assert ("Deployment", "iris-canary") in {(r.kind, r.name) for r in again.delete}


def test_canary_with_slow_p95_is_rolled_back() -> None:
    plan = _canary_pass([pod("stable", requests=3000, p=0.01)], [pod("canary", requests=500, p=0.25)])
    assert plan.status.canary is not None and plan.status.canary.state == "RolledBack"
    assert "p95" in plan.status.canary.message


def test_healthy_canary_keeps_its_share() -> None:
    plan = _canary_pass([pod("stable", requests=3000, errors=3)], [pod("canary", requests=500, errors=1)])
    assert plan.status.canary is not None and plan.status.canary.state == "Healthy"
    assert len(by_kind(plan)["Deployment"]) == 2
    assert any(e[1] == "CanaryHealthy" for e in plan.events)


def test_new_canary_spec_resets_a_rollback() -> None:
    plan = _canary_pass([pod("stable", requests=3000)], [pod("canary", requests=500, errors=100)])
    status = plan.status.to_api()
    status["canary"]["specHash"] = "something-else"
    fresh = _canary_pass([pod("stable", requests=3000)], [pod("canary", requests=10)], status)
    assert fresh.status.canary is not None and fresh.status.canary.state == "Progressing"


def test_archived_scales_to_zero() -> None:
    plan = rmd.plan(
        md({"model": {"storageUri": URI}, "replicas": 3, "stage": "archived"}),
        observed=rmd.Observed(deployments={"stable": deployment_status(3)}),
        now=NOW,
        settings=SETTINGS,
    )
    assert by_kind(plan)["Deployment"][0]["spec"]["replicas"] == 0
    assert "PodDisruptionBudget" not in by_kind(plan)
    assert plan.status.phase == "Archived" and not plan.status.is_true("Ready")


def test_zero_replicas_is_not_ready() -> None:
    plan = rmd.plan(
        md({"model": {"storageUri": URI}, "replicas": 0}),
        observed=rmd.Observed(deployments={"stable": deployment_status(0)}),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.status.phase == "ScaledToZero" and not plan.status.is_true("Ready")


def test_drift_sets_the_condition_and_creates_one_retraining_job() -> None:
    spec = {
        "model": {"storageUri": URI},
        "drift": {
            "threshold": 0.2,
            "minRows": 100,
            "retrain": {
                "spec": {"datasetRef": {"name": "iris-v2"}, "model": {"estimator": "LogisticRegression"}},
                "cooldownSeconds": 600,
            },
        },
    }
    observed = rmd.Observed(
        deployments={"stable": deployment_status(1)},
        pod_metrics={"stable": [pod("stable", drift=0.9, rows=500), pod("stable", drift=0.1, rows=500)]},
    )
    plan = rmd.plan(md(spec), observed=observed, now=NOW, settings=SETTINGS)
    assert plan.status.is_true("DriftDetected")
    assert plan.status.drift is not None and plan.status.drift.score == 0.9
    assert plan.status.drift.feature == "petal_length"
    jobs = by_kind(plan)["TrainingJob"]
    assert jobs[0]["metadata"]["name"] == "iris-retrain-1"
    assert jobs[0]["spec"]["datasetRef"] == {"name": "iris-v2"}
    assert jobs[0]["metadata"]["ownerReferences"][0]["controller"] is False
    assert [e[1] for e in plan.events if e[1] in {"DriftDetected", "RetrainingStarted"}] == [
        "DriftDetected",
        "RetrainingStarted",
    ]
    # Within the cooldown: no second job, no second event.
    later = rmd.plan(
        md(spec, plan.status.to_api()),
        observed=observed,
        now=NOW + datetime.timedelta(minutes=5),
        settings=SETTINGS,
    )
    assert "TrainingJob" not in by_kind(later) and not any(e[1] == "DriftDetected" for e in later.events)
    # After it: the next one.
    after = rmd.plan(
        md(spec, later.status.to_api()),
        observed=observed,
        now=NOW + datetime.timedelta(minutes=11),
        settings=SETTINGS,
    )
    assert by_kind(after)["TrainingJob"][0]["metadata"]["name"] == "iris-retrain-2"


def test_drift_needs_enough_rows_and_clears() -> None:
    spec = {"model": {"storageUri": URI}, "drift": {"threshold": 0.2, "minRows": 100}}
    few = rmd.Observed(pod_metrics={"stable": [pod("stable", drift=5.0, rows=10)]})
    plan = rmd.plan(md(spec), observed=few, now=NOW, settings=SETTINGS)
    assert plan.status.condition("DriftDetected").status == "Unknown"  # type: ignore[union-attr]
    high = rmd.Observed(pod_metrics={"stable": [pod("stable", drift=0.5, rows=200)]})
    plan = rmd.plan(md(spec, plan.status.to_api()), observed=high, now=NOW, settings=SETTINGS)
    low = rmd.Observed(pod_metrics={"stable": [pod("stable", drift=0.05, rows=200)]})
    plan = rmd.plan(md(spec, plan.status.to_api()), observed=low, now=NOW, settings=SETTINGS)
    assert plan.status.condition("DriftDetected").status == "False"  # type: ignore[union-attr]
    assert any(e[1] == "DriftCleared" for e in plan.events)


def test_parse_real_exposition() -> None:
    text = """
# TYPE mlops_serve_requests_total counter
mlops_serve_requests_total{code="200",endpoint="/v2/models/{name}/infer"} 90.0
mlops_serve_requests_total{code="500",endpoint="/v2/models/{name}/infer"} 10.0
mlops_serve_requests_total{code="200",endpoint="/v2/health/ready"} 1000.0
# TYPE mlops_serve_request_duration_seconds histogram
mlops_serve_request_duration_seconds_bucket{endpoint="/v2/models/{name}/infer",le="0.01"} 50.0
mlops_serve_request_duration_seconds_bucket{endpoint="/v2/models/{name}/infer",le="0.1"} 100.0
mlops_serve_request_duration_seconds_bucket{endpoint="/v2/models/{name}/infer",le="+Inf"} 100.0
mlops_serve_request_duration_seconds_count{endpoint="/v2/models/{name}/infer"} 100.0
mlops_serve_request_duration_seconds_sum{endpoint="/v2/models/{name}/infer"} 2.5
# TYPE mlops_serve_drift_score gauge
mlops_serve_drift_score{feature="a"} 0.1
mlops_serve_drift_score{feature="b"} 0.7
# TYPE mlops_serve_drift_window_rows gauge
mlops_serve_drift_window_rows 800.0
# TYPE mlops_serve_model_info gauge
mlops_serve_model_info{digest="sha256:x",model="iris",version="1"} 1.0
"""
    m = mmetrics.parse(text, time=5.0)
    assert (m.requests, m.errors, m.busy_seconds, m.drift, m.drift_feature, m.drift_rows, m.digest) == (
        100.0,
        10.0,
        2.5,
        0.7,
        "b",
        800,
        "sha256:x",
    )
    stats = mmetrics.track_stats([m])
    assert stats.error_rate == 0.1
    assert stats.p95_ms == pytest.approx(10 + 90 * 45 / 50)


# --- The canary's sliding window ------------------------------------------------------------


def scrape(
    t: float, requests: float, errors: float = 0, *, fast: float | None = None, busy: float = 0
) -> mmetrics.PodMetrics:
    """One cumulative scrape at Unix time ``t``: ``fast`` of the requests under 10 ms, the rest under 1 s."""
    fast = requests if fast is None else fast
    return mmetrics.PodMetrics(
        time=t,
        requests=requests,
        errors=errors,
        busy_seconds=busy,
        buckets=((0.01, fast), (1.0, requests), (float("inf"), requests)),
        digest="sha256:a",
    )


def test_window_subtracts_the_newest_scrape_at_or_before_the_start() -> None:
    history = [scrape(0, 100, 1, busy=1), scrape(30, 400, 4, busy=4), scrape(60, 1000, 10, busy=10)]
    delta = mmetrics.window(history, since=30)  # the scrape at exactly the start is the base
    assert (delta.time, delta.requests, delta.errors, delta.busy_seconds) == (60, 600, 6, 6)
    assert delta.digest == "sha256:a"
    delta = mmetrics.window(history, since=45)  # no scrape at 45: the one before it
    assert delta.requests == 600
    delta = mmetrics.window(history, since=10)
    assert (delta.requests, delta.errors) == (900, 9)


def test_window_subtracts_every_histogram_bucket() -> None:
    history = [scrape(0, 100, fast=100), scrape(60, 300, fast=120)]
    delta = mmetrics.window(history, since=0)
    assert delta.buckets == ((0.01, 20), (1.0, 200), (float("inf"), 200))
    # 90 % of the window's requests were slow (60 % since start).
    assert mmetrics.track_stats([delta]).p95_ms == pytest.approx(10 + 990 * (190 - 20) / 180)


def test_window_of_a_pod_younger_than_the_window_counts_it_whole() -> None:
    # The pod started inside the window (or the operator only began to watch it): no base.
    history = [scrape(50, 40, 2), scrape(55, 90, 3)]
    assert mmetrics.window(history, since=30) == history[-1]
    assert mmetrics.window(history[-1:], since=30) == history[-1]
    with pytest.raises(ValueError, match="at least one"):
        mmetrics.window([], since=30)


def test_window_of_an_older_pod_after_an_operator_restart_uses_what_was_seen() -> None:
    # The pod started at t=0 and had an error burst then; the operator (restarted) has seen it
    # only since t=50. Its whole counters would judge the old burst again: the delta runs from
    # the oldest scrape kept instead, and with a single scrape there is nothing to judge yet.
    history = [
        dataclasses.replace(scrape(t, r, e), started=0.0) for t, r, e in ((50, 900, 300), (55, 950, 300))
    ]
    delta = mmetrics.window(history, since=30)
    assert (delta.requests, delta.errors) == (50, 0)
    alone = mmetrics.window(history[:1], since=30)
    assert (alone.requests, alone.errors) == (0, 0)
    # A pod that started inside the window still counts whole.
    young = [dataclasses.replace(m, started=40.0) for m in history]
    assert mmetrics.window(young, since=30).requests == 950


def test_window_after_a_counter_reset_takes_the_latest_as_is() -> None:
    # The pod's server restarted between the base (t=20) and now: its counters started over.
    history = [scrape(20, 5000, 500), scrape(50, 60, 0)]
    assert mmetrics.window(history, since=30) == history[-1]
    # A histogram bucket going backwards is a reset too.
    history = [scrape(20, 100, fast=100), scrape(50, 100, fast=50)]
    assert mmetrics.window(history, since=30) == history[-1]


def test_window_leaves_an_old_error_spike_out() -> None:
    # 50 % errors in the first minute, none since: the last minute is clean.
    history = [scrape(0, 0), scrape(60, 1000, 500), scrape(120, 2000, 500), scrape(180, 3000, 500)]
    delta = mmetrics.window(history, since=120)
    assert (delta.requests, delta.errors) == (1000, 0)
    assert mmetrics.track_stats([history[-1]]).error_rate == pytest.approx(1 / 6)  # counted whole


def test_remember_keeps_the_window_and_its_base_and_stays_bounded() -> None:
    history: tuple[mmetrics.PodMetrics, ...] = ()
    for t in range(0, 301):  # one scrape a second for 5 minutes, 60 s window, 6 s spacing
        history = mmetrics.remember(history, scrape(t, 10 * t), since=t - 60, spacing=6)
    assert history[-1].time == 300
    assert history[0].time <= 240 < history[1].time  # the base, then only the window
    assert len(history) <= 60 / 6 + 2
    assert all(b.time - a.time >= 6 for a, b in itertools.pairwise(history[:-1]))
    assert mmetrics.window(history, since=240).requests == pytest.approx(600, abs=60)
    # A reset (counters went backwards) starts the history afresh.
    restarted = mmetrics.remember(history, scrape(301, 5), since=241, spacing=6)
    assert restarted == (scrape(301, 5),)
    # So does a scrape older than the latest.
    assert mmetrics.remember(history, scrape(299, 9999), since=239, spacing=6) == (scrape(299, 9999),)


def _windowed_canary_pass(
    stable: list[list[mmetrics.PodMetrics]], canary: list[list[mmetrics.PodMetrics]], *, window: int = 60
) -> rmd.Plan:
    resource = md(
        {
            "model": {"storageUri": URI},
            "replicas": 4,
            "canary": {
                "model": {"storageUri": URI2},
                "trafficPercent": 25,
                "rollback": {
                    "errorRateMargin": 0.02,
                    "p95LatencyMarginMs": 50,
                    "minRequests": 100,
                    "windowSeconds": window,
                },
            },
        }
    )
    observed = rmd.Observed(
        deployments={"stable": deployment_status(3), "canary": deployment_status(1)},
        pod_metrics={"stable": [h[-1] for h in stable], "canary": [h[-1] for h in canary]},
        pod_history={"stable": [tuple(h) for h in stable], "canary": [tuple(h) for h in canary]},
    )
    return rmd.plan(resource, observed=observed, now=NOW, settings=SETTINGS)


T = NOW.timestamp()


def test_canary_with_errors_only_before_the_window_is_healthy() -> None:
    stable = [[scrape(T - 600, 0), scrape(T - 60, 30000, 30), scrape(T, 33000, 33)]]
    # 600 errors in its first minutes, a clean last minute.
    canary = [[scrape(T - 600, 0), scrape(T - 60, 10000, 600), scrape(T, 11000, 600)]]
    plan = _windowed_canary_pass(stable, canary)
    assert plan.status.canary is not None and plan.status.canary.state == "Healthy", plan.status.canary
    assert "over the last 60 s" in plan.status.canary.message
    # Counted since the pods started, the same canary is rolled back (6 % vs 0.1 %).
    whole = _windowed_canary_pass([stable[0][-1:]], [canary[0][-1:]])
    assert whole.status.canary is not None and whole.status.canary.state == "RolledBack"


def test_a_recent_canary_error_burst_is_not_diluted_by_old_clean_history() -> None:
    # Hours of clean traffic on both tracks, then 20 % errors on the canary in the last minute.
    stable = [[scrape(T - 7200, 0), scrape(T - 60, 720000), scrape(T, 726000)] for _ in range(3)]
    canary = [[scrape(T - 7200, 0), scrape(T - 60, 240000), scrape(T, 242000, 400)]]
    plan = _windowed_canary_pass(stable, canary)
    assert plan.status.canary is not None and plan.status.canary.state == "RolledBack"
    assert "error rate canary 0.2000 vs stable 0.0000" in plan.status.canary.message
    # Since start, 400 errors in 242,000 requests look fine.
    whole = _windowed_canary_pass([h[-1:] for h in stable], [canary[0][-1:]])
    assert whole.status.canary is not None and whole.status.canary.state == "Healthy"


def test_a_burst_on_both_tracks_is_not_blamed_on_the_canary() -> None:
    # A shared dependency fails: 10 % errors on both tracks in the last minute. The stable
    # track's clean hours must not dilute its own burst (which would make the canary look worse).
    stable = [[scrape(T - 7200, 0), scrape(T - 60, 720000), scrape(T, 726000, 600)] for _ in range(3)]
    canary = [[scrape(T - 120, 0), scrape(T - 60, 2000), scrape(T, 4000, 200)]]
    plan = _windowed_canary_pass(stable, canary)
    assert plan.status.canary is not None and plan.status.canary.state == "Healthy", plan.status.canary
    whole = _windowed_canary_pass([h[-1:] for h in stable], [canary[0][-1:]])
    assert whole.status.canary is not None and whole.status.canary.state == "RolledBack"


def test_min_requests_counts_the_canary_requests_in_the_window() -> None:
    stable = [[scrape(T - 600, 0), scrape(T - 60, 30000), scrape(T, 33000)]]
    # 5,000 requests since start but only 50 in the last minute: not judged yet.
    canary = [[scrape(T - 600, 0), scrape(T - 60, 4950), scrape(T, 5000)]]
    plan = _windowed_canary_pass(stable, canary)
    assert plan.status.canary is not None and plan.status.canary.state == "Progressing"
    assert "50 of the 100 requests needed in the last 60 s" in plan.status.canary.message
    # A window longer than the history counts the pods whole: judged (and healthy).
    plan = _windowed_canary_pass(stable, canary, window=900)
    assert plan.status.canary is not None and plan.status.canary.state == "Healthy"


def test_rollback_window_bounds_and_default() -> None:
    assert api.RollbackPolicy().window_seconds == 60
    assert api.RollbackPolicy.model_validate({"windowSeconds": 300}).to_api()["windowSeconds"] == 300
    for bad in (9, 3601):
        with pytest.raises(ValueError, match="windowSeconds"):
            api.RollbackPolicy.model_validate({"windowSeconds": bad})


def test_a_quiet_window_keeps_a_healthy_canary_healthy() -> None:
    stable = [[scrape(T - 600, 0), scrape(T - 60, 30000), scrape(T, 33000)]]
    busy = [[scrape(T - 600, 0), scrape(T - 60, 4000), scrape(T, 5000)]]
    healthy = _windowed_canary_pass(stable, busy)
    assert healthy.status.canary is not None and healthy.status.canary.state == "Healthy"
    # The next minute the canary answers only 10 requests: no new evidence, no flapping back to
    # Progressing (nor a second CanaryHealthy event).
    quiet = [[scrape(T - 600, 0), scrape(T - 60, 5000), scrape(T, 5010)]]
    resource = md(
        {
            "model": {"storageUri": URI},
            "replicas": 4,
            "canary": {"model": {"storageUri": URI2}, "trafficPercent": 25, "rollback": {"minRequests": 100}},
        },
        healthy.status.to_api(),
    )
    observed = rmd.Observed(
        deployments={"stable": deployment_status(3), "canary": deployment_status(1)},
        pod_history={"stable": [tuple(h) for h in stable], "canary": [tuple(h) for h in quiet]},
    )
    plan = rmd.plan(resource, observed=observed, now=NOW, settings=SETTINGS)
    assert plan.status.canary is not None and plan.status.canary.state == "Healthy"
    assert "too few requests to judge again" in plan.status.canary.message
    assert not plan.status.is_true("Progressing")
    assert not any(e[1] == "CanaryHealthy" for e in plan.events)


def _model(aliases: dict[str, int], versions: list[int]) -> dict[str, Any]:
    return {
        "status": {
            "aliases": [{"name": k, "version": v} for k, v in aliases.items()],
            "versions": [{"version": n, "modelUri": f"pvc://models/iris/v{n}"} for n in versions],
        }
    }


def test_a_model_ref_follows_its_alias_and_rolls_out_when_it_moves() -> None:
    resource = md({"model": {"modelRef": {"name": "iris"}}})  # alias champion by default
    assert rmd.source_refs(resource.spec.model) == [("Model", "iris")]
    plan = rmd.plan(resource, observed=rmd.Observed(sources={}), now=NOW, settings=SETTINGS)
    assert plan.status.condition("Ready").reason == "WaitingForModel"  # type: ignore[union-attr]
    no_alias = {("Model", "iris"): _model({}, [1])}
    plan = rmd.plan(resource, observed=rmd.Observed(sources=no_alias), now=NOW, settings=SETTINGS)
    assert plan.apply == [] and "names no version" in plan.status.condition("Ready").message  # type: ignore[union-attr]
    first = {("Model", "iris"): _model({"champion": 1}, [2, 1])}
    plan = rmd.plan(resource, observed=rmd.Observed(sources=first), now=NOW, settings=SETTINGS)
    assert plan.status.served_model_uri == "pvc://models/iris/v1" and plan.status.served_model_version == 1
    served = md({"model": {"modelRef": {"name": "iris"}}}, plan.status.to_api())
    moved = {("Model", "iris"): _model({"champion": 2}, [2, 1])}
    plan = rmd.plan(served, observed=rmd.Observed(sources=moved), now=NOW, settings=SETTINGS)
    assert plan.status.served_model_uri == "pvc://models/iris/v2" and plan.status.served_model_version == 2
    assert any(e.reason == "ModelVersionChanged" for e in plan.events)
    deployment = next(o for o in plan.apply if o["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "pvc://models/iris/v2" in next(e["value"] for e in env if e["name"] == "MLOPS_CONFIG")


def test_a_model_ref_to_a_missing_version_keeps_serving_the_old_one() -> None:
    served = md(
        {"model": {"modelRef": {"name": "iris", "version": 7}}}, {"servedModelUri": URI, "phase": "Ready"}
    )
    plan = rmd.plan(
        served,
        observed=rmd.Observed(sources={("Model", "iris"): _model({}, [1])}),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.status.served_model_uri == URI
    assert (
        rmd.resolve(served.spec.model, {("Model", "iris"): _model({}, [1])}).reason == "ModelVersionNotFound"
    )


def test_a_model_ref_takes_alias_or_version_not_both() -> None:
    with pytest.raises(ValueError, match="alias or version, not both"):
        api.ModelRef.model_validate({"name": "iris", "alias": "champion", "version": 2})
    assert api.ModelRef(name="iris", version=3).effective_alias() is None


# --- The automatic canary: each new version of spec.model is judged before it serves --------

AUTO_SPEC: dict[str, Any] = {
    "model": {"modelRef": {"name": "iris"}},
    "replicas": 4,
    "canary": {"trafficPercent": 25, "rollback": {"minRequests": 100}},
}


def _auto_pass(
    status: dict[str, Any] | None,
    champion: int,
    *,
    stable: list[mmetrics.PodMetrics] = (),  # type: ignore[assignment]
    canary: list[mmetrics.PodMetrics] = (),  # type: ignore[assignment]
    deployments: dict[str, Any] | None = None,
) -> rmd.Plan:
    observed = rmd.Observed(
        sources={("Model", "iris"): _model({"champion": champion}, [3, 2, 1])},
        deployments=deployments if deployments is not None else {"stable": deployment_status(4)},
        pod_metrics={"stable": list(stable), "canary": list(canary)},
    )
    return rmd.plan(md(AUTO_SPEC, status), observed=observed, now=NOW, settings=SETTINGS)


def _deployments(plan: rmd.Plan) -> dict[str, str]:
    """Track Deployment name → the model URI it serves."""
    return {
        d["metadata"]["name"]: str(build.model_uri_of(d)) for d in plan.apply if d["kind"] == "Deployment"
    }


def _stable_on(uri: str, replicas: int = 4) -> dict[str, Any]:
    dep = deployment_status(replicas)
    dep["metadata"]["annotations"] = {build.ANNOTATION_MODEL_URI: uri}
    return dep


def test_automatic_canary_judges_a_moved_alias_then_promotes_it() -> None:
    v1, v2 = "pvc://models/iris/v1", "pvc://models/iris/v2"
    first = _auto_pass(None, 1)
    assert _deployments(first) == {"iris-predictor": v1}  # the first version: nothing to compare with
    assert first.status.canary is None and first.status.served_model_version == 1

    # champion moves to 2: v2 serves 1 pod of 4 beside v1; v1 stays the served version.
    moved = _auto_pass(first.status.to_api(), 2, deployments={"stable": _stable_on(v1)})
    assert _deployments(moved) == {"iris-predictor": v1, "iris-canary": v2}
    assert [d["spec"]["replicas"] for d in by_kind(moved)["Deployment"]] == [3, 1]
    assert moved.status.served_model_uri == v1 and moved.status.served_model_version == 1
    canary = moved.status.canary
    assert canary is not None and (canary.state, canary.model_version, canary.model_uri) == (
        "Progressing",
        2,
        v2,
    )
    assert moved.status.is_true("Progressing")
    assert [e.reason for e in moved.events if e.reason.startswith("Canary")] == ["CanaryStarted"]
    assert not any(e.reason == "ModelVersionChanged" for e in moved.events)

    # Still too few requests: still judging, no second CanaryStarted.
    judging = _auto_pass(
        moved.status.to_api(), 2, stable=[pod("stable", requests=900)], canary=[pod("canary", requests=20)]
    )
    assert judging.status.canary is not None and judging.status.canary.state == "Progressing"
    assert not any(e.reason == "CanaryStarted" for e in judging.events)

    # Healthy: promoted. The stable track rolls to v2, the canary pods stay until it has.
    promoted = _auto_pass(
        judging.status.to_api(),
        2,
        stable=[pod("stable", requests=3000, errors=3)],
        canary=[pod("canary", requests=500, errors=1)],
    )
    assert _deployments(promoted) == {"iris-predictor": v2, "iris-canary": v2}
    assert promoted.status.served_model_uri == v2 and promoted.status.served_model_version == 2
    assert promoted.status.canary is not None and promoted.status.canary.state == "Promoted"
    assert {"CanaryPromoted", "ModelVersionChanged"} <= {e.reason for e in promoted.events}

    rolling = _auto_pass(
        promoted.status.to_api(), 2, deployments={"stable": _stable_on(v2, 3) | {"status": {}}}
    )
    assert _deployments(rolling) == {"iris-predictor": v2, "iris-canary": v2}
    # The stable Deployment has rolled out v2: the canary goes.
    done = _auto_pass(rolling.status.to_api(), 2, deployments={"stable": _stable_on(v2, 3)})
    assert _deployments(done) == {"iris-predictor": v2}
    assert by_kind(done)["Deployment"][0]["spec"]["replicas"] == 4
    assert done.status.canary is not None and done.status.canary.state == "Promoted"
    assert done.status.canary.replicas == 0
    # The stable track scales back to 4 (not rolled out for a moment): the canary stays gone.
    scaling = _auto_pass(done.status.to_api(), 2, deployments={"stable": _stable_on(v2, 3) | {"status": {}}})
    assert _deployments(scaling) == {"iris-predictor": v2}
    assert by_kind(scaling)["Deployment"][0]["spec"]["replicas"] == 4
    assert not done.events or not any(e.reason.startswith("Canary") for e in done.events)


def test_automatic_canary_that_fails_keeps_the_served_version_and_refuses_that_one() -> None:
    v1 = "pvc://models/iris/v1"
    serving = _auto_pass(None, 1).status.to_api()
    judging = _auto_pass(serving, 3).status.to_api()
    bad = _auto_pass(
        judging, 3, stable=[pod("stable", requests=3000)], canary=[pod("canary", requests=500, errors=90)]
    )
    assert _deployments(bad) == {"iris-predictor": v1}
    assert bad.status.served_model_uri == v1 and bad.status.served_model_version == 1
    assert bad.status.canary is not None and bad.status.canary.state == "RolledBack"
    assert bad.status.canary.model_version == 3
    assert any(e.reason == "CanaryRolledBack" and "version 3" in e.message for e in bad.events)
    stalled = bad.status.condition("Stalled")
    assert stalled is not None and stalled.status == "True" and stalled.reason == "CanaryRolledBack"
    # The alias still names 3: refused, no new canary.
    again = _auto_pass(bad.status.to_api(), 3, deployments={"stable": _stable_on(v1), "canary": {}})
    assert _deployments(again) == {"iris-predictor": v1}
    assert ("Deployment", "iris-canary") in {(r.kind, r.name) for r in again.delete}
    assert again.status.canary is not None and again.status.canary.state == "RolledBack"
    # The alias moves back to the served version: the refusal is over, nothing to judge.
    back = _auto_pass(again.status.to_api(), 1, deployments={"stable": _stable_on(v1)})
    assert back.status.canary is None and _deployments(back) == {"iris-predictor": v1}
    assert back.status.condition("Stalled").status == "False"  # type: ignore[union-attr]
    # Another version is a new canary.
    other = _auto_pass(again.status.to_api(), 2, deployments={"stable": _stable_on(v1)})
    assert other.status.canary is not None and other.status.canary.state == "Progressing"
    assert _deployments(other)["iris-canary"] == "pvc://models/iris/v2"


def test_automatic_canary_keeps_an_s3_model_s_connection_while_it_is_replaced() -> None:
    s3 = {"endpoint": "http://10.0.0.1:9000", "secretRef": {"name": "store"}}
    model = {
        "status": {
            "aliases": [{"name": "champion", "version": 1}],
            "versions": [
                {"version": 1, "modelUri": "s3://bucket/models/a/1", "modelS3": s3},
                {"version": 2, "modelUri": "s3://bucket/models/a/2", "modelS3": s3},
            ],
        }
    }
    resource = md(AUTO_SPEC)
    first = rmd.plan(
        resource, observed=rmd.Observed(sources={("Model", "iris"): model}), now=NOW, settings=SETTINGS
    )
    assert (
        first.status.served_model_s3 is not None and first.status.served_model_s3.secret_ref.name == "store"
    )  # type: ignore[union-attr]
    # The version is deleted from the Model: the served one keeps its S3 connection.
    gone = {"status": {"aliases": [], "versions": []}}
    plan = rmd.plan(
        md(AUTO_SPEC, first.status.to_api()),
        observed=rmd.Observed(sources={("Model", "iris"): gone}),
        now=NOW,
        settings=SETTINGS,
    )
    dep = next(o for o in plan.apply if o["kind"] == "Deployment")
    config = api.ServeConfig.model_validate_json(
        dep["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
    )
    assert (
        config.model_dir == "s3://bucket/models/a/1"
        and config.s3 is not None
        and config.s3.secret_ref.name == "store"
    )  # type: ignore[union-attr]


# -- spec.logging: the capture store mounted read-write beside the read-only model -------------


def _pod(dep: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], api.ServeConfig]:
    pod_spec = dep["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    env = next(e for e in container["env"] if e["name"] == "MLOPS_CONFIG")
    return pod_spec, container, api.ServeConfig.model_validate_json(env["value"])


def _capture_deployment(logging: dict[str, Any], model_uri: str = URI, **model: Any) -> dict[str, Any]:
    resource = md({"model": {"storageUri": model_uri, **model}, "logging": logging})
    return build.deployment(resource, track="stable", model_uri=model_uri, replicas=1, settings=SETTINGS)


def test_logging_on_the_model_s_claim_adds_a_read_write_mount_of_the_same_volume() -> None:
    dep = _capture_deployment({"storageUri": "pvc://models/captures", "sampleRate": 0.1})
    pod_spec, container, config = _pod(dep)
    assert [v["name"] for v in pod_spec["volumes"]] == ["model", "tmp"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mnt/mlops/pvc/models"] == {
        "name": "model",
        "mountPath": "/mnt/mlops/pvc/models",
        "readOnly": True,
    }
    assert mounts[build.CAPTURE_MOUNT] == {"name": "model", "mountPath": build.CAPTURE_MOUNT}
    assert config.capture == api.CaptureConfig(
        uri=f"file://{build.CAPTURE_MOUNT}/captures/ml/iris", sample_rate=0.1, low_confidence=True
    )
    assert config.model_dir == URI


def test_logging_on_another_claim_or_a_host_path_gets_its_own_volume() -> None:
    dep = _capture_deployment({"storageUri": "pvc://feedback", "rollSeconds": 30, "queueRows": 500})
    pod_spec, container, config = _pod(dep)
    assert {"name": "capture", "persistentVolumeClaim": {"claimName": "feedback"}} in pod_spec["volumes"]
    capture_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == build.CAPTURE_MOUNT)
    assert capture_mount == {"name": "capture", "mountPath": build.CAPTURE_MOUNT}  # read-write
    model_mount = next(m for m in container["volumeMounts"] if m["name"] == "model")
    assert model_mount["readOnly"] is True
    assert config.capture is not None
    assert config.capture.uri == f"file://{build.CAPTURE_MOUNT}/ml/iris"
    assert (config.capture.roll_seconds, config.capture.queue_rows) == (30, 500)
    dep = _capture_deployment({"storageUri": "file:///var/mlops/captures"})
    pod_spec, _, config = _pod(dep)
    assert {
        "name": "capture",
        "hostPath": {"path": "/var/mlops/captures", "type": "DirectoryOrCreate"},
    } in pod_spec["volumes"]
    assert config.capture is not None and config.capture.uri == f"file://{build.CAPTURE_MOUNT}/ml/iris"


def test_s3_logging_mounts_its_secret_and_shares_the_model_s() -> None:
    s3 = {"endpoint": "http://10.0.0.1:9000", "secretRef": {"name": "capture-creds"}}
    dep = _capture_deployment({"storageUri": "s3://bucket/captures", "s3": s3})
    pod_spec, container, config = _pod(dep)
    secret = {"name": "s3-0", "secret": {"secretName": "capture-creds", "optional": True}}
    assert secret in pod_spec["volumes"]
    secret_mount = next(m for m in container["volumeMounts"] if m["name"] == "s3-0")
    assert secret_mount["readOnly"] is True and secret_mount["mountPath"].endswith("/s3/capture-creds")
    assert not any(m["mountPath"] == build.CAPTURE_MOUNT for m in container["volumeMounts"])
    assert config.capture is not None and config.capture.uri == "s3://bucket/captures/ml/iris"
    assert config.capture.s3 is not None and config.capture.s3.endpoint == "http://10.0.0.1:9000"
    # An s3:// model with the same Secret: one Secret volume for both.
    model_uri = "s3://bucket/models/iris"
    resource = md(
        {"model": {"storageUri": model_uri, "s3": s3}, "logging": {"storageUri": "s3://bucket/c", "s3": s3}}
    )
    dep = build.deployment(
        resource,
        track="stable",
        model_uri=model_uri,
        replicas=1,
        settings=SETTINGS,
        model_s3=resource.spec.model.s3,
    )
    pod_spec, _, config = _pod(dep)
    assert [v["name"] for v in pod_spec["volumes"] if "secret" in v] == ["s3-0"]
    assert config.capture is not None and config.s3 == config.capture.s3


def test_without_logging_the_serving_pod_is_unchanged() -> None:
    resource = md({"model": {"storageUri": URI}})
    dep = build.deployment(resource, track="stable", model_uri=URI, replicas=1, settings=SETTINGS)
    pod_spec, container, config = _pod(dep)
    assert config.capture is None and "capture" not in container["env"][0]["value"]
    assert not any(m["mountPath"] == build.CAPTURE_MOUNT for m in container["volumeMounts"])
    assert [v["name"] for v in pod_spec["volumes"]] == ["model", "tmp"]


def test_logging_reaches_the_planned_deployment_and_a_change_rolls_it() -> None:
    base = {"model": {"storageUri": URI}}
    plain = rmd.plan(md(base), observed=rmd.Observed(), now=NOW, settings=SETTINGS)
    logged = rmd.plan(
        md({**base, "logging": {"storageUri": "pvc://models/captures"}}),
        observed=rmd.Observed(),
        now=NOW,
        settings=SETTINGS,
    )
    (before,) = by_kind(plain)["Deployment"]
    (after,) = by_kind(logged)["Deployment"]
    _, _, config = _pod(after)
    assert config.capture is not None and config.capture.uri.endswith("/captures/ml/iris")
    hash_key = "mlops.dev/spec-hash"
    assert before["metadata"]["annotations"].get(hash_key) != after["metadata"]["annotations"].get(hash_key)


def test_tracing_sets_opentelemetry_s_standard_environment_on_the_server() -> None:
    spec = {
        "model": {"storageUri": URI},
        "tracing": {"endpoint": "http://otel-collector.obs:4318/v1/traces", "samplingRatio": 0.25},
    }
    plan = rmd.plan(md(spec), observed=rmd.Observed(), now=NOW, settings=SETTINGS)
    container = by_kind(plan)["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OTEL_TRACES_EXPORTER"] == "otlp" and env["OTEL_SERVICE_NAME"] == "iris"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://otel-collector.obs:4318/v1/traces"
    assert (env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"]) == (
        "parentbased_traceidratio",
        "0.25",
    )
    untraced = rmd.plan(
        md({"model": {"storageUri": URI}}), observed=rmd.Observed(), now=NOW, settings=SETTINGS
    )
    container = by_kind(untraced)["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert not any(e["name"].startswith("OTEL_") for e in container["env"])
    with pytest.raises(pydantic.ValidationError):
        api.TracingSpec.model_validate({"endpoint": "otel:4318"})


def test_kueue_labels_reach_the_serving_deployment_and_its_pods() -> None:
    labels = {"kueue.x-k8s.io/queue-name": "serving", "kueue.x-k8s.io/priority-class": "prod", "team": "a"}
    resource = api.ModelDeployment.from_body(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1, "labels": labels},
            "spec": {"model": {"storageUri": URI}},
        }
    )
    dep = build.deployment(resource, track="stable", model_uri=URI, replicas=1, settings=SETTINGS)
    for where in (dep["metadata"]["labels"], dep["spec"]["template"]["metadata"]["labels"]):
        assert where["kueue.x-k8s.io/queue-name"] == "serving"
        assert where["kueue.x-k8s.io/priority-class"] == "prod"
        assert "team" not in where
    plain = build.deployment(
        md({"model": {"storageUri": URI}}), track="stable", model_uri=URI, replicas=1, settings=SETTINGS
    )
    assert not any(k.startswith("kueue.x-k8s.io/") for k in plain["spec"]["template"]["metadata"]["labels"])
