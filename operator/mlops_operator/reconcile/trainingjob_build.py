"""The children of a TrainingJob: its batch/v1 Job (and a several-worker run's Service).

Pure builders: everything comes in as arguments (the TrainingJob, the pinned Dataset
version, the settings), and plain dicts come out, ready for server-side apply. The Job's
pod template is immutable once created, so a run is identified by ``run_hash`` (the spec
minus what may change during a run: ``suspend`` and the TTL); a different hash means a new
run, never an in-place edit.

The run's config travels in the pod template itself, as the annotation ``CONFIG_ANNOTATION``,
which a downwardAPI volume exposes as the file ``api.workload.CONFIG_FILE``: the trainer reads
the same file it read when the config was a ConfigMap, and a run costs one object (the Job)
instead of two, with no ConfigMap to write, read or delete. The pod template is immutable, so
the annotation is also the record of what the run was told (its pinned Dataset version).
Jobs an older operator made carry no annotation and mount the ConfigMap ``config_name``;
``run_config`` reads either.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from typing import Any

from mlops_operator.api import common, estimators, workload
from mlops_operator.api import trainingjob as api
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import workload as rworkload

COMPONENT = "train"
CONTAINER = "train"
DEFAULT_COMMAND: tuple[str, ...] = ("python", "-m", "mlops_workloads.train")
KUEUE_PREFIX = "kueue.x-k8s.io/"
MASTER_PORT = 29500
# An Indexed Job's pods carry their index as an annotation and a label of this name.
COMPLETION_INDEX_ANNOTATION = rjobs.COMPLETION_INDEX_ANNOTATION
CODE_VERSION_ANNOTATION = "mlops.dev/code-version"
"""A TrainingJob annotation naming its code's version (a git commit, a tag); the model card records it."""
MODEL_STAGING_DIR = f"{workload.STAGING_DIR}/model"
"""Where the trainer writes its model, whatever the output's scheme; the workload then publishes it
as ``<output_uri>/<version>/`` (``mlops_workloads.train.staging``)."""
CONFIG_ANNOTATION = "mlops.dev/config"
"""The pod template annotation holding the run's ``TrainConfig`` as compact JSON."""
DATASET_FILES = {
    "train": "train.parquet",
    "validation": "validation.parquet",
    "test": "test.parquet",
    "preprocessor": "preprocessor.skops",
    "schema": "schema.json",
}


def owner(tj: api.TrainingJob) -> rowner.Owner:
    return rowner.Owner.of(tj)


def job_name(tj: api.TrainingJob) -> str:
    return owner(tj).child_name(COMPONENT)


def config_name(tj: api.TrainingJob) -> str:
    """The ConfigMap an older operator wrote for a run (read and deleted, never written now)."""
    return owner(tj).child_name(COMPONENT)


def kueue_queue(tj: api.TrainingJob) -> str | None:
    return tj.metadata.labels.get(api.KUEUE_QUEUE_LABEL) or None


def run_hash(spec: api.TrainingJobSpec) -> str:
    """Identity of a run: the spec without the fields that may change while it runs."""
    data = spec.to_api()
    data.pop("registerAs", None)  # where the model is recorded, not how it is trained
    policy = dict(data.get("runPolicy") or {})
    policy.pop("suspend", None)
    policy.pop("ttlSecondsAfterFinished", None)
    data["runPolicy"] = policy
    return rowner.spec_hash(data)


def default_output(tj: api.TrainingJob, dataset_uri: str) -> str:
    """``models/<namespace>/<name>`` at the root of the Dataset's claim (pvc://) or bucket (s3://),
    or next to the Dataset's storage directory (file://: ``<dataset storage>/../models/...``)."""
    loc = common.StorageLocation.parse(dataset_uri)
    ns, name = tj.metadata.namespace, tj.metadata.name
    if loc.scheme in ("pvc", "s3"):
        return dataclasses.replace(loc, path="").join("models", ns, name).uri()
    parts = [p for p in loc.path.split("/") if p]
    root = "/" + "/".join(parts[:-2]) if len(parts) > 2 else "/"
    return common.StorageLocation(scheme="file", claim=None, path=root).join("models", ns, name).uri()


def output_uri(tj: api.TrainingJob, dataset_uri: str) -> str:
    if tj.spec.output is not None and tj.spec.output.storage_uri:
        return tj.spec.output.storage_uri
    return default_output(tj, dataset_uri)


