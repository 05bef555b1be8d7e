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

Refresh. Once the current Job has finished, a *round* is due when ``spec.refresh.schedule``
has a time after ``status.lastChecked`` that is not in the future, or when the
``mlops.dev/refresh`` annotation holds a value other than ``status.lastRefreshRequest``. A
round re-reads the sources of the same spec with a new Job, ``<name>-prepare-<hash8>-<round>``;
the round is stored in ``status.refreshRound`` in the same pass that creates the Job, so the
name is deterministic across retries and restarts (round 0 keeps the name Datasets always
had). The previous round's Job is deleted once the new one finished. Nothing is held in
memory: a due round is decided from the status and ``now`` alone, and :attr:`Plan.wake_at`
tells the handler when the next one falls due.

Versions. The status keeps the latest good version (digest, URI, numbers) while a new one is
prepared, and ``status.versions`` the last ``spec.retention.keepVersions`` of them, newest
first. A round whose digest is the served one only moves ``lastChecked``; a new digest is
prepended. Each prepare Job is told the listed digests (``PrepareConfig.retain``) and deletes
the other version directories by the same rule (:func:`fold_version`), so storage never loses
a version the status lists. While a version of the current spec is served, the Dataset stays
Ready through a refresh round and through a failed one (``RefreshFailed``: the Failed
condition and a Warning say what went wrong; TrainingJobs keep training on the last good
version). The prepared version's summary travels in the pod's termination message (the
workload's result JSON).

Feedback. A feedback source reads the rows a ModelDeployment captured; the handler reads the
deployments the sources name and :func:`dataset_build.resolve_feedback` turns their
``spec.logging`` into the capture roots the Job reads. While one is missing
(``FeedbackSourceMissing``) or captures nothing (``FeedbackNotCaptured``), no ConfigMap or Job
is applied and the Dataset waits (Pending, or Ready with that reason while it serves a version
of its spec), with one Warning per reason; the next pass that finds the deployment (the
resync) creates the Job.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Literal

import pydantic

from mlops_operator.api import common
from mlops_operator.api import dataset as api
from mlops_operator.reconcile import dataset_build as build
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

DIGEST_SHORT = 12
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# Reasons of a Dataset that serves a version of its spec while (or after) re-reading the sources.
REFRESHING = "Refreshing"
REFRESH_FAILED = "RefreshFailed"
UNCHANGED = "Unchanged"


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the handler read: the children by the selector of :func:`selector`, and the
    ModelDeployments the feedback sources name (name → object; None: not found)."""

    jobs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    configmaps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pods: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    deployments: dict[str, dict[str, Any] | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Plan(rplan.Plan[api.DatasetStatus]):
    """The generic plan; its ``wake_at`` is when the next scheduled refresh falls due."""


def stale_children(ds: api.Dataset, observed: Observed, *, keep: set[str]) -> list[rplan.ChildRef]:
    """Jobs and ConfigMaps (controlled by this Dataset) not named in ``keep``: earlier spec
    hashes and earlier refresh rounds."""
    out: list[rplan.ChildRef] = []
    for api_version, kind, items in (
        ("batch/v1", "Job", observed.jobs),
        ("v1", "ConfigMap", observed.configmaps),
    ):
        for item in items:
            meta = item.get("metadata") or {}
            owned = any(ref.get("uid") == ds.metadata.uid for ref in meta.get("ownerReferences") or [])
            if owned and meta.get("name") not in keep and not meta.get("deletionTimestamp"):
                out.append(rplan.ChildRef(api_version, kind, str(meta["name"])))
    return sorted(out, key=lambda r: (r.kind, r.name))


# ---------------------------------------------------------------------------------------------
# Rounds and versions
# ---------------------------------------------------------------------------------------------


def current_round(ds: api.Dataset) -> int:
    """The refresh round of the current spec: the stored one while ``status.jobName`` is that
    round's Job (the spec did not change since), else 0 (a new spec starts over)."""
    stored = ds.status.refresh_round or 0
    if stored and ds.status.job_name == build.child_name(ds, stored):
        return stored
    return 0


def refresh_request(ds: api.Dataset) -> str | None:
    """The ``mlops.dev/refresh`` annotation's value (cut to what the status can hold), if any."""
    value = ds.metadata.annotations.get(api.REFRESH_ANNOTATION)
    return None if value is None else value[: api.REFRESH_REQUEST_MAX]


def serves_current_spec(ds: api.Dataset) -> bool:
    """Whether the served version (the first listed) was prepared for the spec as it is now."""
    versions = ds.status.versions
    return bool(versions) and versions[0].spec_hash == build.spec_hash(ds) and bool(ds.status.digest)


def fold_version(
    versions: list[api.DatasetVersion], entry: api.DatasetVersion, keep: int
) -> tuple[list[api.DatasetVersion], bool]:
    """The kept versions once ``entry`` is the served one, and whether that changed anything.

    A digest already listed first changes nothing (the sources were unchanged; a new spec that
    yields the same data takes the entry over); one listed further down moves to the front (a
    return to earlier data, nothing dropped); a new one is prepended and the oldest beyond
    ``keep`` drop out. The prepare workload deletes directories by the same rule
    (``mlops_workloads.prepare.retention``).
    """
    if versions and versions[0].digest == entry.digest:
        if versions[0].spec_hash != entry.spec_hash:
            versions = [entry, *versions[1:]]
        return versions[:keep], False
    rest = [v for v in versions if v.digest != entry.digest]
    return [entry, *rest][:keep], True


def _finished_at(
    ds: api.Dataset, job: dict[str, Any] | None, outcome: rjobs.JobOutcome, name: str, now: datetime.datetime
) -> str:
    """When the current Job finished: its completionTime, else the time of its Failed condition,
    else what the status already says for this Job, else now (stable from pass to pass)."""
    if outcome.completion_time:
        return outcome.completion_time
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        failed = cond.get("type") in {"Failed", "FailureTarget"} and cond.get("status") == "True"
        if failed and cond.get("lastTransitionTime"):
            return str(cond["lastTransitionTime"])
    if ds.status.job_name == name and ds.status.completion_time:
        return ds.status.completion_time
    return common.rfc3339(now)


def next_check(ds: api.Dataset, last_checked: str | None) -> datetime.datetime | None:
    """The schedule's first time after the last read (or after creation); None without a schedule."""
    if ds.spec.refresh is None:
        return None
    base = common.parse_rfc3339(last_checked) or common.parse_rfc3339(ds.metadata.creation_timestamp)
    if base is None:
        return None
    return ds.spec.refresh.next_after(base)


RefreshTrigger = Literal["requested", "scheduled"]


def refresh_due(
    ds: api.Dataset, status: api.DatasetStatus, *, now: datetime.datetime
) -> RefreshTrigger | None:
    """Why a new round is due now (the current Job has finished), or None."""
    request = refresh_request(ds)
    if request is not None and request != status.last_refresh_request:
        return "requested"
    due = common.parse_rfc3339(status.next_check)
    if due is not None and due <= now:
        return "scheduled"
    return None


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


def _short(digest: str | None) -> str:
    return (digest or "")[:DIGEST_SHORT]


def compute_status(
    ds: api.Dataset,
    *,
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    now: datetime.datetime,
    round_: int = 0,
    waiting: build.Waiting | None = None,
) -> api.DatasetStatus:
    """The status for the current Job (``job`` is None before it exists) of round ``round_``;
    ``waiting``: why that Job cannot be created yet (a feedback source's deployment)."""
    outcome = rjobs.job_outcome(job, pods)
    phase, reason, message, fields = _phase(ds, outcome, pods)
    waits = job is None and waiting is not None
    if waits and waiting is not None:
        phase, reason, message, fields = "Pending", waiting.reason, waiting.message, {}
    name = build.child_name(ds, round_)
    generation = ds.metadata.generation
    finished = phase in ("Ready", "Failed")
    serving = serves_current_spec(ds)
    update: dict[str, Any] = {
        "observed_generation": generation,
        "job_name": name,
        "refresh_round": round_ or None,
        "start_time": outcome.start_time or outcome.pod_started,
        "completion_time": None,
        **fields,
    }
    versions = list(ds.status.versions)
    if finished:
        update["completion_time"] = update["last_checked"] = _finished_at(ds, job, outcome, name, now)
    if phase == "Ready":
        entry = api.DatasetVersion(
            digest=fields["digest"],
            digest_short=fields["digest_short"],
            storage_uri=fields["storage_uri"],
            rows=fields["rows"],
            created=update["last_checked"],
            job=name,
            spec_hash=build.spec_hash(ds),
        )
        versions, changed = fold_version(versions, entry, ds.spec.retention.keep_versions)
        if not changed and versions[0].job != name:
            reason = UNCHANGED
            message = (
                f"the sources are unchanged: still version {_short(entry.digest)} "
                f"(checked at {update['last_checked']})"
            )
    failure: tuple[str, str] | None = (reason, message) if phase == "Failed" else None
    if serving and phase == "Failed":
        # A re-read of the same spec failed: the last good version of this spec is still served.
        phase, reason = "Ready", REFRESH_FAILED
        message = (
            f"re-reading the sources failed ({failure[0] if failure else 'Failed'}): {message}; "
            f"still serving version {_short(ds.status.digest)}"
        )
    elif serving and waits:
        # A re-read waits for a feedback source; the version already prepared is still served.
        phase = "Ready"
        message = f"{message}; serving version {_short(ds.status.digest)}"
    elif serving and phase in ("Pending", "Preparing"):
        phase, reason = "Ready", REFRESHING
        message = (
            f"re-reading the sources with Job {name} ({message}); serving version {_short(ds.status.digest)}"
        )
    update["versions"] = versions[: ds.spec.retention.keep_versions]
    last_checked = update.get("last_checked", ds.status.last_checked)
    nxt = next_check(ds, last_checked) if finished else None
    update["next_check"] = common.rfc3339(nxt) if nxt is not None else None
    status = ds.status.model_copy(
        update={**update, "phase": phase, "reason": reason, "message": message[:4096]}
    )
    status = status.with_progress(
        PROGRESS[phase],
        ready=phase == "Ready",
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    failed_reason, failed_message = failure or (reason, message)
    return status.with_condition(
        "Failed",
        "True" if failure else "False",
        reason=failed_reason,
        message=failed_message,
        now=now,
        generation=generation,
    )


# What GitOps tools read from each phase: a failed preparation is Stalled (Flux reports it
# failed at once instead of waiting out its timeout), a prepared version is Current and Ready
# (also while a refresh round re-reads the sources, or after one failed: the version is served).
PROGRESS: dict[str, common.Progress] = {
    "Pending": "InProgress",
    "Preparing": "InProgress",
    "Ready": "Current",
    "Failed": "Stalled",
}


def _made_by_refresh(status: api.DatasetStatus) -> bool:
    """Whether the served version replaced one of the same spec (a refresh found new data)."""
    versions = status.versions
    return (
        len(versions) > 1
        and versions[0].spec_hash is not None
        and (versions[0].spec_hash == versions[1].spec_hash)
    )


def transition_events(old: api.DatasetStatus, new: api.DatasetStatus) -> list[rplan.EventNote]:
    """Events a user wants in ``kubectl describe``: phase changes, a new version, a failed
    refresh, quality warnings. A refresh round that finds the sources unchanged posts none."""
    events: list[rplan.EventNote] = []
    changed_job = old.job_name != new.job_name and old.job_name is not None
    if new.reason in build.WAITING_REASONS:
        if old.reason != new.reason or changed_job:
            events.append(rplan.EventNote("Warning", new.reason or "Waiting", new.message or "waiting"))
    elif new.reason in (REFRESHING, UNCHANGED):
        pass
    elif new.reason == REFRESH_FAILED:
        if old.reason != REFRESH_FAILED or changed_job:
            events.append(rplan.EventNote("Warning", REFRESH_FAILED, new.message or "the refresh failed"))
    elif new.phase != old.phase or changed_job:
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
            if new.refresh_round:
                events.append(
                    rplan.EventNote("Normal", REFRESHING, f"re-reading the sources with Job {new.job_name}")
                )
            else:
                events.append(
                    rplan.EventNote(
                        "Normal", "SpecChanged", f"the spec changed: re-preparing with Job {new.job_name}"
                    )
                )
    if old.digest and new.digest and old.digest != new.digest:
        if _made_by_refresh(new):
            rows = new.versions[0].rows
            events.append(
                rplan.EventNote(
                    "Normal",
                    "NewVersion",
                    f"re-reading the sources made version {new.digest_short}"
                    + (f" ({rows.output} rows)" if rows is not None else "")
                    + f", replacing {old.digest[:DIGEST_SHORT]}; {len(new.versions)} version(s) kept",
                )
            )
            if new.warnings:
                events.append(rplan.EventNote("Warning", "DataQuality", "; ".join(new.warnings)[:1024]))
        else:
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


def _finished(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> bool:
    return job is not None and rjobs.job_outcome(job, pods).state in ("Succeeded", "Failed")


def _current(observed: Observed, name: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    job = next((j for j in observed.jobs if (j.get("metadata") or {}).get("name") == name), None)
    return job, [p for p in observed.pods if _job_of(p) == name]


def plan(
    ds: api.Dataset, *, observed: Observed, settings: rworkload.WorkloadSettings, now: datetime.datetime
) -> Plan:
    """The whole reconcile decision for one Dataset."""
    round_ = current_round(ds)
    feedback, waiting = build.resolve_feedback(ds, observed.deployments)
    job, pods = _current(observed, build.child_name(ds, round_))
    status = compute_status(ds, job=job, pods=pods, now=now, round_=round_, waiting=waiting)
    events = transition_events(ds.status, status)
    request = refresh_request(ds)
    wake_at: datetime.datetime | None = None
    if _finished(job, pods):
        trigger = refresh_due(ds, status, now=now)
        if trigger is None:
            wake_at = common.parse_rfc3339(status.next_check)
        else:
            # A new round: the status of the round just finished is the base of the next one.
            round_ += 1
            job, pods = _current(observed, build.child_name(ds, round_))
            before = status
            status = compute_status(
                ds.model_copy(update={"status": before}),
                job=job,
                pods=pods,
                now=now,
                round_=round_,
                waiting=waiting,
            )
            events += transition_events(before, status)
            if trigger == "requested":
                events.append(
                    rplan.EventNote(
                        "Normal",
                        "RefreshRequested",
                        f"{api.REFRESH_ANNOTATION}={request}: re-reading the sources with Job "
                        f"{status.job_name}",
                    )
                )
    retain = [v.digest for v in status.versions]
    apply: list[dict[str, Any]] = []
    if waiting is None:
        # (While a feedback source cannot be resolved nothing is applied: a Job that exists
        # keeps the ConfigMap it started with, and no new Job is created.)
        apply.append(
            build.build_configmap(ds, settings=settings, round_=round_, retain=retain, feedback=feedback)
        )
        if job is None:
            apply.append(build.build_job(ds, settings=settings, round_=round_, feedback=feedback))
            # The new Job reads the sources as they are now: a pending request is answered by it.
            status = status.model_copy(update={"last_refresh_request": request})
    keep = {build.child_name(ds, round_)}
    if round_ and not _finished(job, pods):
        keep.add(build.child_name(ds, round_ - 1))  # the previous round's, until this one ends
    return Plan(
        status=status,
        apply=apply,
        delete=stale_children(ds, observed, keep=keep),
        events=events,
        wake_at=wake_at,
    )
