"""What Flux (kstatus) and Argo CD conclude from the statuses the reconcilers write.

Every status here comes out of the real pure reconcilers (or ``framework.failed_status``),
goes through the wire form, and is judged by ``_kstatus.compute`` (a port of cli-utils'
rules) and by the installed Argo CD Lua check. The rules this pins, per kind:

- work still to do (Pending, WaitingForData, Queued, Running, Preparing, trials running, a
  rollout) → InProgress, ``Reconciling`` True with the reason;
- done (TrainingJob / sweep Succeeded, Dataset Ready, ModelDeployment serving) → Current,
  ``Ready`` True;
- cannot proceed (any Failed, a rolled-back canary) → Failed, ``Stalled`` True with the reason;
- a TrainingJob suspended by ``runPolicy.suspend`` → Current, not Ready (where the spec asked);
  one waiting for Kueue (Queued) → InProgress;
- a spec edit the operator has not seen yet (stale ``observedGeneration``) → InProgress.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import _kstatus
import lupa.lua51 as lupa_lua51
import pytest

from mlops_operator import argocd
from mlops_operator.api import common
from mlops_operator.api import dataset as dsapi
from mlops_operator.api import modeldeployment as mdapi
from mlops_operator.api import sweep as swapi
from mlops_operator.api import trainingjob as tjapi
from mlops_operator.handlers import framework
from mlops_operator.reconcile import dataset as rds
from mlops_operator.reconcile import dataset_build as rds_build
from mlops_operator.reconcile import modeldeployment as rmd
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import sweep as rsweep
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
GENERATION = 4
DATASET_READY = {"status": {"phase": "Ready", "digest": "sha256:abc", "storageUri": "pvc://data/iris/abc"}}
# kstatus result → the Argo CD health statuses that agree with it.
AGREES = {
    "InProgress": {"Progressing", "Suspended"},
    "Current": {"Healthy", "Suspended"},
    "Failed": {"Degraded"},
}


def judge(kind: str, status: common.StatusBase | dict[str, Any]) -> tuple[_kstatus.Result, str]:
    """(kstatus result, Argo CD health status) of the stored object; checks the conditions too."""
    wire = status.to_api() if isinstance(status, common.StatusBase) else status
    obj = _kstatus.of_status(kind, wire, generation=GENERATION)
    result = _kstatus.compute(obj)
    conditions = {c["type"]: c for c in wire.get("conditions") or []}
    for type_ in ("Ready", "Reconciling", "Stalled"):
        assert type_ in conditions, f"{kind} status has no {type_} condition: {wire}"
        assert conditions[type_]["observedGeneration"] == GENERATION
        assert conditions[type_]["reason"], f"{type_} has no reason"
    lua = lupa_lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    health = str(lua.execute(argocd.health_script(kind))["status"])
    assert health in AGREES[result.status], (kind, result, health)
    return result, health


# ---------------------------------------------------------------------------------------------
# TrainingJob
# ---------------------------------------------------------------------------------------------


def tj(
    *, labels: dict[str, str] | None = None, suspend: bool = False, status: Any = None
) -> tjapi.TrainingJob:
    spec: dict[str, Any] = {
        "datasetRef": {"name": "iris"},
        "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 10}},
    }
    if suspend:
        spec["runPolicy"] = {"suspend": True}
    return tjapi.TrainingJob.from_body(
        {
            "metadata": {
                "name": "iris-rf",
                "namespace": "ns",
                "uid": "u",
                "generation": GENERATION,
                "labels": labels or {},
            },
            "spec": spec,
            "status": status or {},
        }
    )


def tj_pass(resource: tjapi.TrainingJob, **observed: Any) -> tuple[tjapi.TrainingJob, rtj.Plan]:
    plan = rtj.plan(resource, observed=rtj.Observed(**observed), now=NOW, settings=SETTINGS)
    stored = resource.model_copy(
        update={"status": tjapi.TrainingJobStatus.model_validate(plan.status.to_api())}
    )
    return stored, plan


def tj_job(plan: rtj.Plan, status: dict[str, Any]) -> dict[str, Any]:
    job = copy.deepcopy(next(o for o in plan.apply if o["kind"] == "Job"))
    job["status"] = status
    return job


def test_trainingjob_pending_running_succeeded() -> None:
    started, plan = tj_pass(tj(), dataset=DATASET_READY)
    result, health = judge("TrainingJob", plan.status)
    assert (result.status, result.reason, health) == ("InProgress", "JobCreated", "Progressing")
    job = tj_job(plan, {"active": 1, "ready": 1})
    running, plan = tj_pass(started, job=job, pods=[{"status": {"phase": "Running"}}], configmap={})
    result, health = judge("TrainingJob", plan.status)
    assert (result.status, result.reason, health) == ("InProgress", "PodRunning", "Progressing")
    assert not plan.status.is_true("Ready")
    done = dict(job, status={"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
    _, plan = tj_pass(running, job=done, pods=[], configmap={})
    result, health = judge("TrainingJob", plan.status)
    assert (result.status, health) == ("Current", "Healthy")
    assert plan.status.is_true("Ready") and not plan.status.is_true("Reconciling")


def test_trainingjob_failed_is_stalled_with_the_reason() -> None:
    started, plan = tj_pass(tj(), dataset=DATASET_READY)
    job = tj_job(
        plan,
        {"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
    )
    oom = {
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}],
        }
    }
    _, plan = tj_pass(started, job=job, pods=[oom], configmap={})
    result, health = judge("TrainingJob", plan.status)
    assert (result.status, result.reason, health) == ("Failed", "OOMKilled", "Degraded")
    assert not plan.status.is_true("Ready") and not plan.status.is_true("Reconciling")


def test_trainingjob_waiting_for_data_and_queued_are_in_progress() -> None:
    _, plan = tj_pass(tj(), dataset=None)
    assert plan.status.phase == "WaitingForData"
    assert judge("TrainingJob", plan.status)[0].status == "InProgress"
    _, plan = tj_pass(tj(labels={tjapi.KUEUE_QUEUE_LABEL: "team"}), dataset=DATASET_READY)
    assert plan.status.phase == "Queued"
    result, _ = judge("TrainingJob", plan.status)
    assert (result.status, result.reason) == ("InProgress", "Queued")


def test_trainingjob_suspended_on_purpose_is_current_but_not_ready() -> None:
    _, plan = tj_pass(tj(suspend=True), dataset=DATASET_READY)
    assert plan.status.phase == "Suspended"
    result, health = judge("TrainingJob", plan.status)
    assert (result.status, health) == ("Current", "Suspended")
    assert not plan.status.is_true("Ready")


def test_invalid_spec_is_stalled() -> None:
    bad = tj()
    bad = bad.model_copy(
        update={
            "spec": bad.spec.model_copy(
                update={"model": tjapi.ModelSpec(estimator="RandomForestClassifier", params={"no_such": 1})}
            )
        }
    )
    _, plan = tj_pass(bad, dataset=DATASET_READY)
    result, health = judge("TrainingJob", plan.status)
    assert (result.status, result.reason, health) == ("Failed", "InvalidSpec", "Degraded")


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------

DS_SPEC = {
    "sources": [{"file": {"uri": "pvc://data/raw/a.csv"}}],
    "schema": {"target": "label"},
    "storage": "pvc://data/ds",
}
DS_RESULT = {
    "ok": True,
    "digest": "3f1c" + "0" * 60,
    "storageUri": "pvc://data/ds/3f1c" + "0" * 60,
    "task": "classification",
    "target": "label",
    "rows": {"input": 10, "output": 10, "dropped": 0, "train": 6, "validation": 2, "test": 2},
}


def ds_status(job_status: dict[str, Any] | None, pods: list[dict[str, Any]]) -> dsapi.DatasetStatus:
    ds = dsapi.Dataset.from_body(
        {
            "metadata": {"name": "d", "namespace": "ns", "uid": "u", "generation": GENERATION},
            "spec": DS_SPEC,
            "status": {},
        }
    )
    job = (
        None
        if job_status is None
        else {"metadata": {"name": rds_build.child_name(ds)}, "spec": {}, "status": job_status}
    )
    return rds.compute_status(ds, job=job, pods=pods, now=NOW)


def test_dataset_statuses() -> None:
    result, health = judge("Dataset", ds_status(None, []))
    assert (result.status, health) == ("InProgress", "Progressing")
    result, _ = judge("Dataset", ds_status({"active": 1}, [{"status": {"phase": "Running"}}]))
    assert (result.status, result.reason) == ("InProgress", "Preparing")
    term = {"exitCode": 0, "message": json.dumps(DS_RESULT)}
    done = ds_status(
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
        [{"status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": term}}]}}],
    )
    result, health = judge("Dataset", done)
    assert (result.status, health) == ("Current", "Healthy") and done.is_true("Ready")
    failed = ds_status(
        {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}, []
    )
    result, health = judge("Dataset", failed)
    assert (result.status, result.reason, health) == ("Failed", "DeadlineExceeded", "Degraded")
    assert not failed.is_true("Ready")


# ---------------------------------------------------------------------------------------------
# HyperparameterSweep
# ---------------------------------------------------------------------------------------------


def sweep_body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trialTemplate": {"datasetRef": {"name": "iris"}, "model": {"estimator": "RandomForestClassifier"}},
        "searchSpace": [{"name": "max_depth", "type": "int", "low": 2, "high": 12}],
        "objective": {"metric": "accuracy"},
        "algorithm": {"name": "random"},
        "seed": 7,
        "maxTrials": 1,
        "parallelism": 1,
        **spec,
    }
    return {"metadata": {"name": "s", "namespace": "ns", "uid": "u", "generation": GENERATION}, "spec": base}


def sweep_pass(body: dict[str, Any], children: list[dict[str, Any]]) -> rsweep.Plan:
    plan = rsweep.plan(swapi.HyperparameterSweep.from_body(body), children=children, now=NOW)
    body["status"] = plan.status.to_api()
    return plan


def test_sweep_running_succeeded_failed() -> None:
    body = sweep_body()
    plan = sweep_pass(body, [])
    result, health = judge("HyperparameterSweep", plan.status)
    assert (result.status, health) == ("InProgress", "Progressing")
    trial = copy.deepcopy(plan.create_once[0])
    trial["status"] = {
        "phase": "Succeeded",
        "objectiveMetric": "accuracy",
        "objectiveValue": 0.9,
        "modelUri": "pvc://m/t",
    }
    plan = sweep_pass(body, [trial])
    assert plan.status.phase == "Succeeded"
    result, health = judge("HyperparameterSweep", plan.status)
    assert (result.status, health) == ("Current", "Healthy") and plan.status.is_true("Ready")
    trial["status"] = {"phase": "Failed", "reason": "OOMKilled", "message": "oom"}
    failing = sweep_body(maxFailedTrials=0)
    plan = sweep_pass(failing, [trial])
    result, health = judge("HyperparameterSweep", plan.status)
    assert (result.status, result.reason, health) == ("Failed", "TooManyFailedTrials", "Degraded")


# ---------------------------------------------------------------------------------------------
# ModelDeployment
# ---------------------------------------------------------------------------------------------


def md_plan(spec: dict[str, Any], status: dict[str, Any] | None = None, **observed: Any) -> rmd.Plan:
    resource = mdapi.ModelDeployment.from_body(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": GENERATION},
            "spec": spec,
            "status": status or {},
        }
    )
    return rmd.plan(resource, observed=rmd.Observed(**observed), now=NOW, settings=SETTINGS)


def deployment(replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
        },
    }


def test_modeldeployment_statuses() -> None:
    uri = "pvc://models/iris/v1"
    plan = md_plan({"model": {"storageUri": uri}, "replicas": 2}, deployments={"stable": deployment(2, 0)})
    result, health = judge("ModelDeployment", plan.status)
    assert (result.status, health) == ("InProgress", "Progressing")
    plan = md_plan({"model": {"storageUri": uri}, "replicas": 2}, deployments={"stable": deployment(2, 2)})
    result, health = judge("ModelDeployment", plan.status)
    assert (result.status, health) == ("Current", "Healthy") and plan.status.is_true("Ready")
    plan = md_plan(
        {"model": {"trainingJobRef": "iris-rf"}},
        sources={("TrainingJob", "iris-rf"): {"status": {"phase": "Failed", "message": "OOMKilled"}}},
    )
    result, health = judge("ModelDeployment", plan.status)
    assert (result.status, result.reason, health) == ("Failed", "ModelSourceFailed", "Degraded")
    plan = md_plan(
        {"model": {"trainingJobRef": "iris-rf"}},
        sources={("TrainingJob", "iris-rf"): {"status": {"phase": "Running"}}},
    )
    assert judge("ModelDeployment", plan.status)[0].status == "InProgress"


# ---------------------------------------------------------------------------------------------
# The framework's failure path and stale generations, for every kind
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", argocd.KINDS)
def test_permanent_failure_is_stalled(kind: str) -> None:
    running = common.StatusBase(phase="Running", observed_generation=GENERATION).with_progress(
        "InProgress", ready=True, reason="Working", now=NOW, generation=GENERATION
    )
    body = {"metadata": {"generation": GENERATION}, "status": running.to_api()}
    stored = framework.failed_status(body, "ChildRejected", "the API refused the Job", NOW)
    result, health = judge(kind, stored)
    assert (result.status, result.reason, health) == ("Failed", "ChildRejected", "Degraded")
    conditions = {c["type"]: c["status"] for c in stored["conditions"]}
    assert conditions["Ready"] == conditions["Reconciling"] == "False" and conditions["Stalled"] == "True"


@pytest.mark.parametrize("kind", argocd.KINDS)
def test_a_spec_edit_not_yet_observed_is_in_progress(kind: str) -> None:
    done = common.StatusBase(phase="Succeeded", observed_generation=GENERATION).with_progress(
        "Current", ready=True, reason="Completed", now=NOW, generation=GENERATION
    )
    obj = _kstatus.of_status(kind, done.to_api(), generation=GENERATION + 1)
    result = _kstatus.compute(obj)
    assert (result.status, result.reason) == ("InProgress", "LatestGenerationNotObserved")
    assert (
        _kstatus.compute(_kstatus.of_status(kind, done.to_api(), generation=GENERATION)).status == "Current"
    )


def test_the_kstatus_port_follows_cli_utils() -> None:
    """The reference itself: condition order decides, Ready is not read, deletion wins."""
    cond = lambda t, s: {"type": t, "status": s, "reason": t}  # noqa: E731
    obj = _kstatus.of_status(
        "X", {"observedGeneration": 1, "conditions": [cond("Stalled", "True"), cond("Reconciling", "True")]}
    )
    assert _kstatus.compute(obj).status == "Failed"
    obj["status"]["conditions"].reverse()
    assert _kstatus.compute(obj).status == "InProgress"
    assert (
        _kstatus.compute(_kstatus.of_status("X", {"conditions": [cond("Ready", "False")]})).status
        == "Current"
    )
    no_observed = _kstatus.of_status("X", {}, generation=9)
    assert _kstatus.compute(no_observed).status == "Current"
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert _kstatus.compute(obj).status == "Terminating"


def test_modeldeployment_serving_the_previous_model() -> None:
    """The new model's source still trains (InProgress) or failed (Failed): the stable pods keep
    answering (Ready), but the spec is not reached; Argo CD must agree with Flux."""
    old = {"servedModelUri": "pvc://models/iris/v1"}
    spec = {"model": {"trainingJobRef": "iris-rf"}, "replicas": 1}
    running = {("TrainingJob", "iris-rf"): {"status": {"phase": "Running"}}}
    plan = md_plan(spec, old, sources=running, deployments={"stable": deployment(1, 1)})
    result, health = judge("ModelDeployment", plan.status)
    assert (result.status, health) == ("InProgress", "Progressing") and plan.status.is_true("Ready")
    failed = {("TrainingJob", "iris-rf"): {"status": {"phase": "Failed", "message": "OOMKilled"}}}
    plan = md_plan(spec, old, sources=failed, deployments={"stable": deployment(1, 1)})
    result, health = judge("ModelDeployment", plan.status)
    assert (result.status, result.reason, health) == ("Failed", "ModelSourceFailed", "Degraded")
    assert plan.status.is_true("Ready")


def test_modeldeployment_rolled_back_canary_is_stalled_but_serving() -> None:
    spec = {
        "model": {"storageUri": "pvc://models/iris/v1"},
        "replicas": 4,
        "canary": {
            "model": {"storageUri": "pvc://models/iris/v2"},
            "trafficPercent": 25,
            "rollback": {"errorRateMargin": 0.02, "p95LatencyMarginMs": 50, "minRequests": 100},
        },
    }
    status = {
        "canary": {
            "specHash": rowner.spec_hash(spec["canary"]["model"]),
            "state": "RolledBack",
            "message": "error rate 12%",
        }
    }
    plan = md_plan(spec, status, deployments={"stable": deployment(4, 4)})
    assert plan.status.canary is not None and plan.status.canary.state == "RolledBack"
    result, health = judge("ModelDeployment", plan.status)
    assert (result.status, result.reason, health) == ("Failed", "CanaryRolledBack", "Degraded")
    assert plan.status.is_true("Ready")
