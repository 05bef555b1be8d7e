"""Reconcile a Dataset: (spec, observed Jobs/pods/ConfigMaps, now) → children + status + Events.

Pure, so every branch is a unit test. The handler lists the Dataset's prepare Jobs,
ConfigMaps and pods (by label), calls :func:`plan` and carries out the returned
:class:`Plan`.

A batch/v1 Job's pod template is immutable, so a spec change cannot be applied to a running
or finished Job. The spec hash is therefore part of the children's names
(``<name>-prepare-<hash8>``): a changed spec means a new ConfigMap and a new Job, and the
Jobs and ConfigMaps of older hashes are deleted. The Job is applied only while absent (it
cannot change after creation; re-applying it after an operator upgrade with another image
would be refused); the ConfigMap is applied on every pass.

The prepared version's summary travels in the pod's termination message (the workload's
result JSON); the status keeps the latest good version (digest, URI, numbers) while a new
one is prepared, and the phase says where the current preparation stands.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pydantic

from mlops_operator.api import common
from mlops_operator.api import dataset as api
from mlops_operator.reconcile import dataset_build as build
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

DIGEST_SHORT = 12
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the handler read, by the selector of :func:`selector`."""

    jobs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    configmaps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pods: list[dict[str, Any]] = dataclasses.field(default_factory=list)


Plan = rplan.Plan[api.DatasetStatus]


def stale_children(ds: api.Dataset, observed: Observed) -> list[rplan.ChildRef]:
    """Jobs and ConfigMaps of earlier spec hashes (controlled by this Dataset)."""
    current = build.child_name(ds)
    out: list[rplan.ChildRef] = []
    for api_version, kind, items in (
        ("batch/v1", "Job", observed.jobs),
        ("v1", "ConfigMap", observed.configmaps),
    ):
        for item in items:
            meta = item.get("metadata") or {}
            owned = any(ref.get("uid") == ds.metadata.uid for ref in meta.get("ownerReferences") or [])
            if owned and meta.get("name") != current and not meta.get("deletionTimestamp"):
                out.append(rplan.ChildRef(api_version, kind, str(meta["name"])))
    return sorted(out, key=lambda r: (r.kind, r.name))


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _counts(values: Any, limit: int) -> list[tuple[str, int]]:
    """``{name: count}`` → the ``limit`` largest, as (name, count), largest first."""
    if not isinstance(values, dict):
        return []
    pairs = [(str(k), n) for k, v in values.items() if (n := _count(v)) is not None]
    return sorted(pairs, key=lambda p: (-p[1], p[0]))[:limit]


def ready_fields(ds: api.Dataset, result: dict[str, Any]) -> dict[str, Any]:
    """Status fields from the workload's result; raises ValueError on a result that does not fit."""
    digest = result.get("digest")
    if not isinstance(digest, str) or not digest:
        raise ValueError("the result has no digest")
    uri = result.get("storageUri")
    if not isinstance(uri, str) or not uri:
        uri = common.StorageLocation.parse(ds.spec.storage).join(digest).uri()
    try:
        rows = api.RowCounts.model_validate(result.get("rows") or {})
        dropped = api.DroppedRows.model_validate(result.get("dropped") or {})
    except pydantic.ValidationError as exc:
        raise ValueError(f"the result's row counts do not fit: {exc.error_count()} errors") from exc
    output = max(1, rows.output)
    task = result.get("task") if result.get("task") in ("classification", "regression") else None
    target = result.get("target")
    warnings = [str(w)[: api.WARNING_LENGTH_MAX] for w in result.get("warnings") or [] if w]
    return {
        "digest": digest[:128],
        "digest_short": digest[:DIGEST_SHORT],
        "storage_uri": uri[:4096],
        "task": task,
        "target": str(target)[: api.COLUMN_NAME_MAX] if target else None,
        "rows": rows,
        "dropped": dropped,
        "duplicates_removed": _count(result.get("duplicatesRemoved")),
        "columns": _count(result.get("columns")),
        "features": _count(result.get("features")),
        "classes": _count(result.get("classes")),
        "missing": [
            api.ColumnCount(name=n[: api.COLUMN_NAME_MAX], count=c)
            for n, c in _counts(result.get("missing"), api.STATUS_MISSING_MAX)
        ],
        "class_balance": [
            api.ClassShare(name=n[:256], count=c, fraction=min(1.0, c / output))
            for n, c in _counts(result.get("classBalance"), api.STATUS_CLASSES_MAX)
        ],
        "warnings": warnings[: api.STATUS_WARNINGS_MAX],
    }


