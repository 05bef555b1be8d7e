"""The review server of a ModelDeployment (``spec.logging.review``), pure: its Deployment and Service.

One pod runs ``python -m mlops_workloads.review`` on the deployment's capture root, the same
store the serving pods write: a pvc:// or file:// store mounted read-write at ``CAPTURE_MOUNT``
(labels are written beside the captured rows), an s3:// one reached with its Secret mounted.
The pod gets what every workload pod gets (``reconcile.workload``: the restricted Pod Security
contexts, no service-account token, a writable /tmp on a read-only root) and is ready when its
``/healthz`` answers. A ClusterIP Service ``<name>-review`` (port 80) selects it; it carries no
serving labels, so neither the model's Service nor its PDB ever select the review pod.
"""

from __future__ import annotations

from typing import Any

from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

COMPONENT = "review"
CONTAINER = "review"
PORT = 8080


def enabled(md: api.ModelDeployment) -> bool:
    return md.spec.logging is not None and md.spec.logging.review.enabled


def name(md: api.ModelDeployment) -> str:
    return build.owner(md).child_name("review")


def url(md: api.ModelDeployment) -> str:
    return f"http://{name(md)}.{md.metadata.namespace}.svc.cluster.local"


def selector(md: api.ModelDeployment) -> dict[str, str]:
    return build.component_selector(md, COMPONENT)


def children(md: api.ModelDeployment) -> list[rplan.ChildRef]:
    """What ``deployment`` and ``service`` build, by reference (deleted when review is turned off)."""
    return [
        rplan.ChildRef("apps/v1", "Deployment", name(md)),
        rplan.ChildRef("v1", "Service", name(md)),
    ]


def _meta(md: api.ModelDeployment) -> dict[str, Any]:
    return {
        "name": name(md),
        "namespace": md.metadata.namespace,
        "labels": build.owner(md).labels(COMPONENT),
        "ownerReferences": [build.owner(md).reference()],
    }


def review_config(md: api.ModelDeployment) -> api.ReviewConfig:
    """The server's config: the capture root as the pod sees it (the serving pods' own path)."""
    capture = build.capture_config(md)
    assert capture is not None, "review needs spec.logging"
    return api.ReviewConfig(
        uri=capture.uri,
        s3=capture.s3,
        deployment=md.metadata.name,
        namespace=md.metadata.namespace,
        port=PORT,
    )


def deployment(md: api.ModelDeployment, *, settings: rworkload.WorkloadSettings) -> dict[str, Any]:
    """The review server's apps/v1 Deployment (one replica)."""
    logging = md.spec.logging
    assert logging is not None and logging.review.enabled
    config = review_config(md)
    secret_volumes, secret_mounts = rworkload.s3_secret_mounts([config.s3])
    store_volumes, store_mounts = build.capture_volume(md, [])
    container = rworkload.server_container(
        settings,
        name=CONTAINER,
        image=md.spec.image or settings.workload_image,
        command=["python", "-m", "mlops_workloads.review"],
        config=config.to_api(),
        env=rworkload.process_env(),
        port=PORT,
        probes={
            "readinessProbe": rworkload.http_probe(
                "/healthz", period_seconds=5, failure_threshold=3, timeout_seconds=2
            ),
            "livenessProbe": rworkload.http_probe(
                "/healthz",
                initial_delay_seconds=10,
                period_seconds=20,
                failure_threshold=3,
                timeout_seconds=5,
            ),
        },
        resources=logging.review.resources.to_requirements(gpu_resource=settings.gpu_resource),
        mounts=[*store_mounts, *secret_mounts],
    )
    spec = {
        "replicas": 1,
        **rworkload.server_deployment_spec(
            settings,
            container=container,
            volumes=[*store_volumes, *secret_volumes],
            tmp_size="64Mi",
            termination_grace_period_seconds=10,
            selector=selector(md),
            pod_labels=build.owner(md).labels(COMPONENT),
        ),
    }
    return rworkload.deployment(metadata=_meta(md), spec=spec)


def service(md: api.ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(md),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(md),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
