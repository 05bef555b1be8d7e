"""Shared pieces: conditions, resources, storage URIs, child naming and batch Job outcomes."""

from __future__ import annotations

import datetime
import json

import pytest

from mlops_operator.api import common
from mlops_operator.k8s import client
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)


def test_condition_transition_time_moves_only_when_status_changes() -> None:
    s = common.StatusBase().with_condition("Ready", "False", reason="Pending", now=NOW)
    s = s.with_condition("Ready", "False", reason="StillPending", message="x", now=LATER)
    cond = s.condition("Ready")
    assert (
        cond is not None
        and cond.last_transition_time == "2026-01-02T03:04:05Z"
        and cond.reason == "StillPending"
    )
    s = s.with_condition("Ready", "True", reason="Done", now=LATER)
    assert s.condition("Ready").last_transition_time == "2026-01-02T03:09:05Z"  # type: ignore[union-attr]
    assert s.is_true("Ready") and not s.is_true("Failed")
    assert s.to_api()["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:09:05Z"


def test_resources_map_gpu_and_default_memory_limit() -> None:
    r = common.Resources(cpu="2", memory="4Gi", gpu=1)
    assert r.to_requirements() == {
        "requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    assert common.Resources().to_requirements() == {}
    with pytest.raises(ValueError, match="cpu"):
        common.Resources(cpu="-1")
    with pytest.raises(ValueError, match="gpu"):
        common.Resources(gpu=-1)


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("pvc://data/datasets/iris", "/mnt/mlops/pvc/data/datasets/iris"),
        ("pvc://data", "/mnt/mlops/pvc/data"),
        ("file:///var/lib/mlops/x", "/var/lib/mlops/x"),
    ],
)
def test_storage_uris_round_trip(uri: str, local: str) -> None:
    loc = common.StorageLocation.parse(uri)
    assert loc.local_path() == local
    assert loc.uri() == uri
    assert common.StorageLocation.parse(loc.join("v1", "model").uri()).local_path() == f"{local}/v1/model"


@pytest.mark.parametrize(
    "uri", ["gs://bucket/x", "s3://", "pvc://", "file://relative", "pvc://Bad_Claim/x", ""]
)
def test_bad_storage_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="storage URI"):
        common.StorageLocation.parse(uri)


def test_owner_names_labels_and_reference() -> None:
    owner = rowner.Owner(kind="TrainingJob", name="iris", namespace="ns", uid="u-1")
    assert owner.child_name("train") == "iris-train"
    assert owner.child_name("trial", 7) == "iris-trial-7"
    long = rowner.Owner(kind="Dataset", name="x" * 60, namespace="ns", uid="u").child_name("prepare")
    assert len(long) <= 63 and long == rowner.Owner(
        kind="Dataset", name="x" * 60, namespace="ns", uid="u"
    ).child_name("prepare")
    assert owner.labels("train")["mlops.dev/trainingjob"] == "iris"
    assert owner.labels("train")["app.kubernetes.io/managed-by"] == "mlops-operator"
    ref = owner.reference()
    assert ref["controller"] is True and ref["uid"] == "u-1" and ref["apiVersion"] == "mlops.dev/v1alpha1"


def _job(conditions: list[dict[str, str]] | None = None, **status: object) -> dict[str, object]:
    return {"spec": {}, "status": {"conditions": conditions or [], **status}}


def _pod(
    *,
    exit_code: int | None = None,
    reason: str = "",
    message: str = "",
    phase: str = "Running",
    waiting: str | None = None,
    unschedulable: bool = False,
) -> dict[str, object]:
    status: dict[str, object] = {"phase": phase, "startTime": "2026-01-02T03:04:06Z"}
    if exit_code is not None:
        status["containerStatuses"] = [
            {"state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}}
        ]
    if waiting:
        status["containerStatuses"] = [{"state": {"waiting": {"reason": waiting, "message": "pull failed"}}}]
    if unschedulable:
        status = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/5 nodes: Insufficient nvidia.com/gpu.",
                }
            ],
        }
    return {"metadata": {"creationTimestamp": "2026-01-02T03:04:05Z"}, "status": status}


def test_parse_rfc3339_reads_kubernetes_timestamps_and_nothing_else() -> None:
    parsed = common.parse_rfc3339("2026-01-02T03:04:05Z")
    assert parsed == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert common.rfc3339(parsed) == "2026-01-02T03:04:05Z"
    assert [common.parse_rfc3339(v) for v in (None, "", "yesterday", 5)] == [None] * 4


def test_job_outcome_success_carries_the_result() -> None:
    result = {"ok": True, "metrics": {"accuracy": 0.9}}
    out = rjobs.job_outcome(
        _job([{"type": "Complete", "status": "True"}], succeeded=1, completionTime="t"),
        [_pod(exit_code=0, reason="Completed", message=json.dumps(result), phase="Succeeded")],
    )
    assert out.state == "Succeeded" and out.result == result and out.attempts == 1
    assert out.pod_started == "2026-01-02T03:04:06Z"


@pytest.mark.parametrize(
    ("job_reason", "pod", "reason"),
    [
        ("BackoffLimitExceeded", _pod(exit_code=137, reason="OOMKilled", phase="Failed"), "OOMKilled"),
        ("DeadlineExceeded", _pod(phase="Failed"), "DeadlineExceeded"),
        (
            "BackoffLimitExceeded",
            _pod(
                exit_code=1,
                reason="Error",
                message='{"ok":false,"reason":"X","error":"bad column"}',
                phase="Failed",
            ),
            "X",
        ),
        ("BackoffLimitExceeded", _pod(phase="Failed"), "BackoffLimitExceeded"),
    ],
)
def test_job_outcome_failure_reasons(job_reason: str, pod: dict[str, object], reason: str) -> None:
    out = rjobs.job_outcome(
        _job([{"type": "Failed", "status": "True", "reason": job_reason}], failed=2), [pod]
    )
    assert out.state == "Failed" and out.reason == reason
    if reason == "X":
        assert out.message.startswith("bad column")


