"""Pieces every reconciler shares: owner, names, labels, settings and batch Job outcomes.

Pure: the handlers pass in what they read from the cluster and ``now``; these
functions return plain dicts ready for server-side apply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

from mlops_operator.api import common

MANAGED_BY = "mlops-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_SPEC_HASH = "mlops.dev/spec-hash"


@dataclasses.dataclass(frozen=True)
class Owner:
    """The custom resource whose children are being built."""

    kind: str
    name: str
    namespace: str
    uid: str
    generation: int = 0
    api_version: str = common.API_VERSION

    @classmethod
    def of(cls, resource: common.Resource) -> Owner:
        meta = resource.metadata
        return cls(
            kind=resource.crd.kind,
            name=meta.name,
            namespace=meta.namespace,
            uid=meta.uid,
            generation=meta.generation,
        )

    def reference(self, *, controller: bool = True) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": controller,
            "blockOwnerDeletion": True,
        }

    def labels(self, component: str) -> dict[str, str]:
        """Labels of every child: managed-by, part-of, component and ``mlops.dev/<kind>: <name>``."""
        return {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_PART_OF: "mlops",
            LABEL_COMPONENT: component,
            f"mlops.dev/{self.kind.lower()}": self.name,
        }

    def child_name(self, role: str, index: int | None = None) -> str:
        """Deterministic child name ``<parent>-<role>[-<n>]``, cut to 63 characters with a hash suffix."""
        base = f"{self.name}-{role}" if role else self.name
        if index is not None:
            base = f"{base}-{index}"
        if len(base) <= 63:
            return base
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        return f"{base[:54].rstrip('-')}-{digest}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Operator settings the builders need, passed explicitly (never read from globals)."""

    workload_image: str = "mlops-workloads:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    pvc_root: str = "/mnt/mlops"
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_label: str = "nvidia.com/gpu.present"
    gpu_taint_key: str = "nvidia.com/gpu"
    run_as_user: int = 1000
    # Where workload pods go by default (an admin's choice, e.g. a node pool for ML work); a
    # resource's own nodeSelector and tolerations are added on top.
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


def spec_hash(spec: Any) -> str:
    """A stable short hash of a spec (or any JSON-able value), for change detection in annotations."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def restricted_security_context(run_as_user: int) -> dict[str, Any]:
    """Container securityContext that passes the ``restricted`` Pod Security profile."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context(run_as_user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "fsGroup": run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def storage_volume(
    location: common.StorageLocation, settings: Settings, name: str = "storage"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (volume, volumeMount) pair that makes ``location`` visible at its ``local_path``."""
    if location.scheme == "pvc":
        volume = {"name": name, "persistentVolumeClaim": {"claimName": location.claim}}
        mount = {"name": name, "mountPath": f"{settings.pvc_root}/pvc/{location.claim}"}
    else:
        volume = {"name": name, "hostPath": {"path": location.path, "type": "DirectoryOrCreate"}}
        mount = {"name": name, "mountPath": location.path}
    return volume, mount


def gpu_scheduling(settings: Settings) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Node selector and toleration added to pods that ask for GPUs."""
    return (
        {settings.gpu_node_label: "true"},
        [{"key": settings.gpu_taint_key, "operator": "Exists", "effect": "NoSchedule"}],
    )


