"""Reconcile a TrainingJob: (spec, Dataset, Job, pods, now) → children to apply/patch/delete + status.

Pure, so every branch is a unit test: the handler reads the cluster, calls ``plan`` and
carries out the returned ``Plan``. The rules, in order:

1. A spec the estimator cannot take (bad params, a metric it cannot give, a GPU it cannot
   use) fails at once with ``InvalidSpec``: no pod ever starts.
2. A finished run stays finished: its status is kept, and ``ttlSecondsAfterFinished`` after
   completion the Job is deleted (the TrainingJob and its results stay), with the ConfigMap of
   a run an older operator started (its Job has no config annotation).
   Editing the spec of a finished job (a new ``run_hash``) starts a new run.
3. Without a Job, the run waits for the Dataset to be Ready (``WaitingForData``), pins its
   version (digest and directory, so a re-prepared or refreshed Dataset does not change a
   run), and creates the Job (suspended when ``runPolicy.suspend`` or Kueue asks), whose pod
   template carries the run's config (``trainingjob_build.CONFIG_ANNOTATION``): no ConfigMap.
   ``datasetRef.version`` pins one of the versions the Dataset keeps
   (``status.versions``) instead of its current one; a version it does not keep fails the run
   with ``DatasetVersionNotFound`` once the Dataset is Ready and not re-reading its sources.
4. With a Job, its outcome (``common.job_outcome``) becomes the phase; ``suspend`` is kept in
   step with the spec, except that a Kueue-managed Job is never un-suspended by us.
5. Phases of one run move forward only: Pending / WaitingForData → Running → Succeeded or
   Failed (``PHASE_RANK``). Caches lag (a pod seen Succeeded before its Job says Complete, a
   retry's new pod still Pending after the first one ran), so an observation behind the
   stored phase of the same run keeps the stored phase (with the observation's reason). The
   only ways back are a pause, Suspended (``runPolicy.suspend``) or Queued (Kueue suspends a
   Job to queue or preempt it), and a new run (a new ``run_hash``), which starts at Pending.

The conditions GitOps tools read (``StatusBase.with_progress``): Reconciling while the run is
Pending, WaitingForData, Queued or Running (Kueue-queued is work still to happen); Ready once
it Succeeded; Stalled, with the reason, once it Failed. A Suspended run is Current but not
Ready: it is where the spec asked it to be, and a Flux health check must not wait for it.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any

import pydantic

from mlops_operator.api import common, rightsizing
from mlops_operator.api import trainingjob as api
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import trainingjob_kueue as kueue
from mlops_operator.reconcile import workload as rworkload

CONDITIONS: tuple[str, ...] = ("Running", "Succeeded", "Failed", "Suspended")
# Rule 5: how far a run has got. A pass never lowers it within one run, except into a pause.
PHASE_RANK: dict[str, int] = {
    "Pending": 0,
    "WaitingForData": 0,
    "Queued": 0,
    "Suspended": 0,
    "Running": 1,
    "Succeeded": 2,
    "Failed": 2,
}
PAUSED_PHASES: tuple[str, ...] = ("Suspended", "Queued")
KUEUE_PROBLEMS = frozenset({"Preempted", "Inadmissible", "Deactivated"})  # Warning Events while Queued


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the handler read: the Dataset named by datasetRef, the run's Job and pods, and the
    ConfigMap of a run an older operator started (a Job without the config annotation)."""

    dataset: dict[str, Any] | None = None
    job: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    configmap: dict[str, Any] | None = None
    service: dict[str, Any] | None = None  # a several-worker run's rendezvous Service
    workload: dict[str, Any] | None = None  # Kueue's Workload of a Job waiting in a queue


@dataclasses.dataclass
class Plan(rplan.Plan[api.TrainingJobStatus]):
    """The generic plan; its ``wake_at`` is when the TTL deletes the children or a waiting
    worker's scheduling deadline runs out."""


@dataclasses.dataclass(frozen=True)
class DatasetState:
    ready: bool
    reason: str
    message: str
    digest: str = ""
    uri: str = ""
    task: str | None = None
    permanent: bool = False  # waiting cannot help: the run fails with the reason


METRICS_MAX = 16  # status.metrics maxProperties


def _bare(digest: str) -> str:
    return digest.removeprefix("sha256:").lower()


