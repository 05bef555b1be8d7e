"""Refresh rounds and versions in the pure Dataset reconciler: when a round is due (cron, time
zone, the mlops.dev/refresh annotation), how its Job is named, what an unchanged or a new digest
does to status.versions, the retain list each Job gets, a failed refresh that keeps serving the
last good version, and which children are deleted when."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pydantic
import pytest

from mlops_operator.api import dataset as api
from mlops_operator.reconcile import dataset as rds
from mlops_operator.reconcile import dataset_build as rds_build
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

SETTINGS = rworkload.WorkloadSettings(workload_image="registry.local/mlops-workloads:1.2.3")
UID = "ds-uid"
SPEC: dict[str, Any] = {
    "sources": [{"file": {"uri": "file:///data/rows.csv"}}],
    "storage": "file:///data/versions",
    "refresh": {"schedule": "0 * * * *"},
}
A, B, C = "a" * 64, "b" * 64, "c" * 64


def at(hh: int, mm: int, ss: int = 0) -> datetime.datetime:
    return datetime.datetime(2025, 1, 1, hh, mm, ss, tzinfo=datetime.UTC)


def stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dataset(
    spec: dict[str, Any] | None = None,
    *,
    status: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    name: str = "sales",
) -> api.Dataset:
    return api.Dataset.from_body(
        {
            "metadata": {
                "name": name,
                "namespace": "ml",
                "uid": UID,
                "generation": 1,
                "creationTimestamp": "2025-01-01T10:00:00Z",
                "annotations": annotations or {},
            },
            "spec": spec or SPEC,
            "status": status or {},
        }
    )


def result(digest: str, *, output: int = 100) -> dict[str, Any]:
    return {
        "ok": True,
        "digest": digest,
        "storageUri": f"file:///data/versions/{digest}",
        "task": "regression",
        "target": "target",
        "rows": {"input": output, "output": output, "train": output - 20, "validation": 10, "test": 10},
    }


def finished_job(name: str, *, at_: datetime.datetime, ok: bool = True) -> dict[str, Any]:
    if ok:
        status = {
            "succeeded": 1,
            "startTime": stamp(at_ - datetime.timedelta(seconds=20)),
            "completionTime": stamp(at_),
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    else:
        status = {
            "failed": 1,
            "startTime": stamp(at_ - datetime.timedelta(seconds=20)),
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "PodFailurePolicy",
                    "lastTransitionTime": stamp(at_),
                }
            ],
        }
    return {
        "metadata": {"name": name, "ownerReferences": [{"uid": UID, "controller": True}]},
        "spec": {},
        "status": status,
    }


def running_job(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "ownerReferences": [{"uid": UID, "controller": True}]},
        "spec": {},
        "status": {"active": 1, "startTime": "2025-01-01T12:00:01Z"},
    }


def pod_of(job: str, *, digest: str | None = None, error: str | None = None) -> dict[str, Any]:
    if digest is not None:
        terminated = {"exitCode": 0, "message": json.dumps(result(digest))}
        phase = "Succeeded"
    elif error is not None:
        message = json.dumps({"ok": False, "reason": error, "error": "sources[0]: cannot read rows.csv"})
        terminated = {"exitCode": 3, "reason": "Error", "message": message}
        phase = "Failed"
    else:
        return {
            "metadata": {"name": f"{job}-p", "labels": {"batch.kubernetes.io/job-name": job}},
            "status": {"phase": "Running"},
        }
    return {
        "metadata": {"name": f"{job}-p", "labels": {"batch.kubernetes.io/job-name": job}},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "prepare", "state": {"terminated": terminated}}],
        },
    }


def run(
    ds: api.Dataset, now: datetime.datetime, *children: tuple[dict[str, Any], dict[str, Any] | None]
) -> rds.Plan:
    jobs = [job for job, _ in children]
    pods = [pod for _, pod in children if pod is not None]
    return rds.plan(ds, observed=rds.Observed(jobs=jobs, pods=pods), settings=SETTINGS, now=now)


def applied(plan: rds.Plan) -> list[tuple[str, str]]:
    return [(c["kind"], c["metadata"]["name"]) for c in plan.apply]


def retain_of(plan: rds.Plan) -> list[str]:
    cm = next(c for c in plan.apply if c["kind"] == "ConfigMap")
    return api.PrepareConfig.model_validate_json(cm["data"]["config.json"]).retain


def prepared(
    ds: api.Dataset, digest: str, *, done: datetime.datetime, round_: int = 0
) -> tuple[api.Dataset, tuple[dict[str, Any], dict[str, Any]]]:
    """The Dataset once round ``round_``'s Job finished with ``digest`` (status as stored)."""
    name = rds_build.child_name(ds, round_)
    child = (finished_job(name, at_=done), pod_of(name, digest=digest))
    plan = run(ds, done, child)
    return stored(ds, plan), child


