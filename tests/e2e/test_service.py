"""Services work on the real node: kube-proxy routes a ClusterIP to a Deployment's pods."""

from __future__ import annotations

from conftest import Cluster
from e2e import pods
from e2e.conftest import RealNode

SERVER = (
    'mkdir -p /tmp/www && printf "hello from %s" "$HOSTNAME" > /tmp/www/index.html'
    " && exec python -m http.server 8080 --bind 0.0.0.0 --directory /tmp/www"
)
CLIENT = r"""
import os, pathlib, urllib.request
url = "http://%s:%s/" % (os.environ["WEB_SERVICE_HOST"], os.environ["WEB_SERVICE_PORT"])
body = urllib.request.urlopen(url, timeout=10).read().decode()
pathlib.Path("/dev/termination-log").write_text(body)
"""


def _deployment(node: RealNode, namespace: str) -> dict[str, object]:
    server = pods.container(
        "web",
        node.workload_image,
        ["sh", "-c", SERVER],
        ports=[{"name": "http", "containerPort": 8080}],
        readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    )
    spec = pods.pod_spec(node, [server], restartPolicy="Always")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec},
        },
    }


def _service(namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def test_deployment_behind_a_service_answers_pods_and_the_host(
    cluster: Cluster, real_node: RealNode, e2e_namespace: str
) -> None:
    cluster.apply(_service(e2e_namespace))  # first, so client pods get WEB_SERVICE_* variables
    cluster.apply(_deployment(real_node, e2e_namespace))
    pods.wait(
        cluster,
        e2e_namespace,
        lambda: (
            (cluster.get("deployment", "web", e2e_namespace) or {}).get("status", {}).get("readyReplicas")
        ),
        timeout=120,
        what="deployment web ready",
    )
    [server] = cluster.list("pod", e2e_namespace, selector="app=web")
    expected = f"hello from {server['metadata']['name']}"
    cluster_ip = cluster.get("service", "web", e2e_namespace)["spec"]["clusterIP"]  # type: ignore[index]

    # From the host: kube-proxy's iptables rules DNAT the ClusterIP to the pod.
    body = pods.wait(
        cluster,
        e2e_namespace,
        lambda: pods.get_text(f"http://{cluster_ip}:80/"),
        timeout=60,
        what=f"{cluster_ip}:80 from the host",
    )
    assert body == expected

    # From another pod, through the same ClusterIP found by the Service environment variables.
    client = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": e2e_namespace},
        "spec": pods.pod_spec(
            real_node, [pods.container("client", real_node.workload_image, ["python", "-c", CLIENT])]
        ),
    }
    cluster.apply(client)
    term = pods.wait(
        cluster,
        e2e_namespace,
        lambda: pods.terminated(cluster.get("pod", "client", e2e_namespace)),
        timeout=120,
        what="the client pod to finish",
    )
    assert term["exitCode"] == 0, term
    assert term["message"] == expected
