"""A Dataset that refreshes on a schedule, keeps its versions, and TrainingJobs that pin one.

The operator runs in-process against the real control plane with kwok nodes. Prepare pods are
held on the "hold" node; for each prepare Job the test runs the REAL prepare workload
in-process with the config from the Job's ConfigMap (the CSV source and the storage are local
directories), then writes its result into the pod as the kubelet would, so the digests, the
version directories and the retention are the workload's own. TrainingJob pods are held too:
what matters here is the version each run pins when it starts, not the training.
"""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from typing import Any

import pytest
from test_dataset import finish_pod, wait_running_pod

from conftest import Cluster, OperatorHandle, wait_until
from mlops_operator.api import dataset as api
from mlops_operator.reconcile import trainingjob_build as tj_build
from mlops_workloads import runtime
from mlops_workloads.prepare import pipeline

pytestmark = pytest.mark.integration

HOLD = {
    "nodeSelector": {"mlops.dev/kwok-hold": "true"},
    "tolerations": [{"key": "mlops.dev/kwok-hold", "operator": "Exists", "effect": "NoSchedule"}],
}
SELECTOR = "app.kubernetes.io/component=prepare,mlops.dev/dataset={name}"


def rows(start: int, count: int) -> str:
    return "".join(
        f"{i},{(i * 7) % 13 / 13:.4f},{(i * 3) % 11},{'yes' if i % 3 else 'no'}\n"
        for i in range(start, start + count)
    )


def dataset_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return dict((cluster.get("dataset", name, ns) or {}).get("status") or {})


def tj_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return dict((cluster.get("trainingjob", name, ns) or {}).get("status") or {})


def wait_dataset(
    cluster: Cluster, ns: str, name: str, check: Any, what: str, *, timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = dataset_status(cluster, ns, name)
        return status if check(status) else None

    return wait_until(
        probe,
        timeout=timeout,
        what=f"Dataset {name}: {what}",
        explain=lambda: dataset_status(cluster, ns, name),
    )


def wait_job(cluster: Cluster, ns: str, name: str, job: str, timeout: float = 60) -> None:
    def probe() -> bool:
        return any(
            j["metadata"]["name"] == job
            for j in cluster.list("jobs", ns, selector=SELECTOR.format(name=name))
        )

    wait_until(
        probe, timeout=timeout, what=f"prepare Job {job}", explain=lambda: dataset_status(cluster, ns, name)
    )


def prepare_in_process(cluster: Cluster, ns: str, job: str, scratch: pathlib.Path) -> dict[str, Any]:
    """Run the real prepare workload with the Job's config and report its result from the pod."""
    pod = wait_running_pod(cluster, ns, job)
    configmap = cluster.get("configmap", job, ns)
    assert configmap is not None, f"the ConfigMap of Job {job}"
    config = api.PrepareConfig.model_validate_json(configmap["data"]["config.json"])
    summary = pipeline.prepare(config, scratch_dir=str(scratch))
    finish_pod(cluster, ns, pod, exit_code=0, message=runtime.compact({"ok": True, **summary}))
    return summary


def training_job(name: str, dataset: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "datasetRef": {"name": dataset},
            "model": {"estimator": "LogisticRegression"},
            **HOLD,
        },
    }


def pinned(cluster: Cluster, ns: str, tj: str) -> tuple[str, str]:
    """(status.datasetDigest, the datasetUri of the run's config) of a started TrainingJob."""
    status = wait_until(
        lambda: (s := tj_status(cluster, ns, tj)).get("datasetDigest") and s.get("jobName") and s,
        timeout=60,
        what=f"TrainingJob {tj} to start on a Dataset version",
        explain=lambda: tj_status(cluster, ns, tj),
    )
    job = cluster.get("job", status["jobName"], ns)
    assert job is not None
    # The run's config travels in its pod template (no ConfigMap per run).
    config = json.loads(job["spec"]["template"]["metadata"]["annotations"][tj_build.CONFIG_ANNOTATION])
    assert config["datasetDigest"] == status["datasetDigest"]
    return str(status["datasetDigest"]), str(config["datasetUri"])


def dataset_manifest(name: str, source: pathlib.Path, storage: pathlib.Path, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {
            "sources": [{"file": {"uri": f"file://{source}"}}],
            "schema": {"target": "label", "exclude": ["id"]},
            "storage": f"file://{storage}",
            "backoffLimit": 0,
            **HOLD,
            **spec,
        },
    }


