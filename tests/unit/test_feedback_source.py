"""The feedback source without a cluster: the API model, how the pure Dataset reconciler resolves
the ModelDeployment it names (config, volumes, S3 Secrets), the waiting reasons when that
deployment is missing or captures nothing, and what the handler reads. The reader itself runs
in ``test_feedback_prepare.py``."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

import pydantic
import pytest

from mlops_operator.api import common
from mlops_operator.api import dataset as api
from mlops_operator.api import dataset_sources as api_sources
from mlops_operator.crdgen import crd
from mlops_operator.handlers import dataset as hds
from mlops_operator.handlers import framework
from mlops_operator.reconcile import dataset as rds
from mlops_operator.reconcile import dataset_build as rds_build
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="registry.local/mlops-workloads:1.2.3")
UID = "ds-uid"
SPEC: dict[str, Any] = {
    "sources": [{"sklearn": {"name": "iris"}}, {"feedback": {"modelDeployment": "iris"}}],
    "storage": "pvc://data/datasets/iris",
}


def dataset(spec: dict[str, Any] | None = None, *, status: dict[str, Any] | None = None) -> api.Dataset:
    return api.Dataset.from_body(
        {
            "metadata": {
                "name": "iris-feedback",
                "namespace": "ml",
                "uid": UID,
                "generation": 1,
                "creationTimestamp": "2026-03-01T10:00:00Z",
            },
            "spec": spec or SPEC,
            "status": status or {},
        }
    )


def deployment(logging_: dict[str, Any] | None, *, name: str = "iris") -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"trainingJobRef": "iris-logreg"}}
    if logging_ is not None:
        spec["logging"] = logging_
    return {"metadata": {"name": name, "namespace": "ml"}, "spec": spec}


PVC_LOGGING = {"storageUri": "pvc://captures/serving", "lowConfidence": True}
S3_LOGGING = {
    "storageUri": "s3://team-captures/serving",
    "sampleRate": 0.1,
    "s3": {"endpoint": "http://minio.storage:9000", "secretRef": {"name": "capture-creds"}},
}


def plan_for(
    ds: api.Dataset, deployments: dict[str, dict[str, Any] | None], *children: dict[str, Any]
) -> rds.Plan:
    jobs = [c for c in children if c.get("kind", "Job") == "Job" and "spec" in c]
    pods = [c for c in children if c.get("kind") == "Pod"]
    observed = rds.Observed(jobs=jobs, pods=pods, deployments=deployments)
    return rds.plan(ds, observed=observed, settings=SETTINGS, now=NOW)


def kinds(plan: rds.Plan) -> list[str]:
    return [c["kind"] for c in plan.apply]


def config_of(plan: rds.Plan) -> api.PrepareConfig:
    cm = next(c for c in plan.apply if c["kind"] == "ConfigMap")
    return api.PrepareConfig.model_validate_json(cm["data"]["config.json"])


def pod_spec(plan: rds.Plan) -> dict[str, Any]:
    job = next(c for c in plan.apply if c["kind"] == "Job")
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


def test_defaults_and_wire_names() -> None:
    source = api_sources.Source.model_validate({"feedback": {"modelDeployment": "iris"}})
    assert source.kind() == "feedback" and source.known_task() is None
    assert source.feedback is not None
    assert (source.feedback.labelled, source.feedback.include, source.feedback.since) == (True, "all", None)
    assert source.to_api() == {"feedback": {"modelDeployment": "iris", "labelled": True, "include": "all"}}
    full = api_sources.FeedbackSource.model_validate(
        {
            "modelDeployment": "iris",
            "labelled": False,
            "include": "lowConfidence",
            "since": "2026-01-31T08:00:00Z",
        }
    )
    assert full.since_time() == datetime.datetime(2026, 1, 31, 8, tzinfo=datetime.UTC)
    offset = api_sources.FeedbackSource(model_deployment="iris", since="2026-01-31T09:00:00.5+01:00")
    assert offset.since_time() == datetime.datetime(2026, 1, 31, 8, 0, 0, 500000, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("feedback", "message"),
    [
        ({}, "modelDeployment"),
        ({"modelDeployment": "Iris_Model"}, "String should match pattern"),
        ({"modelDeployment": "iris", "include": "sampled"}, "'lowConfidence' or 'all'"),
        ({"modelDeployment": "iris", "since": "yesterday"}, "String should match pattern"),
        ({"modelDeployment": "iris", "since": "2026-01-31T08:00:00"}, "String should match pattern"),
        ({"modelDeployment": "iris", "since": "2026-13-01T00:00:00Z"}, "not an RFC 3339 time"),
        ({"modelDeployment": "iris", "labelled": "maybe"}, "valid boolean"),
        ({"modelDeployment": "iris", "storageUri": "pvc://x/y"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_feedback_sources_are_refused(feedback: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        api_sources.Source.model_validate({"feedback": feedback})
    assert message in str(err.value)


def test_a_source_sets_exactly_one_kind() -> None:
    with pytest.raises(pydantic.ValidationError, match="exactly one of sklearn"):
        api_sources.Source.model_validate(
            {"feedback": {"modelDeployment": "iris"}, "sklearn": {"name": "iris"}}
        )
    assert "feedback" in api_sources.EXACTLY_ONE_MESSAGE


def test_the_crd_carries_the_source_and_its_rules() -> None:
    (resource,) = crd.discover(["mlops_operator.api.dataset"])
    rendered = crd.build(resource)
    schema = rendered["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    source = schema["properties"]["spec"]["properties"]["sources"]["items"]
    feedback = source["properties"]["feedback"]
    assert feedback["required"] == ["modelDeployment"]
    props = feedback["properties"]
    assert props["include"]["enum"] == ["lowConfidence", "all"] and props["include"]["default"] == "all"
    assert props["labelled"] == {**props["labelled"], "type": "boolean", "default": True}
    assert (
        props["since"]["format"] == "date-time" and props["since"]["pattern"] == api_sources.RFC3339_PATTERN
    )
    assert props["modelDeployment"]["pattern"] == api_sources.DNS_SUBDOMAIN_PATTERN
    rule = source["x-kubernetes-validations"][0]["rule"]
    assert rule.endswith("+ (has(self.feedback) ? 1 : 0) == 1")


# ---------------------------------------------------------------------------------------------
# Resolving the ModelDeployment
# ---------------------------------------------------------------------------------------------


def test_the_feedback_deployments_are_named_once_in_source_order() -> None:
    ds = dataset(
        {
            "sources": [
                {"feedback": {"modelDeployment": "b"}},
                {"sklearn": {"name": "iris"}},
                {"feedback": {"modelDeployment": "a", "include": "lowConfidence"}},
                {"feedback": {"modelDeployment": "b", "labelled": False}},
            ],
            "storage": "pvc://data/x",
        }
    )
    assert rds_build.feedback_deployments(ds) == ["b", "a"]
    assert (
        rds_build.feedback_deployments(
            dataset({"sources": [{"sklearn": {"name": "iris"}}], "storage": "pvc://d/x"})
        )
        == []
    )


def test_a_pvc_capture_root_resolves_to_the_deployments_own_directory() -> None:
    stores, waiting = rds_build.resolve_feedback(dataset(), {"iris": deployment(PVC_LOGGING)})
    assert waiting is None
    assert stores == [
        api.FeedbackStore(source=1, model_deployment="iris", uri="pvc://captures/serving/ml/iris", s3=None)
    ]


def test_an_s3_capture_root_keeps_the_deployments_connection() -> None:
    stores, waiting = rds_build.resolve_feedback(dataset(), {"iris": deployment(S3_LOGGING)})
    assert waiting is None and len(stores) == 1
    assert stores[0].uri == "s3://team-captures/serving/ml/iris"
    assert stores[0].s3 == common.S3Connection.model_validate(S3_LOGGING["s3"])


@pytest.mark.parametrize(
    ("found", "reason", "fragments"),
    [
        (
            None,
            "FeedbackSourceMissing",
            ["spec.sources[1].feedback.modelDeployment", "'iris' does not exist", "'ml'"],
        ),
        (
            {
                **deployment(PVC_LOGGING),
                "metadata": {"name": "iris", "deletionTimestamp": "2026-03-01T11:00:00Z"},
            },
            "FeedbackSourceMissing",
            ["does not exist"],
        ),
        (deployment(None), "FeedbackNotCaptured", ["sets no spec.logging", "set its spec.logging"]),
        (
            deployment({"storageUri": "pvc://captures/x", "lowConfidence": False}),
            "FeedbackNotCaptured",
            ["spec.logging of ModelDeployment 'iris' cannot be read"],
        ),
    ],
)
def test_a_deployment_that_cannot_be_read_is_a_reason_to_wait(
    found: dict[str, Any] | None, reason: str, fragments: list[str]
) -> None:
    stores, waiting = rds_build.resolve_feedback(dataset(), {"iris": found} if found is not None else {})
    assert stores == [] and waiting is not None and waiting.reason == reason
    for fragment in fragments:
        assert fragment in waiting.message


# ---------------------------------------------------------------------------------------------
# The plan: config, volumes, waiting
# ---------------------------------------------------------------------------------------------


def test_the_job_reads_a_pvc_root_read_only_and_its_config_names_the_root() -> None:
    plan = plan_for(dataset(), {"iris": deployment(PVC_LOGGING)})
    assert kinds(plan) == ["ConfigMap", "Job"]
    config = config_of(plan)
    assert config.feedback == [
        api.FeedbackStore(source=1, model_deployment="iris", uri="pvc://captures/serving/ml/iris")
    ]
    assert config.feedback_store(1) is not None and config.feedback_store(0) is None
    pod = pod_spec(plan)
    assert {"name": "source-1", "persistentVolumeClaim": {"claimName": "captures"}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "source-1", "mountPath": "/mnt/mlops/pvc/captures", "readOnly": True} in mounts
    assert {"name": "storage", "mountPath": "/mnt/mlops/pvc/data"} in mounts  # the versions: read-write
    assert plan.status.phase == "Pending" and plan.status.reason == "Creating"


def test_a_root_on_the_storage_claim_reuses_its_mount() -> None:
    plan = plan_for(dataset(), {"iris": deployment({"storageUri": "pvc://data/captures"})})
    pod = pod_spec(plan)
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["data"]  # one volume per claim (two volumes of one claim trip some CSI drivers)
    assert config_of(plan).feedback_store(1) == api.FeedbackStore(
        source=1, model_deployment="iris", uri="pvc://data/captures/ml/iris"
    )


def test_a_file_root_is_mounted_where_it_is_and_created_when_absent() -> None:
    plan = plan_for(dataset(), {"iris": deployment({"storageUri": "file:///var/mlops/captures"})})
    pod = pod_spec(plan)
    root = "/var/mlops/captures/ml/iris"
    assert {"name": "source-1", "hostPath": {"path": root, "type": "DirectoryOrCreate"}} in pod["volumes"]
    assert {"name": "source-1", "mountPath": root, "readOnly": True} in pod["containers"][0]["volumeMounts"]


def test_an_s3_root_mounts_the_deployments_secret_only() -> None:
    plan = plan_for(dataset(), {"iris": deployment(S3_LOGGING)})
    pod = pod_spec(plan)
    assert {"name": "s3-0", "secret": {"secretName": "capture-creds", "optional": True}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {
        "name": "s3-0",
        "mountPath": "/var/run/secrets/mlops.dev/s3/capture-creds",
        "readOnly": True,
    } in mounts
    assert not any(v["name"] == "source-1" for v in pod["volumes"])
    assert config_of(plan).feedback_store(1) == api.FeedbackStore(
        source=1,
        model_deployment="iris",
        uri="s3://team-captures/serving/ml/iris",
        s3=common.S3Connection.model_validate(S3_LOGGING["s3"]),
    )
    # The Dataset's own s3 Secret and the deployment's: both, each once.
    both = dataset({**SPEC, "storage": "s3://versions/iris", "s3": {"secretRef": {"name": "dataset-creds"}}})
    volumes = pod_spec(plan_for(both, {"iris": deployment(S3_LOGGING)}))["volumes"]
    assert [v["secret"]["secretName"] for v in volumes if "secret" in v] == ["dataset-creds", "capture-creds"]


def test_a_missing_deployment_waits_without_children_then_prepares() -> None:
    ds = dataset()
    waiting = plan_for(ds, {"iris": None})
    assert waiting.apply == [] and waiting.delete == []
    status = waiting.status
    assert (status.phase, status.reason) == ("Pending", "FeedbackSourceMissing")
    assert status.message is not None and "ModelDeployment 'iris' does not exist" in status.message
    assert status.condition("Ready") is not None and status.condition("Ready").status == "False"  # type: ignore[union-attr]
    failed = status.condition("Failed")
    assert failed is not None and failed.status == "False"
    assert waiting.events == [rplan.EventNote("Warning", "FeedbackSourceMissing", status.message)]
    assert status.last_refresh_request is None and status.job_name == rds_build.child_name(ds)

    # The same pass again: nothing new to say.
    again = plan_for(ds.model_copy(update={"status": status}), {"iris": None})
    assert again.events == [] and again.apply == []
    # The deployment exists but captures nothing: another reason, another Warning.
    uncaptured = plan_for(ds.model_copy(update={"status": status}), {"iris": deployment(None)})
    assert uncaptured.status.reason == "FeedbackNotCaptured" and uncaptured.apply == []
    assert [e.reason for e in uncaptured.events] == ["FeedbackNotCaptured"]
    # It captures: the next pass (the resync) creates the ConfigMap and the Job.
    ready = plan_for(ds.model_copy(update={"status": uncaptured.status}), {"iris": deployment(PVC_LOGGING)})
    assert kinds(ready) == ["ConfigMap", "Job"]
    assert (ready.status.phase, ready.status.reason) == ("Pending", "Creating")
    assert ready.events == []


def test_a_running_job_is_left_alone_while_the_deployment_is_gone() -> None:
    ds = dataset()
    name = rds_build.child_name(ds)
    job = {
        "metadata": {"name": name, "ownerReferences": [{"uid": UID, "controller": True}]},
        "spec": {},
        "status": {"active": 1, "startTime": "2026-03-01T11:59:00Z"},
    }
    plan = plan_for(ds.model_copy(update={"status": api.DatasetStatus(job_name=name)}), {"iris": None}, job)
    assert plan.apply == [] and plan.delete == []  # its ConfigMap stays as the Job started with it
    assert plan.status.reason != "FeedbackSourceMissing"


def _served(ds: api.Dataset, digest: str) -> dict[str, Any]:
    name = rds_build.child_name(ds)
    return {
        "phase": "Ready",
        "reason": "Prepared",
        "digest": digest,
        "digestShort": digest[:12],
        "jobName": name,
        "lastChecked": "2026-03-01T11:00:00Z",
        "nextCheck": "2026-03-01T11:30:00Z",
        "versions": [{"digest": digest, "specHash": rds_build.spec_hash(ds), "job": name}],
    }


def test_a_refresh_round_that_waits_keeps_serving_the_version() -> None:
    spec = {**SPEC, "refresh": {"schedule": "*/30 * * * *"}}
    ds = dataset(spec)
    digest = "ab" * 32
    ds = dataset(spec, status=_served(ds, digest))
    name = rds_build.child_name(ds)
    done = {
        "metadata": {"name": name, "ownerReferences": [{"uid": UID, "controller": True}]},
        "spec": {},
        "status": {
            "succeeded": 1,
            "completionTime": "2026-03-01T11:00:00Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    pod = {
        "kind": "Pod",
        "metadata": {"name": f"{name}-p", "labels": {"batch.kubernetes.io/job-name": name}},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "prepare",
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "message": json.dumps(
                                {
                                    "ok": True,
                                    "digest": digest,
                                    "rows": {
                                        "input": 152,
                                        "output": 150,
                                        "train": 104,
                                        "validation": 23,
                                        "test": 23,
                                    },
                                }
                            ),
                        }
                    },
                }
            ],
        },
    }
    plan = plan_for(ds, {"iris": None}, done, pod)
    status = plan.status
    assert (status.phase, status.reason) == ("Ready", "FeedbackSourceMissing")
    assert status.message is not None and status.message.endswith(f"serving version {digest[:12]}")
    assert status.digest == digest and status.refresh_round == 1
    assert status.job_name == rds_build.child_name(ds, 1)
    assert plan.apply == []  # no Job until the deployment is back
    assert [e.reason for e in plan.events] == ["FeedbackSourceMissing"]
    # It is back: round 1's Job starts, the served version stays.
    back = plan_for(ds.model_copy(update={"status": status}), {"iris": deployment(PVC_LOGGING)}, done, pod)
    assert [(c["kind"], c["metadata"]["name"]) for c in back.apply] == [
        ("ConfigMap", rds_build.child_name(ds, 1)),
        ("Job", rds_build.child_name(ds, 1)),
    ]
    assert (back.status.phase, back.status.reason, back.status.digest) == ("Ready", "Refreshing", digest)


def test_where_the_deployment_captures_is_not_part_of_the_spec_hash() -> None:
    ds = dataset()
    one = plan_for(ds, {"iris": deployment(PVC_LOGGING)})
    other = plan_for(ds, {"iris": deployment(S3_LOGGING)})
    names = {c["metadata"]["name"] for c in [*one.apply, *other.apply]}
    assert names == {rds_build.child_name(ds)}
    assert config_of(one).feedback != config_of(other).feedback
    # The Dataset's own spec is: another deployment, another Job.
    moved = dataset({**SPEC, "sources": [SPEC["sources"][0], {"feedback": {"modelDeployment": "iris-v2"}}]})
    assert rds_build.child_name(moved) != rds_build.child_name(ds)


def test_a_dataset_without_feedback_sources_has_no_feedback_in_its_config() -> None:
    ds = dataset({"sources": [{"sklearn": {"name": "iris"}}], "storage": "pvc://data/x"})
    cm = rds_build.build_configmap(ds, settings=SETTINGS)
    assert "feedback" not in json.loads(cm["data"]["config.json"])
    assert kinds(plan_for(ds, {})) == ["ConfigMap", "Job"]


# ---------------------------------------------------------------------------------------------
# The handler
# ---------------------------------------------------------------------------------------------


class RecordingKube:
    """Lists nothing, answers GETs from ``objects`` and records every read."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.gets: list[tuple[str, str, str, str | None]] = []

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        return []

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        self.gets.append((api_version, kind, name, namespace))
        return self.objects.get((kind, name))