def output_s3(tj: api.TrainingJob, dataset_s3: common.S3Connection | None) -> common.S3Connection | None:
    """How the pods reach an s3:// output: the spec's ``output.s3``, else the Dataset's."""
    if tj.spec.output is not None and tj.spec.output.s3 is not None:
        return tj.spec.output.s3
    return dataset_s3


def in_pod(uri: str, *, pvc_root: str, staging: str) -> str:
    """Where an input location is in the pod: its mount, or ``staging`` for s3:// (the workload
    downloads inputs there). Outputs are always staged (``MODEL_STAGING_DIR``)."""
    loc = common.StorageLocation.parse(uri)
    return staging if loc.remote else loc.local_path(pvc_root)


def task_of(spec: api.TrainingJobSpec, dataset_task: str | None) -> str:
    """What the run learns: the estimator's task, or a trainer's (its own, else the Dataset's)."""
    if spec.model is not None:
        return estimators.get(spec.model.estimator).task
    assert spec.trainer is not None
    return spec.trainer.task or dataset_task or "classification"


def image(spec: api.TrainingJobSpec, settings: rworkload.WorkloadSettings) -> str:
    """The pods' image: the trainer's or the spec's own; else the GPU-capable variant for GPU
    pods and the built-in PyTorch networks (only it has torch), the small CPU image otherwise."""
    if spec.trainer is not None:
        return spec.trainer.image
    if spec.image:
        return spec.image
    assert spec.model is not None
    if spec.resources.gpu or estimators.get(spec.model.estimator).library == "pytorch":
        return settings.workload_gpu_image
    return settings.workload_image


def command(spec: api.TrainingJobSpec) -> list[str]:
    if spec.trainer is not None:
        return list(spec.trainer.command)
    return list(spec.command or DEFAULT_COMMAND)


def data_paths(dataset_uri: str, pvc_root: str) -> api.DataPaths:
    """Where the prepared version's files are inside the pod (the dataset volume's mount, or the
    staging directory an s3:// version is downloaded to)."""
    root = in_pod(dataset_uri, pvc_root=pvc_root, staging=f"{workload.STAGING_DIR}/data")
    files = {role: posixpath.join(root, name) for role, name in DATASET_FILES.items()}
    return api.DataPaths.model_validate({"dir": root, **files})


def train_config(
    tj: api.TrainingJob,
    *,
    dataset_uri: str,
    dataset_digest: str,
    settings: rworkload.WorkloadSettings,
    dataset_task: str | None = None,
    dataset_s3: common.S3Connection | None = None,
) -> api.TrainConfig:
    """What the training container is told: the same document for the built-in trainer and a
    team's own code (``spec.trainer``), whose params pass through unchecked."""
    spec = tj.spec
    metric, direction = spec.effective_objective()
    out = output_uri(tj, dataset_uri)
    common_fields: dict[str, Any] = {
        "name": tj.metadata.name,
        "namespace": tj.metadata.namespace,
        "metrics": spec.effective_metrics(),
        "objective_metric": metric,
        "objective_direction": direction,
        "cv_folds": spec.cross_validation.folds if spec.cross_validation else 0,
        "gpu": spec.resources.gpu,
        "allow_cpu_fallback": spec.allow_cpu_fallback,
        "workers": spec.workers,
        "image": image(spec, settings),
        "command": command(spec),
        "dataset_name": spec.dataset_ref.name,
        "dataset_uri": dataset_uri,
        "dataset_digest": dataset_digest,
        "output_uri": out,
        # Always a local staging directory: the workload publishes it as a new version of
        # output_uri, so a run never writes over a model another run (or a server) uses.
        "output_dir": MODEL_STAGING_DIR,
        "code_version": tj.metadata.annotations.get(CODE_VERSION_ANNOTATION, "")[:256],
        "resources": spec.resources,
        "data": data_paths(dataset_uri, settings.pvc_root),
        "pvc_root": settings.pvc_root,
        "dataset_s3": dataset_s3 if common.StorageLocation.parse(dataset_uri).remote else None,
        "output_s3": output_s3(tj, dataset_s3) if common.StorageLocation.parse(out).remote else None,
    }
    if spec.trainer is not None:
        return api.TrainConfig(
            trainer="custom",
            task=task_of(spec, dataset_task),
            params=dict(spec.trainer.params),
            **common_fields,
        )
    assert spec.model is not None
    entry = estimators.get(spec.model.estimator)
    return api.TrainConfig(
        estimator=entry.name,
        import_path=entry.import_path,
        task=entry.task,
        params=dict(spec.model.params),
        gpu_params=dict(entry.gpu_params) if spec.resources.gpu else {},
        **common_fields,
    )


