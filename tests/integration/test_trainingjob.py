"""TrainingJobs against the real control plane with kwok nodes and the operator running in-process.

kwok's CPU and GPU nodes run Job pods to success on their own; pods pinned to the "hold" node
stay Running until a test writes their outcome into the pod status (exit code, reason,
termination message), as a kubelet would. The Dataset is marked Ready by writing its status
(the prepare workload is the Dataset's business, tested on its own).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conftest import Cluster, OperatorHandle, wait_until

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "ab" * 32
STORAGE = f"file:///tmp/mlops-it/datasets/iris/{DIGEST[7:19]}"
HOLD_SELECTOR = {"mlops.dev/kwok-hold": "true"}
HOLD_TOLERATION = {"key": "mlops.dev/kwok-hold", "operator": "Exists", "effect": "NoSchedule"}


def ready_dataset(cluster: Cluster, ns: str, name: str = "iris", *, ready: bool = True) -> None:
    """A Dataset whose prepare pod runs on the hold node; ``mark_ready`` reports its result."""
    cluster.apply(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": name},
            "spec": {
                "storage": "file:///tmp/mlops-it/datasets/iris",
                "sources": [{"sklearn": {"name": "iris"}}],
                "nodeSelector": HOLD_SELECTOR,
                "tolerations": [HOLD_TOLERATION],
            },
        },
        namespace=ns,
    )
    if ready:
        mark_ready(cluster, ns, name)


def mark_ready(cluster: Cluster, ns: str, name: str = "iris") -> None:
    """Finish the Dataset's prepare pod with a result, as the prepare workload would, and wait for Ready."""

    def running_pod() -> dict[str, Any] | None:
        for pod in cluster.list("pods", ns, selector=f"mlops.dev/dataset={name}"):
            if (pod.get("status") or {}).get("phase") == "Running":
                return pod
        return None

    pod = wait_until(running_pod, timeout=60, what=f"the prepare pod of Dataset {name}")
    result = {
        "ok": True,
        "digest": DIGEST,
        "storageUri": STORAGE,
        "task": "classification",
        "target": "target",
        "rows": {"input": 150, "output": 150, "train": 90, "validation": 30, "test": 30},
        "columns": 4,
        "classes": 3,
    }
    finish_pod(cluster, ns, pod, exit_code=0, reason="Completed", message=json.dumps(result), container=None)
    wait_until(
        lambda: ((cluster.get("dataset", name, ns) or {}).get("status") or {}).get("phase") == "Ready",
        timeout=60,
        what=f"Dataset {name} Ready",
    )


def training_job(
    name: str,
    *,
    estimator: str = "LogisticRegression",
    params: dict[str, Any] | None = None,
    hold: bool = False,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "datasetRef": {"name": "iris"},
        "model": {"estimator": estimator, "params": params or {}},
        **spec,
    }
    if hold:
        body["nodeSelector"] = {**HOLD_SELECTOR, **body.get("nodeSelector", {})}
        body["tolerations"] = [HOLD_TOLERATION, *body.get("tolerations", [])]
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob", "metadata": meta, "spec": body}


def tj_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    obj = cluster.get("trainingjob", name, ns) or {}
    return dict(obj.get("status") or {})