def stored(ds: api.Dataset, plan: rds.Plan) -> api.Dataset:
    return dataset(ds.spec.to_api(), status=plan.status.to_api(), annotations=dict(ds.metadata.annotations))


# -- names ----------------------------------------------------------------------------------


def test_round_zero_keeps_the_name_datasets_always_had_and_rounds_add_a_suffix() -> None:
    ds = dataset()
    base = rds_build.child_name(ds)
    assert base == f"sales-prepare-{rds_build.spec_hash(ds)[:8]}"
    assert rds_build.child_name(ds, 0) == base
    assert rds_build.child_name(ds, 7) == f"{base}-7"
    # Editing the schedule or the retention changes no name: nothing is re-prepared.
    edited = dataset({**SPEC, "refresh": {"schedule": "*/5 * * * *"}, "retention": {"keepVersions": 9}})
    assert rds_build.child_name(edited) == base
    assert rds_build.child_name(dataset({k: v for k, v in SPEC.items() if k != "refresh"})) == base
    long = dataset(name="d" * 60)
    names = {rds_build.child_name(long, n) for n in range(200)}
    assert len(names) == 200 and all(len(n) <= 63 for n in names)


def test_a_spec_without_refresh_or_retention_hashes_as_before() -> None:
    """Datasets made before refresh existed keep their Job name after the upgrade (no re-prepare):
    the hash of a spec is the hash of its wire form without refresh and retention."""
    plain = {k: v for k, v in SPEC.items() if k != "refresh"}
    ds = dataset(plain)
    assert "retention" in ds.spec.to_api()  # the default is rendered...
    assert rds_build.spec_hash(ds) == rds_build.rowner.spec_hash(
        {k: v for k, v in ds.spec.to_api().items() if k not in ("retention", "scale")}
    )  # ...but not hashed (nor scale at its defaults)


# -- when a round is due ------------------------------------------------------------------------


def test_the_next_cron_time_after_the_last_read_starts_round_one() -> None:
    ds, child = prepared(dataset(), A, done=at(11, 59, 30))
    assert ds.status.last_checked == "2025-01-01T11:59:30Z"
    assert ds.status.next_check == "2025-01-01T12:00:00Z"
    early = run(ds, at(11, 59, 50), child)
    assert applied(early) == [("ConfigMap", rds_build.child_name(ds))]  # not due yet
    assert early.wake_at == at(12, 0) and early.events == []
    due = run(ds, at(12, 0, 1), child)
    round1 = rds_build.child_name(ds, 1)
    assert applied(due) == [("ConfigMap", round1), ("Job", round1)]
    status = due.status
    assert (status.refresh_round, status.job_name) == (1, round1)
    assert (status.phase, status.reason) == ("Ready", "Refreshing")
    assert status.is_true("Ready") and not status.is_true("Reconciling") and not status.is_true("Failed")
    assert status.digest == A and status.next_check is None
    assert due.events == []  # a scheduled round posts nothing until it has news
    assert due.delete == []  # round 0's Job stays until round 1 finished
    job = next(c for c in due.apply if c["kind"] == "Job")
    assert job["metadata"]["labels"]["mlops.dev/dataset"] == "sales"


def test_without_a_schedule_nothing_is_due_ever() -> None:
    ds, child = prepared(dataset({k: v for k, v in SPEC.items() if k != "refresh"}), A, done=at(11, 0))
    later = run(ds, at(23, 0), child)
    assert applied(later) == [("ConfigMap", rds_build.child_name(ds))]
    assert later.wake_at is None and ds.status.next_check is None