def test_job_outcome_counts_failed_pods_the_job_has_not_counted_yet() -> None:
    # Kubernetes 1.34 adds FailureTarget while the last failed pod is still in
    # uncountedTerminatedPods: the run is over, and it had two attempts, not one.
    job = _job(
        [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}],
        failed=1,
        uncountedTerminatedPods={"failed": ["uid-2"]},
    )
    pods = [
        _pod(exit_code=1, reason="Error", phase="Failed"),
        _pod(exit_code=1, reason="Error", phase="Failed"),
    ]
    out = rjobs.job_outcome(job, pods)
    assert out.state == "Failed" and out.attempts == 2
    assert "after 2 failed attempts" in out.message
    # Failed pods seen count even when the Job's status lags further.
    assert rjobs.job_outcome(_job([{"type": "FailureTarget", "status": "True"}]), pods).attempts == 2


def test_job_outcome_pending_reasons() -> None:
    assert rjobs.job_outcome(None, []).state == "Pending"
    out = rjobs.job_outcome(_job(), [_pod(unschedulable=True)])
    assert (out.state, out.reason) == ("Pending", "Unschedulable") and "nvidia.com/gpu" in out.message
    out = rjobs.job_outcome(_job(), [_pod(waiting="ImagePullBackOff", phase="Pending")])
    assert (out.state, out.reason) == ("Pending", "ImagePullBackOff")
    assert rjobs.job_outcome(_job(active=1), [_pod()]).state == "Running"
    suspended = {"spec": {"suspend": True}, "status": {}}
    assert rjobs.job_outcome(suspended, []).state == "Suspended"


def test_job_outcome_a_finished_pod_before_the_job_knows_is_not_pending() -> None:
    """Issue 11 item 3: the kubelet reports the pod Succeeded, the Job controller has dropped
    ``ready`` but not yet counted it or set Complete. The run is finishing, not Pending."""
    result = json.dumps({"ok": True})
    done = _pod(exit_code=0, reason="Completed", message=result, phase="Succeeded")
    for lagging in (_job(active=1, ready=0), _job(active=0, uncountedTerminatedPods={"succeeded": ["u"]})):
        out = rjobs.job_outcome(lagging, [done])
        assert (out.state, out.reason) == ("Running", "PodSucceeded")
    # The container ended well while the pod phase still says Running: Running too.
    ended = _pod(exit_code=0, reason="Completed", phase="Running")
    assert rjobs.job_outcome(_job(active=1), [ended]).state == "Running"
    # A failed pod the Job has not yet retried or given up on: the run is Running, not Pending.
    failed = _pod(exit_code=1, reason="Error", phase="Failed")
    out = rjobs.job_outcome(_job(active=0, failed=1), [failed])
    assert (out.state, out.reason) == ("Running", "Retrying")
    # ...and so is its retry's new pod, until that one cannot start for a reason to report.
    assert rjobs.job_outcome(_job(active=1, failed=1), [failed, _pod(phase="Pending")]).state == "Running"


def test_resource_paths() -> None:
    assert client.resource_path("batch/v1", "Job", "ns", "j") == "/apis/batch/v1/namespaces/ns/jobs/j"
    assert client.resource_path("v1", "Pod", "ns") == "/api/v1/namespaces/ns/pods"
    assert client.resource_path("v1", "Node", "ns", "n") == "/api/v1/nodes/n"
    assert (
        client.resource_path("mlops.dev/v1alpha1", "HyperparameterSweep", "ns", "s", "status")
        == "/apis/mlops.dev/v1alpha1/namespaces/ns/hyperparametersweeps/s/status"
    )
    assert client.plural("NetworkPolicy") == "networkpolicies" and client.plural("Dataset") == "datasets"


def test_placement_merges_operator_defaults_gpu_pool_and_the_resources_own() -> None:
    real = {"key": "mlops.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    settings = rworkload.WorkloadSettings(node_selector={"pool": "ml"}, tolerations=(real,))
    selector, tols = rworkload.placement(settings, gpu=1, node_selector={"pool": "big"}, tolerations=[real])
    assert selector == {"pool": "big", "nvidia.com/gpu.present": "true"}
    assert tols == [real, {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert rworkload.placement(rworkload.WorkloadSettings()) == ({}, [])


def test_workload_placement_comes_from_the_environment() -> None:
    from mlops_operator.handlers import settings as handler_settings

    config = handler_settings.OperatorConfig.from_env(
        {
            "MLOPS_WORKLOAD_NODE_SELECTOR": '{"mlops.dev/node-pool": "real"}',
            "MLOPS_WORKLOAD_TOLERATIONS": '[{"key": "mlops.dev/real-node", "operator": "Exists"}]',
        }
    )
    assert config.settings.node_selector == {"mlops.dev/node-pool": "real"}
    assert config.settings.tolerations == ({"key": "mlops.dev/real-node", "operator": "Exists"},)
    with pytest.raises(ValueError, match="MLOPS_WORKLOAD_NODE_SELECTOR"):
        handler_settings.OperatorConfig.from_env({"MLOPS_WORKLOAD_NODE_SELECTOR": "[1]"})
