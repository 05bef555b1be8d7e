"""spec.logging.review (pure): the review server's Deployment and Service, planned beside the serving
pods when enabled, deleted when turned off; its pod reads and writes the serving pods' store."""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
import pytest
from test_pod_security import restricted_violations

from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import modeldeployment as rmd
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import modeldeployment_review as review
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test", run_as_user=1234)
URI = "pvc://models/iris/v1"


def md(
    logging: dict[str, Any] | None, status: dict[str, Any] | None = None, **spec: Any
) -> api.ModelDeployment:
    body_spec: dict[str, Any] = {"model": {"storageUri": URI}, **spec}
    if logging is not None:
        body_spec["logging"] = logging
    return api.ModelDeployment.from_body(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 2},
            "spec": body_spec,
            "status": status or {},
        }
    )


def plan(resource: api.ModelDeployment) -> rmd.Plan:
    return rmd.plan(resource, observed=rmd.Observed(), now=NOW, settings=SETTINGS)


def named(plan_: rmd.Plan, kind: str, name: str) -> dict[str, Any] | None:
    return next((o for o in plan_.apply if o["kind"] == kind and o["metadata"]["name"] == name), None)


def config_of(deployment: dict[str, Any]) -> api.ReviewConfig:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = next(e for e in container["env"] if e["name"] == "MLOPS_CONFIG")
    return api.ReviewConfig.model_validate_json(env["value"])


ON = {"storageUri": "pvc://feedback/captures", "review": {"enabled": True}}


def test_review_is_off_by_default_and_plans_nothing() -> None:
    for logging in (None, {"storageUri": "pvc://feedback/captures"}):
        result = plan(md(logging))
        assert not any(o["metadata"]["name"] == "iris-review" for o in result.apply)
        assert result.status.review is None
        assert not any(ref.name == "iris-review" for ref in result.delete)  # nothing to clean up either


