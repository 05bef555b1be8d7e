"""The real-node tier: pods that really run, on a kubelet node beside the kwok nodes.

``real_node`` (session) starts the node when it is not running (``tests/cluster/realnode.py``:
containerd, kubelet, kube-proxy, CNI bridge) on the session's control plane, and builds and
imports the images (``tests/cluster/images/build.py``, cached by content). A node that cannot
start fails the tier, as the control plane does: these tests exist to run for real.

Pods here are production-shaped: a ``restricted`` Pod Security namespace, non-root, read-only
root filesystem, all capabilities dropped, RuntimeDefault seccomp; they opt into the real node
with its label and toleration (the kwok tier's pods never land on it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Cluster, OperatorProcess, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

import realnode  # noqa: E402


def chown_for_workloads(path: pathlib.Path) -> None:
    """Give ``path`` and everything under it to uid/gid 1000, the workloads' non-root user (the
    test writes files into the data claim's directory as root)."""
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), 1000, 1000)
    os.chown(path, 1000, 1000)


def operator_on_real_node(
    cluster: Cluster, real_node: RealNode, namespace: str, request: pytest.FixtureRequest
) -> OperatorProcess:
    """The operator as a local process for ``namespace``, its workload pods on the real node with
    the locally built image; killed when the test ends (it must not outlive it)."""
    operator = OperatorProcess(
        cluster=cluster,
        namespace=namespace,
        env={
            "MLOPS_WORKLOAD_IMAGE": real_node.workload_image,
            "MLOPS_IMAGE_PULL_POLICY": "Never",
            "MLOPS_WORKLOAD_NODE_SELECTOR": json.dumps(realnode.REAL_NODE_SELECTOR),
            "MLOPS_WORKLOAD_TOLERATIONS": json.dumps([realnode.REAL_NODE_TOLERATION]),
        },
    ).start()
    request.addfinalizer(operator.kill)
    return operator


@dataclasses.dataclass(frozen=True)
class RealNode:
    name: str
    workload_image: str
    operator_image: str

    def schedule(self, pod_spec: dict[str, Any]) -> dict[str, Any]:
        """``pod_spec`` with the node selector and toleration that put it on the real node."""
        return {
            **pod_spec,
            "nodeSelector": {**pod_spec.get("nodeSelector", {}), **realnode.REAL_NODE_SELECTOR},
            "tolerations": [*pod_spec.get("tolerations", []), realnode.REAL_NODE_TOLERATION],
        }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            # The first test also pays for the session's node setup and cold image builds.
            item.add_marker(pytest.mark.timeout(1800))


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> RealNode:
    """The real kubelet node, Ready, with the pause, operator and workloads images imported."""
    try:
        realnode.up()  # idempotent: a few seconds when the node already runs
        realnode.import_images(["pause", "operator", "workloads"])
    except Exception as exc:
        pytest.fail(f"the real node could not start: {exc}", pytrace=False)
    wait_until(
        lambda: _node_ready(cluster, realnode.NODE_NAME), timeout=120, what=f"node {realnode.NODE_NAME} Ready"
    )
    sys.path.insert(0, str(ROOT / "tests" / "cluster" / "images"))
    import build as image_build

    version = image_build.project_version()
    return RealNode(
        name=realnode.NODE_NAME,
        workload_image=f"mlops-workloads:{version}",
        operator_image=f"mlops-operator:{version}",
    )


@pytest.fixture(scope="session")
def gpu_image(real_node: RealNode) -> str:
    """The GPU-capable workloads image (CUDA PyTorch and XGBoost, several GB), imported on first
    use only: the built-in PyTorch networks run in it, on the CPU here."""
    try:
        realnode.import_images(["workloads-gpu"])
    except Exception as exc:
        pytest.fail(f"the GPU-capable workloads image could not be built or imported: {exc}", pytrace=False)
    return real_node.workload_image.replace("mlops-workloads:", "mlops-workloads-gpu:")


def _node_ready(cluster: Cluster, name: str) -> bool:
    node = cluster.get("node", name)
    conditions = (node or {}).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture
def e2e_namespace(cluster: Cluster, real_node: RealNode) -> Iterator[str]:
    """A fresh ``e-<hex>`` namespace enforcing the ``restricted`` Pod Security profile."""
    name = f"e-{uuid.uuid4().hex[:8]}"
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
    wait_until(lambda: cluster.get("serviceaccount", "default", name), timeout=30, what="default SA")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    # A claim made by realnode.ensure_data_claim leaves a Retain volume and its directory.
    pv = realnode.data_claim_objects(name)[0]["metadata"]["name"]  # type: ignore[index]
    cluster.kubectl("delete", "pv", pv, "--wait=false", "--ignore-not-found", check=False)
    shutil.rmtree(realnode.volume_path(name), ignore_errors=True)
