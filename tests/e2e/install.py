"""Installing the operator by its Helm chart for the real-node tests."""

from __future__ import annotations

import json
import pathlib
import subprocess

import realnode

from conftest import Cluster
from e2e.conftest import RealNode

ROOT = pathlib.Path(__file__).resolve().parents[2]


def helm_install(cluster: Cluster, node: RealNode, namespace: str) -> None:
    """The operator by its chart, watching only its release namespace, on the real node with
    the locally built images (never pulled)."""
    selector = json.dumps(realnode.REAL_NODE_SELECTOR)
    tolerations = json.dumps([realnode.REAL_NODE_TOLERATION])
    version = node.operator_image.rsplit(":", 1)[1]
    proc = subprocess.run(
        [
            str(cluster.bin_dir / "helm"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "upgrade",
            "--install",
            f"mlops-{namespace}",
            str(ROOT / "charts" / "mlops-operator"),
            "--namespace",
            namespace,
            "--skip-crds",
            "--wait",
            "--timeout",
            "240s",
            "--set",
            "watch.scope=release",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
            "--set",
            f"image.tag={version}",
            "--set",
            "image.pullPolicy=Never",
            "--set",
            f"workloads.image.tag={version}",
            "--set",
            "workloads.image.pullPolicy=Never",
            "--set",
            f"workloads.gpuImage.tag={version}",
            "--set-json",
            f"nodeSelector={selector}",
            "--set-json",
            f"tolerations={tolerations}",
            "--set-json",
            f"workloads.nodeSelector={selector}",
            "--set-json",
            f"workloads.tolerations={tolerations}",
            "--set",
            "resources.requests.cpu=50m",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
