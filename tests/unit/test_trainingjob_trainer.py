"""Your own code, several workers and the GPU image: what the TrainingJob reconciler builds for
``spec.trainer`` and ``spec.workers``, and how it reads a several-worker run's pods."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest

from mlops_operator.api import sweep as sweep_api
from mlops_operator.api import trainingjob as api
from mlops_operator.api import workload
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import sweep_build
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(
    workload_image="mlops-workloads:test", workload_gpu_image="mlops-workloads-gpu:test"
)
READY = {
    "status": {
        "phase": "Ready",
        "digest": "sha256:abc123def456",
        "storageUri": "pvc://data/datasets/bc/abc123",
        "task": "classification",
    }
}
TRAINER = {
    "image": "registry.example/team/train:1.4",
    "command": ["python", "/opt/mlops/code/train.py"],
    "params": {"epochs": 20, "hidden-units": 64, "optimizer": "adam", "layers": [64, 32]},
    "codeConfigMap": "own-code",
}


def make_tj(spec: dict[str, Any], *, status: dict[str, Any] | None = None) -> api.TrainingJob:
    return api.TrainingJob.from_body(
        {
            "metadata": {"name": "bc", "namespace": "team", "uid": "uid-1", "generation": 1},
            "spec": {"datasetRef": {"name": "bc"}, **spec},
            "status": status or {},
        }
    )


def _stored(tj: api.TrainingJob, plan: rtj.Plan) -> api.TrainingJob:
    body = {
        "metadata": tj.metadata.model_dump(by_alias=True),
        "spec": tj.spec.to_api(),
        "status": plan.status.to_api(),
    }
    return api.TrainingJob.from_body(body)


def started(spec: dict[str, Any]) -> tuple[api.TrainingJob, rtj.Plan]:
    """The pass that creates the Job (after the rendezvous Service, for several workers)."""
    tj = make_tj(spec)
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=READY), now=NOW, settings=SETTINGS)
    if tj.spec.workers > 1:
        assert plan.status.reason == "CreatingRendezvous" and [o["kind"] for o in plan.apply] == ["Service"]
        service = copy.deepcopy(plan.apply[0])
        service["spec"]["clusterIP"] = "10.96.0.42"
        tj = _stored(tj, plan)
        plan = rtj.plan(tj, observed=rtj.Observed(service=service), now=NOW, settings=SETTINGS)
    return _stored(tj, plan), plan


def child(plan: rtj.Plan, kind: str) -> dict[str, Any]:
    return next(o for o in plan.apply if o["kind"] == kind)


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def config_of(plan: rtj.Plan) -> dict[str, Any]:
    """The config every pod of the run reads: its pod template's annotation (no ConfigMap)."""
    assert not any(o["kind"] == "ConfigMap" for o in plan.apply)
    template = child(plan, "Job")["spec"]["template"]
    loaded: dict[str, Any] = json.loads(template["metadata"]["annotations"][build.CONFIG_ANNOTATION])
    return loaded


def assert_config_file_from_annotation(job: dict[str, Any]) -> None:
    """The pod's config file (``$MLOPS_CONFIG_FILE``) is its own annotation, by the downward API."""
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert env_of(job)[workload.CONFIG_FILE_ENV] == workload.CONFIG_FILE
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume == {
        "name": "config",
        "downwardAPI": {
            "items": [
                {
                    "path": workload.CONFIG_KEY,
                    "fieldRef": {"fieldPath": f"metadata.annotations['{build.CONFIG_ANNOTATION}']"},
                }
            ]
        },
    }
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount == {"name": "config", "mountPath": workload.CONFIG_DIR, "readOnly": True}
    assert not any("configMap" in v for v in pod["volumes"] if v["name"] != "code")


# ---------------------------------------------------------------------------------------------
# Your own code
# ---------------------------------------------------------------------------------------------


