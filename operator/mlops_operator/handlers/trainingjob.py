"""TrainingJob handler: read the run's children, let the pure reconciler decide, carry it out.

Thin on purpose: every decision is in ``reconcile.trainingjob``. This module reads what the
plan needs (the Job, its pods, the Dataset) and no more: a finished run whose spec did not
change reads nothing, so thousands of finished jobs cost no API calls on the resync timer,
until its TTL is due (then the Job alone, to know whether it is an older operator's run with a
ConfigMap to delete too). A run's config travels in its Job's pod template
(``trainingjob_build.CONFIG_ANNOTATION``); the ConfigMap is read only for a Job an older
operator made, when the status has lost the pinned Dataset version. It then deletes, applies
and patches what the plan says, observes the training metrics, and hands the status and Events
back to the framework.

A TrainingJob waiting for its Dataset is reconciled when that Dataset becomes Ready (an
event handler on Datasets), not only on the next resync.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from mlops_operator import metrics
from mlops_operator.api import common
from mlops_operator.api import trainingjob as api
from mlops_operator.handlers import framework
from mlops_operator.k8s import client as k8s_client
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import trainingjob_kueue as rkueue

RESYNC_SECONDS = 30.0
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _needs_children(tj: api.TrainingJob) -> bool:
    """False for a finished run of the current spec: its status is final, nothing to read."""
    return not (tj.status.phase in api.FINISHED_PHASES and tj.status.spec_hash == build.run_hash(tj.spec))


def _pods(ctx: framework.Context, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The Job's pods, by its uid (a replaced Job of the same name may leave old pods behind)."""
    meta = job.get("metadata") or {}
    pods = ctx.kube.list(
        "v1", "Pod", meta.get("namespace"), label_selector=f"{JOB_NAME_LABEL}={meta['name']}"
    )
    uid = meta.get("uid")
    return [
        p
        for p in pods
        if not uid
        or any(ref.get("uid") == uid for ref in (p.get("metadata") or {}).get("ownerReferences") or [])
    ]


def observe(ctx: framework.Context, tj: api.TrainingJob) -> rtj.Observed:
    ns = tj.metadata.namespace
    if not _needs_children(tj):
        if rtj.cleanup_due(tj, tj.status, ctx.now):
            return rtj.Observed(job=ctx.kube.get("batch/v1", "Job", build.job_name(tj), ns))
        return rtj.Observed()
    job = ctx.kube.get("batch/v1", "Job", build.job_name(tj), ns)
    dataset = None
    if job is None:
        dataset = ctx.kube.get(common.API_VERSION, "Dataset", tj.spec.dataset_ref.name, ns)
    configmap = None
    if job is not None and not tj.status.dataset_uri and build.job_config_text(job) is None:
        # Only a Job an older operator made keeps its config in a ConfigMap.
        configmap = ctx.kube.get("v1", "ConfigMap", build.config_name(tj), ns)
    service = None
    if job is None and tj.spec.workers > 1:
        service = ctx.kube.get("v1", "Service", build.service_name(tj), ns)
    return rtj.Observed(
        dataset=dataset,
        job=job,
        pods=_pods(ctx, job) if job else [],
        configmap=configmap,
        service=service,
        workload=_kueue_workload(ctx, tj, job),
    )


def _kueue_workload(
    ctx: framework.Context, tj: api.TrainingJob, job: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Kueue's Workload of a Job that waits suspended in a queue (why it waits), else nothing read.

    One LIST by the Job's uid label while the Job is queued; none once Kueue admitted it. A
    cluster without Kueue's CRDs (404) or an install without the permission (403) reads as no
    Workload: the run says it waits for Kueue.
    """
    if job is None or not build.kueue_queue(tj) or tj.spec.run_policy.suspend:
        return None
    if not (job.get("spec") or {}).get("suspend"):
        return None
    uid = (job.get("metadata") or {}).get("uid")
    try:
        found = ctx.kube.list(
            rkueue.API_VERSION,
            rkueue.KIND,
            tj.metadata.namespace,
            label_selector=f"{rkueue.JOB_UID_LABEL}={uid}" if uid else None,
        )
    except k8s_client.ApiError as exc:
        if exc.status in (403, 404):
            return None
        raise
    return rkueue.pick(found, uid)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = common.parse_rfc3339(start), common.parse_rfc3339(end)
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


def record_metrics(tj: api.TrainingJob, new: api.TrainingJobStatus) -> None:
    old = tj.status
    if new.phase in api.FINISHED_PHASES and old.phase != new.phase and new.duration_seconds is not None:
        metrics.TRAINING_DURATION.observe(new.duration_seconds)
    if new.pod_start_time and not old.pod_start_time and tj.metadata.creation_timestamp:
        waited = _seconds_between(tj.metadata.creation_timestamp, new.pod_start_time)
        if waited is not None:
            metrics.TRAINING_POD_START.observe(waited)


def reconcile(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
    tj = api.TrainingJob.from_body(body)
    plan = rtj.plan(tj, observed=observe(ctx, tj), now=ctx.now, settings=ctx.settings)
    outcome = framework.carry_out(ctx, tj.metadata.namespace, plan)
    record_metrics(tj, plan.status)
    return outcome


REGISTRATION = framework.register(
    kind=api.TrainingJob.crd.kind,
    plural=api.TrainingJob.crd.plural,
    reconcile=reconcile,
    interval=RESYNC_SECONDS,
)


@kopf.on.event(common.GROUP, common.VERSION, "datasets", id="trainingjobs-waiting")
def on_dataset_event(event: kopf.RawEvent, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """A Dataset became Ready: start the TrainingJobs that wait for it."""
    obj = event.get("object") or {}
    if event.get("type") == "DELETED" or (obj.get("status") or {}).get("phase") != "Ready":
        return
    meta = obj.get("metadata") or {}
    ctx = framework.memo_context(memo, logger)
    for body in ctx.kube.list(common.API_VERSION, "TrainingJob", meta.get("namespace")):
        waiting = (body.get("status") or {}).get("phase") in {None, "Pending", "WaitingForData"}
        if waiting and ((body.get("spec") or {}).get("datasetRef") or {}).get("name") == meta.get("name"):
            framework.run(REGISTRATION, ctx, body)