def test_enabled_review_plans_a_deployment_and_a_service_and_its_url() -> None:
    result = plan(md(ON))
    dep = named(result, "Deployment", "iris-review")
    svc = named(result, "Service", "iris-review")
    assert dep is not None and svc is not None
    assert result.status.review == api.ReviewStatus(url="http://iris-review.ml.svc.cluster.local")
    assert result.status.to_api()["review"] == {"url": "http://iris-review.ml.svc.cluster.local"}
    for obj in (dep, svc):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "mlops.dev/v1alpha1",
                "kind": "ModelDeployment",
                "name": "iris",
                "uid": "u-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "review"
        assert obj["metadata"]["labels"]["mlops.dev/modeldeployment"] == "iris"
    assert svc["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/component": "review", "mlops.dev/modeldeployment": "iris"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    }
    spec = dep["spec"]
    assert spec["replicas"] == 1
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    # The model's Service and PDB select serving pods only, never the review pod (and back).
    serving = build.selector(md(ON))
    assert not serving.items() <= labels.items()
    serving_pod = named(result, "Deployment", "iris-predictor")
    assert serving_pod is not None
    assert (
        not svc["spec"]["selector"].items() <= serving_pod["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_review_pod_is_restricted_healthy_and_on_the_serving_pods_store() -> None:
    result = plan(md(ON, image="registry.example/mlops-workloads:9"))
    dep = named(result, "Deployment", "iris-review")
    serving = named(result, "Deployment", "iris-predictor")
    assert dep is not None and serving is not None
    pod = dep["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "mlops_workloads.review"]
    assert container["image"] == "registry.example/mlops-workloads:9"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsUser"] == 1234
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "256Mi"},
    }
    # The claim mounted read-write where the serving pods mount it, and the same root in the config.
    assert {"name": "capture", "persistentVolumeClaim": {"claimName": "feedback"}} in pod["volumes"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == build.CAPTURE_MOUNT)
    assert mount == {"name": "capture", "mountPath": build.CAPTURE_MOUNT}  # no readOnly: labels are written
    config = config_of(dep)
    serving_env = next(
        e for e in serving["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "MLOPS_CONFIG"
    )
    serve_config = api.ServeConfig.model_validate_json(serving_env["value"])
    assert serve_config.capture is not None
    assert config.uri == serve_config.capture.uri == f"file://{build.CAPTURE_MOUNT}/captures/ml/iris"
    assert (config.deployment, config.namespace, config.port, config.s3) == ("iris", "ml", 8080, None)
    assert {m["mountPath"] for m in container["volumeMounts"]} == {build.CAPTURE_MOUNT, "/tmp"}
    assert dep["metadata"]["annotations"]["mlops.dev/spec-hash"]


def test_review_of_an_s3_store_mounts_its_secret_and_a_file_store_its_host_path() -> None:
    s3 = {"endpoint": "http://10.0.0.1:9000", "secretRef": {"name": "capture-creds"}}
    dep = named(
        plan(md({"storageUri": "s3://bucket/c", "s3": s3, "review": {"enabled": True}})),
        "Deployment",
        "iris-review",
    )
    assert dep is not None
    pod = dep["spec"]["template"]["spec"]
    assert {"name": "s3-0", "secret": {"secretName": "capture-creds", "optional": True}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert any(
        m["name"] == "s3-0" and m["readOnly"] and m["mountPath"].endswith("/s3/capture-creds") for m in mounts
    )
    assert not any(m["mountPath"] == build.CAPTURE_MOUNT for m in mounts)
    config = config_of(dep)
    assert config.uri == "s3://bucket/c/ml/iris"
    assert (
        config.s3 is not None
        and config.s3.secret_ref is not None
        and config.s3.secret_ref.name == "capture-creds"
    )
    dep = named(
        plan(md({"storageUri": "file:///var/mlops/c", "review": {"enabled": True}})),
        "Deployment",
        "iris-review",
    )
    assert dep is not None
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert {"name": "capture", "hostPath": {"path": "/var/mlops/c", "type": "DirectoryOrCreate"}} in volumes
    assert config_of(dep).uri == f"file://{build.CAPTURE_MOUNT}/ml/iris"


def test_turning_review_off_deletes_its_children_and_clears_the_status() -> None:
    was = {"review": {"url": "http://iris-review.ml.svc.cluster.local"}}
    for logging in ({"storageUri": "pvc://feedback/captures", "review": {"enabled": False}}, None):
        result = plan(md(logging, status=was))
        assert set(result.delete) >= {
            rplan.ChildRef("apps/v1", "Deployment", "iris-review"),
            rplan.ChildRef("v1", "Service", "iris-review"),
        }
        assert review.children(md(ON)) == [
            rplan.ChildRef("apps/v1", "Deployment", "iris-review"),
            rplan.ChildRef("v1", "Service", "iris-review"),
        ]
        assert result.status.review is None and "review" not in result.status.to_api()
        assert named(result, "Deployment", "iris-review") is None
    # Still on: kept, nothing deleted.
    result = plan(md(ON, status=was))
    assert not any(ref.name == "iris-review" for ref in result.delete)


def test_a_resources_change_rolls_the_review_pod() -> None:
    small = named(plan(md(ON)), "Deployment", "iris-review")
    big = named(
        plan(md({**ON, "review": {"enabled": True, "resources": {"cpu": "1", "memory": "1Gi"}}})),
        "Deployment",
        "iris-review",
    )
    assert small is not None and big is not None
    key = "mlops.dev/spec-hash"
    assert small["metadata"]["annotations"][key] != big["metadata"]["annotations"][key]
    assert big["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "1",
        "memory": "1Gi",
    }


def test_the_review_server_takes_no_gpu() -> None:
    with pytest.raises(pydantic.ValidationError, match="takes no GPU"):
        md({**ON, "review": {"enabled": True, "resources": {"gpu": 1}}})
    schema = api.LoggingSpec.model_json_schema()
    rules = [r["rule"] for r in schema["$defs"]["ReviewSpec"]["x-kubernetes-validations"]]
    assert rules == [api.REVIEW_NO_GPU]