def test_the_handler_reads_the_named_deployments_and_hands_them_to_the_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = RecordingKube({("ModelDeployment", "iris"): deployment(PVC_LOGGING)})
    ctx = framework.Context(
        kube=kube,  # type: ignore[arg-type]
        settings=SETTINGS,
        now=NOW,
        logger=logging.getLogger("test"),
    )
    carried: list[rds.Plan] = []

    def carry_out(_ctx: framework.Context, _namespace: str, plan: rds.Plan) -> framework.Outcome:
        carried.append(plan)
        return framework.Outcome(status=plan.status, events=plan.events)

    monkeypatch.setattr(framework, "carry_out", carry_out)
    body = {
        "metadata": {"name": "iris-feedback", "namespace": "ml", "uid": UID, "generation": 1},
        "spec": {
            "sources": [
                {"feedback": {"modelDeployment": "iris"}},
                {"feedback": {"modelDeployment": "gone"}},
                {"feedback": {"modelDeployment": "iris", "labelled": False}},
            ],
            "storage": "pvc://data/x",
        },
    }
    outcome = hds.reconcile(ctx, body)
    assert kube.gets == [
        (common.API_VERSION, "ModelDeployment", "iris", "ml"),
        (common.API_VERSION, "ModelDeployment", "gone", "ml"),
    ]
    assert carried[0].apply == []
    assert isinstance(outcome.status, api.DatasetStatus) and outcome.status.reason == "FeedbackSourceMissing"
    assert outcome.status.message is not None and "spec.sources[1]" in outcome.status.message
