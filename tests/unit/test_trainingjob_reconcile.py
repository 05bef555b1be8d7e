"""The pure TrainingJob reconciler: children it builds and the status it derives from Jobs and pods."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest

from mlops_operator.api import trainingjob as api
from mlops_operator.api import workload
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
READY = {
    "status": {
        "phase": "Ready",
        "digest": "sha256:abc123def456",
        "storageUri": "pvc://data/datasets/iris/abc123",
    }
}


def make_tj(
    spec: dict[str, Any] | None = None,
    *,
    labels: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 1,
) -> api.TrainingJob:
    body = {
        "metadata": {
            "name": "iris-rf",
            "namespace": "team",
            "uid": "uid-1",
            "generation": generation,
            "labels": labels or {},
            "creationTimestamp": "2025-01-01T11:59:00Z",
        },
        "spec": spec
        or {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 10}},
        },
        "status": status or {},
    }
    return api.TrainingJob.from_body(body)


def stored(tj: api.TrainingJob, plan: rtj.Plan) -> api.TrainingJob:
    """The TrainingJob as the next pass reads it, with the plan's status stored (wire round trip)."""
    body = {
        "metadata": tj.metadata.model_dump(by_alias=True),
        "spec": tj.spec.to_api(),
        "status": plan.status.to_api(),
    }
    return api.TrainingJob.from_body(body)


def created_job(plan: rtj.Plan) -> dict[str, Any]:
    job = copy.deepcopy(next(o for o in plan.apply if o["kind"] == "Job"))
    job["status"] = {}
    return job


def config_of(plan: rtj.Plan) -> dict[str, Any]:
    """The run's config as its pods read it: the Job's pod template annotation."""
    job = next(o for o in plan.apply if o["kind"] == "Job")
    config: dict[str, Any] = json.loads(
        job["spec"]["template"]["metadata"]["annotations"]["mlops.dev/config"]
    )
    return config


def older_job(job: dict[str, Any], tj: api.TrainingJob) -> tuple[dict[str, Any], dict[str, Any]]:
    """``job`` as an operator before the config annotation made it, and the ConfigMap it wrote:
    the same config, mounted from a ConfigMap volume, and no annotation on the pod template."""
    old = copy.deepcopy(job)
    template = old["spec"]["template"]
    text = template["metadata"].pop("annotations")[build.CONFIG_ANNOTATION]
    template["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": build.config_name(tj)}} if v["name"] == "config" else v
        for v in template["spec"]["volumes"]
    ]
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": build.config_name(tj), "namespace": tj.metadata.namespace},
        "data": {workload.CONFIG_KEY: json.dumps(json.loads(text), sort_keys=True, indent=1)},
    }
    return old, configmap


def pod(
    *,
    phase: str = "Pending",
    terminated: dict[str, Any] | None = None,
    waiting: dict[str, Any] | None = None,
    unschedulable: str | None = None,
    started: str | None = "2025-01-01T12:00:05Z",
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if started:
        status["startTime"] = started
    if terminated is not None:
        status["containerStatuses"] = [{"name": "train", "state": {"terminated": terminated}}]
    if waiting is not None:
        status["containerStatuses"] = [{"name": "train", "state": {"waiting": waiting}}]
    if unschedulable:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        ]
    return {
        "metadata": {"name": "iris-rf-train-abcde", "creationTimestamp": "2025-01-01T12:00:01Z"},
        "status": status,
    }


def start(tj: api.TrainingJob) -> tuple[api.TrainingJob, rtj.Plan]:
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=READY), now=NOW, settings=SETTINGS)
    return stored(tj, plan), plan


def test_invalid_params_fail_before_any_pod() -> None:
    tj = make_tj(
        {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": -3, "foo": 1}},
        }
    )
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=READY), now=NOW, settings=SETTINGS)
    assert plan.apply == [] and plan.patch == [] and plan.delete == []
    assert plan.status.phase == "Failed" and plan.status.reason == "InvalidSpec"
    assert "unknown parameter 'foo' for RandomForestClassifier" in (plan.status.message or "")
    assert "model.params.n_estimators: must be an int >= 1, got -3" in (plan.status.message or "")
    assert plan.events == [("Warning", "InvalidSpec", plan.status.message)]
    assert plan.status.is_true("Failed")


