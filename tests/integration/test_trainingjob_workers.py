"""Several workers and your own code, against the real control plane: the rendezvous Service and
the Indexed Job the apiserver and the Job controller really make, rank 0's result, and the
all-or-nothing start (kwok's hold node keeps pods Running until the test finishes them)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_trainingjob import (
    finish_pod,
    ready_dataset,
    training_job,
    unique,
    wait_status,
)

from conftest import Cluster, OperatorHandle, wait_until
from mlops_operator.reconcile import trainingjob_build as tj_build

pytestmark = pytest.mark.integration

INDEX = "batch.kubernetes.io/job-completion-index"


def _running_pods(cluster: Cluster, ns: str, job: str, count: int) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        pods = cluster.list("pods", ns, selector=f"batch.kubernetes.io/job-name={job}")
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        return running if len(running) == count else None

    return wait_until(probe, timeout=90, what=f"{count} Running pods of Job {job}")


def test_two_workers_meet_at_rank_zero_and_report_once(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace)
    name = unique("ddp")
    cluster.apply(
        training_job(name, estimator="TorchMLPClassifier", params={"epochs": 3}, hold=True, workers=2),
        namespace=namespace,
    )
    job = wait_until(lambda: cluster.get("job", f"{name}-train", namespace), timeout=60, what="the Job")
    service = cluster.get("service", f"{name}-train", namespace)
    assert service is not None and service["spec"]["clusterIP"] not in (None, "", "None")
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": f"{name}-train", INDEX: "0"}
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["MASTER_ADDR"]["value"] == service["spec"]["clusterIP"]
    assert env["WORLD_SIZE"]["value"] == "2"
    assert spec["template"]["spec"]["containers"][0]["image"].startswith("mlops-workloads-gpu:")

    pods = _running_pods(cluster, namespace, f"{name}-train", 2)
    by_rank = {p["metadata"]["annotations"][INDEX]: p for p in pods}
    assert sorted(by_rank) == ["0", "1"]
    # The Job controller labels each pod with its index: rank 0 is what the Service selects.
    assert by_rank["0"]["metadata"]["labels"][INDEX] == "0"
    chief = {
        "ok": True,
        "rank": 0,
        "worldSize": 2,
        "device": "cpu",
        "epochs": 3,
        "modelUri": "file:///tmp/mlops-it/models/x",
        "metrics": {"validation": {"accuracy": 0.96}, "test": {"accuracy": 0.95}},
    }
    finish_pod(cluster, namespace, by_rank["0"], exit_code=0, reason="Completed", message=json.dumps(chief))
    finish_pod(
        cluster,
        namespace,
        by_rank["1"],
        exit_code=0,
        reason="Completed",
        message=json.dumps({"ok": True, "rank": 1, "worldSize": 2}),
    )
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert status["worldSize"] == 2 and status["epochs"] == 3 and status["device"] == "cpu"
    assert status["modelUri"] == chief["modelUri"] and status["objectiveValue"] == 0.96


def test_a_worker_that_cannot_be_scheduled_fails_the_run(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace)
    name = unique("gang")
    cluster.apply(
        training_job(
            name,
            estimator="TorchMLPClassifier",
            workers=2,
            nodeSelector={"mlops.dev/node-pool": "no-such-pool"},
            runPolicy={"schedulingTimeoutSeconds": 5},
        ),
        namespace=namespace,
    )
    status = wait_status(
        cluster,
        namespace,
        name,
        lambda s: s.get("phase") == "Failed",
        "Failed: a worker stays Unschedulable",
        timeout=60,
    )
    assert status["reason"] == "Unschedulable", status
    assert "could not be scheduled" in status["message"]
    wait_until(
        lambda: cluster.get("job", f"{name}-train", namespace) is None,
        timeout=60,
        what="the Job removed: no pod waits for good",
    )


def test_own_code_gets_its_params_and_reports_its_metric(
    cluster: Cluster, namespace: str, operator: OperatorHandle
) -> None:
    ready_dataset(cluster, namespace)
    name = unique("own")
    body = training_job(name, hold=True)
    body["spec"].pop("model")
    body["spec"]["trainer"] = {
        "image": "registry.example/team/train:1.4",
        "command": ["python", "/opt/mlops/code/train.py"],
        "params": {"epochs": 7, "optimizer": "adam"},
        "codeConfigMap": "own-code",
    }
    body["spec"]["objective"] = {"metric": "val_auc", "direction": "maximize"}
    cluster.apply(body, namespace=namespace)
    [pod] = _running_pods(cluster, namespace, f"{name}-train", 1)
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLOPS_PARAM_EPOCHS"] == "7" and env["MLOPS_PARAM_OPTIMIZER"] == "adam"
    assert container["image"] == "registry.example/team/train:1.4"
    job = cluster.get("job", f"{name}-train", namespace)
    assert job is not None
    config = json.loads(job["spec"]["template"]["metadata"]["annotations"][tj_build.CONFIG_ANNOTATION])
    assert config["trainer"] == "custom" and config["params"] == {"epochs": 7, "optimizer": "adam"}
    result = {"ok": True, "metrics": {"validation": {"val_auc": 0.91}}, "device": "cpu", "epochs": 7}
    finish_pod(cluster, namespace, pod, exit_code=0, reason="Completed", message=json.dumps(result))
    status = wait_status(cluster, namespace, name, lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert status["objectiveMetric"] == "val_auc" and status["objectiveValue"] == 0.91
    assert status["epochs"] == 7
