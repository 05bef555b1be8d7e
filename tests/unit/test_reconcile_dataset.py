"""The pure Dataset reconciler: the children it builds (golden), names and spec hashes, stale
children, status from the Job and its pods, and the Events of each transition."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from mlops_operator.api import dataset as api
from mlops_operator.reconcile import dataset as rds
from mlops_operator.reconcile import dataset_build as rds_build
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="registry.local/mlops-workloads:1.2.3")
UID = "0b7d-uid"
SPEC: dict[str, Any] = {
    "sources": [
        {"file": {"uri": "pvc://data/raw/a.csv"}},
        {"configMap": {"name": "extra-rows", "key": "rows.csv"}},
        {"http": {"url": "https://example.org/b.csv", "sha256": "a" * 64}},
        {"file": {"uri": "pvc://archive/old/b.parquet"}},
    ],
    "schema": {"target": "label"},
    "storage": "pvc://data/datasets/churn",
    "resources": {"cpu": "2", "memory": "4Gi"},
    "activeDeadlineSeconds": 900,
    "backoffLimit": 1,
}
RESULT = {
    "ok": True,
    "digest": "3f1c0ffee" + "0" * 55,
    "storageUri": "pvc://data/datasets/churn/3f1c0ffee" + "0" * 55,
    "task": "classification",
    "target": "label",
    "rows": {"input": 1000, "output": 990, "dropped": 10, "train": 693, "validation": 148, "test": 149},
    "dropped": {"violations": 4, "missingTarget": 1, "duplicates": 5, "missingValues": 0},
    "duplicatesRemoved": 5,
    "columns": 7,
    "features": 12,
    "classes": 2,
    "classBalance": {"no": 900, "yes": 90},
    "missing": {"age": 3, "city": 12},
    "warnings": ["severe class imbalance: class 'yes' has 90 rows (9.1%) against 900 for 'no'"],
    "reused": False,
}


def dataset(
    spec: dict[str, Any] | None = None, *, status: dict[str, Any] | None = None, name: str = "churn"
) -> api.Dataset:
    return api.Dataset.from_body(
        {
            "metadata": {"name": name, "namespace": "ml", "uid": UID, "generation": 2},
            "spec": spec or SPEC,
            "status": status or {},
        }
    )


def job_named(name: str, status: dict[str, Any] | None = None, *, uid: str = UID) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "ownerReferences": [{"uid": uid, "controller": True}]},
        "spec": {},
        "status": status or {},
    }


def pod(job: str, *, phase: str, terminated: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "startTime": "2025-01-01T11:58:00Z", **extra}
    if terminated is not None:
        status["containerStatuses"] = [{"name": "prepare", "state": {"terminated": terminated}}]
    return {
        "metadata": {
            "name": f"{job}-x",
            "labels": {"batch.kubernetes.io/job-name": job},
            "creationTimestamp": "t",
        },
        "status": status,
    }


COMPLETE = {
    "succeeded": 1,
    "startTime": "2025-01-01T11:58:00Z",
    "completionTime": "2025-01-01T11:59:30Z",
    "conditions": [{"type": "Complete", "status": "True"}],
}


def test_child_names_follow_the_spec_hash() -> None:
    ds = dataset()
    name = rds_build.child_name(ds)
    # refresh and retention decide nothing about the data: they are left out of the hash, and so
    # is scale while it holds its defaults (a spec from before it existed keeps its Job's name).
    hashed = {k: v for k, v in ds.spec.to_api().items() if k not in ("refresh", "retention", "scale")}
    assert name == f"churn-prepare-{rowner.spec_hash(hashed)[:8]}"
    assert rds_build.child_name(dataset()) == name  # stable
    changed = dataset({**SPEC, "split": {"seed": 1}})
    assert rds_build.child_name(changed) != name
    long = dataset(name="a" * 60)
    assert len(rds_build.child_name(long)) <= 63
    assert rds_build.selector(ds) == "mlops.dev/dataset=churn,app.kubernetes.io/component=prepare"


def test_configmap_carries_the_workload_config() -> None:
    ds = dataset()
    cm = rds_build.build_configmap(ds, settings=SETTINGS)
    assert cm["metadata"]["name"] == rds_build.child_name(ds)
    assert cm["metadata"]["ownerReferences"] == [
        {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "name": "churn", "uid": UID,
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    config = api.PrepareConfig.model_validate_json(cm["data"]["config.json"])
    assert config.dataset == "churn" and config.namespace == "ml"
    assert config.spec == ds.spec
    assert config.pvc_root == SETTINGS.pvc_root and config.config_map_root == "/etc/mlops/sources"


def test_job_golden() -> None:
    ds = dataset()
    name = rds_build.child_name(ds)
    job = rds_build.build_job(ds, settings=SETTINGS)
    labels = {
        "app.kubernetes.io/managed-by": "mlops-operator",
        "app.kubernetes.io/part-of": "mlops",
        "app.kubernetes.io/component": "prepare",
        "mlops.dev/dataset": "churn",
    }
    expected = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": labels,
            "annotations": {"mlops.dev/spec-hash": rds_build.spec_hash(ds)},
            "ownerReferences": [
                {"apiVersion": "mlops.dev/v1alpha1", "kind": "Dataset", "name": "churn", "uid": UID,
                 "controller": True, "blockOwnerDeletion": True}
            ],
        },
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 900,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob",
                     "onExitCodes": {"containerName": "prepare", "operator": "In", "values": [3]}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "prepare",
                            "image": "registry.local/mlops-workloads:1.2.3",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-m", "mlops_workloads.prepare"],
                            "env": [
                                {"name": "MLOPS_CONFIG_FILE", "value": "/etc/mlops/config/config.json"},
                                {"name": "HOME", "value": "/tmp"},
                                {"name": "TMPDIR", "value": "/tmp"},
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                            ],
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/mlops/config", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "storage", "mountPath": "/mnt/mlops/pvc/data"},
                                {"name": "source-1", "mountPath": "/etc/mlops/sources/1", "readOnly": True},
                                {"name": "source-3", "mountPath": "/mnt/mlops/pvc/archive", "readOnly": True},
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "runAsUser": 1000, "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "resources": {
                                "requests": {"cpu": "2", "memory": "4Gi"},
                                "limits": {"memory": "4Gi"},
                            },
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": name}},
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "storage", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "source-1", "configMap": {
                            "name": "extra-rows", "items": [{"key": "rows.csv", "path": "rows.csv"}],
                            "optional": True}},
                        {"name": "source-3", "persistentVolumeClaim": {"claimName": "archive"}},
                    ],
                },
            },
        },
    }  # fmt: skip
    assert job == expected
    assert "ttlSecondsAfterFinished" not in job["spec"]


def test_job_on_file_storage_gpu_and_placement() -> None:
    spec = {
        "sources": [{"file": {"uri": "file:///data/raw/x.csv"}}, {"file": {"uri": "file:///data/out/y.csv"}}],
        "storage": "file:///data/out",
        "resources": {"gpu": 1},
        "nodeSelector": {"disk": "local-ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "data", "effect": "NoSchedule"}],
    }
    job = rds_build.build_job(dataset(spec), settings=SETTINGS)
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][2:] == [
        {"name": "storage", "hostPath": {"path": "/data/out", "type": "DirectoryOrCreate"}},
        {"name": "source-0", "hostPath": {"path": "/data/raw", "type": "Directory"}},
    ]  # the second source lies in the storage directory, which is mounted already
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "disk": "local-ssd"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "data", "effect": "NoSchedule"},
    ]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_plan_creates_configmap_and_job_then_only_reapplies_the_configmap() -> None:
    ds = dataset()
    first = rds.plan(ds, observed=rds.Observed(), settings=SETTINGS, now=NOW)
    assert [c["kind"] for c in first.apply] == ["ConfigMap", "Job"]
    assert first.status.phase == "Pending" and first.status.reason == "Creating"
    assert first.status.job_name == rds_build.child_name(ds)
    assert first.status.observed_generation == 2
    assert first.delete == []
    job = job_named(rds_build.child_name(ds), {"active": 1})
    second = rds.plan(ds, observed=rds.Observed(jobs=[job]), settings=SETTINGS, now=NOW)
    assert [c["kind"] for c in second.apply] == ["ConfigMap"]  # a Job is immutable: never re-applied


def test_running_pod_is_preparing() -> None:
    ds = dataset()
    name = rds_build.child_name(ds)
    observed = rds.Observed(jobs=[job_named(name, {"active": 1})], pods=[pod(name, phase="Running")])
    plan = rds.plan(ds, observed=observed, settings=SETTINGS, now=NOW)
    assert plan.status.phase == "Preparing"
    assert plan.events == [("Normal", "Preparing", f"preparing with Job {name}")]
    assert plan.status.condition("Ready") is not None and plan.status.condition("Ready").status == "False"  # type: ignore[union-attr]


def test_a_finished_pod_before_the_job_completes_is_still_preparing() -> None:
    """The kubelet reports the prepare pod Succeeded before the Job controller sets Complete: the
    Dataset stays Preparing (Reconciling), it never drops back to Pending."""
    ds = dataset(status={"phase": "Preparing"})
    name = rds_build.child_name(ds)
    done = pod(name, phase="Succeeded", terminated={"exitCode": 0, "message": json.dumps(RESULT)})
    observed = rds.Observed(jobs=[job_named(name, {"active": 1, "ready": 0})], pods=[done])
    plan = rds.plan(ds, observed=observed, settings=SETTINGS, now=NOW)
    assert plan.status.phase == "Preparing" and plan.status.is_true("Reconciling")
    assert plan.events == []


def test_completion_with_result_is_ready_with_the_numbers() -> None:
    ds = dataset(status={"phase": "Preparing", "jobName": None})
    name = rds_build.child_name(ds)
    done = pod(name, phase="Succeeded", terminated={"exitCode": 0, "message": json.dumps(RESULT)})
    plan = rds.plan(
        ds, observed=rds.Observed(jobs=[job_named(name, COMPLETE)], pods=[done]), settings=SETTINGS, now=NOW
    )
    status = plan.status
    assert status.phase == "Ready" and status.reason == "Prepared"
    assert status.digest == RESULT["digest"] and status.digest_short == "3f1c0ffee000"
    assert status.storage_uri == RESULT["storageUri"]
    assert status.rows == api.RowCounts(
        input=1000, output=990, dropped=10, train=693, validation=148, test=149
    )
    assert status.dropped == api.DroppedRows(violations=4, missing_target=1, duplicates=5, missing_values=0)
    assert (status.duplicates_removed, status.columns, status.features, status.classes) == (5, 7, 12, 2)
    assert [(m.name, m.count) for m in status.missing] == [("city", 12), ("age", 3)]
    assert [(c.name, c.count, round(c.fraction, 4)) for c in status.class_balance] == [
        ("no", 900, 0.9091), ("yes", 90, 0.0909),
    ]  # fmt: skip
    assert status.warnings == RESULT["warnings"]
    assert status.task == "classification" and status.target == "label"
    assert (status.start_time, status.completion_time) == ("2025-01-01T11:58:00Z", "2025-01-01T11:59:30Z")
    assert status.is_true("Ready") and not status.is_true("Failed")
    assert (
        status.message
        == "prepared 990 of 1000 rows: train 693, validation 148, test 149; digest 3f1c0ffee000"
    )
    assert plan.events == [
        ("Normal", "Ready", status.message),
        ("Warning", "DataQuality", RESULT["warnings"][0]),
    ]
    wire = status.to_api()
    assert wire["digestShort"] == "3f1c0ffee000" and wire["rows"]["output"] == 990  # printer columns


def test_storage_uri_is_rebuilt_when_the_result_was_trimmed() -> None:
    ds = dataset()
    fields = rds.ready_fields(ds, {**RESULT, "storageUri": None})
    assert fields["storage_uri"] == f"pvc://data/datasets/churn/{RESULT['digest']}"
    with pytest.raises(ValueError, match="no digest"):
        rds.ready_fields(ds, {"ok": True, "rows": {}})


def test_completion_without_a_result_fails() -> None:
    ds = dataset()
    name = rds_build.child_name(ds)
    done = pod(name, phase="Succeeded", terminated={"exitCode": 0, "reason": "Completed"})
    plan = rds.plan(
        ds, observed=rds.Observed(jobs=[job_named(name, COMPLETE)], pods=[done]), settings=SETTINGS, now=NOW
    )
    assert plan.status.phase == "Failed" and plan.status.reason == "MissingResult"


@pytest.mark.parametrize(
    ("job_status", "terminated", "reason", "text"),
    [
        (
            {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]},
            {"exitCode": 3, "reason": "Error",
             "message": json.dumps({"ok": False, "reason": "ChecksumMismatch", "error": "sha256 differs"})},
            "ChecksumMismatch",
            "sha256 differs",
        ),
        (
            {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                          "message": "Job was active longer than specified deadline"}]},
            None,
            "DeadlineExceeded",
            "longer than specified deadline",
        ),
        (
            {"failed": 2,
             "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
            {"exitCode": 137, "reason": "OOMKilled"},
            "OOMKilled",
            "exit code 137",
        ),
    ],
)  # fmt: skip
def test_failures_name_their_reason(
    job_status: dict[str, Any], terminated: dict[str, Any] | None, reason: str, text: str
) -> None:
    ds = dataset(status={"phase": "Preparing"})
    name = rds_build.child_name(ds)
    failed = pod(name, phase="Failed", terminated=terminated)
    plan = rds.plan(
        ds,
        observed=rds.Observed(jobs=[job_named(name, job_status)], pods=[failed]),
        settings=SETTINGS,
        now=NOW,
    )
    assert plan.status.phase == "Failed"
    assert plan.status.reason == reason
    assert text in (plan.status.message or "")
    assert plan.status.is_true("Failed") and not plan.status.is_true("Ready")
    assert plan.status.completion_time is not None
    assert plan.events == [("Warning", reason, plan.status.message)]


def test_unschedulable_pod_stays_pending_with_the_reason() -> None:
    ds = dataset()
    name = rds_build.child_name(ds)
    waiting = pod(
        name,
        phase="Pending",
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes"}
        ],
    )
    plan = rds.plan(
        ds,
        observed=rds.Observed(jobs=[job_named(name, {"active": 1})], pods=[waiting]),
        settings=SETTINGS,
        now=NOW,
    )
    assert plan.status.phase == "Pending" and plan.status.reason == "Unschedulable"


def ready_status(ds: api.Dataset) -> dict[str, Any]:
    name = rds_build.child_name(ds)
    done = pod(name, phase="Succeeded", terminated={"exitCode": 0, "message": json.dumps(RESULT)})
    plan = rds.plan(
        ds, observed=rds.Observed(jobs=[job_named(name, COMPLETE)], pods=[done]), settings=SETTINGS, now=NOW
    )
    return plan.status.to_api()


def test_spec_change_makes_a_new_job_deletes_the_old_and_keeps_the_last_version() -> None:
    old = dataset()
    old_name = rds_build.child_name(old)
    edited = dataset({**SPEC, "split": {"seed": 9}}, status=ready_status(old))
    new_name = rds_build.child_name(edited)
    observed = rds.Observed(
        jobs=[job_named(old_name, COMPLETE), job_named("someone-elses-job", uid="other")],
        configmaps=[job_named(old_name)],
        pods=[pod(old_name, phase="Succeeded")],
    )
    plan = rds.plan(edited, observed=observed, settings=SETTINGS, now=NOW)
    assert [(c["kind"], c["metadata"]["name"]) for c in plan.apply] == [
        ("ConfigMap", new_name),
        ("Job", new_name),
    ]
    assert plan.delete == [
        rplan.ChildRef("v1", "ConfigMap", old_name),
        rplan.ChildRef("batch/v1", "Job", old_name),
    ]
    status = plan.status
    assert status.phase == "Pending" and status.job_name == new_name
    assert status.digest == RESULT["digest"]  # the last prepared version stays usable meanwhile
    assert not status.is_true("Ready")
    assert plan.events == [("Normal", "SpecChanged", f"the spec changed: re-preparing with Job {new_name}")]


def test_new_digest_posts_an_event() -> None:
    ds = dataset()
    name = rds_build.child_name(ds)
    before = {**ready_status(ds), "phase": "Preparing"}
    newer = {**RESULT, "digest": "9" * 64, "storageUri": "pvc://data/datasets/churn/" + "9" * 64}
    done = pod(name, phase="Succeeded", terminated={"exitCode": 0, "message": json.dumps(newer)})
    plan = rds.plan(
        dataset(status=before),
        observed=rds.Observed(jobs=[job_named(name, COMPLETE)], pods=[done]),
        settings=SETTINGS,
        now=NOW,
    )
    # The same spec read again gave new data: a new version (a spec change says DigestChanged).
    assert (
        "Normal",
        "NewVersion",
        "re-reading the sources made version 999999999999 (990 rows), replacing 3f1c0ffee000; "
        "2 version(s) kept",
    ) in plan.events


def test_steady_state_has_no_events_and_stable_conditions() -> None:
    ds = dataset()
    stored = ready_status(ds)
    later = NOW + datetime.timedelta(hours=1)
    name = rds_build.child_name(ds)
    done = pod(name, phase="Succeeded", terminated={"exitCode": 0, "message": json.dumps(RESULT)})
    plan = rds.plan(
        dataset(status=stored),
        observed=rds.Observed(jobs=[job_named(name, COMPLETE)], pods=[done]),
        settings=SETTINGS,
        now=later,
    )
    assert plan.events == []
    assert plan.status.to_api() == stored  # unchanged: the framework writes nothing
