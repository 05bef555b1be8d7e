"""The children of a TrainingJob: its config (a ConfigMap) and its batch/v1 Job.

Pure builders: everything comes in as arguments (the TrainingJob, the pinned Dataset
version, the settings), and plain dicts come out, ready for server-side apply. The Job's
pod template is immutable once created, so a run is identified by ``run_hash`` (the spec
minus what may change during a run: ``suspend`` and the TTL); a different hash means a new
run, never an in-place edit.
"""

from __future__ import annotations

import json
from typing import Any

from mlops_operator.api import common, estimators, workload
from mlops_operator.api import trainingjob as api
from mlops_operator.reconcile import common as rcommon
from mlops_operator.reconcile import workload as rworkload

COMPONENT = "train"
CONTAINER = "train"
DEFAULT_COMMAND: tuple[str, ...] = ("python", "-m", "mlops_workloads.train")
KUEUE_PREFIX = "kueue.x-k8s.io/"


def owner(tj: api.TrainingJob) -> rcommon.Owner:
    return rcommon.Owner.of(tj)


def job_name(tj: api.TrainingJob) -> str:
    return owner(tj).child_name(COMPONENT)


def config_name(tj: api.TrainingJob) -> str:
    return owner(tj).child_name(COMPONENT)


def kueue_queue(tj: api.TrainingJob) -> str | None:
    return tj.metadata.labels.get(api.KUEUE_QUEUE_LABEL) or None


def run_hash(spec: api.TrainingJobSpec) -> str:
    """Identity of a run: the spec without the fields that may change while it runs."""
    data = spec.to_api()
    policy = dict(data.get("runPolicy") or {})
    policy.pop("suspend", None)
    policy.pop("ttlSecondsAfterFinished", None)
    data["runPolicy"] = policy
    return rcommon.spec_hash(data)


def default_output(tj: api.TrainingJob, dataset_uri: str) -> str:
    """``models/<namespace>/<name>`` at the root of the Dataset's claim (pvc://), or next to the
    Dataset's storage directory (file://: ``<dataset storage>/../models/...``)."""
    loc = common.StorageLocation.parse(dataset_uri)
    ns, name = tj.metadata.namespace, tj.metadata.name
    if loc.scheme == "pvc":
        return common.StorageLocation(scheme="pvc", claim=loc.claim, path="").join("models", ns, name).uri()
    parts = [p for p in loc.path.split("/") if p]
    root = "/" + "/".join(parts[:-2]) if len(parts) > 2 else "/"
    return common.StorageLocation(scheme="file", claim=None, path=root).join("models", ns, name).uri()


def output_uri(tj: api.TrainingJob, dataset_uri: str) -> str:
    if tj.spec.output is not None and tj.spec.output.storage_uri:
        return tj.spec.output.storage_uri
    return default_output(tj, dataset_uri)


def train_config(
    tj: api.TrainingJob, *, dataset_uri: str, dataset_digest: str, settings: rcommon.Settings
) -> api.TrainConfig:
    """What the training container is told (the contract for users' images too)."""
    spec = tj.spec
    entry = estimators.get(spec.model.estimator)
    metric, direction = spec.effective_objective()
    return api.TrainConfig(
        name=tj.metadata.name,
        namespace=tj.metadata.namespace,
        estimator=entry.name,
        import_path=entry.import_path,
        task=entry.task,
        params=dict(spec.model.params),
        metrics=spec.effective_metrics(),
        objective_metric=metric,
        objective_direction=direction,
        cv_folds=spec.cross_validation.folds if spec.cross_validation else 0,
        gpu=spec.resources.gpu,
        gpu_params=dict(entry.gpu_params) if spec.resources.gpu else {},
        dataset_name=spec.dataset_ref.name,
        dataset_uri=dataset_uri,
        dataset_digest=dataset_digest,
        output_uri=output_uri(tj, dataset_uri),
        pvc_root=settings.pvc_root,
    )


def configmap(tj: api.TrainingJob, config: api.TrainConfig) -> dict[str, Any]:
    o = owner(tj)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_name(tj),
            "namespace": o.namespace,
            "labels": o.labels(COMPONENT),
            "ownerReferences": [o.reference()],
        },
        "data": {workload.CONFIG_KEY: json.dumps(config.to_api(), sort_keys=True, indent=1)},
    }


def _volumes(
    config: api.TrainConfig, settings: rcommon.Settings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts besides the config and /tmp: the output and dataset storage (deduplicated)."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for role, uri in (("output", config.output_uri), ("dataset", config.dataset_uri)):
        loc = common.StorageLocation.parse(uri)
        volume, mount = rcommon.storage_volume(loc, settings, name=role)
        key = json.dumps({k: v for k, v in volume.items() if k != "name"}, sort_keys=True)
        if key in seen or mount["mountPath"] in seen.values():
            continue
        seen[key] = mount["mountPath"]
        if role == "dataset":
            mount["readOnly"] = True
        volumes.append(volume)
        mounts.append(mount)
    return volumes, mounts


def job(
    tj: api.TrainingJob, *, config: api.TrainConfig, settings: rcommon.Settings, suspend: bool
) -> dict[str, Any]:
    """The batch/v1 Job of one run."""
    spec = tj.spec
    volumes, mounts = _volumes(config, settings)
    node_selector, tolerations = rcommon.placement(
        settings,
        gpu=spec.resources.gpu,
        node_selector=spec.node_selector,
        tolerations=[t.to_api() for t in spec.tolerations or []],
    )
    pod_extra: dict[str, Any] = {}
    if spec.affinity:
        pod_extra["affinity"] = spec.affinity
    if spec.priority_class_name:
        pod_extra["priorityClassName"] = spec.priority_class_name
    return rworkload.job(
        owner(tj),
        settings,
        name=job_name(tj),
        component=COMPONENT,
        config_map=config_name(tj),
        container=rworkload.batch_container(
            settings,
            name=CONTAINER,
            image=spec.image or settings.workload_image,
            command=spec.command or DEFAULT_COMMAND,
            mounts=mounts,
            resources=spec.resources.to_requirements(gpu_resource=settings.gpu_resource),
        ),
        volumes=volumes,
        backoff_limit=spec.run_policy.backoff_limit,
        active_deadline_seconds=spec.run_policy.active_deadline_seconds,
        annotations={rcommon.ANNOTATION_SPEC_HASH: run_hash(spec)},
        # Kueue reads its queue and priority labels from the Job, not the pod.
        labels={k: v for k, v in tj.metadata.labels.items() if k.startswith(KUEUE_PREFIX)},
        node_selector=node_selector,
        tolerations=tolerations,
        pod_extra=pod_extra,
        spec_extra={"completions": 1, "parallelism": 1, "suspend": suspend},
    )