def placement(
    settings: Settings,
    *,
    gpu: int = 0,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A workload pod's nodeSelector and tolerations: the operator's defaults, the GPU pool when
    it asks for GPUs, then the resource's own (which win on a key both set)."""
    selector = dict(settings.node_selector)
    tols = [dict(t) for t in settings.tolerations]
    if gpu:
        gpu_selector, gpu_tols = gpu_scheduling(settings)
        selector.update(gpu_selector)
        tols += gpu_tols
    selector.update(node_selector or {})
    for tol in tolerations or []:
        if tol not in tols:
            tols.append(tol)
    return selector, tols


# ---------------------------------------------------------------------------------------------
# batch/v1 Job outcomes
# ---------------------------------------------------------------------------------------------

JobState = Literal["Pending", "Suspended", "Running", "Succeeded", "Failed"]


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """What a Job and its pods say, reduced to what a status needs."""

    state: JobState
    reason: str = ""
    message: str = ""
    result: dict[str, Any] | None = None
    start_time: str | None = None
    completion_time: str | None = None
    attempts: int = 0
    pod_started: str | None = None


def _job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _termination(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            return dict(term)
    return None


def parse_result(message: str | None) -> dict[str, Any] | None:
    """The JSON a workload wrote to /dev/termination-log, or None when it is not JSON."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _pod_sort_key(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def _pod_failure(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The most telling reason a pod of the Job failed or cannot run, newest pod first."""
    for pod in sorted(pods, key=_pod_sort_key, reverse=True):
        status = pod.get("status") or {}
        term = _termination(pod)
        if term and term.get("exitCode", 0) != 0:
            detail = parse_result(term.get("message")) or {}
            if detail.get("ok") is False and detail.get("reason"):
                # The workload said why (SchemaMismatch, InvalidParams, ...): that is what to fix.
                return str(detail["reason"])[:128], str(detail.get("error") or detail["reason"])[:1024]
            reason = term.get("reason") or "Error"
            text = term.get("message") or f"exit code {term.get('exitCode')}"
            return str(reason), str(text)[:1024]
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in {
                "ImagePullBackOff",
                "ErrImagePull",
                "CreateContainerConfigError",
                "InvalidImageName",
                "CrashLoopBackOff",
            }:
                return str(waiting["reason"]), str(waiting.get("message") or waiting["reason"])[:1024]
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                return "Unschedulable", str(cond.get("message") or "no node fits the pod")[:1024]
    return None


def job_outcome(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> JobOutcome:
    """Reduce a batch/v1 Job and its pods to one outcome.

    Failure reasons name what a user must fix: ``OOMKilled``, ``DeadlineExceeded``,
    ``BackoffLimitExceeded``, ``ImagePullBackOff``, ``Unschedulable`` or the workload's own
    error from its termination message.

    Only the Job's conditions end a run (Complete / SuccessCriteriaMet, Failed /
    FailureTarget). Until then a pod that already finished, well or badly, means the run is
    Running (``PodSucceeded``, ``Retrying``), never Pending again: the Job controller records
    a pod's end a moment after the kubelet does.
    """
    if job is None:
        return JobOutcome(state="Pending", reason="JobNotCreated")
    status = job.get("status") or {}
    # The Job controller adds FailureTarget before it moves the last failed pods from
    # uncountedTerminatedPods into status.failed: count those (and failed pods seen) too, or a
    # finished run would keep an attempt count one short for good.
    uncounted = status.get("uncountedTerminatedPods") or {}
    failed_pods = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
    failed_count = max(int(status.get("failed") or 0) + len(uncounted.get("failed") or []), failed_pods)
    succeeded_count = int(status.get("succeeded") or 0) + len(uncounted.get("succeeded") or [])
    attempts = failed_count + succeeded_count + int(status.get("active") or 0)
    started = [
        str((p.get("status") or {})["startTime"]) for p in pods if (p.get("status") or {}).get("startTime")
    ]
    pod_started = min(started) if started else None
    base: dict[str, Any] = {
        "start_time": status.get("startTime"),
        "completion_time": status.get("completionTime"),
        "attempts": attempts,
        "pod_started": pod_started,
    }
    complete = _job_condition(job, "Complete") or _job_condition(job, "SuccessCriteriaMet")
    if complete:
        result = None
        for pod in sorted(pods, key=_pod_sort_key, reverse=True):
            term = _termination(pod)
            if term and term.get("exitCode", 1) == 0:
                result = parse_result(term.get("message"))
                if result is not None:
                    break
        return JobOutcome(
            state="Succeeded", reason="Completed", message="the job completed", result=result, **base
        )
    failed = _job_condition(job, "Failed") or _job_condition(job, "FailureTarget")
    if failed:
        job_reason = str(failed.get("reason") or "Failed")
        job_message = str(failed.get("message") or "")
        pod_failure = _pod_failure(pods)
        if job_reason == "DeadlineExceeded":
            return JobOutcome(
                state="Failed",
                reason="DeadlineExceeded",
                message=job_message or "the job ran past activeDeadlineSeconds",
                **base,
            )
        if pod_failure:
            reason, text = pod_failure
            if job_reason == "BackoffLimitExceeded" and reason not in {"OOMKilled"}:
                text = f"{text} (backoff limit reached after {failed_count} failed attempts)"
            return JobOutcome(state="Failed", reason=reason, message=text, **base)
        return JobOutcome(state="Failed", reason=job_reason, message=job_message or job_reason, **base)
    if job.get("spec", {}).get("suspend"):
        return JobOutcome(state="Suspended", reason="Suspended", message="the job is suspended", **base)
    pod_failure = _pod_failure(pods)
    if pod_failure and pod_failure[0] in {
        "Unschedulable",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
    }:
        reason, text = pod_failure
        return JobOutcome(state="Pending", reason=reason, message=text, **base)
    running = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
    if running or status.get("ready"):
        return JobOutcome(state="Running", reason="PodRunning", message="the pod is running", **base)
    # The kubelet reports a pod finished before the Job controller counts it: the run is past
    # Pending, it is finishing (or about to be retried), so it reads Running until the Job says.
    if any(_finished_ok(p) for p in pods):
        return JobOutcome(
            state="Running",
            reason="PodSucceeded",
            message="the pod finished; waiting for the Job to record its completion",
            **base,
        )
    if failed_count:
        return JobOutcome(
            state="Running",
            reason="Retrying",
            message=f"{failed_count} attempt(s) failed; waiting for the Job to retry or give up",
            **base,
        )
    return JobOutcome(state="Pending", reason="PodPending", message="waiting for the pod to start", **base)


def _finished_ok(pod: dict[str, Any]) -> bool:
    """Whether the pod's container ended with exit code 0 (the pod phase may still lag)."""
    if (pod.get("status") or {}).get("phase") == "Succeeded":
        return True
    term = _termination(pod)
    return term is not None and term.get("exitCode") == 0