def param_env_name(name: str) -> str:
    """``MLOPS_PARAM_<NAME>``: upper case, every character but letters and digits as ``_``
    (``mlops_workloads.trainer.param_env_name`` is the same rule on the workload's side)."""
    return api.param_env_name(name)


def param_env(params: dict[str, Any]) -> list[dict[str, str]]:
    """A trainer's params as variables: strings as they are, anything else as JSON."""
    out = []
    for name, value in sorted(params.items()):
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
        out.append({"name": param_env_name(name), "value": text})
    return out


def service_name(tj: api.TrainingJob) -> str:
    """The rendezvous Service: a ClusterIP in front of rank 0 (``MASTER_ADDR``)."""
    return job_name(tj)


def distributed_env(tj: api.TrainingJob, master_addr: str | None) -> list[dict[str, Any]]:
    """torch.distributed's rendezvous, as ``torchrun`` sets it: rank 0 is the master; a pod's
    rank is its Indexed Job completion index."""
    workers = tj.spec.workers
    env: list[dict[str, Any]] = [
        {"name": "WORLD_SIZE", "value": str(workers)},
        {"name": "LOCAL_RANK", "value": "0"},
        {"name": "LOCAL_WORLD_SIZE", "value": "1"},
    ]
    if workers == 1:
        return [*env, {"name": "RANK", "value": "0"}]
    if not master_addr:
        raise ValueError("a several-worker Job needs the rendezvous Service's ClusterIP")
    return [
        *env,
        {
            "name": "RANK",
            "valueFrom": {
                "fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}
            },
        },
        {"name": "MASTER_ADDR", "value": master_addr},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
    ]


def _child_metadata(tj: api.TrainingJob, name: str) -> dict[str, Any]:
    o = owner(tj)
    return {
        "name": name,
        "namespace": o.namespace,
        "labels": o.labels(COMPONENT),
        "ownerReferences": [o.reference()],
    }


def service(tj: api.TrainingJob) -> dict[str, Any]:
    """The Service the workers meet at: its ClusterIP forwards to rank 0's pod (the Job labels
    each pod with its completion index). An IP, not a DNS name, so it works in clusters without
    cluster DNS too; not-ready addresses are published because the workers connect while they
    start, before any is Ready."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _child_metadata(tj, service_name(tj)),
        "spec": {
            "type": "ClusterIP",
            "publishNotReadyAddresses": True,
            "selector": {"batch.kubernetes.io/job-name": job_name(tj), COMPLETION_INDEX_ANNOTATION: "0"},
            "ports": [
                {"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT, "protocol": "TCP"}
            ],
        },
    }


def cluster_ip(service: dict[str, Any] | None) -> str | None:
    """The Service's allocated ClusterIP (None until the apiserver assigned one)."""
    ip = ((service or {}).get("spec") or {}).get("clusterIP")
    return str(ip) if ip and ip != "None" else None


def config_json(config: api.TrainConfig) -> str:
    """The run's config as the pod annotation holds it (and the trainer reads it): compact JSON."""
    return json.dumps(config.to_api(), sort_keys=True, separators=(",", ":"))


def config_volume() -> dict[str, Any]:
    """The ``config`` volume: the pod's own ``CONFIG_ANNOTATION`` as the file ``CONFIG_KEY``,
    mounted at ``CONFIG_DIR`` like the ConfigMap it replaces (``$MLOPS_CONFIG_FILE`` is unchanged)."""
    return {
        "name": rworkload.CONFIG_VOLUME,
        "downwardAPI": {
            "items": [
                {
                    "path": workload.CONFIG_KEY,
                    "fieldRef": {"fieldPath": f"metadata.annotations['{CONFIG_ANNOTATION}']"},
                }
            ]
        },
    }


def job_config_text(job: dict[str, Any] | None) -> str | None:
    """The config annotation of a Job's pod template; None for a Job an older operator made."""
    template = ((job or {}).get("spec") or {}).get("template") or {}
    text = ((template.get("metadata") or {}).get("annotations") or {}).get(CONFIG_ANNOTATION)
    return text if isinstance(text, str) else None


