"""What the TrainingJob handler reads: a run's config is in its Job, so a run of this operator
never reads (or writes, or deletes) a ConfigMap; only a Job an older operator made does."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import logging
from typing import Any

from mlops_operator.api import trainingjob as api
from mlops_operator.api import workload
from mlops_operator.handlers import framework
from mlops_operator.handlers import trainingjob as htj
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
DATASET = {
    "metadata": {"name": "iris", "namespace": "team"},
    "status": {"phase": "Ready", "digest": "sha256:abc", "storageUri": "pvc://data/datasets/iris/abc"},
}


@dataclasses.dataclass
class FakeKube:
    objects: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    calls: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        self.calls.append(("get", kind, name))
        return copy.deepcopy(self.objects.get((kind, name)))

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        self.calls.append(("list", kind, str(kw.get("label_selector"))))
        return []


def context(kube: FakeKube, now: datetime.datetime = NOW) -> framework.Context:
    return framework.Context(
        kube=kube,  # type: ignore[arg-type]
        settings=SETTINGS,
        now=now,
        logger=logging.getLogger("test"),
    )


def make_tj(status: dict[str, Any] | None = None, ttl: int | None = None) -> api.TrainingJob:
    spec: dict[str, Any] = {"datasetRef": {"name": "iris"}, "model": {"estimator": "RandomForestClassifier"}}
    if ttl is not None:
        spec["runPolicy"] = {"ttlSecondsAfterFinished": ttl}
    return api.TrainingJob.from_body(
        {
            "metadata": {"name": "iris-rf", "namespace": "team", "uid": "u", "generation": 1},
            "spec": spec,
            "status": status or {},
        }
    )


def started(tj: api.TrainingJob) -> tuple[api.TrainingJob, dict[str, Any]]:
    """The TrainingJob after its first pass, and the Job that pass created."""
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=DATASET), now=NOW, settings=SETTINGS)
    assert [o["kind"] for o in plan.apply] == ["Job"]
    body = {"metadata": tj.metadata.model_dump(by_alias=True), "spec": tj.spec.to_api()}
    return api.TrainingJob.from_body({**body, "status": plan.status.to_api()}), plan.apply[0]


def older(job: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The Job as an operator before the config annotation made it (config from a ConfigMap),
    and the config text its ConfigMap held."""
    old = copy.deepcopy(job)
    text = old["spec"]["template"]["metadata"].pop("annotations")[build.CONFIG_ANNOTATION]
    old["spec"]["template"]["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": "iris-rf-train"}} if v["name"] == "config" else v
        for v in old["spec"]["template"]["spec"]["volumes"]
    ]
    return old, text


def test_a_new_run_reads_no_configmap_even_with_its_status_lost() -> None:
    _, job = started(make_tj())
    kube = FakeKube({("Job", "iris-rf-train"): job})
    observed = htj.observe(context(kube), make_tj())  # a status restored without datasetUri
    assert ("get", "ConfigMap", "iris-rf-train") not in kube.calls
    assert observed.configmap is None
    plan = rtj.plan(make_tj(), observed=observed, now=NOW, settings=SETTINGS)
    assert plan.status.dataset_uri == "pvc://data/datasets/iris/abc"  # from the annotation
    assert not any(c[1] == "ConfigMap" for c in kube.calls)


def test_an_older_run_without_a_pinned_status_reads_its_configmap() -> None:
    _, job = started(make_tj())
    old, text = older(job)
    configmap = {"metadata": {"name": "iris-rf-train"}, "data": {workload.CONFIG_KEY: text}}
    kube = FakeKube({("Job", "iris-rf-train"): old, ("ConfigMap", "iris-rf-train"): configmap})
    observed = htj.observe(context(kube), make_tj())
    assert ("get", "ConfigMap", "iris-rf-train") in kube.calls
    plan = rtj.plan(make_tj(), observed=observed, now=NOW, settings=SETTINGS)
    assert plan.status.dataset_uri == "pvc://data/datasets/iris/abc"
    # With the version in the status, not even an older run's ConfigMap is read.
    tj, _ = started(make_tj())
    kube.calls.clear()
    htj.observe(context(kube), tj)
    assert ("get", "ConfigMap", "iris-rf-train") not in kube.calls


def _finished(tj: api.TrainingJob) -> api.TrainingJob:
    status = tj.status.model_copy(update={"phase": "Succeeded", "completion_time": "2025-01-01T12:01:00Z"})
    return tj.model_copy(update={"status": status})


def test_a_finished_run_reads_nothing_until_its_ttl_then_only_its_job() -> None:
    tj, job = started(make_tj(ttl=60))
    done = _finished(tj)
    kube = FakeKube({("Job", "iris-rf-train"): job})
    before = NOW.replace(minute=1, second=30)
    assert htj.observe(context(kube, before), done) == rtj.Observed() and kube.calls == []
    due = NOW.replace(minute=2)
    observed = htj.observe(context(kube, due), done)
    assert kube.calls == [("get", "Job", "iris-rf-train")]
    plan = rtj.plan(done, observed=observed, now=due, settings=SETTINGS)
    assert plan.delete == [rplan.ChildRef("batch/v1", "Job", "iris-rf-train")]  # no ConfigMap DELETE


def test_an_older_finished_run_has_its_configmap_deleted_at_its_ttl() -> None:
    tj, job = started(make_tj(ttl=60))
    done = _finished(tj)
    old, _ = older(job)
    kube = FakeKube({("Job", "iris-rf-train"): old})
    due = NOW.replace(minute=2)
    plan = rtj.plan(done, observed=htj.observe(context(kube, due), done), now=due, settings=SETTINGS)
    assert plan.delete == [
        rplan.ChildRef("batch/v1", "Job", "iris-rf-train"),
        rplan.ChildRef("v1", "ConfigMap", "iris-rf-train"),
    ]
    # Once done, the next passes read nothing at all.
    gone = done.model_copy(update={"status": plan.status})
    kube.calls.clear()
    assert htj.observe(context(kube, due), gone) == rtj.Observed() and kube.calls == []


def test_the_annotation_is_the_json_the_trainer_reads() -> None:
    _, job = started(make_tj())
    text = job["spec"]["template"]["metadata"]["annotations"][build.CONFIG_ANNOTATION]
    assert api.TrainConfig.model_validate(json.loads(text)).dataset_uri == "pvc://data/datasets/iris/abc"
