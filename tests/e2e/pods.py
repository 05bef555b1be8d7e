"""Production-shaped pod specs for the real-node tier, and readers of what the pods reported."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from conftest import Cluster, wait_until
from e2e.conftest import RealNode

T = TypeVar("T")


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(
    name: str, image: str, command: list[str], *, memory: str = "256Mi", **extra: Any
) -> dict[str, Any]:
    """A restricted container with an emptyDir at /tmp (the root filesystem is read-only)."""
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, *extra.pop("volumeMounts", [])]
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": memory}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": mounts,
        **extra,
    }


def pod_spec(node: RealNode, containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    volumes = [{"name": "tmp", "emptyDir": {}}, *extra.pop("volumes", [])]
    return node.schedule(
        {
            "restartPolicy": "Never",
            "enableServiceLinks": True,
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            "terminationGracePeriodSeconds": 5,
            "containers": containers,
            "volumes": volumes,
            **extra,
        }
    )


def terminated(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    """The first container's ``state.terminated`` once the pod has finished."""
    if not pod or pod.get("status", {}).get("phase") not in {"Succeeded", "Failed"}:
        return None
    for status in pod["status"].get("containerStatuses", []):
        term = status.get("state", {}).get("terminated")
        if term:
            return dict(term)
    return None


def describe(cluster: Cluster, namespace: str) -> str:
    """Pods and events of ``namespace``, for failure messages."""
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    return f"{pods}\n{events[-3000:]}"


def wait(
    cluster: Cluster,
    namespace: str,
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    logs: Callable[[], str] | None = None,
) -> T:
    """``wait_until`` that, on timeout, says what the namespace's pods and events looked like then."""
    try:
        return wait_until(probe, timeout=timeout, interval=0.5, what=what)
    except AssertionError as exc:
        detail = describe(cluster, namespace) + (f"\n--- logs:\n{logs()}" if logs else "")
        raise AssertionError(f"{exc}\n{detail}") from None


def get_text(url: str) -> str | None:
    """The body at ``url``, or None while it cannot be fetched."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def phase(cluster: Cluster, kind: str, name: str, namespace: str, want: str) -> dict[str, Any] | None:
    """The object once its status.phase is ``want``; a Failed one (unless wanted) fails the test."""
    obj = cluster.get(kind, name, namespace) or {}
    status = obj.get("status") or {}
    if status.get("phase") == "Failed" and want != "Failed":
        raise AssertionError(f"{kind}/{name} failed: {status.get('reason')}: {status.get('message')}")
    return obj if status.get("phase") == want else None


def post_json(
    cluster: Cluster, namespace: str, url: str, body: Any, *, timeout: float = 60
) -> dict[str, Any]:
    """POST ``body`` to ``url`` (a Service's ClusterIP) and the JSON answer, retrying while the
    connection is refused: kube-proxy's rules for a new Service (whose ClusterIP may be one a
    deleted Service had a moment ago) can trail the pod's readiness on a loaded node."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )

    def answered() -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, ConnectionError):
            return None

    return wait(cluster, namespace, answered, timeout=timeout, what=f"an answer from {url}")
