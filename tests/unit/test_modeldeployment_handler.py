"""The ModelDeployment handler against a fake API, with metrics from fed text or a REAL server.

The KPA loop test starts the actual model server, sends it load from threads, and runs
reconcile passes whose metrics come from HTTP scrapes of that process: replicas go up
under load and back down after it, as the Deployment the handler applies says.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import pathlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

import model_server
from mlops_operator.api import common
from mlops_operator.handlers import framework
from mlops_operator.handlers import modeldeployment as handler
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads.serve import demo


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.deleted: list[tuple[str, str]] = []

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace or "", name))

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        want = dict(p.split("=", 1) for p in (label_selector or "").split(",") if p)
        return [
            o
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and ns == namespace
            and want.items() <= ((o.get("metadata") or {}).get("labels") or {}).items()
        ]

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        old = self.objects.get(key, {})
        self.objects[key] = {**obj, "status": old.get("status", {})}
        return self.objects[key]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        self.deleted.append((kind, name))
        return self.objects.pop((kind, namespace or "", name), None) is not None


def ctx(kube: FakeKube, now: datetime.datetime) -> framework.Context:
    return framework.Context(
        kube=kube,
        settings=rworkload.WorkloadSettings(),
        now=now,  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
    )


def body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": common.API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": spec,
        "status": status or {},
    }


def ready_pod(name: str, track: str, ip: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": {
                "app.kubernetes.io/component": "serving",
                "mlops.dev/modeldeployment": "iris",
                "mlops.dev/track": track,
            },
        },
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def mark_ready(kube: FakeKube, name: str) -> None:
    dep = kube.objects[("Deployment", "ml", name)]
    n = dep["spec"].get("replicas", 1)
    dep["metadata"]["generation"] = 1
    dep["status"] = {"observedGeneration": 1, "replicas": n, "updatedReplicas": n, "readyReplicas": n}


class FedSource:
    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def scrape(self, pod: Mapping[str, Any]) -> str | None:
        return self.texts.get(pod["metadata"]["name"])


def exposition(requests_: int, errors: int, le_fast: int) -> str:
    ep = 'endpoint="/v2/models/{name}/infer"'
    return (
        f'mlops_serve_requests_total{{code="200",{ep}}} {requests_ - errors}\n'
        f'mlops_serve_requests_total{{code="500",{ep}}} {errors}\n'
        f'mlops_serve_request_duration_seconds_bucket{{{ep},le="0.01"}} {le_fast}\n'
        f'mlops_serve_request_duration_seconds_bucket{{{ep},le="1.0"}} {requests_}\n'
        f'mlops_serve_request_duration_seconds_bucket{{{ep},le="+Inf"}} {requests_}\n'
        f"mlops_serve_request_duration_seconds_count{{{ep}}} {requests_}\n"
        f"mlops_serve_request_duration_seconds_sum{{{ep}}} {requests_ * 0.01}\n"
    )


@pytest.fixture(autouse=True)
def _restore_source() -> Iterator[None]:
    yield
    handler.set_metrics_source(None)


def test_canary_rollback_driven_by_fed_metrics() -> None:
    kube = FakeKube()
    source = FedSource()
    handler.set_metrics_source(source)
    spec = {
        "model": {"storageUri": "pvc://m/v1"},
        "replicas": 4,
        "canary": {
            "model": {"storageUri": "pvc://m/v2"},
            "trafficPercent": 25,
            "rollback": {"minRequests": 50, "errorRateMargin": 0.05},
        },
    }
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    outcome = handler.reconcile(ctx(kube, now), body(spec))
    assert kube.get("apps/v1", "Deployment", "iris-canary", "ml")["spec"]["replicas"] == 1  # type: ignore[index]
    assert kube.get("apps/v1", "Deployment", "iris-predictor", "ml")["spec"]["replicas"] == 3  # type: ignore[index]
    assert kube.get("policy/v1", "PodDisruptionBudget", "iris-pdb", "ml") is not None
    mark_ready(kube, "iris-predictor")
    mark_ready(kube, "iris-canary")
    for i, track in enumerate(["stable", "stable", "stable", "canary"]):
        kube.objects[("Pod", "ml", f"p{i}")] = ready_pod(f"p{i}", track)
    source.texts = {
        "p0": exposition(1000, 1, 990),
        "p1": exposition(1000, 0, 990),
        "p2": exposition(1000, 2, 990),
        "p3": exposition(100, 30, 70),
    }
    status = framework._status_dict(outcome.status)
    outcome = handler.reconcile(ctx(kube, now + datetime.timedelta(seconds=5)), body(spec, status))
    status = framework._status_dict(outcome.status)
    assert status is not None and status["canary"]["state"] == "RolledBack"
    assert ("Deployment", "iris-canary") in kube.deleted
    assert kube.get("apps/v1", "Deployment", "iris-predictor", "ml")["spec"]["replicas"] == 4  # type: ignore[index]
    assert any(e.reason == "CanaryRolledBack" and e.type == "Warning" for e in outcome.events)


def test_promotion_from_a_sweep() -> None:
    kube = FakeKube()
    kube.objects[("HyperparameterSweep", "ml", "tune")] = {
        "status": {"phase": "Succeeded", "bestTrial": {"name": "tune-7", "modelUri": "pvc://m/tune-7"}}
    }
    outcome = handler.reconcile(
        ctx(kube, datetime.datetime.now(datetime.UTC)), body({"model": {"sweepRef": "tune"}})
    )
    dep = kube.get("apps/v1", "Deployment", "iris-predictor", "ml")
    assert (
        dep is not None
        and "pvc://m/tune-7" in dep["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
    )
    assert framework._status_dict(outcome.status)["servedModelUri"] == "pvc://m/tune-7"  # type: ignore[index]


@contextlib.contextmanager
def server(model_dir: pathlib.Path, tmp: pathlib.Path) -> Iterator[int]:
    with model_server.running(model_dir, tmp) as (url, _):
        yield int(url.rsplit(":", 1)[1])


def test_kpa_loop_scales_a_real_server_up_and_down(tmp_path: pathlib.Path) -> None:
    model_dir = demo.build(tmp_path / "model")
    with server(model_dir, tmp_path) as port:
        handler.set_metrics_source(handler.HttpMetricsSource(port=port))
        kube = FakeKube()
        kube.objects[("Pod", "ml", "p0")] = ready_pod("p0", "stable")
        spec = {
            "model": {"storageUri": f"file://{model_dir}"},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 8,
                "metric": "rps",
                "target": 20,
                "targetUtilizationPercent": 100,
                "stableWindowSeconds": 6,
                "panicWindowSeconds": 2,
                "scaleDownDelaySeconds": 0,
            },
        }
        status: dict[str, Any] | None = None
        stop = threading.Event()
        row = {"instances": [[5.1, 3.5, 1.4, 0.2, "north"]]}

        def load() -> None:
            with requests.Session() as s:
                while not stop.is_set():
                    s.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json=row, timeout=10)
                    time.sleep(0.005)

        def reconcile_pass() -> int:
            nonlocal status
            outcome = handler.reconcile(ctx(kube, datetime.datetime.now(datetime.UTC)), body(spec, status))
            status = framework._status_dict(outcome.status)
            dep = kube.get("apps/v1", "Deployment", "iris-predictor", "ml")
            assert dep is not None
            return int(dep["spec"]["replicas"])

        assert reconcile_pass() == 1
        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        try:
            peak = 1
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and peak < 3:
                time.sleep(0.5)
                peak = max(peak, reconcile_pass())
        finally:
            stop.set()
            for w in workers:
                w.join()
        # Dozens of requests/s against a target of 20/pod: more pods.
        assert peak >= 3, status
        assert status is not None and status["lastScale"]["reason"] in {
            "ScaleUp",
            "PanicScaleUp",
            "Panic",
            "ClampedToMax",
        }
        deadline = time.monotonic() + 40
        replicas = peak
        while time.monotonic() < deadline and replicas > 1:
            time.sleep(0.5)
            replicas = reconcile_pass()
        assert replicas == 1, status
        assert status is not None and len(status["autoscaler"]["samples"]) <= 128


def test_canary_verdict_uses_the_window_of_remembered_scrapes() -> None:
    """Ten clean minutes, then a canary error burst: judged on the remembered scrapes' window,
    the burst rolls the canary back (since start, 20 errors in 6,100 requests would pass). The
    history is per pod, bounded by the window, and forgotten with the pod."""
    kube = FakeKube()
    source = FedSource()
    handler.set_metrics_source(source)
    spec = {
        "model": {"storageUri": "pvc://m/v1"},
        "replicas": 2,
        "canary": {
            "model": {"storageUri": "pvc://m/v2"},
            "trafficPercent": 50,
            "rollback": {"minRequests": 50, "errorRateMargin": 0.05, "windowSeconds": 30},
        },
    }
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    outcome = handler.reconcile(ctx(kube, start), body(spec))
    status = framework._status_dict(outcome.status)
    mark_ready(kube, "iris-predictor")
    mark_ready(kube, "iris-canary")
    kube.objects[("Pod", "ml", "s0")] = ready_pod("s0", "stable")
    kube.objects[("Pod", "ml", "c0")] = ready_pod("c0", "canary")
    states = []
    for t in range(5, 615, 5):  # 10 requests/s on each pod; the canary fails 2/s from t=600
        errors = 2 * max(0, t - 600)
        source.texts = {"s0": exposition(10 * t, 0, 10 * t), "c0": exposition(10 * t, errors, 10 * t)}
        outcome = handler.reconcile(ctx(kube, start + datetime.timedelta(seconds=t)), body(spec, status))
        status = framework._status_dict(outcome.status)
        assert status is not None
        states.append(status["canary"]["state"])
        history = handler._HISTORY["u-1"]
        assert all(len(h) <= 30 / 5 + 2 for h in history.values())
    assert set(states[:-1]) == {"Healthy"} and states[-1] == "RolledBack", states
    assert status is not None and "over the last 30 s" in status["canary"]["message"]
    assert "error rate canary 0.0667" in status["canary"]["message"]
    # The canary Deployment is deleted; once its pod is gone, so is its history.
    del kube.objects[("Pod", "ml", "c0")]
    handler.reconcile(ctx(kube, start + datetime.timedelta(seconds=615)), body(spec, status))
    assert set(handler._HISTORY["u-1"]) == {"s0"}
    # The ModelDeployment is deleted: the DELETED event drops what was kept for it.
    assert handler.REGISTRATION.forget is handler.forget
    handler.forget("u-1")
    assert "u-1" not in handler._HISTORY and "u-1" not in handler._BASELINES
    handler.set_metrics_source(None)
    assert handler._HISTORY == {}


def test_scrapes_carry_the_pods_start_time() -> None:
    """The window needs to know whether a pod started before it (see ``mmetrics.window``)."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert handler._started({"status": {"startTime": "2026-01-01T00:00:00Z"}}) == start.timestamp()
    assert handler._started({"status": {}}) is None
    assert handler._started({"status": {"startTime": "not a time"}}) is None
    source = FedSource()
    handler.set_metrics_source(source)
    pod = ready_pod("s0", "stable")
    pod["status"]["startTime"] = "2026-01-01T00:00:00Z"
    source.texts = {"s0": exposition(10, 0, 10)}
    [(name, (track, metrics))] = handler._scrape_all([pod], now=start.timestamp() + 60).items()
    assert (name, track, metrics.started, metrics.requests) == ("s0", "stable", start.timestamp(), 10)
