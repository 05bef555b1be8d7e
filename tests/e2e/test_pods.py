"""Pods really run on the real node: their results, storage and failures reach the API."""

from __future__ import annotations

import hashlib
import json
import uuid

from conftest import Cluster
from e2e import pods
from e2e.conftest import RealNode
from mlops_operator.reconcile import jobs as rjobs

TRAIN_SCRIPT = r"""
import json, os, pathlib, sys
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
import skops.io as sio

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
model = LogisticRegression(max_iter=500).fit(X_train, y_train)
accuracy = float(model.score(X_test, y_test))
out = pathlib.Path(os.environ["OUTPUT_DIR"])
out.mkdir(parents=True, exist_ok=True)
sio.dump(model, out / "model.skops")
result = {"accuracy": accuracy, "sklearn": sklearn.__version__, "python": sys.version.split()[0],
          "uid": os.getuid(), "model_bytes": (out / "model.skops").stat().st_size}
print(json.dumps(result))
pathlib.Path("/dev/termination-log").write_text(json.dumps(result))
"""


def test_pod_computes_and_reports_through_its_termination_message(
    cluster: Cluster, real_node: RealNode, e2e_namespace: str
) -> None:
    """The container's process ran: it hashed a random token and the digest reached the pod status."""
    token = uuid.uuid4().hex
    script = 'printf %s "$TOKEN" | sha256sum | cut -d" " -f1 | tr -d "\\n" > /dev/termination-log'
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hasher", "namespace": e2e_namespace},
        "spec": pods.pod_spec(
            real_node,
            [
                pods.container(
                    "hasher",
                    real_node.workload_image,
                    ["sh", "-c", script],
                    env=[{"name": "TOKEN", "value": token}],
                )
            ],
        ),
    }
    cluster.apply(pod)
    term = pods.wait(
        cluster,
        e2e_namespace,
        lambda: pods.terminated(cluster.get("pod", "hasher", e2e_namespace)),
        timeout=120,
        what="pod hasher to finish",
    )
    assert term["exitCode"] == 0, term
    assert term["reason"] == "Completed"
    assert term["message"] == hashlib.sha256(token.encode()).hexdigest()
    status = cluster.get("pod", "hasher", e2e_namespace)["status"]  # type: ignore[index]
    assert status["podIP"].startswith("10.244.1."), status.get("podIP")
    assert cluster.get("pod", "hasher", e2e_namespace)["spec"]["nodeName"] == real_node.name  # type: ignore[index]


def test_job_trains_a_scikit_learn_model_into_a_persistent_volume(
    cluster: Cluster, real_node: RealNode, e2e_namespace: str
) -> None:
    """A batch/v1 Job fits a model in the workloads image, as uid 1000 on a read-only root
    filesystem, saves it with skops to the ``mlops-data`` claim, and reports its score."""
    import realnode

    volume = realnode.ensure_data_claim(e2e_namespace)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train-iris", "namespace": e2e_namespace},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 300,
            "template": {
                "spec": pods.pod_spec(
                    real_node,
                    [
                        pods.container(
                            "train",
                            real_node.workload_image,
                            ["python", "-c", TRAIN_SCRIPT],
                            memory="512Mi",
                            env=[{"name": "OUTPUT_DIR", "value": "/mnt/data/models/iris"}],
                            volumeMounts=[{"name": "data", "mountPath": "/mnt/data"}],
                        )
                    ],
                    volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": realnode.DATA_CLAIM}}],
                )
            },
        },
    }
    cluster.apply(job)

    def outcome() -> rjobs.JobOutcome | None:
        current = cluster.get("job", "train-iris", e2e_namespace)
        found = cluster.list("pod", e2e_namespace, selector="job-name=train-iris")
        result = rjobs.job_outcome(current, found)
        return result if result.state in {"Succeeded", "Failed"} else None

    result = pods.wait(cluster, e2e_namespace, outcome, timeout=240, what="the training Job to finish")
    assert result.state == "Succeeded", (result, pods.describe(cluster, e2e_namespace))
    assert result.result is not None
    assert result.result["accuracy"] > 0.8
    assert result.result["uid"] == 1000
    assert result.result["sklearn"].startswith("1.")
    model = volume / "models" / "iris" / "model.skops"
    assert model.stat().st_size == result.result["model_bytes"] > 0
    assert model.stat().st_uid == 1000


def test_memory_hog_is_reported_oomkilled(cluster: Cluster, real_node: RealNode, e2e_namespace: str) -> None:
    """The kernel kills a container past its memory limit; the kubelet reports OOMKilled and the
    operator's Job outcome names it."""
    hog = "import time; blocks = [b'x' * (16 << 20) for _ in range(64)]; time.sleep(30)"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hog", "namespace": e2e_namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": pods.pod_spec(
                    real_node,
                    [pods.container("hog", real_node.workload_image, ["python", "-c", hog], memory="96Mi")],
                )
            },
        },
    }
    cluster.apply(job)

    def failed() -> rjobs.JobOutcome | None:
        current = cluster.get("job", "hog", e2e_namespace)
        found = cluster.list("pod", e2e_namespace, selector="job-name=hog")
        result = rjobs.job_outcome(current, found)
        return result if result.state in {"Succeeded", "Failed"} else None

    result = pods.wait(cluster, e2e_namespace, failed, timeout=180, what="the Job to fail")
    assert result.state == "Failed"
    assert result.reason == "OOMKilled", (result, pods.describe(cluster, e2e_namespace))
    [pod] = cluster.list("pod", e2e_namespace, selector="job-name=hog")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled"
    assert term["exitCode"] == 137
    assert json.dumps(pod["spec"]["containers"][0]["resources"]["limits"]) == '{"memory": "96Mi"}'
