"""A Kueue-queued TrainingJob says why it waits, in Kueue's words, from the Job's Workload."""

from __future__ import annotations

import copy
from typing import Any

from test_trainingjob_reconcile import NOW, SETTINGS, created_job, make_tj, pod, start, stored

from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import trainingjob_kueue as rkueue

QUEUE = {"kueue.x-k8s.io/queue-name": "team-a"}
SHORT = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
    "gpu, 2 more needed"
)


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def workload(*conditions: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "job-iris-rf-3c2a1",
            "labels": {rkueue.JOB_UID_LABEL: "job-uid"},
            "ownerReferences": [{"kind": "Job", "uid": "job-uid"}],
            "creationTimestamp": "2025-01-01T12:00:01Z",
        },
        "spec": {"queueName": "team-a", "active": True},
        "status": {"conditions": list(conditions), **status},
    }


def test_no_workload_yet_waits_for_kueue() -> None:
    reason, message = rkueue.wait_state("team-a", "iris-rf-train", None)
    assert reason == "Queued" and "team-a" in message and "iris-rf-train" in message


def test_pending_quota_carries_kueues_message() -> None:
    reason, message = rkueue.wait_state(
        "team-a", "j", workload(cond("QuotaReserved", "False", "Pending", SHORT))
    )
    assert reason == "Queued"
    assert SHORT in message and "job-iris-rf-3c2a1" in message


def test_inadmissible_queue() -> None:
    wl = workload(cond("QuotaReserved", "False", "Inadmissible", "LocalQueue team-a doesn't exist"))
    reason, message = rkueue.wait_state("team-a", "j", wl)
    assert reason == "Inadmissible" and "doesn't exist" in message


def test_preempted_and_requeued() -> None:
    wl = workload(
        cond("QuotaReserved", "False", "Pending", SHORT),
        cond(
            "Evicted",
            "True",
            "Preempted",
            "Preempted to accommodate a workload due to reclamation within the cohort",
        ),
        cond(
            "Preempted",
            "True",
            "InCohortReclamation",
            "Preempted to accommodate a workload (UID: x) due to reclamation within the cohort",
        ),
        cond("Requeued", "True", "Preempted", ""),
        requeueState={"count": 1},
    )
    reason, message = rkueue.wait_state("team-a", "j", wl)
    assert reason == "Preempted"
    assert "reclamation within the cohort" in message and "1 requeue" in message and SHORT in message


def test_quota_reserved_waits_for_checks_then_admitted() -> None:
    wl = workload(
        cond("QuotaReserved", "True", "QuotaReserved"),
        admission={"clusterQueue": "team-a-cq"},
        admissionChecks=[{"name": "provisioning", "state": "Pending"}],
    )
    reason, message = rkueue.wait_state("team-a", "j", wl)
    assert reason == "AdmissionChecks" and "provisioning" in message and "team-a-cq" in message
    wl["status"]["conditions"].append(cond("Admitted", "True", "Admitted"))
    reason, message = rkueue.wait_state("team-a", "j", wl)
    assert reason == "Admitted" and "team-a-cq" in message


def test_deactivated() -> None:
    wl = workload(cond("QuotaReserved", "False", "Pending", SHORT))
    wl["spec"]["active"] = False
    assert rkueue.wait_state("team-a", "j", wl)[0] == "Deactivated"


def test_pick_takes_the_jobs_workload() -> None:
    mine = workload()
    other = copy.deepcopy(mine)
    other["metadata"].update(labels={rkueue.JOB_UID_LABEL: "old"}, ownerReferences=[{"uid": "old"}])
    assert rkueue.pick([other, mine], "job-uid") is mine
    assert rkueue.pick([other], "job-uid") is None
    assert rkueue.pick([], "job-uid") is None


def test_clipped_fits_status_message() -> None:
    assert len(rkueue.clipped("x" * 5000)) == rkueue.MESSAGE_MAX
    assert rkueue.clipped("short") == "short"


def test_queued_run_reports_kueues_reason_and_a_preemption_warns() -> None:
    tj, plan = start(make_tj(labels=QUEUE))
    job = created_job(plan)
    job["metadata"]["uid"] = "job-uid"
    waiting = workload(cond("QuotaReserved", "False", "Pending", SHORT))
    plan = rtj.plan(tj, observed=rtj.Observed(job=job, workload=waiting), now=NOW, settings=SETTINGS)
    assert plan.status.phase == "Queued" and plan.status.reason == "Queued"
    assert SHORT in (plan.status.message or "")
    tj = stored(tj, plan)
    # Admitted and running.
    job["spec"]["suspend"] = False
    job["status"] = {"active": 1}
    plan = rtj.plan(
        tj, observed=rtj.Observed(job=job, pods=[pod(phase="Running")]), now=NOW, settings=SETTINGS
    )
    assert plan.status.phase == "Running"
    tj = stored(tj, plan)
    # Kueue preempts: it suspends the Job again; the run goes back to Queued (a pause), with a Warning.
    job["spec"]["suspend"] = True
    job["status"] = {"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]}
    preempted = workload(
        cond("QuotaReserved", "False", "Pending", SHORT),
        cond("Evicted", "True", "Preempted", "Preempted to accommodate a higher priority workload"),
        cond("Preempted", "True", "InClusterQueue", "Preempted to accommodate a higher priority workload"),
        requeueState={"count": 1},
    )
    plan = rtj.plan(tj, observed=rtj.Observed(job=job, workload=preempted), now=NOW, settings=SETTINGS)
    assert plan.status.phase == "Queued" and plan.status.reason == "Preempted"
    assert plan.patch == []  # we never un-suspend (nor touch) a Kueue-managed Job
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "Preempted")]
    # Still waiting on the next pass: no second Event.
    again = rtj.plan(
        stored(tj, plan), observed=rtj.Observed(job=job, workload=preempted), now=NOW, settings=SETTINGS
    )
    assert again.events == [] and again.status.reason == "Preempted"