def short_digest(digest: str | None) -> str | None:
    """The first 12 hex characters of a digest (what ``kubectl get`` shows), None without one."""
    return (_bare(digest)[:12] or None) if digest else None


def _task(status: dict[str, Any]) -> str | None:
    task = status.get("task")
    return task if task in {"classification", "regression"} else None


def pinned_version(name: str, status: dict[str, Any], version: str) -> DatasetState:
    """The Dataset version ``datasetRef.version`` names: a digest or a unique prefix of one, among
    the versions the Dataset keeps (its current one included)."""
    kept: dict[str, str] = {}
    for entry in status.get("versions") or []:
        if isinstance(entry, dict) and entry.get("digest") and entry.get("storageUri"):
            kept.setdefault(str(entry["digest"]), str(entry["storageUri"]))
    if status.get("digest") and status.get("storageUri"):
        kept.setdefault(str(status["digest"]), str(status["storageUri"]))
    wanted = _bare(version)
    matches = [d for d in kept if _bare(d).startswith(wanted)]
    if len(matches) == 1:
        digest = matches[0]
        return DatasetState(
            True,
            "DatasetReady",
            f"Dataset {name!r} keeps version {_bare(digest)[:12]}",
            digest=digest,
            uri=kept[digest],
            task=_task(status),
        )
    listed = ", ".join(_bare(d)[:12] for d in kept) or "none yet"
    if matches:
        return DatasetState(
            False,
            "DatasetVersionAmbiguous",
            f"datasetRef.version {version!r} matches {len(matches)} versions of Dataset {name!r} "
            f"({', '.join(_bare(d)[:12] for d in matches)}); give more of the digest",
            permanent=True,
        )
    settled = status.get("phase") == "Ready" and status.get("reason") != "Refreshing"
    wait = "" if settled else "; waiting for its preparation to finish"
    message = f"Dataset {name!r} keeps no version {version!r} (datasetRef.version); it keeps: {listed}{wait}"
    return DatasetState(False, "DatasetVersionNotFound", message[:1024], permanent=settled)


def dataset_state(name: str, dataset: dict[str, Any] | None, version: str | None = None) -> DatasetState:
    """Whether the Dataset is Ready, read from its status as a plain dict (any Dataset version);
    with ``version``, whether it keeps that version (whatever it is doing now)."""
    if dataset is None:
        return DatasetState(False, "DatasetNotFound", f"Dataset {name!r} does not exist (yet)")
    status = dataset.get("status") or {}
    if version:
        return pinned_version(name, status, version)
    phase = status.get("phase")
    ready_cond = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    uri = status.get("storageUri") or ""
    digest = status.get("digest") or ""
    if (phase == "Ready" or ready_cond) and uri:
        task = status.get("task")
        return DatasetState(
            True,
            "DatasetReady",
            f"Dataset {name!r} is Ready",
            digest=digest,
            uri=uri,
            task=task if task in {"classification", "regression"} else None,
        )
    if phase == "Failed":
        detail = status.get("message") or status.get("reason") or "it failed"
        return DatasetState(False, "DatasetFailed", f"Dataset {name!r} failed: {detail}"[:1024])
    return DatasetState(
        False, "DatasetNotReady", f"waiting for Dataset {name!r} to be Ready (it is {phase or 'new'})"
    )


def dataset_s3(dataset: dict[str, Any] | None) -> common.S3Connection | None:
    """The Dataset's ``spec.s3`` (how pods reach its s3:// versions); None when it has none."""
    raw = ((dataset or {}).get("spec") or {}).get("s3")
    if not raw:
        return None
    try:
        return common.S3Connection.model_validate(raw)
    except pydantic.ValidationError:
        return None  # admission validated it; an older schema's leftovers are not ours to fix


def _run_config(observed: Observed) -> dict[str, Any] | None:
    """What the run was told: its Job's config annotation, else an older run's ConfigMap."""
    return build.run_config(observed.job, observed.configmap)


def _config_output_s3(observed: Observed) -> common.S3Connection | None:
    """The run's ``outputS3`` from its config (a status written before status.modelS3 existed)."""
    raw = (_run_config(observed) or {}).get("outputS3")
    try:
        return common.S3Connection.model_validate(raw) if raw else None
    except pydantic.ValidationError:
        return None


