"""ModelDeployment's children, pure: serving Deployments (stable and canary), Service, PDB, HPA,
and the retraining TrainingJob.

Traffic split without a mesh: both tracks' pods carry the Service's selector labels, so
kube-proxy spreads connections over all ready pods and the canary's share is its share of
the pods (``split_replicas``). Zero-downtime rollouts come from the Deployment itself:
``maxUnavailable: 0``, a readiness probe on ``/v2/health/ready`` (true only once the model
is loaded and until the pod starts draining), a ``preStop`` sleep that lets the endpoints
controller take the pod out before SIGTERM, and a server that finishes in-flight requests.

Each pod serves HTTP on its port ``http`` (the Service's port 80) and the OIP v2 gRPC service
on its port ``grpc`` (``GRPC_PORT``, the Service's port of the same number, appProtocol h2c).
kube-proxy balances connections, not calls, so the server retires connections after a while
(HTTP: Connection: close; gRPC: MAX_CONNECTION_AGE) and long-lived clients reach new pods.

With ``spec.logging`` the pods also write captured predictions: a pvc:// or file:// store is
mounted read-WRITE at ``CAPTURE_MOUNT`` (its own path, so it never collides with the model's
read-only mount, even on the same claim) and the server is told the in-pod path; an s3:// store
gets its credentials Secret mounted like a model's.
"""

from __future__ import annotations

from typing import Any

from mlops_operator.api import common, workload
from mlops_operator.api import modeldeployment as api
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import workload as rworkload

COMPONENT = "serving"
CONTAINER = "server"
PORT = 8080
# The OIP v2 gRPC port every serving pod also listens on (the server's default, 8081): the
# container's port "grpc", the Service's port "grpc" (h2c, so an L7 proxy speaks HTTP/2 to it).
GRPC_PORT = 8081
GRPC_APP_PROTOCOL = "kubernetes.io/h2c"
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


def component_selector(md: api.ModelDeployment, component: str) -> dict[str, str]:
    """The pods of one component (serving, review, activator) of this deployment."""
    labels = owner(md).labels(component)
    return {
        rowner.LABEL_COMPONENT: labels[rowner.LABEL_COMPONENT],
        f"mlops.dev/{md.crd.kind.lower()}": md.metadata.name,
    }


def selector(md: api.ModelDeployment) -> dict[str, str]:
    """What the Service and the PDB select: every serving pod of this deployment, both tracks."""
    return component_selector(md, COMPONENT)


KUEUE_PREFIX = "kueue.x-k8s.io/"


def _meta(md: api.ModelDeployment, name: str, **extra_labels: str) -> dict[str, Any]:
    labels = {**owner(md).labels(COMPONENT), LABEL_STAGE: md.spec.stage, **extra_labels}
    return {
        "name": name,
        "namespace": md.metadata.namespace,
        "labels": labels,
        "ownerReferences": [owner(md).reference()],
    }


def kueue_labels(md: api.ModelDeployment) -> dict[str, str]:
    """The ModelDeployment's Kueue labels (``kueue.x-k8s.io/queue-name``, ``.../priority-class``),
    copied onto its serving Deployments and their pods: Kueue's ``deployment`` integration then
    admits each serving pod against the LocalQueue's quota, as it does for a Deployment of one's own."""
    return {k: v for k, v in md.metadata.labels.items() if k.startswith(KUEUE_PREFIX)}


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
        capture=capture_config(md),
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


def capture_config(md: api.ModelDeployment) -> api.CaptureConfig | None:
    """The server's capture config from ``spec.logging``: the deployment's root as the pod sees it."""
    logging = md.spec.logging
    if logging is None:
        return None
    location = common.StorageLocation.parse(logging.storage_uri)
    ns, name = md.metadata.namespace, md.metadata.name
    if location.remote:
        uri = logging.root_uri(ns, name)
    else:
        inside = location.path.strip("/") if location.scheme == "pvc" else ""
        uri = "file://" + "/".join(p for p in (CAPTURE_MOUNT, inside, ns, name) if p)
    knobs = logging.model_dump(include=set(api.CaptureSettings.model_fields))
    return api.CaptureConfig(uri=uri, s3=logging.s3 if location.remote else None, **knobs)