@pytest.mark.parametrize(
    ("dataset", "reason"),
    [
        (None, "DatasetNotFound"),
        ({"status": {"phase": "Preparing"}}, "DatasetNotReady"),
        ({"status": {"phase": "Failed", "message": "bad checksum"}}, "DatasetFailed"),
    ],
)
def test_waits_for_the_dataset(dataset: dict[str, Any] | None, reason: str) -> None:
    plan = rtj.plan(make_tj(), observed=rtj.Observed(dataset=dataset), now=NOW, settings=SETTINGS)
    assert plan.apply == []
    assert plan.status.phase == "WaitingForData" and plan.status.reason == reason
    assert plan.events[0][:2] == ("Normal", "WaitingForData")


def test_ready_dataset_creates_the_job_carrying_its_config() -> None:
    tj = make_tj(
        {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 10}},
            "resources": {"cpu": "2", "memory": "4Gi"},
            "priorityClassName": "batch-low",
            "runPolicy": {"backoffLimit": 3, "activeDeadlineSeconds": 600},
        }
    )
    new, plan = start(tj)
    assert [o["kind"] for o in plan.apply] == ["Job"]  # no ConfigMap: the config is in the pod
    job = created_job(plan)
    assert job["metadata"]["name"] == "iris-rf-train"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert job["metadata"]["labels"]["mlops.dev/trainingjob"] == "iris-rf"
    assert job["metadata"]["annotations"][rowner.ANNOTATION_SPEC_HASH] == build.run_hash(tj.spec)
    spec = job["spec"]
    assert spec["backoffLimit"] == 3 and spec["activeDeadlineSeconds"] == 600 and spec["suspend"] is False
    pod_spec = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "train"
    assert pod_spec["restartPolicy"] == "Never" and pod_spec["priorityClassName"] == "batch-low"
    assert "nodeSelector" not in pod_spec and "tolerations" not in pod_spec
    container = pod_spec["containers"][0]
    assert container["image"] == "mlops-workloads:test"
    assert container["command"] == ["python", "-m", "mlops_workloads.train"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert container["securityContext"] == rworkload.restricted_security_context(1000)
    assert {"name": "MLOPS_CONFIG_FILE", "value": "/etc/mlops/config/config.json"} in container["env"]
    assert {"name": "TMPDIR", "value": "/tmp"} in container["env"]
    assert pod_spec["automountServiceAccountToken"] is False and pod_spec["enableServiceLinks"] is False
    # Dataset and output share the claim: one volume, mounted once.
    assert [v["name"] for v in pod_spec["volumes"]] == ["tmp", "config", "output"]
    assert pod_spec["volumes"][2] == {"name": "output", "persistentVolumeClaim": {"claimName": "data"}}
    assert pod_spec["volumes"][1] == {
        "name": "config",
        "downwardAPI": {
            "items": [
                {"path": "config.json", "fieldRef": {"fieldPath": "metadata.annotations['mlops.dev/config']"}}
            ]
        },
    }
    assert {"name": "config", "mountPath": "/etc/mlops/config", "readOnly": True} in container["volumeMounts"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert set(spec["template"]["metadata"]["annotations"]) == {"mlops.dev/config"}
    assert "mlops.dev/config" not in job["metadata"]["annotations"]  # on the pods, not the Job
    config = config_of(plan)
    assert config["outputUri"] == "pvc://data/models/team/iris-rf"
    assert config["datasetUri"] == "pvc://data/datasets/iris/abc123"
    assert config["importPath"] == "sklearn.ensemble.RandomForestClassifier"
    assert config["metrics"] == ["accuracy", "f1", "roc_auc"]
    api.TrainConfig.model_validate(config)
    assert new.status.phase == "Pending" and new.status.dataset_digest == "sha256:abc123def456"
    assert ("Normal", "JobCreated") in [e[:2] for e in plan.events]


def test_the_annotation_holds_the_config_the_configmap_held() -> None:
    tj = make_tj()
    _, plan = start(tj)
    expected = build.train_config(
        tj,
        dataset_uri="pvc://data/datasets/iris/abc123",
        dataset_digest="sha256:abc123def456",
        settings=SETTINGS,
    )
    text = created_job(plan)["spec"]["template"]["metadata"]["annotations"][build.CONFIG_ANNOTATION]
    # What the per-run ConfigMap's config.json held before: the same document, only indented.
    configmap_text = json.dumps(expected.to_api(), sort_keys=True, indent=1)
    assert json.loads(text) == json.loads(configmap_text)
    assert api.TrainConfig.model_validate(json.loads(text)) == expected
    assert text == build.config_json(expected) and "\n" not in text and len(text) < len(configmap_text)
    assert build.run_config(created_job(plan)) == expected.to_api()


def test_gpu_job_gets_gpu_resources_selector_and_toleration() -> None:
    tj = make_tj(
        {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "XGBClassifier", "params": {"n_estimators": 50}},
            "resources": {"cpu": "4", "memory": "8Gi", "gpu": 1},
            "nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        }
    )
    _, plan = start(tj)
    pod_spec = created_job(plan)["spec"]["template"]["spec"]
    resources = pod_spec["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == "1" and resources["limits"]["nvidia.com/gpu"] == "1"
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.present": "true", "zone": "a"}
    assert pod_spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
    ]
    assert pod_spec["affinity"] == {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    config = config_of(plan)
    assert config["gpu"] == 1 and config["gpuParams"] == {"device": "cuda", "tree_method": "hist"}


def test_gpu_for_a_cpu_only_estimator_is_refused() -> None:
    tj = make_tj(
        {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier"},
            "resources": {"gpu": 1},
        }
    )
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=READY), now=NOW, settings=SETTINGS)
    assert plan.status.reason == "InvalidSpec"
    assert "resources.gpu: RandomForestClassifier cannot use a GPU" in (plan.status.message or "")


def test_file_dataset_gets_separate_read_only_mount_and_sibling_output() -> None:
    ready = {"status": {"phase": "Ready", "digest": "d1", "storageUri": "file:///srv/data/iris/d1"}}
    plan = rtj.plan(make_tj(), observed=rtj.Observed(dataset=ready), now=NOW, settings=SETTINGS)
    pod_spec = created_job(plan)["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in pod_spec["containers"][0]["volumeMounts"]}
    assert mounts["dataset"] == {"name": "dataset", "mountPath": "/srv/data/iris/d1", "readOnly": True}
    assert mounts["output"]["mountPath"] == "/srv/data/models/team/iris-rf"


def test_task_mismatch_with_the_dataset_fails() -> None:
    ready = copy.deepcopy(READY)
    ready["status"]["task"] = "regression"
    plan = rtj.plan(make_tj(), observed=rtj.Observed(dataset=ready), now=NOW, settings=SETTINGS)
    assert plan.status.phase == "Failed" and plan.status.reason == "TaskMismatch" and plan.apply == []


def test_success_maps_the_result_into_status() -> None:
    tj, plan = start(
        make_tj(
            {
                "datasetRef": {"name": "iris"},
                "model": {"estimator": "RandomForestClassifier"},
                "metrics": ["f1", "accuracy"],
            }
        )
    )
    job = created_job(plan)
    job["status"] = {
        "startTime": "2025-01-01T12:00:00Z",
        "completionTime": "2025-01-01T12:01:30Z",
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    result = {
        "ok": True,
        "modelUri": "pvc://data/models/team/iris-rf/0123456789abcdef",
        "modelVersion": "0123456789abcdef",
        "datasetDigest": "sha256:abc123def456",
        "metrics": {"validation": {"f1": 0.9, "accuracy": 0.93}, "test": {"f1": 0.88, "accuracy": 0.9}},
        "objectiveValue": 0.9,
        "fitSeconds": 1.25,
        "modelSizeBytes": 2048,
    }
    pods = [
        pod(
            phase="Succeeded",
            terminated={"exitCode": 0, "reason": "Completed", "message": json.dumps(result)},
        )
    ]
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=READY, job=job, pods=pods), now=NOW, settings=SETTINGS)
    s = plan.status
    assert s.phase == "Succeeded" and s.reason == "Completed"
    assert s.metrics is not None and s.metrics["f1"].validation == 0.9 and s.metrics["accuracy"].test == 0.9
    assert s.objective_metric == "f1" and s.objective_value == 0.9
    assert s.model_uri == "pvc://data/models/team/iris-rf/0123456789abcdef" and s.model_size_bytes == 2048
    assert s.model_version == "0123456789abcdef" and s.to_api()["modelVersion"] == "0123456789abcdef"
    assert s.duration_seconds == 90.0 and s.attempts == 1 and s.fit_seconds == 1.25
    assert s.is_true("Succeeded") and not s.is_true("Running")
    assert plan.events[0][:2] == ("Normal", "Succeeded") and "f1=0.9" in plan.events[0][2]
    assert plan.apply == [] and plan.patch == []


@pytest.mark.parametrize(
    ("job_status", "pods", "reason"),
    [
        (
            {
                "failed": 2,
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
            },
            [pod(phase="Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})],
            "OOMKilled",
        ),
        (
            {
                "failed": 1,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": "Job was active longer than specified deadline",
                    }
                ],
            },
            [pod(phase="Failed")],
            "DeadlineExceeded",
        ),
        (
            {
                "failed": 2,
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
            },
            [pod(phase="Failed", terminated={"exitCode": 1, "reason": "Error", "message": "Traceback..."})],
            "Error",
        ),
        (
            {
                "failed": 2,
                "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
            },
            [
                pod(
                    phase="Failed",
                    terminated={
                        "exitCode": 1,
                        "reason": "Error",
                        "message": json.dumps(
                            {
                                "ok": False,
                                "reason": "TaskMismatch",
                                "error": "Ridge is a regression estimator",
                            }
                        ),
                    },
                )
            ],
            "TaskMismatch",
        ),
    ],
)
def test_failures_name_their_reason(
    job_status: dict[str, Any], pods: list[dict[str, Any]], reason: str
) -> None:
    tj, plan = start(make_tj())
    job = created_job(plan)
    job["status"] = {"startTime": "2025-01-01T12:00:00Z", **job_status}
    job["status"]["conditions"][0]["lastTransitionTime"] = "2025-01-01T12:10:00Z"
    plan = rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=NOW, settings=SETTINGS)
    assert plan.status.phase == "Failed" and plan.status.reason == reason
    assert plan.status.completion_time == "2025-01-01T12:10:00Z" and plan.status.duration_seconds == 600
    assert plan.events[0][:2] == ("Warning", reason)
    assert plan.status.is_true("Failed")