def test_the_schedule_is_read_in_its_time_zone() -> None:
    spec = {**SPEC, "refresh": {"schedule": "0 9 * * *", "timeZone": "Europe/Berlin"}}
    refresh = api.Dataset.from_body({"metadata": {"name": "x"}, "spec": spec}).spec.refresh
    assert refresh is not None
    winter = datetime.datetime(2025, 1, 10, 7, 30, tzinfo=datetime.UTC)  # 08:30 in Berlin (CET)
    assert refresh.next_after(winter) == datetime.datetime(2025, 1, 10, 8, 0, tzinfo=datetime.UTC)
    summer = datetime.datetime(2025, 7, 10, 7, 30, tzinfo=datetime.UTC)  # 09:30 in Berlin (CEST)
    assert refresh.next_after(summer) == datetime.datetime(2025, 7, 11, 7, 0, tzinfo=datetime.UTC)
    utc = api.Refresh(schedule="0 9 * * *")
    assert utc.next_after(winter) == datetime.datetime(2025, 1, 10, 9, 0, tzinfo=datetime.UTC)
    ds, _ = prepared(dataset(spec), A, done=datetime.datetime(2025, 1, 1, 7, 30, tzinfo=datetime.UTC))
    assert ds.status.next_check == "2025-01-01T08:00:00Z"


def test_the_annotation_asks_for_one_round_once_the_current_job_finished() -> None:
    ds = dataset({k: v for k, v in SPEC.items() if k != "refresh"})
    ds, child = prepared(ds, A, done=at(11, 0))
    name0 = rds_build.child_name(ds)
    # Asked while round 0 still runs: it waits for it.
    asked = dataset(ds.spec.to_api(), status=ds.status.to_api(), annotations={api.REFRESH_ANNOTATION: "now"})
    waiting = run(asked, at(11, 0), (running_job(name0), None))
    assert applied(waiting) == [("ConfigMap", name0)]
    # Finished: one round, with an Event that says who asked.
    plan = run(asked, at(11, 5), child)
    round1 = rds_build.child_name(ds, 1)
    assert applied(plan) == [("ConfigMap", round1), ("Job", round1)]
    assert plan.status.last_refresh_request == "now"
    assert (
        "Normal",
        "RefreshRequested",
        f"mlops.dev/refresh=now: re-reading the sources with Job {round1}",
    ) in plan.events
    # The same value never asks again; a new one does.
    after = stored(asked, plan)
    done1 = (finished_job(round1, at_=at(11, 6)), pod_of(round1, digest=A))
    settled = run(after, at(11, 7), child, done1)
    assert applied(settled) == [("ConfigMap", round1)]
    again = dataset(
        after.spec.to_api(),
        status=stored(after, settled).status.to_api(),
        annotations={api.REFRESH_ANNOTATION: "2025-01-01T11:08:00Z"},
    )
    assert ("Job", rds_build.child_name(ds, 2)) in applied(run(again, at(11, 8), child, done1))


def test_an_annotation_present_when_the_first_job_is_made_is_answered_by_it() -> None:
    ds = dataset(annotations={api.REFRESH_ANNOTATION: "now"})
    first = run(ds, at(10, 0))
    assert ("Job", rds_build.child_name(ds)) in applied(first)
    assert first.status.last_refresh_request == "now"
    ds = stored(ds, first)
    ds, child = prepared(ds, A, done=at(10, 1))
    assert applied(run(ds, at(10, 2), child)) == [("ConfigMap", rds_build.child_name(ds))]


# -- versions -----------------------------------------------------------------------------------


