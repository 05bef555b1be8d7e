"""Scale to zero without Knative, for real: a ModelDeployment with ``autoscaling.minReplicas: 0``
on the real node goes idle, its Service moves to the activator and its serving pod goes; then a
burst of requests sent to the Service at zero replicas is held by the activator while the
operator starts a pod, and every one of them is answered 200 by the model. The cold start the
activator measured lands in the status.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time
from typing import Any

import pytest
import realnode

from conftest import Cluster, wait_until
from e2e.conftest import RealNode, chown_for_workloads, operator_on_real_node
from mlops_operator.reconcile import owner as rowner
from mlops_workloads.serve import demo

NAME = "iris"
ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3, "site": "north"}


def _body() -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": k, "shape": [1], "datatype": "BYTES" if k == "site" else "FP64", "data": [v]}
                for k, v in ROW.items()
            ]
        }
    ).encode()


def _infer(host: str, port: int) -> tuple[int, str, float]:
    """(status, model version or error text, seconds) of one request on its own connection."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=240)
    try:
        conn.request(
            "POST", f"/v2/models/{NAME}/infer", body=_body(), headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        text = response.read().decode()
        detail = json.loads(text).get("model_version", "") if response.status == 200 else text[:300]
        return response.status, str(detail), time.monotonic() - started
    except (OSError, ValueError) as exc:
        return -1, repr(exc), time.monotonic() - started
    finally:
        conn.close()


def test_a_deployment_at_zero_answers_every_request_of_a_burst(
    cluster: Cluster,
    real_node: RealNode,
    e2e_namespace: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ns = e2e_namespace
    volume = realnode.ensure_data_claim(ns)
    demo.build(volume / "models" / "v1")
    chown_for_workloads(volume / "models")
    uri = f"pvc://{realnode.DATA_CLAIM}/models/v1"
    version = rowner.spec_hash(uri)[:12]
    operator = operator_on_real_node(cluster, real_node, ns, request)

    def state() -> dict[str, Any]:
        st = (cluster.get("modeldeployment", NAME, ns) or {}).get("status") or {}
        return {
            "phase": st.get("phase"),
            "lastScale": st.get("lastScale"),
            "scaleToZero": st.get("scaleToZero"),
            "conditions": st.get("conditions"),
            "pods": cluster.kubectl("get", "pods,svc", "-n", ns, "-o", "wide", check=False).stdout,
            "operator_log": operator.log()[-3000:],
        }

    def replicas() -> int:
        dep = cluster.get("deployment", f"{NAME}-predictor", ns) or {}
        return int((dep.get("spec") or {}).get("replicas", -1))

    def serving_pods() -> list[dict[str, Any]]:
        return cluster.list(
            "pod", ns, selector=f"mlops.dev/modeldeployment={NAME},app.kubernetes.io/component=serving"
        )

    cluster.apply(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME},
            "spec": {
                "model": {"storageUri": uri},
                "resources": {"cpu": "100m", "memory": "384Mi"},
                "autoscaling": {
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "metric": "concurrency",
                    "target": 10,
                    "stableWindowSeconds": 6,
                    "panicWindowSeconds": 2,
                    "scaleDownDelaySeconds": 0,
                    "scaleToZeroAfterSeconds": 10,
                    "activatorTimeoutSeconds": 240,
                },
            },
        },
        ns,
    )
    # It starts with one pod (the model is loaded once), then idles down to zero.
    wait_until(lambda: state()["phase"] == "Ready", timeout=180, interval=1.0, what="Ready", explain=state)
    wait_until(
        lambda: replicas() == 0 and not serving_pods() and state()["phase"] == "ScaledToZero",
        timeout=180,
        interval=1.0,
        what="scaled to zero, the serving pod gone",
        explain=state,
    )
    svc = cluster.get("service", NAME, ns)
    assert svc is not None and svc["spec"]["selector"]["app.kubernetes.io/component"] == "activator"
    host, port = svc["spec"]["clusterIP"], int(svc["spec"]["ports"][0]["port"])

    # A burst at zero: every request is held, then answered by the model.
    sent = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _infer(host, port), range(8)))
    burst_seconds = time.monotonic() - sent
    assert [(code, detail) for code, detail, _ in answers] == [(200, version)] * 8, (answers, state())
    st = wait_until(
        lambda: (s := state())["scaleToZero"] and s["scaleToZero"].get("coldStarts", 0) >= 1 and s,
        timeout=60,
        what="the cold start in the status",
        explain=state,
    )
    cold = st["scaleToZero"]["lastColdStartSeconds"]
    assert 0 < cold <= burst_seconds + 1, (cold, burst_seconds)
    wait_until(
        lambda: (s := state())["scaleToZero"].get("routing") == "pods" and s["phase"] == "Ready",
        timeout=60,
        what="the Service back on the pods",
        explain=state,
    )
    svc = cluster.get("service", NAME, ns)
    assert svc is not None and svc["spec"]["selector"]["app.kubernetes.io/component"] == "serving"
    code, detail, _ = _infer(host, port)  # warm now: straight to the pod
    assert (code, detail) == (200, version)
    with capsys.disabled():
        print(f"\nscale from zero: 8 requests answered in {burst_seconds:.2f} s; cold start {cold:.2f} s")
