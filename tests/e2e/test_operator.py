"""The operator runs in-cluster from its image: Ready, talking to the apiserver through the
``kubernetes`` Service, reconciling a resource, serving /metrics through its Service."""

from __future__ import annotations

import pathlib

import yaml

from conftest import Cluster
from e2e import pods
from e2e.conftest import RealNode

MANIFESTS = pathlib.Path(__file__).resolve().parent / "manifests"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def render(path: pathlib.Path, **values: str) -> str:
    text = path.read_text()
    for key, value in values.items():
        text = text.replace(f"__{key}__", value)
    return text


def test_operator_runs_in_cluster_and_reconciles(
    cluster: Cluster, real_node: RealNode, e2e_namespace: str
) -> None:
    manifest = render(
        MANIFESTS / "operator.yaml",
        NAMESPACE=e2e_namespace,
        OPERATOR_IMAGE=real_node.operator_image,
        WORKLOAD_IMAGE=real_node.workload_image,
    )
    cluster_scoped = [
        f"clusterrole/mlops-operator-{e2e_namespace}",
        f"clusterrolebinding/mlops-operator-{e2e_namespace}",
    ]
    try:
        cluster.kubectl("apply", "--server-side", "--field-manager=pytest", "-f", "-", input=manifest)

        def available() -> bool:
            deployment = cluster.get("deployment", "mlops-operator", e2e_namespace) or {}
            conditions = deployment.get("status", {}).get("conditions", [])
            return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

        def operator_log() -> str:
            return cluster.kubectl(
                "logs", "-n", e2e_namespace, "deployment/mlops-operator", "--tail=50", check=False
            ).stdout

        pods.wait(
            cluster,
            e2e_namespace,
            available,
            timeout=180,
            what="the operator Deployment Available",
            logs=operator_log,
        )
        [pod] = cluster.list("pod", e2e_namespace, selector="app.kubernetes.io/name=mlops-operator")
        assert pod["spec"]["nodeName"] == real_node.name
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, operator_log()

        # In-cluster config reached the apiserver (the kubelet serves these logs back to us).
        assert "mlops-operator started" in operator_log()

        # It watches and patches: a TrainingJob gets its status (its Dataset does not exist,
        # which the status must say rather than stay silent).
        example = yaml.safe_load((ROOT / "examples" / "quickstart" / "trainingjob.yaml").read_text())
        example["metadata"]["namespace"] = e2e_namespace
        cluster.apply(example)
        name = example["metadata"]["name"]
        status = pods.wait(
            cluster,
            e2e_namespace,
            lambda: (
                (cluster.get("trainingjob", name, e2e_namespace) or {}).get("status", {}).get("conditions")
            ),
            timeout=90,
            what="the in-cluster operator to write the TrainingJob's status",
            logs=operator_log,
        )
        assert status, status

        # /metrics through its Service's ClusterIP, from the host.
        ip = cluster.get("service", "mlops-operator-metrics", e2e_namespace)["spec"]["clusterIP"]  # type: ignore[index]
        body = pods.wait(
            cluster,
            e2e_namespace,
            lambda: pods.get_text(f"http://{ip}:8000/metrics"),
            timeout=60,
            what="operator /metrics",
        )
        assert "mlops_operator_" in body

        # Deletion is never blocked: the operator puts no finalizer on its kinds.
        cluster.kubectl("delete", "trainingjob", name, "-n", e2e_namespace, "--wait=false")
        pods.wait(
            cluster,
            e2e_namespace,
            lambda: cluster.get("trainingjob", name, e2e_namespace) is None,
            timeout=60,
            what="the TrainingJob to be deleted",
            logs=operator_log,
        )
    finally:
        # Never leave the namespace stuck on a finalizer whose operator is gone.
        remaining = cluster.kubectl("get", "trainingjob", "-n", e2e_namespace, "-o", "name", check=False)
        for ref in remaining.stdout.split():
            cluster.kubectl(
                "patch",
                ref,
                "-n",
                e2e_namespace,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
        cluster.kubectl("delete", "--wait=false", "--ignore-not-found", *cluster_scoped, check=False)
