"""Why a Kueue-queued run waits: Kueue's own words, read from the Job's Workload.

Kueue admits a batch/v1 Job through a ``Workload`` it creates for it (``kueue.x-k8s.io/v1beta2``,
labelled ``kueue.x-k8s.io/job-uid``); whether the Job waits for quota, was preempted, sits in a
queue that does not exist, or passed admission and is about to start is in that Workload's
conditions (``QuotaReserved``, ``Admitted``, ``Evicted``, ``Preempted``, ``Requeued``), never on the
Job. This module turns them into the TrainingJob's ``Queued`` reason and message, so that
``kubectl get tj`` says what ``kubectl describe workload`` would. Pure: the handler reads the
Workload only while the Job waits suspended in a queue.

Reasons: ``Queued`` (waiting for quota, Kueue's message says what is short), ``Preempted`` (Kueue
evicted the running Job to make room for another workload and requeued it: the run starts again
when it is admitted again), ``Inadmissible`` (the LocalQueue or its ClusterQueue is missing or
stopped), ``Deactivated`` (someone set the Workload inactive), ``AdmissionChecks`` (quota is
reserved, admission checks still run) and ``Admitted`` (Kueue is un-suspending the Job).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

API_VERSION = "kueue.x-k8s.io/v1beta2"
KIND = "Workload"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
MESSAGE_MAX = 1024


def _conditions(workload: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for cond in (workload.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type"):
            found[str(cond["type"])] = cond
    return found


def _true(cond: Mapping[str, Any] | None) -> bool:
    return cond is not None and cond.get("status") == "True"


def _false(cond: Mapping[str, Any] | None) -> bool:
    return cond is not None and cond.get("status") == "False"


def pick(workloads: list[dict[str, Any]], job_uid: str | None) -> dict[str, Any] | None:
    """The Job's Workload among those listed by its uid label (the newest when there are more)."""
    owned = [
        w
        for w in workloads
        if not job_uid
        or any(ref.get("uid") == job_uid for ref in (w.get("metadata") or {}).get("ownerReferences") or [])
        or ((w.get("metadata") or {}).get("labels") or {}).get(JOB_UID_LABEL) == job_uid
    ]
    if not owned:
        return None
    return max(owned, key=lambda w: str((w.get("metadata") or {}).get("creationTimestamp") or ""))


def wait_state(queue: str, job_name: str, workload: Mapping[str, Any] | None) -> tuple[str, str]:
    """(reason, message) of a run whose Job waits suspended in Kueue queue ``queue``."""
    where = f"Kueue queue {queue!r}"
    if workload is None:
        return "Queued", f"waiting for Kueue to take Job {job_name} into {where}"
    name = (workload.get("metadata") or {}).get("name") or "?"
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    conds = _conditions(workload)
    cluster_queue = (status.get("admission") or {}).get("clusterQueue")
    requeues = int((status.get("requeueState") or {}).get("count") or 0)
    again = f" ({requeues} requeue{'s' if requeues != 1 else ''})" if requeues else ""

    def said(cond: Mapping[str, Any] | None) -> str:
        text = str((cond or {}).get("message") or "").strip()
        return f": {text}" if text else ""

    if spec.get("active") is False:
        return (
            "Deactivated",
            f"Workload {name} in {where} is inactive (spec.active=false){said(conds.get('Evicted'))}",
        )
    if _true(conds.get("Admitted")):
        via = f" to ClusterQueue {cluster_queue!r}" if cluster_queue else ""
        return "Admitted", f"Kueue admitted Workload {name}{via}; the Job starts"
    reserved = conds.get("QuotaReserved")
    if _true(reserved):
        pending = [
            str(check.get("name"))
            for check in status.get("admissionChecks") or []
            if isinstance(check, Mapping) and check.get("state") != "Ready"
        ]
        checks = (
            f" waiting for admission checks {', '.join(pending)}" if pending else " waiting for admission"
        )
        return "AdmissionChecks", f"Workload {name} holds quota in ClusterQueue {cluster_queue!r};{checks}"
    evicted, preempted = conds.get("Evicted"), conds.get("Preempted")
    if _true(preempted) or (_true(evicted) and (evicted or {}).get("reason") == "Preempted"):
        why = said(preempted if _true(preempted) else evicted)
        queued = said(reserved) if _false(reserved) else ""
        return "Preempted", f"Kueue preempted Workload {name}{why}; requeued in {where}{again}{queued}"
    if _false(reserved) and (reserved or {}).get("reason") == "Inadmissible":
        return "Inadmissible", f"Workload {name} cannot be admitted from {where}{said(reserved)}"
    if _true(evicted):
        return (
            "Queued",
            f"Kueue evicted Workload {name} ({(evicted or {}).get('reason')}){said(evicted)}; "
            f"requeued in {where}{again}",
        )
    if _false(reserved):
        return "Queued", f"Workload {name} waits in {where}{again}{said(reserved)}"
    return "Queued", f"Workload {name} waits in {where}{again}"


def clipped(message: str) -> str:
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 1] + "…"
