"""Capture and review for real on the kubelet node: a ModelDeployment with ``spec.logging`` on the
data volume keeps its low-confidence rows (the non-root server writes Parquet files into the
claim), its ``review`` server lists them through its Service, a person's label is saved beside
them with who gave it, and every answer meanwhile is a 200 carrying its X-Request-Id."""

from __future__ import annotations

import http.client
import json
import urllib.request
from typing import Any

import pytest
import realnode

from conftest import Cluster, wait_until
from e2e.conftest import RealNode, chown_for_workloads, operator_on_real_node
from mlops_workloads import capture, labels, storage
from mlops_workloads.serve import demo

NAME = "iris-review"
ROW = {"sepal_length": 6.0, "sepal_width": 2.9, "petal_length": 4.8, "petal_width": 1.7, "site": "north"}


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def test_low_confidence_rows_are_captured_on_the_volume_and_labelled_through_the_review_server(
    cluster: Cluster, real_node: RealNode, e2e_namespace: str, request: pytest.FixtureRequest
) -> None:
    ns = e2e_namespace
    volume = realnode.ensure_data_claim(ns)
    demo.build(volume / "models" / "review-v1")
    (volume / "captures").mkdir(exist_ok=True)
    chown_for_workloads(volume / "models")
    chown_for_workloads(volume / "captures")
    operator = operator_on_real_node(cluster, real_node, ns, request)

    def explain() -> dict[str, Any]:
        md = cluster.get("modeldeployment", NAME, ns) or {}
        return {
            "status": md.get("status"),
            "pods": cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout,
            "operator": operator.log()[-2000:],
        }

    cluster.apply(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": NAME},
            "spec": {
                "model": {"storageUri": f"pvc://{realnode.DATA_CLAIM}/models/review-v1"},
                "resources": {"cpu": "100m", "memory": "384Mi"},
                # Every answer below certainty is low-confidence: each row waits for review.
                "lowConfidenceThreshold": 1.0,
                "logging": {
                    "storageUri": f"pvc://{realnode.DATA_CLAIM}/captures",
                    "rollSeconds": 5,
                    "review": {"enabled": True},
                },
            },
        },
        ns,
    )
    wait_until(
        lambda: (
            (cluster.get("modeldeployment", NAME, ns) or {}).get("status", {}).get("phase") == "Ready"
            and cluster.get("deployment", f"{NAME}-review", ns) is not None
            and ((cluster.get("deployment", f"{NAME}-review", ns) or {}).get("status") or {}).get(
                "readyReplicas"
            )
            == 1
        ),
        timeout=240,
        interval=1.0,
        what="the deployment and its review server ready",
        explain=explain,
    )
    svc = cluster.get("service", NAME, ns)
    review_svc = cluster.get("service", f"{NAME}-review", ns)
    assert svc is not None and review_svc is not None
    host, port = svc["spec"]["clusterIP"], int(svc["spec"]["ports"][0]["port"])
    review = f"http://{review_svc['spec']['clusterIP']}:{review_svc['spec']['ports'][0]['port']}"

    body = json.dumps({"instances": [ROW, ROW]}).encode()
    ids = []
    for i in range(5):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request(
            "POST",
            f"/v1/models/{NAME}:predict",
            body=body,
            headers={"Content-Type": "application/json", "X-Request-Id": f"e2e-{i}"},
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200, answer
        assert response.getheader("X-Request-Id") == f"e2e-{i}"
        ids.append(f"e2e-{i}")
        conn.close()

    # The server's files land in the claim (written by uid 1000 through the read-write mount).
    root = storage.open_store(f"file://{volume}/captures/{ns}/{NAME}")
    rows = wait_until(
        lambda: (t := capture.read(root)).num_rows >= 10 and t,
        timeout=60,
        what="10 captured rows on the volume",
        explain=explain,
    )
    assert set(rows.column("request_id").to_pylist()) == set(ids)
    assert set(rows.column("reason").to_pylist()) == {"low_confidence"}

    pending = wait_until(
        lambda: (p := _get(f"{review}/api/pending?limit=50"))["total"] >= 10 and p,
        timeout=60,
        what="the review server listing the 10 rows",
        explain=explain,
    )
    first = pending["rows"][0]
    assert set(first["inputs"]) >= {"sepal_length", "petal_width"} and first["classes"], first
    corrected = next(c for c in first["classes"] if c != first["predictionLabel"])
    request = urllib.request.Request(
        f"{review}/api/labels",
        data=json.dumps(
            {
                "items": [
                    {
                        "requestId": first["requestId"],
                        "row": first["row"],
                        "action": "corrected",
                        "label": corrected,
                    }
                ],
                "reviewer": "e2e-reviewer",
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    saved = labels.latest(labels.read(root)).to_pylist()
    assert [(s["request_id"], s["label"], s["action"], s["reviewer"]) for s in saved] == [
        (first["requestId"], corrected, "corrected", "e2e-reviewer")
    ]
    wait_until(
        lambda: _get(f"{review}/api/pending?limit=50")["total"] == pending["total"] - 1,
        timeout=30,
        what="the labelled row no longer waiting",
    )
