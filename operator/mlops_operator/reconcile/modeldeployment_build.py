"""ModelDeployment's children, pure: serving Deployments (stable and canary), Service, PDB, HPA,
and the retraining TrainingJob.

Traffic split without a mesh: both tracks' pods carry the Service's selector labels, so
kube-proxy spreads connections over all ready pods and the canary's share is its share of
the pods (``split_replicas``). Zero-downtime rollouts come from the Deployment itself:
``maxUnavailable: 0``, a readiness probe on ``/v2/health/ready`` (true only once the model
is loaded and until the pod starts draining), a ``preStop`` sleep that lets the endpoints
controller take the pod out before SIGTERM, and a server that finishes in-flight requests.
"""

from __future__ import annotations

import json
from typing import Any

from mlops_operator.api import common, workload
from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import workload as rworkload

COMPONENT = "serving"
CONTAINER = "server"
PORT = 8080
LABEL_TRACK = "mlops.dev/track"
LABEL_STAGE = "mlops.dev/stage"
TRACKS = ("stable", "canary")
ANNOTATION_MODEL_URI = "mlops.dev/model-uri"  # on each track's Deployment: the model it serves
PRESTOP_SLEEP_SECONDS = 5
REMOTE_MODEL_TMP = "4Gi"  # /tmp of a pod that downloads an s3:// model (the model lives there)
CAPTURE_MOUNT = "/mnt/mlops-capture"  # where a pvc:// or file:// spec.logging store is mounted (rw)
CAPTURE_VOLUME = "capture"


def owner(md: api.ModelDeployment) -> rowner.Owner:
    return rowner.Owner.of(md)


def service_name(md: api.ModelDeployment) -> str:
    return owner(md).child_name("")


def deployment_name(md: api.ModelDeployment, track: str) -> str:
    return owner(md).child_name("predictor" if track == "stable" else "canary")


def url(md: api.ModelDeployment) -> str:
    return f"http://{service_name(md)}.{md.metadata.namespace}.svc.cluster.local/v2/models/{md.metadata.name}"


def selector(md: api.ModelDeployment) -> dict[str, str]:
    """What the Service and the PDB select: every serving pod of this deployment, both tracks."""
    labels = owner(md).labels(COMPONENT)
    return {
        rowner.LABEL_COMPONENT: labels[rowner.LABEL_COMPONENT],
        f"mlops.dev/{md.crd.kind.lower()}": md.metadata.name,
    }


def _meta(md: api.ModelDeployment, name: str, **extra_labels: str) -> dict[str, Any]:
    labels = {**owner(md).labels(COMPONENT), LABEL_STAGE: md.spec.stage, **extra_labels}
    return {
        "name": name,
        "namespace": md.metadata.namespace,
        "labels": labels,
        "ownerReferences": [owner(md).reference()],
    }


def split_replicas(total: int, percent: int, *, canary: bool) -> tuple[int, int]:
    """(stable, canary) pods for ``total`` pods and the canary's traffic percent."""
    if not canary or percent <= 0:
        return total, 0
    if percent >= 100:
        return 0, max(1, total)
    total = max(total, 2)  # A canary always runs beside at least one stable pod.
    canary_pods = min(total - 1, max(1, round(total * percent / 100)))
    return total - canary_pods, canary_pods


def serve_config(
    md: api.ModelDeployment,
    *,
    model_uri: str,
    settings: rworkload.WorkloadSettings,
    model_s3: common.S3Connection | None = None,
) -> api.ServeConfig:
    remote = common.StorageLocation.parse(model_uri).remote
    return api.ServeConfig(
        model_dir=model_uri,
        s3=model_s3 if remote else None,
        model_name=md.metadata.name,
        model_version=rowner.spec_hash(model_uri)[:12],
        port=PORT,
        workers=md.spec.workers,
        low_confidence_threshold=md.spec.low_confidence_threshold,
        max_batch_rows=md.spec.max_batch_rows,
        drift_window=md.spec.drift.window,
        drain_seconds=1.0,
        pvc_root=settings.pvc_root,
    )