def _failed_at(job: dict[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in {"Failed", "FailureTarget"} and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime") or "") or None
    return None


def metric_values(result: dict[str, Any]) -> dict[str, api.MetricValues]:
    """``{"validation": {m: v}, "test": {m: v}, "cv": {m: {"mean", "std"}}}`` → per-metric values."""
    metrics = result.get("metrics") or {}
    names = set((metrics.get("validation") or {}) | (metrics.get("test") or {}) | (metrics.get("cv") or {}))
    out: dict[str, api.MetricValues] = {}
    valid = [n for n in names if isinstance(n, str) and re.fullmatch(api.METRIC_NAME_PATTERN, n)]
    for name in sorted(valid)[:METRICS_MAX]:
        cv = (metrics.get("cv") or {}).get(name) or {}
        values = {
            "validation": (metrics.get("validation") or {}).get(name),
            "test": (metrics.get("test") or {}).get(name),
            "cv_mean": cv.get("mean") if isinstance(cv, dict) else None,
            "cv_std": cv.get("std") if isinstance(cv, dict) else None,
        }
        clean = {
            k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if clean:
            out[name] = api.MetricValues(**clean)
    return out


def objective_value(metric: str, values: dict[str, api.MetricValues]) -> float | None:
    """The objective on validation; the CV mean when there is no validation split; else test."""
    v = values.get(metric)
    if v is None:
        return None
    for candidate in (v.validation, v.cv_mean, v.test):
        if candidate is not None:
            return candidate
    return None


def _with_conditions(
    status: api.TrainingJobStatus, *, now: datetime.datetime, generation: int
) -> api.TrainingJobStatus:
    phase = status.phase
    truth = {
        "Running": phase == "Running",
        "Succeeded": phase == "Succeeded",
        "Failed": phase == "Failed",
        "Suspended": phase in {"Suspended", "Queued"},
    }
    reason = status.reason or phase or "Pending"
    for type_ in CONDITIONS:
        status = status.with_condition(
            type_,
            "True" if truth[type_] else "False",
            reason=reason,
            message=status.message or "",
            now=now,
            generation=generation,
        )
    return status.with_progress(
        progress(phase),
        ready=phase == "Succeeded",
        reason=reason,
        message=status.message or "",
        now=now,
        generation=generation,
    )


def progress(phase: str | None) -> common.Progress:
    """What GitOps tools should read from a phase (see the module docstring)."""
    if phase == "Failed":
        return "Stalled"
    if phase in {"Succeeded", "Suspended"}:
        return "Current"
    return "InProgress"


def forward_only(old: api.TrainingJobStatus, new: api.TrainingJobStatus) -> api.TrainingJobStatus:
    """``new``, unless it moves the same run back to a lower phase (rule 5): then ``new`` with
    the stored phase. A pause and a new run (another ``spec_hash``) pass through."""
    if old.phase is None or new.phase is None or new.phase in PAUSED_PHASES:
        return new
    if old.spec_hash is None or new.spec_hash != old.spec_hash:
        return new
    if PHASE_RANK[new.phase] >= PHASE_RANK[old.phase]:
        return new
    return new.model_copy(update={"phase": old.phase})


def _fresh(tj: api.TrainingJob, **fields: Any) -> api.TrainingJobStatus:
    """A new run's status: conditions carried over (for their transition times), results cleared."""
    return api.TrainingJobStatus(conditions=tj.status.conditions, **fields)


def cleanup_due(tj: api.TrainingJob, status: api.TrainingJobStatus, now: datetime.datetime) -> bool:
    """Whether ``ttlSecondsAfterFinished`` has run out for a finished run whose children remain
    (the handler then reads the Job, to know whether an older run's ConfigMap goes too)."""
    ttl = tj.spec.run_policy.ttl_seconds_after_finished
    finished = common.parse_rfc3339(status.completion_time)
    if ttl is None or finished is None or status.children_deleted:
        return False
    return now >= finished + datetime.timedelta(seconds=ttl)


def _ttl(
    tj: api.TrainingJob,
    status: api.TrainingJobStatus,
    now: datetime.datetime,
    plan: Plan,
    job: dict[str, Any] | None,
) -> None:
    ttl = tj.spec.run_policy.ttl_seconds_after_finished
    finished = common.parse_rfc3339(status.completion_time)
    if ttl is None or finished is None or status.children_deleted:
        return
    due = finished + datetime.timedelta(seconds=ttl)
    if now < due:
        plan.wake_at = due
        return
    # Deleting what is already gone is a no-op. A ConfigMap exists only beside a Job an older
    # operator made (no config annotation); a run of this one costs no DELETE for it.
    plan.delete.append(rplan.ChildRef("batch/v1", "Job", build.job_name(tj)))
    if job is not None and build.job_config_text(job) is None:
        plan.delete.append(rplan.ChildRef("v1", "ConfigMap", build.config_name(tj)))
    if tj.spec.workers > 1:
        plan.delete.append(rplan.ChildRef("v1", "Service", build.service_name(tj)))
    plan.status = status.model_copy(update={"children_deleted": True})
    plan.events.append(
        rplan.EventNote(
            "Normal",
            "ChildrenDeleted",
            f"deleted the Job and its config {ttl}s after the run finished; results are kept",
        )
    )


def plan(
    tj: api.TrainingJob, *, observed: Observed, now: datetime.datetime, settings: rworkload.WorkloadSettings
) -> Plan:
    """The whole reconcile decision for one TrainingJob."""
    result = _plan(tj, observed=observed, now=now, settings=settings)
    status = forward_only(tj.status, result.status)
    status = status.model_copy(
        update={
            "observed_generation": tj.metadata.generation,
            "dataset_digest_short": short_digest(status.dataset_digest),
        }
    )
    result.status = _with_conditions(status, now=now, generation=tj.metadata.generation)
    result.events = transition_events(tj.status, result.status) + result.events
    return result


def _plan(
    tj: api.TrainingJob, *, observed: Observed, now: datetime.datetime, settings: rworkload.WorkloadSettings
) -> Plan:
    old = tj.status
    spec = tj.spec
    h = build.run_hash(spec)
    job = observed.job
    job_hash = ((job or {}).get("metadata", {}).get("annotations") or {}).get(rowner.ANNOTATION_SPEC_HASH)

    if old.phase in api.FINISHED_PHASES and old.spec_hash == h:
        out = Plan(status=old.model_copy())
        _ttl(tj, old, now, out, job)
        return out

    errors = api.validate_spec(spec)
    if errors:
        out = Plan(
            status=_fresh(
                tj,
                phase="Failed",
                reason="InvalidSpec",
                message="; ".join(errors)[:1024],
                spec_hash=h,
                completion_time=common.rfc3339(now),
            )
        )
        if job is not None and job_hash != h and not _active(job):
            out.delete.append(rplan.ChildRef("batch/v1", "Job", build.job_name(tj)))
        return out

    if job is not None and job_hash != h:
        if _active(job):
            # Only fields outside the run changed (CEL refuses the others while Running):
            # they apply to the next run; report the current one.
            return _observe(tj, observed=observed, now=now, pinned_hash=job_hash or h)
        out = Plan(
            status=_fresh(
                tj,
                phase="Pending",
                reason="SpecChanged",
                message="the spec changed: replacing the Job with a new run",
            )
        )
        out.delete.append(rplan.ChildRef("batch/v1", "Job", build.job_name(tj)))
        out.events.append(rplan.EventNote("Normal", "SpecChanged", "the spec changed: starting a new run"))
        return out

    if job is None:
        return _start(tj, observed=observed, now=now, settings=settings, h=h)
    return _observe(tj, observed=observed, now=now, pinned_hash=h)


def _active(job: dict[str, Any]) -> bool:
    status = job.get("status") or {}
    finished = any(
        c.get("type") in {"Complete", "Failed"} and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return not finished and bool(status.get("active"))


def _pinned_dataset(tj: api.TrainingJob, observed: Observed) -> tuple[str, str] | None:
    """The Dataset version of the current run: from the status, else from what the run was told
    (its Job's config annotation, or an older run's ConfigMap)."""
    if tj.status.dataset_uri and tj.status.spec_hash == build.run_hash(tj.spec):
        return tj.status.dataset_uri, tj.status.dataset_digest or ""
    config = _run_config(observed) or {}
    if config.get("datasetUri"):
        return str(config["datasetUri"]), str(config.get("datasetDigest") or "")
    return None


def _desired_suspend(tj: api.TrainingJob, job: dict[str, Any] | None) -> bool:
    if tj.spec.run_policy.suspend:
        return True
    if build.kueue_queue(tj):
        # Kueue admits by un-suspending; we never do. A new Job starts suspended.
        return True if job is None else bool((job.get("spec") or {}).get("suspend"))
    return False


def _start(
    tj: api.TrainingJob,
    *,
    observed: Observed,
    now: datetime.datetime,
    settings: rworkload.WorkloadSettings,
    h: str,
) -> Plan:
    pinned = _pinned_dataset(tj, observed) if tj.status.spec_hash == h else None
    ref = tj.spec.dataset_ref
    if pinned is None:
        ds = dataset_state(ref.name, observed.dataset, ref.version)
        if not ds.ready and ds.permanent:
            return Plan(
                status=_fresh(
                    tj,
                    phase="Failed",
                    reason=ds.reason,
                    message=ds.message,
                    spec_hash=h,
                    completion_time=common.rfc3339(now),
                )
            )
        if not ds.ready:
            return Plan(status=_fresh(tj, phase="WaitingForData", reason=ds.reason, message=ds.message))
        task = build.task_of(tj.spec, ds.task)
        if ds.task and ds.task != task and tj.spec.model is not None:
            message = (
                f"{tj.spec.model.estimator} is a {task} estimator but Dataset "
                f"{tj.spec.dataset_ref.name!r} is a {ds.task} dataset"
            )
            return Plan(
                status=_fresh(
                    tj,
                    phase="Failed",
                    reason="TaskMismatch",
                    message=message,
                    spec_hash=h,
                    completion_time=common.rfc3339(now),
                )
            )
        pinned = (ds.uri, ds.digest)
    uri, digest = pinned
    master_addr = build.cluster_ip(observed.service)
    if tj.spec.workers > 1 and master_addr is None:
        # The workers' MASTER_ADDR is the Service's ClusterIP: make it first, then the Job.
        waiting = _fresh(
            tj,
            phase="Pending",
            reason="CreatingRendezvous",
            message=f"creating Service {build.service_name(tj)} for the {tj.spec.workers} workers to meet at",
            spec_hash=h,
            dataset_digest=digest or None,
            dataset_uri=uri,
        )
        return Plan(status=waiting, apply=[build.service(tj)])
    ds_task = dataset_state(ref.name, observed.dataset, ref.version).task
    config = build.train_config(
        tj,
        dataset_uri=uri,
        dataset_digest=digest,
        settings=settings,
        dataset_task=ds_task,
        dataset_s3=dataset_s3(observed.dataset),
    )
    suspend = _desired_suspend(tj, None)
    phase = "Pending"
    reason, message = "JobCreated", f"created Job {build.job_name(tj)}"
    if suspend:
        phase = "Suspended" if tj.spec.run_policy.suspend else "Queued"
        reason = "Suspended" if tj.spec.run_policy.suspend else "Queued"
        message = (
            "the run is suspended (runPolicy.suspend)"
            if tj.spec.run_policy.suspend
            else f"waiting for Kueue queue {build.kueue_queue(tj)!r} to admit the Job"
        )
    status = _fresh(
        tj,
        phase=phase,
        reason=reason,
        message=message,
        job_name=build.job_name(tj),
        spec_hash=h,
        dataset_digest=digest or None,
        dataset_uri=uri,
        model_s3=config.output_s3,
        attempts=0,
    )
    out = Plan(status=status)
    if tj.spec.workers > 1:
        out.apply.append(build.service(tj))
    out.apply.append(
        build.job(tj, config=config, settings=settings, suspend=suspend, master_addr=master_addr)
    )
    out.events.append(
        rplan.EventNote(
            "Normal",
            "JobCreated",
            f"created Job {build.job_name(tj)} on Dataset {ref.name} "
            f"version {short_digest(digest) or uri}" + (" (datasetRef.version)" if ref.version else ""),
        )
    )
    return out


def _observe(tj: api.TrainingJob, *, observed: Observed, now: datetime.datetime, pinned_hash: str) -> Plan:
    job = observed.job or {}
    old = tj.status
    outcome = rjobs.job_outcome(job, observed.pods)
    pinned = _pinned_dataset(tj, observed)
    base: dict[str, Any] = {
        "job_name": build.job_name(tj),
        "spec_hash": pinned_hash,
        "dataset_uri": pinned[0] if pinned else old.dataset_uri,
        "dataset_digest": (pinned[1] if pinned else old.dataset_digest) or None,
        "model_s3": old.model_s3 or _config_output_s3(observed),
        "attempts": outcome.attempts,
        "start_time": outcome.start_time or old.start_time,
        "pod_start_time": outcome.pod_started or old.pod_start_time,
    }
    out = Plan(status=_fresh(tj, **base))
    if outcome.state in {"Pending", "Running", "Suspended"}:
        want = _desired_suspend(tj, job)
        if bool((job.get("spec") or {}).get("suspend")) != want:
            out.patch.append(
                (rplan.ChildRef("batch/v1", "Job", build.job_name(tj)), {"spec": {"suspend": want}})
            )
            verb = "suspending" if want else "resuming"
            state = "Suspended" if want else "Pending"
            out.status = out.status.model_copy(
                update={
                    "phase": state,
                    "reason": "Suspended" if want else "Resumed",
                    "message": f"{verb} the Job",
                }
            )
            return out
    stuck = rjobs.unschedulable_since(observed.pods) if tj.spec.workers > 1 else None
    timeout = datetime.timedelta(seconds=tj.spec.run_policy.scheduling_timeout_seconds)
    if stuck is not None and outcome.state in {"Pending", "Running"} and now - stuck[0] < timeout:
        out.wake_at = stuck[0] + timeout  # decided then, not on the next resync
    elif stuck is not None and outcome.state in {"Pending", "Running"}:
        # All or nothing: the scheduled workers would wait in the rendezvous for good.
        out.status = out.status.model_copy(
            update={
                "phase": "Failed",
                "reason": "Unschedulable",
                "message": f"a worker of {tj.spec.workers} could not be scheduled for "
                f"{int(timeout.total_seconds())}s, so the run cannot start: {stuck[1]}"[:1024],
                "completion_time": common.rfc3339(now),
                "duration_seconds": _duration(out.status.start_time, common.rfc3339(now)),
            }
        )
        out.delete.append(rplan.ChildRef("batch/v1", "Job", build.job_name(tj)))
        return out
    if outcome.state == "Succeeded":
        out.status = _succeeded(tj, out.status, outcome, observed.pods)
    elif outcome.state == "Failed":
        reason, message = outcome.reason, outcome.message
        completion = outcome.completion_time or _failed_at(job) or common.rfc3339(now)
        out.status = out.status.model_copy(
            update={
                "phase": "Failed",
                "reason": reason,
                "message": message[:1024],
                "completion_time": completion,
                "duration_seconds": _duration(out.status.start_time, completion),
            }
        )
    elif outcome.state == "Suspended":
        queue = build.kueue_queue(tj)
        if queue is not None and not tj.spec.run_policy.suspend:
            phase = "Queued"
            reason, message = kueue.wait_state(queue, build.job_name(tj), observed.workload)
        else:
            phase, reason, message = "Suspended", "Suspended", "the run is suspended (runPolicy.suspend)"
        out.status = out.status.model_copy(
            update={"phase": phase, "reason": reason, "message": kueue.clipped(message)}
        )
    elif outcome.state == "Running":
        out.status = out.status.model_copy(
            update={"phase": "Running", "reason": outcome.reason, "message": outcome.message[:1024]}
        )
    else:
        out.status = out.status.model_copy(
            update={"phase": "Pending", "reason": outcome.reason, "message": outcome.message[:1024]}
        )
    if out.status.phase in api.FINISHED_PHASES:
        _ttl(tj, out.status, now, out, observed.job)
    return out


def _duration(start: str | None, end: str | None) -> float | None:
    a, b = common.parse_rfc3339(start), common.parse_rfc3339(end)
    if a is None or b is None:
        return None
    return max(0.0, (b - a).total_seconds())


def _reported_device(result: dict[str, Any]) -> str | None:
    device = result.get("device")
    return str(device)[:128] if isinstance(device, str) and device else None


def rightsized(tj: api.TrainingJob, result: dict[str, Any]) -> dict[str, Any]:
    """``resources_used`` as the result reported it and ``suggested_resources`` computed from it
    (``api.rightsizing.suggest``, as the model card does), for the status."""
    used = api.ResourcesUsed.from_result(result.get("resourcesUsed"))
    suggested = rightsizing.suggest(used.to_api() if used else None, gpu=tj.spec.resources.gpu)
    return {
        "resources_used": used,
        "suggested_resources": api.SuggestedResources.model_validate(suggested) if suggested else None,
    }


def _int_field(result: dict[str, Any], key: str) -> int | None:
    value = result.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _succeeded(
    tj: api.TrainingJob,
    status: api.TrainingJobStatus,
    outcome: rjobs.JobOutcome,
    pods: list[dict[str, Any]] | None = None,
) -> api.TrainingJobStatus:
    result = outcome.result or {}
    device = _reported_device(result)
    measured = {
        "device": device,
        "world_size": _int_field(result, "worldSize") or (tj.spec.workers if outcome.result else None),
        "epochs": _int_field(result, "epochs"),
        "image_id": rjobs.image_id(pods or []),
        **rightsized(tj, result),
    }
    if (
        tj.spec.resources.gpu
        and device is not None
        and not device.startswith("cuda")
        and not (tj.spec.allow_cpu_fallback)
    ):
        # A team's own code may not check: the device it reported is what counts.
        return status.model_copy(
            update={
                **measured,
                "phase": "Failed",
                "reason": "GPUUnavailable",
                "message": f"resources.gpu asked for {tj.spec.resources.gpu} GPU(s) but the trainer ran on "
                f"{device}; set allowCPUFallback: true to accept that",
                "completion_time": outcome.completion_time,
                "duration_seconds": _duration(status.start_time, outcome.completion_time),
            }
        )
    metric, _ = tj.spec.effective_objective()
    values = metric_values(result)
    objective = result.get("objectiveValue")
    if not isinstance(objective, int | float) or isinstance(objective, bool):
        objective = objective_value(metric, values)
    update: dict[str, Any] = {
        "phase": "Succeeded",
        "reason": "Completed" if outcome.result else "NoResult",
        "message": "the model is trained and evaluated"
        if outcome.result
        else "the Job completed but its container wrote no JSON result to /dev/termination-log",
        "completion_time": outcome.completion_time,
        "duration_seconds": _duration(status.start_time, outcome.completion_time),
        "metrics": values or None,
        "objective_metric": metric,
        "objective_value": objective,
        "model_uri": result.get("modelUri"),
        "fit_seconds": result.get("fitSeconds")
        if isinstance(result.get("fitSeconds"), int | float)
        else None,
        "model_size_bytes": result.get("modelSizeBytes")
        if isinstance(result.get("modelSizeBytes"), int)
        else None,
    }
    if isinstance(result.get("datasetDigest"), str) and result["datasetDigest"]:
        update["dataset_digest"] = result["datasetDigest"]
    version = result.get("modelVersion")
    # A workload from before versioned outputs reports none: the status then names no version.
    update["model_version"] = version[:64] if isinstance(version, str) and version else None
    return status.model_copy(update={**update, **measured})


WAITING_PROBLEMS = frozenset(
    {"Unschedulable", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"}
)


def transition_events(old: api.TrainingJobStatus, new: api.TrainingJobStatus) -> list[rplan.EventNote]:
    """The Events a person wants in ``kubectl describe`` when the run moves on."""
    if old.phase == new.phase and old.reason == new.reason:
        return []
    phase, reason, message = new.phase, new.reason or "", new.message or ""
    if phase == "Failed":
        return [rplan.EventNote("Warning", reason or "Failed", message or "the run failed")]
    if phase == "Succeeded":
        detail = (
            f"{new.objective_metric}={new.objective_value:.6g}" if new.objective_value is not None else "done"
        )
        return [
            rplan.EventNote(
                "Normal",
                "Succeeded",
                f"trained in {new.duration_seconds or 0:.0f}s; {detail}; model at {new.model_uri or '-'}",
            )
        ]
    if phase in {"Pending", "Running"} and reason in WAITING_PROBLEMS:
        # Also while Running: a retry's new pod that cannot start (rule 5 keeps the phase).
        return [rplan.EventNote("Warning", reason, message)]
    if phase == "Running":
        if old.phase == "Running":
            return []  # the reason moved on within the run (PodRunning → PodSucceeded, a retry)
        return [
            rplan.EventNote(
                "Normal",
                "Resumed" if old.phase == "Suspended" else "Running",
                message or "the pod is running",
            )
        ]
    if phase == "Pending" and reason == "Resumed" and old.phase in {"Suspended", "Queued"}:
        return [rplan.EventNote("Normal", "Resumed", message or "resuming the Job")]
    if phase == "Queued" and reason in KUEUE_PROBLEMS:
        # Kueue took the run's pods back (a higher-priority or reclaiming workload), or cannot admit it.
        return [rplan.EventNote("Warning", reason, message)]
    if phase in {"Queued", "Suspended", "WaitingForData"} and old.phase != phase:
        return [rplan.EventNote("Normal", phase, message)]
    return []
