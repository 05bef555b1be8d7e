"""Real Kueue (the ``kueue`` fixture) queues plain batch/v1 Jobs against a ClusterQueue's quota.

A ResourceFlavor for the kwok GPU nodes (their label and a toleration of their taint), a
ClusterQueue with cpu, memory and nvidia.com/gpu quota in it, a LocalQueue in a fresh namespace
that Kueue manages. A suspended Job in the queue asking for one GPU gets a Workload that Kueue
admits: Kueue un-suspends the Job with the flavor's nodeSelector and toleration injected, and its
pod lands on a GPU node. A Job asking for more GPUs than the queue has stays suspended, its
Workload QuotaReserved=False with Kueue's reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Kueue, wait_until

pytestmark = pytest.mark.integration

GPU_POOL = {"mlops.dev/node-pool": "gpu"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
QUOTA = {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "4"}
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def queued_job(name: str, queue: str, gpus: int) -> dict[str, Any]:
    """A plain Job in ``queue``, created suspended (no Kueue webhook runs to suspend it)."""
    resources = {
        "requests": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": str(gpus)},
        "limits": {"nvidia.com/gpu": str(gpus)},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": "busybox", "command": ["true"], "resources": resources}
                    ],
                }
            },
        },
    }


@pytest.fixture
def queues(kueue: Kueue, kueue_namespace: str) -> Iterator[dict[str, str]]:
    """The flavor, ClusterQueue and LocalQueue; the cluster-scoped ones deleted afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {"flavor": f"gpu-{suffix}", "cluster_queue": f"smoke-{suffix}", "local_queue": "team"}
    kueue.apply(
        kueue.resource_flavor(names["flavor"], GPU_POOL, tolerations=[GPU_TOLERATION]),
        kueue.cluster_queue(names["cluster_queue"], names["flavor"], QUOTA),
        kueue.local_queue(names["local_queue"], kueue_namespace, names["cluster_queue"]),
    )
    yield names
    # Namespace-scoped first, while Kueue runs: a Workload holds its ClusterQueue's finalizer.
    kueue.cluster.kubectl(
        "delete", "jobs", "--all", "-n", kueue_namespace, "--cascade=foreground", "--timeout=60s", timeout=90
    )
    kueue.delete("localqueues.kueue.x-k8s.io", names["local_queue"], kueue_namespace)
    kueue.delete("clusterqueues.kueue.x-k8s.io", names["cluster_queue"])
    kueue.delete("resourceflavors.kueue.x-k8s.io", names["flavor"])


def test_kueue_admits_within_quota_and_holds_the_rest(
    kueue: Kueue, kueue_namespace: str, queues: dict[str, str]
) -> None:
    cluster, ns = kueue.cluster, kueue_namespace
    cq = queues["cluster_queue"]
    wait_until(
        lambda: (
            (kueue.condition(cluster.get("clusterqueues.kueue.x-k8s.io", cq), "Active") or {}).get("status")
            == "True"
        ),
        timeout=60,
        what=f"ClusterQueue {cq} Active",
        explain=lambda: cluster.get("clusterqueues.kueue.x-k8s.io", cq),
    )

    # Within quota: admitted, un-suspended with the flavor's node placement, run on a GPU node.
    cluster.apply(queued_job("one-gpu", queues["local_queue"], 1), namespace=ns)
    wl = wait_until(
        lambda: (
            (w := kueue.workload_for("Job", "one-gpu", ns))
            and (kueue.condition(w, "Admitted") or {}).get("status") == "True"
            and w
        ),
        timeout=60,
        what="the one-GPU Job's Workload Admitted",
        explain=lambda: kueue.workload_for("Job", "one-gpu", ns),
    )
    assert (kueue.condition(wl, "QuotaReserved") or {}).get("status") == "True"
    admission = wl["status"]["admission"]
    assert admission["clusterQueue"] == cq
    flavor = queues["flavor"]
    assert admission["podSetAssignments"][0]["flavors"] == {
        "cpu": flavor,
        "memory": flavor,
        "nvidia.com/gpu": flavor,
    }
    job = wait_until(
        lambda: (j := cluster.get("job", "one-gpu", ns)) and j["spec"].get("suspend") is False and j,
        timeout=60,
        what="Kueue to un-suspend the one-GPU Job",
    )
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == GPU_POOL
    assert GPU_TOLERATION in pod_spec["tolerations"]
    pods = wait_until(
        lambda: [p for p in cluster.list("pods", ns, "job-name=one-gpu") if p["spec"].get("nodeName")],
        timeout=60,
        what="the one-GPU Job's pod scheduled",
    )
    assert pods[0]["spec"]["nodeName"].startswith("kwok-gpu-")
    wait_until(  # kwok completes it; Kueue sees the Job finish and releases the quota
        lambda: (
            (kueue.condition(kueue.workload_for("Job", "one-gpu", ns), "Finished") or {}).get("status")
            == "True"
        ),
        timeout=60,
        what="the one-GPU Workload Finished",
        explain=lambda: kueue.workload_for("Job", "one-gpu", ns),
    )

    # Beyond quota (8 GPUs, the queue has 4): a Workload that Kueue cannot fit, the Job held.
    cluster.apply(queued_job("eight-gpus", queues["local_queue"], 8), namespace=ns)
    pending = wait_until(
        lambda: (
            (c := kueue.condition(kueue.workload_for("Job", "eight-gpus", ns), "QuotaReserved"))
            and c.get("status") == "False"
            and c
        ),
        timeout=60,
        what="the eight-GPU Workload QuotaReserved=False",
        explain=lambda: kueue.workload_for("Job", "eight-gpus", ns),
    )
    assert "nvidia.com/gpu" in pending["message"], pending
    held = kueue.workload_for("Job", "eight-gpus", ns)
    assert held is not None and not held["status"].get("admission")
    assert (cluster.get("job", "eight-gpus", ns) or {})["spec"]["suspend"] is True
    assert cluster.list("pods", ns, "job-name=eight-gpus") == []