def deployment(
    md: api.ModelDeployment,
    *,
    track: str,
    model_uri: str,
    replicas: int | None,
    settings: rworkload.WorkloadSettings,
    model_s3: common.S3Connection | None = None,
) -> dict[str, Any]:
    """The apps/v1 Deployment of one track; ``replicas=None`` leaves the count to an HPA.

    A pvc:// or file:// model is mounted read-only; an s3:// one is downloaded by each pod at
    start into its /tmp (larger then), with the credentials Secret mounted."""
    name = deployment_name(md, track)
    config = serve_config(md, model_uri=model_uri, settings=settings, model_s3=model_s3)
    location = common.StorageLocation.parse(model_uri)
    if location.remote:
        volumes, mounts = rworkload.s3_secret_mounts([config.s3])
        tmp_size = REMOTE_MODEL_TMP
    else:
        volume, mount = rworkload.storage_volume(location, settings, name="model")
        volumes, mounts = [volume], [{**mount, "readOnly": True}]
        tmp_size = "256Mi"
    pod_labels = {
        **selector(md),
        **owner(md).labels(COMPONENT),
        LABEL_TRACK: track,
        LABEL_STAGE: md.spec.stage,
    }
    resources = md.spec.resources
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": md.spec.image or settings.workload_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "mlops_workloads.serve"],
        "env": [
            {
                "name": "MLOPS_CONFIG",
                "value": json.dumps(config.to_api(), sort_keys=True, separators=(",", ":")),
            },
            {"name": "PROMETHEUS_MULTIPROC_DIR", "value": f"{workload.TMP_DIR}/metrics"}
            if md.spec.workers > 1
            else None,
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 150,
            "timeoutSeconds": 2,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "resources": resources.to_requirements(gpu_resource=settings.gpu_resource),
        "securityContext": rworkload.restricted_security_context(settings.run_as_user),
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": workload.TMP_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    container["env"] = [e for e in container["env"] if e is not None]
    node_selector, tolerations = rworkload.placement(settings, gpu=resources.gpu)
    pod_spec = rworkload.pod_spec(
        settings,
        containers=[container],
        volumes=[*volumes, {"name": "tmp", "emptyDir": {"sizeLimit": tmp_size}}],
        node_selector=node_selector,
        tolerations=tolerations,
    )
    pod_spec["terminationGracePeriodSeconds"] = 30
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {**selector(md), LABEL_TRACK: track}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "revisionHistoryLimit": 3,
        "minReadySeconds": 0,
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(PORT),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": pod_spec,
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    meta = _meta(md, name, **{LABEL_TRACK: track})
    meta["annotations"] = {
        rowner.ANNOTATION_SPEC_HASH: rowner.spec_hash({"uri": model_uri, "spec": spec}),
        ANNOTATION_MODEL_URI: model_uri,
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def model_uri_of(deployment: dict[str, Any] | None) -> str | None:
    """The model URI a track's Deployment (as built by ``deployment``) serves."""
    annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
    uri = annotations.get(ANNOTATION_MODEL_URI)
    return str(uri) if uri else None


def service(md: api.ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(md, service_name(md)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(md),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(md: api.ModelDeployment) -> dict[str, Any]:
    """At most one serving pod down by voluntary disruption (drains, upgrades)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(md, owner(md).child_name("pdb")),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(md)}},
    }


# The Pods metric each ``autoscaling.metric`` reads. The server exports counters, not rates: these
# are what the prometheus-adapter rules shipped in charts/mlops-operator/files/
# prometheus-adapter-values.yaml derive from them per pod (average concurrency by Little's law from
# the latency histogram's _sum, prediction requests per second from mlops_serve_requests_total).
HPA_METRICS = {"concurrency": "mlops_serve_concurrency", "rps": "mlops_serve_requests_per_second"}


def horizontal_pod_autoscaler(md: api.ModelDeployment) -> dict[str, Any]:
    """autoscaling/v2 HPA on a Pods metric (needs prometheus-adapter and its rules, see HPA_METRICS)."""
    scaling = md.spec.autoscaling
    assert scaling is not None
    target = scaling.target * scaling.target_utilization_percent / 100
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(md, owner(md).child_name("hpa")),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name(md, "stable"),
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": HPA_METRICS[scaling.metric]},
                        "target": {"type": "AverageValue", "averageValue": f"{round(target * 1000)}m"},
                    },
                }
            ],
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_delay_seconds},
                "scaleUp": {"stabilizationWindowSeconds": 0},
            },
        },
    }


def retrain_job(md: api.ModelDeployment, *, index: int, reason: str) -> dict[str, Any]:
    """The TrainingJob to create on drift, from ``spec.drift.retrain`` (owned by the deployment)."""
    template = md.spec.drift.retrain
    assert template is not None
    meta = _meta(md, owner(md).child_name("retrain", index))
    meta["labels"][rowner.LABEL_COMPONENT] = "retrain"
    meta["annotations"] = {"mlops.dev/retrain-reason": reason[:256]}
    meta["ownerReferences"] = [owner(md).reference(controller=False)]
    return {
        "apiVersion": common.API_VERSION,
        "kind": "TrainingJob",
        "metadata": meta,
        "spec": dict(template.spec),
    }