def test_trainer_gets_its_params_unchecked_as_config_and_env() -> None:
    _, plan = started({"trainer": TRAINER, "objective": {"metric": "val_auc", "direction": "maximize"}})
    assert plan.status.phase == "Pending", plan.status.message
    config = config_of(plan)
    assert config["trainer"] == "custom" and config["estimator"] == ""
    assert config["params"] == TRAINER["params"]
    assert config["task"] == "classification"  # the Dataset's
    assert config["objectiveMetric"] == "val_auc" and config["objectiveDirection"] == "maximize"
    assert config["image"] == TRAINER["image"] and config["command"] == TRAINER["command"]
    root = "/mnt/mlops/pvc/data/datasets/bc/abc123"
    assert config["data"] == {
        "dir": root,
        "train": f"{root}/train.parquet",
        "validation": f"{root}/validation.parquet",
        "test": f"{root}/test.parquet",
        "preprocessor": f"{root}/preprocessor.skops",
        "schema": f"{root}/schema.json",
    }
    assert config["outputDir"] == "/tmp/mlops-staging/model"  # published to outputUri by report()
    assert config["outputUri"] == "pvc://data/models/team/bc"
    job = child(plan, "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == TRAINER["image"] and container["command"] == TRAINER["command"]
    env = env_of(job)
    assert env["MLOPS_PARAM_EPOCHS"] == "20"
    assert env["MLOPS_PARAM_HIDDEN_UNITS"] == "64"
    assert env["MLOPS_PARAM_OPTIMIZER"] == "adam"  # strings as they are
    assert json.loads(env["MLOPS_PARAM_LAYERS"]) == [64, 32]
    assert env["WORLD_SIZE"] == "1" and env["RANK"] == "0" and "MASTER_ADDR" not in env
    code = next(m for m in container["volumeMounts"] if m["name"] == "code")
    assert code == {"name": "code", "mountPath": api.CODE_DIR, "readOnly": True}
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "code")
    assert volume["configMap"] == {"name": "own-code", "optional": True}
    # A team's image reads the same $MLOPS_CONFIG_FILE as the built-in trainer.
    assert_config_file_from_annotation(job)
    # The same contract as every workload pod: no API token, restricted.
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_param_env_names_follow_one_rule() -> None:
    assert build.param_env_name("learning_rate") == "MLOPS_PARAM_LEARNING_RATE"
    assert build.param_env_name("hidden-units.v2") == "MLOPS_PARAM_HIDDEN_UNITS_V2"


def test_trainer_params_are_not_checked_but_objective_is_required() -> None:
    spec = api.TrainingJobSpec.model_validate({"datasetRef": {"name": "bc"}, "trainer": TRAINER})
    assert api.validate_spec(spec) == ["objective: required with trainer (the metric your code reports)"]
    spec = api.TrainingJobSpec.model_validate(
        {"datasetRef": {"name": "bc"}, "trainer": TRAINER, "objective": {"metric": "val_auc"}}
    )
    assert api.validate_spec(spec) == []


def test_trainer_result_with_its_own_metric_names_lands_in_status() -> None:
    tj, plan = started({"trainer": TRAINER, "objective": {"metric": "val_auc", "direction": "maximize"}})
    job = copy.deepcopy(child(plan, "Job"))
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    result = {
        "ok": True,
        "metrics": {"validation": {"val_auc": 0.97, "accuracy": 0.95}, "test": {"accuracy": 0.94}},
        "modelUri": "pvc://data/models/team/bc",
        "device": "cpu",
        "worldSize": 1,
        "epochs": 20,
    }
    pods = [_pod(0, terminated={"exitCode": 0, "message": json.dumps(result)}, image_id="sha256:feed")]
    out = rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=NOW, settings=SETTINGS)
    status = out.status
    assert status.phase == "Succeeded", status.message
    assert status.objective_metric == "val_auc" and status.objective_value == 0.97
    assert status.metrics is not None and status.metrics["accuracy"].test == 0.94
    assert (status.device, status.world_size, status.epochs, status.image_id) == ("cpu", 1, 20, "sha256:feed")


# ---------------------------------------------------------------------------------------------
# Images and devices
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "gpu", "image"),
    [
        ({"estimator": "RandomForestClassifier"}, 0, "mlops-workloads:test"),
        ({"estimator": "XGBClassifier"}, 1, "mlops-workloads-gpu:test"),
        ({"estimator": "TorchMLPClassifier"}, 0, "mlops-workloads-gpu:test"),
    ],
)
def test_the_gpu_image_only_where_it_is_needed(model: dict[str, Any], gpu: int, image: str) -> None:
    _, plan = started({"model": model, "resources": {"gpu": gpu}})
    container = child(plan, "Job")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == image
    assert config_of(plan)["image"] == image


def _gpu_run(result: dict[str, Any], *, fallback: bool) -> api.TrainingJobStatus:
    spec: dict[str, Any] = {"model": {"estimator": "XGBClassifier"}, "resources": {"gpu": 1}}
    if fallback:
        spec["allowCPUFallback"] = True
    tj, plan = started(spec)
    assert config_of(plan)["allowCPUFallback"] is fallback
    job = copy.deepcopy(child(plan, "Job"))
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    pods = [_pod(0, terminated={"exitCode": 0, "message": json.dumps({"ok": True, **result})})]
    return rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=NOW, settings=SETTINGS).status


