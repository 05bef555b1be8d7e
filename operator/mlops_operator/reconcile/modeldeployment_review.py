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

import json
from typing import Any

from mlops_operator.api import modeldeployment as api
from mlops_operator.api import workload
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import owner as rowner
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
    labels = build.owner(md).labels(COMPONENT)
    return {
        rowner.LABEL_COMPONENT: labels[rowner.LABEL_COMPONENT],
        f"mlops.dev/{md.crd.kind.lower()}": md.metadata.name,
    }


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
    resources = logging.review.resources
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": md.spec.image or settings.workload_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "mlops_workloads.review"],
        "env": [
            {
                "name": "MLOPS_CONFIG",
                "value": json.dumps(config.to_api(), sort_keys=True, separators=(",", ":")),
            },
            {"name": "HOME", "value": workload.TMP_DIR},
            {"name": "TMPDIR", "value": workload.TMP_DIR},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 20,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "resources": resources.to_requirements(gpu_resource=settings.gpu_resource),
        "securityContext": rworkload.restricted_security_context(settings.run_as_user),
        "volumeMounts": [
            *store_mounts,
            *secret_mounts,
            {"name": rworkload.TMP_VOLUME, "mountPath": workload.TMP_DIR},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    node_selector, tolerations = rworkload.placement(settings)
    pod_spec = rworkload.pod_spec(
        settings,
        containers=[container],
        volumes=[
            *store_volumes,
            *secret_volumes,
            {"name": rworkload.TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        node_selector=node_selector,
        tolerations=tolerations,
    )
    pod_spec["terminationGracePeriodSeconds"] = 10
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": selector(md)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 3,
        "template": {"metadata": {"labels": build.owner(md).labels(COMPONENT)}, "spec": pod_spec},
    }
    meta = _meta(md)
    meta["annotations"] = {rowner.ANNOTATION_SPEC_HASH: rowner.spec_hash(spec)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


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
