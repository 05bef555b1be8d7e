"""Datasets against the real control plane with kwok nodes and the operator running in-process.

Pods do not really run on kwok nodes. Prepare pods are pinned to the "hold" node (the Dataset's
nodeSelector and tolerations), where they stay Running until the test writes their outcome into
the pod status (exit code, reason, termination message) as a kubelet would; the real Job
controller then completes or fails the Job (podFailurePolicy included), and the operator
turns that into the Dataset's status.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conftest import Cluster, OperatorHandle, wait_until
from mlops_operator.api import dataset as api

pytestmark = pytest.mark.integration

HOLD = {
    "nodeSelector": {"mlops.dev/kwok-hold": "true"},
    "tolerations": [{"key": "mlops.dev/kwok-hold", "operator": "Exists", "effect": "NoSchedule"}],
}
SELECTOR = "app.kubernetes.io/component=prepare,mlops.dev/dataset={name}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def manifest(name: str, *, hold: bool = True, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sources": [{"sklearn": {"name": "iris"}}],
        "storage": f"file:///tmp/mlops-it/datasets/{name}",
        "activeDeadlineSeconds": 600,
        "backoffLimit": 1,
        **(HOLD if hold else {}),
        **spec,
    }
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": name}, "spec": body}


def result(name: str, digest: str = "5e" * 32) -> dict[str, Any]:
    return {
        "ok": True,
        "digest": digest,
        "storageUri": f"file:///tmp/mlops-it/datasets/{name}/{digest}",
        "task": "classification",
        "target": "target",
        "rows": {"input": 150, "output": 149, "dropped": 1, "train": 104, "validation": 23, "test": 22},
        "dropped": {"violations": 0, "missingTarget": 0, "duplicates": 1, "missingValues": 0},
        "duplicatesRemoved": 1,
        "columns": 4,
        "features": 4,
        "classes": 3,
        "classBalance": {"0": 50, "1": 50, "2": 49},
        "missing": {},
        "warnings": [],
        "reused": False,
    }


def status_of(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return dict((cluster.get("dataset", name, ns) or {}).get("status") or {})


def wait_status(
    cluster: Cluster, ns: str, name: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = status_of(cluster, ns, name)
        return status if check(status) else None

    return wait_until(probe, timeout=60, what=f"Dataset {name}: {what}")


def jobs_of(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    return [
        j
        for j in cluster.list("jobs", ns, selector=SELECTOR.format(name=name))
        if not j["metadata"].get("deletionTimestamp")
    ]


def wait_job(cluster: Cluster, ns: str, name: str, *, other_than: str | None = None) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        jobs = [j for j in jobs_of(cluster, ns, name) if j["metadata"]["name"] != other_than]
        return jobs[0] if len(jobs) == 1 else None

    return wait_until(probe, timeout=60, what=f"one prepare Job of Dataset {name}")


def wait_running_pod(cluster: Cluster, ns: str, job: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        for pod in cluster.list("pods", ns, selector=f"batch.kubernetes.io/job-name={job}"):
            if (pod.get("status") or {}).get("phase") == "Running":
                return pod
        return None

    return wait_until(probe, timeout=60, what=f"a Running pod of Job {job}")


def finish_pod(cluster: Cluster, ns: str, pod: dict[str, Any], *, exit_code: int, message: str) -> None:
    """Write the terminated container state into the pod status, as the kubelet would."""
    stamp = "2025-01-01T00:00:00Z"
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": message,
        "startedAt": stamp,
        "finishedAt": stamp,
    }
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": "prepare",
                "image": pod["spec"]["containers"][0]["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    cluster.kubectl(
        "patch", "pod", pod["metadata"]["name"], "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def complete(cluster: Cluster, ns: str, name: str, job: str, digest: str = "5e" * 32) -> dict[str, Any]:
    pod = wait_running_pod(cluster, ns, job)
    finish_pod(cluster, ns, pod, exit_code=0, message=json.dumps(result(name, digest)))
    return wait_status(
        cluster, ns, name, lambda s: s.get("phase") == "Ready" and s.get("digest") == digest, "Ready"
    )


def event_reasons(cluster: Cluster, ns: str, name: str) -> list[str]:
    return [
        e.get("reason", "")
        for e in cluster.list("events", ns)
        if (e.get("involvedObject") or {}).get("kind") == "Dataset"
        and e["involvedObject"].get("name") == name
    ]


def test_a_dataset_becomes_a_prepare_job(cluster: Cluster, namespace: str, operator: OperatorHandle) -> None:
    name = unique("iris")
    cluster.apply(manifest(name, resources={"cpu": "500m", "memory": "1Gi"}), namespace=namespace)
    job = wait_job(cluster, namespace, name)
    job_name = job["metadata"]["name"]
    assert job_name.startswith(f"{name}-prepare-") and len(job_name) == len(name) + len("-prepare-") + 8
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Dataset", name, True)
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (1, 600)
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [3]
    assert "ttlSecondsAfterFinished" not in spec
    pod_spec = spec["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["command"] == ["python", "-m", "mlops_workloads.prepare"]
    assert {"name": "MLOPS_CONFIG_FILE", "value": "/etc/mlops/config/config.json"} in container["env"]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"memory": "1Gi"},
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod_spec["nodeSelector"] == HOLD["nodeSelector"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["config"]["configMap"]["name"] == job_name
    assert volumes["storage"]["hostPath"]["path"] == f"/tmp/mlops-it/datasets/{name}"
    config_map = cluster.get("configmap", job_name, namespace)
    assert config_map is not None
    config = api.PrepareConfig.model_validate_json(config_map["data"]["config.json"])
    assert config.dataset == name and config.namespace == namespace
    assert config.spec.sources[0].sklearn is not None and config.spec.sources[0].sklearn.name == "iris"
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Preparing", "Preparing")
    assert status["jobName"] == job_name and status["observedGeneration"] == 1
    row = cluster.kubectl("get", "dataset", name, "-n", namespace, "--no-headers").stdout.split()
    assert row[:2] == [name, "Preparing"]
    short = cluster.kubectl("get", "dset", name, "-n", namespace, "-o", "name").stdout.strip()
    assert short == f"dataset.mlops.dev/{name}"


def test_completion_with_a_termination_message_is_ready(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    name = unique("iris")
    cluster.apply(manifest(name), namespace=namespace)
    job = wait_job(cluster, namespace, name)["metadata"]["name"]
    status = complete(cluster, namespace, name, job)
    assert status["rows"] == {
        "input": 150,
        "output": 149,
        "dropped": 1,
        "train": 104,
        "validation": 23,
        "test": 22,
    }
    assert status["dropped"]["duplicates"] == 1 and status["duplicatesRemoved"] == 1
    assert (status["columns"], status["features"], status["classes"]) == (4, 4, 3)
    assert status["digestShort"] == "5e" * 6
    assert status["storageUri"] == f"file:///tmp/mlops-it/datasets/{name}/{'5e' * 32}"
    assert status["classBalance"][0] == {"name": "0", "count": 50, "fraction": 50 / 149}
    # The stored status is exactly what the model renders: the framework's "write only when it
    # changed" comparison sees no difference on the next pass (no status churn).
    assert api.DatasetStatus.model_validate(status).to_api() == status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Prepared"
    row = cluster.kubectl("get", "dataset", name, "-n", namespace, "--no-headers").stdout.split()
    assert row[:4] == [name, "Ready", "149", "5e" * 6]
    wait_until(lambda: "Ready" in event_reasons(cluster, namespace, name), timeout=30, what="a Ready event")


def test_a_failed_pod_fails_the_dataset_with_the_reason(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    name = unique("http")
    cluster.apply(
        manifest(name, sources=[{"http": {"url": "https://example.org/d.csv", "sha256": "0" * 64}}]),
        namespace=namespace,
    )
    job = wait_job(cluster, namespace, name)["metadata"]["name"]
    pod = wait_running_pod(cluster, namespace, job)
    error = {
        "ok": False,
        "reason": "ChecksumMismatch",
        "error": "sources[0]: downloaded bytes have sha256 ab...",
    }
    finish_pod(cluster, namespace, pod, exit_code=3, message=json.dumps(error))
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Failed", "Failed")
    assert status["reason"] == "ChecksumMismatch"
    assert "downloaded bytes have sha256" in status["message"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True"

    # Exit code 3 is a data error: the podFailurePolicy failed the Job without a retry. The
    # operator acts on the Job's interim FailureTarget condition; the Job controller writes the
    # failed count and the final Failed condition a moment later, so those are waited for.
    def job_status() -> dict[str, Any]:
        return dict((cluster.get("job", job, namespace) or {}).get("status") or {})

    def failed_by_policy() -> bool:
        state = job_status()
        conditions = state.get("conditions") or []
        return state.get("failed") == 1 and any(
            c["type"] == "Failed" and c["reason"] == "PodFailurePolicy" for c in conditions
        )

    wait_until(
        failed_by_policy,
        timeout=30,
        what="the Job to be failed once, by its podFailurePolicy",
        explain=job_status,
    )
    wait_until(
        lambda: "ChecksumMismatch" in event_reasons(cluster, namespace, name),
        timeout=30,
        what="a Warning event",
    )
    # The operator keeps going: another Dataset in the namespace still prepares.
    other = unique("iris")
    cluster.apply(manifest(other), namespace=namespace)
    complete(cluster, namespace, other, wait_job(cluster, namespace, other)["metadata"]["name"])


def test_a_pod_without_a_result_fails_the_dataset(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    """On an ordinary kwok node the pod "succeeds" without a termination message: no version."""
    name = unique("plain")
    cluster.apply(manifest(name, hold=False), namespace=namespace)
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Failed", "Failed")
    assert status["reason"] == "MissingResult"


def test_a_spec_change_replaces_the_job(cluster: Cluster, namespace: str, operator: OperatorHandle) -> None:
    name = unique("iris")
    cluster.apply(manifest(name), namespace=namespace)
    first = wait_job(cluster, namespace, name)["metadata"]["name"]
    complete(cluster, namespace, name, first)
    cluster.apply(
        manifest(name, split={"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 1}), namespace=namespace
    )
    second = wait_job(cluster, namespace, name, other_than=first)["metadata"]["name"]
    assert second != first
    wait_until(
        lambda: cluster.get("configmap", first, namespace) is None, timeout=30, what="old ConfigMap gone"
    )
    status = wait_status(cluster, namespace, name, lambda s: s.get("jobName") == second, "the new Job")
    assert status["phase"] in {"Pending", "Preparing"}
    assert status["digest"] == "5e" * 32  # the last version stays usable meanwhile
    assert status["observedGeneration"] == 2
    config = json.loads((cluster.get("configmap", second, namespace) or {})["data"]["config.json"])
    assert config["spec"]["split"]["train"] == 0.8
    complete(cluster, namespace, name, second, digest="7a" * 32)
    wait_until(
        lambda: "DigestChanged" in event_reasons(cluster, namespace, name),
        timeout=30,
        what="a DigestChanged event",
    )


def test_deleting_the_dataset_removes_its_children(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    name = unique("iris")
    cluster.apply(manifest(name), namespace=namespace)
    job = wait_job(cluster, namespace, name)["metadata"]["name"]
    wait_running_pod(cluster, namespace, job)
    cluster.kubectl("delete", "dataset", name, "-n", namespace, "--wait=true", "--timeout=60s")
    selector = SELECTOR.format(name=name)
    wait_until(
        lambda: (
            not cluster.list("jobs", namespace, selector=selector)
            and not cluster.list("configmaps", namespace, selector=selector)
            and not cluster.list("pods", namespace, selector=selector)
        ),
        timeout=90,
        what="the Job, ConfigMap and pods to be garbage-collected",
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"sources": [{"synthetic": {"samples": 100, "features": 2, "classes": 5}}]},
            "at most 2^informative",
        ),
        (
            {"sources": [{"synthetic": {"samples": 100, "classes": 3, "weights": [0.5, 0.5]}}]},
            "synthetic.weights must have one entry per class",
        ),
        ({"sources": [{"synthetic": {"samples": 100, "noise": 1.5}}]}, "fraction of flipped labels"),
        ({"schema": {"columns": [{"name": "a", "type": "float", "allowed": ["x"]}]}}, "allowed applies to"),
        ({"schema": {"columns": [{"name": "a", "type": "category", "min": 1}]}}, "min and max apply to"),
        ({"features": {"selection": {}}}, "needs kBest or varianceThreshold"),
        ({"split": {"train": 1, "validation": 0, "test": 0.5}}, "spec.split: train + validation + test"),
        ({"sources": [{"file": {"uri": "/data/x.csv"}}]}, "spec.sources[0].file.uri"),
    ],
)
def test_the_apiserver_refuses_bad_specs(
    cluster: Cluster, namespace: str, change: dict[str, Any], expected: str
) -> None:
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
        input=json.dumps(manifest("bad", **change)), check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


def test_integer_split_fractions_are_accepted(cluster: Cluster, namespace: str) -> None:
    """``train: 1`` arrives as an integer; the CEL sum must still hold."""
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
        input=json.dumps(manifest("ok", split={"train": 1, "validation": 0, "test": 0})), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