def test_permanent_failure_exit_code_fails_the_job_at_once() -> None:
    tj, plan = start(make_tj())
    job = created_job(plan)
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules == [
        {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": "train",
                "operator": "In",
                "values": [workload.PERMANENT_EXIT_CODE],
            },
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    job["status"] = {
        "failed": 1,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "PodFailurePolicy",
                "lastTransitionTime": "2025-01-01T12:00:09Z",
            }
        ],
    }
    message = json.dumps({"ok": False, "reason": "InvalidParams", "error": "penalty l1 needs solver saga"})
    pods = [pod(phase="Failed", terminated={"exitCode": 3, "reason": "Error", "message": message})]
    plan = rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=NOW, settings=SETTINGS)
    assert (plan.status.phase, plan.status.reason) == ("Failed", "InvalidParams")
    assert plan.status.message == "penalty l1 needs solver saga"


def test_unschedulable_gpu_pod_is_reported_while_pending() -> None:
    tj, plan = start(
        make_tj(
            {"datasetRef": {"name": "iris"}, "model": {"estimator": "XGBClassifier"}, "resources": {"gpu": 2}}
        )
    )
    job = created_job(plan)
    job["status"] = {"active": 1, "startTime": "2025-01-01T12:00:00Z"}
    msg = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    plan = rtj.plan(
        tj,
        observed=rtj.Observed(job=job, pods=[pod(unschedulable=msg, started=None)]),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.status.phase == "Pending" and plan.status.reason == "Unschedulable"
    assert plan.status.message == msg
    assert plan.events == [("Warning", "Unschedulable", msg)]


def test_image_pull_backoff_is_reported() -> None:
    tj, plan = start(make_tj())
    job = created_job(plan)
    job["status"] = {"active": 1}
    waiting = {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}
    plan = rtj.plan(
        tj,
        observed=rtj.Observed(job=job, pods=[pod(waiting=waiting)]),
        now=NOW,
        settings=SETTINGS,
    )
    assert (plan.status.phase, plan.status.reason) == ("Pending", "ImagePullBackOff")


def test_running_then_suspend_and_resume() -> None:
    tj, plan = start(make_tj())
    job = created_job(plan)
    job["status"] = {"active": 1, "ready": 1, "startTime": "2025-01-01T12:00:00Z"}
    plan = rtj.plan(
        tj,
        observed=rtj.Observed(job=job, pods=[pod(phase="Running")]),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.status.phase == "Running" and plan.status.is_true("Running")
    assert plan.status.pod_start_time == "2025-01-01T12:00:05Z"
    tj = stored(tj, plan)

    suspended = tj.model_copy(
        update={"spec": tj.spec.model_copy(update={"run_policy": api.RunPolicy(suspend=True)})}
    )
    plan = rtj.plan(
        suspended,
        observed=rtj.Observed(job=job, pods=[pod(phase="Running")]),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.patch == [(rplan.ChildRef("batch/v1", "Job", "iris-rf-train"), {"spec": {"suspend": True}})]
    assert plan.status.phase == "Suspended" and plan.delete == []
    suspended = stored(suspended, plan)
    job["spec"]["suspend"] = True
    job["status"] = {"conditions": [{"type": "Suspended", "status": "True"}]}
    plan = rtj.plan(suspended, observed=rtj.Observed(job=job), now=NOW, settings=SETTINGS)
    assert plan.patch == [] and plan.status.phase == "Suspended" and plan.status.is_true("Suspended")

    resumed = suspended.model_copy(update={"spec": tj.spec})
    plan = rtj.plan(resumed, observed=rtj.Observed(job=job), now=NOW, settings=SETTINGS)
    assert plan.patch == [(rplan.ChildRef("batch/v1", "Job", "iris-rf-train"), {"spec": {"suspend": False}})]
    resumed = stored(resumed, plan)
    job["spec"]["suspend"] = False
    job["status"] = {"active": 1}
    plan = rtj.plan(
        resumed,
        observed=rtj.Observed(job=job, pods=[pod(phase="Running")]),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.status.phase == "Running" and plan.patch == []


def test_make_demo_running_never_reads_pending_again() -> None:
    """Issue 11 item 3: Running, then the pod Succeeded before the Job says Complete. The phase
    stays Running (no second Running Event), then Succeeded; a retry's pod that cannot be
    scheduled keeps Running too, with a Warning that says why."""
    tj, plan = start(make_tj())
    job = created_job(plan)
    job["status"] = {"active": 1, "ready": 1}
    plan = rtj.plan(
        tj,
        observed=rtj.Observed(job=job, pods=[pod(phase="Running")]),
        now=NOW,
        settings=SETTINGS,
    )
    tj = stored(tj, plan)
    assert tj.status.phase == "Running"
    job["status"] = {"active": 1, "ready": 0}
    finished = pod(phase="Succeeded", terminated={"exitCode": 0, "reason": "Completed", "message": "{}"})
    plan = rtj.plan(tj, observed=rtj.Observed(job=job, pods=[finished]), now=NOW, settings=SETTINGS)
    assert (plan.status.phase, plan.status.reason) == ("Running", "PodSucceeded")
    assert plan.events == [] and plan.status.is_true("Running") and plan.status.is_true("Reconciling")
    # Seen through a pod cache that still has the pod Pending: the stored phase holds.
    plan = rtj.plan(
        tj,
        observed=rtj.Observed(job=job, pods=[pod(phase="Pending")]),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.status.phase == "Running"
    failed = pod(phase="Failed", terminated={"exitCode": 1, "reason": "Error", "message": "boom"})
    retry = pod(unschedulable="0/3 nodes are available")
    retry["metadata"] = {"name": "iris-rf-train-fghij", "creationTimestamp": "2025-01-01T12:00:09Z"}
    job["status"] = {"active": 1, "failed": 1}
    plan = rtj.plan(tj, observed=rtj.Observed(job=job, pods=[failed, retry]), now=NOW, settings=SETTINGS)
    assert (plan.status.phase, plan.status.reason) == ("Running", "Unschedulable")
    assert plan.events == [("Warning", "Unschedulable", "0/3 nodes are available")]


def test_suspended_from_the_start() -> None:
    tj = make_tj(
        {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier"},
            "runPolicy": {"suspend": True},
        }
    )
    new, plan = start(tj)
    assert created_job(plan)["spec"]["suspend"] is True
    assert new.status.phase == "Suspended"


def test_kueue_job_is_created_suspended_and_never_unsuspended_by_us() -> None:
    labels = {"kueue.x-k8s.io/queue-name": "team-queue", "kueue.x-k8s.io/priority-class": "high"}
    tj, plan = start(make_tj(labels=labels))
    job = created_job(plan)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-queue"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"
    assert tj.status.phase == "Queued"
    job["status"] = {}
    plan = rtj.plan(tj, observed=rtj.Observed(job=job), now=NOW, settings=SETTINGS)
    assert plan.patch == [] and plan.status.phase == "Queued" and plan.status.reason == "Queued"
    # Kueue admits: it un-suspends the Job; we follow and never suspend it back.
    job["spec"]["suspend"] = False
    job["status"] = {"active": 1}
    plan = rtj.plan(
        stored(tj, plan),
        observed=rtj.Observed(job=job, pods=[pod(phase="Running")]),
        now=NOW,
        settings=SETTINGS,
    )
    assert plan.patch == [] and plan.status.phase == "Running"


def _finished(ttl: int | None) -> tuple[api.TrainingJob, dict[str, Any]]:
    spec = {
        "datasetRef": {"name": "iris"},
        "model": {"estimator": "RandomForestClassifier"},
        "runPolicy": {"ttlSecondsAfterFinished": ttl} if ttl is not None else {},
    }
    tj, plan = start(make_tj(spec))
    job = created_job(plan)
    job["status"] = {
        "startTime": "2025-01-01T12:00:00Z",
        "completionTime": "2025-01-01T12:01:00Z",
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    result = {"ok": True, "metrics": {"validation": {"accuracy": 0.97}}, "modelUri": "pvc://data/m"}
    pods = [pod(phase="Succeeded", terminated={"exitCode": 0, "message": json.dumps(result)})]
    plan = rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=NOW, settings=SETTINGS)
    return stored(tj, plan), job


def test_ttl_deletes_children_and_keeps_results() -> None:
    tj, job = _finished(ttl=120)
    assert tj.status.phase == "Succeeded"
    early = NOW.replace(hour=12, minute=2)
    plan = rtj.plan(tj, observed=rtj.Observed(job=job), now=early, settings=SETTINGS)
    assert plan.delete == [] and plan.wake_at == datetime.datetime(2025, 1, 1, 12, 3, tzinfo=datetime.UTC)
    late = NOW.replace(hour=12, minute=3)
    plan = rtj.plan(tj, observed=rtj.Observed(job=job), now=late, settings=SETTINGS)
    # The run has no ConfigMap: deleting its Job is the whole cleanup.
    assert plan.delete == [rplan.ChildRef("batch/v1", "Job", "iris-rf-train")]
    assert plan.status.children_deleted is True and plan.status.phase == "Succeeded"
    assert plan.status.objective_value == 0.97 and plan.status.model_uri == "pvc://data/m"
    assert ("Normal", "ChildrenDeleted") in [e[:2] for e in plan.events]
    gone = stored(tj, plan)
    plan = rtj.plan(gone, observed=rtj.Observed(dataset=READY), now=late, settings=SETTINGS)
    assert plan.apply == [] and plan.delete == [] and plan.events == []
    assert plan.status.phase == "Succeeded" and plan.status.objective_value == 0.97


def test_ttl_deletes_the_configmap_of_a_run_an_older_operator_started() -> None:
    tj, job = _finished(ttl=120)
    old_job, _ = older_job(job, tj)
    late = NOW.replace(hour=12, minute=3)
    assert rtj.cleanup_due(tj, tj.status, late) and not rtj.cleanup_due(tj, tj.status, NOW)
    plan = rtj.plan(tj, observed=rtj.Observed(job=old_job), now=late, settings=SETTINGS)
    assert plan.delete == [
        rplan.ChildRef("batch/v1", "Job", "iris-rf-train"),
        rplan.ChildRef("v1", "ConfigMap", "iris-rf-train"),
    ]
    assert plan.status.children_deleted is True
    # A Job already gone says nothing of a ConfigMap: none is deleted (the owner reference
    # still collects an older one with the TrainingJob).
    plan = rtj.plan(tj, observed=rtj.Observed(), now=late, settings=SETTINGS)
    assert plan.delete == [rplan.ChildRef("batch/v1", "Job", "iris-rf-train")]
    assert not rtj.cleanup_due(stored(tj, plan), stored(tj, plan).status, late)


def test_a_run_finishing_past_its_ttl_cleans_up_by_its_job() -> None:
    spec = {
        "datasetRef": {"name": "iris"},
        "model": {"estimator": "RandomForestClassifier"},
        "runPolicy": {"ttlSecondsAfterFinished": 0},
    }
    tj, plan = start(make_tj(spec))
    job = created_job(plan)
    job["status"] = {
        "startTime": "2025-01-01T12:00:00Z",
        "completionTime": "2025-01-01T12:00:30Z",
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    pods = [pod(phase="Succeeded", terminated={"exitCode": 0, "message": json.dumps({"ok": True})})]
    later = NOW.replace(minute=1)
    plan = rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=later, settings=SETTINGS)
    assert plan.status.phase == "Succeeded" and plan.status.children_deleted is True
    assert plan.delete == [rplan.ChildRef("batch/v1", "Job", "iris-rf-train")]
    old_job, _ = older_job(job, tj)
    plan = rtj.plan(tj, observed=rtj.Observed(job=old_job, pods=pods), now=later, settings=SETTINGS)
    assert rplan.ChildRef("v1", "ConfigMap", "iris-rf-train") in plan.delete


def test_finished_job_without_ttl_keeps_its_children() -> None:
    tj, job = _finished(ttl=None)
    plan = rtj.plan(tj, observed=rtj.Observed(job=job), now=NOW.replace(year=2026), settings=SETTINGS)
    assert plan.delete == [] and plan.apply == [] and plan.wake_at is None


def test_editing_a_finished_job_starts_a_new_run() -> None:
    tj, job = _finished(ttl=None)
    edited = tj.model_copy(
        update={
            "spec": tj.spec.model_copy(
                update={
                    "model": api.ModelSpec(estimator="RandomForestClassifier", params={"n_estimators": 50})
                }
            )
        }
    )
    plan = rtj.plan(edited, observed=rtj.Observed(dataset=READY, job=job), now=NOW, settings=SETTINGS)
    assert plan.delete == [rplan.ChildRef("batch/v1", "Job", "iris-rf-train")]
    assert (
        plan.status.phase == "Pending" and plan.status.metrics is None and plan.status.reason == "SpecChanged"
    )
    plan = rtj.plan(stored(edited, plan), observed=rtj.Observed(dataset=READY), now=NOW, settings=SETTINGS)
    assert [o["kind"] for o in plan.apply] == ["Job"]
    config = config_of(plan)
    assert config["params"] == {"n_estimators": 50}


REPREPARED = {
    "status": {"phase": "Ready", "digest": "sha256:new", "storageUri": "pvc://data/datasets/iris/new"}
}


def test_a_running_job_keeps_its_dataset_version() -> None:
    tj, plan = start(make_tj())
    job = created_job(plan)
    job["status"] = {"active": 1}
    running = [pod(phase="Running")]
    plan = rtj.plan(
        tj, observed=rtj.Observed(dataset=REPREPARED, job=job, pods=running), now=NOW, settings=SETTINGS
    )
    assert plan.status.dataset_digest == "sha256:abc123def456"
    # Even with the status lost (restored from a backup), the Job's config annotation pins the
    # version: no ConfigMap is needed.
    bare = make_tj()
    plan = rtj.plan(
        bare, observed=rtj.Observed(dataset=REPREPARED, job=job, pods=running), now=NOW, settings=SETTINGS
    )
    assert plan.status.dataset_uri == "pvc://data/datasets/iris/abc123"
    assert plan.status.dataset_digest == "sha256:abc123def456"
    assert plan.apply == []


def test_a_run_an_older_operator_started_keeps_its_version_from_its_configmap() -> None:
    tj, plan = start(make_tj())
    job, configmap = older_job(created_job(plan), tj)
    job["status"] = {"active": 1}
    running = [pod(phase="Running")]
    bare = make_tj()  # the status lost: only the ConfigMap knows the version
    observed = rtj.Observed(dataset=REPREPARED, job=job, pods=running, configmap=configmap)
    plan = rtj.plan(bare, observed=observed, now=NOW, settings=SETTINGS)
    assert plan.status.dataset_uri == "pvc://data/datasets/iris/abc123"
    assert plan.status.dataset_digest == "sha256:abc123def456"
    assert plan.apply == [] and plan.delete == []
    # The annotation wins over a ConfigMap when a Job has both.
    new_job = created_job(start(make_tj())[1])
    stale = copy.deepcopy(configmap)
    stale["data"][workload.CONFIG_KEY] = json.dumps({"datasetUri": "pvc://data/datasets/iris/stale"})
    observed = rtj.Observed(dataset=REPREPARED, job=new_job, pods=running, configmap=stale)
    plan = rtj.plan(bare, observed=observed, now=NOW, settings=SETTINGS)
    assert plan.status.dataset_uri == "pvc://data/datasets/iris/abc123"


def test_lost_job_is_recreated_with_the_pinned_version() -> None:
    tj, _ = start(make_tj())
    reprepared = {
        "status": {"phase": "Ready", "digest": "sha256:new", "storageUri": "pvc://data/datasets/iris/new"}
    }
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=reprepared), now=NOW, settings=SETTINGS)
    config = config_of(plan)
    assert config["datasetUri"] == "pvc://data/datasets/iris/abc123"


def test_status_is_stable_between_passes() -> None:
    tj, plan = start(make_tj())
    job = created_job(plan)
    job["status"] = {"active": 1}
    observed = rtj.Observed(job=job, pods=[pod(phase="Running")])
    first = rtj.plan(tj, observed=observed, now=NOW, settings=SETTINGS)
    later = NOW + datetime.timedelta(minutes=5)
    second = rtj.plan(stored(tj, first), observed=observed, now=later, settings=SETTINGS)
    assert second.status.to_api() == first.status.to_api()
    assert second.events == []
    assert first.status.observed_generation == 1


def _succeeded_with(result: dict[str, Any], spec: dict[str, Any] | None = None) -> api.TrainingJobStatus:
    tj, plan = start(make_tj(spec))
    job = created_job(plan)
    job["status"] = {
        "startTime": "2025-01-01T12:00:00Z",
        "completionTime": "2025-01-01T12:01:30Z",
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    message = json.dumps({"ok": True, "objectiveValue": 0.9, **result})
    pods = [pod(phase="Succeeded", terminated={"exitCode": 0, "reason": "Completed", "message": message})]
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=READY, job=job, pods=pods), now=NOW, settings=SETTINGS)
    return plan.status


def test_the_measured_use_and_the_suggestion_reach_the_status() -> None:
    used = {"cpuSeconds": 27.0, "cpuCores": 0.3, "peakMemoryBytes": 200 * 2**20, "source": "cgroup2"}
    s = _succeeded_with(
        {"resourcesUsed": used},
        {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier"},
            "resources": {"cpu": "2", "memory": "4Gi"},
        },
    )
    assert s.phase == "Succeeded" and s.resources_used is not None
    assert s.resources_used.to_api() == used
    assert s.suggested_resources is not None
    assert s.suggested_resources.to_api() == {"cpu": "400m", "memory": "256Mi", "gpu": 0}
    assert s.to_api()["suggestedResources"] == {"cpu": "400m", "memory": "256Mi", "gpu": 0}


def test_a_gpu_measured_idle_is_suggested_away() -> None:
    used = {"cpuCores": 1.0, "peakMemoryBytes": 2**30, "gpuUtilizationMean": 0.0, "gpuUtilizationMax": 0.0}
    s = _succeeded_with(
        {"resourcesUsed": used, "device": "cuda:0 (NVIDIA H200)"},
        {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "XGBClassifier"},
            "resources": {"cpu": "2", "memory": "4Gi", "gpu": 1},
        },
    )
    assert s.suggested_resources is not None and s.suggested_resources.gpu == 0
    assert s.suggested_resources.memory == "1280Mi" and s.suggested_resources.cpu == "1200m"


def test_a_result_without_or_with_broken_figures_keeps_what_is_valid() -> None:
    assert _succeeded_with({}).resources_used is None  # an older or own image that reports none
    assert _succeeded_with({}).suggested_resources is None
    s = _succeeded_with(
        {"resourcesUsed": {"cpuCores": -1, "peakMemoryBytes": 100 * 2**20, "source": "x" * 99, "gpu": 3}}
    )
    assert s.resources_used is not None and s.resources_used.to_api() == {"peakMemoryBytes": 100 * 2**20}
    assert s.suggested_resources is not None
    assert s.suggested_resources.to_api() == {"memory": "128Mi", "gpu": 0}
    assert _succeeded_with({"resourcesUsed": "lots"}).resources_used is None