def capture_volume(
    md: api.ModelDeployment, model_volumes: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The read-write volume and mount of a pvc:// or file:// spec.logging store (none for s3://).

    On the claim that already holds the model, the model's volume gets a second mount: one pod
    volume per claim (two volumes of one claim trip some CSI drivers)."""
    logging = md.spec.logging
    if logging is None:
        return [], []
    location = common.StorageLocation.parse(logging.storage_uri)
    if location.remote:
        return [], []
    if location.scheme == "pvc":
        for volume in model_volumes:
            if (volume.get("persistentVolumeClaim") or {}).get("claimName") == location.claim:
                return [], [{"name": volume["name"], "mountPath": CAPTURE_MOUNT}]
        volume = {"name": CAPTURE_VOLUME, "persistentVolumeClaim": {"claimName": location.claim}}
    else:
        volume = {"name": CAPTURE_VOLUME, "hostPath": {"path": location.path, "type": "DirectoryOrCreate"}}
    return [volume], [{"name": CAPTURE_VOLUME, "mountPath": CAPTURE_MOUNT}]


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
    capture_s3 = config.capture.s3 if config.capture is not None else None
    if location.remote:
        volumes, mounts = rworkload.s3_secret_mounts([config.s3, capture_s3])
        tmp_size = REMOTE_MODEL_TMP
    else:
        volume, mount = rworkload.storage_volume(location, settings, name="model")
        secret_volumes, secret_mounts = rworkload.s3_secret_mounts([capture_s3])
        volumes, mounts = [volume, *secret_volumes], [{**mount, "readOnly": True}, *secret_mounts]
        tmp_size = "256Mi"
    capture_volumes, capture_mounts = capture_volume(md, volumes)
    volumes, mounts = [*volumes, *capture_volumes], [*mounts, *capture_mounts]
    queueing = kueue_labels(md)
    pod_labels = {
        **selector(md),
        **owner(md).labels(COMPONENT),
        LABEL_TRACK: track,
        LABEL_STAGE: md.spec.stage,
        **queueing,
    }
    resources = md.spec.resources
    metrics_env = [{"name": "PROMETHEUS_MULTIPROC_DIR", "value": f"{workload.TMP_DIR}/metrics"}]
    container = rworkload.server_container(
        settings,
        name=CONTAINER,
        image=md.spec.image or settings.workload_image,
        command=["python", "-m", "mlops_workloads.serve"],
        config=config.to_api(),
        env=[*(metrics_env if md.spec.workers > 1 else []), *tracing_env(md)],
        port=PORT,
        extra_ports=[("grpc", GRPC_PORT)],
        probes={
            "readinessProbe": rworkload.http_probe(
                "/v2/health/ready", period_seconds=2, failure_threshold=2, timeout_seconds=2
            ),
            "livenessProbe": rworkload.http_probe(
                "/v2/health/live", period_seconds=10, failure_threshold=3, timeout_seconds=5
            ),
            "startupProbe": rworkload.http_probe(
                "/v2/health/live", period_seconds=2, failure_threshold=150, timeout_seconds=2
            ),
        },
        lifecycle={"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        resources=resources.to_requirements(gpu_resource=settings.gpu_resource),
        mounts=mounts,
    )
    spec = rworkload.server_deployment_spec(
        settings,
        container=container,
        volumes=volumes,
        tmp_size=tmp_size,
        gpu=resources.gpu,
        termination_grace_period_seconds=30,
        selector={**selector(md), LABEL_TRACK: track},
        min_ready_seconds=0,
        pod_labels=pod_labels,
        pod_annotations={
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(PORT),
            "prometheus.io/path": "/metrics",
        },
    )
    if replicas is not None:
        spec["replicas"] = replicas
    return rworkload.deployment(
        metadata=_meta(md, name, **{LABEL_TRACK: track}, **queueing),
        spec=spec,
        spec_hash_of={"uri": model_uri, "spec": spec},
        annotations={ANNOTATION_MODEL_URI: model_uri},
    )


def model_uri_of(deployment: dict[str, Any] | None) -> str | None:
    """The model URI a track's Deployment (as built by ``deployment``) serves."""
    annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
    uri = annotations.get(ANNOTATION_MODEL_URI)
    return str(uri) if uri else None


def tracing_env(md: api.ModelDeployment) -> list[dict[str, Any]]:
    """OpenTelemetry's standard environment for ``spec.tracing`` (the server reads it)."""
    tracing = md.spec.tracing
    if tracing is None:
        return []
    env = {
        "OTEL_TRACES_EXPORTER": tracing.exporter,
        "OTEL_SERVICE_NAME": md.metadata.name,
        "OTEL_RESOURCE_ATTRIBUTES": f"k8s.namespace.name={md.metadata.namespace}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": repr(tracing.sampling_ratio),
    }
    if tracing.endpoint:
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = tracing.endpoint
    return [{"name": k, "value": v} for k, v in env.items()]


def service(md: api.ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(md, service_name(md)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(md),
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": GRPC_APP_PROTOCOL,
                },
            ],
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