def wait_status(
    cluster: Cluster,
    ns: str,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    *,
    timeout: float = 60,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = tj_status(cluster, ns, name)
        return status if check(status) else None

    return wait_until(
        probe,
        timeout=timeout,
        what=f"TrainingJob {name}: {what}",
        explain=lambda: tj_status(cluster, ns, name),
    )


def wait_pod(
    cluster: Cluster, ns: str, job: str, phase: str = "Running", *, exclude: set[str] | None = None
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        for pod in cluster.list("pods", ns, selector=f"batch.kubernetes.io/job-name={job}"):
            name = pod["metadata"]["name"]
            if (pod.get("status") or {}).get("phase") == phase and name not in (exclude or set()):
                return pod
        return None

    return wait_until(probe, timeout=60, what=f"a {phase} pod of Job {job}")


def finish_pod(
    cluster: Cluster,
    ns: str,
    pod: dict[str, Any],
    *,
    exit_code: int,
    reason: str,
    message: str = "",
    container: str | None = "train",
) -> None:
    """Write a terminated container state into the pod status, as the kubelet would."""
    now = "2025-01-01T00:00:00Z"
    terminated = {"exitCode": exit_code, "reason": reason, "startedAt": now, "finishedAt": now}
    if message:
        terminated["message"] = message
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": container or pod["spec"]["containers"][0]["name"],
                "image": pod["spec"]["containers"][0]["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    cluster.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def events_for(cluster: Cluster, ns: str, name: str) -> list[str]:
    items = cluster.list("events", ns)
    return [e.get("reason", "") for e in items if (e.get("involvedObject") or {}).get("name") == name]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def test_gpu_job_is_built_and_scheduled_on_a_gpu_node(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace)
    name = unique("xgb")
    cluster.apply(
        training_job(
            name,
            estimator="XGBClassifier",
            params={"n_estimators": 10},
            resources={"cpu": "2", "memory": "4Gi", "gpu": 1},
            nodeSelector={"mlops.dev/node-pool": "gpu"},
            tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        ),
        namespace=namespace,
    )
    job = wait_until(lambda: cluster.get("job", f"{name}-train", namespace), timeout=60, what="the Job")
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("TrainingJob", name, True)
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["limits"] == {"memory": "4Gi", "nvidia.com/gpu": "1"}
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.present": "true", "mlops.dev/node-pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod_spec[
        "tolerations"
    ]
    assert container["securityContext"]["runAsNonRoot"] is True
    # The config travels in the pod template (read by the pod as a downwardAPI file), not a ConfigMap.
    config = json.loads(job["spec"]["template"]["metadata"]["annotations"]["mlops.dev/config"])
    assert config["gpuParams"] == {"device": "cuda", "tree_method": "hist"}
    assert config["datasetUri"] == STORAGE
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["config"]["downwardAPI"]["items"] == [
        {
            "path": "config.json",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations['mlops.dev/config']"},
        }
    ]
    assert {"name": "MLOPS_CONFIG_FILE", "value": "/etc/mlops/config/config.json"} in container["env"]
    # kwok runs the pod on a GPU node and completes it (no termination message: NoResult).
    pod = wait_until(
        lambda: next(
            iter(cluster.list("pods", namespace, selector=f"batch.kubernetes.io/job-name={name}-train")), None
        ),
        timeout=60,
        what="the pod",
    )
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    pod = cluster.get("pod", pod["metadata"]["name"], namespace) or pod
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-")
    assert status["datasetDigest"] == DIGEST and status["reason"] == "NoResult"
    assert status["podStartTime"] and status["durationSeconds"] >= 0
    # No TTL here, so nothing would have deleted a ConfigMap: none was ever created for the run.
    assert cluster.get("configmap", f"{name}-train", namespace) is None
    assert cluster.list("configmaps", namespace, selector=f"mlops.dev/trainingjob={name}") == []
    assert "mlops_operator_trainingjob_pod_start_seconds_count" in operator.metrics()


def test_gpu_job_without_a_free_gpu_is_unschedulable(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace)
    name = unique("big")
    cluster.apply(
        training_job(name, estimator="XGBClassifier", resources={"gpu": 8}),
        namespace=namespace,
    )
    status = wait_status(
        cluster, namespace, name, lambda s: s.get("reason") == "Unschedulable", "Unschedulable"
    )
    assert status["phase"] == "Pending"
    assert "nvidia.com/gpu" in status["message"]
    wait_until(
        lambda: "Unschedulable" in events_for(cluster, namespace, name),
        timeout=30,
        what="an Unschedulable event",
    )


def test_success_with_a_result_message(cluster: Cluster, namespace: str, operator: OperatorHandle) -> None:
    ready_dataset(cluster, namespace)
    name = unique("ok")
    cluster.apply(training_job(name, hold=True, metrics=["accuracy", "f1"]), namespace=namespace)
    pod = wait_pod(cluster, namespace, f"{name}-train")
    wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Running", "Running")
    result = {
        "ok": True,
        "modelUri": f"file:///tmp/mlops-it/datasets/models/{namespace}/{name}/0123456789abcdef",
        "modelVersion": "0123456789abcdef",
        "datasetDigest": DIGEST,
        "metrics": {"validation": {"accuracy": 0.96, "f1": 0.95}, "test": {"accuracy": 0.93, "f1": 0.92}},
        "objectiveValue": 0.9565217391304348,
        "fitSeconds": 0.4,
        "modelSizeBytes": 4321,
    }
    finish_pod(cluster, namespace, pod, exit_code=0, reason="Completed", message=json.dumps(result))
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert status["objectiveValue"] == 0.9565217391304348 and status["objectiveMetric"] == "accuracy"
    assert status["modelVersion"] == "0123456789abcdef" and status["modelUri"].endswith("/0123456789abcdef")
    assert status["metrics"]["f1"] == {"validation": 0.95, "test": 0.92}
    assert status["modelUri"] == result["modelUri"] and status["modelSizeBytes"] == 4321
    assert status["attempts"] == 1
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "Running": "False",
        "Succeeded": "True",
        "Failed": "False",
        "Suspended": "False",
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }
    printed = cluster.kubectl("get", "tj", name, "-n", namespace).stdout
    assert "Succeeded" in printed and "LogisticRegression" in printed
    # Readable columns: 4 significant digits and a duration with its unit (kubectl's style).
    row = dict(zip(printed.split("\n")[0].split(), printed.split("\n")[1].split(), strict=False))
    assert row["OBJECTIVE"] == "0.9565", printed
    assert re.fullmatch(r"\d+s|\d+m(\d+s)?", row["DURATION"]), printed
    wait_until(
        lambda: {"JobCreated", "Running", "Succeeded"} <= set(events_for(cluster, namespace, name)),
        timeout=30,
        what="the transition events",
    )


@pytest.mark.parametrize(
    ("case", "spec", "outcomes", "reason"),
    [
        ("oom", {"runPolicy": {"backoffLimit": 0}}, [(137, "OOMKilled", "")], "OOMKilled"),
        (
            "backoff",
            {"runPolicy": {"backoffLimit": 1}},
            [(1, "Error", "Traceback (most recent call last): boom")] * 2,
            "Error",
        ),
        (
            "permanent",
            {"runPolicy": {"backoffLimit": 3}},
            [
                (
                    3,
                    "Error",
                    json.dumps({"ok": False, "reason": "TaskMismatch", "error": "Ridge is a regressor"}),
                )
            ],
            "TaskMismatch",
        ),
        ("deadline", {"runPolicy": {"backoffLimit": 0, "activeDeadlineSeconds": 2}}, [], "DeadlineExceeded"),
    ],
)
def test_simulated_failures_map_to_their_reason(  # noqa: PLR0917 - pytest passes fixtures positionally
    cluster: Cluster,
    namespace: str,
    operator: OperatorHandle,
    case: str,
    spec: dict[str, Any],
    outcomes: list[tuple[int, str, str]],
    reason: str,
) -> None:
    ready_dataset(cluster, namespace)
    name = unique(case)
    cluster.apply(training_job(name, hold=True, **spec), namespace=namespace)
    seen: set[str] = set()
    for exit_code, term_reason, message in outcomes:
        pod = wait_pod(cluster, namespace, f"{name}-train", exclude=seen)
        seen.add(pod["metadata"]["name"])
        finish_pod(cluster, namespace, pod, exit_code=exit_code, reason=term_reason, message=message)
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Failed", "Failed")
    assert status["reason"] == reason, status
    if case == "backoff":
        assert "backoff limit reached" in status["message"] and status["attempts"] == 2
    if case == "permanent":
        assert status["message"] == "Ridge is a regressor" and status["attempts"] == 1
    assert status["completionTime"]
    wait_until(lambda: reason in events_for(cluster, namespace, name), timeout=30, what=f"a {reason} event")


def test_ttl_removes_children_and_keeps_results(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace)
    name = unique("ttl")
    cluster.apply(training_job(name, runPolicy={"ttlSecondsAfterFinished": 0}), namespace=namespace)
    status = wait_status(
        cluster, namespace, name, lambda s: bool(s.get("childrenDeleted")), "children deleted"
    )
    assert status["phase"] == "Succeeded" and status["datasetDigest"] == DIGEST
    wait_until(lambda: cluster.get("job", f"{name}-train", namespace) is None, timeout=30, what="Job deleted")
    # The run never had a ConfigMap (its config was in the Job's pod template).
    assert cluster.list("configmaps", namespace, selector=f"mlops.dev/trainingjob={name}") == []
    # The resource and its results stay; nothing is re-created on later passes.
    cluster.kubectl("annotate", "tj", name, "-n", namespace, "poke=1")
    wait_until(
        lambda: "ChildrenDeleted" in events_for(cluster, namespace, name),
        timeout=30,
        what="the ChildrenDeleted event",
    )
    assert cluster.get("job", f"{name}-train", namespace) is None
    assert tj_status(cluster, namespace, name)["phase"] == "Succeeded"


def test_suspend_and_resume(cluster: Cluster, namespace: str, operator: OperatorHandle) -> None:
    ready_dataset(cluster, namespace)
    name = unique("susp")
    manifest = training_job(name, hold=True, runPolicy={"suspend": True})
    cluster.apply(manifest, namespace=namespace)
    wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Suspended", "Suspended")
    job = cluster.get("job", f"{name}-train", namespace)
    assert job is not None and job["spec"]["suspend"] is True
    assert cluster.list("pods", namespace, selector=f"batch.kubernetes.io/job-name={name}-train") == []

    manifest["spec"]["runPolicy"]["suspend"] = False
    cluster.apply(manifest, namespace=namespace)
    wait_pod(cluster, namespace, f"{name}-train")
    wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Running", "Running")

    manifest["spec"]["runPolicy"]["suspend"] = True
    cluster.apply(manifest, namespace=namespace)
    wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Suspended", "Suspended again")
    wait_until(
        lambda: (cluster.get("job", f"{name}-train", namespace) or {}).get("spec", {}).get("suspend"),
        timeout=30,
        what="the Job suspended",
    )
    wait_until(
        lambda: {"Suspended", "Resumed"} <= set(events_for(cluster, namespace, name)),
        timeout=30,
        what="Suspended and Resumed events",
    )


def test_kueue_labelled_job_is_created_suspended(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace)
    name = unique("kq")
    cluster.apply(
        training_job(name, hold=True, labels={"kueue.x-k8s.io/queue-name": "team-a"}), namespace=namespace
    )
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Queued", "Queued")
    assert "team-a" in status["message"]
    job = cluster.get("job", f"{name}-train", namespace)
    assert job is not None and job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    # Kueue admits the workload by un-suspending the Job; the operator follows, never re-suspends.
    cluster.kubectl(
        "patch",
        "job",
        f"{name}-train",
        "-n",
        namespace,
        "--type=merge",
        "--field-manager=kueue-admission",
        "-p",
        json.dumps({"spec": {"suspend": False}}),
    )
    wait_pod(cluster, namespace, f"{name}-train")
    wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Running", "Running after admission")
    assert cluster.get("job", f"{name}-train", namespace)["spec"]["suspend"] is False


def test_waits_for_the_dataset_and_refuses_bad_params(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace, ready=False)
    name = unique("wait")
    cluster.apply(training_job(name), namespace=namespace)
    status = wait_status(
        cluster, namespace, name, lambda s: s.get("phase") == "WaitingForData", "WaitingForData"
    )
    assert cluster.get("job", f"{name}-train", namespace) is None
    mark_ready(cluster, namespace)
    wait_until(
        lambda: cluster.get("job", f"{name}-train", namespace),
        timeout=30,
        what="the Job once the Dataset is Ready",
    )

    bad = unique("bad")
    cluster.apply(
        training_job(bad, estimator="RandomForestClassifier", params={"n_estimators": -3, "foo": 1}),
        namespace=namespace,
    )
    status = wait_status(cluster, namespace, bad, lambda s: s.get("phase") == "Failed", "Failed")
    assert status["reason"] == "InvalidSpec"
    assert "model.params.n_estimators: must be an int >= 1, got -3" in status["message"]
    assert "unknown parameter 'foo' for RandomForestClassifier" in status["message"]
    assert cluster.get("job", f"{bad}-train", namespace) is None


def test_immutable_fields_cannot_change_while_running(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace)
    name = unique("imm")
    manifest = training_job(name, hold=True, params={"C": 1.0})
    cluster.apply(manifest, namespace=namespace)
    wait_pod(cluster, namespace, f"{name}-train")
    wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Running", "Running")
    changed = json.loads(json.dumps(manifest))
    changed["spec"]["model"]["params"]["C"] = 2.0
    proc = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=pytest",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(changed),
        check=False,
    )
    assert proc.returncode != 0
    assert "spec.model cannot change while the TrainingJob is Running" in proc.stderr
    allowed = json.loads(json.dumps(manifest))
    allowed["spec"]["runPolicy"] = {"ttlSecondsAfterFinished": 600}
    cluster.apply(allowed, namespace=namespace)