def test_an_unchanged_digest_only_moves_last_checked() -> None:
    ds, child0 = prepared(dataset(), A, done=at(11, 59, 30))
    assert [v.digest for v in ds.status.versions] == [A]
    first = ds.status.versions[0]
    assert (first.job, first.created, first.rows) == (
        rds_build.child_name(ds),
        "2025-01-01T11:59:30Z",
        api.RowCounts(input=100, output=100, train=80, validation=10, test=10),
    )
    ds = stored(ds, run(ds, at(12, 0, 1), child0))  # round 1 starts
    round1 = rds_build.child_name(ds, 1)
    assert retain_of(run(ds, at(12, 0, 2), child0, (running_job(round1), None))) == [A]
    child1 = (finished_job(round1, at_=at(12, 0, 30)), pod_of(round1, digest=A))
    plan = run(ds, at(12, 0, 31), child0, child1)
    status = plan.status
    assert [v.digest for v in status.versions] == [A] and status.versions[0] == first
    assert status.last_checked == "2025-01-01T12:00:30Z" and status.next_check == "2025-01-01T13:00:00Z"
    assert (status.phase, status.reason, status.digest) == ("Ready", "Unchanged", A)
    assert (
        status.message
        == "the sources are unchanged: still version aaaaaaaaaaaa (checked at 2025-01-01T12:00:30Z)"
    )
    assert plan.events == []
    assert plan.delete == [rplan.ChildRef("batch/v1", "Job", rds_build.child_name(ds))]  # round 0's
    # Steady: the next pass changes nothing.
    again = run(stored(ds, plan), at(12, 10), child1)
    assert again.status.to_api() == plan.status.to_api() and again.events == []


def test_a_new_digest_is_a_new_version_newest_first_and_bounded() -> None:
    ds = dataset({**SPEC, "retention": {"keepVersions": 2}})
    ds, child = prepared(ds, A, done=at(11, 0, 30))
    for round_, digest, hour in ((1, B, 12), (2, C, 13)):
        ds = stored(ds, run(ds, at(hour, 0, 1), child))  # the round starts
        name = rds_build.child_name(ds, round_)
        expected_retain = [v.digest for v in ds.status.versions]
        assert retain_of(run(ds, at(hour, 0, 2), child, (running_job(name), None))) == expected_retain
        child = (finished_job(name, at_=at(hour, 0, 30)), pod_of(name, digest=digest))
        plan = run(ds, at(hour, 0, 31), child)
        ds = stored(ds, plan)
    status = ds.status
    assert [v.digest for v in status.versions] == [C, B]  # A dropped out (keepVersions: 2)
    assert [v.created for v in status.versions] == ["2025-01-01T13:00:30Z", "2025-01-01T12:00:30Z"]
    assert (status.digest, status.digest_short, status.reason) == (C, "c" * 12, "Prepared")
    assert status.storage_uri == f"file:///data/versions/{C}"
    assert plan.events == [
        (
            "Normal",
            "NewVersion",
            "re-reading the sources made version cccccccccccc (100 rows), replacing bbbbbbbbbbbb; "
            "2 version(s) kept",
        )
    ]


def test_returning_to_earlier_data_moves_its_version_to_the_front() -> None:
    versions = [api.DatasetVersion(digest=d, spec_hash="h", job=f"j{i}") for i, d in enumerate((A, B, C))]
    entry = api.DatasetVersion(digest=B, spec_hash="h", job="j9")
    folded, changed = rds.fold_version(versions, entry, 3)
    assert [v.digest for v in folded] == [B, A, C] and changed
    same, changed = rds.fold_version(versions, api.DatasetVersion(digest=A, spec_hash="h"), 3)
    assert same == versions and not changed
    new, _ = rds.fold_version(versions, api.DatasetVersion(digest="d" * 64), 3)
    assert [v.digest for v in new] == ["d" * 64, A, B]


def test_lowering_keep_versions_trims_the_list_at_once() -> None:
    ds = dataset(
        {**SPEC, "retention": {"keepVersions": 1}},
        status={
            "phase": "Ready",
            "digest": A,
            "storageUri": f"file:///data/versions/{A}",
            "jobName": rds_build.child_name(dataset()),
            "versions": [{"digest": A}, {"digest": B}, {"digest": C}],
        },
    )
    plan = run(ds, at(12, 0), (running_job(rds_build.child_name(ds)), None))
    assert [v.digest for v in plan.status.versions] == [A]
    assert retain_of(plan) == [A]


