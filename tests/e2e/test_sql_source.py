"""The PostgreSQL example for real on the kubelet node: the prepare pod reaches the cluster's
PostgreSQL (Debian's, started by ``make cluster-up``) at the node's address with the URL of the
``mlops-postgres`` Secret, reads the query's rows and prepares a version."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import realnode
import yaml

from conftest import Cluster
from e2e import install, pods
from e2e.conftest import RealNode

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _example(path: str) -> dict[str, Any]:
    [doc] = [d for d in yaml.safe_load_all((ROOT / "examples" / path).read_text()) if d]
    return dict(doc)


@pytest.fixture
def operator_ns(cluster: Cluster, real_node: RealNode, postgres: Any, e2e_namespace: str) -> str:
    realnode.ensure_data_claim(e2e_namespace)
    install.helm_install(cluster, real_node, e2e_namespace)
    secret = cluster.get("secret", "mlops-postgres", "default")
    assert secret is not None, "make cluster-up applies default/mlops-postgres"
    copy = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mlops-postgres"},
        "data": secret["data"],
    }
    cluster.apply(copy, e2e_namespace)
    return e2e_namespace


def test_postgres_example_prepares_on_the_real_node(cluster: Cluster, operator_ns: str) -> None:
    ns = operator_ns
    dataset = _example("datasets/postgres-query.yaml")
    cluster.apply(dataset, ns)
    name = dataset["metadata"]["name"]
    ready = pods.wait(
        cluster,
        ns,
        lambda: pods.phase(cluster, "dataset", name, ns, "Ready"),
        timeout=300,
        what="the Dataset read from PostgreSQL",
        logs=lambda: (
            cluster.kubectl(
                "logs", "-n", ns, "-l", "app.kubernetes.io/component=prepare", "--tail=40", check=False
            ).stdout
        ),
    )["status"]
    assert ready["rows"]["input"] == 569 and ready["task"] == "classification", ready