def test_a_gpu_run_that_ended_on_the_cpu_fails_unless_allowed() -> None:
    status = _gpu_run({"device": "cpu", "metrics": {"validation": {"accuracy": 0.9}}}, fallback=False)
    assert status.phase == "Failed" and status.reason == "GPUUnavailable"
    assert "allowCPUFallback" in (status.message or "") and status.device == "cpu"
    status = _gpu_run({"device": "cpu", "metrics": {"validation": {"accuracy": 0.9}}}, fallback=True)
    assert status.phase == "Succeeded" and status.device == "cpu"
    status = _gpu_run(
        {"device": "cuda:0 (NVIDIA H200)", "metrics": {"validation": {"accuracy": 0.9}}}, fallback=False
    )
    assert status.phase == "Succeeded" and status.device == "cuda:0 (NVIDIA H200)"


# ---------------------------------------------------------------------------------------------
# Several workers
# ---------------------------------------------------------------------------------------------

DDP = {"model": {"estimator": "TorchMLPClassifier", "params": {"epochs": 5}}, "workers": 2}


def _pod(
    rank: int,
    *,
    phase: str = "Succeeded",
    terminated: dict[str, Any] | None = None,
    unschedulable_since: str | None = None,
    image_id: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if terminated is not None:
        status["containerStatuses"] = [
            {"name": "train", "state": {"terminated": terminated}, "imageID": image_id or f"sha256:{rank}"}
        ]
    if unschedulable_since:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.",
                "lastTransitionTime": unschedulable_since,
            }
        ]
    return {
        "metadata": {
            "name": f"bc-train-{rank}-x",
            "creationTimestamp": f"2025-01-01T12:00:0{rank}Z",
            "annotations": {build.COMPLETION_INDEX_ANNOTATION: str(rank)},
        },
        "status": status,
    }


def test_workers_make_an_indexed_job_and_a_rendezvous_service() -> None:
    _, plan = started(DDP)
    job = child(plan, "Job")
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["completionMode"]) == (2, 2, "Indexed")
    assert spec["backoffLimit"] == 2  # one retry of the whole run: both workers' pods
    env = env_of(job)
    assert env["WORLD_SIZE"] == "2" and env["MASTER_ADDR"] == "10.96.0.42"  # the Service's ClusterIP
    assert env["MASTER_PORT"] == str(build.MASTER_PORT)
    assert env["RANK"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
    }
    service = child(plan, "Service")
    assert service["metadata"]["name"] == "bc-train"
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {
        "batch.kubernetes.io/job-name": "bc-train",
        "batch.kubernetes.io/job-completion-index": "0",  # rank 0 is the master
    }
    assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert config_of(plan)["workers"] == 2
    # One pod template for every rank: each worker reads the same config from its own annotation.
    assert_config_file_from_annotation(job)
    assert [o["kind"] for o in plan.apply] == ["Service", "Job"]


def test_only_distributed_estimators_take_workers() -> None:
    spec = api.TrainingJobSpec.model_validate(
        {"datasetRef": {"name": "bc"}, "model": {"estimator": "RandomForestClassifier"}, "workers": 2}
    )
    assert any(
        e.startswith("workers: RandomForestClassifier trains on one pod") for e in api.validate_spec(spec)
    )


def test_the_result_is_rank_zeros() -> None:
    tj, plan = started(DDP)
    job = copy.deepcopy(child(plan, "Job"))
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 2}
    chief = {
        "ok": True,
        "rank": 0,
        "worldSize": 2,
        "modelUri": "pvc://data/models/team/bc",
        "device": "cpu",
        "metrics": {"validation": {"accuracy": 0.97}},
        "epochs": 5,
    }
    other = {"ok": True, "rank": 1, "worldSize": 2}
    pods = [  # rank 1 finished last: the newest pod must not win
        _pod(0, terminated={"exitCode": 0, "message": json.dumps(chief)}),
        _pod(1, terminated={"exitCode": 0, "message": json.dumps(other)}),
    ]
    pods[1]["metadata"]["creationTimestamp"] = "2025-01-01T12:00:09Z"
    outcome = rjobs.job_outcome(job, pods)
    assert outcome.result == chief
    status = rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=NOW, settings=SETTINGS).status
    assert status.phase == "Succeeded" and status.world_size == 2 and status.model_uri == chief["modelUri"]
    assert status.image_id == "sha256:0"