def test_a_failed_refresh_keeps_serving_the_last_good_version() -> None:
    ds, child0 = prepared(dataset(), A, done=at(11, 59, 30))
    ds = stored(ds, run(ds, at(12, 0, 1), child0))
    round1 = rds_build.child_name(ds, 1)
    running = run(ds, at(12, 0, 5), child0, (running_job(round1), pod_of(round1)))
    assert (running.status.phase, running.status.reason) == ("Ready", "Refreshing")
    assert running.status.message is not None and "serving version aaaaaaaaaaaa" in running.status.message
    ds = stored(ds, running)
    failed = (finished_job(round1, at_=at(12, 0, 40), ok=False), pod_of(round1, error="SourceUnreadable"))
    plan = run(ds, at(12, 0, 41), child0, failed)
    status = plan.status
    assert (status.phase, status.reason) == ("Ready", "RefreshFailed")
    assert status.digest == A and status.storage_uri == f"file:///data/versions/{A}"
    assert [v.digest for v in status.versions] == [A]
    assert status.is_true("Ready") and status.is_true("Failed")
    failed_cond = status.condition("Failed")
    assert failed_cond is not None and failed_cond.reason == "SourceUnreadable"
    assert status.last_checked == "2025-01-01T12:00:40Z"  # a failed read is a read
    assert status.message == (
        "re-reading the sources failed (SourceUnreadable): sources[0]: cannot read rows.csv; "
        "still serving version aaaaaaaaaaaa"
    )
    assert plan.events == [("Warning", "RefreshFailed", status.message)]
    assert status.next_check == "2025-01-01T13:00:00Z"  # the schedule tries again
    # A TrainingJob reads a Ready Dataset with a served version: it trains on A.
    assert plan.status.to_api()["phase"] == "Ready"
    # The failure is stable from pass to pass (no status churn, no repeated Warning).
    again = run(stored(ds, plan), at(12, 5), failed)
    assert again.status.to_api() == status.to_api() and again.events == []


def test_a_failed_first_preparation_is_failed_and_the_schedule_retries_it() -> None:
    ds = dataset()
    name = rds_build.child_name(ds)
    failed = (finished_job(name, at_=at(11, 10), ok=False), pod_of(name, error="SourceUnreadable"))
    plan = run(ds, at(11, 10, 5), failed)
    assert (plan.status.phase, plan.status.reason) == ("Failed", "SourceUnreadable")
    assert not plan.status.is_true("Ready") and plan.status.is_true("Stalled")
    ds = stored(ds, plan)
    retry = run(ds, at(12, 0, 1), failed)
    round1 = rds_build.child_name(ds, 1)
    assert ("Job", round1) in applied(retry)
    assert (retry.status.phase, retry.status.reason) == ("Pending", "Creating")
    assert retry.events == [("Normal", "Refreshing", f"re-reading the sources with Job {round1}")]


# -- children and restarts --------------------------------------------------------------------


def test_the_previous_round_is_deleted_once_the_next_one_finished() -> None:
    ds, child0 = prepared(dataset(), A, done=at(11, 0))
    ds = stored(ds, run(ds, at(12, 0, 1), child0))
    round1 = rds_build.child_name(ds, 1)
    child1 = (finished_job(round1, at_=at(12, 0, 30)), pod_of(round1, digest=B))
    ds = stored(ds, run(ds, at(12, 0, 31), child0, child1))
    ds = stored(ds, run(ds, at(13, 0, 1), child0, child1))  # round 2 starts
    round2 = rds_build.child_name(ds, 2)
    cms = [{"metadata": {"name": n, "ownerReferences": [{"uid": UID}]}} for n in (ds.status.job_name, round1)]
    observed = rds.Observed(jobs=[child0[0], child1[0], running_job(round2)], configmaps=cms)
    plan = rds.plan(ds, observed=observed, settings=SETTINGS, now=at(13, 0, 5))
    assert plan.delete == [rplan.ChildRef("batch/v1", "Job", rds_build.child_name(ds))]  # round 0's
    done2 = finished_job(round2, at_=at(13, 0, 30))
    observed = rds.Observed(jobs=[child1[0], done2], pods=[pod_of(round2, digest=C)], configmaps=cms)
    plan = rds.plan(ds, observed=observed, settings=SETTINGS, now=at(13, 0, 31))
    assert plan.delete == [
        rplan.ChildRef("v1", "ConfigMap", round1),
        rplan.ChildRef("batch/v1", "Job", round1),
    ]


