"""What a batch/v1 Job and its pods say, reduced to what a status needs.

The prepare and training Jobs end the same ways (done, failed by a pod-failure rule, a
termination message of the workload contract, a pod that cannot be scheduled), so one reader
serves every kind that runs a Job. Pure: the handlers pass in the observed Job and pods.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any, Literal

from mlops_operator.api import common

COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

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
    """The JSON object in ``message`` (what a workload wrote to /dev/termination-log, a run's config
    annotation), or None when it is not one."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _pod_sort_key(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def _rank(pod: dict[str, Any]) -> str:
    """An Indexed Job pod's completion index (its torch.distributed rank); "0" for other Jobs."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(COMPLETION_INDEX_ANNOTATION, "0"))


def _result_order(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rank 0 first (it alone writes a several-worker run's model and result), newest first."""
    newest = sorted(pods, key=_pod_sort_key, reverse=True)
    return sorted(newest, key=lambda p: _rank(p) != "0")


def unschedulable_since(pods: list[dict[str, Any]]) -> tuple[datetime.datetime, str] | None:
    """Since when a pod (the longest-waiting one) has been Unschedulable, and the scheduler's
    message; None when every pod found a node or has not been tried yet."""
    found: tuple[datetime.datetime, str] | None = None
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") not in (None, "Pending"):
            continue
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                since = common.parse_rfc3339(cond.get("lastTransitionTime"))
                if since is None:
                    continue
                if found is None or since < found[0]:
                    found = (since, str(cond.get("message") or "no node fits the pod")[:512])
    return found


def image_id(pods: list[dict[str, Any]]) -> str | None:
    """The image digest the kubelet reports for rank 0's (else any) training container."""
    for pod in _result_order(pods):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("imageID"):
                return str(cs["imageID"])[:512]
    return None


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
        for pod in _result_order(pods):
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
