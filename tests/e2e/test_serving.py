"""Serving for real: a ModelDeployment on the real node, driven by a load generator through its
Service. The operator (a subprocess on the host, which reaches the pods' IPs) reads the pods'
``/metrics`` and scales the Deployment up under load and back down when the load drops; a new
model version rolls out while the load runs; not one request may fail throughout.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import pathlib
import time
from typing import Any

import pytest
import realnode

from conftest import Cluster, wait_until
from e2e.conftest import RealNode, chown_for_workloads, operator_on_real_node
from e2e.load import LoadGenerator
from mlops_operator import cli
from mlops_operator.reconcile import owner as rowner
from mlops_workloads.serve import demo

NAME = "iris"
ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3, "site": "north"}


def _infer_body() -> dict[str, Any]:
    return {
        "inputs": [
            {"name": k, "shape": [1], "datatype": "BYTES" if k == "site" else "FP64", "data": [v]}
            for k, v in ROW.items()
        ]
    }


def _rolled_out(cluster: Cluster, ns: str) -> dict[str, Any] | None:
    dep = cluster.get("deployment", f"{NAME}-predictor", ns) or {}
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    done = st.get("observedGeneration") == (dep.get("metadata") or {}).get("generation") and spec.get(
        "replicas"
    ) == st.get("updatedReplicas") == st.get("readyReplicas") == st.get("replicas")
    return dep if done else None


def _replicas(cluster: Cluster, ns: str) -> int:
    dep = cluster.get("deployment", f"{NAME}-predictor", ns) or {}
    return int((dep.get("spec") or {}).get("replicas") or 0)


def _predict_through_a_port_forward(cluster: Cluster, ns: str) -> None:
    """``mlops predict`` from the host (not in the cluster): the API server's port-forward to a
    ready serving pod, through the real kubelet; the CSV comes back with its predictions."""
    rows = pathlib.Path(f"/tmp/{ns}-rows.csv")
    header = ["id", *ROW]
    lines = [",".join(header), ",".join(["a", *(str(v) for v in ROW.values())])]
    lines.append("b,5.1,3.5,1.4,0.2,south")
    rows.write_text("\n".join(lines) + "\n")
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        ["predict", NAME, str(rows), "-n", ns, "--kubeconfig", str(cluster.kubeconfig), "-o", "json"],
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(a["id"], a["prediction"]) for a in answers] == [("a", 2), ("b", 0)], answers
    assert "id" in err.getvalue()  # the column the model does not take is named, not sent
    rows.unlink()


def test_autoscales_under_load_and_rolls_out_without_a_failed_request(
    cluster: Cluster, real_node: RealNode, e2e_namespace: str, request: pytest.FixtureRequest
) -> None:
    ns = e2e_namespace
    volume = realnode.ensure_data_claim(ns)
    uris = {}
    for version in ("v1", "v2"):
        demo.build(volume / "models" / version)
        uris[version] = f"pvc://{realnode.DATA_CLAIM}/models/{version}"
    chown_for_workloads(volume / "models")
    served = {v: rowner.spec_hash(uri)[:12] for v, uri in uris.items()}  # the model_version answered

    operator = operator_on_real_node(cluster, real_node, ns, request)

    def state() -> dict[str, Any]:
        md = cluster.get("modeldeployment", NAME, ns) or {}
        st = md.get("status") or {}
        pods = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout
        return {
            "phase": st.get("phase"),
            "ready": st.get("ready"),
            "lastScale": st.get("lastScale"),
            "conditions": st.get("conditions"),
            "pods": pods,
            "operator_log": operator.log()[-3000:],
        }

    try:
        cluster.apply(
            {
                "apiVersion": "mlops.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": NAME},
                "spec": {
                    "model": {"storageUri": uris["v1"]},
                    "resources": {"cpu": "100m", "memory": "384Mi"},
                    "autoscaling": {
                        "minReplicas": 1,
                        "maxReplicas": 3,
                        "metric": "rps",
                        "target": 10,
                        "targetUtilizationPercent": 100,
                        "stableWindowSeconds": 20,
                        "panicWindowSeconds": 6,
                        "scaleDownDelaySeconds": 0,
                    },
                },
            },
            ns,
        )
        wait_until(
            lambda: state()["phase"] == "Ready",
            timeout=180,
            interval=1.0,
            what="the ModelDeployment Ready on the real node",
            explain=state,
        )
        marks = {"ready": time.monotonic()}
        _predict_through_a_port_forward(cluster, ns)
        svc = cluster.get("service", NAME, ns)
        assert svc is not None
        host, port = svc["spec"]["clusterIP"], int(svc["spec"]["ports"][0]["port"])

        with LoadGenerator(host, port, f"/v2/models/{NAME}/infer", _infer_body()) as load:
            # 40 requests/s against a target of 10 per pod: the operator scales to the cap of 3.
            load.set_rate(40)
            wait_until(
                lambda: _replicas(cluster, ns) == 3 and _rolled_out(cluster, ns),
                timeout=180,
                what="scaled up to 3 ready pods under load",
                explain=state,
            )
            marks["scaled up"] = time.monotonic()
            scaled_up = cluster.get("modeldeployment", NAME, ns)["status"]["lastScale"]  # type: ignore[index]
            assert scaled_up["desired"] == 3, scaled_up

            # A new model version while the load runs: a rolling update, one surge pod at a time.
            cluster.kubectl(
                "patch",
                "modeldeployment",
                NAME,
                "-n",
                ns,
                "--type=merge",
                "-p",
                json.dumps({"spec": {"model": {"storageUri": uris["v2"]}}}),
            )
            wait_until(
                lambda: (
                    (dep := _rolled_out(cluster, ns))
                    and served["v2"] in json.dumps(dep["spec"]["template"])
                    and not any(
                        p["metadata"].get("deletionTimestamp")
                        for p in cluster.list("pod", ns, selector=f"mlops.dev/modeldeployment={NAME}")
                    )
                ),
                timeout=240,
                what="the rollout of v2 finished, old pods gone",
                explain=state,
            )
            rolled_at = marks["rolled out"] = time.monotonic()
            time.sleep(3)
            after = [a for a in load.snapshot() if a.at > rolled_at]
            assert after and all(a.ok and a.detail == served["v2"] for a in after), after[:5]

            # The load drops to 5 requests/s: back down to one pod, still without a failure.
            load.set_rate(5)
            wait_until(
                lambda: _replicas(cluster, ns) == 1 and _rolled_out(cluster, ns),
                timeout=180,
                what="scaled back down to 1 pod",
                explain=state,
            )
            marks["scaled down"] = time.monotonic()
            time.sleep(8)  # the pods removed by the scale-down finish draining under load
            answers = load.snapshot()

        failures = [a for a in answers if not a.ok]
        versions = collections.Counter(a.detail for a in answers if a.ok)
        assert not failures, f"{len(failures)} of {len(answers)} requests failed: {failures[:10]}"
        assert set(versions) == {served["v1"], served["v2"]}, versions
        assert len(answers) > 1000, len(answers)
        md = cluster.get("modeldeployment", NAME, ns) or {}
        assert md["status"]["servedModelUri"] == uris["v2"]
        # The status converges on the scale the Deployment has (a pass may write it a resync later).
        wait_until(
            lambda: (
                ((cluster.get("modeldeployment", NAME, ns) or {}).get("status") or {})
                .get("lastScale", {})
                .get("desired")
                == 1
                and _replicas(cluster, ns) == 1
            ),
            timeout=60,
            what="status.lastScale.desired 1 with the Deployment at 1 pod",
            explain=lambda: ((cluster.get("modeldeployment", NAME, ns) or {}).get("status") or {}).get(
                "lastScale"
            ),
        )
        steps = list(marks.items())
        took = ", ".join(f"{b} in {tb - ta:.0f}s" for (_, ta), (b, tb) in itertools.pairwise(steps))
        print(f"\nserving e2e: {len(answers)} requests, 0 failed, versions {dict(versions)}; {took}")
    finally:
        operator.kill()