def run_config(job: dict[str, Any] | None, configmap: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """What a run was told, as wire JSON: its Job's pod annotation, else (a Job an older operator
    made) its ConfigMap's ``config.json``; None when neither holds a JSON object."""
    text = job_config_text(job)
    if text is not None:
        return rjobs.parse_result(text)
    return rjobs.parse_result(((configmap or {}).get("data") or {}).get(workload.CONFIG_KEY))


def _volumes(
    config: api.TrainConfig, settings: rworkload.WorkloadSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts besides the config and /tmp: the output and dataset storage (deduplicated),
    the S3 credentials of s3:// ones."""
    volumes, mounts = rworkload.s3_secret_mounts([config.output_s3, config.dataset_s3])
    seen: dict[str, str] = {}
    for role, uri in (("output", config.output_uri), ("dataset", config.dataset_uri)):
        loc = common.StorageLocation.parse(uri)
        if loc.remote:
            continue
        volume, mount = rworkload.storage_volume(loc, settings, name=role)
        key = json.dumps({k: v for k, v in volume.items() if k != "name"}, sort_keys=True)
        if key in seen or mount["mountPath"] in seen.values():
            continue
        seen[key] = mount["mountPath"]
        if role == "dataset":
            mount["readOnly"] = True
        volumes.append(volume)
        mounts.append(mount)
    return volumes, mounts


def _code_volume(spec: api.TrainingJobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if spec.trainer is None or spec.trainer.code_config_map is None:
        return [], []
    # optional: a missing ConfigMap lets the pod start and fail on the missing file (a clear
    # error in its log) instead of hanging in ContainerCreating.
    volume = {"name": "code", "configMap": {"name": spec.trainer.code_config_map, "optional": True}}
    return [volume], [{"name": "code", "mountPath": api.CODE_DIR, "readOnly": True}]


def job(
    tj: api.TrainingJob,
    *,
    config: api.TrainConfig,
    settings: rworkload.WorkloadSettings,
    suspend: bool,
    master_addr: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job of one run: one pod, or an Indexed Job of ``workers`` pods that meet at
    ``master_addr`` (the rendezvous Service's ClusterIP). ``config`` travels in the pod
    template's ``CONFIG_ANNOTATION`` and reaches the trainer as the file ``CONFIG_FILE``."""
    spec = tj.spec
    volumes, mounts = _volumes(config, settings)
    code_volumes, code_mounts = _code_volume(spec)
    env = distributed_env(tj, master_addr)
    if spec.trainer is not None:
        env += param_env(dict(spec.trainer.params))
    node_selector, tolerations = rworkload.placement(
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
    spec_extra: dict[str, Any] = {
        "completions": spec.workers,
        "parallelism": spec.workers,
        "suspend": suspend,
    }
    if spec.workers > 1:
        # One pod per rank: the completion index is the rank.
        spec_extra["completionMode"] = "Indexed"
    built = rworkload.job(
        owner(tj),
        settings,
        name=job_name(tj),
        component=COMPONENT,
        config_map=None,  # the config volume is the downward API's (config_volume)
        container=rworkload.batch_container(
            settings,
            name=CONTAINER,
            image=config.image or image(spec, settings),
            command=config.command or command(spec),
            mounts=[*mounts, *code_mounts],
            resources=spec.resources.to_requirements(gpu_resource=settings.gpu_resource),
            env=env,
            ports=[{"name": "rendezvous", "containerPort": MASTER_PORT}] if spec.workers > 1 else [],
        ),
        volumes=[config_volume(), *volumes, *code_volumes],
        # A failed worker takes the others down with it (their collectives fail), so one retry
        # of a run of N workers is N failed pods.
        backoff_limit=spec.run_policy.backoff_limit * spec.workers,
        active_deadline_seconds=spec.run_policy.active_deadline_seconds,
        annotations={rowner.ANNOTATION_SPEC_HASH: run_hash(spec)},
        # Kueue reads its queue and priority labels from the Job, not the pod.
        labels={k: v for k, v in tj.metadata.labels.items() if k.startswith(KUEUE_PREFIX)},
        node_selector=node_selector,
        tolerations=tolerations,
        pod_extra=pod_extra,
        spec_extra=spec_extra,
    )
    # Every pod of the run (each rank of an Indexed Job) reads its config from this annotation.
    template_meta = built["spec"]["template"]["metadata"]
    template_meta["annotations"] = {
        **template_meta.get("annotations", {}),
        CONFIG_ANNOTATION: config_json(config),
    }
    return built