@pytest.mark.parametrize(("waited", "fails"), [(30, False), (61, True)])
def test_a_worker_that_cannot_be_scheduled_fails_the_run(waited: int, fails: bool) -> None:
    tj, plan = started(DDP)
    job = copy.deepcopy(child(plan, "Job"))
    job["status"] = {"active": 2, "startTime": "2025-01-01T11:58:00Z"}
    since = (NOW - datetime.timedelta(seconds=waited)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pods = [_pod(0, phase="Running"), _pod(1, phase="Pending", unschedulable_since=since)]
    out = rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=NOW, settings=SETTINGS)
    if fails:
        assert out.status.phase == "Failed" and out.status.reason == "Unschedulable"
        assert "Insufficient cpu" in (out.status.message or "")
        assert rplan.ChildRef("batch/v1", "Job", "bc-train") in out.delete
        assert out.events[0][:2] == ("Warning", "Unschedulable")
    else:
        assert out.status.phase in {"Pending", "Running"} and out.delete == []
        # The deadline is a wake-up, so the run fails on time, not on the next resync.
        assert out.wake_at == NOW - datetime.timedelta(seconds=waited) + datetime.timedelta(seconds=60)


def test_the_scheduling_timeout_is_the_run_policys() -> None:
    spec = {**DDP, "runPolicy": {"schedulingTimeoutSeconds": 10}}
    tj, plan = started(spec)
    job = copy.deepcopy(child(plan, "Job"))
    job["status"] = {"active": 2, "startTime": "2025-01-01T11:58:00Z"}
    since = (NOW - datetime.timedelta(seconds=11)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pods = [_pod(0, phase="Running"), _pod(1, phase="Pending", unschedulable_since=since)]
    out = rtj.plan(tj, observed=rtj.Observed(job=job, pods=pods), now=NOW, settings=SETTINGS)
    assert out.status.phase == "Failed" and "for 10s" in (out.status.message or "")


def test_ttl_removes_the_service_of_a_several_worker_run() -> None:
    spec = {**DDP, "runPolicy": {"ttlSecondsAfterFinished": 0}}
    run_hash = build.run_hash(api.TrainingJobSpec.model_validate({"datasetRef": {"name": "bc"}, **spec}))
    finished = {"phase": "Succeeded", "completionTime": "2025-01-01T11:00:00Z", "specHash": run_hash}
    tj = make_tj(spec, status=finished)
    out = rtj.plan(tj, observed=rtj.Observed(), now=NOW, settings=SETTINGS)
    assert rplan.ChildRef("v1", "Service", "bc-train") in out.delete


# ---------------------------------------------------------------------------------------------
# A sweep over your own code
# ---------------------------------------------------------------------------------------------


def test_a_sweep_tunes_a_trainers_params() -> None:
    sweep = sweep_api.HyperparameterSweep.from_body(
        {
            "metadata": {"name": "own", "namespace": "team", "uid": "uid-s", "generation": 1},
            "spec": {
                "trialTemplate": {"datasetRef": {"name": "bc"}, "trainer": TRAINER},
                "objective": {"metric": "val_auc", "direction": "maximize"},
                "searchSpace": [
                    {"name": "alpha", "type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                    {"name": "epochs", "type": "int", "low": 5, "high": 40},
                ],
                "algorithm": {"name": "random"},
                "maxTrials": 4,
            },
        }
    )
    assert sweep_build.validate(sweep) == []
    spec = sweep_build.trial_spec(sweep, {"alpha": 0.01, "epochs": 12}, "own-trial-0")
    assert spec.trainer is not None and spec.model is None
    assert spec.trainer.params == {**TRAINER["params"], "alpha": 0.01, "epochs": 12}
    assert spec.objective is not None and spec.objective.metric == "val_auc"
    assert api.validate_spec(spec) == []


def test_params_that_would_share_a_variable_are_refused() -> None:
    spec = api.TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "bc"},
            "trainer": {**TRAINER, "params": {"learning-rate": 0.1, "learning_rate": 0.2}},
            "objective": {"metric": "val_auc"},
        }
    )
    assert api.validate_spec(spec) == [
        "trainer.params: 'learning-rate' and 'learning_rate' would both be $MLOPS_PARAM_LEARNING_RATE"
    ]


def test_the_operator_and_the_trainer_helper_name_variables_alike() -> None:
    from mlops_workloads import trainer

    for name in ("lr", "hidden-units", "a.b_c", "maß", "x9"):
        assert build.param_env_name(name) == trainer.param_env_name(name)
    for value in (0.01, [64, 32], {"b": 1, "a": 2}, True, "adam"):
        assert build.param_env({"v": value})[0]["value"] == trainer.param_env_value(value)