def _phase(
    ds: api.Dataset, outcome: rjobs.JobOutcome, pods: list[dict[str, Any]]
) -> tuple[api.Phase, str, str, dict[str, Any]]:
    """(phase, reason, message, extra status fields) of the current Job."""
    if outcome.state == "Succeeded":
        result = outcome.result or {}
        if result.get("ok") is not True:
            return (
                "Failed",
                "MissingResult",
                "the prepare Job completed, but its pod reported no result in its termination message; "
                "see the pod's logs",
                {},
            )
        try:
            fields = ready_fields(ds, result)
        except ValueError as exc:
            return "Failed", "InvalidResult", f"the prepare pod's result cannot be read: {exc}", {}
        rows = fields["rows"]
        reused = " (an identical version was already stored)" if result.get("reused") else ""
        message = (
            f"prepared {rows.output} of {rows.input} rows: train {rows.train}, validation {rows.validation}, "
            f"test {rows.test}; digest {fields['digest_short']}{reused}"
        )
        return "Ready", "Prepared", message, fields
    if outcome.state == "Failed":
        return "Failed", outcome.reason or "Failed", outcome.message or "the Job failed", {}
    if outcome.state == "Running":
        return "Preparing", "Preparing", f"the prepare pod is running ({outcome.attempts} attempt(s))", {}
    if outcome.state == "Suspended":
        return "Pending", "Suspended", outcome.message, {}
    if outcome.reason == "JobNotCreated":
        return "Pending", "Creating", "creating the prepare Job", {}
    return "Pending", outcome.reason or "PodPending", outcome.message or "waiting for the prepare pod", {}


def compute_status(
    ds: api.Dataset, *, job: dict[str, Any] | None, pods: list[dict[str, Any]], now: datetime.datetime
) -> api.DatasetStatus:
    """The status for the current Job (``job`` is None before it exists)."""
    outcome = rjobs.job_outcome(job, pods)
    phase, reason, message, fields = _phase(ds, outcome, pods)
    generation = ds.metadata.generation
    status = ds.status.model_copy(
        update={
            "observed_generation": generation,
            "phase": phase,
            "reason": reason,
            "message": message[:4096],
            "job_name": build.child_name(ds),
            "start_time": outcome.start_time or outcome.pod_started,
            "completion_time": outcome.completion_time if phase in ("Ready", "Failed") else None,
            **fields,
        }
    )
    if phase == "Failed" and status.completion_time is None:
        status = status.model_copy(update={"completion_time": common.rfc3339(now)})
    failed: common.ConditionStatus = "True" if phase == "Failed" else "False"
    status = status.with_progress(
        PROGRESS[phase],
        ready=phase == "Ready",
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    return status.with_condition(
        "Failed", failed, reason=reason, message=message, now=now, generation=generation
    )


# What GitOps tools read from each phase: a failed preparation is Stalled (Flux reports it
# failed at once instead of waiting out its timeout), a prepared version is Current and Ready.
PROGRESS: dict[str, common.Progress] = {
    "Pending": "InProgress",
    "Preparing": "InProgress",
    "Ready": "Current",
    "Failed": "Stalled",
}


def transition_events(old: api.DatasetStatus, new: api.DatasetStatus) -> list[rplan.EventNote]:
    """Events a user wants in ``kubectl describe``: phase changes, a new digest, quality warnings."""
    events: list[rplan.EventNote] = []
    changed_job = old.job_name != new.job_name and old.job_name is not None
    if new.phase != old.phase or changed_job:
        if new.phase == "Preparing":
            events.append(rplan.EventNote("Normal", "Preparing", f"preparing with Job {new.job_name}"))
        elif new.phase == "Ready":
            events.append(rplan.EventNote("Normal", "Ready", new.message or "prepared"))
            if new.warnings:
                events.append(rplan.EventNote("Warning", "DataQuality", "; ".join(new.warnings)[:1024]))
        elif new.phase == "Failed":
            events.append(
                rplan.EventNote("Warning", new.reason or "Failed", new.message or "the preparation failed")
            )
        elif new.phase == "Pending" and changed_job:
            events.append(
                rplan.EventNote(
                    "Normal", "SpecChanged", f"the spec changed: re-preparing with Job {new.job_name}"
                )
            )
    if old.digest and new.digest and old.digest != new.digest:
        events.append(
            rplan.EventNote(
                "Normal",
                "DigestChanged",
                f"new version {new.digest_short} replaces {old.digest[:DIGEST_SHORT]}",
            )
        )
    return events


def _job_of(pod: dict[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    value = labels.get(JOB_NAME_LABEL) or labels.get("job-name")
    return str(value) if value else None


def plan(
    ds: api.Dataset, *, observed: Observed, settings: rworkload.WorkloadSettings, now: datetime.datetime
) -> Plan:
    """The whole reconcile decision for one Dataset."""
    name = build.child_name(ds)
    job = next((j for j in observed.jobs if (j.get("metadata") or {}).get("name") == name), None)
    pods = [p for p in observed.pods if _job_of(p) == name]
    apply = [build.build_configmap(ds, settings=settings)]
    if job is None:
        apply.append(build.build_job(ds, settings=settings))
    status = compute_status(ds, job=job, pods=pods, now=now)
    return Plan(
        status=status,
        apply=apply,
        delete=stale_children(ds, observed),
        events=transition_events(ds.status, status),
    )
