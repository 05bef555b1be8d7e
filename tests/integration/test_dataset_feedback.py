"""A feedback Dataset against the real control plane (kwok nodes, the operator in-process).

The Dataset names a ModelDeployment that does not exist yet: it waits (``FeedbackSourceMissing``,
no Job). Once the deployment exists with ``spec.logging`` on a file:// store seeded with real
capture and label files, the resync creates the prepare Job, whose pod (held on the kwok
"hold" node) this test runs as the kubelet would: the real entrypoint in-process, reading the
capture root its config names through the hostPath the Job mounts. The Dataset becomes Ready
with iris and the labelled rows; a new label and a refresh request make a new version.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_dataset import HOLD, event_reasons, finish_pod, jobs_of, unique, wait_running_pod, wait_status
from test_dataset_sql import run_pod_as_kubelet

from conftest import Cluster, OperatorHandle, wait_until
from mlops_operator.api import dataset as api
from mlops_workloads import capture, labels, storage

pytestmark = pytest.mark.integration

IRIS = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
T0 = datetime.datetime(2026, 3, 1, 9, 0, tzinfo=datetime.UTC)


def seed_captures(root: storage.Store, count: int) -> None:
    """``count`` low-confidence rows of iris inputs no bundled row has, as the server writes them."""
    schema = capture.arrow_schema([(n, "float") for n in IRIS], task="classification", classes=(0, 1, 2))
    times = [T0 + datetime.timedelta(minutes=i) for i in range(count)]
    data: dict[str, list[Any]] = {
        "request_id": [f"req-{i}" for i in range(count)],
        "row": [0] * count,
        "time": times,
        "model_name": ["iris"] * count,
        "model_version": ["1"] * count,
        "model_digest": ["sha256:ab"] * count,
        "pod": ["iris-predictor-0"] * count,
        "reason": [capture.REASON_LOW_CONFIDENCE] * count,
        "low_confidence": [True] * count,
        **{n: [7.77 + i / 100 + j for i in range(count)] for j, n in enumerate(IRIS)},
        "prediction": [2] * count,
        "confidence": [0.5] * count,
        "probabilities": [[0.2, 0.3, 0.5]] * count,
        "classes": [["0", "1", "2"]] * count,
    }
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(data, schema=schema), sink)
    root.write_bytes(
        capture.file_path(T0, "iris-predictor-0-1-1-000000.parquet"), sink.getvalue().to_pybytes()
    )


def save_labels(root: storage.Store, items: list[tuple[str, str, str]], minute: int) -> None:
    when = T0 + datetime.timedelta(hours=1, minutes=minute)
    batch = [labels.Label(rid, 0, action, "ana", when, label=value or None) for rid, action, value in items]
    labels.write(root, batch, now=when)


def dataset(name: str, deployment: str, storage_dir: pathlib.Path) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {
            "sources": [{"sklearn": {"name": "iris"}}, {"feedback": {"modelDeployment": deployment}}],
            "schema": {"target": "target", "task": "classification"},
            "storage": f"file://{storage_dir}",
            "activeDeadlineSeconds": 600,
            "backoffLimit": 0,
            **HOLD,
        },
    }


def model_deployment(name: str, captures: pathlib.Path) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"storageUri": "file:///tmp/mlops-it/models/iris-v1"},
            "resources": {"cpu": "100m", "memory": "128Mi"},
            "logging": {"storageUri": f"file://{captures}", "lowConfidence": True},
        },
    }


def run_job(
    cluster: Cluster, ns: str, job: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = wait_running_pod(cluster, ns, job)
    code, message = run_pod_as_kubelet(
        cluster, ns, pod, root=tmp_path / f"pod-{job}", monkeypatch=monkeypatch
    )
    assert code == 0, message
    finish_pod(cluster, ns, pod, exit_code=code, message=message)
    return pod, json.loads(message)


def test_a_feedback_dataset_waits_for_its_deployment_then_prepares_the_labelled_rows(
    cluster: Cluster,
    namespace: str,
    operator: OperatorHandle,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, deployment = unique("fb"), unique("iris")
    captures = tmp_path / "captures"
    cluster.apply(dataset(name, deployment, tmp_path / "store"), namespace=namespace)
    status = wait_status(
        cluster,
        namespace,
        name,
        lambda s: s.get("reason") == "FeedbackSourceMissing",
        "FeedbackSourceMissing",
    )
    assert status["phase"] == "Pending"
    assert f"ModelDeployment {deployment!r} does not exist in namespace {namespace!r}" in status["message"]
    assert jobs_of(cluster, namespace, name) == []
    wait_until(
        lambda: "FeedbackSourceMissing" in event_reasons(cluster, namespace, name),
        timeout=30,
        what="the FeedbackSourceMissing Event",
    )

    root = storage.open_store(f"file://{captures}/{namespace}/{deployment}")
    seed_captures(root, 5)
    save_labels(root, [("req-0", "corrected", "1"), ("req-1", "confirmed", "2"), ("req-2", "skipped", "")], 0)
    cluster.apply(model_deployment(deployment, captures), namespace=namespace)

    # The next resync (every 60 s) finds the deployment and creates the Job.
    jobs = wait_until(
        lambda: jobs_of(cluster, namespace, name) or None,
        timeout=120,
        what="the prepare Job after the resync",
    )
    job = jobs[0]["metadata"]["name"]
    pod, result = run_job(cluster, namespace, job, tmp_path, monkeypatch)
    spec = pod["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "source-1")
    assert volume["hostPath"] == {"path": str(root.local_path()), "type": "DirectoryOrCreate"}
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "source-1")
    assert mount == {"name": "source-1", "mountPath": str(root.local_path()), "readOnly": True}
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Ready", "Ready")
    assert status["rows"]["input"] == 150 + 2 and status["digest"] == result["digest"]
    report = json.loads((tmp_path / "store" / result["digest"] / "report.json").read_text())
    assert [s["rows"] for s in report["sources"]] == [150, 2]

    # A reviewer labels another row; a refresh request re-reads the sources: a new version.
    save_labels(root, [("req-3", "corrected", "0")], 5)
    cluster.kubectl("annotate", "dataset", name, "-n", namespace, f"{api.REFRESH_ANNOTATION}=labels-1")
    second = wait_until(
        lambda: [j for j in jobs_of(cluster, namespace, name) if j["metadata"]["name"] != job] or None,
        timeout=60,
        what="the refresh round's Job",
    )
    _, again = run_job(cluster, namespace, second[0]["metadata"]["name"], tmp_path, monkeypatch)
    status = wait_status(
        cluster, namespace, name, lambda s: s.get("digest") == again["digest"], "the new version served"
    )
    assert again["digest"] != result["digest"] and status["rows"]["input"] == 153
    assert [v["digest"] for v in status["versions"]] == [again["digest"], result["digest"]]