def test_a_round_whose_status_write_was_lost_is_not_made_twice() -> None:
    """The pass that made round 1's Job crashed before writing the status: the next pass finds
    the round due again, names the same Job and only observes it."""
    ds, child0 = prepared(dataset(), A, done=at(11, 0))
    round1 = rds_build.child_name(ds, 1)
    plan = run(ds, at(12, 0, 5), child0, (running_job(round1), pod_of(round1)))
    assert applied(plan) == [("ConfigMap", round1)]
    assert (plan.status.job_name, plan.status.refresh_round, plan.status.reason) == (round1, 1, "Refreshing")


def test_a_spec_change_starts_over_at_round_zero() -> None:
    ds, child0 = prepared(dataset(), A, done=at(11, 0))
    ds = stored(ds, run(ds, at(12, 0, 1), child0))
    assert rds.current_round(ds) == 1
    edited = dataset({**SPEC, "split": {"seed": 7}}, status=ds.status.to_api())
    assert rds.current_round(edited) == 0
    plan = run(edited, at(12, 0, 2), child0)
    name = rds_build.child_name(edited)
    assert applied(plan) == [("ConfigMap", name), ("Job", name)]
    assert (plan.status.phase, plan.status.reason) == ("Pending", "Creating")  # not a version of this spec
    assert not plan.status.is_true("Ready")
    assert ("Normal", "SpecChanged", f"the spec changed: re-preparing with Job {name}") in plan.events
    # The new spec yields the same data (a digest covers the data and the preparation, not e.g.
    # the resources): the entry is taken over, so refreshes of the new spec serve it.
    moved = dataset({**SPEC, "resources": {"cpu": "2"}}, status=ds.status.to_api())
    name = rds_build.child_name(moved)
    done = run(moved, at(12, 1), (finished_job(name, at_=at(12, 1)), pod_of(name, digest=A)))
    assert [(v.digest, v.job, v.spec_hash) for v in done.status.versions] == [
        (A, name, rds_build.spec_hash(moved))
    ]
    assert done.status.reason == "Prepared"


def test_a_status_from_before_versions_existed_gains_its_first_entry_quietly() -> None:
    ds = dataset({k: v for k, v in SPEC.items() if k != "refresh"})
    name = rds_build.child_name(ds)
    legacy = {
        "phase": "Ready",
        "reason": "Prepared",
        "digest": A,
        "digestShort": A[:12],
        "storageUri": f"file:///data/versions/{A}",
        "jobName": name,
    }
    old = dataset(ds.spec.to_api(), status=legacy)
    plan = run(old, at(12, 0), (finished_job(name, at_=at(9, 0)), pod_of(name, digest=A)))
    assert [v.digest for v in plan.status.versions] == [A]
    assert applied(plan) == [("ConfigMap", name)]  # no re-preparation after the upgrade
    assert [e.reason for e in plan.events] == []


# -- the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refresh", "message"),
    [
        ({"schedule": "0 */5 * * * *"}, "String should match pattern"),
        ({"schedule": "61 * * * *"}, "spec.refresh.schedule '61 * * * *' is not a valid cron expression"),
        ({"schedule": "@every"}, "String should match pattern"),
        ({"schedule": "0 9 * * *", "timeZone": "Mars/Olympus"}, "spec.refresh.timeZone 'Mars/Olympus'"),
    ],
)
def test_bad_schedules_and_zones_are_refused(refresh: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message.replace("*", r"\*")):
        api.DatasetSpec.model_validate({**SPEC, "refresh": refresh})


@pytest.mark.parametrize(
    "schedule", ["* * * * *", "@daily", "@hourly", "0 9 * * MON-FRI", "*/15 1,13 1 */2 *"]
)
def test_good_schedules_are_accepted(schedule: str) -> None:
    spec = api.DatasetSpec.model_validate({**SPEC, "refresh": {"schedule": schedule}})
    assert spec.refresh is not None and spec.refresh.next_after(at(12, 0)) > at(12, 0)


def test_keep_versions_is_bounded() -> None:
    for bad in (0, api.VERSIONS_MAX + 1):
        with pytest.raises(pydantic.ValidationError, match=r"retention\.keepVersions"):
            api.DatasetSpec.model_validate({**SPEC, "retention": {"keepVersions": bad}})
    assert api.DatasetSpec.model_validate(SPEC).retention.keep_versions == 5