def test_a_scheduled_refresh_makes_a_new_version_that_new_training_jobs_use(
    cluster: Cluster, namespace: str, operator: OperatorHandle, tmp_path: pathlib.Path
) -> None:
    name = f"sales-{uuid.uuid4().hex[:5]}"
    source = tmp_path / "rows.csv"
    source.write_text("id,x1,x2,label\n" + rows(0, 60))
    storage = tmp_path / "versions"
    manifest = dataset_manifest(
        name, source, storage, refresh={"schedule": "* * * * *"}, retention={"keepVersions": 3}
    )
    # Round 0 and the new rows must both fall before the schedule's next minute: a round 1
    # that starts while round 0 is being checked would read the rows before they arrive.
    into_minute = time.time() % 60
    if into_minute > 20:
        time.sleep(61 - into_minute)
    cluster.apply(manifest, namespace=namespace)

    # Round 0: the first version.
    first_job = wait_dataset(cluster, namespace, name, lambda s: s.get("jobName"), "a prepare Job")["jobName"]
    first = prepare_in_process(cluster, namespace, first_job, tmp_path)
    status = wait_dataset(
        cluster,
        namespace,
        name,
        lambda s: s.get("phase") == "Ready" and s.get("versions") and s.get("nextCheck"),
        "the first version, the next check scheduled",
    )
    assert status["digest"] == first["digest"] and [v["digest"] for v in status["versions"]] == [
        first["digest"]
    ]
    assert status["versions"][0]["rows"]["output"] == 60
    assert status.get("nextCheck") and status.get("lastChecked")
    assert (storage / first["digest"] / "manifest.json").is_file()

    # TrainingJob A starts on the first version.
    cluster.apply(training_job("fit-a", name), namespace=namespace)
    digest_a, uri_a = pinned(cluster, namespace, "fit-a")
    assert digest_a == first["digest"] and uri_a == f"file://{storage}/{first['digest']}"

    # New rows arrive; the next minute of the schedule reads them: round 1, a second version.
    with source.open("a") as out:
        out.write(rows(60, 30))
    second_job = f"{first_job}-1"
    wait_job(cluster, namespace, name, second_job, timeout=90)
    # Made on the minute (the handler's wake-up), not whenever the next 60 s resync comes round.
    created = (cluster.get("job", second_job, namespace) or {})["metadata"]["creationTimestamp"]
    assert int(created[17:19]) < 10, created
    during = dataset_status(cluster, namespace, name)
    assert during["phase"] == "Ready" and during["digest"] == first["digest"]  # still served meanwhile
    second = prepare_in_process(cluster, namespace, second_job, tmp_path)
    assert second["digest"] != first["digest"] and second["deleted"] == []
    status = wait_dataset(
        cluster, namespace, name, lambda s: len(s.get("versions") or []) == 2, "a second version"
    )
    assert [v["digest"] for v in status["versions"]] == [second["digest"], first["digest"]]  # newest first
    assert status["digest"] == second["digest"] and status["versions"][0]["rows"]["output"] == 90
    assert status["refreshRound"] == 1 and status["jobName"] == second_job
    wait_until(
        lambda: cluster.get("job", first_job, namespace) is None,
        timeout=30,
        what="round 0's Job deleted once round 1 finished",
    )

    # TrainingJob B, created afterwards, trains on the new version; A keeps its pinned one.
    cluster.apply(training_job("fit-b", name), namespace=namespace)
    digest_b, uri_b = pinned(cluster, namespace, "fit-b")
    assert digest_b == second["digest"] and uri_b == f"file://{storage}/{second['digest']}"
    assert pinned(cluster, namespace, "fit-a") == (digest_a, uri_a)
    assert tj_status(cluster, namespace, "fit-b")["datasetDigestShort"] == second["digest"][:12]
    row = cluster.kubectl("get", "tj", "fit-a", "-n", namespace, "--no-headers").stdout.split()
    assert first["digest"][:12] in row  # the Data column

    reasons = [
        e.get("reason")
        for e in cluster.list("events", namespace)
        if (e.get("involvedObject") or {}).get("name") == name
    ]
    assert "NewVersion" in reasons


def test_the_refresh_annotation_rereads_at_once_and_unchanged_data_only_moves_last_checked(
    cluster: Cluster, namespace: str, operator: OperatorHandle, tmp_path: pathlib.Path
) -> None:
    name = f"plain-{uuid.uuid4().hex[:5]}"
    source = tmp_path / "rows.csv"
    source.write_text("id,x1,x2,label\n" + rows(0, 40))
    cluster.apply(dataset_manifest(name, source, tmp_path / "versions"), namespace=namespace)
    first_job = wait_dataset(cluster, namespace, name, lambda s: s.get("jobName"), "a prepare Job")["jobName"]
    first = prepare_in_process(cluster, namespace, first_job, tmp_path)
    status = wait_dataset(cluster, namespace, name, lambda s: s.get("versions"), "the first version")
    assert "nextCheck" not in status  # no schedule
    checked = status["lastChecked"]

    # Well within one resync (60 s): the annotation itself wakes the operator.
    cluster.kubectl("annotate", "dataset", name, "-n", namespace, f"{api.REFRESH_ANNOTATION}=check-1")
    status = wait_dataset(
        cluster,
        namespace,
        name,
        lambda s: s.get("lastRefreshRequest") == "check-1",
        "the requested round",
        timeout=20,
    )
    second_job = f"{first_job}-1"
    assert status["jobName"] == second_job and status["refreshRound"] == 1
    assert (status["phase"], status["reason"]) == ("Ready", "Refreshing")  # the version is still served
    second = prepare_in_process(cluster, namespace, second_job, tmp_path)
    assert second["digest"] == first["digest"] and second["reused"] is True
    status = wait_dataset(
        cluster, namespace, name, lambda s: s.get("reason") == "Unchanged", "the unchanged round"
    )
    assert [v["digest"] for v in status["versions"]] == [first["digest"]]
    assert status["lastChecked"] > checked and status["digest"] == first["digest"]
    assert status["versions"][0]["job"] == first_job  # the version is the one round 0 made
    reasons = [
        e.get("reason")
        for e in cluster.list("events", namespace)
        if (e.get("involvedObject") or {}).get("name") == name
    ]
    assert "RefreshRequested" in reasons and "NewVersion" not in reasons
