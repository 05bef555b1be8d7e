"""The test cluster behaves like Kubernetes: real version, GPU scheduling, Jobs, garbage collection."""

from __future__ import annotations

import json

from conftest import Cluster, wait_until


def test_server_is_the_pinned_kubernetes(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.34.")
    assert version["serverVersion"]["minor"] == "34"


def test_kwok_nodes_advertise_cpu_and_gpu(cluster: Cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.list("nodes")}
    gpu = [n for n in nodes.values() if n["metadata"]["labels"].get("nvidia.com/gpu.present") == "true"]
    cpu = [n for n in nodes.values() if n["metadata"]["labels"].get("mlops.dev/node-pool") == "cpu"]
    assert len(gpu) >= 2 and len(cpu) >= 2
    for node in gpu:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
        assert "nvidia.com/gpu.product" in node["metadata"]["labels"]


def _job(name: str, *, gpu: int, tolerate: bool) -> dict:
    spec: dict = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "registry.invalid/none:0",
                "resources": {"limits": {"nvidia.com/gpu": str(gpu)}} if gpu else {},
            }
        ],
    }
    if tolerate:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }


def test_gpu_job_is_scheduled_on_a_gpu_node_and_succeeds(cluster: Cluster, namespace: str) -> None:
    cluster.apply(_job("gpu-train", gpu=1, tolerate=True), namespace)
    job = wait_until(
        lambda: (
            (j := cluster.get("job", "gpu-train", namespace)) and j.get("status", {}).get("succeeded") and j
        ),
        timeout=60,
        what="the GPU job to succeed",
    )
    assert job["status"]["succeeded"] == 1
    pods = cluster.list("pods", namespace, "job-name=gpu-train")
    assert len(pods) == 1
    node = cluster.get("node", pods[0]["spec"]["nodeName"])
    assert node is not None
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"


def test_gpu_job_without_toleration_is_unschedulable(cluster: Cluster, namespace: str) -> None:
    cluster.apply(_job("gpu-untolerated", gpu=1, tolerate=False), namespace)

    def unschedulable() -> str | None:
        for pod in cluster.list("pods", namespace, "job-name=gpu-untolerated"):
            for cond in pod.get("status", {}).get("conditions", []):
                if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                    return str(cond.get("message"))
        return None

    message = wait_until(unschedulable, timeout=60, what="PodScheduled=False/Unschedulable")
    assert "nvidia.com/gpu" in message


def test_deleting_an_owner_garbage_collects_its_children(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}, "data": {}}, namespace
    )
    owner = cluster.get("configmap", "owner", namespace)
    assert owner is not None
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    child = _job("child", gpu=0, tolerate=False)
    child["metadata"]["ownerReferences"] = [ref]
    cluster.apply(child, namespace)
    wait_until(lambda: cluster.list("pods", namespace, "job-name=child"), timeout=60, what="the child's pod")
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until(
        lambda: cluster.get("job", "child", namespace) is None,
        timeout=60,
        what="the child Job to be collected",
    )
    wait_until(
        lambda: not cluster.list("pods", namespace, "job-name=child"),
        timeout=60,
        what="the child's pods to be collected",
    )
